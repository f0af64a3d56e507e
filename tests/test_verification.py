"""Verification semantics on hand-made scenarios with known answers (DESIGN.md, policy.yaml).

One inbox, one run at a fixed as-of; every scenario lives in its own region so they do not
interfere. Boundaries: exactly 3 sources, exactly at the review window and the expiry, same
bloc vs non-aligned, a contradiction after definitive, a notification one day short of the
lead time, an SLA missed by a minute, a shared technical key, a report inside the radius.
"""

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from tests.conftest import add_regions, attestation, compliance, incident, write_csv, write_registry

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)


def ts(dt: datetime) -> str:
    return dt.isoformat()


def inc(rid, region, occurred, reported=None, **kw):
    reported = reported or occurred + timedelta(hours=1)
    return incident(rid, region=region, occurred_at=ts(occurred), reported_at=ts(reported), **kw)


OLD = AS_OF - timedelta(days=40)


def scenario_rows():
    by_party: dict[tuple[str, str], list[dict]] = {}

    def add(party, kind, row):
        by_party.setdefault((party, kind), []).append(row)

    # definitive: exactly 3 sources, 2 classes, ACADEMY non-aligned, last report exactly 14 days ago
    last = AS_OF - timedelta(days=14)
    for party, rid in (("ALPHA", "DEF-1"), ("BRAVO", "DEF-2"), ("ACADEMY", "DEF-3")):
        add(
            party,
            "incidents",
            inc(
                rid,
                "DEF",
                last - timedelta(hours=5),
                last if rid == "DEF-3" else None,
                alleged_party="DELTA",
            ),
        )
    # the same, one minute short of the review window: tentative, "in review"
    last = AS_OF - timedelta(days=14) + timedelta(minutes=1)
    for party, rid in (("ALPHA", "REV-1"), ("BRAVO", "REV-2"), ("ACADEMY", "REV-3")):
        add(
            party,
            "incidents",
            inc(
                rid,
                "REV",
                last - timedelta(hours=5),
                last if rid == "REV-3" else None,
                alleged_party="DELTA",
            ),
        )
    # two independent sources: tentative
    for party, rid in (("ALPHA", "TWO-1"), ("DELTA", "TWO-2")):
        add(party, "incidents", inc(rid, "TWO", OLD, alleged_party="ECHO"))
    # three sources, two classes, but everyone in the reporter's bloc: not definitive
    for party, rid in (("ALPHA", "BLC-1"), ("BRAVO", "BLC-2"), ("NORTHOBS", "BLC-3")):
        add(
            party,
            "incidents",
            inc(rid, "BLC", OLD + timedelta(minutes=int(rid[-1])), alleged_party="DELTA"),
        )
    # definitive, then contradicted by an attestation: disputed
    for party, rid in (("ALPHA", "CON-1"), ("BRAVO", "CON-2"), ("ACADEMY", "CON-3")):
        add(party, "incidents", inc(rid, "CON", OLD, alleged_party="DELTA"))
    add(
        "GOLF",
        "attestations",
        attestation(
            "ATT-CON",
            subject_party="ALPHA",
            subject_kind="incidents",
            subject_report_id="CON-1",
            stance="contradicts",
            observed_at=ts(AS_OF - timedelta(days=2)),
        ),
    )
    # one source corroborated by another party's attestation: tentative
    add("ALPHA", "incidents", inc("COR-1", "COR", OLD, alleged_party="DELTA"))
    add(
        "INTLORG",
        "attestations",
        attestation(
            "ATT-COR",
            subject_party="ALPHA",
            subject_kind="incidents",
            subject_report_id="COR-1",
            observed_at=ts(OLD + timedelta(days=1)),
        ),
    )
    # one source: expired just past 90 days; still reported at exactly 90 days
    add(
        "BRAVO",
        "incidents",
        inc("EXP-1", "EXP", AS_OF - timedelta(days=91), AS_OF - timedelta(days=90, minutes=1)),
    )
    add(
        "BRAVO",
        "incidents",
        inc("NEX-1", "NEX", AS_OF - timedelta(days=91), AS_OF - timedelta(days=90)),
    )
    # shared technical key across regions inside the window joins; outside the window does not
    key = "10.9.8.7;sha256:feedbeef"
    t = OLD
    add(
        "ALPHA", "incidents", inc("KEY-1", "KYA", t, category="cyber_intrusion", technical_keys=key)
    )
    add(
        "ECHO",
        "incidents",
        inc(
            "KEY-2",
            "KYB",
            t + timedelta(hours=10),
            category="cyber_intrusion",
            technical_keys="SHA256:FEEDBEEF",
        ),
    )
    add(
        "FOXTROT",
        "incidents",
        inc(
            "KEY-3", "KYC", t + timedelta(hours=200), category="cyber_intrusion", technical_keys=key
        ),
    )
    # within the 50 km radius of the origin joins across regions; 111 km does not
    add(
        "ALPHA",
        "incidents",
        inc("DST-1", "DSA", t, category="airspace_violation", lat=55.0, lon=20.0),
    )
    add(
        "BRAVO",
        "incidents",
        inc(
            "DST-2",
            "DSB",
            t + timedelta(hours=2),
            category="airspace_violation",
            lat=55.2,
            lon=20.1,
        ),
    )
    add(
        "CHARLIE",
        "incidents",
        inc(
            "DST-3",
            "DSC",
            t + timedelta(hours=3),
            category="airspace_violation",
            lat=56.0,
            lon=20.0,
        ),
    )
    # escalation: three definitive severity-5 events in May against DELTA in ESC (sum 15 -> level 2)
    for d in (20, 22, 24):
        for party in ("ALPHA", "BRAVO", "ACADEMY"):
            add(
                party,
                "incidents",
                inc(
                    f"ESC-{d}-{party}",
                    "ESC",
                    datetime(2026, 5, d, tzinfo=UTC),
                    severity=5,
                    alleged_party="DELTA",
                ),
            )
    # tentative evidence only: seven two-source severity-5 events (sum 35 -> level 3, capped at 2)
    for d in range(2, 16, 2):
        for party in ("ALPHA", "BRAVO"):
            add(
                party,
                "incidents",
                inc(
                    f"TEN-{d}-{party}",
                    "TEN",
                    datetime(2026, 5, d, tzinfo=UTC),
                    severity=5,
                    alleged_party="ECHO",
                ),
            )

    # compliance, period 2026-03
    start = datetime(2026, 3, 20, 6, tzinfo=UTC)
    add(
        "ALPHA",
        "compliance",
        compliance(
            "N-42",
            commitment_id="VD11-V-NOTIFY",
            subject_party="ALPHA",
            requested_at=None,
            responded_at=None,
            notified_at=ts(start - timedelta(days=42)),
            activity_start=ts(start),
        ),
    )
    add(
        "BRAVO",
        "compliance",
        compliance(
            "N-41",
            commitment_id="VD11-V-NOTIFY",
            subject_party="BRAVO",
            requested_at=None,
            responded_at=None,
            notified_at=ts(start - timedelta(days=41)),
            activity_start=ts(start),
        ),
    )
    req = datetime(2026, 3, 2, 9, tzinfo=UTC)
    add(
        "CHARLIE",
        "compliance",
        compliance(
            "H-48",
            subject_party="CHARLIE",
            requested_at=ts(req),
            responded_at=ts(req + timedelta(hours=48)),
        ),
    )
    add(
        "DELTA",
        "compliance",
        compliance(
            "H-48m1",
            subject_party="DELTA",
            requested_at=ts(req),
            responded_at=ts(req + timedelta(hours=48, minutes=1)),
        ),
    )
    add("FOXTROT", "compliance", compliance("H-CONF", subject_party="FOXTROT"))
    add(
        "INTLORG",
        "attestations",
        attestation("ATT-H", subject_party="FOXTROT", subject_report_id="H-CONF"),
    )
    add("GOLF", "compliance", compliance("H-DISP", subject_party="GOLF"))
    add(
        "ACADEMY",
        "attestations",
        attestation(
            "ATT-D", subject_party="GOLF", subject_report_id="H-DISP", stance="contradicts"
        ),
    )
    add(
        "ECHO", "compliance", compliance("H-ECHO-3", subject_party="ECHO")
    )  # ECHO then reports nothing for April
    return by_party


@pytest.fixture(scope="module")
def verified(tmp_path_factory, dagster_home_template):
    from tests.conftest import TEST_KEY, dagster_home_from

    base = tmp_path_factory.mktemp("verify")
    env = pytest.MonkeyPatch()  # module scope: before the per-test environment, undone after
    env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
    env.setenv("DAGSTER_HOME", str(dagster_home_from(dagster_home_template, base / "dh")))
    registry = write_registry(base / "registry")
    parties = yaml.safe_load((registry / "parties.yaml").read_text())
    parties.append(
        {
            "code": "NORTHOBS",
            "name": "Northern Observatory",
            "class": "observer_academic",
            "bloc": "north",
            "public_label": None,
            "public_key": None,
        }
    )
    write_registry(registry, parties)
    # the scenarios' regions are their labels ("TWO", "BLC"): let incidents name them
    add_regions(
        registry, {r["region"] for rows in scenario_rows().values() for r in rows if "region" in r}
    )
    for (party, kind), rows in scenario_rows().items():
        write_csv(base / "inbox" / party / f"{kind}_scenarios.csv", rows)
    from pipelines.cli import run_pipeline
    from warehouse.db import Warehouse

    try:
        summary = run_pipeline(
            base / "inbox", registry, base / "work", base / "publish", AS_OF.isoformat()
        )
    finally:
        env.undo()
    assert summary["rows_quarantined"] == 0

    class View:
        def __init__(self):
            self.con = Warehouse(path=str(base / "work" / "warehouse.duckdb"))

        def q(self, sql, params=None):
            with self.con.connect() as con:
                return con.execute(sql, params or []).fetchall()

        def event_of(self, report_id):
            return self.q(
                "SELECT c.event_id, c.status, c.status_reason, c.n_sources FROM incident_clusters c "
                "JOIN event_members m USING (event_id) WHERE m.report_id = ?",
                [report_id],
            )[0]

        def verdict(self, subject, commitment, period="2026-03"):
            rows = self.q(
                "SELECT verdict, status, verdict_reason FROM compliance_verdicts WHERE subject = ? AND commitment_id = ? AND period = ?",
                [subject, commitment, period],
            )
            return rows[0] if rows else None

    return View()


@pytest.mark.parametrize(
    ("report_id", "status", "reason_part"),
    [
        ("DEF-1", "definitive", "3 sources from 2 classes incl. non-aligned"),
        ("REV-1", "tentative", "in review until"),
        ("TWO-1", "tentative", "2 independent sources"),
        ("BLC-1", "tentative", "3 independent sources"),
        ("CON-1", "disputed", "contradicts attestation"),
        ("COR-1", "tentative", "one source corroborated by"),
        ("EXP-1", "expired", "older than 90 days"),
        ("NEX-1", "reported", "single source"),
    ],
)
def test_status_ladder(verified, report_id, status, reason_part):
    _, got, reason, _ = verified.event_of(report_id)
    assert got == status, reason
    assert reason_part in reason


def test_reports_of_one_event_share_an_event(verified):
    assert len({verified.event_of(r)[0] for r in ("DEF-1", "DEF-2", "DEF-3")}) == 1
    assert verified.event_of("DEF-1")[3] == 3


def test_shared_technical_key_joins_inside_the_window_only(verified):
    assert verified.event_of("KEY-1")[0] == verified.event_of("KEY-2")[0]
    assert verified.event_of("KEY-3")[0] != verified.event_of("KEY-1")[0]


def test_radius_joins_near_reports_only(verified):
    assert verified.event_of("DST-1")[0] == verified.event_of("DST-2")[0]
    assert verified.event_of("DST-3")[0] != verified.event_of("DST-1")[0]


def test_event_evidence_lists_reports_and_attestations(verified):
    event = verified.event_of("CON-1")[0]
    items = verified.q(
        "SELECT item, stance FROM event_evidence WHERE event_id = ? ORDER BY item, stance", [event]
    )
    assert items == [
        ("attestation", "contradicts"),
        ("report", None),
        ("report", None),
        ("report", None),
    ]


@pytest.mark.parametrize(
    ("subject", "commitment", "period", "verdict", "status"),
    [
        ("ALPHA", "VD11-V-NOTIFY", "2026-03", "honoured_self_reported", "tentative"),
        ("BRAVO", "VD11-V-NOTIFY", "2026-03", "late", "definitive"),
        ("CHARLIE", "HOTLINE-TEST", "2026-03", "honoured_self_reported", "tentative"),
        ("DELTA", "HOTLINE-TEST", "2026-03", "late", "definitive"),
        ("FOXTROT", "HOTLINE-TEST", "2026-03", "honoured_confirmed", "definitive"),
        ("GOLF", "HOTLINE-TEST", "2026-03", "disputed", "tentative"),
        ("ECHO", "HOTLINE-TEST", "2026-04", "missed", "definitive"),
    ],
)
def test_compliance_verdicts(verified, subject, commitment, period, verdict, status):
    got = verified.verdict(subject, commitment, period)
    assert got is not None and got[:2] == (verdict, status), got


def test_late_verdicts_say_by_how_much(verified):
    assert "notified 41.0 days ahead; 42 required" in verified.verdict("BRAVO", "VD11-V-NOTIFY")[2]
    assert "replied after 48.0 hours; 48 allowed" in verified.verdict("DELTA", "HOTLINE-TEST")[2]


def test_occurrences_not_yet_due_have_no_verdict(verified):
    assert verified.verdict("ECHO", "HOTLINE-TEST", "2026-06") is None  # due 06-30 + 5 days grace


def test_escalation_levels(verified):
    levels = dict(
        ((s, c), (v, st))
        for s, c, v, st in verified.q(
            "SELECT subject, counterpart, value, status FROM indicator_values WHERE indicator = 'escalation_level' AND period = '2026-05'"
        )
    )
    assert levels[("DELTA", "ESC")] == (2.0, "definitive")
    assert levels[("ECHO", "TEN")][0] == 2.0  # tentative evidence alone is capped at level 2
