"""A new GX project written from the last one set up in this process (checks/gx_template.py):
it validates its own warehouse, exactly as a project built step by step does."""

import duckdb
import pytest

import checks.validation as validation
from checks import gx_template
from warehouse.db import connection_config

SUITE = {
    "expectations": [
        {
            "type": "expect_column_values_to_pass_sql_rule",
            "kwargs": {"column": "b", "failing_when": "b = 1"},
            "meta": {"rule": "no_ones", "severity": "critical", "reason": "test"},
        },
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "a"},
            "meta": {"rule": "a_given", "severity": "critical", "reason": "test"},
        },
    ]
}


def _warehouse(folder, rows: int):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "warehouse.duckdb"
    con = duckdb.connect(str(path), config=connection_config())
    con.execute(
        f"""CREATE TABLE t AS SELECT 's' AS submission_sha, i AS row_number, 'r' || i AS report_id,
        CASE WHEN i % 10 = 3 THEN NULL ELSE i END AS a, i % 4 AS b FROM range({rows}) r(i)"""
    )
    con.close()
    return path


@pytest.fixture
def suite(monkeypatch):
    monkeypatch.setattr(validation, "load_suite", lambda name: SUITE)
    gx_template.forget()
    yield
    gx_template.forget()


def _findings(folder, warehouse):
    (result,) = validation.run_suites(None, warehouse, folder / "gx", [("rules", "t")], [])
    return {f.rule: f.unexpected_count for f in result.findings}


def test_a_new_project_is_the_last_one_set_up_and_validates_its_own_warehouse(
    tmp_path, suite, monkeypatch
):
    first = _warehouse(tmp_path / "one", 40)
    assert _findings(tmp_path / "one", first) == {"no_ones": 10, "a_given": 4}

    built = []
    monkeypatch.setattr(gx_template, "keep", lambda *a: built.append(a))
    second = _warehouse(tmp_path / "two", 20)
    assert _findings(tmp_path / "two", second) == {"no_ones": 5, "a_given": 2}
    assert built == [], "the seeded project rebuilt a checkpoint"
    config = (tmp_path / "two" / "gx" / "gx" / gx_template.CONFIG).read_text()
    assert f"duckdb:///{second}\n" in config and str(first) not in config

    # the same figures as a project built step by step
    gx_template.forget()
    assert _findings(tmp_path / "three", _warehouse(tmp_path / "three", 20)) == {
        "no_ones": 5,
        "a_given": 2,
    }
    assert len(built) == 1


def test_a_changed_suite_is_built_again_in_a_seeded_project(tmp_path, suite, monkeypatch):
    _findings(tmp_path / "one", _warehouse(tmp_path / "one", 40))
    edited = {"expectations": SUITE["expectations"][:1]}
    monkeypatch.setattr(validation, "load_suite", lambda name: edited)
    assert _findings(tmp_path / "two", _warehouse(tmp_path / "two", 40)) == {"no_ones": 10}


def test_a_warehouse_path_that_yaml_quotes_is_named_as_it_is(tmp_path, suite, monkeypatch):
    _findings(tmp_path / "one", _warehouse(tmp_path / "one", 40))
    odd = tmp_path / ("two: #x 'y' " + "long/" * 20)
    warehouse = _warehouse(odd, 20)
    assert gx_template.seed(odd / "gx", warehouse)
    monkeypatch.setattr(gx_template, "keep", lambda *a: pytest.fail("rebuilt"))
    assert _findings(odd, warehouse) == {"no_ones": 5, "a_given": 2}


def test_a_seed_that_stopped_half_way_is_written_again(tmp_path, suite):
    _findings(tmp_path / "one", _warehouse(tmp_path / "one", 40))
    warehouse = _warehouse(tmp_path / "two", 40)
    half = tmp_path / "two" / "gx" / "gx" / "checkpoints" / "rules__t.json"
    half.parent.mkdir(parents=True)
    half.write_text('{"name": "rul')  # cut; the project file was never written
    assert gx_template.seed(tmp_path / "two" / "gx", warehouse)
    assert _findings(tmp_path / "two", warehouse) == {"no_ones": 10, "a_given": 4}


def test_a_copied_workdir_names_its_own_warehouse_and_rebuilds_nothing(
    tmp_path, suite, monkeypatch
):
    """A workdir copied with its project (or moved): GX would replace the datasource, and
    every table asset with it, so every suite, definition and checkpoint would be built
    again. Only the connection string changes; the copy validates its own rows."""
    import shutil

    _findings(tmp_path / "one", _warehouse(tmp_path / "one", 40))
    shutil.copytree(tmp_path / "one", tmp_path / "copy")
    copy = tmp_path / "copy" / "warehouse.duckdb"
    con = duckdb.connect(str(copy), config=connection_config())
    con.execute("DELETE FROM t WHERE row_number >= 20")  # the copy's own rows from now on
    con.close()
    monkeypatch.setattr(gx_template, "keep", lambda *a: pytest.fail("rebuilt"))
    assert _findings(tmp_path / "copy", copy) == {"no_ones": 5, "a_given": 2}
    config = (tmp_path / "copy" / "gx" / "gx" / gx_template.CONFIG).read_text()
    assert str(tmp_path / "one") not in config
    assert not gx_template.follow(tmp_path / "copy" / "gx", copy)  # named already
