"""The Dagster instance's event log, written in batches over connections kept open.

A run of N submissions records, per partitioned asset and submission, a planned event and a
materialization. Dagster's SQLite event log stores each event on its own (a new engine and
connection to the run's shard, then another to the index shard, a commit each): at a million
reports, close to half the ingestion (benchmarks/README.md, M11).

Dagster hands such events over in batches when ``DAGSTER_EVENT_BATCH_SIZE`` is set, and the
PostgreSQL event log writes a batch in one statement; the SQLite one only loops over
``store_event``. ``BatchingSqliteEventLogStorage`` writes each batch's asset events with one
connection per shard, in order, with the same rows ``store_event`` writes (one insert per shard
for the whole batch, M47), and the index's row per asset key from the newest event of each
type only, which is what storing them one by one leaves there (M43); anything else still goes
through ``store_event``.

Dagster's SQLite event log also opens every connection anew: a new SQLAlchemy engine, a
connection, and on close SQLite's checkpoint of the write-ahead log, for each of the about
560 reads and writes of a small ``cbm run`` (M11).
``BatchingSqliteEventLogStorage`` keeps one open connection per shard instead (the index
shard and the few newest run shards), under the storage's own lock as before. A write to a
run shard ends with a passive checkpoint, so the run's ``.db`` file changes with every event
as before: the UI's run view watches that file. A result a caller left unread is closed when
the connection is handed back, as closing the connection did, so no reader stays on an old
snapshot. Nothing else differs; in particular SQLite's ``synchronous`` setting (how often
it flushes to disk) stays Dagster's.

A new run's shard is a copy of an empty one that Dagster's own set-up made once
(``TEMPLATE``): the set-up (the tables, then Alembic's stamp) costs more (M11).

Dagster's SQLite event log asks whether a table exists before most reads and writes (the
dynamic partitions table before every partition read), each time on a new engine and
connection, and reflects the asset key table's columns for every asset event it stores. The
storage remembers what it has seen there (only a migration adds a table or column, only a
wipe removes one). And the head revision of Dagster's migration scripts, which each SQLite
storage reads as it opens by loading every script, is read once per process
(``check_alembic_revision``, replaced in the modules that call it). Both: M25.

A run executed in the ``cbm run`` process captures its steps' standard output and error to
the files the UI shows, as Dagster's local compute log manager does, but without mirroring
them back to the terminal: Dagster mirrors each stream through a ``tail -F`` process and a
Python process that watches for the run's process dying, four processes a run, 12 a ``cbm
run``, 25–80 ms each run to start and stop and an interpreter start each on the other core;
and on Ctrl-C in a terminal the watchers printed their own tracebacks. The steps print
nothing there (their progress is the command's own lines), so the terminal shows the same
(``streams_to_files``, M49).

The instance's configuration (``dagster.yaml`` of a new Dagster home) is in
``pipelines/event_log.py``; it names this module's storage class.

Also here, the project's other uses of Dagster internals: ``partitions_read_once`` (an
instance's partition reads answered once within a block) and the private
``AssetCheckEvaluationTargetMaterializationData`` (an asset check evaluation pinned to the
materialization of its partition) and ``DagsterExecutionInterruptedError`` (what Ctrl-C
raises inside a step: a ``BaseException`` that a step catching every failure of one item must
let through). ``check_version`` runs as this module is imported;
``tests/test_event_log.py`` and ``tests/test_compat.py`` fail loudly when Dagster changes
what they rely on.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # noqa: F401  (used by assets.validated, pipelines.cli)
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.errors import (  # noqa: F401  (DagsterExecutionInterruptedError: used by assets.anonymised)
    DagsterExecutionInterruptedError,
    DagsterInvariantViolationError,
)
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.execution.compute_logs import redirect_to_file
from dagster._core.storage import local_compute_log_manager as _local_compute_logs
from dagster._core.storage import sql as dagster_sql
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite import sqlite_run_storage
from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._utils import ensure_file
from dagster.version import __version__ as dagster_version
from sqlalchemy import event as sqla_event
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

from compat import CompatError, check_version

SUPPORTED = "1.13."  # the Dagster release these patches were written against and tested with
check_version("dagster", dagster_version, SUPPORTED)

# an empty run shard, copied for each new run (``_new_shard_from_template``); not ``*.db``,
# which Dagster lists as runs
TEMPLATE = "empty-run-shard-{version}.sqlite"
OPEN_SHARDS = 4  # connections kept open: the index shard and the newest run shards


def _is_asset_event(event: EventLogEntry) -> bool:
    return event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log (``SqliteEventLogStorage``), with ``store_event_batch``
    writing a batch's asset events through one connection to the run's shard and one
    transaction on the index shard, and with a connection kept open per shard."""

    def __init__(self, base_dir: str, inst_data=None):
        self._open: OrderedDict[str, Engine] = OrderedDict()  # shard -> its one connection
        self._open_pid = os.getpid()
        self._cursors: list = []  # the DB-API cursors of the connection now in use
        # tables and asset-key columns seen to exist; only a migration adds them, and nothing
        # but a wipe removes them (``_forget_schema``)
        self._tables_seen: set[str] = set()
        self._asset_key_cols_seen: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchingSqliteEventLogStorage:
        config = dict(config_value)
        if not os.path.isabs(config["base_dir"]):
            # relative to the Dagster home, found as every Dagster process finds its instance
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise DagsterInvariantViolationError(
                    f"the event log's base_dir {config['base_dir']!r} is relative to the Dagster "
                    "home, and DAGSTER_HOME is not set"
                )
            config["base_dir"] = os.path.join(home, config["base_dir"])
        return cls(inst_data=inst_data, **config)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine over one open connection (called under ``_db_lock``)."""
        if self._open_pid != os.getpid():  # a forked child: never use the parent's connections
            self._open, self._open_pid = OrderedDict(), os.getpid()
        engine = self._open.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            sqla_event.listen(engine, "after_cursor_execute", self._note_cursor)
            self._open[shard] = engine
            while len(self._open) > OPEN_SHARDS:
                self._open.popitem(last=False)[1].dispose()
        self._open.move_to_end(shard)
        return engine

    def has_table(self, table_name: str) -> bool:
        # Dagster asks before most reads and writes whether a table exists (the dynamic
        # partitions before each partition read, the asset check and tag tables before each
        # write), each time on a new engine and connection: about 190 times a small cbm run
        # (benchmarks/README.md, M25). A table once there stays there.
        if table_name in self._tables_seen:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables_seen.add(table_name)
        return found

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        # asked for every asset event stored, by reflecting the asset key table's columns
        if column_name in self._asset_key_cols_seen:
            return True
        found = super()._has_asset_key_col_on_connection(conn, column_name)
        if found:
            self._asset_key_cols_seen.add(column_name)
        return found

    def _forget_schema(self) -> None:
        self._tables_seen.clear()
        self._asset_key_cols_seen.clear()

    def _note_cursor(self, conn, cursor, *args) -> None:
        self._cursors.append(cursor)

    def _close_open(self) -> None:
        with self._db_lock:
            for engine in self._open.values():
                engine.dispose()
            self._open.clear()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # as SqliteEventLogStorage._connect, on the shard's open connection
        with self._db_lock:
            if shard not in self._initialized_dbs:
                if shard == INDEX_SHARD_NAME or not self._new_shard_from_template(shard):
                    self._set_up(self.conn_string_for_shard(shard))
                self._initialized_dbs.add(shard)
            engine = self._engine(shard)
            try:
                with engine.connect() as conn:
                    with conn.begin():
                        yield conn
                    self._close_cursors()  # the checkpoint needs no statement running
                    # the UI watches a run's .db file. After reads too: a writer's passive
                    # checkpoint cannot move frames past a reader's snapshot, and the reader's
                    # own checkpoint then brings them in (M27)
                    if shard != INDEX_SHARD_NAME:
                        conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
            finally:
                self._close_cursors()

    def _new_shard_from_template(self, shard: str) -> bool:
        """Make a run's new shard as a copy of an empty one (``TEMPLATE``) instead of running
        Dagster's schema set-up (the tables, then Alembic's stamp; benchmarks/README.md, M11). The template is made once, by that set-up, for this Dagster version. False
        when the shard exists already (another process made it first, or an older run's):
        Dagster's own set-up then checks it, as before."""
        path = self.path_for_shard(shard)
        if os.path.exists(path):
            return False
        template = self.run_template()
        copy = f"{path}.{os.getpid()}.tmp"
        shutil.copyfile(template, copy)
        try:
            os.link(copy, path)  # never over a shard another process has made meanwhile
        except OSError:  # made meanwhile, or no hard links on this file system
            return False
        finally:
            os.unlink(copy)
        return True

    def run_template(self) -> str:
        """The empty run shard that new runs' shards are copied from, made now if missing
        (a new Dagster home's first run makes it otherwise)."""
        template = os.path.join(self._base_dir, TEMPLATE.format(version=dagster_version))
        if not os.path.exists(template):
            self._make_template(template)
        return template

    def _make_template(self, template: str) -> None:
        """An empty run shard as Dagster's set-up makes it, outside the ``*.db`` names that
        Dagster reads as runs, put in place whole. Once its last connection has closed,
        SQLite has moved the write-ahead log into the file and removed it: the file is all."""
        made = f"{template}.{os.getpid()}.tmp"
        self._set_up(f"sqlite:///{os.path.abspath(made)}")
        os.replace(made, template)

    def _set_up(self, url: str) -> None:
        """Dagster's schema set-up of the SQLite file at ``url``, on an engine of its own: it
        opens several connections, and on a shard's one open connection its unread results
        would block its commits."""
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
        )
        try:
            self._initdb(engine)
        finally:
            engine.dispose()

    def _close_cursors(self) -> None:
        # a result left unread would keep its snapshot on the open connection, and the next
        # reader would not see later writes; Dagster's closing the connection ended those
        # results too
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()

    def wipe(self) -> None:
        self._close_open()  # before its files go
        self._forget_schema()
        super().wipe()

    def upgrade(self) -> None:
        self._close_open()
        self._forget_schema()
        super().upgrade()

    def dispose(self) -> None:
        self._close_open()
        super().dispose()

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
            # the rows Dagster's store_event inserts one by one, in one statement per shard
            # (M47): the same rows, in the same order
            rows = [self._event_to_row(event) for event in group]
            insert = SqlEventLogStorageTable.insert()
            with self.run_connection(run_id) as conn:
                conn.execute(insert, rows)
            # mirrored in the cross-run index shard, as store_event does
            with self.index_transaction() as conn:
                ids = insert.returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
                event_ids = [row[0] for row in conn.execute(ids, rows)]
                if any(event_id is None for event_id in event_ids):
                    raise DagsterInvariantViolationError(
                        "Cannot store asset event tags for null event id."
                    )
                self._store_asset_event_tags(conn, group, event_ids)
                for event, event_id in newest_of_each_kind(group, event_ids):
                    self._store_asset_event(conn, event, event_id)


def newest_of_each_kind(
    events: Sequence[EventLogEntry], event_ids: Sequence[int]
) -> list[tuple[EventLogEntry, int]]:
    """The events of a batch whose ``_store_asset_event`` leaves something in the index's row
    per asset key (``asset_keys``), in their order: the newest of each type per asset key.

    ``_store_asset_event`` writes an asset key's row with values that depend on the event's
    type alone for which columns they fill (a materialization: the last materialization, its
    run, a timestamp; a planned materialization: the run and a timestamp; an observation: a
    timestamp), so a newer event of the same type and key overwrites all an older one wrote.
    A batch of one run's planned events or materializations holds hundreds of events of a few
    keys: storing each was an insert, its integrity error, an update and a serialised copy of
    the event, about a tenth of a small run (benchmarks/README.md, M43). The row ends the same
    (``tests/test_event_log.py``)."""
    newest: dict[tuple[str, str], int] = {}
    for i, event in enumerate(events):
        dagster_event = event.dagster_event
        if dagster_event is not None and dagster_event.asset_key is not None:
            newest[(dagster_event.asset_key.to_string(), dagster_event.event_type_value)] = i
    return [(events[i], event_ids[i]) for i in sorted(newest.values())]


# steps' standard streams to the compute log files only (M49)


@contextmanager
def _to_file_only(stream, filepath: str):
    """``mirror_stream_to_file`` without the mirror: the stream goes to ``filepath``, the file
    the UI reads, and nowhere else."""
    ensure_file(filepath)
    with redirect_to_file(stream, filepath):
        yield (None, None)  # the mirror's (tail, watcher) pids: none


DAGSTER_MIRROR = _local_compute_logs.mirror_stream_to_file  # Dagster's own (the tests read it)


def streams_to_files() -> None:
    """Have this process's runs capture their steps' output to the compute log files without
    the ``tail -F`` mirror processes (idempotent). For the ``cbm run`` process, whose runs
    execute in it; a run worker the UI or daemon starts keeps Dagster's own."""
    _local_compute_logs.mirror_stream_to_file = _to_file_only


def streams_to_files_installed() -> bool:
    return _local_compute_logs.mirror_stream_to_file is _to_file_only


# modules whose SQLite storages check their Alembic revision as they open (a new instance's
# runs, schedules and event log index; a run shard not made from the template)
_ALEMBIC_CHECKERS = (sqlite_event_log, sqlite_run_storage, sqlite_schedule_storage)


_ALEMBIC_HEADS: dict[str, str | None] = {}  # script location -> its head revision


def _alembic_head(alembic_config) -> str | None:
    """The head revision of the migration scripts ``alembic_config`` names: fixed for an
    installed Dagster, and read by loading every script (about 30 ms each time)."""
    from alembic.script import ScriptDirectory

    location = alembic_config.get_main_option("script_location")
    if location not in _ALEMBIC_HEADS:
        head = ScriptDirectory.from_config(alembic_config).as_revision_number("head")
        _ALEMBIC_HEADS[location] = head
    return _ALEMBIC_HEADS[location]


def check_alembic_revision(alembic_config, conn: Connection) -> tuple[str | None, str | None]:
    """Dagster's ``check_alembic_revision`` (the database's revision and the scripts' head),
    with the head read once per process: Dagster reads it anew for each storage it opens,
    three times per instance made (benchmarks/README.md, M25)."""
    from alembic.runtime.migration import MigrationContext

    with dagster_sql._alembic_lock:
        db_revision = MigrationContext.configure(conn).get_current_revision()
    return db_revision, _alembic_head(alembic_config)


def _patch_alembic_checks(modules=_ALEMBIC_CHECKERS) -> None:
    for module in modules:
        current = getattr(module, "check_alembic_revision", None)
        if current is check_alembic_revision:
            continue
        if current is not dagster_sql.check_alembic_revision:
            raise CompatError(
                f"{module.__name__}.check_alembic_revision is not Dagster's own any more: "
                "look at compat/dagster.py's check_alembic_revision"
            )
        module.check_alembic_revision = check_alembic_revision


_patch_alembic_checks()


@contextmanager
def partitions_read_once(instance: dg.DagsterInstance):
    """Within the block, the instance answers ``get_dynamic_partitions`` and
    ``has_dynamic_partition`` from its first answer to the same question.

    ``context.add_asset_metadata(partition_key=...)`` checks the key against the run's
    partitions by reading every dynamic partition from the instance, and whether the range's
    ends exist, on each call: three queries per call (benchmarks/README.md, M12). Nothing adds or removes a partition while a
    run records its metadata."""
    reads = ("get_dynamic_partitions", "has_dynamic_partition")
    for name in reads:
        setattr(instance, name, functools.cache(getattr(instance, name)))
    try:
        yield instance
    finally:
        for name in reads:
            delattr(instance, name)  # the class's method again
