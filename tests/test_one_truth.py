"""One number, one meaning (#38): every count shown about submissions, rows, findings,
events and disputes is read from each surface that shows it (the CLI, the Dagster
instance's metadata the UI shows, the Data Docs results, the release report and the Parquet
products) and compared; where two surfaces count different things on purpose (all events
against publishable ones) the test says which, as the verifier guide does.

The deployment: the shared generated run (rows that break rules, files rejected whole,
warnings), copied, then a second run adding a file whose rows break several rules at once,
AMBER and RED reports, the same bytes under a second name, and a file that cannot be read."""

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.cli import main
from tests.conftest import incident, write_csv


@pytest.fixture(scope="module")
def second_run(generated_run, tmp_path_factory):
    deployment = generated_run[0].copy(tmp_path_factory.mktemp("truth") / "d")
    party = sorted(p.name for p in deployment.inbox.iterdir() if p.is_dir())[0]
    folder = deployment.inbox / party
    write_csv(
        folder / "incidents_truth.csv",
        [
            incident("T-1", alleged_party=None),
            incident("T-2", severity=9, region=None),  # two rules, one row
            incident("T-3", tlp="AMBER", alleged_party=None),
            incident("T-4", tlp="RED", alleged_party=None),
            incident("T-5", confidence=900, severity=0, category="nonsense"),  # three
        ],
    )
    original = next(folder.glob("incidents_*.csv"))
    shutil.copyfile(original, folder / "incidents_again.csv")  # the same bytes, a second name
    (folder / "incidents_broken.csv").write_bytes(b"\x00\x01 not a table \xff\n")
    home = deployment.root / "dagster_home"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        from tests.conftest import TEST_KEY

        env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
        env.delenv("CBM_KEY_FILE", raising=False)
        assert main([*deployment.run_args(), "--unsigned"]) in (0, 1)
    return deployment, home


def cli_json(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def ui_metadata(home: Path, asset: str) -> dict:
    """The metadata of the asset's latest materialization, as the UI shows it."""
    from pipelines.event_log import instance_at

    with instance_at(home) as instance:
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1
        ).records
    metadata = record.event_log_entry.asset_materialization.metadata
    return {k: v.value for k, v in metadata.items()}


def test_submission_and_row_counts_agree_on_every_surface(second_run, capsys):
    deployment, home = second_run
    status = cli_json(capsys, "status", "--workdir", str(deployment.workdir), "--json")
    totals, listed = status["totals"], status["submissions"]
    submissions = ui_metadata(home, "submissions")
    quarantine = ui_metadata(home, "quarantine")
    release = ui_metadata(home, "release")
    # submissions by status: the CLI, the submissions asset, the release's metadata
    assert totals["by_status"] == submissions["by_status"] == release["submissions_by_status"]
    # the listing has a line per name a file was handed in under: a repeat (the same bytes
    # again) is a line of its own, counted apart ("and 1 repeat"), never a second submission
    firsts = [s for s in listed if not s["duplicate_of"]]
    assert totals["submissions"] == submissions["dagster/row_count"] == len(firsts)
    assert totals["repeats"] == len(listed) - len(firsts) >= 1
    assert Counter(s["status"] for s in firsts) == Counter(totals["by_status"])
    # rows: read = accepted + quarantined, the same three figures everywhere
    for name in ("rows_read", "rows_accepted", "rows_quarantined"):
        assert totals[name] == submissions[name] == sum(s[name] for s in firsts), name
    assert totals["rows_read"] == totals["rows_accepted"] + totals["rows_quarantined"]
    # quarantine: each row once; files rejected whole; findings one line per rule hit
    assert quarantine["rows_quarantined"] == totals["rows_quarantined"]
    rejected_whole = [s for s in firsts if s["status"] == "rejected" and not s["rows_read"]]
    assert quarantine["files_rejected_whole"] == len(rejected_whole) >= 1
    lines = cli_json(
        capsys, "status", "--workdir", str(deployment.workdir), "--quarantine", "--json"
    )["quarantine"]
    assert quarantine["critical_findings"] == len(lines)
    kept = [re.match(r"\S+ \((\d+) rows kept\)", w) for s in firsts for w in s["warnings"]]
    assert quarantine["warnings"] == sum(int(m.group(1)) for m in kept) >= 1
    assert (
        quarantine["dagster/row_count"] == quarantine["critical_findings"] + quarantine["warnings"]
    )
    # a row that breaks several rules is one row quarantined and several findings
    mine = [q for q in lines if q["file_name"] == "incidents_truth.csv"]
    assert len({q["row_number"] for q in mine}) < len(mine)
    truth = next(s for s in firsts if s["file_name"] == "incidents_truth.csv")
    assert truth["rows_quarantined"] == len({q["row_number"] for q in mine}) == 2


def test_data_docs_count_the_findings_the_warehouse_keeps(second_run):
    """Every unexpected value in the per-kind suites' stored results (one per ingestion batch)
    is one finding in validation_findings, critical or warning, of that kind."""
    deployment, _ = second_run
    site = deployment.workdir / "gx" / "gx" / "uncommitted" / "validations"
    in_docs = Counter()
    for kind in ("incidents", "compliance", "attestations"):
        for path in (site / kind).glob("*/*/*.json"):
            result = json.loads(path.read_text())
            in_docs[kind] += sum(
                r["result"].get("unexpected_count") or 0 for r in result["results"]
            )
    with duckdb.connect(str(deployment.workdir / "warehouse.duckdb"), read_only=True) as con:
        kept = Counter(
            dict(
                con.execute(
                    "SELECT s.kind, count(*) FROM validation_findings f "
                    "JOIN landed_submissions s ON s.sha256 = f.submission_sha GROUP BY ALL"
                ).fetchall()
            )
        )
    assert in_docs == kept and kept["incidents"] >= 5


def test_events_and_disputes_agree_between_the_release_its_report_and_its_files(second_run):
    deployment, home = second_run
    release = ui_metadata(home, "release")
    root = Path(release["path"])
    with duckdb.connect() as con:

        def parquet(product):
            return f"read_parquet('{root}/{product}/*/*.parquet', hive_partitioning = true)"

        events = dict(
            con.execute(f"SELECT status, count(*) FROM {parquet('events')} GROUP BY ALL").fetchall()
        )
        rows = {
            p: con.execute(f"SELECT count(*) FROM {parquet(p)}").fetchone()[0]
            for p in ("indicators", "compliance", "events")
        }
        disputes = dict(
            con.execute(
                f"SELECT status, count(*) FROM read_parquet('{root}/disputes/disputes.parquet') GROUP BY ALL"
            ).fetchall()
        )
    # the release's metadata (the UI) and its Parquet
    assert {s: release[f"events_{s}"] for s in events} == events
    assert all(
        release[f"events_{s}"] == 0
        for s in ("reported", "tentative", "definitive", "disputed", "expired")
        if s not in events
    )
    assert {p: release[f"rows_{p}"] for p in rows} == rows
    assert release["open_disputes"] == disputes.get("open", 0)
    # the report, from the same files: events per status (its chart's data), open disputes
    page = (root / "report" / "index.html").read_text()
    spec = re.search(r"vegaEmbed\('#chart-events-status', (\{.*?\}), \{actions", page).group(1)
    charted = Counter(r["status"] for r in json.loads(spec)["datasets"]["rows"])
    assert dict(charted) == events
    shown = re.search(r"([\d,]+) open; closed: ", page).group(1)
    assert int(shown.replace(",", "")) == disputes.get("open", 0)
    # all events against publishable ones: incident_clusters counts every event the
    # warehouse holds (AMBER- and RED-derived included), the release only what it may publish;
    # both descriptions say so
    clusters = ui_metadata(home, "incident_clusters")
    assert sum(clusters[f"events_{s}"] for s in events) >= sum(events.values())
    specs = {s.key.to_user_string(): s.description for s in _defs().resolve_all_asset_specs()}
    assert "CLEAR/GREEN-derived only" in specs["release"]
    assert "all events verification holds" in specs["incident_clusters"]
    assert "all disputes verification holds" in specs["disputes"]
    assert ui_metadata(home, "disputes")["disputes_open"] >= release["open_disputes"]


def _defs():
    from pipelines.definitions import defs

    return defs
