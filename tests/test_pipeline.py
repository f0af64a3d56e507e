"""The whole pipeline on small temporary inboxes: nothing lost, nothing leaked, same bytes."""

import json
import os
from pathlib import Path

import duckdb

from cbm.release import verify_release
from tests.conftest import attestation, compliance, incident, write_csv, write_jsonl


def _release_files(publish: Path) -> dict[str, bytes]:
    latest = (publish / "LATEST").read_text().strip()
    root = publish / "releases" / latest
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_file_level_rejections_are_kept_with_specific_reasons(project, tmp_path):
    write_csv(project.inbox / "ALPHA" / "incidents_ok.csv", [incident("A-1")])
    write_csv(project.inbox / "ZULU" / "incidents_x.csv", [incident("Z-1")])
    (project.inbox / "ALPHA" / "notes_misc.csv").write_text("a\n1\n")
    (project.inbox / "ALPHA" / "incidents_x.xml").write_text("<x/>")
    (project.inbox / "ALPHA" / "incidents_empty.csv").write_bytes(b"")
    (project.inbox / "ALPHA" / "incidents_bad.parquet").write_bytes(b"PAR1 nope")
    (project.inbox / "ALPHA" / "incidents_latin.csv").write_bytes(
        "report_id\nCaf\xe9\n".encode("latin-1")
    )
    secret = tmp_path / "outside.txt"
    secret.write_text("do not read me")
    os.symlink(secret, project.inbox / "ALPHA" / "incidents_link.csv")
    summary = project.run(ingest_only=True)
    rows = dict(
        project.query(
            "SELECT s.file_name, q.rule || ': ' || q.reason FROM submissions s JOIN quarantine q ON q.submission_sha = s.sha256 "
            "WHERE q.row_number IS NULL"
        )
    )
    assert (
        "unregistered_party" in rows["incidents_x.csv"]
        and "'ZULU' is not registered" in rows["incidents_x.csv"]
    )
    assert rows["notes_misc.csv"].startswith("unknown_kind")
    assert rows["incidents_x.xml"].startswith("unknown_format")
    assert rows["incidents_empty.csv"].startswith("empty_file")
    assert "not a readable Parquet file" in rows["incidents_bad.parquet"]
    assert "not UTF-8: byte 0xe9" in rows["incidents_latin.csv"]
    assert rows["incidents_link.csv"].startswith("not_a_regular_file")
    statuses = dict(project.query("SELECT file_name, status FROM submissions"))
    assert statuses.pop("incidents_ok.csv") == "accepted"
    assert set(statuses.values()) == {"rejected"}
    # every submission is in the landing area, byte for byte; the link's target never is
    recorded = [Path(p) for (p,) in project.query("SELECT landing_path FROM submissions")]
    assert not any(p.is_absolute() for p in recorded)  # relative to the landing area
    landed = [project.workdir / "landing" / p for p in recorded]
    assert len(landed) == 8 and all(p.exists() for p in landed)
    assert not any(b"do not read me" in p.read_bytes() for p in landed)
    assert summary["submissions_rejected"] == 7


def test_same_bytes_twice_is_one_submission_and_versions_supersede(project):
    rows = [incident("A-1"), incident("A-2")]
    write_csv(project.inbox / "ALPHA" / "incidents_first.csv", rows)
    write_csv(project.inbox / "ALPHA" / "incidents_copy.csv", rows)
    project.run()
    assert project.query("SELECT count(*), sum(rows_accepted) FROM submissions") == [(1, 2)]
    write_csv(
        project.inbox / "ALPHA" / "incidents_revised.csv", [incident("A-1", version=2, severity=5)]
    )
    project.run()
    assert project.query("SELECT count(*) FROM reports_incidents WHERE report_id = 'A-1'") == [(2,)]
    assert project.query(
        "SELECT version, severity FROM current_incidents WHERE report_id = 'A-1'"
    ) == [(2, 5)]
    changelog = [
        json.loads(line) for line in (project.publish / "CHANGELOG.jsonl").read_text().splitlines()
    ]
    assert len(changelog) == 2
    assert changelog[1]["previous_release_id"] == changelog[0]["release_id"]
    assert (changelog[1]["new_submissions"], changelog[1]["corrections"]) == (1, 1)


def test_accounting_and_release_on_a_generated_inbox(generated_run):
    deployment, summary = generated_run
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_quarantined"]
    assert summary["rows_quarantined"] > 0 and summary["submissions_rejected"] == 5
    assert verify_release(summary["release_path"]) == (True, [])
    con = duckdb.connect()
    base = summary["release_path"]
    for product, column in (
        ("indicators", "indicator"),
        ("compliance", "verdict"),
        ("events", "status"),
    ):
        n = con.execute(
            f"SELECT count(DISTINCT {column}) FROM read_parquet('{base}/{product}/*/*.parquet', hive_partitioning=true)"
        ).fetchone()[0]
        assert n > 1, product
    manifest = json.loads((Path(base) / "manifest.json").read_text())
    # the inputs: every submission whose rows verification read (not the rejected ones)
    used = deployment.query(
        "SELECT DISTINCT submission_sha FROM (SELECT submission_sha FROM verification_incidents "
        "UNION ALL SELECT submission_sha FROM verification_compliance "
        "UNION ALL SELECT submission_sha FROM verification_attestations) ORDER BY 1"
    )
    assert manifest["inputs"] == [sha for (sha,) in used]
    assert summary["submissions_rejected"] < len(manifest["inputs"]) < summary["submissions"]
    assert manifest["as_of"] and manifest["method_version"].startswith("m-")
    # Data Docs: an index, and a page for every suite that ran (kinds and warehouse tables)
    site = deployment.workdir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    index = (site / "index.html").read_text()
    pages = {
        p.relative_to(site / "validations").parts[0] for p in site.glob("validations/**/*.html")
    }
    assert {"incidents", "compliance", "attestations", "warehouse_reports_incidents"} <= pages
    assert "warehouse_submissions" in index
    # each result is named after what it checked, not GX's __none__ (#38)
    runs = {
        p.relative_to(site / "validations").parts[1] for p in site.glob("validations/**/*.html")
    }
    assert "__none__" not in index and "__none__" not in runs
    assert "whole-warehouse_before-verification" in runs
    assert any(
        r.endswith(tuple(f"@{sha[:16]}" for (sha,) in used)) or "-submissions_" in r for r in runs
    )
    assert index.count("quarantined, by design") == 1  # what a per-kind "Failed" means


def test_same_inputs_give_the_same_release_bytes(generated_run, tmp_path, monkeypatch):
    """A second workdir, a second, fresh Dagster instance and three workers instead of one
    (submissions parsed and anonymised side by side) publish the same bytes."""
    from pipelines.cli import run_pipeline

    first, a = generated_run
    monkeypatch.setenv("CBM_WORKERS", "3")
    b = run_pipeline(first.inbox, first.registry, tmp_path / "w2", tmp_path / "p2")
    assert a["latest_release"] == b["latest_release"]
    assert _release_files(first.publish) == _release_files(tmp_path / "p2")
    # the member bundle too, byte for byte
    bundle = Path("bundles") / a["latest_release"]
    one, two = first.workdir / bundle, tmp_path / "w2" / bundle
    assert (one / "bundle.json").is_file()
    assert {p.relative_to(one): p.read_bytes() for p in one.rglob("*") if p.is_file()} == {
        p.relative_to(two): p.read_bytes() for p in two.rglob("*") if p.is_file()
    }
    # and a re-run on the same workdir publishes nothing new
    c = run_pipeline(first.inbox, first.registry, tmp_path / "w2", tmp_path / "p2")
    assert c["latest_release"] == b["latest_release"] and c["releases"] == 1


CANARIES = [
    "Canary Republic",
    "canary.officer@example.org",
    "192.0.2.77",
    "canary-hash-5f5f",
    "+41 22 555 0199",
    "https://canary.example/leak",
]


def test_no_canary_reaches_the_warehouse_or_a_published_file(project):
    from tests.conftest import write_registry

    parties = __import__("yaml").safe_load((project.registry / "parties.yaml").read_text())
    parties[0]["name"] = "Canary Republic"
    write_registry(project.registry, parties)
    summary_text = "Canary Republic told canary.officer@example.org about 192.0.2.77, call +41 22 555 0199, https://canary.example/leak"
    write_csv(
        project.inbox / "BRAVO" / "incidents_canary.csv",
        [
            incident(
                f"K-{i}",
                summary=summary_text,
                technical_keys="192.0.2.77;canary-hash-5f5f",
                tlp="CLEAR",
            )
            for i in range(3)
        ]
        + [incident("K-bad", severity="canary.officer@example.org", region="192.0.2.77")],
    )
    write_csv(
        project.inbox / "CHARLIE" / "incidents_canary.csv", [incident("K-9", summary=summary_text)]
    )
    write_csv(
        project.inbox / "BRAVO" / "compliance_canary.csv", [compliance("C-1", summary=summary_text)]
    )
    write_jsonl(
        project.inbox / "GOLF" / "attestations_canary.jsonl",
        [attestation("T-1", summary=summary_text, subject_report_id="C-1")],
    )
    summary = project.run()
    assert summary["rows_quarantined"] >= 1
    tables = [
        t
        for (t,) in project.query(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        )
    ]
    for table in tables:
        dump = " ".join(str(r) for r in project.query(f"SELECT * FROM {table}"))
        for canary in CANARIES:
            assert canary.lower() not in dump.lower(), (table, canary)
    for path in Path(project.publish).rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            for canary in CANARIES:
                assert canary.lower().encode() not in data, (path, canary)
    # the names stay where they belong: the registry and the landing copies
    assert any(
        b"Canary Republic" in p.read_bytes()
        for p in (project.workdir / "landing").rglob("*")
        if p.is_file()
    )


def test_warehouse_checks_report_a_version_handed_in_twice(project):
    """The warehouse suites: a failing rule is counted with samples of its rows, a passing
    one reports nothing (tables validated by their submission rows or, for submissions,
    without index columns)."""
    import dagster as dg

    from assets.resources import CbmSettings
    from assets.verified import warehouse_table_checks
    from warehouse.db import Warehouse

    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1"), incident("A-2")])
    write_csv(project.inbox / "ALPHA" / "incidents_b.csv", [incident("A-1")])
    project.run(ingest_only=True)  # the suites run on what ingestion stored
    settings = CbmSettings(
        inbox=str(project.inbox),
        registry=str(project.registry),
        workdir=str(project.workdir),
        publish=str(project.publish),
    )
    results = {
        r.check_name: r
        for r in warehouse_table_checks(
            dg.build_op_context(),
            settings=settings,
            warehouse=Warehouse(path=str(settings.warehouse_path)),
        )
    }
    assert set(results) == {
        "suite_warehouse_submissions",
        *(f"suite_warehouse_reports_{k}" for k in ("incidents", "compliance", "attestations")),
    }
    incidents = results["suite_warehouse_reports_incidents"]
    assert incidents.metadata["unexpected_by_rule"].value == {"unique_version:report_id": 2}
    assert incidents.metadata["samples"].value == {"unique_version": ["A-1", "A-1"]}
    assert incidents.passed  # a warning, not critical
    assert results["suite_warehouse_submissions"].metadata["unexpected_by_rule"].value == {}
