"""What every ``cbm`` command shares: the help's epilog, whole-number options, and
``command``, which makes a click command of a function taking the parsed values.

A command function takes one ``args`` object (the values by option name, as
``args.workdir``, plus ``args.command``) and returns the exit code. Its errors end in one
line on stderr: ``CannotRun`` exits 2, ``RuntimeError`` 1, anything else 1 with its class
(``CBM_DEBUG=1`` re-raises it for the traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import SimpleNamespace

import click

from pipelines.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CannotRun,
    _stdout_gone,
    interrupted_line,
    is_interrupt,
)

EPILOG = """\b
environment:
  CBM_KEY_FILE          the pseudonymisation key file (cbm keygen-pseudonym), kept outside
                        the repository; or CBM_PSEUDONYM_KEY=<version>:<hex> (32+ hex digits)
  CBM_SIGNING_KEY_FILE  the publisher's signing key file (cbm keygen), as --signing-key
  DAGSTER_HOME          Dagster's instance (default: <workdir>/dagster_home)
  CBM_GX_KEEP_RESULTS   validation results kept per suite and table in Data Docs (default 30)
  CBM_DOCS_URL          where 'cbm docs' serves the Data Docs, for the UI's links
                        (default http://127.0.0.1:8765)
  CBM_WORKERS           submissions hashed, read and anonymised side by side (default 1)
  CBM_DUCKDB_MEMORY     DuckDB's memory limit: 2GiB, 1500MB or 25% (default 1.5GiB)
  CBM_LANDING           the landing area, a folder or s3:// (default <workdir>/landing)
  CBM_CACHE_DIR         where the report's bundled chart library is kept
                        (default ~/.cache/cbm-verify)
  AWS_ENDPOINT_URL      an S3 API that is not AWS (MinIO), for s3:// locations
  DAGSTER_EVENT_BATCH_SIZE   Dagster events written per batch (default 500; 0: one by one)
  ARROW_DEFAULT_MEMORY_POOL  Arrow's allocator: system (default), mimalloc or jemalloc
  CBM_DEBUG=1           print the traceback of an unexpected error
  CBM_WARM=0            'cbm run'/'cbm demo' in their own process even when 'cbm warm
                        start' runs a warm process for this checkout
  CBM_WARM_DIR          the warm processes' private folder (default
                        $XDG_RUNTIME_DIR/cbm-warm-<uid>, else /tmp/cbm-warm-<uid>)

\b
exit codes:
  0  success (quarantined rows are not a failure)
  1  the run started but a step failed, or a release does not verify
  2  it could not start: a wrong path, flag, registry value or key (one line says which)
  141  the reader of its output left first (`cbm status | head`), quietly; `cbm run`
       instead finishes its run unheard and exits as it would have
"""

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ReaderGone(Exception):
    """The reader of standard output left: ``console_main`` ends quietly (exit 141).

    Not an ``OSError``: click ends any broken pipe that reaches it with exit 1."""


class WholeNumber(click.ParamType):
    """An integer within bounds, refused in the words of the rest of the CLI."""

    name = "integer"

    def __init__(self, minimum: int, maximum: int | None = None):
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value, param, ctx):  # noqa: D102 - click's hook
        if isinstance(value, int):
            number = value
        else:
            number = int(value) if str(value).lstrip("-").isdigit() else None
        low, high = self.minimum, self.maximum
        if number is None or number < low or (high is not None and number > high):
            wanted = f">= {low}" if high is None else f"from {low} to {high}"
            self.fail(f"{value!r} is not a whole number {wanted}", param, ctx)
        return number


def command(name: str, text: str) -> Callable[[Callable], click.Command]:
    """A click command named ``name``, helped by ``text``, running the decorated function.

    The function's ``click.option``/``click.argument`` decorators go below this one."""

    def make(func: Callable) -> click.Command:
        def callback(**values) -> int:
            return guarded(name, func, SimpleNamespace(command=name, **values))

        callback.__click_params__ = getattr(func, "__click_params__", [])
        more = (func.__doc__ or "").strip()  # what a positional argument is, if it has one
        helped = f"{text}\n\n{more}" if more else text
        return click.command(name, help=helped, short_help=text, epilog=EPILOG)(callback)

    return make


def _interrupted(name: str) -> int:
    """Ctrl-C (Python's, or DuckDB's in the query it ran): one line, and 128 + SIGINT."""
    print(interrupted_line(name), file=sys.stderr)
    return EXIT_INTERRUPTED


def guarded(name: str, func: Callable, args) -> int:
    """Run one command; whatever it raises ends in one line and an exit code."""
    try:
        return func(args)
    except KeyboardInterrupt:
        return _interrupted(name)
    except CannotRun as exc:
        print(f"cbm {name}: cannot run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:
        if is_interrupt(exc):
            return _interrupted(name)
        print(f"cbm {name}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # an unexpected error still ends in one line (traceback on demand)
        if is_interrupt(exc):
            return _interrupted(name)
        if isinstance(exc, BrokenPipeError) and _stdout_gone():
            raise ReaderGone from exc
        if os.environ.get("CBM_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"cbm {name}: failed: {exc.__class__.__name__}: {first} "
            "(set CBM_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
