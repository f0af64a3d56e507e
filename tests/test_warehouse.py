"""The warehouse's current_<kind> views, kept by refresh_superseded instead of ranking every
version of every report on each read."""

import random

import pytest

from warehouse.db import Warehouse, refresh_superseded

RANKED = """SELECT submission_sha, row_number FROM (
  SELECT *, row_number() OVER (PARTITION BY source, report_id
                               ORDER BY version DESC, submission_sha, row_number) AS rn
  FROM reports_incidents) WHERE rn = 1"""


def _submit(con, sha, rows, columns=("row_number", "source", "report_id", "version")):
    """Rows (by default: row_number, source, report_id, version) of one submission, accepted
    as they are."""
    names = ", ".join(("submission_sha", *columns))
    marks = ", ".join("?" * (len(columns) + 1))
    for table in ("anon_incidents", "reports_incidents"):
        con.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({marks})", [(sha, *r) for r in rows]
        )


def _current(con):
    return sorted(
        con.execute("SELECT submission_sha, row_number FROM current_incidents").fetchall()
    )


def test_current_is_the_highest_version_as_submissions_come_and_go(tmp_path):
    rng = random.Random(7)
    with Warehouse(path=str(tmp_path / "w.duckdb")).connect() as con:
        shas = [f"{i:064x}" for i in range(6)]
        for sha in shas:
            rows = [
                (n, rng.choice(["P-a", "P-b"]), f"R{rng.randrange(8)}", rng.randrange(3))
                for n in range(12)
            ]
            _submit(con, sha, rows)
            refresh_superseded(con, "incidents", [sha])
            assert _current(con) == sorted(con.execute(RANKED).fetchall())
        # a submission re-validated with fewer rows accepted: its old rows go, others rise
        con.execute(
            "DELETE FROM reports_incidents WHERE submission_sha = ? AND row_number < 6", [shas[5]]
        )
        refresh_superseded(con, "incidents", [shas[5]])
        assert _current(con) == sorted(con.execute(RANKED).fetchall())
        assert con.execute("SELECT count(*) FROM superseded_incidents").fetchone()[0] > 0


# from scratch: copies of one version with different content conflict and are all set
# aside; the current row is the highest version of the rest
CONFLICTS = """SELECT submission_sha, row_number FROM (
  SELECT *, count(DISTINCT severity) OVER (PARTITION BY source, report_id, version) AS n
  FROM reports_incidents) WHERE n > 1"""
RANKED_WITHOUT_CONFLICTS = f"""SELECT submission_sha, row_number FROM (
  SELECT *, row_number() OVER (PARTITION BY source, report_id
                               ORDER BY version DESC, submission_sha, row_number) AS rn
  FROM reports_incidents WHERE (submission_sha, row_number) NOT IN ({CONFLICTS})) WHERE rn = 1"""


def test_conflicts_and_current_rows_match_a_recomputation_from_scratch(tmp_path):
    """Random histories with re-sent versions, copies with other content and reports sent
    once: after each submission the kept conflicts and current rows are what ranking and
    hashing the whole table gives (only reports with several rows are re-examined)."""
    rng = random.Random(11)
    with Warehouse(path=str(tmp_path / "w.duckdb")).connect() as con:
        for i in range(12):
            sha = f"{i:064x}"
            rows = [
                (
                    n,
                    rng.choice(["P-a", "P-b"]),
                    f"R{rng.randrange(30)}",
                    rng.randrange(3),
                    rng.choice([1, 1, 1, 2]),
                )
                for n in range(15)
            ]
            _submit(con, sha, rows, ("row_number", "source", "report_id", "version", "severity"))
            refresh_superseded(con, "incidents", [sha])
            conflicts = sorted(
                con.execute("SELECT submission_sha, row_number FROM version_conflicts").fetchall()
            )
            assert conflicts == sorted(con.execute(CONFLICTS).fetchall())
            assert _current(con) == sorted(con.execute(RANKED_WITHOUT_CONFLICTS).fetchall())
        assert conflicts and con.execute("SELECT count(*) FROM superseded_incidents").fetchone()[0]


def test_an_older_warehouse_gets_its_superseded_rows_on_first_connection(tmp_path):
    path = tmp_path / "w.duckdb"
    with Warehouse(path=str(path)).connect() as con:
        _submit(con, "a" * 64, [(1, "P-a", "R1", 1), (2, "P-a", "R1", 2)])
        con.execute("DROP TABLE superseded_incidents")  # as before the table existed
        con.execute("DROP TABLE schema_state")  # and before the schema's digest
    import warehouse.db as db

    db._SCHEMA_DONE.clear()
    with Warehouse(path=str(path)).connect() as con:
        assert _current(con) == [("a" * 64, 2)]


def test_a_warehouse_of_the_old_layout_is_migrated_and_rebuilt_from_landing(project):
    """Before one writer per table, submissions and quarantine were tables: the next run
    drops them and ingests every landed submission again, with the same result."""
    from tests.conftest import incident, write_csv
    from warehouse.db import Warehouse, schema_ddl

    write_csv(
        project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1"), incident("A-2", severity=9)]
    )
    project.run(ingest_only=True)
    before = project.query("SELECT file_name, status, rows_read, rows_accepted FROM submissions")
    path = project.workdir / "warehouse.duckdb"
    with Warehouse(str(path)).connect() as con:  # back to the old layout
        con.execute("DROP VIEW submissions")
        con.execute("DROP VIEW quarantine")
        con.execute("CREATE TABLE submissions (sha256 VARCHAR, status VARCHAR)")
        con.execute("CREATE TABLE quarantine (submission_sha VARCHAR)")
        con.execute("DROP TABLE schema_state")  # it came later
    for meta in (project.workdir / "landing").rglob("*.json"):  # sidecars of that time
        meta.write_text(meta.read_text().replace('"ingested_key"', '"old_key"'))
    import warehouse.db as db

    db._SCHEMA_DONE.clear()
    assert "CREATE OR REPLACE VIEW submissions" in schema_ddl()
    project.run(ingest_only=True)
    assert (
        project.query("SELECT file_name, status, rows_read, rows_accepted FROM submissions")
        == before
    )


def test_the_warehouse_keeps_duckdb_within_its_memory_limit(tmp_path, monkeypatch):
    """DuckDB's memory limit reaches every connection: the default, a setting, or
    CBM_DUCKDB_MEMORY; a value DuckDB would not take is refused, naming it."""
    from warehouse.db import DEFAULT_MEMORY_LIMIT, memory_limit
    from warehouse.resource import WarehouseResource

    def limit_of(connect):
        with connect() as con:
            return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    path = str(tmp_path / "warehouse.duckdb")
    assert DEFAULT_MEMORY_LIMIT == "1.5GiB"
    assert limit_of(Warehouse(path).connect) == "1.5 GiB"
    assert limit_of(lambda: Warehouse(path, memory_limit="700MiB").connect(read_only=True)) == (
        "700.0 MiB"
    )
    monkeypatch.setenv("CBM_DUCKDB_MEMORY", "300MiB")
    assert limit_of(WarehouseResource(workdir=str(tmp_path)).connect) == "300.0 MiB"
    setting = WarehouseResource(workdir=str(tmp_path), memory_limit="2GiB")
    assert limit_of(setting.connect) == "2.0 GiB"  # the setting wins over the variable
    assert memory_limit(None) == memory_limit(" ") == DEFAULT_MEMORY_LIMIT
    assert memory_limit(" 25% ") == "25%"
    for wrong in ("lots", "-1GB", "1GB'; DROP TABLE x; --"):
        with pytest.raises(ValueError, match="CBM_DUCKDB_MEMORY=.*memory limit"):
            memory_limit(wrong)


def test_anonymised_rows_are_written_in_order_and_in_whole_row_groups(tmp_path):
    """Many submissions' frames go in as whole DuckDB row groups (only the last may be part
    filled), in the order they came: part-filled row groups made the next checkpoint rewrite
    the table (1M incident rows: 2.2 s, as long as the insert itself)."""
    import polars as pl

    from assets.anonymised import BATCH_ROWS, ROW_GROUP_ROWS, _insert
    from cbm.contract import FIELDS

    def frame(start, n):
        numbers = pl.int_range(start, start + n, eager=True, dtype=pl.Int64)
        fields = {f: pl.Series(f, [None] * n, dtype=pl.String) for f in FIELDS["compliance"]}
        fields["report_id"] = ("C-" + numbers.cast(pl.String)).alias("report_id")
        fields["version"] = pl.Series("version", ["1"] * n)
        return pl.DataFrame(
            {
                "source": ["P-a"] * n,
                "row_number": numbers,
                **fields,
                "row_error": None,
                "row_origin": None,
            }
        ).with_columns(pl.lit("s" * 64).alias("_sha"))

    sizes = [7_001, 30_000, 123_457, 2, 99_999, 64_000, 50_000, 11]
    pending, start = [], 0
    with Warehouse(path=str(tmp_path / "w.duckdb")).connect() as con:
        for n in sizes:
            pending.append(frame(start, n))
            start += n
            if sum(f.height for f in pending) >= BATCH_ROWS:
                _insert(con, "compliance", pending)
                assert sum(f.height for f in pending) < ROW_GROUP_ROWS
        _insert(con, "compliance", pending, last=True)
        assert pending == []
        groups = con.execute(
            "SELECT row_group_id, sum(count) FROM pragma_storage_info('anon_compliance') "
            "WHERE column_name = 'row_number' AND segment_type = 'BIGINT' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        stored = [n for (n,) in con.execute("SELECT row_number FROM anon_compliance").fetchall()]
        versions = con.execute("SELECT DISTINCT version FROM anon_compliance").fetchall()
    assert stored == list(range(sum(sizes)))  # every row, in the order handed over
    assert versions == [(1,)]  # cast as before
    counts = [n for _, n in groups]
    assert counts[:-1] == [ROW_GROUP_ROWS] * (len(counts) - 1), counts
    assert sum(counts) == sum(sizes)


def test_a_run_holds_one_connection_to_a_small_warehouse_only(tmp_path):
    """A small warehouse is opened once per run (its steps join that connection: M17); a
    large one by each step, so no buffer pool stays warm between steps."""
    from warehouse.db import HOLD_BELOW_BYTES
    from warehouse.resource import WarehouseResource

    small = WarehouseResource(workdir=str(tmp_path / "small"))
    small.setup_for_execution(None)
    try:
        assert small._held is not None and small.path.exists()
    finally:
        small.teardown_after_execution(None)
    assert small._held is None
    (tmp_path / "large").mkdir()
    with open(tmp_path / "large" / "warehouse.duckdb", "wb") as f:
        f.truncate(HOLD_BELOW_BYTES + 1)  # its size is all that is looked at
    large = WarehouseResource(workdir=str(tmp_path / "large"))
    large.setup_for_execution(None)
    assert large._held is None
    large.teardown_after_execution(None)


DISPLAY_ONLY = {"enable_progress_bar"}  # how a query shows its progress, never what it returns


def _settings(con) -> dict:
    rows = con.execute("SELECT name, value FROM duckdb_settings()").fetchall()
    return {name: value for name, value in rows if name not in DISPLAY_ONLY}


def test_a_cursor_for_another_thread_is_set_as_its_connection_is(tmp_path):
    """The member bundle is written on a thread of its own (M35), over ``thread_cursor``: a
    plain ``cursor()`` does not inherit the connection's session (its time zone reads
    Etc/UTC, which changes the Arrow type and so the Parquet bytes)."""
    import pyarrow.parquet as pq

    from cbm.release import write_table
    from warehouse.db import fetch_arrow, thread_cursor

    with Warehouse(path=str(tmp_path / "w.duckdb")).connect() as con:
        con.execute("CREATE TABLE t AS SELECT TIMESTAMPTZ '2026-12-07 10:00:00+00' AS at")
        plain = con.cursor()
        assert _settings(plain)["TimeZone"] != _settings(con)["TimeZone"]  # why it exists
        cursor = thread_cursor(con)
        try:
            assert _settings(cursor) == _settings(con)
            made = [
                write_table(tmp_path / name, "t.parquet", fetch_arrow(c, "SELECT * FROM t"))
                for name, c in (("con", con), ("cursor", cursor), ("plain", plain))
            ]
        finally:
            cursor.close()
            plain.close()
    assert made[0]["sha256"] == made[1]["sha256"] != made[2]["sha256"]
    assert str(pq.read_schema(tmp_path / "cursor" / "t.parquet").field("at").type.tz) == "UTC"
