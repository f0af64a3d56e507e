"""Child processes (readers, anonymisers) are forked from one fork server per process.

multiprocessing's ``forkserver`` start method runs a fresh single-threaded server that has
imported ``PRELOAD`` once; each child is forked from it. A threaded parent (a Dagster run) is
never forked, and a child starts in milliseconds instead of importing polars and pyarrow
again (benchmarks/README.md, M5): that counts
with several workers, after a reader had to be stopped, and in every run of a long-lived
process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

PRELOAD = ["cbm.readers", "cbm.protection"]


def child_context():
    """The fork server's context. The preload list takes effect when the server starts, with
    the first child of this process; every later child, of either kind, shares it."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_early() -> None:
    """Start the fork server now, if it is not running: it imports ``PRELOAD`` in a process of
    its own while this one carries on (landing, loading Dagster and the definitions), instead
    of while the ingestion run waits for its first reader (0.2-0.3 s of a one-file run;
    benchmarks/README.md, M40). Idempotent."""
    from multiprocessing import forkserver

    child_context()
    forkserver.ensure_running()


def end_quietly_on_ctrl_c() -> None:
    """In a child: Ctrl-C (SIGINT, which a terminal sends to the whole process group) ends it
    at once and without a traceback. The command's own process is interrupted by the same
    keystroke and says so in one line; what a child was writing is discarded with it."""
    signal.signal(signal.SIGINT, lambda _signum, _frame: os._exit(128 + signal.SIGINT))
