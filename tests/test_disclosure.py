"""Disclosure control (contract §5): small cells, secondary suppression, TLP."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.conftest import add_regions, compliance, incident, write_csv
from warehouse.db import sql_file

CELLS = [  # subject, period, indicator, value, numerator, denominator, disclosure
    ("S", "2026-01", "definitive_incidents.a", 2, 2, None, "count"),
    ("S", "2026-01", "definitive_incidents.b", 7, 7, None, "count"),
    ("S", "2026-01", "definitive_incidents.c", 9, 9, None, "count"),
    ("S", "2026-01", "definitive_incidents.total", 18, 18, None, "count"),
    ("T", "2026-01", "definitive_incidents.a", 3, 3, None, "count"),
    ("T", "2026-01", "definitive_incidents.total", 3, 3, None, "count"),
    ("V", "2026-01", "definitive_incidents.a", 2, 2, None, "count"),
    ("V", "2026-01", "definitive_incidents.b", 3, 3, None, "count"),
    ("V", "2026-01", "definitive_incidents.total", 5, 5, None, "count"),
    ("W", "2026-01", "definitive_incidents.a", 5, 5, None, "count"),
    ("W", "2026-01", "definitive_incidents.total", 5, 5, None, "count"),
    ("S", "2026-01", "corroboration_yield", 0.5, 2, 4, "rate_of_counts"),
    ("T", "2026-01", "corroboration_yield", 0.4, 2, 5, "rate_of_counts"),
    ("S", "2026-01", "compliance_rate", 0.5, 1, 2, "none"),
]


@pytest.fixture
def published():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE indicator_values (subject VARCHAR, counterpart VARCHAR, period VARCHAR, indicator VARCHAR, "
        "value DOUBLE, numerator BIGINT, denominator BIGINT, escalation_level INTEGER, disclosure VARCHAR, status VARCHAR)"
    )
    con.executemany(
        "INSERT INTO indicator_values VALUES (?, NULL, ?, ?, ?, ?, ?, NULL, ?, 'definitive')", CELLS
    )
    con.execute(
        "CREATE TABLE party_directory (code VARCHAR, pseudonym VARCHAR, party_class VARCHAR, bloc VARCHAR, public_label VARCHAR)"
    )
    rows = con.execute(
        sql_file("published_indicators"), {"release_id": "r-x", "method_version": "m-x", "k": 5}
    ).fetchall()
    cols = [d[0] for d in con.description]
    return {
        (r["subject"], r["indicator"]): r
        for r in (dict(zip(cols, row, strict=True)) for row in rows)
    }


def suppressed(published, subject, indicator):
    return published[(subject, indicator)]["suppressed"]


def test_small_counts_are_suppressed_and_k_itself_is_not(published):
    assert suppressed(published, "S", "definitive_incidents.a")
    assert not suppressed(published, "W", "definitive_incidents.a")  # exactly k


def test_a_lone_suppressed_cell_gets_a_secondary_suppression(published):
    # S: a (2) is primary; without b the total 18 - 7 - 9 would give a away
    assert suppressed(published, "S", "definitive_incidents.b")
    assert not suppressed(published, "S", "definitive_incidents.c")
    assert not suppressed(published, "S", "definitive_incidents.total")


def test_no_suppressed_cell_can_be_recovered_from_the_total(published):
    for subject in ("S", "T", "V", "W"):
        cats = [
            v
            for (s, i), v in published.items()
            if s == subject and i.startswith("definitive_incidents.") and not i.endswith("total")
        ]
        total = published[(subject, "definitive_incidents.total")]
        hidden = [c for c in cats if c["suppressed"]]
        if total["suppressed"] or not hidden:
            continue
        assert len(hidden) >= 2, subject  # one unknown alone would equal total - sum(shown)


def test_total_below_k_is_suppressed_with_its_only_cell(published):
    assert suppressed(published, "T", "definitive_incidents.a") and suppressed(
        published, "T", "definitive_incidents.total"
    )


def test_rates_of_small_counts_are_suppressed(published):
    assert suppressed(published, "S", "corroboration_yield")
    assert not suppressed(published, "T", "corroboration_yield")
    assert not suppressed(published, "S", "compliance_rate")


def test_suppressed_rows_carry_no_numbers(published):
    for row in published.values():
        if row["suppressed"]:
            assert row["value"] is None and row["numerator"] is None and row["denominator"] is None


def test_amber_and_red_reports_never_reach_events_or_compliance(project):
    add_regions(project.registry, ["AMB", "RED", "GRN"])  # the regions name the TLP levels
    t = datetime(2026, 3, 1, tzinfo=UTC)
    for party in ("ALPHA", "BRAVO", "ACADEMY"):
        write_csv(
            project.inbox / party / "incidents_tlp.csv",
            [
                incident(
                    f"AMB-{party}",
                    region="AMB",
                    tlp="GREEN" if party != "BRAVO" else "AMBER",
                    occurred_at=t.isoformat(),
                    reported_at=(t + timedelta(hours=1)).isoformat(),
                    alleged_party="DELTA",
                ),
                incident(
                    f"RED-{party}",
                    region="RED",
                    tlp="RED",
                    occurred_at=t.isoformat(),
                    reported_at=(t + timedelta(hours=1)).isoformat(),
                    alleged_party="DELTA",
                ),
                incident(
                    f"GRN-{party}",
                    region="GRN",
                    tlp="CLEAR",
                    occurred_at=t.isoformat(),
                    reported_at=(t + timedelta(hours=1)).isoformat(),
                    alleged_party="DELTA",
                ),
            ],
        )
    write_csv(
        project.inbox / "ECHO" / "compliance_tlp.csv",
        [
            compliance("C-AMBER", subject_party="ECHO", tlp="AMBER"),
            compliance("C-GREEN", subject_party="ECHO", tlp="GREEN", period="2026-04"),
        ],
    )
    summary = project.run(as_of="2026-06-30T00:00:00+00:00")
    base = summary["release_path"]
    con = duckdb.connect()
    regions = {
        r
        for (r,) in con.execute(
            f"SELECT DISTINCT region FROM read_parquet('{base}/events/*/*.parquet')"
        ).fetchall()
    }
    assert regions == {"GRN"}
    # the AMBER and CLEAR events are verified (AMBER unpublished); RED never enters verification
    assert project.query("SELECT count(*) FROM incident_clusters WHERE status = 'definitive'") == [
        (2,)
    ]
    assert project.query("SELECT count(*) FROM incident_clusters WHERE region = 'RED'") == [(0,)]
    periods = {
        p
        for (p,) in con.execute(
            f"SELECT period FROM read_parquet('{base}/compliance/*/*.parquet', hive_partitioning=true) WHERE subject = 'Echo Islands' AND commitment_id = 'HOTLINE-TEST'"
        ).fetchall()
    }
    assert "2026-03" not in periods and "2026-04" in periods
    # the count of definitive incidents is the CLEAR event alone: the AMBER one reaches no
    # published figure, and a count the events product allows is published, not suppressed
    row = con.execute(
        f"SELECT value, suppressed FROM read_parquet('{base}/indicators/*/*.parquet', hive_partitioning=true) "
        "WHERE subject = 'Deltan Union' AND indicator = 'definitive_incidents.total' AND period = '2026-03'"
    ).fetchall()
    assert row == [(1.0, False)]


def _published(con, base: str, product: str) -> list[dict]:
    cur = con.execute(
        f"SELECT * FROM read_parquet('{base}/{product}/*/*.parquet', hive_partitioning=true)"
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def attack(con, base: str) -> dict[tuple, float]:
    """What an outsider recomputes from the published files of a release alone: every count
    and share the events and compliance products allow, and every cell a published total
    leaves as the only unknown. Keyed (subject, period, counterpart, indicator)."""
    from collections import Counter, defaultdict

    events = _published(con, base, "events")
    compliance_rows = _published(con, base, "compliance")
    indicators = _published(con, base, "indicators")
    got: dict[tuple, float] = {}
    definitive = Counter(
        (e["alleged"], e["period"], e["category"])
        for e in events
        if e["status"] == "definitive" and e["alleged"] != "unknown"  # no subject to count for
    )
    for (who, period, category), n in definitive.items():
        got[(who, period, None, f"definitive_incidents.{category}")] = n
        key = (who, period, None, "definitive_incidents.total")
        got[key] = got.get(key, 0) + n
    per_subject = defaultdict(list)
    for e in events:
        per_subject[(e["alleged"], e["period"])].append(e)
    for (who, period), rows in per_subject.items():
        if who != "unknown":
            multi = sum(r["n_sources_bucket"] != "1" for r in rows)
            got[(who, period, None, "corroboration_yield")] = multi / len(rows)
    verdicts = defaultdict(list)
    for r in compliance_rows:
        verdicts[(r["subject"], r["period"])].append(r["verdict"])
    for (who, period), found in verdicts.items():
        n = len(found)
        honoured = sum(v in ("honoured_confirmed", "honoured_self_reported") for v in found)
        got[(who, period, None, "compliance_rate")] = honoured / n
        got[(who, period, None, "confirmed_compliance_rate")] = (
            found.count("honoured_confirmed") / n
        )
        got[(who, period, None, "dispute_rate")] = found.count("disputed") / n
    # subtraction: a total with exactly one of its parts withheld
    by_group = defaultdict(list)
    for r in indicators:
        if r["indicator"].startswith("definitive_incidents."):
            by_group[(r["subject"], r["period"])].append(r)
    for (who, period), rows in by_group.items():
        total = next((r for r in rows if r["indicator"].endswith(".total")), None)
        hidden = [r for r in rows if r["suppressed"] and not r["indicator"].endswith(".total")]
        if total and not total["suppressed"] and len(hidden) == 1:
            known = sum(r["value"] for r in rows if not r["suppressed"] and r is not total)
            got[(who, period, None, hidden[0]["indicator"])] = total["value"] - known
    return got


def test_an_attacker_recovers_no_suppressed_cell_and_products_agree(generated_run):
    """Disclosure control protects something: no suppressed cell comes out exact from any
    combination of the published files (events included), and what two products both
    answer they answer with the same number."""
    deployment, summary = generated_run
    base = summary["release_path"]
    con = duckdb.connect()
    recovered = attack(con, base)
    published = {
        (r["subject"], r["period"], r["counterpart"], r["indicator"]): r
        for r in _published(con, base, "indicators")
    }
    # the truth behind the suppressed cells, from the warehouse (member tier)
    truth = {
        (subject, period, counterpart, indicator): value
        for subject, period, counterpart, indicator, value in deployment.query(
            "SELECT coalesce(p.public_label, p.pseudonym, v.subject), v.period, v.counterpart, "
            "v.indicator, v.value FROM indicator_values v "
            "LEFT JOIN party_directory p ON p.code = v.subject"
        )
    }
    suppressed = [k for k, r in published.items() if r["suppressed"]]
    assert suppressed, "the generated release should have suppressed cells to attack"
    exact = [k for k in suppressed if k in recovered and recovered[k] == truth[k]]
    assert exact == [], exact
    # a figure derived only from what another product publishes is published, and agrees
    derivable = {k: v for k, v in recovered.items() if k in published}
    assert len(derivable) > 50
    disagree = {
        k: (published[k]["value"], v)
        for k, v in derivable.items()
        if published[k]["suppressed"] or published[k]["value"] != v
    }
    assert disagree == {}
    # and every definitive incident count the events product allows is an indicator row
    counts = {k for k in recovered if k[3].startswith("definitive_incidents.")}
    assert counts <= published.keys()


def test_the_dictionary_says_when_definitive_incidents_are_tentative(generated_run):
    """dictionary.json's status claim for definitive_incidents, against the published rows:
    tentative only in a month whose review window had not elapsed at the as-of time."""
    import datetime as dt
    import json as _json

    import duckdb as _duckdb

    project, summary = generated_run
    release = Path(summary["release_path"])
    manifest = _json.loads((release / "manifest.json").read_text())
    as_of = dt.datetime.fromisoformat(manifest["as_of"]).date()
    review = manifest["policy"]["review_window_days"]
    dictionary = _json.loads((release / "dictionary.json").read_text())
    assert "review window" in _json.dumps(dictionary)
    rows = _duckdb.sql(
        f"SELECT period, status FROM read_parquet('{release}/indicators/*/*.parquet', "
        "hive_partitioning=true) WHERE indicator LIKE 'definitive_incidents.%'"
    ).fetchall()
    assert rows
    for period, status in rows:
        first = dt.date.fromisoformat(period + "-01")
        last = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        closed = as_of >= last + dt.timedelta(days=review + 1)
        assert status == ("definitive" if closed else "tentative"), (period, status)
