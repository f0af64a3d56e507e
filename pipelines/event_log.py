"""The Dagster instance's event log, written in batches.

A run of N submissions records, per partitioned asset and submission, a planned event and a
materialization. Dagster's SQLite event log stores each event on its own (a new engine and
connection to the run's shard, then another to the index shard, a commit each): about 12 ms
an event on this project's machine. At 1,000,000 reports in 107 files that was 24 s of a 55 s
ingestion (py-spy; benchmarks/README.md).

Dagster hands such events over in batches when ``DAGSTER_EVENT_BATCH_SIZE`` is set, and the
PostgreSQL event log writes a batch in one statement; the SQLite one only loops over
``store_event``. ``BatchingSqliteEventLogStorage`` writes each batch's asset events with one
connection per shard, in order, with the same rows ``store_event`` writes; anything else
still goes through ``store_event``. ``DEFAULT_INSTANCE`` is the ``dagster.yaml`` that
``cbm run`` writes into a new Dagster home (and that the tests use).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from itertools import groupby

from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result

BATCH_SIZE = "500"  # events Dagster buffers before a write (it writes sooner at a batch's end)

DEFAULT_INSTANCE = """\
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
# (pipelines/event_log.py)
event_log_storage:
  module: pipelines.event_log
  class: BatchingSqliteEventLogStorage
  config:
    base_dir: {base_dir}
"""


def default_instance_yaml(home) -> str:
    """The ``dagster.yaml`` of a new Dagster home at ``home``: the event log where Dagster's
    default SQLite storage keeps it (``history/runs``)."""
    base_dir = os.path.join(os.fspath(home), "history", "runs")
    return DEFAULT_INSTANCE.format(base_dir=json.dumps(base_dir))  # a YAML-safe quoted string


def batch_events() -> None:
    """Have Dagster hand asset events to the event log in batches, in this process and the
    processes it starts, unless ``DAGSTER_EVENT_BATCH_SIZE`` is already set (0: one by one)."""
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", BATCH_SIZE)


def _is_asset_event(event: EventLogEntry) -> bool:
    return event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log (``SqliteEventLogStorage``), with ``store_event_batch``
    writing a batch's asset events through one connection to the run's shard and one
    transaction on the index shard."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        # consecutive asset events of one run together; anything else one by one, in order
        for (is_asset, run_id), group in groupby(
            events, key=lambda e: (_is_asset_event(e), e.run_id)
        ):
            group = list(group)
            if not is_asset:
                for event in group:
                    self.store_event(event)
                continue
            statements = [self.prepare_insert_event(event) for event in group]
            with self.run_connection(run_id) as conn:
                for statement in statements:
                    conn.execute(statement)
            # mirrored in the cross-run index shard, as store_event does
            with self.index_transaction() as conn:
                event_ids = []
                for statement in statements:
                    with db_result(conn, statement) as result:
                        event_ids.append(result.inserted_primary_key[0])
                if any(event_id is None for event_id in event_ids):
                    raise DagsterInvariantViolationError(
                        "Cannot store asset event tags for null event id."
                    )
                self._store_asset_event_tags(conn, group, event_ids)
                for event, event_id in zip(group, event_ids, strict=True):
                    self._store_asset_event(conn, event, event_id)
