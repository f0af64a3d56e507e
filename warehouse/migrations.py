"""Schema versions: numbered SQL files in ``warehouse/sql/migrations/``, each applied once
and recorded in the warehouse's ``schema_migrations`` table.

A migration is ``NNNN_what_it_does.sql``, applied in number order on the first write
connection of a process (``warehouse.db.Warehouse.connect``), after the tables of the current
schema are created where missing and before the views are made again:

- a new warehouse gets the current schema whole, and every migration is recorded as applied
  without running (the schema already has what they add);
- a warehouse made before a migration gets it run, then recorded with the time.

A migration must hold on any warehouse made since versioning began (``ALTER TABLE ... ADD
COLUMN IF NOT EXISTS``, ``UPDATE ... WHERE``): the tables exist, the views are being remade.
Warehouses from before versioning (2026-12) are first brought to version 0 by
``warehouse.db.migrate_single_writer_tables``, whose decisions depend on what the file holds
(a column present or not) and so stay in Python.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse.queries import query

MIGRATIONS = Path(__file__).parent / "sql" / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
TABLE = "schema_migrations"


def migrations() -> list[tuple[int, str, Path]]:
    """(number, name, path) of every migration file, in number order; a file not named
    ``NNNN_name.sql`` or a number used twice is a mistake of ours, said at once."""
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"{path}: a migration is named NNNN_what_it_does.sql")
        found.append((int(match.group(1)), path.stem, path))
    numbers = [n for n, _, _ in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{MIGRATIONS}: two migrations share a number: {numbers}")
    return found


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest migration recorded in this warehouse (0: none yet)."""
    if not _has_table(con, TABLE):
        return 0
    return con.execute(query("warehouse.schema_version")).fetchone()[0]


def is_new(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the warehouse holds none of our tables yet."""
    return con.execute(query("warehouse.is_new")).fetchone()[0]


def apply_pending(con: duckdb.DuckDBPyConnection, new: bool) -> list[str]:
    """Run (or, for a ``new`` warehouse, only record) every migration not yet recorded;
    the names of those run."""
    con.execute(query("warehouse.schema_migrations"))
    done = {v for (v,) in con.execute(query("warehouse.migrations_done")).fetchall()}
    ran = []
    for number, name, path in migrations():
        if number in done:
            continue
        if not new:
            con.execute(path.read_text())
            ran.append(name)
        con.execute(query("warehouse.migration_done"), [number, name, datetime.now(UTC), not new])
    return ran


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute(query("warehouse.has_table"), [name]).fetchone()[0]
