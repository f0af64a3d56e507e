"""The named statements of warehouse/sql/queries (warehouse/queries.py)."""

import re
from pathlib import Path

import duckdb
import pytest

from cbm.contract import KINDS
from warehouse.queries import Sql, query, statements

ROOT = Path(__file__).resolve().parent.parent
AREAS = sorted(p.stem for p in (ROOT / "warehouse" / "sql" / "queries").glob("*.sql"))
ALL = [(area, name) for area in AREAS for name in statements(area)]
PARTS = {
    "kind": "incidents",
    "value_column": "version__raw",
    "table": "party_directory",
    "disclosure": "public",
    "column": "source",
}


def test_there_are_statements_in_every_area():
    assert set(AREAS) >= {"intake", "validated", "submissions", "verified", "alerts", "cli"}
    assert all(statements(area) for area in AREAS)


@pytest.mark.parametrize(("area", "name"), ALL, ids=[f"{a}.{n}" for a, n in ALL])
def test_each_statement_parses_and_is_used(area, name):
    sql = statements(area)[name]
    wanted = set(re.findall(r"\{([a-z_]+)\}", sql))
    sql_parts = {
        "statement": "SELECT 1",
        "catalogue": "SELECT 1",
        "content_hash": "md5('x')",
        "named": "SELECT 'A' AS code",
        "periods": "SELECT '2026-01' AS period",
    }
    parts = {p: (Sql(sql_parts[p]) if p in sql_parts else PARTS[p]) for p in wanted}
    text = query(f"{area}.{name}", **parts)
    assert duckdb.extract_statements(text), text  # DuckDB's parser takes it
    used = [
        p
        for package in ("assets", "pipelines", "warehouse", "checks")
        for p in (ROOT / package).rglob("*.py")
        if f'"{area}.{name}"' in p.read_text()
    ]
    assert used, f"{area}.{name} is read by no module"


def test_a_statement_over_one_kinds_table_names_every_kind():
    """A statement that lists the kinds' stored tables itself (a union) lists all of them."""
    for area, name in ALL:
        sql = statements(area)[name]
        named = {k for k in KINDS if re.search(rf"\b(anon|reports)_{k}\b", sql)}
        assert len(named) <= 1 or named == set(KINDS), (area, name, named)


def test_parts_are_names_or_sql_never_values():
    assert "reports_compliance" in query("validated.accepted", kind="compliance")
    with pytest.raises(ValueError, match="must be a name or Sql"):
        query("validated.accepted", kind="x'; DROP TABLE reports_incidents; --")
    with pytest.raises(KeyError, match="takes \\['kind'\\]"):
        query("validated.accepted")
    with pytest.raises(KeyError, match="no statement 'validated.nope'"):
        query("validated.nope")


def test_the_region_pass_reads_rows_in_the_clustering_order():
    """incident_rows is sorted in cbm.clustering's ORDER (NULLs first, as polars sorts)."""
    from cbm.clustering import ORDER, ORDER_SQL

    sql = " ".join(query("verified.incident_rows").split())
    assert sql.endswith(f"ORDER BY {ORDER_SQL}")
    assert query("verified.region_pass_keys").split("FROM")[0].split("SELECT")[
        1
    ].strip() == ", ".join(ORDER)


def test_a_read_only_connection_has_the_table_macros(tmp_path):
    """cbm status and cbm alerts read through open_alerts() and quarantine_listing(); a
    read-only connection (which never writes the schema) has them too."""
    from warehouse.db import Warehouse

    path = tmp_path / "warehouse.duckdb"
    with Warehouse(str(path)).connect():
        pass  # the schema, as a run makes it
    with Warehouse(str(path)).connect(read_only=True, readers=True) as con:
        assert con.execute(query("cli.unacknowledged")).fetchone() == (0,)
        assert con.execute(query("cli.quarantine"), {"party": None, "rule": None}).fetchall() == []
    stored = duckdb.connect(str(path), read_only=True)
    try:  # nothing of them is stored in the file
        assert stored.execute(
            "SELECT count(*) FROM duckdb_functions() WHERE function_name "
            "IN ('open_alerts', 'quarantine_listing')"
        ).fetchone() == (0,)
    finally:
        stored.close()
