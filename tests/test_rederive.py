"""Re-derivation (contract §4): each release leaves a member bundle from which any party
recomputes the release byte for byte without the raw inputs or the pseudonymisation key;
no TLP:RED row influences a released byte, so the bundle never holds one."""

import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from pipelines.cli import main
from tests.conftest import attestation, compliance, incident, write_csv

AS_OF = "2026-06-30T00:00:00+00:00"


def latest(project) -> Path:
    return project.publish / "releases" / (project.publish / "LATEST").read_text().strip()


def release_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def rederive(bundle: Path, release: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["rederive", str(bundle), "--release", str(release)])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def no_key(monkeypatch):
    """A party re-deriving holds no pseudonymisation key."""
    monkeypatch.delenv("CBM_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("CBM_KEY_FILE", raising=False)


def test_the_generated_release_is_re_derived_without_the_key(generated_run, no_key, capsys):
    deployment, summary = generated_run
    bundle = deployment.workdir / "bundles" / summary["latest_release"]
    # the command as the consumer guide writes it
    guide = (Path(__file__).resolve().parent.parent / "docs" / "consumer-guide.md").read_text()
    line = next(x for x in guide.splitlines() if x.startswith("cbm rederive "))
    command = line.split("#")[0].replace("<bundle>", str(bundle))
    command = command.replace("<publish>/releases/<id>", summary["release_path"])
    capsys.readouterr()
    code = main(command.split()[1:])
    out = "".join(capsys.readouterr())
    assert code == 0, out
    assert "all identical" in out and "re-derived byte for byte" in out
    # the bundle: pseudonymised rows without free text, nothing TLP:RED, no raw names
    con = duckdb.connect()
    for kind in ("incidents", "compliance", "attestations"):
        path = bundle / "reports" / kind / "*.parquet"  # one file per submission
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()]
        assert "summary" not in columns and "source" in columns
        tlps = {r[0] for r in con.execute(f"SELECT DISTINCT tlp FROM '{path}'").fetchall()}
        assert tlps and "RED" not in tlps, (kind, tlps)
    parties = (bundle / "registry" / "parties.yaml").read_text()
    registered = yaml.safe_load((deployment.registry / "parties.yaml").read_text())
    private = [p["name"] for p in registered if p["name"] != p["public_label"]]
    assert private and not any(name in parties for name in private)
    description = json.loads((bundle / "bundle.json").read_text())
    assert description["release_id"] == summary["latest_release"]


def test_a_red_report_changes_nothing_and_a_later_release_re_derives_with_its_changes(
    project, no_key, capsys, monkeypatch
):
    from tests.conftest import TEST_KEY

    monkeypatch.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
    write_csv(project.inbox / "BRAVO" / "compliance_c.csv", [compliance("C-1")])
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    project.run(as_of=AS_OF)
    first = latest(project)
    before = release_bytes(first)
    changelog = (project.publish / "CHANGELOG.jsonl").read_text()
    # RED reports of every kind, on the same event, claim and month: no released byte moves
    write_csv(
        project.inbox / "CHARLIE" / "incidents_red.csv",
        [incident("R-1", tlp="RED", occurred_at="2026-03-01T10:30:00+00:00", severity=5)],
    )
    write_csv(project.inbox / "CHARLIE" / "attestations_red.csv", [attestation("R-2", tlp="RED")])
    write_csv(
        project.inbox / "BRAVO" / "compliance_red.csv",
        [compliance("C-9", tlp="RED", claim="not_honoured")],
    )
    summary = project.run(as_of=AS_OF)
    assert summary["rows_accepted"] == 5  # the RED rows are accepted, kept, and left out
    assert latest(project) == first and release_bytes(first) == before
    assert (project.publish / "CHANGELOG.jsonl").read_text() == changelog
    # a corroboration makes a new release with changes against the first
    write_csv(project.inbox / "ALPHA" / "attestations_x.csv", [attestation("X-1")])
    project.run(as_of=AS_OF)
    second = latest(project)
    assert second != first
    bundle = project.workdir / "bundles" / second.name
    assert json.loads((bundle / "bundle.json").read_text())["previous_release_id"] == first.name
    monkeypatch.delenv("CBM_PSEUDONYM_KEY")
    code, out = rederive(bundle, second, capsys)
    assert code == 0, out
    # a release whose changes were rewritten, or whose bundle was altered, is named
    forged = project.publish / "forged" / "releases"
    shutil.copytree(first, forged / first.name)
    shutil.copytree(second, forged / second.name)
    changes = forged / second.name / "changes" / "compliance.parquet"
    changes.write_bytes(changes.read_bytes() + b"\0")
    code, out = rederive(bundle, forged / second.name, capsys)
    assert code == 1 and "FAIL: differs: changes/compliance.parquet" in out
    assert out.count("FAIL:") == 1
    altered = project.workdir / "altered"
    shutil.copytree(bundle, altered)
    rows = sorted((altered / "reports" / "incidents").glob("*.parquet"))[0]
    rows.write_bytes(rows.read_bytes()[:-10])
    code, out = rederive(altered, second, capsys)
    assert code == 2 and f"reports/incidents/{rows.name} does not match bundle.json" in out
    code, out = rederive(bundle, first, capsys)
    assert code == 2 and f"bundle of {second.name}, not of {first.name}" in out


def test_a_bundles_files_are_on_disk_before_its_folder_is_renamed_into_place(
    generated_run, tmp_path, monkeypatch
):
    """As a release's (tests/test_release.py): the bundle is flushed under its temporary name,
    whole, before the rename that makes it visible."""
    import shutil

    import warehouse.bundle as bundle
    from cbm.registry import load_registry
    from warehouse.db import Warehouse

    deployment, _ = generated_run
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(deployment.workdir / "warehouse.duckdb", warehouse)
    seen = []

    def flushed(path):
        seen.append((path.name, (path / bundle.BUNDLE_FILE).is_file()))
        assert not (tmp_path / "bundles" / "r-flush").exists()

    monkeypatch.setattr(bundle, "sync_filesystem", flushed)
    registry = load_registry(deployment.registry)
    with Warehouse(str(warehouse)).connect() as con:
        root = bundle.write_bundle(
            con, tmp_path / "bundles", "r-flush", None, registry, deployment.registry
        )
    assert len(seen) == 1 and seen[0][0].startswith(".tmp-r-flush-") and seen[0][1]
    assert (root / bundle.BUNDLE_FILE).is_file()
