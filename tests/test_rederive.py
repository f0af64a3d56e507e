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


def test_a_later_bundle_keeps_the_files_of_unchanged_submissions_and_is_a_full_writes_bytes(
    project, tmp_path, monkeypatch, capsys
):
    """Decision 5 of #40 (M50): a release's member bundle links the report files of the
    submissions whose rows are those of the previous bundle's, and writes the others (a new
    submission; one whose row a later version replaced; one whose earlier file was altered
    since); byte for byte the bundle a full write gives. A bundle of version 2 (one report
    file per kind) still re-derives."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import warehouse.bundle as bundle
    from cbm.registry import load_registry
    from cbm.release import write_batches, write_table
    from tests.conftest import TEST_KEY
    from warehouse.db import Warehouse

    monkeypatch.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
    later = {"occurred_at": "2026-04-02T09:00:00+00:00", "reported_at": "2026-04-02T12:00:00+00:00"}
    write_csv(
        project.inbox / "ALPHA" / "incidents_a.csv",
        [incident("A-1"), incident("A-2", **later)],
    )
    write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1", **later)])
    write_csv(project.inbox / "BRAVO" / "compliance_c.csv", [compliance("C-1")])
    project.run(as_of=AS_OF)
    first = latest(project)
    # a new submission, and a new version of A-2: ALPHA's first file loses a current row
    write_csv(project.inbox / "CHARLIE" / "incidents_c.csv", [incident("C-1")])
    write_csv(
        project.inbox / "ALPHA" / "incidents_a2.csv",
        [incident("A-2", version=2, severity=4, **later)],
    )
    project.run(as_of=AS_OF)
    second = latest(project)
    assert second != first
    warehouse = project.workdir / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        named = con.execute("SELECT file_name, kind, sha256 FROM landed_submissions").fetchall()
    sha = {Path(name).name: f"{kind}/{digest}.parquet" for name, kind, digest in named}

    def reports(root: Path) -> dict[str, Path]:
        return {p.relative_to(root / "reports").as_posix(): p for p in root.glob("reports/*/*")}

    bundles = project.workdir / "bundles"
    one, two = reports(bundles / first.name), reports(bundles / second.name)
    assert set(two) == {sha[n] for n in sha}  # one file per submission
    kept = {r for r in two if r in one and two[r].stat().st_ino == one[r].stat().st_ino}
    assert kept == {sha["incidents_b.csv"], sha["compliance_c.csv"]}
    assert sha["incidents_a.csv"] in one  # written again: A-2's first version left it
    assert pq.read_table(two[sha["incidents_a.csv"]]).num_rows == 1

    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    # byte for byte what a full write gives (no earlier bundle beside it to keep files from),
    # and what one gives beside an earlier bundle one of whose files was altered since
    description = json.loads((bundles / second.name / "bundle.json").read_text())
    registry = load_registry(project.registry)
    altered = tmp_path / "altered"
    shutil.copytree(bundles / first.name, altered / first.name)  # copies, not links
    victim = altered / first.name / "reports" / sha["incidents_b.csv"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    with Warehouse(str(warehouse)).connect() as con:
        for folder in (tmp_path / "full", altered):
            bundle.write_bundle(
                con,
                folder,
                second.name,
                first.name,
                registry,
                project.registry,
                description.get("manifest_declarations"),
            )
    assert files(tmp_path / "full" / second.name) == files(bundles / second.name)
    assert files(altered / second.name) == files(bundles / second.name)
    rewritten = reports(altered / second.name)
    assert rewritten[sha["incidents_b.csv"]].stat().st_ino != victim.stat().st_ino
    assert rewritten[sha["compliance_c.csv"]].stat().st_nlink == 2  # kept, linked
    # where the file system refuses hard links, a kept file is copied
    copied = tmp_path / "copied"
    shutil.copytree(bundles / first.name, copied / first.name)

    def refused(src, dst):
        raise PermissionError(f"no links here: {dst}")

    written = []

    def writes(root, rel, *args):
        written.append(rel)
        return write_batches(root, rel, *args)

    with monkeypatch.context() as patched, Warehouse(str(warehouse)).connect() as con:
        patched.setattr(bundle.os, "link", refused)
        patched.setattr(bundle, "write_batches", writes)
        bundle.write_bundle(
            con,
            copied,
            second.name,
            first.name,
            registry,
            project.registry,
            description.get("manifest_declarations"),
        )
    assert files(copied / second.name) == files(bundles / second.name)
    assert reports(copied / second.name)[sha["compliance_c.csv"]].stat().st_nlink == 1
    assert f"reports/{sha['compliance_c.csv']}" not in written  # copied, not written again
    assert f"reports/{sha['incidents_c.csv']}" in written

    # version 2: the same rows, one report file per kind
    old = tmp_path / "v2" / second.name
    shutil.copytree(bundles / second.name, old)
    entries = [f for f in description["files"] if not f["path"].startswith("reports/")]
    for kind in ("incidents", "compliance", "attestations"):
        parts = sorted((old / "reports" / kind).glob("*.parquet"))
        if parts:
            table = pa.concat_tables(pq.read_table(p) for p in parts)
            entries.append(write_table(old, f"reports/{kind}.parquet", table))
        shutil.rmtree(old / "reports" / kind, ignore_errors=True)
    (old / "bundle.json").write_text(
        json.dumps(description | {"bundle_version": 2, "files": entries})
    )
    monkeypatch.delenv("CBM_PSEUDONYM_KEY")
    code, out = rederive(old, second, capsys)
    assert code == 0, out
    assert "re-derived byte for byte" in out
