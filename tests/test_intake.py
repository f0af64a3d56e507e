"""The intake rules of contract §1, through whole runs on small inboxes: identity is a party
plus its bytes, every path is listed, copies and version conflicts are quarantined whatever
order they came in, and a fixed re-send supersedes the rejection it fixes."""

import json

from pipelines.cli import main
from tests.conftest import incident, write_csv, write_jsonl


def status(project, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["status", "--workdir", str(project.workdir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["submissions"]


def test_a_repeat_by_the_same_party_is_listed_and_counted_once(project, capsys):
    rows = [incident("A-1"), incident("A-2")]
    write_csv(project.inbox / "ALPHA" / "incidents_first.csv", rows)
    project.run(ingest_only=True)
    first = capsys.readouterr().out
    assert "2 rows read = 2 accepted + 0 quarantined" in first and "looked at again" not in first
    write_csv(project.inbox / "ALPHA" / "incidents_again.csv", rows)
    project.run(ingest_only=True)
    # the run that lists the repeat reads no new row: its line says the rows are counted once
    again = capsys.readouterr().out
    assert "rows read =" not in again
    assert (
        "1 submission looked at again (a new name or signature): "
        "2 rows = 2 accepted + 0 quarantined, counted once (cbm status)"
    ) in again
    listed = {s["file_name"]: s for s in status(project, capsys)}
    assert set(listed) == {"incidents_first.csv", "incidents_again.csv"}
    assert listed["incidents_again.csv"]["duplicate_of"] == "ALPHA/incidents_first.csv"
    assert listed["incidents_again.csv"]["rows_read"] == 0
    assert listed["incidents_first.csv"]["rows_accepted"] == 2
    assert project.query("SELECT count(*) FROM submissions") == [(1,)]
    capsys.readouterr()
    main(["status", "--workdir", str(project.workdir)])
    assert "1 submission and 1 repeat (1 accepted); 2 rows read" in capsys.readouterr().out


def test_the_same_bytes_from_two_parties_are_two_submissions_the_later_a_copy(project, capsys):
    rows = [incident("S-1"), incident("S-2")]
    write_csv(project.inbox / "BRAVO" / "incidents_b.csv", rows)
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", rows)  # same run: BRAVO sorts later
    project.run()
    listed = {s["party"]: s for s in status(project, capsys)}
    assert listed["ALPHA"]["status"] == "accepted" and listed["ALPHA"]["copy_of"] is None
    assert listed["BRAVO"]["copy_of"] == "ALPHA/incidents_a.csv"
    assert (listed["BRAVO"]["status"], listed["BRAVO"]["rows_quarantined"]) == ("rejected", 2)
    assert listed["BRAVO"]["reasons"] == {"copy_of_other_party": 2}
    assert listed["ALPHA"]["sha256"] == listed["BRAVO"]["sha256"]  # the bytes' hash
    assert listed["ALPHA"]["submission"] != listed["BRAVO"]["submission"]
    # a copy is never corroboration: the event has one source
    assert project.query("SELECT max(n_sources) FROM incident_clusters") == [(1,)]


def test_another_partys_rows_retyped_in_the_same_run_are_a_copy_not_corroboration(project, capsys):
    """The same rows in other bytes (JSON Lines instead of CSV, another order) from a second
    party in the same run: the rows of the file landed later (at the same time: the party
    that sorts later) restate the other's and are quarantined; a report of the same event
    under the party's own report id is corroboration, and stays."""
    rows = [incident("S-1"), incident("S-2", severity=4)]
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", rows)
    write_jsonl(project.inbox / "BRAVO" / "incidents_b.jsonl", rows[::-1])
    write_csv(project.inbox / "CHARLIE" / "incidents_c.csv", [incident("C-7")])  # its own id
    project.run()
    listed = {s["party"]: s for s in status(project, capsys)}
    assert (listed["ALPHA"]["status"], listed["ALPHA"]["rows_accepted"]) == ("accepted", 2)
    assert listed["BRAVO"]["copy_of"] is None  # not the same bytes
    assert (listed["BRAVO"]["status"], listed["BRAVO"]["reasons"]) == (
        "rejected",
        {"restates_other_party": 2},
    )
    assert (listed["CHARLIE"]["status"], listed["CHARLIE"]["rows_accepted"]) == ("accepted", 1)
    sources = project.query(
        "SELECT p.code FROM verification_incidents v JOIN party_directory p "
        "ON p.pseudonym = v.source GROUP BY 1 ORDER BY 1"
    )
    assert sources == [("ALPHA",), ("CHARLIE",)]


def test_a_version_handed_in_twice_with_other_content_is_quarantined_every_time(project, capsys):
    write_csv(project.inbox / "ALPHA" / "incidents_v1.csv", [incident("A-1", severity=2)])
    project.run(ingest_only=True)
    write_csv(
        project.inbox / "ALPHA" / "incidents_v2a.csv", [incident("A-1", version=2, severity=4)]
    )
    write_csv(
        project.inbox / "ALPHA" / "incidents_v2b.csv", [incident("A-1", version=2, severity=5)]
    )
    project.run(ingest_only=True)
    assert project.query("SELECT version, severity FROM current_incidents") == [(1, 2)]
    conflicts = project.query(
        "SELECT s.file_name, q.rule FROM quarantine q JOIN submissions s ON s.sha256 = q.submission_sha "
        "ORDER BY 1"
    )
    assert conflicts == [
        ("incidents_v2a.csv", "version_conflict"),
        ("incidents_v2b.csv", "version_conflict"),
    ]
    listed = {s["file_name"]: s for s in status(project, capsys)}
    assert (
        listed["incidents_v2a.csv"]["rows_read"]
        == listed["incidents_v2a.csv"]["rows_quarantined"]
        == 1
    )
    assert (
        "previous version stays current"
        in listed["incidents_v2b.csv"]["messages"]["version_conflict"]
    )
    # the same content again is no conflict; a higher version ends it
    write_csv(
        project.inbox / "ALPHA" / "incidents_v3.csv", [incident("A-1", version=3, severity=3)]
    )
    project.run(ingest_only=True)
    assert project.query("SELECT version, severity FROM current_incidents") == [(3, 3)]


def test_a_fixed_re_send_supersedes_the_rejection(project, capsys):
    bad = project.inbox / "ALPHA" / "incidents_x.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("report_id;version\nA-1;1\n")
    project.run(ingest_only=True)
    write_csv(bad, [incident("A-1")])  # the party fixes the file, same name
    project.run(ingest_only=True)
    listed = status(project, capsys)
    old = next(s for s in listed if s["status"] == "rejected")
    new = next(s for s in listed if s["status"] == "accepted")
    assert old["superseded_by"] == new["submission"]
    assert "semicolon-separated" in old["messages"]["unreadable_file"]
    capsys.readouterr()
    main(["status", "--workdir", str(project.workdir)])
    out = capsys.readouterr().out
    assert "superseded by ALPHA/incidents_x.csv, handed in again and accepted" in out
    assert "1 of the rejected since handed in fixed" in out


def test_unknown_columns_and_header_case_are_warnings_not_rejections(project, capsys):
    path = project.inbox / "ALPHA" / "incidents_upper.csv"
    write_csv(path, [incident("A-1")])
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0].upper() + ",COLOUR", text[1] + ",blue"]) + "\n")
    project.run(ingest_only=True)
    (listed,) = status(project, capsys)
    assert listed["status"] == "accepted"
    assert listed["warnings"] == ["columns not in the contract were ignored: COLOUR"]


def _counting_hashes(monkeypatch, location_class):
    """The paths whose bytes a scan reads to hash them."""
    read = []
    hash_file = location_class.sha256
    monkeypatch.setattr(
        location_class, "sha256", lambda self, rel: (read.append(rel), hash_file(self, rel))[1]
    )
    return read


def test_a_scan_hashes_only_the_inbox_files_that_changed(tmp_path, monkeypatch):
    """The kept hashes: an unchanged inbox is planned without reading a file; a file
    rewritten in place, even with its size and modification time put back, is read again
    and lands as the new submission it is."""
    import os
    import time

    from cbm.intake import InboxHashes, inbox_fingerprint, plan_intake
    from cbm.storage import LocalLocation

    read = _counting_hashes(monkeypatch, LocalLocation)
    inbox, landing = tmp_path / "inbox", tmp_path / "landing"
    write_csv(inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    write_csv(inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    settled = time.time() - 3600  # written an hour ago: no longer being written
    for path in inbox.rglob("*.csv"):
        os.utime(path, (settled, settled))
    first = plan_intake(inbox, landing)
    assert sorted(read) == ["ALPHA/incidents_a.csv", "BRAVO/incidents_b.csv"]
    read.clear()
    again = plan_intake(inbox, landing)
    assert read == [] and again.to_ingest == first.to_ingest
    # same size, same modification time, other bytes: its change time gives it away, to
    # the plan and to the sensor's cheap test alike
    fingerprint = inbox_fingerprint(inbox)
    changed = inbox / "ALPHA" / "incidents_a.csv"
    before = changed.read_bytes()
    changed.write_bytes(before.replace(b"A-1", b"A-2"))
    os.utime(changed, (settled, settled))
    assert inbox_fingerprint(inbox) != fingerprint
    later = plan_intake(inbox, landing)
    assert read == ["ALPHA/incidents_a.csv"]
    (new,) = set(later.to_ingest) - set(first.to_ingest)
    assert [f.file_name for f in later.files if f.sha256 == new] == ["incidents_a.csv"]
    # the kept hashes unreadable: every file is read again, nothing else differs
    read.clear()
    (landing / InboxHashes.HASHES).write_text("{not json")
    assert plan_intake(inbox, landing).to_ingest == later.to_ingest
    assert sorted(read) == ["ALPHA/incidents_a.csv", "BRAVO/incidents_b.csv"]


def test_a_file_hashed_while_it_could_still_be_written_is_hashed_again(tmp_path, monkeypatch):
    """A hash taken less than ``SETTLE_NS`` after the file's last modification is not used:
    a write in that instant (or on object storage, by a clock not ours) may leave its time as
    it was."""
    from cbm.intake import plan_intake
    from cbm.storage import LocalLocation

    read = _counting_hashes(monkeypatch, LocalLocation)
    write_csv(tmp_path / "inbox" / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    for _ in range(2):
        plan_intake(tmp_path / "inbox", tmp_path / "landing")
    assert read == ["ALPHA/incidents_a.csv"] * 2
