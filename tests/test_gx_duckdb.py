"""The GX-on-DuckDB workaround. If a GX upgrade changes what it relies on, these fail loudly."""

import duckdb
import great_expectations as gx
from great_expectations.execution_engine import sqlalchemy_execution_engine as see

from compat import gx as gx_duckdb
from warehouse.db import connection_config


def _validate(db_path):
    ctx = gx.get_context(mode="ephemeral")
    ds = ctx.data_sources.add_sql(name="w", connection_string=f"duckdb:///{db_path}")
    batch = ds.add_table_asset(name="t", table_name="t").add_batch_definition_whole_table("all")
    suite = ctx.suites.add(
        gx.ExpectationSuite(
            name="s",
            expectations=[
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": "v", "min_value": 1, "max_value": 5},
                }
            ],
        )
    )
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    try:
        return vd.run(
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]}
        ).results[0]
    finally:
        ds.get_execution_engine().close()


def _table(tmp_path):
    path = tmp_path / "t.duckdb"
    con = duckdb.connect(str(path), config=connection_config())
    con.execute("CREATE TABLE t AS SELECT i AS id, i % 7 AS v FROM range(100) r(i)")
    con.close()
    return path


def test_gx_internals_we_rely_on_still_exist():
    import checks.validation  # noqa: F401  (the validation stack installs compat/gx.py)

    assert isinstance(see._PERSISTED_CONNECTION_DIALECTS, tuple)
    assert all(hasattr(d, "value") for d in see._PERSISTED_CONNECTION_DIALECTS)
    assert gx_duckdb.duckdb_installed()
    assert "duckdb" in see._PERSISTED_CONNECTION_DIALECTS


def test_without_the_fix_gx_cannot_validate_duckdb(tmp_path, monkeypatch):
    """Documents why the fix exists; when GX fixes DuckDB itself this fails: remove the fix."""
    original = tuple(
        d for d in see._PERSISTED_CONNECTION_DIALECTS if getattr(d, "value", None) != "duckdb"
    )
    monkeypatch.setattr(see, "_PERSISTED_CONNECTION_DIALECTS", original)
    result = _validate(_table(tmp_path))
    assert not result.success and not result.result  # every metric errored, no result


def test_with_the_fix_gx_returns_the_failing_rows_query(tmp_path):
    gx_duckdb.install_duckdb()
    result = _validate(_table(tmp_path))
    assert result.result["unexpected_count"] == sum(1 for i in range(100) if i % 7 in (0, 6))
    query = result.result["unexpected_index_query"]
    rows = (
        duckdb.connect(str(tmp_path / "t.duckdb"), config=connection_config())
        .execute(query)
        .fetchall()
    )
    assert rows and all(r[-1] == 0 or r[-1] == 6 for r in rows)
    assert len(rows) == result.result["unexpected_count"]


def test_our_connections_open_with_duckdb_engines_config():
    """The warehouse and GX share one database instance in a process only while our config
    equals duckdb_engine's (read from package metadata so quick commands skip SQLAlchemy)."""
    import duckdb_engine
    import sqlalchemy

    expected = f"duckdb_engine/{duckdb_engine.__version__}(sqlalchemy/{sqlalchemy.__version__})"
    assert connection_config() == {"custom_user_agent": expected}
