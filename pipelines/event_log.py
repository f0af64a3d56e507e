"""The Dagster instance this project makes: the ``dagster.yaml`` of a new Dagster home, and
the event batching it asks of Dagster. The event log storage it names lives in
``compat/dagster.py`` (it subclasses Dagster's private SQLite storage); this module re-exports
it, so a ``dagster.yaml`` written before the move (``module: pipelines.event_log``) still
loads.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager

from compat.dagster import BatchingSqliteEventLogStorage  # noqa: F401  (named by older dagster.yaml)

BATCH_SIZE = "500"  # events Dagster buffers before a write (it writes sooner at a batch's end)

# as written until session 23, before the run queue's interval (rewritten when met)
BEFORE_QUEUE = """\
telemetry:
  enabled: false
# no sign-up dialog: verification often runs on closed networks
nux:
  enabled: false
# one run at a time: DuckDB has one writer. (No op pool limit: a run killed with
# SIGKILL would keep its slot and block every later run.)
concurrency:
  runs:
    max_concurrent_runs: 1
# Dagster's SQLite event log, writing the events Dagster batches in one go
# (compat/dagster.py)
event_log_storage:
  module: compat.dagster
  class: BatchingSqliteEventLogStorage
  config:
    base_dir: {base_dir}
"""


# A queued run (the sensor's, the automation's) starts within a second, not Dagster's
# default of up to five: a lone file's ingestion and verification each waited that long in
# the daemon path (benchmarks/README.md, M38). A query on the run storage a second.
DEFAULT_INSTANCE = BEFORE_QUEUE.replace(
    "    max_concurrent_runs: 1\n",
    "    max_concurrent_runs: 1\n"
    "# a queued run starts within a second (Dagster's default: up to five)\n"
    "run_queue:\n  dequeue_interval_seconds: 1\n",
)

# the same, as written before the storage class moved to compat/ (rewritten when met)
BEFORE_COMPAT = BEFORE_QUEUE.replace(
    "(compat/dagster.py)\nevent_log_storage:\n  module: compat.dagster",
    "(pipelines/event_log.py)\nevent_log_storage:\n  module: pipelines.event_log",
)


# the event log's folder, relative to DAGSTER_HOME: a copied or moved Dagster home writes
# its own, never the folder it was copied from
RELATIVE_BASE_DIR = os.path.join("history", "runs")


def default_instance_yaml() -> str:
    """The ``dagster.yaml`` of a new Dagster home: the event log where Dagster's default
    SQLite storage keeps it (``history/runs``), named relative to the home, so the file
    holds no absolute path."""
    return DEFAULT_INSTANCE.format(base_dir=json.dumps(RELATIVE_BASE_DIR))


def relocatable_instance_yaml(text: str) -> str | None:
    """A ``dagster.yaml`` this project wrote, unchanged since, with the absolute path of its
    home's event log (before it was relative), the storage's old module
    (``pipelines.event_log``) or without the run queue's interval: the file as this version
    writes it. None for any other file (an operator's own configuration is never
    rewritten)."""
    match = re.search(r"(?m)^    base_dir: (\".*\")$", text)
    written = [DEFAULT_INSTANCE, BEFORE_QUEUE, BEFORE_COMPAT]
    if not match or text not in [t.format(base_dir=match.group(1)) for t in written]:
        return None
    fixed = default_instance_yaml()
    return None if fixed == text else fixed


def batch_events() -> None:
    """Have Dagster hand asset events to the event log in batches, in this process and the
    processes it starts, unless ``DAGSTER_EVENT_BATCH_SIZE`` is already set (0: one by one)."""
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", BATCH_SIZE)


@contextmanager
def instance_at(home: str | os.PathLike):
    """The Dagster instance of the home ``home``, opened as a process started with
    ``DAGSTER_HOME=home`` opens it: the event log's ``base_dir`` is relative to the home, so
    ``DagsterInstance.from_config`` alone would find another home's event log (or none)."""
    import dagster as dg

    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if before is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = before
