"""A hostile party cannot steal, stall or break anyone else's submissions (contract §1 v3;
docs/reliability-and-security.md, "A hostile party"): the original is the author's, and one
party's file fails alone. Intake is what these look at: runs are --ingest-only."""

import json
import os

import pytest
import yaml

from cbm.intake import inbox_fingerprint
from cbm.signatures import sign_file
from pipelines.cli import main
from tests.conftest import incident, set_limits, write_csv
from tests.test_trust import register


def status(project, capsys) -> dict[tuple[str, str], dict]:
    capsys.readouterr()
    assert main(["status", "--workdir", str(project.workdir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["submissions"]
    return {(s["party"], s["file_name"]): s for s in listed}


def ingest(project, capsys) -> str:
    """One ``cbm run --ingest-only``; its standard output."""
    capsys.readouterr()
    assert main([*project.run_args(), "--ingest-only"]) == 0
    return capsys.readouterr().out


def holds(s: dict) -> bool:
    return s["rows_read"] == s["rows_accepted"] + s["rows_quarantined"]


def test_a_signed_file_is_its_authors_and_an_earlier_unsigned_copy_becomes_the_copy(
    project, tmp_path, capsys
):
    key = tmp_path / "bravo.key"
    register(project, "BRAVO", key)
    rows = [incident("B-1"), incident("B-2")]
    # ACADEMY hands in BRAVO's bytes first, unsigned: accepted as its own for now
    write_csv(project.inbox / "ACADEMY" / "incidents_copy.csv", rows)
    project.run(ingest_only=True)
    first = status(project, capsys)[("ACADEMY", "incidents_copy.csv")]
    assert first["status"] == "accepted" and first["copy_of"] is None
    # BRAVO's signed file arrives later: it is the original, never a copy
    original = write_csv(project.inbox / "BRAVO" / "incidents_h1.csv", rows)
    sign_file(key, original)
    project.run(ingest_only=True)
    listed = status(project, capsys)
    bravo, academy = (
        listed[("BRAVO", "incidents_h1.csv")],
        listed[("ACADEMY", "incidents_copy.csv")],
    )
    assert (bravo["status"], bravo["copy_of"], bravo["rows_accepted"]) == ("accepted", None, 2)
    assert academy["copy_of"] == "BRAVO/incidents_h1.csv"
    assert (academy["status"], academy["rows_accepted"], academy["rows_quarantined"]) == (
        "rejected",
        0,
        2,
    )
    assert academy["reasons"] == {"copy_of_other_party": 2}
    assert "which its author signed" in academy["messages"]["copy_of_other_party"]
    assert holds(bravo) and holds(academy)
    # only BRAVO's rows are read by verification: the copy corroborates nothing
    sources = project.query("SELECT DISTINCT source FROM verification_incidents")
    assert sources == project.query("SELECT pseudonym FROM party_directory WHERE code = 'BRAVO'")


def test_a_submission_rejected_whole_is_never_anyones_original(project, capsys):
    rows = [incident("A-1")]
    theirs = write_csv(project.inbox / "ALPHA" / "incidents_a.csv", rows)
    os.link(theirs, project.inbox / "incidents_a.csv")  # a hard link in the inbox root
    write_csv(project.inbox / "ZULU" / "incidents_z.csv", rows)  # an unregistered party
    project.run(ingest_only=True)
    listed = status(project, capsys)
    assert listed[("", "incidents_a.csv")]["reasons"] == {"outside_party_directory": 1}
    alpha = listed[("ALPHA", "incidents_a.csv")]
    assert (alpha["status"], alpha["copy_of"], alpha["rows_accepted"]) == ("accepted", None, 1)


def test_names_that_are_not_utf8_fail_alone(project, capsys):
    write_csv(project.inbox / "ALPHA" / "incidents_ok.csv", [incident("A-1")])
    inbox = os.fsencode(project.inbox)
    with open(inbox + b"/ALPHA/incidents_\xff\xfebad.csv", "wb") as fh:
        fh.write(
            (project.inbox / "ALPHA" / "incidents_ok.csv").read_bytes().replace(b"A-1", b"A-2")
        )
    os.makedirs(inbox + b"/X\xff")
    with open(inbox + b"/X\xff/incidents_x.csv", "wb") as fh:
        fh.write(b"report_id\nZ\n")
    assert inbox_fingerprint(project.inbox)  # the sensor's look at the inbox
    for _ in range(2):  # every later run as well
        capsys.readouterr()
        assert main([*project.run_args(), "--ingest-only"]) == 0, capsys.readouterr().err
    listed = status(project, capsys)
    assert listed[("ALPHA", "incidents_ok.csv")]["status"] == "accepted"
    bad = listed[("ALPHA", "incidents_\\xff\\xfebad.csv")]
    folder = listed[("X\\xff", "incidents_x.csv")]
    for s in (bad, folder):
        assert s["status"] == "rejected" and s["reasons"] == {"file_name_not_utf8": 1}
        assert "not UTF-8" in s["messages"]["file_name_not_utf8"]


def test_a_file_that_changes_while_it_is_read_waits_and_stops_no_one(project, capsys, monkeypatch):
    from cbm.storage import LocalLocation

    write_csv(project.inbox / "ALPHA" / "incidents_ok.csv", [incident("A-1")])
    write_csv(project.inbox / "BRAVO" / "incidents_big.csv", [incident("B-1")])
    real_get = LocalLocation.get

    def appended_meanwhile(self, rel, dest):  # the party's writer appends as the copy is made
        real_get(self, rel, dest)
        if rel.endswith("incidents_big.csv"):
            with dest.open("ab") as fh:
                fh.write(b"B-2,partial")

    monkeypatch.setattr(LocalLocation, "get", appended_meanwhile)
    capsys.readouterr()
    assert main([*project.run_args(), "--ingest-only"]) == 0
    out = capsys.readouterr().out
    assert "deferred BRAVO/incidents_big.csv: BRAVO/incidents_big.csv changed while it" in out
    monkeypatch.setattr(LocalLocation, "get", real_get)  # the file has settled
    listed = status(project, capsys)
    assert set(listed) == {("ALPHA", "incidents_ok.csv")}  # everyone else's went through
    leftovers = [p for p in (project.workdir / "landing").rglob("*") if ".tmp" in p.name]
    assert leftovers == []
    assert main([*project.run_args(), "--ingest-only"]) == 0  # settled now: landed and ingested
    assert status(project, capsys)[("BRAVO", "incidents_big.csv")]["status"] == "accepted"


def test_an_orphan_signature_and_a_data_file_named_sig_are_listed(project, capsys):
    write_csv(project.inbox / "ALPHA" / "incidents_ok.csv", [incident("A-1")])
    (project.inbox / "ALPHA" / "incidents_gone.csv.sig").write_text("c2lnbmF0dXJl\n")
    (project.inbox / "ALPHA" / "incidents_data.sig").write_text("report_id\nA-9\n")
    project.run(ingest_only=True)
    listed = status(project, capsys)
    for name in ("incidents_gone.csv.sig", "incidents_data.sig"):
        assert listed[("ALPHA", name)]["reasons"] == {"orphan_signature": 1}
    assert listed[("ALPHA", "incidents_ok.csv")]["status"] == "accepted"


def test_status_prints_a_partys_control_characters_escaped(project, capsys):
    name = "incidents_\x1b[31mred\x1b]0;pwned\x07.csv"
    write_csv(project.inbox / "ALPHA" / name, [incident("A-1")])
    project.run(ingest_only=True)
    capsys.readouterr()
    assert main(["status", "--workdir", str(project.workdir)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "incidents_\\x1b[31mred\\x1b]0;pwned\\x07.csv" in out


def test_a_registry_code_is_matched_whole(tmp_path):
    from cbm.registry import RegistryError, load_registry
    from tests.conftest import write_registry

    registry = write_registry(tmp_path / "registry")
    parties = yaml.safe_load((registry / "parties.yaml").read_text())
    parties[0]["code"] = "HOTEL\n"
    write_registry(registry, parties)
    with pytest.raises(RegistryError, match="HOTEL"):
        load_registry(registry)


@pytest.mark.parametrize("label", ["<!--<script>", "</script><b>x</b>", "a\u2028b"])
def test_no_registry_string_can_break_the_reports_script(label):
    from html.parser import HTMLParser

    from cbm.report import script_json

    embedded = script_json({"public_label": label})
    assert "<" not in embedded and ">" not in embedded and "\u2028" not in embedded
    assert json.loads(embedded) == {"public_label": label}  # the same data to the chart

    class Scripts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.data: list[str] = []

        def handle_data(self, data):
            self.data.append(data)

    page = Scripts()
    page.feed(f"<script>var rows = {embedded};</script><p>after</p>")
    assert page.data == [f"var rows = {embedded};", "after"]


def test_a_file_over_the_size_limit_is_never_read_and_a_huge_sig_is_not_a_signature(
    project, tmp_path, capsys, monkeypatch
):
    set_limits(project, max_decoded_bytes=10_000)
    key = tmp_path / "bravo.key"
    register(project, "BRAVO", key)
    write_csv(project.inbox / "ALPHA" / "incidents_ok.csv", [incident("A-1")])
    sparse = project.inbox / "ALPHA" / "incidents_sparse.csv"
    with sparse.open("wb") as fh:  # 3 GB that take no room on disk
        fh.truncate(3 * 1024**3)
    signed = write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    with (signed.parent / (signed.name + ".sig")).open("wb") as fh:
        fh.truncate(3 * 1024**3)
    read: list[str] = []
    from cbm.storage import LocalLocation

    real_read = LocalLocation.read_bytes
    monkeypatch.setattr(
        LocalLocation, "read_bytes", lambda self, rel: read.append(rel) or real_read(self, rel)
    )
    project.run(ingest_only=True)
    assert not any(r.endswith(("incidents_sparse.csv", "incidents_b.csv.sig")) for r in read)
    listed = status(project, capsys)
    sparse_status = listed[("ALPHA", "incidents_sparse.csv")]
    assert sparse_status["reasons"] == {"over_limit": 1}
    assert "limits.max_decoded_bytes" in sparse_status["messages"]["over_limit"]
    assert listed[("BRAVO", "incidents_b.csv")]["reasons"] == {"signature_invalid": 1}
    assert listed[("ALPHA", "incidents_ok.csv")]["status"] == "accepted"
    landed = sum(p.stat().st_size for p in (project.workdir / "landing").rglob("*") if p.is_file())
    assert landed < 1_000_000  # neither was copied to landing


def test_a_late_signature_never_revokes_an_accepted_submission(project, tmp_path, capsys):
    key = tmp_path / "bravo.key"
    register(project, "BRAVO", key)
    signed = write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    sign_file(key, signed)
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])  # no key: unsigned
    project.run(ingest_only=True)
    before = status(project, capsys)
    # garbage dropped beside both accepted files afterwards
    (signed.parent / "incidents_b.csv.sig").write_text("Z2FyYmFnZQ==\n")
    (project.inbox / "ALPHA" / "incidents_a.csv.sig").write_text("Z2FyYmFnZQ==\n")
    project.run(ingest_only=True)
    after = status(project, capsys)
    for where in (("BRAVO", "incidents_b.csv"), ("ALPHA", "incidents_a.csv")):
        assert after[where]["status"] == before[where]["status"] == "accepted", after[where]
        assert after[where]["rows_accepted"] == 1
    signatures = dict(project.query("SELECT party_code, signature FROM landed_submissions"))
    assert signatures == {"BRAVO": "valid", "ALPHA": "none"}


def test_a_party_that_drops_many_files_is_taken_a_budget_per_run(project, capsys):
    set_limits(project, max_files_per_run=2)
    for i in range(5):
        write_csv(project.inbox / "ALPHA" / f"incidents_{i}.csv", [incident(f"A-{i}")])
    write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    landed = []
    for _ in range(3):
        out = ingest(project, capsys)
        landed.append(len(status(project, capsys)))
        if landed[-1] < 6:
            assert "deferred ALPHA/: " in out and "limits.max_files_per_run" in out
        # cbm status lists what waits, as text and as JSON
        capsys.readouterr()
        assert main(["status", "--workdir", str(project.workdir)]) == 0
        text = capsys.readouterr().out
        assert main(["status", "--workdir", str(project.workdir), "--json"]) == 0
        waiting = json.loads(capsys.readouterr().out)["waiting"]
        if landed[-1] < 6:
            assert [w["path"] for w in waiting] == ["ALPHA/"]
            assert "Waiting for a later run (not landed yet): 1" in text
            assert f"ALPHA/: {6 - landed[-1]} more new files" in text
        else:
            assert waiting == [] and "Waiting" not in text
    assert landed == [3, 5, 6]  # BRAVO's file goes through at once; ALPHA's two a run
    listed = status(project, capsys)
    assert all(s["status"] == "accepted" and holds(s) for s in listed.values())


def test_a_partys_bytes_per_run_are_bounded_and_its_first_file_always_goes(project, capsys):
    big = [incident(f"A-{i}", summary="x" * 2_000) for i in range(3)]  # about 6 KB a file
    sizes = [
        write_csv(project.inbox / "ALPHA" / f"incidents_{i}.csv", big).stat().st_size
        for i in range(3)
    ]
    set_limits(project, max_bytes_per_run=sizes[0] + sizes[1] - 1)  # under two files
    write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    landed = []
    for _ in range(3):
        out = ingest(project, capsys)
        landed.append(sorted(status(project, capsys)))
        if len(landed[-1]) < 4:
            (line,) = [x for x in out.splitlines() if "deferred ALPHA/" in x]
            assert "max_bytes_per_run" in line and f"took 1 files, {sizes[0]:,} bytes" in line
    assert [len(x) for x in landed] == [2, 3, 4]  # one ALPHA file a run; BRAVO's at once
    assert ("BRAVO", "incidents_b.csv") in landed[0]
    assert all(s["status"] == "accepted" for s in status(project, capsys).values())


def test_a_partys_reading_time_per_run_is_bounded_and_the_rest_waits_landed(project, capsys):
    set_limits(project, reader_seconds_per_run=0.001)  # spent by any one file
    for i in range(3):
        write_csv(project.inbox / "ALPHA" / f"incidents_{i}.csv", [incident(f"A-{i}")])
    write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    parsed = []
    for _ in range(4):
        ingest(project, capsys)
        listed = status(project, capsys)
        assert all(holds(s) for s in listed.values())
        parsed.append(sorted(k for k, s in listed.items() if s["status"] == "accepted"))
        waiting = [s for s in listed.values() if s["status"] == "landed"]
        assert all(s["party"] == "ALPHA" and s["rows_read"] == 0 for s in waiting)
    # BRAVO's file goes through in the first run; ALPHA's at least one a run, until all are in
    assert ("BRAVO", "incidents_b.csv") in parsed[0]
    alpha = [len([k for k in p if k[0] == "ALPHA"]) for p in parsed]
    assert alpha[0] < 3 and alpha[-1] == 3 and alpha == sorted(alpha)
    assert all(b > a for a, b in zip(alpha, alpha[1:], strict=False) if a < 3)
