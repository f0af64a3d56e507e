"""The submission rules of warehouse/sql, on a warehouse filled by hand (no Dagster, no run):
the ``submissions`` view (status and accounting) and ``submission_status.sql`` (what
``cbm status`` lists: repeats, fixed re-sends, reasons and warnings)."""

from datetime import UTC, datetime, timedelta

import pytest

from warehouse.db import Warehouse, sql_file

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def sha(n: int) -> str:
    return f"{n:064x}"


def land(con, n: int, paths: list[str], party="ALPHA", rule=None, minutes=0) -> None:
    con.execute(
        "INSERT INTO landed_submissions VALUES (?, ?, ?, 'src', 'k1', 'incidents', 'csv', ?, ?, "
        "10, ?, 'landing', 'none', ?, ?, ?)",
        [
            sha(n),
            sha(n + 1000),
            party,
            paths[0],
            paths,
            T0 + timedelta(minutes=minutes),
            f"key-{n}",
            rule,
            f"{rule}: reason" if rule else None,
        ],
    )


def stage(con, n: int, rows: int, rule=None, notes='["extra column x ignored"]') -> None:
    con.execute(
        "INSERT INTO staged_submissions VALUES (?, ?, ?, ?, ?)",
        [sha(n), rows, notes, rule, f"{rule}: cannot read" if rule else None],
    )


def accept(con, n: int, *rows: int, version: int = 1) -> None:
    for row in rows:
        con.execute(
            "INSERT INTO reports_incidents BY NAME SELECT ? AS submission_sha, ? AS row_number, "
            "'src' AS source, ? AS report_id, ? AS version",
            [sha(n), row, f"R-{n}-{row}", version],
        )


def find(con, n: int, row: int, rule: str, severity: str = "critical") -> None:
    con.execute(
        "INSERT INTO validation_findings VALUES (?, ?, ?, ?, 'expect_x', 'col', 'v', ?, ?)",
        [sha(n), row, f"R-{n}-{row}", rule, f"row {row} breaks {rule}", severity],
    )


@pytest.fixture
def con(tmp_path):
    with Warehouse(str(tmp_path / "warehouse.duckdb")).connect() as con:
        yield con


def submissions(con) -> dict[str, tuple]:
    rows = con.execute(
        "SELECT sha256, status, rows_read, rows_accepted, rows_quarantined FROM submissions"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def status_rows(con) -> list[dict]:
    cursor = con.execute(sql_file("submission_status"))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def test_each_status_and_the_accounting(con):
    land(con, 1, ["whole.csv"])
    stage(con, 1, 2)
    accept(con, 1, 1, 2)
    land(con, 2, ["partial.csv"])
    stage(con, 2, 3)
    accept(con, 2, 1, 2)
    find(con, 2, 3, "severity_range")
    find(con, 2, 3, "region_known")  # one row, two rules: quarantined once
    land(con, 3, ["unregistered.csv"], rule="unregistered_party")
    land(con, 4, ["unreadable.csv"])
    stage(con, 4, 0, rule="unreadable_file")
    land(con, 5, ["landed.csv"])
    land(con, 6, ["none_passed.csv"])
    stage(con, 6, 1)
    find(con, 6, 1, "severity_range")
    land(con, 7, ["conflict.csv"])
    stage(con, 7, 1)
    accept(con, 7, 1)
    con.execute(
        "INSERT INTO version_conflicts VALUES ('incidents', ?, 1, 'src', 'R-7-1', 1, 2)", [sha(7)]
    )
    got = submissions(con)
    assert got == {
        sha(1): ("accepted", 2, 2, 0),
        sha(2): ("partial", 3, 2, 1),
        sha(3): ("rejected", 0, 0, 0),
        sha(4): ("rejected", 0, 0, 0),
        sha(5): ("landed", 0, 0, 0),
        sha(6): ("rejected", 1, 0, 1),
        # accepted by its suite, then set aside: a version with two contents
        sha(7): ("rejected", 1, 0, 1),
    }
    for status, read, accepted, quarantined in got.values():
        assert read == accepted + quarantined, status


def test_cbm_status_lists_reasons_warnings_repeats_and_fixed_re_sends(con):
    land(con, 1, ["a.csv", "copy_of_a.csv"])  # the same bytes under a second name
    stage(con, 1, 3)
    accept(con, 1, 1, 2)
    find(con, 1, 3, "severity_range")
    find(con, 1, 3, "region_known")
    find(con, 1, 2, "late_report", severity="warning")  # kept, said
    land(con, 2, ["b.csv"], rule="empty_file", minutes=1)
    land(con, 3, ["b.csv"], minutes=2)  # the party's fixed re-send under the same name
    stage(con, 3, 1, notes="[]")
    accept(con, 3, 1)
    rows = {r["file_name"]: r for r in status_rows(con)}
    first, repeat = rows["a.csv"], rows["copy_of_a.csv"]
    assert (first["rows_read"], first["rows_accepted"], first["rows_quarantined"]) == (3, 2, 1)
    assert dict(first["reasons"]) == {"region_known": 1, "severity_range": 1}
    assert dict(first["messages"])["severity_range"] == "row 3 breaks severity_range"
    assert first["warnings"] == [
        "extra column x ignored",
        "late_report (1 rows kept): row 2 breaks late_report",
    ]
    # a repeat is a path, not a submission: listed, counted nowhere
    assert repeat["duplicate_of"] == "ALPHA/a.csv" and repeat["rows_read"] == 0
    assert repeat["submission"] == first["submission"]
    by_submission = {r["submission"]: r for r in status_rows(con) if r["file_name"] == "b.csv"}
    assert by_submission[sha(2)]["status"] == "rejected"
    assert by_submission[sha(2)]["superseded_by"] == sha(3)
    assert by_submission[sha(3)]["superseded_by"] is None
