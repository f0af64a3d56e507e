"""Changes row by row between releases (contract §4 changes/*), the changelog counted from
them, and event identity across releases (corrections keep an id; a re-anchored event names
its successor)."""

import json
from pathlib import Path

import polars as pl

from tests.conftest import attestation, compliance, incident, write_csv

AS_OF = "2026-06-30T00:00:00+00:00"


def release_dir(project) -> Path:
    return project.publish / "releases" / (project.publish / "LATEST").read_text().strip()


def changes(project, product: str) -> pl.DataFrame:
    return pl.read_parquet(release_dir(project) / "changes" / f"{product}.parquet")


def indicators(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "indicators", hive_partitioning=True)


def test_revised_indicators_are_listed_and_counted_with_null_safe_keys(project):
    write_csv(project.inbox / "BRAVO" / "compliance_c.csv", [compliance("C-1")])
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    project.run(as_of=AS_OF)
    first = release_dir(project)
    # another party corroborates BRAVO's claim: its verdict and the rates built on it change
    write_csv(project.inbox / "ALPHA" / "attestations_x.csv", [attestation("X-1")])
    project.run(as_of=AS_OF)
    second = release_dir(project)
    assert first != second
    keys = ["period", "subject", "counterpart", "indicator"]
    joined = indicators(first).join(indicators(second), on=keys, how="full", nulls_equal=True)
    expected = joined.filter(
        (pl.col("value").ne_missing(pl.col("value_right")))
        | (pl.col("status").ne_missing(pl.col("status_right")))
        | (pl.col("suppressed").ne_missing(pl.col("suppressed_right")))
    ).height
    listed = changes(project, "indicators")
    assert expected >= 2 and listed.height == expected
    assert set(listed["change"]) <= {"revised", "status_changed"}
    assert listed["counterpart"].null_count() == listed.height  # none is a dyad indicator
    line = json.loads((project.publish / "CHANGELOG.jsonl").read_text().splitlines()[-1])
    assert line["revised_values"] == expected
    assert (
        line["changes"]["indicators"]["revised"] + line["changes"]["indicators"]["status_changed"]
        == expected
    )
    assert line["changes"]["compliance"]["revised"] >= 1  # honoured_self_reported -> confirmed
    # field by field: each revised row names what changed, never nothing (#38)
    for row in listed.to_dicts():
        named = [part.split(" ", 1)[0] for part in row["changed"].split("; ")]
        assert named and all(" -> " in part for part in row["changed"].split("; "))
        if row["change"] == "revised":
            assert set(named) - {"status"}, row
        else:
            assert named == ["status"], row
    verdicts = changes(project, "compliance").filter(pl.col("change") == "revised").to_dicts()
    assert any(
        "verdict honoured_self_reported -> honoured_confirmed" in r["changed"] for r in verdicts
    )
    # the report: the first release says so and counts its additions by month; the second
    # names the release it follows and lists its corrections with what changed
    first_page = (first / "report" / "index.html").read_text()
    second_page = (second / "report" / "index.html").read_text()
    assert "This is the first release: every row is new" in first_page
    assert "Added, by month: 2026-03:" in first_page and "<td>added</td>" not in first_page
    assert f"Since release <code>{first.name}</code>" in second_page
    assert "verdict honoured_self_reported -&gt; honoured_confirmed" in second_page


def event_ids(project) -> set[str]:
    return set(pl.read_parquet(release_dir(project) / "events", hive_partitioning=True)["event_id"])


def test_an_event_keeps_its_id_through_corrections_and_names_its_successor_when_re_anchored(
    project,
):
    origin = incident("O-1", occurred_at="2026-03-01T10:00:00+00:00")
    member = incident(
        "M-1", occurred_at="2026-03-01T11:00:00+00:00", reported_at="2026-03-01T13:00:00+00:00"
    )
    write_csv(project.inbox / "ALPHA" / "incidents_o.csv", [origin])
    write_csv(project.inbox / "BRAVO" / "incidents_m.csv", [member])
    project.run(as_of=AS_OF)
    (event,) = event_ids(project)
    # a correction of a member, a new member, a new version of the origin: same id
    write_csv(
        project.inbox / "BRAVO" / "incidents_m2.csv", [member | {"version": 2, "severity": 4}]
    )
    write_csv(
        project.inbox / "CHARLIE" / "incidents_c.csv",
        [incident("C-1", occurred_at="2026-03-01T12:00:00+00:00")],
    )
    write_csv(
        project.inbox / "ALPHA" / "incidents_o2.csv", [origin | {"version": 2, "severity": 2}]
    )
    project.run(as_of=AS_OF)
    assert event_ids(project) == {event}
    assert changes(project, "events")["change"].to_list() in (["revised"], ["status_changed"], [])
    # the origin is retracted: the event re-anchors on its next report, under a new id
    write_csv(
        project.inbox / "ALPHA" / "incidents_o3.csv",
        [origin | {"version": 3, "determination": "false_positive"}],
    )
    project.run(as_of=AS_OF)
    (successor,) = event_ids(project)
    assert successor != event
    rows = {r["event_id"]: r for r in changes(project, "events").to_dicts()}
    assert rows[event]["change"] == "replaced_by" and rows[event]["replaced_by"] == successor
    assert rows[successor]["change"] == "added"
