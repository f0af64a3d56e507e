"""A whole scale-out deployment on loopback, for ``make test-scale`` and the benchmarks:
PostgreSQL (Debian's package, ``initdb`` in a temporary folder) for the Dagster instance,
``moto[server]`` as the S3 API for inbox, landing and publish, and ``dagster-webserver``,
``dagster-daemon`` and the code server (``dagster api grpc``) as separate processes, configured
with ``deploy/dagster.yaml`` as docs/deployment.md describes. Every process it starts is
stopped when the ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "cbm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, what: str, proc: subprocess.Popen, log: Path, timeout=90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.3)
    raise RuntimeError(
        f"{what} did not listen on {port} within {timeout} s: {log.read_text()[-2000:]}"
    )


def postgres_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(versions[-1]).parent


class Deployment:
    """``with Deployment(base, registry, key_file) as d:`` starts everything; ``d.env`` is
    the environment every process shares (DAGSTER_HOME, CBM_*, AWS_*)."""

    def __init__(self, base: Path, registry: Path, key_file: Path):
        self.base, self.registry, self.key_file = base, registry, key_file
        self.procs: list[tuple[str, subprocess.Popen]] = []
        # its own temporary folder: the postgres user must reach it (pytest's are 0700)
        self.pgdata = Path(tempfile.mkdtemp(prefix="cbm-pg-"))
        self.home = base / "dagster_home"
        self.workdir = base / "work"
        self.pg_port, self.s3_port = free_port(), free_port()
        self.grpc_port, self.web_port = free_port(), free_port()
        self.as_root = os.geteuid() == 0

    # -- PostgreSQL ----------------------------------------------------------------------
    def _pg(self, *args: str, check=True) -> subprocess.CompletedProcess:
        cmd = [str(postgres_bin() / args[0]), *args[1:]]
        if self.as_root:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}): {done.stderr or done.stdout}"
            )
        return done

    def start_postgres(self) -> str:
        if self.as_root:
            shutil.chown(self.pgdata, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.pgdata), "-A", "trust", "-U", "cbm", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.pg_port} "
            f"-c unix_socket_directories={self.pgdata} -c fsync=off"
        )
        self._pg(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-o",
            options,
            "-l",
            str(self.pgdata / "log"),
            "-w",
            "start",
        )
        self._pg_started = True
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "cbm", "dagster")
        return f"postgresql+psycopg2://cbm@127.0.0.1:{self.pg_port}/dagster"

    def stop_postgres(self) -> None:
        if getattr(self, "_pg_started", False):
            self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.pgdata, ignore_errors=True)

    # -- processes -------------------------------------------------------------------------
    def spawn(self, name: str, cmd: list, port: int | None = None) -> subprocess.Popen:
        log = self.base / f"{name}.log"
        with log.open("w") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [str(c) for c in cmd],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((name, proc))
        if port:
            wait_for_port(port, name, proc, log)
        return proc

    def __enter__(self) -> Deployment:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        for d in (self.home, self.workdir):
            d.mkdir(parents=True, exist_ok=True)
        pg_url = self.start_postgres()
        s3 = f"s3://{BUCKET}"
        self.inbox, self.landing, self.publish = f"{s3}/inbox", f"{s3}/landing", f"{s3}/publish"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("CBM_", "DAGSTER_", "AWS_"))
        } | {
            "DAGSTER_HOME": str(self.home),
            "CBM_DAGSTER_PG_URL": pg_url,
            "CBM_INBOX": self.inbox,
            "CBM_LANDING": self.landing,
            "CBM_PUBLISH": self.publish,
            "CBM_WORKDIR": str(self.workdir),
            "CBM_REGISTRY": str(self.registry),
            "CBM_KEY_FILE": str(self.key_file),
            "CBM_WORKERS": "2",  # landing, parsing and anonymising side by side
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ACCESS_KEY_ID": "cbm-test",
            "AWS_SECRET_ACCESS_KEY": "cbm-test",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        shutil.copy(ROOT / "deploy" / "dagster.yaml", self.home / "dagster.yaml")
        self.workspace = self.base / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {self.grpc_port}\n      location_name: cbm_verify\n"
        )
        self.spawn("s3", [BIN / "moto_server", "-H", "127.0.0.1", "-p", self.s3_port], self.s3_port)
        self.s3().create_bucket(Bucket=BUCKET)
        self.spawn(
            "code-server",
            [BIN / "dagster", "api", "grpc", "-m", "pipelines.definitions", "-a", "defs",
             "-h", "127.0.0.1", "-p", self.grpc_port],
            self.grpc_port,
        )  # fmt: skip
        ws = ["-w", self.workspace]
        self.spawn(
            "webserver",
            [BIN / "dagster-webserver", *ws, "-h", "127.0.0.1", "-p", self.web_port],
            self.web_port,
        )
        # scheduling as documented: nothing to start, the sensors and the schedule run by default
        for what, name in (
            ("sensor", "inbox_sensor"),
            ("sensor", "keep_verification_current"),
            ("schedule", "monthly_release"),
        ):
            listed = subprocess.run(
                [BIN / "dagster", what, "list", *ws],
                env=self.env,
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            assert f"{what.title()}: {name} [RUNNING]" in listed, listed
        self.spawn("daemon", [BIN / "dagster-daemon", "run", *ws])

    def __exit__(self, *exc) -> None:
        for _, proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # run workers the code server started are in their own sessions: stop any left
        self._stop_run_workers()
        self.stop_postgres()

    def _stop_run_workers(self) -> None:
        """Run workers the code server started, if any outlived it (found by their
        environment: this deployment's DAGSTER_HOME)."""
        mine = f"DAGSTER_HOME={self.home}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if mine in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)

    def leftovers(self) -> list[int]:
        """Processes still running with this deployment's DAGSTER_HOME."""
        mine = f"DAGSTER_HOME={self.home}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if mine in (proc / "environ").read_bytes().split(b"\0"):
                        found.append(int(proc.name))
        return found

    # -- helpers ---------------------------------------------------------------------------
    def s3(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id="cbm-test",
            aws_secret_access_key="cbm-test",
            region_name="us-east-1",
        )

    def instance(self):
        import dagster as dg

        os.environ["CBM_DAGSTER_PG_URL"] = self.env["CBM_DAGSTER_PG_URL"]
        return dg.DagsterInstance.from_config(str(self.home))

    def drop(self, files: list[tuple[Path, str]]) -> None:
        """Hand files in: (local file, path below the inbox)."""
        s3 = self.s3()
        for path, rel in files:
            s3.put_object(Bucket=BUCKET, Key=f"inbox/{rel}", Body=path.read_bytes())

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}.log\n" + (self.base / f"{name}.log").read_text()[-3000:]
            for name, _ in self.procs
        )
