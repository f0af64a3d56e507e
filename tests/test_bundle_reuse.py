"""The member bundle written incrementally (decision 5 of #40, benchmarks/README.md M50): a
release's bundle keeps the report files of the submissions whose rows did not change since the
previous bundle, and is byte for byte the bundle a full write gives."""

import json
import shutil
from pathlib import Path

import duckdb

from tests.conftest import compliance, incident, write_csv
from tests.test_rederive import AS_OF, latest, rederive


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
