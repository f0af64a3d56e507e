"""The benchmark's baselines measure the same rules as the suites (benchmarks/bench.py,
benchmarks/floor.py): a baseline that checked less would flatter or shame GX unfairly."""

import os
import shutil
import sys
from pathlib import Path

import pytest

from checks.validation import INDEX_COLUMNS, load_suite, run_suites
from warehouse.db import Warehouse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench  # noqa: E402
import floor  # noqa: E402


@pytest.fixture(scope="module")
def warehouse_file(generated_run, tmp_path_factory):
    """A generated inbox run through the pipeline: its anon_* tables hold failing rows.
    A copy, since the suites write to the file they check."""
    copy = tmp_path_factory.mktemp("bench") / "warehouse.duckdb"
    shutil.copyfile(generated_run[0].workdir / "warehouse.duckdb", copy)
    return copy


@pytest.mark.parametrize("kind", bench.KINDS)
def test_raw_scan_counts_what_the_suite_counts(warehouse_file, tmp_path, kind):
    """Per expectation: the hand-written predicate and GX find the same number of rows."""
    (result,) = run_suites(None, warehouse_file, tmp_path / "gx", [(kind, f"anon_{kind}")])
    by_gx = {(f.rule, f.column): f.unexpected_count for f in result.findings}
    assert by_gx, "the generated inbox should make some rules fail"
    with Warehouse(path=str(warehouse_file)).connect() as con:
        for e in load_suite(kind)["expectations"]:
            predicate = bench.predicate(e, f"anon_{kind}")
            assert predicate, f"{e['type']} has no SQL translation in bench.predicate"
            (raw,) = con.execute(
                f"SELECT count(*) FILTER (WHERE {predicate}) FROM anon_{kind}"
            ).fetchone()
            key = (e["meta"]["rule"], e["meta"].get("column", e["kwargs"].get("column")))
            assert raw == by_gx.get(key, 0), key


@pytest.mark.parametrize("kind", bench.KINDS)
def test_one_expectation_floor_flags_the_rows_the_suite_flags(warehouse_file, tmp_path, kind):
    """floor.collapsed: one rule failing exactly where any rule of the suite fails."""
    (result,) = run_suites(None, warehouse_file, tmp_path / "gx", [(kind, f"anon_{kind}")])
    cols = ", ".join(INDEX_COLUMNS)
    (rule,) = floor.collapsed(load_suite(kind))["expectations"]
    failing = rule["kwargs"]["failing_when"].replace("{batch}", f"anon_{kind}")
    with Warehouse(path=str(warehouse_file)).connect() as con:
        per_rule = set()
        for f in result.findings:
            per_rule |= set(con.execute(f"SELECT {cols} FROM ({f.query}) q").fetchall())
        collapsed = set(con.execute(f"SELECT {cols} FROM anon_{kind} WHERE {failing}").fetchall())
    assert collapsed == per_rule


def test_a_results_file_names_its_commit_and_says_when_the_tree_differed(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    assert bench.result_name(tmp_path, 10) == "bench-10-nogit.json"
    git("init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "old.json").write_text("{}\n")
    git("add", ".")
    git("commit", "-qm", "x")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert bench.result_name(tmp_path, 10) == f"bench-10-{commit}.json"
    (tmp_path / "benchmarks" / "results" / "old.json").write_text('{"a": 1}\n')
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert bench.result_name(tmp_path, 10) == f"bench-10-{commit}.json"  # results, untracked
    (tmp_path / "code.py").write_text("a = 2\n")
    assert bench.result_name(tmp_path, 10) == f"bench-10-{commit}-dirty.json"


def test_the_bench_runs_the_pipeline_of_its_own_checkout(tmp_path, monkeypatch):
    """A bench run from another worktree (sharing this venv, whose editable install points
    here) must measure that worktree's pipeline: ``run_cbm`` runs ``python -m pipelines.cli``
    from the bench's own root."""
    checkout = tmp_path / "worktree"
    cli = checkout / "pipelines" / "cli"
    cli.mkdir(parents=True)
    (checkout / "pipelines" / "__init__.py").write_text("")
    (cli / "__init__.py").write_text("")
    (cli / "__main__.py").write_text(
        "import sys, pathlib\n"
        "pathlib.Path(sys.argv[sys.argv.index('--workdir') + 1]).write_text(__file__)\n"
    )
    monkeypatch.setattr(bench, "ROOT", checkout)
    marker = tmp_path / "ran"
    bench.run_cbm(tmp_path, tmp_path, marker, tmp_path, dict(os.environ))
    assert Path(marker.read_text()) == cli / "__main__.py"


def test_the_incremental_submission_has_the_rows_it_is_named_for(tmp_path):
    """``--incremental`` times one more submission of N reports: exactly N incident rows
    (it had been the CSV third of an N-report sample), with report ids no other seed's
    submission uses (two seeds' files on one workdir would otherwise conflict)."""
    import polars as pl

    inbox = tmp_path / "inbox"
    (inbox / "INTLORG").mkdir(parents=True)
    one = pl.read_csv(bench.incremental_file(inbox, 300, 5), infer_schema=False)
    other = pl.read_csv(bench.incremental_file(inbox, 300, 6), infer_schema=False)
    assert one.height == other.height == 300
    assert one["report_id"].n_unique() == 300
    assert set(one["report_id"]).isdisjoint(other["report_id"])
    assert {"category", "occurred_at", "region"} <= set(one.columns)
