"""Disputes with a life (opened, withdrawn, upheld, rejected), milestone commitments and the
security calendar (Parquet and iCalendar), on one small deployment run once."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import icalendar
import pyarrow.parquet as pq
import pytest
import yaml

from cbm.calendar import calendar_ics
from cbm.registry import RegistryError, load_commitments, load_parties
from tests.conftest import (
    TEST_KEY,
    Project,
    attestation,
    compliance,
    dagster_home_from,
    incident,
    write_csv,
)

AS_OF = "2026-05-01T00:00:00+00:00"


def _att(rid, subject_report_id, stance, kind="incidents", subject="BRAVO", day=3, **kw):
    return attestation(
        rid,
        subject_party=subject,
        subject_kind=kind,
        subject_report_id=subject_report_id,
        stance=stance,
        observed_at=f"2026-03-{day:02d}T09:00:00+00:00",
        **kw,
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, dagster_home_template):
    root = tmp_path_factory.mktemp("disputes")
    project = Project(root)
    with pytest.MonkeyPatch.context() as env:  # before the per-test environment
        env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
        env.delenv("CBM_KEY_FILE", raising=False)
        env.setenv(
            "DAGSTER_HOME", str(dagster_home_from(dagster_home_template, root / "dagster_home"))
        )
        _hand_in(project)
        project.run(as_of=AS_OF)
    release = project.publish / "releases" / (project.publish / "LATEST").read_text().strip()
    return project, release


def _hand_in(project: Project) -> None:
    regions = {"I-1": "EST", "I-2": "LVA", "I-3": "LTU", "I-4": "POL"}
    write_csv(
        project.inbox / "BRAVO" / "incidents_1.csv",
        [incident(rid, region=region) for rid, region in regions.items()],
    )
    write_csv(project.inbox / "BRAVO" / "compliance_1.csv", [compliance("C-1")])
    write_csv(
        project.inbox / "CHARLIE" / "compliance_1.csv",
        [compliance("C-2", subject_party="CHARLIE")],
    )
    notify = {
        "commitment_id": "VD11-V-NOTIFY",
        "period": "2026-04",
        "requested_at": None,
        "responded_at": None,
    }
    write_csv(
        project.inbox / "DELTA" / "compliance_1.csv",
        [
            compliance(
                "C-3",
                subject_party="DELTA",
                **notify,
                notified_at="2026-02-01T06:00:00+00:00",
                activity_start="2026-04-10T06:00:00+00:00",
                activity_end="2026-04-12T18:00:00+00:00",
            )
        ],
    )
    write_csv(
        project.inbox / "ECHO" / "compliance_1.csv",
        [
            compliance(
                "C-4",
                subject_party="ECHO",
                **notify,
                notified_at="2026-03-20T06:00:00+00:00",
                activity_start="2026-04-15T06:00:00+00:00",
            )
        ],
    )
    write_csv(
        project.inbox / "ACADEMY" / "attestations_1.csv",
        [
            _att("A-1", "I-1", "contradicts"),
            _att("A-2", "I-2", "contradicts"),
            _att("A-3", "I-2", "cannot_assess", day=6),  # withdrawn
            _att("A-6", "C-1", "contradicts", kind="compliance"),
            _att("A-7", "C-2", "contradicts", kind="compliance", subject="CHARLIE"),
        ],
    )
    write_csv(project.inbox / "AUDITOR" / "attestations_1.csv", [_att("A-4", "I-3", "contradicts")])
    write_csv(project.inbox / "CIVNET" / "attestations_1.csv", [_att("A-5", "I-4", "contradicts")])
    write_csv(
        project.inbox / "SECRETARIAT" / "attestations_rulings.csv",
        [
            _att("S-1", "I-3", "corroborates", day=5, method="document_review"),  # rejected
            _att("S-2", "I-4", "contradicts", day=5, method="on_site_inspection"),  # upheld
            _att("S-3", "C-1", "contradicts", kind="compliance", day=5, method="document_review"),
        ],
    )


def _by_report(project):
    return dict(project.query("SELECT subject_report_id, status FROM disputes"))


def test_each_dispute_has_its_life(deployment):
    project, _ = deployment
    assert _by_report(project) == {
        "I-1": "open",
        "I-2": "withdrawn",
        "I-3": "rejected",
        "I-4": "upheld",
        "C-1": "upheld",
        "C-2": "open",
    }
    closed = dict(project.query("SELECT subject_report_id, CAST(closed_at AS DATE) FROM disputes"))
    assert closed["I-2"] == date(2026, 3, 6) and closed["I-4"] == date(2026, 3, 5)
    assert closed["I-1"] is None
    ages = dict(project.query("SELECT subject_report_id, age_days FROM disputes"))
    assert ages["I-1"] == (date(2026, 5, 1) - date(2026, 3, 3)).days  # open: to the as-of time
    assert ages["I-2"] == 3


def test_disputes_decide_event_status_and_verdicts(deployment):
    project, _ = deployment
    events = dict(
        project.query(
            "SELECT m.report_id, c.status || ' | ' || c.status_reason FROM event_members m "
            "JOIN incident_clusters c USING (event_id)"
        )
    )
    assert events["I-1"].startswith("disputed | open dispute")
    assert events["I-2"].startswith("reported")  # the withdrawn dispute no longer counts
    assert events["I-3"].startswith("tentative | one source corroborated")  # the ruling
    assert events["I-4"].startswith("disputed | dispute upheld by the secretariat")
    verdicts = dict(
        project.query(
            "SELECT subject, verdict FROM compliance_verdicts "
            "WHERE commitment_id = 'HOTLINE-TEST' AND period = '2026-03' AND n_reports > 0"
        )
    )
    assert verdicts == {"BRAVO": "not_honoured", "CHARLIE": "disputed"}


def test_published_disputes_name_no_party_that_disputed(deployment):
    project, release = deployment
    table = pq.read_table(release / "disputes" / "disputes.parquet")
    assert "opened_by" not in table.column_names and "subject_party" not in table.column_names
    rows = table.to_pylist()
    assert sorted(r["status"] for r in rows) == sorted(_by_report(project).values())
    pseudonyms = {p for (p,) in project.query("SELECT pseudonym FROM party_directory")}
    assert not pseudonyms & {str(v) for r in rows for v in r.values()}
    by_event = {r["event_id"]: r for r in rows if r["object"] == "event"}
    events = {
        r["event_id"]: r
        for r in duckdb.sql(
            f"SELECT * FROM read_parquet('{release}/events/*/*.parquet', hive_partitioning=true)"
        )
        .pl()
        .to_dicts()
    }
    assert set(by_event) <= set(events)
    assert {e: events[e]["status"] for e, r in by_event.items() if r["status"] == "open"} == {
        e: "disputed" for e, r in by_event.items() if r["status"] == "open"
    }


def test_open_disputes_indicator_counts_the_disputes_product(deployment):
    _, release = deployment
    counted = duckdb.sql(
        f"SELECT subject, period, count(*) FILTER (WHERE status = 'open') AS n "
        f"FROM read_parquet('{release}/disputes/disputes.parquet') GROUP BY ALL"
    ).fetchall()
    published = duckdb.sql(
        f"SELECT subject, period, value FROM read_parquet('{release}/indicators/*/*.parquet', "
        "hive_partitioning=true) WHERE indicator = 'open_disputes'"
    ).fetchall()
    assert sorted(published) == sorted((s, p, float(n)) for s, p, n in counted)
    assert ("Alphaland", "2026-03", 1.0) in published  # I-1, alleged against ALPHA
    assert ("Charlie Federation", "2026-03", 1.0) in published  # C-2, CHARLIE's own claim


def test_report_shows_open_disputes_first(deployment):
    project, release = deployment
    page = (release / "report" / "index.html").read_text()
    open_ids = [
        d for (d,) in project.query("SELECT dispute_id FROM disputes WHERE status = 'open'")
    ]
    upheld = [
        d for (d,) in project.query("SELECT dispute_id FROM disputes WHERE status = 'upheld'")
    ]
    section = page[
        page.index('<h2 id="disputes">') : page.index("<h2", page.index('<h2 id="disputes">') + 5)
    ]
    assert page.index('<h2 id="disputes">') < page.index('class="chart"')
    assert all(d in section for d in open_ids) and not any(d in section for d in upheld)
    assert "2 open; closed: 2 upheld, 1 rejected, 1 withdrawn" in section


def test_calendar_lists_notified_activities_and_milestones(deployment):
    _, release = deployment
    rows = pq.read_table(release / "calendar" / "calendar.parquet").to_pylist()
    activities = {r["subject"]: r for r in rows if r["entry_type"] == "notified_activity"}
    assert set(activities) == {"Deltan Union", "Echo Islands"}
    delta, echo = activities["Deltan Union"], activities["Echo Islands"]
    assert delta["ends_at"] == datetime(2026, 4, 12, 18, tzinfo=UTC)
    assert (delta["lead_days"], delta["lead_time_met"]) == (68.0, True)
    assert (echo["lead_time_met"], echo["verdict"]) == (False, "late")
    assert echo["ends_at"] == echo["starts_at"]  # no end notified
    milestones = sorted(
        (r["subject"], r["starts_at"].date(), r["verdict"], r["status"])
        for r in rows
        if r["entry_type"] == "milestone"
    )
    assert milestones == [
        ("Bravonia", date(2026, 3, 31), "missed", "definitive"),
        ("Bravonia", date(2026, 8, 31), None, "upcoming"),
        ("Bravonia", date(2027, 1, 15), None, "upcoming"),
        ("Deltan Union", date(2026, 3, 31), "missed", "definitive"),
        ("Deltan Union", date(2026, 8, 31), None, "upcoming"),
        ("Deltan Union", date(2027, 1, 15), None, "upcoming"),
    ]


def test_calendar_ics_is_rfc5545_and_follows_latest(deployment):
    project, release = deployment
    data = (release / "calendar" / "calendar.ics").read_bytes()
    assert (project.publish / "calendar.ics").read_bytes() == data
    rows = pq.read_table(release / "calendar" / "calendar.parquet").to_pylist()
    events = icalendar.Calendar.from_ical(data).walk("VEVENT")
    assert sorted(str(e["UID"]) for e in events) == sorted(
        f"{r['entry_id']}@cbm-verify" for r in rows
    )
    for event in events:
        assert event.decoded("DTSTAMP") == datetime(2026, 5, 1, tzinfo=UTC)  # the as-of time
        if str(event["UID"]).startswith("M-"):
            assert type(event.decoded("DTSTART")) is date  # all-day
    assert b"\r\n" in data and data.startswith(b"BEGIN:VCALENDAR")
    table = pq.read_table(release / "calendar" / "calendar.parquet")
    again = calendar_ics(table, datetime(2026, 5, 1, tzinfo=UTC), release.name)
    assert again == data


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("milestone:2026-02-30", "is not a date"),
        ("milestone:2026-03-01,2026-03-31", "two milestone dates fall in one month"),
        ("milestone:", "must be monthly"),
    ],
)
def test_a_bad_milestone_schedule_is_named(tmp_path, schedule, message):
    from cbm.generate import COMMITMENTS, sample_parties

    (tmp_path / "parties.yaml").write_text(yaml.safe_dump(sample_parties()))
    entry = dict(COMMITMENTS[0], schedule=schedule)
    (tmp_path / "commitments.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(RegistryError) as err:
        load_commitments(tmp_path / "commitments.yaml", load_parties(tmp_path / "parties.yaml"))
    assert message in str(err.value) and "VD11-V-NOTIFY" in str(err.value)


def test_milestones_parse_in_order(tmp_path):
    from cbm.generate import COMMITMENTS, sample_parties

    (tmp_path / "parties.yaml").write_text(yaml.safe_dump(sample_parties()))
    entry = dict(COMMITMENTS[0], schedule="milestone:2027-01-15, 2026-08-31")
    (tmp_path / "commitments.yaml").write_text(yaml.safe_dump([entry]))
    (c,) = load_commitments(
        tmp_path / "commitments.yaml", load_parties(tmp_path / "parties.yaml")
    ).values()
    assert c.milestones == (date(2026, 8, 31), date(2027, 1, 15))
