"""The warm process itself (``python -m pipelines.warm_server``, started by ``cbm warm start``):
it imports what a ``cbm run`` imports, then forks a child for each command a ``cbm`` process
hands it (``pipelines.warm``, where the whole arrangement is described). Its output goes to
its log, one line per command started, returned and exited.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from pipelines.warm import (
    DEFAULT_IDLE_MINUTES,
    ROOT,
    WarmError,
    environment_difference,
    identity,
    is_runtime,
    log_path,
    private_dir,
    recv,
    send,
    socket_path,
)

# What a cbm run imports, imported once by the warm process (a child imports the rest).
PRELOAD = (
    "pipelines.cli",
    "dagster",
    "pipelines.definitions",
    "pipelines.runs",
    "pipelines.jobs",
    "checks.validation",
    "checks.offline_docs",
    "warehouse.db",
    "cbm.release",
    "cbm.intake",
    "cbm.readers",
    "cbm.report",
    "cbm.stix",
    "cbm.misp",
    "polars",
    "pyarrow.parquet",
    "duckdb",
    "warehouse.migrations",
)

# What else a run imports on its way (found by listing the modules a warm child imported:
# benchmarks/README.md, M39): the libraries' own modules, so a release of theirs that moves
# one costs a child that import, never the warm process its start.
PRELOAD_IF_PRESENT = (
    "dagster._core.definitions.external_asset",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.execution.execute_in_process",
    "dagster._core.execution.plan.active",
    "dagster._core.executor.in_process",
    "dagster._core.instance.factory",
    "dagster._core.instance.runs.run_domain",
    "dagster._core.secrets.env_file",
    "dagster._core.storage.legacy_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.storage.migration.utils",
    "dagster._core.storage.root",
    "dagster._core.system_config.composite_descent",
    "dotenv",
    "duckdb_engine",
    "upath.implementations.local",
    "fsspec.implementations.local",
    "great_expectations.render.renderer.site_builder",
    "iso3166",
    "jinja2.ext",
    "multiprocessing.forkserver",
    "multiprocessing.popen_forkserver",
    "multiprocessing.synchronize",
    "narwhals._interchange.dataframe",
    "ruamel.yaml.mergevalue",
    "tzdata.zoneinfo",
    "watchdog.observers.polling",
    "watchdog.utils.dirsnapshot",
)


def child_environment(imported: dict[str, str], command: dict[str, str]) -> dict[str, str]:
    """A child's environment: the warm process's after its imports (libraries set variables
    as they are imported: polars its allocator's, ``pipelines.event_log`` Dagster's batch
    size), with the command's own values of what is read as it runs (``is_runtime``). The
    rest of the command's environment equals the warm process's at its start
    (``environment_difference``), so the child has what the command's own process would have
    after the same imports."""
    env = {k: v for k, v in imported.items() if not is_runtime(k)}
    env.update((k, v) for k, v in command.items() if is_runtime(k))
    return env


def preload() -> float:
    """Import what a run imports; the seconds it took. Refuses to serve if a Python thread
    is left running: a fork copies only the thread that forks. (The native threads that
    numpy's BLAS, polars and jemalloc start as they are imported survive a fork by their own
    handlers, as they do in the reader children's fork server, ``cbm.children``.)"""
    import gc
    import importlib
    import threading

    started = time.monotonic()
    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_IF_PRESENT:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # what the imports made is never collected again: children do not walk it
    if threading.active_count() != 1:
        names = ", ".join(t.name for t in threading.enumerate())
        raise WarmError(f"a thread runs after the imports ({names}): cannot fork safely")
    return time.monotonic() - started


# the log line when it fails, from the set-up child or from here
GX_SETUP_FAILED = "setting up a Great Expectations project failed"


def prepare_gx_project() -> int:
    """Set up, once, the Great Expectations project a new workdir's first run would build
    (its suites, validation definitions and the checkpoints of every combination of kinds a
    run validates, with the warehouse suites'), and keep it for the children to start new
    workdirs from (``checks.gx_template``, M21): about 0.4 s of a run in a new workdir
    (benchmarks/README.md, M44). The set-up needs DuckDB, whose threads would make this
    process unsafe to fork, so a child of its own does it in a temporary folder; this process
    only reads the files it left. Returns how many files were kept (0: none, the children
    build their own)."""
    import tempfile

    from checks import gx_template

    with tempfile.TemporaryDirectory(prefix="cbm-warm-gx-") as tmp:
        warehouse_path, gx_dir = Path(tmp) / "warehouse.duckdb", Path(tmp) / "gx"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - a child; its result is checked below
            code = 1
            try:
                from assets import validated, verified
                from checks.validation import prepare_project
                from warehouse.db import Warehouse

                with Warehouse(path=str(warehouse_path)).connect() as con:
                    checkpoints = validated.gx_checkpoints(con) + verified.gx_checkpoints()
                    con.execute("CHECKPOINT")
                prepare_project(gx_dir, warehouse_path, checkpoints)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - said in the log; it goes on without
                _say(f"{GX_SETUP_FAILED}: {type(exc).__name__}: {exc}")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            return 0
        gx_template.keep(gx_dir, warehouse_path)
        return len(gx_template.kept_files())


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _say(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)


class Server:
    """The warm process: a listening socket, and a child per command it serves."""

    def __init__(self, path: Path, idle_seconds: float, env: dict[str, str]):
        import selectors

        self.path = path
        self.idle_seconds = idle_seconds
        self.identity = identity()
        self.env = env  # as a command's process has it when it would delegate
        self.uid = os.getuid()
        self.started = time.time()
        self.served = 0
        self.children: dict[int, Child] = {}  # by the pidfd of each
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.stopping = False
        self.lock_file = None  # held by main() for as long as the warm process runs

    def bind(self) -> None:
        """Listen on the socket (its folder made private by ``main``, which holds the lock)."""
        self.path.unlink(missing_ok=True)  # a socket nobody answers on (checked by the caller)
        self.listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self.listener.listen(16)
        self.inode = self.path.stat().st_ino

    def serve(self) -> None:
        import selectors

        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        last_active = time.monotonic()
        while not (self.stopping and not self.children):
            timeout = (
                None if self.children else self.idle_seconds - (time.monotonic() - last_active)
            )
            if timeout is not None and timeout <= 0:
                _say(f"idle for {self.idle_seconds / 60:.0f} min: stopping")
                break
            for key, _ in self.selector.select(timeout):
                if key.data == "accept":
                    conn, _ = self.listener.accept()
                    self._answer(conn)
                    continue
                what, pidfd = key.data
                if pidfd not in self.children:
                    continue  # ended in this same round
                if what == "client":
                    self._client_left(pidfd)
                elif what == "done":
                    self._command_done(pidfd)
                else:
                    self._child_ended(pidfd)
            if self.children:
                last_active = time.monotonic()
        self.close()

    def stop_listening(self, why: str) -> None:
        """No new command from now on (a command that comes runs in its own process); the
        warm process ends when the commands it runs have ended."""
        if self.stopping:
            return
        self.stopping = True
        _say(f"stopping: {why}")
        self.selector.unregister(self.listener)
        self.listener.close()
        self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(OSError):  # only our own: a new warm process may have replaced it
            if self.path.stat().st_ino == self.inode:
                self.path.unlink()

    def close(self) -> None:
        self.selector.close()
        self.listener.close()
        self._unlink()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            message, fds = recv(conn, want_fds=3)
        except (OSError, ValueError, WarmError) as exc:
            _say(f"a request could not be read: {exc}")
            conn.close()
            return
        try:
            if uid != self.uid or message is None:
                return
            kind = message.get("kind")
            if kind == "status":
                send(conn, self.status())
            elif kind == "stop":
                self.stop_listening("asked to stop")
                send(conn, {"stopping": True, "running": len(self.children), "pid": os.getpid()})
            elif kind == "run" and len(fds) == 3 and self._start(conn, message, fds):
                conn = None  # kept until its child ends
        except OSError as exc:
            _say(f"a request could not be answered: {exc}")
        finally:
            for fd in fds:
                os.close(fd)
            if conn is not None:
                conn.close()

    def status(self) -> dict:
        return {
            "pid": os.getpid(),
            "started": self.started,
            "served": self.served,
            "running": len(self.children),
            "root": str(ROOT),
            "python": sys.executable,
            "log": str(log_path()),
            "fresh": identity() == self.identity,
        }

    def _refuse(self, message: dict) -> str | None:
        if self.stopping:
            return "it is stopping"
        current = identity()
        if message.get("identity") != current or self.identity != current:
            # its code is not the checkout's any more: it has had its day
            stale = "the code or the installed packages changed since it started"
            self.stop_listening(stale)
            return f"{stale}; it stops now (start it again: cbm warm start)"
        differ = environment_difference(self.env, message.get("env") or {})
        if differ:
            shown = ", ".join(differ[:5]) + (
                f" and {len(differ) - 5} more" if len(differ) > 5 else ""
            )
            return f"the environment differs from the warm process's in {shown}"
        cwd = message.get("cwd")
        if not isinstance(cwd, str) or not os.path.isdir(cwd):
            return "the working directory is gone"
        return None

    def _start(self, conn: socket.socket, message: dict, fds: list[int]) -> bool:
        import selectors

        why = self._refuse(message)
        if why:
            send(conn, {"refused": why})
            return False
        argv = [str(a) for a in message["argv"]]
        env = child_environment(dict(os.environ), message["env"])
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child ends in os._exit
            os.close(done_r)
            conn.close()
            self.close_in_child()
            _child(argv, message["cwd"], env, fds, done_w)
        os.close(done_w)
        pidfd = os.pidfd_open(pid)
        child = Child(conn, pid, done_r, argv[0])
        self.children[pidfd] = child
        self.selector.register(pidfd, selectors.EVENT_READ, ("ended", pidfd))
        self.selector.register(done_r, selectors.EVENT_READ, ("done", pidfd))
        self.selector.register(conn, selectors.EVENT_READ, ("client", pidfd))
        self.served += 1
        _say(f"cbm {argv[0]}: child {pid} for a command in {message['cwd']}")
        with contextlib.suppress(OSError):  # the command left already: _client_left ends it
            send(conn, {"pid": pid})
        return True

    def _report(self, child: Child, code: int, how: str) -> None:
        """The command's exit code to its process, once; each end (its command ``returned``,
        its child ``exited``) in the log."""
        seconds = time.monotonic() - child.started
        _say(f"cbm {child.name}: child {child.pid} {how} {code} after {seconds:.1f} s")
        if child.reported:
            return
        child.reported = True
        with contextlib.suppress(KeyError):  # not watched once it left
            self.selector.unregister(child.conn)
        with contextlib.suppress(OSError):
            send(child.conn, {"exit": code})
        child.conn.close()

    def _command_done(self, pidfd: int) -> None:
        """The child says its command has returned (it may still do what the command left
        for after it, ``pipelines.output.after_the_command``)."""
        child = self.children[pidfd]
        data = os.read(child.done_fd, 16)
        self._close_done(child)
        if data.strip().lstrip(b"-").isdigit():
            self._report(child, int(data), "returned")

    def _close_done(self, child: Child) -> None:
        if child.done_fd is not None:
            self.selector.unregister(child.done_fd)
            os.close(child.done_fd)
            child.done_fd = None

    def _child_ended(self, pidfd: int) -> None:
        child = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        self._close_done(child)
        _, status = os.waitpid(child.pid, 0)
        self._report(child, _exit_code(status), "exited")

    def _client_left(self, pidfd: int) -> None:
        """The command's process went away before its child's command returned (killed: it
        forwards the signals it can catch): end the child, as that process's own run would
        have ended."""
        child = self.children[pidfd]
        self.selector.unregister(child.conn)  # watched no more: once gone, it stays readable
        try:
            gone = not child.conn.recv(1)
        except OSError:
            gone = True
        if gone and not child.reported:
            _say(f"the command of child {child.pid} left: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)

    def end_children(self) -> None:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    def close_in_child(self) -> None:
        """In a forked child: let go of the warm process's socket, its lock and its other
        commands."""
        if self.lock_file is not None:
            self.lock_file.close()  # the warm process keeps the lock; the child's copy goes
        self.listener.close()
        self.selector.close()
        for pidfd, child in self.children.items():
            os.close(pidfd)
            if child.done_fd is not None:
                os.close(child.done_fd)
            child.conn.close()


class Child:
    """A command the warm process runs: its process's connection, its child, and the pipe on
    which the child says that the command has returned."""

    def __init__(self, conn: socket.socket, pid: int, done_fd: int, name: str):
        self.conn, self.pid, self.done_fd, self.name = conn, pid, done_fd, name
        self.started = time.monotonic()
        self.reported = False


def _child(argv: list[str], cwd: str, env: dict, fds: list[int], done_fd: int) -> None:
    """In the forked child: become the command's process, run it, say its exit code on
    ``done_fd``, then do what it left for after it (the Data Docs) with its output going to
    the warm process's log, and exit."""
    code = 1
    log_fd = os.dup(1)  # the warm process's log
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        _reopen_standard_streams()
        sys.argv = ["cbm", *argv]
        from pipelines.cli import run_main
        from pipelines.output import collect_after_the_command

        after = collect_after_the_command()
        code = run_main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        # the command's output is complete: its process returns, this one carries on alone
        for fd in (0, 1, 2):
            os.dup2(log_fd, fd)
        os.write(done_fd, str(code).encode())
        os.close(done_fd)
        for work in after:
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - said in the log; the command has returned
                _say(f"child {os.getpid()}: what cbm {argv[0]} left for later failed: {exc!r}")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must end in os._exit whatever happens
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reopen_standard_streams() -> None:
    """Python's standard streams over the command's descriptors, buffered as Python would
    buffer them (a terminal's stdout by line, a file's or a pipe's by block)."""
    import io

    def text(fd: int, mode: str, model) -> io.TextIOWrapper:
        tty = os.isatty(fd)
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedWriter(raw) if "w" in mode else io.BufferedReader(raw)
        return io.TextIOWrapper(
            buffered,
            encoding=model.encoding,
            errors=model.errors,
            line_buffering=tty or fd == 2,
        )

    sys.stdin = sys.__stdin__ = text(0, "r", sys.__stdin__ or sys.stdout)
    sys.stdout = sys.__stdout__ = text(1, "w", sys.__stdout__)
    sys.stderr = sys.__stderr__ = text(2, "w", sys.__stderr__)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.warm_server --idle-minutes N``: the warm process itself (started by
    ``cbm warm start``, its output going to its log)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.warm_server")
    parser.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES)
    args = parser.parse_args(argv)
    import pipelines.cli  # noqa: F401 - what a command imports before it would delegate

    env = dict(os.environ)
    path = socket_path()
    try:
        private_dir(create=True)
        # one warm process per checkout and Python: the lock is held until this one exits
        held = path.with_suffix(".lock").open("a")
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say(f"another warm process runs for this checkout ({path}): not starting")
        return 2
    except (WarmError, OSError) as exc:
        _say(f"cannot start: {exc}")
        return 2
    try:
        seconds = preload()
        started = time.monotonic()
        try:
            kept = prepare_gx_project()
        except OSError as exc:  # no temporary folder, no fork: the children build their own
            _say(f"{GX_SETUP_FAILED}: {exc}")
            kept = 0
        _say(
            f"a Great Expectations project of {kept} files kept for new workdirs "
            f"({time.monotonic() - started:.1f} s)"
            if kept
            else "no Great Expectations project kept: each new workdir's run builds its own"
        )
        server = Server(path, args.idle_minutes * 60, env)
        server.lock_file = held
        server.bind()
    except WarmError as exc:
        _say(f"cannot start: {exc}")
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    _say(f"ready: pid {os.getpid()}, imported in {seconds:.1f} s, socket {path}")
    try:
        server.serve()
    except KeyboardInterrupt:
        _say("stopped by a signal")
        server.end_children()
        server.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # as console_main: no DuckDB binding's shutdown noise in the log
