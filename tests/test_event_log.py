"""The Dagster event log written in batches (pipelines/event_log.py) holds what Dagster's
SQLite event log holds when every event is stored on its own."""

import sqlite3
import threading
import time
from pathlib import Path

from dagster._core.events.log import EventLogEntry
from sqlalchemy import text

from pipelines.event_log import BatchingSqliteEventLogStorage, default_instance_yaml
from tests.conftest import Project, attestation, compliance, incident, write_csv


def _snapshot(home: Path) -> dict:
    """What the instance recorded, without the ids, run ids and times that differ between
    two runs: each run's events in order, the index shard's asset events and tags, the last
    event per asset key, the dynamic partitions."""
    history = home / "history"
    runs = sqlite3.connect(history / "runs.db")
    run_ids = [
        (run_id, job)
        for run_id, job in runs.execute(
            "SELECT run_id, pipeline_name FROM runs ORDER BY create_timestamp, id"
        )
    ]
    out: dict = {"runs": []}
    for run_id, job in run_ids:
        shard = sqlite3.connect(history / "runs" / f"{run_id}.db")
        out["runs"].append(
            (
                job,
                shard.execute(
                    "SELECT dagster_event_type, asset_key, partition FROM event_logs "
                    "WHERE dagster_event_type IS NOT NULL ORDER BY id"
                ).fetchall(),
            )
        )
    index = sqlite3.connect(history / "runs" / "index.db")
    out["index_events"] = sorted(
        index.execute(
            "SELECT dagster_event_type, asset_key, coalesce(partition, '') FROM event_logs "
            "WHERE asset_key IS NOT NULL"
        ).fetchall()
    )
    out["tags"] = sorted(
        index.execute("SELECT asset_key, key, count(*) FROM asset_event_tags GROUP BY 1, 2")
    )
    # the index's row per asset key: its last materialization (the job of its run, its
    # partition, its place among the run's events), the job of its last run, a timestamp
    jobs = dict(run_ids)
    out["last_event"] = sorted(
        (key, *_last_materialization(last, jobs), jobs.get(last_run), stamp is not None)
        for key, last, last_run, stamp in index.execute(
            "SELECT asset_key, last_materialization, last_run_id, "
            "last_materialization_timestamp FROM asset_keys"
        )
    )
    out["partitions"] = sorted(
        index.execute("SELECT partitions_def_name, partition FROM dynamic_partitions")
    )
    return out


def _last_materialization(serialized: str | None, jobs: dict) -> tuple:
    """(job, partition, event type) of an ``asset_keys.last_materialization`` record."""
    if serialized is None:
        return (None, None, None)
    from dagster._serdes import deserialize_value

    entry = deserialize_value(serialized).event_log_entry
    event = entry.dagster_event
    return (jobs.get(entry.run_id), event.partition, event.event_type_value)


def test_batched_writes_record_what_one_by_one_writes_record(tmp_path, monkeypatch):
    batches: list[int] = []
    store = BatchingSqliteEventLogStorage.store_event_batch

    def counted(self, events):
        batches.append(len(events))
        return store(self, events)

    monkeypatch.setattr(BatchingSqliteEventLogStorage, "store_event_batch", counted)
    snapshots = {}
    for name, size in (("one_by_one", "0"), ("batched", "500")):
        project = Project(tmp_path / name)
        write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1"), incident("A-2")])
        write_csv(project.inbox / "BRAVO" / "compliance_b.csv", [compliance("C-1")])
        write_csv(project.inbox / "CHARLIE" / "attestations_c.csv", [attestation("T-1")])
        home = tmp_path / name / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(default_instance_yaml())
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", size)
        project.run(ingest_only=True)
        snapshots[name] = _snapshot(home)
        if size == "0":
            assert batches == [], "one by one, yet a batch was written"
    # the planned events and the materializations of the three partitions came in batches
    assert len(batches) >= 2 and sum(batches) >= 2 * 3 * 9
    single, batched = snapshots["one_by_one"], snapshots["batched"]
    assert single["runs"] and any(events for _, events in single["runs"])
    for key in single:
        assert batched[key] == single[key], key


def test_a_batch_leaves_each_asset_key_row_as_storing_its_events_one_by_one_does(
    tmp_path, monkeypatch
):
    """A batch writes the index's row per asset key from the newest event of each type only
    (``newest_of_each_kind``, M43): replayed from a real run's shards, every event in one batch
    leaves ``asset_keys`` as Dagster's own storage does storing them one by one."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._serdes import deserialize_value

    from compat.dagster import newest_of_each_kind

    project = Project(tmp_path / "p")
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    write_csv(project.inbox / "ALPHA" / "incidents_b.csv", [incident("A-2")])
    write_csv(project.inbox / "BRAVO" / "compliance_b.csv", [compliance("C-1")])
    home = tmp_path / "p" / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(default_instance_yaml())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    project.run(ingest_only=True)
    index = sqlite3.connect(home / "history" / "runs" / "index.db")
    events = [
        deserialize_value(text, EventLogEntry)
        for (text,) in index.execute("SELECT event FROM event_logs ORDER BY id")
    ]
    asset_events = [e for e in events if e.dagster_event and e.dagster_event.asset_key]
    kept = newest_of_each_kind(asset_events, list(range(len(asset_events))))
    assert len(kept) < len(asset_events) // 2  # what the batch saves, or this proves nothing

    def asset_keys(base: Path) -> list:
        con = sqlite3.connect(base / "index.db")
        cols = [
            r[1]
            for r in con.execute("PRAGMA table_info(asset_keys)")
            if r[1] not in ("id", "create_timestamp")
        ]
        return con.execute(
            f"SELECT {', '.join(cols)} FROM asset_keys ORDER BY asset_key"
        ).fetchall()

    one_by_one = SqliteEventLogStorage(str(tmp_path / "dagster"))
    batched = BatchingSqliteEventLogStorage(str(tmp_path / "ours"))
    for event in events:
        one_by_one.store_event(event)
    half = len(events) // 2  # the second half batched onto a table that has rows already
    for event in events[:half]:
        batched.store_event(event)
    batched.store_event_batch(events[half:])
    batched.dispose()
    expected = asset_keys(tmp_path / "dagster")
    assert expected and any(row[1] for row in expected)  # last materializations were written
    assert asset_keys(tmp_path / "ours") == expected

    def index_rows(base: Path) -> tuple[list, list]:
        """The index's events by id, and each tag row with the id of the event it names
        (the ids a batch hands out)."""
        con = sqlite3.connect(base / "index.db")
        events = con.execute(
            "SELECT id, dagster_event_type, asset_key, partition FROM event_logs ORDER BY id"
        ).fetchall()
        tags = con.execute(
            "SELECT event_id, asset_key, key, value FROM asset_event_tags ORDER BY 1, 2, 3, 4"
        ).fetchall()
        return events, tags

    expected_events, expected_tags = index_rows(tmp_path / "dagster")
    assert expected_tags and len({row[0] for row in expected_tags}) > 1
    assert index_rows(tmp_path / "ours") == (expected_events, expected_tags)


def test_the_instance_file_holds_no_absolute_path_and_resolves_in_its_home(tmp_path, monkeypatch):
    import yaml

    from pipelines.event_log import relocatable_instance_yaml

    home = tmp_path / "a home: #1"
    text = default_instance_yaml()
    assert str(tmp_path) not in text  # a copied home writes its own event log
    config = yaml.safe_load(text)["event_log_storage"]
    assert config["class"] == BatchingSqliteEventLogStorage.__name__
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    storage = BatchingSqliteEventLogStorage.from_config_value(None, config["config"])
    assert storage._base_dir == str(home / "history" / "runs")
    # a file written before (an absolute path) is made relative; an operator's own is kept
    old = text.replace('"history/runs"', '"/elsewhere/dagster_home/history/runs"')
    assert relocatable_instance_yaml(old) == text
    assert relocatable_instance_yaml(text) is None
    assert relocatable_instance_yaml(old + "run_monitoring:\n  enabled: true\n") is None


def _log_entry(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(None, "INFO", message, run_id, time.time())


def test_a_result_left_unread_does_not_hide_later_events(tmp_path):
    """Each shard's connection stays open between uses; a result a caller left unread must
    not keep that connection on an old snapshot of the file: another process's writes (here
    a second storage on the same folder) are seen by the next read, as with Dagster's own."""
    reader = BatchingSqliteEventLogStorage(str(tmp_path))
    writer = BatchingSqliteEventLogStorage(str(tmp_path))
    assert reader.get_dynamic_partitions("submissions") == []
    with reader.index_connection() as conn:
        left = conn.execute(text("SELECT name FROM secondary_indexes"))
        assert left.fetchone() is not None  # and the other rows never read
    writer.add_dynamic_partitions("submissions", ["p-1"])
    assert reader.get_dynamic_partitions("submissions") == ["p-1"]
    for i in range(2):
        writer.store_event(_log_entry("run-a", f"event {i}"))
    with reader.run_connection("run-a") as conn:
        left = conn.execute(text("SELECT id FROM event_logs"))
        assert left.fetchone() is not None
    writer.store_event(_log_entry("run-a", "event 2"))
    messages = [r.event_log_entry.user_message for r in reader.get_records_for_run("run-a").records]
    assert messages == ["event 0", "event 1", "event 2"]


def test_the_run_view_is_told_of_each_event_while_the_writer_keeps_its_connection(tmp_path):
    """The Dagster UI follows a running run by watching its shard's .db file (Dagster's
    SqliteEventLogStorageWatchdog); events written on a connection that stays open must
    still reach that file, one by one."""
    writer = BatchingSqliteEventLogStorage(str(tmp_path))
    viewer = BatchingSqliteEventLogStorage(str(tmp_path))
    writer.store_event(_log_entry("run-b", "started"))
    seen: list[str] = []
    arrived = threading.Event()

    def callback(entry, cursor):
        seen.append(entry.user_message)
        arrived.set()

    viewer.watch("run-b", None, callback)
    try:
        # the watch starts on the observer's own thread: write until it answers once
        for _ in range(50):
            writer.store_event(_log_entry("run-b", "are you there"))
            if arrived.wait(0.2):
                break
        else:
            raise AssertionError("the watcher was never told of an event")
        for i in range(3):
            arrived.clear()
            writer.store_event(_log_entry("run-b", f"step {i}"))
            assert arrived.wait(10), f"the watcher was not told of step {i}"
        assert seen[-1] == "step 2" and "step 0" in seen
    finally:
        viewer.dispose()
        writer.dispose()


def test_a_new_run_shard_is_a_copy_of_the_empty_one_dagster_makes(tmp_path, monkeypatch):
    """A run's shard is copied from an empty one that Dagster's own set-up made once: the
    same tables, indexes, Alembic revision and journal mode as Dagster's own storage gives a
    run, without the set-up for each run; the template is not a run."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    def schema(path: Path) -> dict:
        con = sqlite3.connect(path)
        try:
            return {
                "objects": sorted(
                    con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
                ),
                "alembic": con.execute("SELECT version_num FROM alembic_version").fetchall(),
                "journal": con.execute("PRAGMA journal_mode").fetchone(),
            }
        finally:
            con.close()

    dagster_own = SqliteEventLogStorage(str(tmp_path / "dagster"))
    dagster_own.store_event(_log_entry("run-a", "event"))
    set_ups = []
    initdb = BatchingSqliteEventLogStorage._initdb
    monkeypatch.setattr(
        BatchingSqliteEventLogStorage,
        "_initdb",
        lambda self, engine, **kw: (set_ups.append(str(engine.url)), initdb(self, engine, **kw))[1],
    )
    ours = BatchingSqliteEventLogStorage(str(tmp_path / "ours"))
    for run in ("run-a", "run-b", "run-c"):
        ours.store_event(_log_entry(run, "event"))
    assert len([u for u in set_ups if "empty-run-shard" in u]) == 1
    assert not [u for u in set_ups if u.endswith(("run-a.db", "run-b.db", "run-c.db"))]
    expected = schema(tmp_path / "dagster" / "run-a.db")
    for run in ("run-a", "run-b", "run-c"):
        assert schema(tmp_path / "ours" / f"{run}.db") == expected
    assert sorted(ours.get_all_run_ids()) == ["run-a", "run-b", "run-c"]
    messages = [r.event_log_entry.user_message for r in ours.get_records_for_run("run-b").records]
    assert messages == ["event"]


def test_without_hard_links_a_run_shard_gets_dagsters_own_set_up(tmp_path, monkeypatch):
    """A file system without hard links (some network file systems): the shard is set up
    by Dagster as before, and nothing is left behind."""
    import errno
    import os

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    storage = BatchingSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log_entry("run-a", "event"))
    messages = [
        r.event_log_entry.user_message for r in storage.get_records_for_run("run-a").records
    ]
    assert messages == ["event"]
    assert not list(tmp_path.glob("*.tmp"))
