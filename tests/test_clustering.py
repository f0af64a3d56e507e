"""Incident association: origin-anchored windows, no chaining, stable ids."""

from datetime import UTC, datetime, timedelta

import polars as pl

from cbm.clustering import assign_events

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _reports(rows):
    return pl.DataFrame(
        [
            {
                "source": s,
                "report_id": f"R{i}",
                "category": c,
                "region": r,
                "occurred_at": T0 + timedelta(hours=h),
            }
            for i, (s, c, r, h) in enumerate(rows)
        ]
    )


def _groups(frame):
    return sorted(
        sorted(g) for g in frame.group_by("event_id").agg("report_id")["report_id"].to_list()
    )


def test_exactly_at_the_window_edge_joins_just_beyond_does_not():
    w = {"border_incident": 24}
    inside = assign_events(
        _reports([("A", "border_incident", "EST", 0), ("B", "border_incident", "EST", 24)]), w
    )
    assert inside["event_id"].n_unique() == 1
    beyond = assign_events(
        _reports([("A", "border_incident", "EST", 0), ("B", "border_incident", "EST", 24.01)]), w
    )
    assert beyond["event_id"].n_unique() == 2


def test_no_transitive_chaining():
    w = {"border_incident": 48}
    out = assign_events(_reports([("A", "border_incident", "EST", h) for h in (0, 40, 80, 120)]), w)
    assert _groups(out) == [["R0", "R1"], ["R2", "R3"]]
    assert out.filter(pl.col("is_origin"))["report_id"].sort().to_list() == ["R0", "R2"]


def test_category_and_region_separate_events():
    w = {"border_incident": 48, "airspace_violation": 48}
    out = assign_events(
        _reports(
            [
                ("A", "border_incident", "EST", 0),
                ("B", "border_incident", "LVA", 1),
                ("C", "airspace_violation", "EST", 1),
            ]
        ),
        w,
    )
    assert out["event_id"].n_unique() == 3


def test_event_ids_are_stable_and_independent_of_input_order():
    w = {"border_incident": 48}
    rows = [
        ("A", "border_incident", "EST", 0),
        ("B", "border_incident", "EST", 5),
        ("C", "border_incident", "EST", 100),
    ]
    a = assign_events(_reports(rows), w).sort("report_id")
    b = assign_events(_reports(rows).reverse(), w).sort("report_id")
    assert a["event_id"].to_list() == b["event_id"].to_list()


def test_rows_sorted_by_duckdb_give_the_same_events_as_polars_sorting():
    """The pipeline lets DuckDB sort (ORDER_SQL) and passes presorted=True: same events,
    including NULL regions, ties in time and groups with one report."""
    import duckdb

    from cbm.clustering import ORDER_SQL

    w = {"border_incident": 24, "cyber_intrusion": 72}
    rows = [
        (s, c, r, h)
        for s, c, r, h in [
            ("B", "border_incident", "EST", 0),
            ("A", "border_incident", "EST", 0),
            ("A", "border_incident", None, 3),
            ("C", "border_incident", None, 30),
            ("A", "cyber_intrusion", "LVA", 70),
            ("B", "cyber_intrusion", "LVA", 71),
            ("C", "cyber_intrusion", "LVA", 145),
            ("D", "cyber_intrusion", "EST", 1),
        ]
    ]
    frame = _reports(rows)
    sorted_in_duckdb = duckdb.sql(f"SELECT * FROM frame ORDER BY {ORDER_SQL}").pl()
    a = assign_events(frame, w).sort("report_id")
    b = assign_events(sorted_in_duckdb, w, presorted=True).sort("report_id")
    assert a.select("report_id", "event_id", "is_origin").equals(
        b.select("report_id", "event_id", "is_origin")
    )
    assert a["event_id"].n_unique() == 6
