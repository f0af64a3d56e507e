"""The warehouse's current_<kind> views, kept by refresh_superseded instead of ranking every
version of every report on each read."""

import random

from warehouse.db import Warehouse, refresh_superseded

RANKED = """SELECT submission_sha, row_number FROM (
  SELECT *, row_number() OVER (PARTITION BY source, report_id
                               ORDER BY version DESC, submission_sha, row_number) AS rn
  FROM reports_incidents) WHERE rn = 1"""


def _submit(con, sha, rows):
    """Rows (row_number, source, report_id, version) of one submission, accepted as they are."""
    for table in ("anon_incidents", "reports_incidents"):
        con.executemany(
            f"INSERT INTO {table} (submission_sha, row_number, source, report_id, version) "
            "VALUES (?, ?, ?, ?, ?)",
            [(sha, *r) for r in rows],
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


def test_an_older_warehouse_gets_its_superseded_rows_on_first_connection(tmp_path):
    path = tmp_path / "w.duckdb"
    with Warehouse(path=str(path)).connect() as con:
        _submit(con, "a" * 64, [(1, "P-a", "R1", 1), (2, "P-a", "R1", 2)])
        con.execute("DROP TABLE superseded_incidents")  # as before the table existed
    import warehouse.db as db

    db._SCHEMA_DONE.clear()
    with Warehouse(path=str(path)).connect() as con:
        assert _current(con) == [("a" * 64, 2)]
