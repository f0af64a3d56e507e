"""compat/: every patch of a library's internals in one module per library, each refusing a
library version it was not written for, each with a test that fails loudly when the library
changes (here, and beside each patch: tests/test_gx_duckdb.py, tests/test_gx_files.py,
tests/test_event_log.py, tests/test_expectations.py's template cache)."""

from pathlib import Path

import dagster as dg
import great_expectations
import pytest

from compat import CompatError, check_version


def test_the_installed_libraries_are_the_ones_the_patches_were_written_for():
    from dagster.version import __version__ as dagster_version

    from compat import dagster as dagster_compat
    from compat import gx as gx_compat

    # an upgrade of either fails here first: look at each patch, then move SUPPORTED
    assert great_expectations.__version__.startswith(gx_compat.SUPPORTED)
    assert dagster_version.startswith(dagster_compat.SUPPORTED)


def test_a_library_of_another_version_is_refused_in_one_line():
    check_version("great_expectations", "1.24.3", "1.24.")
    with pytest.raises(CompatError, match=r"great_expectations 1\.25\.0 is installed; .*1\.24\.x"):
        check_version("great_expectations", "1.25.0", "1.24.")


def test_the_dagster_internals_the_patches_use_are_there():
    from compat.dagster import (
        AssetCheckEvaluationTargetMaterializationData,
        BatchingSqliteEventLogStorage,
        DagsterExecutionInterruptedError,
        partitions_read_once,
    )

    # a BaseException: a step that reports each item's failure must let it through
    assert not issubclass(DagsterExecutionInterruptedError, Exception)

    fields = set(AssetCheckEvaluationTargetMaterializationData._fields)
    assert {"storage_id", "run_id", "timestamp"} <= fields
    with dg.DagsterInstance.ephemeral() as instance:
        before = instance.get_dynamic_partitions
        with partitions_read_once(instance):
            instance.add_dynamic_partitions("p", ["a"])  # read once: a later add is not seen
            assert instance.get_dynamic_partitions("p") == ["a"]
            instance.add_dynamic_partitions("p", ["b"])
            assert instance.get_dynamic_partitions("p") == ["a"]
        assert instance.get_dynamic_partitions("p") == ["a", "b"]  # the class's method again
        assert instance.get_dynamic_partitions == before
    assert hasattr(BatchingSqliteEventLogStorage, "store_event_batch")


def test_an_instance_yaml_written_before_the_move_still_names_a_storage_that_loads(tmp_path):
    from pipelines.event_log import (
        BEFORE_COMPAT,
        BatchingSqliteEventLogStorage,
        default_instance_yaml,
        relocatable_instance_yaml,
    )

    old = BEFORE_COMPAT.format(base_dir='"history/runs"')
    assert "module: pipelines.event_log" in old
    assert relocatable_instance_yaml(old) == default_instance_yaml()  # rewritten when met
    assert "module: compat.dagster" in default_instance_yaml()
    assert BatchingSqliteEventLogStorage.__module__ == "compat.dagster"


def test_the_event_log_asks_sqlite_once_whether_a_table_or_column_is_there(tmp_path, monkeypatch):
    """Dagster asks whether the dynamic partitions table exists before every partition read,
    on a new engine each time; the storage asks once, and again after a wipe or an upgrade.
    Fails when Dagster stops asking through ``has_table`` (then the patch is dead code)."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    from compat.dagster import BatchingSqliteEventLogStorage

    asked: list[str] = []
    table, column = (
        SqliteEventLogStorage.has_table,
        SqliteEventLogStorage._has_asset_key_col_on_connection,
    )
    monkeypatch.setattr(
        SqliteEventLogStorage, "has_table", lambda s, name: asked.append(name) or table(s, name)
    )
    monkeypatch.setattr(
        SqliteEventLogStorage,
        "_has_asset_key_col_on_connection",
        lambda s, conn, name: asked.append(f"col:{name}") or column(s, conn, name),
    )
    storage = BatchingSqliteEventLogStorage(str(tmp_path / "log"))
    for _ in range(3):
        assert storage.get_dynamic_partitions("p") == []
        assert storage.has_asset_key_col("last_materialization_timestamp")
    assert asked.count("dynamic_partitions") == 1
    assert asked.count("col:last_materialization_timestamp") == 1
    for _ in range(2):  # a table that is not there is asked about each time
        assert not storage.has_table("no_such_table")
    assert asked.count("no_such_table") == 2
    storage.wipe()
    storage.add_dynamic_partitions("p", ["a"])
    assert storage.get_dynamic_partitions("p") == ["a"]
    assert asked.count("dynamic_partitions") == 2


def test_alembic_heads_are_read_once_and_answer_as_dagster_does(tmp_path):
    from dagster._core.storage import sql as dagster_sql
    from dagster._core.storage.runs.sqlite import sqlite_run_storage

    from compat import dagster as compat_dagster

    for module in compat_dagster._ALEMBIC_CHECKERS:
        assert module.check_alembic_revision is compat_dagster.check_alembic_revision
    storage = sqlite_run_storage.SqliteRunStorage.from_local(str(tmp_path / "runs"))
    config = dagster_sql.get_alembic_config(sqlite_run_storage.__file__)
    with storage.connect() as conn:
        ours = compat_dagster.check_alembic_revision(config, conn)
        assert ours == dagster_sql.check_alembic_revision(config, conn)
    assert ours[0] and ours[0] == ours[1]  # stamped at the scripts' head by Dagster's set-up
    # a module whose check is no longer Dagster's function is refused in one line
    stranger = type(sqlite_run_storage)("stranger")
    stranger.check_alembic_revision = lambda config, conn: (None, None)
    with pytest.raises(CompatError, match="stranger.check_alembic_revision is not Dagster's own"):
        compat_dagster._patch_alembic_checks((stranger,))


def test_a_queued_run_starts_within_a_second_and_older_homes_are_brought_up_to_date(tmp_path):
    """Dagster's queue looks for runs to start every five seconds by default; the instance
    cbm writes (and the deployment's template) every second (M38). A home written before
    is rewritten when met, as for the storage's move."""
    import yaml

    from pipelines.event_log import (
        BEFORE_QUEUE,
        default_instance_yaml,
        instance_at,
        relocatable_instance_yaml,
    )

    old = BEFORE_QUEUE.format(base_dir='"history/runs"')
    assert "dequeue_interval_seconds" not in old
    assert relocatable_instance_yaml(old) == default_instance_yaml()
    (tmp_path / "dagster.yaml").write_text(default_instance_yaml())
    with instance_at(tmp_path) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1
    deploy = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml").read_text()
    )
    assert deploy["run_coordinator"]["config"]["dequeue_interval_seconds"] == 1


def test_a_run_s_output_goes_to_the_ui_s_files_without_mirror_processes(tmp_path, monkeypatch):
    """M49: what a step prints is captured to the compute log files the UI shows, as with
    Dagster's own manager, without the ``tail -F`` and watcher processes Dagster starts to
    mirror it to the terminal (shown on Dagster's own: if it stops starting them, this test
    says the patch can go)."""
    import subprocess
    import sys

    from dagster._core.storage import local_compute_log_manager as local
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

    from compat import dagster as compat_dagster

    started = []
    popen = subprocess.Popen

    def counted(*args, **kwargs):
        started.append(args[0])
        return popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counted)
    manager = LocalComputeLogManager(str(tmp_path))

    def capture(key: str) -> None:
        with manager.capture_logs([key]):
            print(f"printed by {key}", flush=True)
            sys.stderr.write(f"warned by {key}\n")
            sys.stderr.flush()
        assert manager.is_capture_complete([key])
        data = manager.get_log_data([key])
        assert (data.stdout.decode(), data.stderr.decode()) == (
            f"printed by {key}\n",
            f"warned by {key}\n",
        )

    monkeypatch.setattr(local, "mirror_stream_to_file", compat_dagster.DAGSTER_MIRROR)
    capture("dagster")  # Dagster's own: a tail and a watcher per stream
    assert len(started) == 4 and started[0][:2] == ["tail", "-F"], started
    started.clear()
    compat_dagster.streams_to_files()
    assert compat_dagster.streams_to_files_installed()
    capture("ours")
    assert started == []
