"""Crash safety and concurrency, with real processes: SIGKILL at several points, then a
re-run ends exactly like an uninterrupted run; two runs at once never corrupt anything.

Whole `cbm run` processes started, killed and started again: `make test-crash` runs them,
and `.ci/run` runs that target after `make test` (docs/development.md, "The test suites")."""

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from cbm.generate import generate
from cbm.release import verify_release

pytestmark = pytest.mark.crash

KEEP_PARTIES = {"ALPHA", "BRAVO", "AUDITOR", "ACADEMY"}
VOLATILE = {"submissions": "* EXCLUDE (received_at, landing_path)"}
TABLES = [
    "submissions",
    "quarantine",
    "reports_incidents",
    "reports_compliance",
    "reports_attestations",
    "incident_clusters",
    "event_members",
    "compliance_verdicts",
    "indicator_values",
]


def cbm(*args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def run_args(base: Path, inbox: Path, registry: Path, name: str) -> list[str]:
    return [
        "run",
        "--inbox",
        str(inbox),
        "--registry",
        str(registry),
        "--workdir",
        str(base / f"work-{name}"),
        "--publish",
        str(base / f"publish-{name}"),
    ]


def state(base: Path, name: str) -> dict:
    import duckdb

    from warehouse.db import connection_config

    con = duckdb.connect(
        str(base / f"work-{name}" / "warehouse.duckdb"), read_only=True, config=connection_config()
    )
    try:
        out = {
            t: sorted(map(repr, con.execute(f"SELECT {VOLATILE.get(t, '*')} FROM {t}").fetchall()))
            for t in TABLES
        }
    finally:
        con.close()
    publish = base / f"publish-{name}"
    latest = (publish / "LATEST").read_text().strip()
    root = publish / "releases" / latest
    out["release"] = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    out["changelog"] = (publish / "CHANGELOG.jsonl").read_text()
    out["releases"] = sorted(p.name for p in (publish / "releases").iterdir())
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.conftest import TEST_KEY

    base = tmp_path_factory.mktemp("reliability")
    gen = generate(base / "gen", seed=13, reports=60, halves=False)
    for folder in gen.inbox.iterdir():  # a third of the parties: every stage, fewer files
        if folder.name not in KEEP_PARTIES:
            shutil.rmtree(folder)
    env = dict(os.environ, CBM_PSEUDONYM_KEY=TEST_KEY)
    env.pop("DAGSTER_HOME", None)  # each workdir keeps its own instance
    run_here(base, gen, "reference")
    return base, gen, env, state(base, "reference")


def run_here(base: Path, gen, name: str) -> None:
    """`cbm run` in this process, as a new process would run it (only the imports are warm):
    the key from the environment, the workdir's own Dagster instance."""
    from pipelines.cli import main
    from tests.conftest import TEST_KEY

    with pytest.MonkeyPatch.context() as env:
        env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
        env.delenv("DAGSTER_HOME", raising=False)
        assert main(run_args(base, gen.inbox, gen.registry, name)) == 0


@contextmanager
def watched(base: Path, name: str):
    """The Dagster instance the run of ``name`` will use, made and opened here before the run
    starts (two processes setting up one new instance at once can both stamp its schema), and
    a function that waits until that run (another process) has recorded an asset: a point
    inside a job, named by the event log, not by a guess of time."""
    import dagster as dg

    from pipelines.event_log import default_instance_yaml, instance_at

    home = base / f"work-{name}" / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(default_instance_yaml())

    with instance_at(home) as instance:

        def recorded(asset: str) -> bool:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1
            ).records
            return bool(records)

        def wait_for(asset: str, timeout: float = 120.0) -> None:
            deadline = time.monotonic() + timeout
            while not recorded(asset):
                assert time.monotonic() < deadline, f"{asset} was never materialized"
                time.sleep(0.05)

        recorded("release")  # every storage set up, before the run starts
        yield wait_for


@pytest.mark.parametrize(
    "asset",
    # inside ingestion (files parsed, not yet validated), inside verification (events made,
    # verdicts not yet), inside publication (indicators computed, the release not yet cut)
    ["staged_submissions", "event_members", "indicator_values"],
    ids=["ingestion", "verification", "publication"],
)
def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(setup, asset):
    base, gen, env, reference = setup
    name = asset
    with watched(base, name) as wait_for:
        proc = cbm(*run_args(base, gen.inbox, gen.registry, name), env=env)
        wait_for(asset)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    if asset != "indicator_values":  # killed before anything could be published
        assert not (base / f"publish-{name}" / "LATEST").exists()
    run_here(base, gen, name)  # the re-run
    got = state(base, name)
    for key in reference:
        assert got[key] == reference[key], key
    latest = (base / f"publish-{name}" / "LATEST").read_text().strip()
    assert verify_release(base / f"publish-{name}" / "releases" / latest) == (True, [])
    assert not list((base / f"publish-{name}" / "releases").glob(".tmp-*"))


def test_two_runs_at_once_both_finish_and_agree(setup):
    base, gen, env, reference = setup
    args = run_args(base, gen.inbox, gen.registry, "concurrent")
    first, second = cbm(*args, env=env), cbm(*args, env=env)
    out1, _ = first.communicate(timeout=300)
    out2, _ = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (out1, out2)
    assert "waiting: another cbm run holds" in out1 + out2
    got = state(base, "concurrent")
    for key in reference:
        assert got[key] == reference[key], key


def test_a_reader_that_leaves_does_not_stop_the_run(setup):
    """`cbm run | head -1`: the run goes on after its reader has left (its output goes
    nowhere), ends as an unread run would, and says nothing of it."""
    base, gen, env, reference = setup
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *run_args(base, gen.inbox, gen.registry, "unread")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout.readline().startswith(b"[1/3] landing")
    proc.stdout.close()  # the reader leaves after one line, as `head -1` does
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0, err
    assert err == ""
    got = state(base, "unread")
    for key in reference:
        assert got[key] == reference[key], key


@pytest.mark.parametrize(
    "asset", ["staged_submissions", "event_members"], ids=["ingestion", "verification"]
)
def test_ctrl_c_ends_in_one_line_and_a_rerun_ends_like_an_uninterrupted_run(setup, asset):
    """Ctrl-C (SIGINT) inside a run: one line saying so, exit 130 (as the shell reports
    SIGINT), no traceback, nothing published; the next run ends as an uninterrupted one."""
    base, gen, env, reference = setup
    name = f"sigint-{asset}"
    with watched(base, name) as wait_for:
        proc = cbm(*run_args(base, gen.inbox, gen.registry, name), env=env)
        wait_for(asset)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, out
    assert out.strip().splitlines()[-1] == (
        "cbm run: interrupted (Ctrl-C); what it had done is kept, and the next cbm run "
        "carries on from there"
    )
    assert "Traceback" not in out
    assert not (base / f"publish-{name}" / "LATEST").exists()
    run_here(base, gen, name)
    got = state(base, name)
    for key in reference:
        assert got[key] == reference[key], key


def test_ctrl_c_in_a_terminal_ends_the_readers_quietly_and_rejects_nothing(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the command and the reader child
    parsing a file (300,000 rows). The command says so in one line (exit 130); the reader ends without a
    traceback, leaves no process behind, and its file is not rejected (it is read again by
    the next run)."""
    from tests.conftest import TEST_KEY, Project, incident, write_csv

    project = Project(tmp_path / "p")
    rows = [incident(f"BIG-{i}", summary="x" * 200) for i in range(300_000)]
    write_csv(project.inbox / "ALPHA" / "incidents_big.csv", rows)
    env = dict(os.environ, CBM_PSEUDONYM_KEY=TEST_KEY, CBM_WARM="0")
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *project.run_args()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )

    def group() -> list[tuple[int, int, str]]:
        """(pid, parent pid, command line) of each process of the command's session, read
        from /proc (quicker than ps: the reader may parse for well under a second)."""
        members = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                args = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:  # ended meanwhile
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, sid
            if int(fields[3]) == proc.pid:
                members.append((int(entry), int(fields[1]), args.decode(errors="replace")))
        return members

    deadline = time.monotonic() + 120
    while True:  # a reader child (forked by the fork server) is parsing the file
        members = group()
        servers = {pid for pid, _, args in members if "forkserver" in args}
        if any(ppid in servers for _, ppid, _ in members):
            break
        assert proc.poll() is None and time.monotonic() < deadline, "no reader ever started"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert err.splitlines() == [
        "cbm run: interrupted (Ctrl-C); what it had done is kept, and the next cbm run "
        "carries on from there"
    ]
    deadline = time.monotonic() + 10
    while group():
        assert time.monotonic() < deadline, group()
        time.sleep(0.1)
    # no file rejected whole (a reader that died is otherwise taken as over its memory)
    assert project.query("SELECT rule FROM quarantine WHERE row_number IS NULL") == []
