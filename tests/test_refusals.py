"""What the pipeline refuses to publish (contract §4, §5; docs/reliability-and-security.md):
another pseudonymisation key, a release that changes more than its inputs explain, its own
release handed back in as evidence, an attestation that names no report, an unsigned release
where the registry names the publisher's key, and a copied deployment writing into the
original."""

import hashlib
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from cbm.protection import load_key
from pipelines.cli import main
from tests.conftest import (
    TEST_KEY,
    Project,
    attestation,
    incident,
    write_csv,
    write_registry,
)


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".cbm-run.lock"  # holds the pid of the last run
    }


def run(project: Project, capsys, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*project.run_args(), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def rederived(project: Project, capsys) -> None:
    """``cbm rederive`` of the LATEST release from its member bundle: the same bytes."""
    release = (project.publish / "LATEST").read_text().strip()
    capsys.readouterr()
    code = main(
        [
            "rederive",
            str(project.workdir / "bundles" / release),
            "--release",
            str(project.publish / "releases" / release),
        ]
    )
    out = capsys.readouterr()
    assert code == 0 and "all identical" in out.out, out.out + out.err


def latest_manifest(project: Project) -> dict:
    release = (project.publish / "LATEST").read_text().strip()
    return json.loads((project.publish / "releases" / release / "manifest.json").read_text())


@pytest.fixture
def deployment(generated_run, tmp_path) -> Project:
    """A copy of the generated run (150 reports, one release) to change."""
    original, _ = generated_run
    return original.copy(tmp_path / "deployment")


# ------------------------------------------------------------------ key continuity


def test_another_key_stops_the_run_before_anything_is_written(deployment, capsys, monkeypatch):
    write_csv(deployment.inbox / "ALPHA" / "incidents_new.csv", [incident("NEW-1")])
    before = tree(deployment.root)
    monkeypatch.setenv("CBM_PSEUDONYM_KEY", "k2:" + "6b" * 32)
    code, _, err = run(deployment, capsys)
    ours, theirs = load_key().fingerprint, load_key({"CBM_PSEUDONYM_KEY": TEST_KEY}).fingerprint
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ours in err and theirs in err and "cbm rotate-key" in err
    # LATEST, the warehouse, the landing area: byte for byte as they were (the new file too)
    assert tree(deployment.root) == before


def test_keygen_pseudonym_gives_every_new_key_its_own_version(tmp_path, capsys):
    versions = set()
    for name in ("a.key", "b.key"):
        assert main(["keygen-pseudonym", "--out", str(tmp_path / name)]) == 0
        versions.add(json.loads((tmp_path / name).read_text())["key_version"])
    assert len(versions) == 2 and all(v.startswith("k-") for v in versions)
    assert main(["keygen-pseudonym", "--out", str(tmp_path / "c.key"), "--key-version", "k9"]) == 0
    assert json.loads((tmp_path / "c.key").read_text())["key_version"] == "k9"


def test_rotation_re_pseudonymises_and_the_next_release_names_it(
    deployment, tmp_path, capsys, monkeypatch
):
    old = load_key()
    codes = [c for (c,) in deployment.query("SELECT code FROM party_directory")]
    old_tkeys = {
        k
        for (keys,) in deployment.query(
            "SELECT technical_keys FROM reports_incidents WHERE technical_keys IS NOT NULL"
        )
        for k in keys.split(";")
    }
    assert old_tkeys
    before = latest_manifest(deployment)
    new_file = tmp_path / "new.key"
    assert main(["keygen-pseudonym", "--out", str(new_file)]) == 0
    capsys.readouterr()
    code = main(["rotate-key", "--workdir", str(deployment.workdir), "--new-key", str(new_file)])
    assert code == 0, capsys.readouterr().err
    assert "rotated" in capsys.readouterr().out
    # the same rotation again: the old key is no longer the warehouse's
    assert (
        main(["rotate-key", "--workdir", str(deployment.workdir), "--new-key", str(new_file)]) == 2
    )
    monkeypatch.delenv("CBM_PSEUDONYM_KEY")
    monkeypatch.setenv("CBM_KEY_FILE", str(new_file))
    new = load_key()
    code, _, err = run(deployment, capsys)
    assert code == 0, err
    after = latest_manifest(deployment)
    assert after["release_id"] != before["release_id"]
    assert after["key_rotation"] == {
        "from": {"version": old.version, "fingerprint": old.fingerprint},
        "to": {"version": new.version, "fingerprint": new.fingerprint},
    }
    assert after["pseudonym_key_fingerprint"] == new.fingerprint
    # no pseudonym or keyed technical key of the old key is left in the warehouse
    stored = {
        v
        for (v,) in deployment.query(
            "SELECT source FROM landed_submissions UNION SELECT source FROM reports_incidents "
            "UNION SELECT subject_party FROM reports_attestations UNION SELECT pseudonym FROM party_directory"
        )
    }
    assert not stored & {old.pseudonym(c) for c in codes}
    assert {new.pseudonym(c) for c in codes} <= stored
    new_tkeys = {
        k
        for (keys,) in deployment.query(
            "SELECT technical_keys FROM reports_incidents WHERE technical_keys IS NOT NULL"
        )
        for k in keys.split(";")
    }
    assert len(new_tkeys) == len(old_tkeys) and not new_tkeys & old_tkeys
    # the figures stand; every event is listed with its successor, none removed
    root = deployment.publish / "releases" / after["release_id"] / "changes"
    assert pq.read_table(root / "indicators.parquet").num_rows == 0
    assert pq.read_table(root / "compliance.parquet").num_rows == 0
    changes = pq.read_table(root / "events.parquet").column("change").to_pylist()
    assert "removed" not in changes and changes.count("replaced_by") == before_events(before)
    rederived(deployment, capsys)  # the rotation is declared by the re-derivation too


def before_events(manifest: dict) -> int:
    return sum(f["rows"] or 0 for f in manifest["files"] if f["path"].startswith("events/"))


# ------------------------------------------------------------------ the release guard


def _policy_rescored(project: Project) -> None:
    policy = yaml.safe_load((project.registry / "policy.yaml").read_text())
    # events are one-hour, same-place clusters now: most of them re-scored
    policy["association_window_hours"] = dict.fromkeys(policy["association_window_hours"], 1)
    policy["association_radius_km"] = 0.1
    (project.registry / "policy.yaml").write_text(yaml.safe_dump(policy))


def _registry_mistake(project: Project) -> None:
    (project.registry / "commitments.yaml").write_text("[]\n")  # emptied by mistake


def _landing_lost(project: Project) -> None:
    shutil.rmtree(project.workdir)  # landing area and warehouse gone, one party's files left
    for party in project.inbox.iterdir():
        if party.name != "ALPHA":
            shutil.rmtree(party)


@pytest.mark.parametrize(
    "mistake", [_policy_rescored, _registry_mistake, _landing_lost], ids=lambda f: f.__name__
)
def test_a_release_that_changes_too_much_is_held_until_accepted(deployment, capsys, mistake):
    before_latest = (deployment.publish / "LATEST").read_text()
    before_publish = tree(deployment.publish)
    mistake(deployment)
    code, _, err = run(deployment, capsys)
    assert code == 1, err
    assert "held, not signed and not LATEST" in err and "--accept-change" in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no Dagster log or stack trace
    assert "rows removed or revised" in err and "inputs" in err
    assert tree(deployment.publish) == before_publish  # nothing published, LATEST unchanged
    (held,) = (deployment.workdir / "held" / "releases").iterdir()
    manifest = json.loads((held / "manifest.json").read_text())
    assert manifest["held"] and not (held / "manifest.json.sig").exists()
    if mistake is _policy_rescored:  # meant: accepted on purpose, and the manifest says so
        code, _, err = run(deployment, capsys, "--accept-change", "policy v2: k raised")
        assert code == 0, err
        assert (deployment.publish / "LATEST").read_text() != before_latest
        accepted = latest_manifest(deployment)["accepted_change"]
        assert accepted["reason"] == "policy v2: k raised"
        assert any(f.startswith("events:") for f in accepted["findings"])
        rederived(deployment, capsys)  # a member re-derives it, declaration included


# ------------------------------------------------------------------ no laundering


def _relay_release(project: Project, party: str) -> Path:
    release = (project.publish / "LATEST").read_text().strip()
    bundle = project.publish / "releases" / release / "stix" / "bundle.json"
    target = project.inbox / party / "incidents_relay.stix.json"
    shutil.copyfile(bundle, target)
    return target


def test_the_own_release_handed_back_is_a_copy_and_moves_nothing(deployment, capsys):
    before = latest_manifest(deployment)
    _relay_release(deployment, "GOLF")
    ((event_id, category, region, week, band),) = deployment.query(
        "SELECT token, category, region, week, severity_band FROM own_publications "
        "WHERE what = 'event' ORDER BY token LIMIT 1"
    )
    restated = incident("RESTATED-1") | {"report_id": event_id}
    write_csv(deployment.inbox / "CIVNET" / "incidents_restated.csv", [restated])
    # the same event's published fields, as a release read back states them, under a new id
    year, number = (int(x) for x in week.split("-W"))
    monday = datetime.fromisocalendar(year, number, 1).replace(tzinfo=UTC).isoformat()
    fields = {"category": category, "region": region, "time_precision": "day"}
    fields |= {"occurred_at": monday, "reported_at": monday, "lat": None, "lon": None}
    fields |= {"severity": {"low": 2, "medium": 3, "high": 4}[band]}
    write_csv(
        deployment.inbox / "INTLORG" / "incidents_fields.csv", [incident("RETOLD-1") | fields]
    )
    code, _, err = run(deployment, capsys)
    assert code == 0, err
    files = ("incidents_relay.stix.json", "incidents_restated.csv", "incidents_fields.csv")
    rules = dict(
        deployment.query(
            "SELECT s.file_name, list_distinct(list(q.rule)) FROM quarantine q "
            "JOIN submissions s ON s.sha256 = q.submission_sha "
            "WHERE s.file_name IN (SELECT unnest(?::VARCHAR[])) AND q.severity = 'critical' "
            "GROUP BY 1",
            [list(files)],
        )
    )
    assert {name: set(found) for name, found in rules.items()} == {
        # read back, a release's events restate their own fields too
        "incidents_relay.stix.json": {"copy_of_own_release", "restates_own_release"},
        "incidents_restated.csv": {"copy_of_own_release"},
        "incidents_fields.csv": {"restates_own_release"},
    }
    accepted = deployment.query(
        "SELECT sum(rows_accepted) FROM submissions WHERE file_name IN (SELECT unnest(?::VARCHAR[]))",
        [list(files)],
    )
    assert accepted == [(0,)]
    after = latest_manifest(deployment)
    products = ("indicators/", "compliance/", "events/", "calendar/", "disputes/")
    assert [f for f in after["files"] if f["path"].startswith(products)] == [
        f for f in before["files"] if f["path"].startswith(products)
    ]


def test_a_member_bundles_reports_handed_back_are_copies_and_move_nothing(
    deployment, tmp_path, capsys
):
    """Any member holds the bundle: its report files, handed in by another party as they are
    (Parquet), as CSV without the bundle's own columns, or signed by a party with a key,
    restate reports other parties handed in. Accepted, they would corroborate those parties'
    events a second time. (A signature proves who handed a file in; the bundle's rows are this
    deployment's own output whoever signs them.)"""
    from cbm.signatures import sign_file
    from tests.test_trust import register

    before = latest_manifest(deployment)
    release = (deployment.publish / "LATEST").read_text().strip()
    reports = deployment.workdir / "bundles" / release / "reports"
    relayed = {}
    for kind in ("incidents", "compliance"):
        bundle_file = max((reports / kind).glob("*.parquet"), key=lambda f: f.stat().st_size)
        table = pq.read_table(bundle_file)
        (source,) = set(table.column("source").to_pylist())
        party = "GOLF" if _pseudonym(deployment, "GOLF") != source else "INTLORG"
        target = deployment.inbox / party / f"{kind}_relay.parquet"
        shutil.copyfile(bundle_file, target)
        relayed[target.name] = table.num_rows
    # the same rows again, as a CSV without the bundle's columns, by a third party
    largest = max((reports / "incidents").glob("*.parquet"), key=lambda f: f.stat().st_size)
    incidents = pq.read_table(largest).drop_columns(["submission_sha", "row_number", "source"])
    retyped = [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
        for row in incidents.to_pylist()
    ]
    write_csv(deployment.inbox / "ACADEMY" / "incidents_retyped.csv", retyped)
    relayed["incidents_retyped.csv"] = len(retyped)
    # and signed, by a party whose key the registry names (the original is unsigned)
    (source,) = set(pq.read_table(largest).column("source").to_pylist())
    signer = "CIVNET" if _pseudonym(deployment, "CIVNET") != source else "ACADEMY"
    key = tmp_path / "signer.key"
    register(deployment, signer, key)
    signed = write_csv(deployment.inbox / signer / "incidents_signed_relay.csv", retyped)
    sign_file(key, signed)
    relayed[signed.name] = len(retyped)
    code, _, err = run(deployment, capsys)
    assert code == 0, err
    rows = deployment.query(
        "SELECT file_name, rows_read, rows_accepted, list_distinct(list(q.rule)) "
        "FROM submissions s LEFT JOIN quarantine q ON q.submission_sha = s.sha256 "
        "AND q.severity = 'critical' WHERE file_name IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
        [list(relayed)],
    )
    assert {name: (read, accepted, set(rules)) for name, read, accepted, rules in rows} == {
        name: (n, 0, {"restates_other_party"}) for name, n in relayed.items()
    }
    assert deployment.query(
        "SELECT signature FROM landed_submissions WHERE file_name = ?", [signed.name]
    ) == [("valid",)]
    # nothing published moved: the events' sources, statuses, verdicts and indicators
    after = latest_manifest(deployment)
    products = ("indicators/", "compliance/", "events/", "calendar/", "disputes/")
    assert [f for f in after["files"] if f["path"].startswith(products)] == [
        f for f in before["files"] if f["path"].startswith(products)
    ]


def _pseudonym(project: Project, code: str) -> str:
    ((pseudonym,),) = project.query("SELECT pseudonym FROM party_directory WHERE code = ?", [code])
    return pseudonym


def test_another_secretariats_release_is_evidence(deployment, tmp_path, capsys, monkeypatch):
    other = Project(tmp_path / "other")
    parties = yaml.safe_load((other.registry / "parties.yaml").read_text())
    next(p for p in parties if p["class"] == "secretariat")["public_label"] = "Other secretariat"
    write_registry(other.registry, parties)
    monkeypatch.setenv("CBM_PSEUDONYM_KEY", "o1:" + "7c" * 32)
    write_csv(other.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    code, _, err = run(other, capsys)
    assert code == 0, err
    (other.inbox / "GOLF").mkdir()
    shutil.copyfile(
        _relay_release(deployment, "GOLF"), other.inbox / "GOLF" / "incidents_relay.stix.json"
    )
    code, _, err = run(other, capsys, "--ingest-only")  # what was accepted is the question
    assert code == 0, err
    ((accepted, own),) = other.query(
        "SELECT sum(rows_accepted), count(*) FILTER (WHERE rule = 'copy_of_own_release') "
        "FROM submissions LEFT JOIN quarantine q ON q.submission_sha = sha256 "
        "WHERE file_name = 'incidents_relay.stix.json'"
    )
    assert accepted > 0 and own == 0


# ------------------------------------------------------------------ attestations


def test_an_attestation_that_names_no_report_is_quarantined(project, capsys):
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    write_csv(
        project.inbox / "BRAVO" / "attestations_b.csv",
        [
            attestation("B-1", subject_kind=""),
            attestation("B-2"),
        ],
    )
    opinion = {
        "type": "bundle",
        "id": "bundle--6f0fb9d4-2c6c-4c8c-9c5e-2a8f0e0c2b11",
        "objects": [
            {
                "type": "opinion",
                "spec_version": "2.1",
                "id": "opinion--0c8f7a4e-1b7e-4b7e-8d47-7a5a0d1d6d10",
                "created": "2026-03-02T10:00:00.000Z",
                "modified": "2026-03-02T10:00:00.000Z",
                "opinion": "agree",
                "object_refs": ["indicator--5c5b5e1e-6a8e-4d1c-9a55-0c5d0e1f2a3b"],
            }
        ],
    }
    (project.inbox / "CHARLIE").mkdir()
    (project.inbox / "CHARLIE" / "attestations_c.stix.json").write_text(json.dumps(opinion))
    code, _, err = run(project, capsys)
    assert code == 0, err
    found = set(
        project.query(
            "SELECT q.report_id, q.rule, q.value FROM quarantine q WHERE q.severity = 'critical' "
            "AND q.rule LIKE 'subject_kind%'"
        )
    )
    assert ("B-1", "subject_kind_required") in {(r[0], r[1]) for r in found}, found
    assert any(r[1] == "subject_kind_allowed_values" and r[2] == "indicator" for r in found), found
    assert not any(r[0] == "B-2" for r in found)


# ------------------------------------------------------------------ signed by default


def test_a_release_is_signed_whenever_the_registry_names_the_publishers_key(
    project, tmp_path, capsys
):
    key = tmp_path / "secretariat.key"
    assert main(["keygen", "--party", "SECRETARIAT", "--out", str(key)]) == 0
    public = capsys.readouterr().out.rsplit("public_key: ", 1)[1].strip()
    parties = yaml.safe_load((project.registry / "parties.yaml").read_text())
    next(p for p in parties if p["code"] == "SECRETARIAT")["public_key"] = public
    write_registry(project.registry, parties)
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    code, _, err = run(project, capsys)
    assert code == 2 and "--signing-key" in err and "--unsigned" in err
    assert not (project.publish / "LATEST").exists()
    code, _, err = run(project, capsys, "--unsigned")
    assert code == 0, err
    release = project.publish / "releases" / (project.publish / "LATEST").read_text().strip()
    assert json.loads((release / "manifest.json").read_text())["unsigned"].startswith("on purpose")
    assert not (release / "manifest.json.sig").exists()
    rederived(project, capsys)  # a member holds no publisher key, and needs none
    # the same release signed afterwards: run again with the key
    code, _, err = run(project, capsys, "--signing-key", str(key))
    assert code == 0 and (release / "manifest.json.sig").is_file(), err
    capsys.readouterr()
    assert (
        main(["verify-release", str(release), "--keys", str(project.registry / "parties.yaml")])
        == 0
    )


# ------------------------------------------------------------------ relocatable


def test_a_copied_deployment_leaves_the_original_untouched(
    generated_run, tmp_path, capsys, monkeypatch
):
    original, _ = generated_run
    before = tree(original.root)
    copy = original.copy(tmp_path / "copy")
    monkeypatch.setenv("DAGSTER_HOME", str(copy.root / "dagster_home"))
    write_csv(copy.inbox / "ALPHA" / "incidents_new.csv", [incident("NEW-1")])
    code, _, err = run(copy, capsys)
    assert code == 0, err
    assert tree(original.root) == before
    assert str(original.root) not in (copy.root / "dagster_home" / "dagster.yaml").read_text()
    assert list((copy.root / "dagster_home" / "history" / "runs").glob("*.db"))
