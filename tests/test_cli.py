"""The cbm command: exit codes, one-line reasons, status fields (contract §6)."""

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.conftest import incident, write_csv


def run_args(project, inbox=None) -> list[str]:
    return project.run_args(inbox=inbox or project.inbox)


def test_run_refuses_a_missing_inbox_with_one_line(project, capsys):
    code = main(run_args(project, inbox=project.inbox / "nope"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err


def test_run_refuses_an_invalid_registry(project, capsys):
    (project.registry / "parties.yaml").write_text("- code: lower\n  name: x\n  class: state\n")
    code = main(run_args(project))
    err = capsys.readouterr().err
    assert code == 2 and "invalid registry" in err and "parties.yaml" in err


def test_run_refuses_without_a_key(project, capsys, monkeypatch):
    monkeypatch.delenv("CBM_PSEUDONYM_KEY")
    code = main(run_args(project))
    assert code == 2 and "no pseudonymisation key" in capsys.readouterr().err


def test_as_of_without_offset_is_refused(project, capsys):
    code = main([*run_args(project), "--as-of", "2026-01-01T00:00:00"])
    assert code == 2 and "needs a UTC offset" in capsys.readouterr().err


def test_run_status_and_verify_release(project, capsys):
    write_csv(
        project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1"), incident("A-2", severity=0)]
    )
    (project.inbox / "ALPHA" / "incidents_empty.csv").write_bytes(b"")
    assert main(run_args(project)) == 0
    out = capsys.readouterr().out
    assert "[3/3]" in out and "Rows quarantined" in out
    assert main(["status", "--workdir", str(project.workdir), "--json"]) == 0
    subs = json.loads(capsys.readouterr().out)["submissions"]
    assert {tuple(sorted(s)) for s in subs} == {
        tuple(
            sorted(
                [
                    "sha256",
                    "party",
                    "kind",
                    "file_name",
                    "status",
                    "rows_read",
                    "rows_accepted",
                    "rows_quarantined",
                    "reasons",
                    "messages",
                    "warnings",
                    "duplicate_of",
                    "superseded_by",
                    "copy_of",
                    "submission",
                ]
            )
        )
    }
    by_name = {s["file_name"]: s for s in subs}
    assert by_name["incidents_a.csv"]["status"] == "partial"
    assert by_name["incidents_a.csv"]["reasons"] == {"severity_range": 1}
    assert by_name["incidents_a.csv"]["messages"] == {"severity_range": "severity must be 1-5"}
    assert by_name["incidents_empty.csv"]["status"] == "rejected" and by_name[
        "incidents_empty.csv"
    ]["reasons"] == {"empty_file": 1}
    # the text form: the reason beside each rule, and totals that add up
    assert main(["status", "--workdir", str(project.workdir)]) == 0
    text = capsys.readouterr().out
    assert "severity_range (1): severity must be 1-5" in text
    assert "2 submissions (1 partial, 1 rejected); 2 rows read = 1 accepted + 1 quarantined" in text
    # the quarantine in full, narrowed by party and rule
    assert (
        main(
            [
                "status",
                "--workdir",
                str(project.workdir),
                "--quarantine",
                "--rule",
                "severity_range",
            ]
        )
        == 0
    )
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].endswith(
        "ALPHA/incidents_a.csv row 2 [severity_range] severity='0': severity must be 1-5"
    )
    assert listing[-1] == "1 quarantined rows and files (--rule severity_range)"
    # a value that names nothing here is a mistake, told with the ones there are (#38)
    for flag, value, says in (
        ("--party", "BRAVO", "--party BRAVO: no submission from that party in this workdir; "),
        ("--party", "alpha", "(did you mean ALPHA?); parties here: ALPHA"),
        ("--rule", "nosuchrule", "; rules here: empty_file, severity_range"),
    ):
        argv = ["status", "--workdir", str(project.workdir), "--quarantine", flag, value]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert main(["verify-release", str(project.publish)]) == 0
    latest = (project.publish / "LATEST").read_text().strip()
    next((project.publish / "releases" / latest).rglob("*.parquet")).write_bytes(b"tampered")
    assert main(["verify-release", str(project.publish / "releases" / latest)]) == 1
    assert "checksum mismatch" in capsys.readouterr().out


def test_status_without_a_warehouse(tmp_path, capsys):
    assert main(["status", "--workdir", str(tmp_path)]) == 2
    assert "no warehouse" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["generate"], ["run", "--inbox", "x"], []])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "required" in err and "--help" in err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["rn"], "cbm: no command 'rn' (did you mean run?)"),
        (
            ["status", "--wrokdir", "x"],
            "cbm status: unknown option --wrokdir (did you mean --workdir?)",
        ),
        (
            ["docs", "--workdir", "x", "--port", "70000"],
            "--port: '70000' is not a whole number from 1 to 65535",
        ),
        (["run", "--inbox", "x"], "cbm run: required: --registry, --workdir, --publish"),
        (["sign", "--key", "k"], "cbm sign: required: FILES"),
        (["rederive", "/nope"], "cbm rederive: required: --release ("),  # the bundle was given
    ],
)
def test_usage_mistakes_name_the_nearest_command_or_option(argv, says, capsys):
    """click's own "did you mean", said in the CLI's one-line form (#37)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


def test_help_and_version_exit_0_and_list_every_command(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in ("run", "status", "alerts", "rederive", "verify-release", "cosign", "demo"):
        assert f"\n  {name} " in text, name
    assert "exit codes:" in text and "CBM_KEY_FILE" in text
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("cbm-verify ")


def test_run_refuses_a_bad_gx_keep_results(project, capsys, monkeypatch):
    monkeypatch.setenv("CBM_GX_KEEP_RESULTS", "0")
    code = main(run_args(project))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "CBM_GX_KEEP_RESULTS" in err and len(err.splitlines()) == 1


def test_duckdb_out_of_memory_names_the_limit_and_how_to_raise_it(project, capsys, monkeypatch):
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    monkeypatch.setenv("CBM_DUCKDB_MEMORY", "1MB")  # too little for DuckDB to write anything
    assert main([*run_args(project), "--ingest-only"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cbm run: failed: ingest_submissions failed: "), last
    for words in ("ran out of memory", "CBM_DUCKDB_MEMORY=1MB", "raise CBM_DUCKDB_MEMORY"):
        assert words in last, (words, last)


def test_a_run_with_nothing_new_says_so_without_loading_dagster(project, capsys):
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    assert main([*run_args(project), "--ingest-only"]) == 0
    first = capsys.readouterr().out
    assert "1 submission ingested" in first and "1 rows read = 1 accepted + 0 quarantined" in first
    assert "not verifying or publishing (--ingest-only)" in first
    assert not (project.publish / "LATEST").exists()
    # nothing new to ingest, but nothing published yet: this run verifies and publishes
    assert main(run_args(project)) == 0
    published = capsys.readouterr().out
    assert "[3/3] computing indicators, publishing" in published
    assert "release_context" in published and "nothing new" not in published
    assert main(run_args(project)) == 0
    again = capsys.readouterr().out
    latest = (project.publish / "LATEST").read_text().strip()
    assert f"nothing new: release {latest} is current" in again and "[2/3]" not in again
    # and in a fresh interpreter, that answer loads neither Dagster nor Great Expectations
    import os
    import subprocess
    import sys

    code = (
        "import sys, json; from pipelines.cli import main; rc = main(sys.argv[1:]); "
        "print(json.dumps([rc, sorted(m for m in ('dagster', 'great_expectations') "
        "if m in sys.modules)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *run_args(project)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, []], done.stdout + done.stderr
    # a change of method (the policy) is something new, though no file is
    policy = project.registry / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("review_window_days: 14", "review_window_days: 15")
    )
    assert main(run_args(project)) == 0
    assert "[3/3] computing indicators, publishing" in capsys.readouterr().out


def test_progress_replaces_one_line_on_a_terminal_and_is_silent_in_a_pipe():
    import io

    from pipelines.cli import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pipe, tty = io.StringIO(), Terminal()
    for stream in (pipe, tty):
        progress = Progress(stream)
        progress.update("landing 1/2 files")
        progress.clear()
    assert pipe.getvalue() == ""
    assert tty.getvalue() == "\r\x1b[Klanding 1/2 files\r\x1b[K"


def test_a_reader_that_leaves_first_ends_a_command_quietly(tmp_path):
    """`cbm ... | head`: the command ends without a word when its output has no reader, as
    a process ended by SIGPIPE would (exit 141 in the shell), while SIGPIPE itself stays
    ignored so that a closed connection elsewhere cannot end a process."""
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "generate", "--out", str(tmp_path / "g")]
        + ["--reports", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    proc.stdout.close()  # the reader leaves before a line is written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(60) == 141, err
    assert err == ""


def test_a_broken_connection_that_is_not_the_output_is_a_failure(monkeypatch, tmp_path, capsys):
    """A peer hanging up elsewhere (an alert endpoint, object storage) is not the reader of
    our output leaving: it fails in one line, as any unexpected error does."""
    import pipelines.cli.status as status

    def hung_up(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(status, "cmd_status", hung_up)
    assert main(["status", "--workdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cbm status: failed: BrokenPipeError") and "\n" not in err


def test_one_identifier_names_a_submission_in_status_quarantine_warehouse_and_ui(project, capsys):
    from cbm.intake import partition_key

    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1", severity=9)])
    assert main([*run_args(project), "--ingest-only"]) == 0
    ((sha, party, name, file_sha),) = project.query(
        "SELECT sha256, party_code, file_name, file_sha256 FROM landed_submissions"
    )
    capsys.readouterr()
    assert main(["status", "--workdir", str(project.workdir)]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if x.endswith(name))
    assert "\nTotal: 1 submission" in text and "\\n" not in text  # a blank line, not "\n"
    assert line.split()[0] == sha[:12] != file_sha[:12]  # the submission, not the bytes
    assert main(["status", "--workdir", str(project.workdir), "--quarantine", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["quarantine"]
    assert row["submission"] == sha[:12]
    assert partition_key(party, name, sha).endswith("@" + sha[:16])  # the UI's partition
    assert main(["status", "--workdir", str(project.workdir), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["submissions"]
    assert (listed["submission"], listed["sha256"]) == (sha, file_sha)  # both, by name


def test_a_run_writes_the_registry_tables_once_and_verification_alone_writes_them_too(project):
    """In one cbm run, ingestion writes the registry tables and verification leaves them as
    they are; a run with nothing to ingest verifies against the registry it was given."""
    import dagster as dg

    def written() -> int:
        with dg.DagsterInstance.get() as instance:
            return len(
                instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey("party_directory")), limit=10
                ).records
            )

    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    project.run()
    assert written() == 1
    (project.workdir / "last_run.json").unlink()  # not "nothing new": the jobs run again
    project.run()
    assert written() == 2


def test_cbm_run_renders_the_data_docs_of_every_validation_it_ran_once_at_the_end(project):
    """The runs of cbm run leave the Data Docs to the command, which renders them after its
    last run: a page for every validation result the run stored, and the index."""
    import dagster as dg

    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    summary = project.run()
    site = project.workdir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    # the first run's summary names the index it rendered (it was read before the pages were)
    assert summary["data_docs"] == str(site / "index.html")
    stored = sorted((project.workdir / "gx" / "gx" / "uncommitted" / "validations").rglob("*.json"))
    pages = sorted((site / "validations").rglob("*.html"))
    assert stored and len(pages) == len(stored)
    assert {p.relative_to(site / "validations").with_suffix("") for p in pages} == {
        s.relative_to(project.workdir / "gx" / "gx" / "uncommitted" / "validations").with_suffix("")
        for s in stored
    }
    assert (site / "index.html").is_file()
    with dg.DagsterInstance.get() as instance:
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("validation_findings")), limit=1
        ).records
    link = record.event_log_entry.asset_materialization.metadata["data_docs"].value
    assert link.endswith("/index.html")


def test_cbm_run_with_relative_folders_as_make_demo_gives_them(project, monkeypatch, capsys):
    """`make demo` names its folders relative to the clone (.cbm/demo/...): every path the run
    makes from them (the Data Docs' page addresses among them) is made absolute first."""
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    monkeypatch.chdir(project.root)
    args = ["run", "--inbox", "inbox", "--registry", "registry", "--workdir", "work"]
    assert main([*args, "--publish", "publish"]) == 0, capsys.readouterr().err
    site = project.workdir / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    assert (site / "index.html").is_file()


def test_the_help_names_every_environment_variable_the_code_reads():
    """Each variable our code reads from the environment (``os.environ``) is in the help's
    environment list, which every ``cbm CMD --help`` shows."""
    import re

    from pipelines.cli.base import EPILOG

    root = Path(__file__).resolve().parent.parent
    read = set()
    for package in ("cbm", "assets", "checks", "warehouse", "pipelines", "compat"):
        for source in (root / package).rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            read |= set(
                re.findall(r"environ(?:\.get|\.setdefault)?\(?\[?\s*\"([A-Z][A-Z0-9_]+)\"", text)
            )
    listed = set(re.findall(r"^  ([A-Z][A-Z0-9_]+)", EPILOG.split("exit codes:")[0], re.M))
    # AWS's region is boto's and pyarrow's own setting; CBM_PSEUDONYM_KEY is CBM_KEY_FILE's
    # alternative, named on its line; XDG_RUNTIME_DIR is the system's, named on CBM_WARM_DIR's
    named = {"AWS_REGION", "AWS_DEFAULT_REGION", "CBM_PSEUDONYM_KEY", "XDG_RUNTIME_DIR"}
    assert read - listed - named == set()
    assert "CBM_PSEUDONYM_KEY" in EPILOG
    assert "XDG_RUNTIME_DIR" in EPILOG
    assert {"CBM_WORKERS", "CBM_DUCKDB_MEMORY", "ARROW_DEFAULT_MEMORY_POOL"} <= read


def _runs_and_skips(instance) -> tuple[list[str], set[str]]:
    """The instance's runs' job names, oldest first, and every asset any run materialized."""
    import dagster as dg

    runs = list(reversed(instance.get_runs()))
    made = {
        e.dagster_event.event_specific_data.materialization.asset_key.to_user_string()
        for run in runs
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    }
    return [run.job_name for run in runs], made


def test_a_run_is_a_dagster_run_per_partitioned_stage_and_verifies_only_accepted_reports(
    project, capsys
):
    import dagster as dg

    # every row quarantined: the run ingests and verifies in one Dagster run, and its
    # verification finds nothing accepted, so nothing is verified or published
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1", severity="huge")])
    assert main(run_args(project)) == 0
    first = capsys.readouterr().out
    assert "1 rows read = 0 accepted + 1 quarantined" in first
    assert "[3/3] nothing to verify or publish yet: no report has been accepted" in first
    assert "release_context" not in first and not (project.publish / "LATEST").exists()
    with dg.DagsterInstance.get() as instance:
        jobs, made = _runs_and_skips(instance)
    assert jobs == ["ingest_and_verify"], jobs
    assert "reports_incidents" in made and "release_context" not in made
    assert not made & {"event_members", "alerts", "calendar_entries"}, made
    # an accepted report: ingestion and verification in one run, then the months and the
    # release in another; two runs, as the two partitioned stages need
    write_csv(project.inbox / "ALPHA" / "incidents_b.csv", [incident("A-2")])
    assert main(run_args(project)) == 0
    second = capsys.readouterr().out
    assert "1 submission ingested and verified" in second
    assert "[3/3] computing indicators, publishing" in second and "release_context" in second
    assert (project.publish / "LATEST").exists()
    with dg.DagsterInstance.get() as instance:
        jobs, made = _runs_and_skips(instance)
    assert jobs == ["ingest_and_verify", "ingest_and_verify", "indicators_and_release"], jobs
    assert {"release_context", "event_members", "release"} <= made
