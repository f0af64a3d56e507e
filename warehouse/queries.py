"""Named statements: the SQL that the assets, the checks and the cbm command run.

Each file ``warehouse/sql/queries/<area>.sql`` holds the statements of one area, each
under a line ``-- name: <name>``, with the comment that says what it answers::

    -- name: unreadable
    -- The landed files of these submissions nobody refused at landing.
    SELECT sha256, kind FROM landed_submissions WHERE sha256 IN (SELECT unnest($shas::VARCHAR[]))

``query("<area>.<name>")`` returns it. A statement that is the same for every kind of report
names the kind's tables with ``{kind}`` (``query("validated.accept", kind="incidents")``);
a part is a word (a table's or column's name) or ``Sql``: text read from warehouse/sql
(the indicator catalogue's statements, put together). Nothing else is put into SQL text:
values travel as parameters.

Python keeps only plumbing that states no rule (``CHECKPOINT``, dropping a temporary table
it made, counting a whole table): ``tests/test_layout.py`` holds that.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_PART = re.compile(r"\{([a-z_]+)\}")


@functools.cache
def statements(area: str) -> dict[str, str]:
    """Every named statement of ``warehouse/sql/queries/<area>.sql``, by name."""
    path = resources.files("warehouse").joinpath("sql", "queries", f"{area}.sql")
    text = path.read_text(encoding="utf-8")
    found = _NAME.split(text)
    if found[0].strip() and not all(
        line.startswith("--") or not line.strip() for line in found[0].splitlines()
    ):
        raise ValueError(f"{path}: SQL before the first '-- name:' line")
    named: dict[str, str] = {}
    for name, body in zip(found[1::2], found[2::2], strict=True):
        if name in named:
            raise ValueError(f"{path}: '{name}' is named twice")
        named[name] = body.strip().rstrip(";").strip()
    return named


class Sql(str):
    """SQL text read from warehouse/sql, as a part of another statement."""


def query(name: str, **parts: str) -> str:
    """The statement ``<area>.<name>``, with each ``{part}`` it names filled in (only the
    kinds of report are filled in this way: see the module's docstring)."""
    area, _, short = name.partition(".")
    try:
        sql = statements(area)[short]
    except (KeyError, FileNotFoundError):
        raise KeyError(f"no statement {name!r} in warehouse/sql/queries/{area}.sql") from None
    wanted = set(_PART.findall(sql))
    if wanted != set(parts):
        raise KeyError(f"{name} takes {sorted(wanted) or 'no parts'}, not {sorted(parts)}")
    for key, value in parts.items():
        if not isinstance(value, Sql) and not re.fullmatch(r"[a-z_][a-z0-9_]*", value):
            raise ValueError(f"{name}: {{{key}}} must be a name or Sql, not {value!r}")
    return _PART.sub(lambda m: parts[m.group(1)], sql)
