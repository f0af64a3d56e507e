"""compat/: every patch of a library's internals in one module per library, each refusing a
library version it was not written for, each with a test that fails loudly when the library
changes (here, and beside each patch: tests/test_gx_duckdb.py, tests/test_gx_files.py,
tests/test_event_log.py, tests/test_expectations.py's template cache)."""

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
        partitions_read_once,
    )

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
