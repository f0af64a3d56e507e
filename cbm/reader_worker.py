"""Submissions are parsed in a child process with a memory ceiling and a time limit.

Whatever one party hands in, the reader cannot take more than ``limits.reader_memory_bytes``
of address space (the child's ``RLIMIT_AS``) nor more than ``limits.reader_seconds`` per
file: past either, the child is stopped, that submission is rejected with the reason, and a
new child takes the next file. The parent (the Dagster run, holding the workdir lock) never
waits on a reader that cannot finish. The child writes the staged rows itself, as Parquet,
so no frame travels between the processes. Children come from the fork server of
``cbm.children``.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cbm.children import child_context, end_quietly_on_ctrl_c
from cbm.registry import Limits


@dataclass(frozen=True)
class ReadOutcome:
    """A parsed submission (``rows``, ``notes``), a rejection (``rule``, ``reason``), or a
    file not read this run (``waiting``: its party's reading time was spent; ``reason``)."""

    rows: int = 0
    notes: tuple[str, ...] = ()
    rule: str | None = None
    reason: str | None = None
    waiting: bool = False


def _serve(conn, memory_bytes: int) -> None:
    """The child: set the memory ceiling, then parse files until told to stop."""
    end_quietly_on_ctrl_c()
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    from cbm.readers import UnreadableSubmission, stage_rows

    while True:
        job = conn.recv()
        if job is None:
            return
        source, target, fmt, kind, limits = job
        try:
            frame, notes = stage_rows(Path(source).read_bytes(), fmt, kind, limits)
            frame.write_parquet(target, compression="zstd")
            conn.send(ReadOutcome(rows=frame.height, notes=tuple(notes)))
        except UnreadableSubmission as exc:
            conn.send(ReadOutcome(rule=exc.rule, reason=str(exc)))
        except MemoryError:
            conn.send(ReadOutcome(rule="over_limit", reason=_memory_reason(limits)))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a panic inside a reader is BaseException
            if _out_of_address_space(exc):
                conn.send(ReadOutcome(rule="over_limit", reason=_memory_reason(limits)))
                continue
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            conn.send(
                ReadOutcome(
                    rule="unreadable_file",
                    reason=f"reader failed ({exc.__class__.__name__}: {first})",
                )
            )


# How running out of the child's address space (its only limit, RLIMIT_AS) shows when it is
# not a MemoryError or an abort: a panic of polars' Rust code, an OSError, a thread that could
# not get its stack. A fresh clone under load once reported a reader over its ceiling as
# unreadable_file: polars' async executor panicked spawning a thread (``called
# `Result::unwrap()` on an `Err` value: Os { code: 11, kind: WouldBlock, message: "Resource
# temporarily unavailable" }``): EAGAIN, no address space left for the thread's stack.
OUT_OF_MEMORY = (
    "memory allocation",
    "cannot allocate memory",
    "out of memory",
    "failed to allocate",
    "allocation failed",
    "failed to spawn thread",
    "capacity overflow",
    "resource temporarily unavailable",  # EAGAIN: a thread's stack found no address space
)


def _out_of_address_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOMEM, errno.EAGAIN):
        return True
    text = f"{exc.__class__.__name__}: {exc}".lower()
    return any(marker in text for marker in OUT_OF_MEMORY)


def _memory_reason(limits: Limits) -> str:
    return (
        f"parsing needed more than {limits.reader_memory_bytes:,} bytes of memory "
        "(policy.yaml limits.reader_memory_bytes)"
    )


class ReaderProcess:
    """One child process at a time; a new one after a child had to be stopped."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._context = child_context()
        self._child = None
        self._conn = None

    def __enter__(self) -> ReaderProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self.limits.reader_memory_bytes), daemon=True
        )
        try:
            process.start()  # kept only once started: Ctrl-C may stop this half-way
        finally:
            child.close()
        self._child, self._conn = process, parent

    def _stop(self) -> None:
        # forgotten first: a stop that Ctrl-C cuts short is not done twice on its way out
        process, self._child, self._conn = self._child, None, None
        if process is not None:
            with contextlib.suppress(OSError, ValueError):  # already gone, or never started
                process.kill()
            process.join(5)

    def close(self) -> None:
        if self._child is not None and self._child.is_alive():
            try:
                self._conn.send(None)
                self._child.join(5)
            except (OSError, EOFError):
                pass
        self._stop()

    def read(self, source: Path, target: Path, fmt: str, kind: str) -> ReadOutcome:
        """Parse ``source`` into ``target`` (Parquet), within the limits."""
        if self._child is None:
            self._start()
        self._conn.send((str(source), str(target), fmt, kind, self.limits))
        seconds = self.limits.reader_seconds
        died = False
        try:
            if self._conn.poll(seconds):
                return self._conn.recv()
        except (EOFError, OSError):  # the child went away without an answer
            died = True
        self._stop()
        if died:  # the child was killed or crashed, most often out of its memory ceiling
            return ReadOutcome(rule="over_limit", reason=_memory_reason(self.limits))
        return ReadOutcome(
            rule="reader_timeout",
            reason=f"parsing took longer than {seconds:,} s (policy.yaml limits.reader_seconds); "
            "the reader was stopped",
        )


class ReaderPool:
    """``workers`` readers side by side (each a ``ReaderProcess``, with its own limits and
    its own child): the submissions of a run are parsed in parallel, each one into its own
    Parquet file, and the outcomes come back in the order the jobs were given, so what is
    recorded does not depend on the number of workers."""

    def __init__(self, limits: Limits, workers: int = 1):
        self.limits, self.workers = limits, max(1, workers)
        self._readers: list[ReaderProcess] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def __enter__(self) -> ReaderPool:
        return self

    def __exit__(self, *exc) -> None:
        for reader in self._readers:
            reader.close()

    def _reader(self) -> ReaderProcess:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = ReaderProcess(self.limits)
            with self._lock:
                self._readers.append(reader)
        return reader

    def read_all(
        self, jobs: list[tuple[Path, Path, str, str]], parties: list[str] | None = None
    ) -> list[ReadOutcome]:
        """Parse every (source, target, format, kind); one outcome per job, in order. With
        ``parties`` (the party of each job), a party whose files have taken
        ``limits.reader_seconds_per_run`` of parsing in this call has its files not yet
        started left ``waiting``: one party's many files cannot hold everyone's run."""
        parties = parties or [""] * len(jobs)
        spent: dict[str, float] = {}
        budget = self.limits.reader_seconds_per_run

        def one(job, party: str) -> ReadOutcome:
            with self._lock:
                used = spent.get(party, 0.0)
            if party and used >= budget:
                return ReadOutcome(
                    waiting=True,
                    reason=f"waits for the next run: its party's files took {used:,.1f} s of "
                    f"parsing in this run, the most one party gets ({budget:,} s, policy.yaml "
                    "limits.reader_seconds_per_run)",
                )
            started = time.monotonic()
            outcome = self._reader().read(*job)
            with self._lock:
                spent[party] = spent.get(party, 0.0) + time.monotonic() - started
            return outcome

        if self.workers == 1 or len(jobs) < 2:
            return [one(job, party) for job, party in zip(jobs, parties, strict=True)]
        with ThreadPoolExecutor(min(self.workers, len(jobs))) as pool:
            return list(pool.map(one, jobs, parties))
