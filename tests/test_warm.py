"""``cbm warm``: a warm process of this checkout, and ``cbm run`` forked from it, through the
real ``cbm`` entry point (``python -m pipelines.cli``), as an operator runs them."""

import ast
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import warm, warm_server
from tests.conftest import TEST_KEY, Project, incident, write_csv

ROOT = Path(__file__).resolve().parent.parent


def cbm(*args: str, env: dict, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        **popen,
    )


@pytest.fixture(scope="module")
def warm_env(tmp_path_factory):
    """The environment of a warm process started for this module (its own private folder),
    and of the commands it serves; stopped (or killed) at the end."""
    base = tmp_path_factory.mktemp("warm")
    env = {k: v for k, v in os.environ.items() if k != "CBM_WARM"}
    env |= {"CBM_WARM_DIR": str(base / "w"), "CBM_PSEUDONYM_KEY": TEST_KEY}
    started = cbm("warm", "start", "--idle-minutes", "30", env=env)
    assert started.returncode == 0, started.stderr
    assert "ready" in started.stdout
    yield env
    status = cbm("warm", "status", env=env)
    stopped = cbm("warm", "stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    pid = [w for w in status.stdout.split() if w.isdigit()]
    if pid:  # `cbm warm stop` returns once the process has gone
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid[0]), signal.SIGKILL)


def ask_with(env: dict, kind: str, **fields) -> dict | None:
    """Ask the module's warm process (``status``, or a ``run`` request with ``fields``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CBM_WARM_DIR", env["CBM_WARM_DIR"])
        if kind != "run":
            return warm.ask(kind)
        conn = warm.connect()
        with conn:
            request = {"kind": "run", "argv": ["run"], "cwd": os.getcwd(), "env": dict(os.environ)}
            warm.send(conn, request | fields, [0, 1, 2])
            return warm.recv(conn)[0]


def _log(env: dict) -> str:
    folder = Path(env["CBM_WARM_DIR"])
    return "".join(p.read_text() for p in folder.glob("*.log"))


def test_a_run_in_the_warm_process_publishes_what_its_own_process_publishes(
    warm_env, generated_run, tmp_path
):
    """The 150-report inbox through the warm process: the same release, byte for byte, as
    the run of the same inbox in a process of its own (the shared ``generated_run``)."""
    cold, _summary = generated_run
    served_before = _log(warm_env).count("returned 0")
    exited_before = _log(warm_env).count("exited 0")
    env = warm_env | {"DAGSTER_HOME": str(tmp_path / "dagster_home")}
    args = ["run", "--inbox", str(cold.inbox), "--registry", str(cold.registry)]
    done = cbm(*args, "--workdir", str(tmp_path / "w"), "--publish", str(tmp_path / "p"), env=env)
    assert done.returncode == 0, done.stderr
    assert "warm process not used" not in done.stderr
    assert "Rows read" in done.stdout and "Published release:" in done.stdout
    assert _log(warm_env).count("returned 0") == served_before + 1  # the warm process ran it
    # the Data Docs: the summary names the index, which the child renders once the command
    # has returned (still holding the workdir's lock), and then it exits
    index = tmp_path / "w" / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert f"Data Docs:         {index}" in done.stdout
    deadline = time.monotonic() + 60
    while _log(warm_env).count("exited 0") < exited_before + 1:
        assert time.monotonic() < deadline, _log(warm_env)
        time.sleep(0.1)
    assert index.is_file()
    ours = sorted((tmp_path / "p" / "releases").iterdir())
    theirs = sorted((cold.publish / "releases").iterdir())
    assert [p.name for p in ours] == [p.name for p in theirs]
    for mine, other in zip(ours, theirs, strict=True):
        files = sorted(f.relative_to(mine) for f in mine.rglob("*") if f.is_file())
        assert files == sorted(f.relative_to(other) for f in other.rglob("*") if f.is_file())
        for name in files:
            assert (mine / name).read_bytes() == (other / name).read_bytes(), name
    # a member party's re-derivation of that release, through the warm process too
    (release,) = ours
    again = cbm(
        "rederive",
        str(tmp_path / "w" / "bundles" / release.name),
        "--release",
        str(release),
        env=env,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"OK: {release} re-derived byte for byte" in again.stdout
    assert re.search(r"cbm rederive: child \d+ returned 0", _log(warm_env))


def test_new_workdirs_start_from_the_project_the_warm_process_set_up(warm_env, tmp_path):
    """The warm process sets a Great Expectations project up once, as it starts (its log says
    how many files), and its runs in new workdirs start from it instead of building their
    own (M44): two such runs have the same suites, validation definitions and checkpoints,
    GX's ids and all, which two projects built apart never share."""
    assert re.search(r"a Great Expectations project of [1-9]\d* files kept", _log(warm_env))
    projects = []
    for name in ("a", "b"):
        project = Project(tmp_path / name)
        write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
        env = warm_env | {"DAGSTER_HOME": str(tmp_path / name / "dagster_home")}
        done = cbm(*project.run_args(), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "warm process not used" not in done.stderr
        projects.append(project.workdir / "gx" / "gx")
    first, second = projects
    shared = [
        path.relative_to(first)
        for folder in ("expectations", "validation_definitions", "checkpoints")
        for path in sorted((first / folder).glob("*.json"))
    ]
    # the checkpoint of a run of incidents alone is one of those the warm process set up
    assert Path("checkpoints/incidents__batch_incidents.json") in shared
    assert len(shared) >= 10
    for name in shared:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_an_operator_mistake_reads_the_same_through_the_warm_process(warm_env, tmp_path):
    args = ["run", "--inbox", str(tmp_path / "nowhere"), "--registry", str(tmp_path)]
    args += ["--workdir", str(tmp_path / "w"), "--publish", str(tmp_path / "p")]
    served = cbm(*args, env=warm_env)
    alone = cbm(*args, env=warm_env | {"CBM_WARM": "0"})
    assert served.returncode == alone.returncode == 2
    assert served.stderr == alone.stderr
    assert served.stderr.count("\n") == 1 and "does not exist" in served.stderr


def test_another_environment_runs_in_its_own_process_and_says_why(warm_env, tmp_path):
    """A variable a library reads as it is imported (here TZ) differs: the warm process
    cannot stand for this command's own process; one line names the variable, not its value."""
    args = ["run", "--inbox", str(tmp_path / "nowhere"), "--registry", str(tmp_path)]
    args += ["--workdir", str(tmp_path / "w"), "--publish", str(tmp_path / "p")]
    done = cbm(*args, env=warm_env | {"TZ": "Asia/Tokyo", "CBM_DEBUG": "1"})
    lines = done.stderr.splitlines()
    assert lines[0] == (
        "cbm: warm process not used: the environment differs from the warm process's in TZ"
    )
    assert done.returncode == 2 and "does not exist" in lines[1]
    # what a command may change (its key, its Dagster home, CBM_DEBUG) does not count
    assert (
        warm.environment_difference({"A": "1", "CBM_DEBUG": "1", "DAGSTER_HOME": "/x"}, {"A": "1"})
        == []
    )
    assert warm.environment_difference({"A": "1", "B": "2"}, {"A": "3", "C": "4"}) == [
        "A",
        "B",
        "C",
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_signal_to_the_command_reaches_its_run(warm_env, tmp_path, sig):
    """Ctrl-C or kill reach the command's own process: it forwards them to the run in the
    warm process, which ends as the command's own process would, and the command exits with
    its code (143: ended by SIGTERM; 130 and one line: Ctrl-C)."""
    from tests.conftest import Project

    project = Project(tmp_path / "d")
    project.workdir.mkdir(parents=True)
    with (project.workdir / ".cbm-run.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another cbm run would: this one waits
        with subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *project.run_args()],
            env=warm_env | {"DAGSTER_HOME": str(tmp_path / "home")},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            first = proc.stdout.readline()
            assert first.startswith("waiting: another cbm run holds"), first
            proc.send_signal(sig)
            assert proc.wait(timeout=30) == 128 + sig
            if sig == signal.SIGINT:
                assert proc.stderr.read().splitlines() == [
                    "cbm run: interrupted (Ctrl-C); what it had done is kept, and the next "
                    "cbm run carries on from there"
                ]
    deadline = time.monotonic() + 10
    while "running" in (status := ask_with(warm_env, "status")) and status["running"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert f"exited {128 + sig}" in _log(warm_env)


def test_one_warm_process_per_checkout(warm_env):
    """A second warm process for the same checkout and Python does not start (its lock), and
    ``cbm warm start`` leaves the running one alone."""
    second = subprocess.run(
        [sys.executable, "-m", "pipelines.warm_server"],
        env=warm_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2
    assert "another warm process runs for this checkout" in second.stdout
    again = cbm("warm", "start", env=warm_env)
    assert again.returncode == 0 and "already runs" in again.stdout
    assert ask_with(warm_env, "status")["fresh"] is True


def test_changed_code_stops_the_warm_process(warm_env, tmp_path):
    """A command from code that is not what the warm process imported (an edit, an install)
    runs in its own process; the warm process says so and stops. (Last in this module.)"""
    assert ask_with(warm_env, "status")["fresh"] is True
    reply = ask_with(warm_env, "run", identity="not this code")
    assert "the code or the installed packages changed" in reply["refused"]
    deadline = time.monotonic() + 10
    while ask_with(warm_env, "status") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "stopping: the code or the installed packages changed" in _log(warm_env)
    status = cbm("warm", "status", env=warm_env)
    assert status.returncode == 0 and "no warm process" in status.stdout


def _environ_reads(node) -> list[str]:
    """The names of the variables a piece of code reads from ``os.environ`` by a constant."""
    names = []
    for n in ast.walk(node):
        target, key = None, None
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.args:
            target, key = n.func.value, n.args[0]
            if n.func.attr == "getenv":
                target = ast.Attribute(value=target, attr="environ")
        elif isinstance(n, ast.Subscript):
            target, key = n.value, n.slice
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "environ"
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
        ):
            names.append(key.value)
    return names


def test_no_module_reads_a_cbm_variable_as_it_is_imported():
    """What lets every ``CBM_*`` variable differ between a warm process and a command it
    serves (``warm.is_runtime``): cbm reads them inside functions, as a command runs, never
    in a module's own statements (which the warm process ran once, for every command)."""
    read_at_import = []
    for package in warm.PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            for stmt in tree.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                read_at_import += [
                    f"{source.relative_to(ROOT)}: {name}"
                    for name in _environ_reads(stmt)
                    if warm.is_runtime(name)
                ]
    assert read_at_import == []
    # the scan sees a read: the one variable pipelines sets as it is imported, read there
    init = ast.parse((ROOT / "pipelines" / "__init__.py").read_text(encoding="utf-8"))
    assert "ARROW_DEFAULT_MEMORY_POOL" in _environ_reads(init)
    assert warm.is_runtime("CBM_INBOX") and not warm.is_runtime("TZ")


def test_a_request_sent_whole_is_sent_even_if_the_warm_process_answered_and_left(monkeypatch):
    """A refusal can come, and the connection close, the moment the request is in: the
    command then has its answer, not a broken pipe (found by a fresh clone's make test)."""
    import socket

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    real = socket.send_fds

    def sent_then_gone(sock, buffers, fds):
        count = real(sock, buffers, fds)
        theirs.recv(1 << 20)
        theirs.close()  # the warm process read it whole, answered and closed
        return count

    monkeypatch.setattr(socket, "send_fds", sent_then_gone)
    with mine:
        warm.send(mine, {"kind": "run", "argv": ["run"]}, [0, 1, 2])


def test_data_docs_that_fail_after_the_command_leave_the_next_run_to_render_them(
    tmp_path, monkeypatch
):
    """A warm child renders the Data Docs after its command has written the run's state; if
    that fails, the state is forgotten, so the next ``cbm run`` is not "nothing new"."""
    from types import SimpleNamespace

    from pipelines import runner

    (tmp_path / "last_run.json").write_text("{}")

    def broken(spec, since):
        raise OSError("disk full")

    monkeypatch.setattr(runner, "_build_data_docs", broken)
    with pytest.raises(OSError, match="disk full"):
        runner._build_data_docs_locked(SimpleNamespace(workdir=tmp_path), since=None)
    assert not (tmp_path / "last_run.json").exists()
    assert runner._last_run_state(tmp_path) is None


def test_a_run_longer_than_the_answer_s_timeout_is_waited_for(monkeypatch):
    """The warm process must answer a request within ``REPLY_TIMEOUT_S``; the run itself
    then takes what it takes (a run of a million reports is longer than a minute)."""
    import socket
    import threading

    monkeypatch.setattr(warm, "REPLY_TIMEOUT_S", 0.2)
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    mine.settimeout(warm.REPLY_TIMEOUT_S)  # as delegate leaves it after the answer

    def end_later():
        time.sleep(1.0)  # five times the answer's timeout
        warm.send(theirs, {"exit": 3})

    ender = threading.Thread(target=end_later)
    ender.start()
    try:
        assert warm._wait_for_child(mine, pid=2**22 + 1) == 3  # no such process: no signal
    finally:
        ender.join()
        mine.close()
        theirs.close()


def test_child_environment_is_the_warm_process_s_with_the_command_s_runtime_values():
    imported = {"PATH": "/bin", "_RJEM_MALLOC_CONF": "x", "DAGSTER_HOME": "/warm", "CBM_DEBUG": "1"}
    command = {"PATH": "/bin", "DAGSTER_HOME": "/mine", "CBM_PSEUDONYM_KEY": "k"}
    assert warm_server.child_environment(imported, command) == {
        "PATH": "/bin",
        "_RJEM_MALLOC_CONF": "x",  # set by an import: the command's own process would have it
        "DAGSTER_HOME": "/mine",
        "CBM_PSEUDONYM_KEY": "k",
    }  # CBM_DEBUG: the command's, which it has not set


def test_a_folder_others_can_enter_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    monkeypatch.setenv("CBM_WARM_DIR", str(folder))
    with pytest.raises(warm.WarmError, match="not private to this user"):
        warm.private_dir(create=False)
    link = tmp_path / "link"
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    link.symlink_to(private)
    monkeypatch.setenv("CBM_WARM_DIR", str(link))
    with pytest.raises(warm.WarmError, match="not a folder"):
        warm.private_dir(create=False)
    env = dict(os.environ) | {"CBM_WARM_DIR": str(folder)}
    env.pop("CBM_WARM")
    done = cbm("warm", "start", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("set CBM_WARM_DIR to a folder of your own")
