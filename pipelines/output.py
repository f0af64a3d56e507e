"""What the operator reads: one-line messages, exit codes, names a party chose printed
escaped, progress on a terminal, and output whose reader may leave first.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CannotRun(Exception):
    """A one-line reason why a command cannot start."""


# Work a command may leave until its output is complete and its caller has its exit code (a
# warm process's child, ``pipelines.warm``, collects it: ``after_the_command``). None: a
# command's own process, which does such work where it stands.
_AFTER: list | None = None


def after_the_command(work) -> bool:
    """Leave ``work`` (a function of no arguments) until the command has returned, if the
    process running it outlives the command (a warm process's child); False: do it now."""
    if _AFTER is None:
        return False
    _AFTER.append(work)
    return True


def collect_after_the_command() -> list:
    """From now on, ``after_the_command`` collects the work into the list returned."""
    global _AFTER
    _AFTER = []
    return _AFTER


def _say(msg: str) -> None:
    print(msg, flush=True)


def printable(text: str) -> str:
    """Text for a terminal: control and format characters (escape sequences, newlines,
    bidirectional overrides) that a party put in a file name or a value shown as ``\\x1b``,
    ``\\n``, ``\\u202e``, so what is printed cannot move the cursor, recolour or retitle the
    terminal, or hide a line."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def _show(line: str) -> None:
    """``_say`` of a line that holds names or values a party chose."""
    _say(printable(line))


def _check_folder(flag: str, path: Path, must_exist: bool) -> None:
    """A folder given on the command line: it exists (or can be made), and is a folder."""
    if path.exists() and not path.is_dir():
        raise CannotRun(f"{flag} {path} is a file, not a folder")
    if must_exist and not path.exists():
        raise CannotRun(f"{flag} {path} does not exist")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CannotRun(f"{flag} {path}: {parent} is a file, not a folder")
            if not must_exist and not os.access(parent, os.W_OK | os.X_OK):
                raise CannotRun(f"{flag} {path}: cannot create it in {parent} (permission denied)")
            break


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


class Progress:
    """One self-replacing line on a terminal; nothing in a pipe (the final lines say it all)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.last = 0.0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if self.live and now - self.last > 0.1:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            self.last = now

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class _OutputMayGoUnread:
    """A standard stream of a command that finishes its work whoever reads it: once the
    reader has left (``cbm run | head -3``), what is still written goes to /dev/null instead
    of raising in the middle of the run (a run stopped by its own progress line had published
    nothing). The stream's descriptor is pointed at /dev/null, so its buffer empties there."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _to_devnull(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _to_devnull(self._stream)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _to_devnull(stream) -> None:
    """Point the stream's descriptor at /dev/null: its reader has left, and what it still
    holds or is given goes nowhere instead of failing again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


@contextmanager
def _finish_whoever_reads():
    """``sys.stdout`` and ``sys.stderr`` as ``_OutputMayGoUnread`` for the duration."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _OutputMayGoUnread(sys.stdout), _OutputMayGoUnread(sys.stderr)
    try:
        yield
    finally:
        # what is still buffered goes out while a reader that left is no error
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


# How a command ends when the reader of its output leaves first (`cbm status | head`): as
# the shell reports a process ended by SIGPIPE, without a word.
EXIT_READER_GONE = 128 + 13

# How a command ends on Ctrl-C (SIGINT), in one line: as the shell reports a process ended by
# SIGINT. What a run had done is kept, and the next one carries on from it (crash safety:
# docs/reliability-and-security.md).
EXIT_INTERRUPTED = 128 + 2


INTERRUPTS = ("KeyboardInterrupt", "InterruptException", "DagsterExecutionInterruptedError")


def interrupt_named(class_name: str, message: str) -> bool:
    """Whether an error, by its class's name and message, is Ctrl-C: Python's
    ``KeyboardInterrupt``, Dagster's inside a step (``DagsterExecutionInterruptedError``), or
    DuckDB's, which stops the query it runs and raises ``Query interrupted`` (a
    ``RuntimeError`` or an ``InterruptException``). By name: a failed Dagster step reports its
    error so (``pipelines.runs``)."""
    return class_name in INTERRUPTS or (
        class_name == "RuntimeError" and "Query interrupted" in message
    )


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C (``interrupt_named``)."""
    return interrupt_named(type(exc).__name__, str(exc))


def interrupted_line(command: str | None) -> str:
    """The one line a command interrupted by Ctrl-C ends with."""
    if command in ("run", "demo"):
        return (
            f"cbm {command}: interrupted (Ctrl-C); what it had done is kept, and the next "
            "cbm run carries on from there"
        )
    return f"cbm {command}: interrupted (Ctrl-C)" if command else "cbm: interrupted (Ctrl-C)"


def _stdout_gone() -> bool:
    """Whether standard output is a pipe or socket whose reader has left (the kernel reports
    an error or hang-up on it; a failed write has already dropped what it held)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout
        return False
