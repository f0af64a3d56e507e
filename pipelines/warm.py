"""The warm process (``cbm warm``): the stack imported once, each ``cbm run`` forked from it.

A ``cbm run`` in a fresh process spends 2.5-5 s importing Dagster, Great Expectations,
DuckDB, polars and the definitions before it looks at a file: as long as the rest of a
one-file run (benchmarks/README.md, M39). ``cbm warm start`` starts one background process per
checkout and Python that imports all of it once and then waits on a Unix socket. A ``cbm run``,
``cbm demo`` or ``cbm rederive`` (the ``cbm`` command or ``python -m pipelines.cli``) that
finds it hands over
its arguments, working directory, environment and standard streams; the warm process forks a
child that runs the command exactly as a fresh process would (``pipelines.cli.main``) and
reports its exit code. The command's own process forwards Ctrl-C and ``kill`` to that child
and exits with its code. Only the command runs in the child: each run still has its own
Dagster instance, warehouse connection and Great Expectations context, so nothing of one run
is left for the next (the bytes published are the same: tested).

The child runs the code the warm process imported, so the warm process serves only:

- the same user (the socket's folder is private, and the peer's uid is checked);
- the same code: the packages' files (their sizes and times), the Python and its installed
  packages, as when it started (``identity``). After a change it says so, stops, and the
  command runs in its own process;
- the same environment, except the variables read when a command runs (``is_runtime``):
  a variable that a library reads as it is imported (``TZ``, ``POLARS_*``, ``DAGSTER_*``,
  ``ARROW_DEFAULT_MEMORY_POOL``) must be the same, else the command runs in its own
  process and one line says which variable differs.

A child reports its command's exit code as soon as the command has returned, then finishes
what the command left for after it (``pipelines.output.after_the_command``: the Data Docs
pages, decision 2 of #40) with the workdir still locked, its output going to the warm
process's log: the pages appear a moment after the command has returned, and a next ``cbm
run`` on that workdir waits for them.

This module is the command's side and what both sides share; the warm process is
``pipelines.warm_server``. Nothing here imports more than the standard library: a command
that finds no warm process loses a few milliseconds. ``CBM_WARM=0`` keeps a command in its
own process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import struct
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cbm", "compat", "assets", "checks", "warehouse", "pipelines")
WARM_COMMANDS = frozenset({"run", "demo", "rederive"})  # the commands that run Dagster

# Read when a command runs, not when a module is imported: they may differ between the warm
# process and a command it serves (``is_runtime``). Every other variable must be equal.
RUNTIME_PREFIX = "CBM_"  # cbm's own settings are all read as a command runs (tested)
RUNTIME_ENV = frozenset(
    {
        "DAGSTER_HOME",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "TERM",
        "COLUMNS",
        "LINES",
        # a login's or a tool's own, read by none of the libraries as they are imported: a
        # warm process started in one terminal serves another, or make
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
        "SSH_AUTH_SOCK",
        "XDG_SESSION_ID",
        "TMUX",
        "TMUX_PANE",
        "STY",
        "WINDOW",
        "MAKEFLAGS",
        "MAKELEVEL",
        "MFLAGS",
        "MAKE_TERMOUT",
        "MAKE_TERMERR",
    }
)

MAX_MESSAGE = 4 << 20
REPLY_TIMEOUT_S = 60  # the warm process answers a request at once: refused, or a child's pid
DEFAULT_IDLE_MINUTES = 480


class WarmError(Exception):
    """A one-line reason the warm process cannot start or answer."""


def code_fingerprint() -> str:
    """The code a process runs, cheaply: each file of our packages by name, size and time."""
    code = hashlib.sha256()
    for package in PACKAGES:
        base = ROOT / package
        for path in sorted(base.rglob("*")):
            if path.suffix in (".py", ".sql", ".json", ".yaml"):
                st = path.stat()
                code.update(f"{path.relative_to(base)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return code.hexdigest()


def identity() -> str:
    """The code, the Python and its installed packages (the folder changes when a package is
    installed or removed) a process runs: a warm process serves only its own."""
    site = Path(sysconfig.get_paths()["purelib"])
    parts = [str(ROOT), sys.executable, sys.version, str(site.stat().st_mtime_ns)]
    return hashlib.sha256("\n".join([*parts, code_fingerprint()]).encode()).hexdigest()


def warm_dir() -> Path:
    """The private folder of this user's warm processes (``CBM_WARM_DIR`` to choose it)."""
    chosen = os.environ.get("CBM_WARM_DIR")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / f"cbm-warm-{os.getuid()}"


def socket_path() -> Path:
    """This checkout's and this Python's socket: one warm process for each."""
    name = hashlib.sha256(f"{ROOT}\n{sys.executable}".encode()).hexdigest()[:16]
    return warm_dir() / f"{name}.sock"


def log_path() -> Path:
    return socket_path().with_suffix(".log")


def private_dir(create: bool) -> Path | None:
    """The warm folder, made private; refused when another user owns it or others can enter."""
    folder = warm_dir()
    if create:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        st = folder.lstat()  # a link is refused, wherever it points
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a folder (a link or a file)"
        raise WarmError(
            f"{folder} is not private to this user ({what}, owner uid {st.st_uid}, mode "
            f"{st.st_mode & 0o777:o}): set CBM_WARM_DIR to a folder of your own"
        )
    return folder


def is_runtime(name: str) -> bool:
    """Whether a variable is read only as a command runs: cbm's own (``CBM_*``, the code
    location's ``CBM_INBOX``... included), Dagster's home, and what differs from one
    terminal, login or ``make`` to the next (``RUNTIME_ENV``)."""
    return name in RUNTIME_ENV or name.startswith(RUNTIME_PREFIX)


def environment_difference(mine: dict, theirs: dict) -> list[str]:
    """The names of the variables, but those read as a command runs (``is_runtime``), that
    differ between two environments, sorted (names only: a value may be a secret)."""
    names = {n for n in set(mine) | set(theirs) if not is_runtime(n)}
    return sorted(n for n in names if mine.get(n) != theirs.get(n))


# ---- messages: a 4-byte length, then JSON; the first request carries three descriptors


def send(conn: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack(">I", len(data)) + data
    if fds:
        sent = socket.send_fds(conn, [frame], fds)
        if sent < len(frame):  # (never an empty send: the peer may have answered and gone)
            conn.sendall(frame[sent:])
    else:
        conn.sendall(frame)


def recv(conn: socket.socket, want_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None when the peer closed first) and the descriptors that came with it."""
    fds: list[int] = []
    buffer = b""
    if want_fds:
        data, fds, _flags, _addr = socket.recv_fds(conn, 65536, want_fds)
        buffer = data
    while len(buffer) < 4:
        chunk = conn.recv(65536)
        if not chunk:
            return None, fds
        buffer += chunk
    (length,) = struct.unpack(">I", buffer[:4])
    if length > MAX_MESSAGE:
        raise WarmError(f"a message of {length} bytes")
    while len(buffer) < 4 + length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, fds
        buffer += chunk
    return json.loads(buffer[4 : 4 + length]), fds


# ---- the command's side


def connect(timeout: float = 2.0) -> socket.socket | None:
    try:
        if private_dir(create=False) is None:
            return None
    except WarmError as exc:
        print(f"cbm: warm process not used: {exc}", file=sys.stderr)
        return None
    path = socket_path()
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
    except OSError:  # a socket left by a warm process that was killed
        conn.close()
        return None
    return conn


def _send_request(conn: socket.socket, request: dict) -> None:
    """The request, with this process's standard descriptors (/dev/null for one that whoever
    started it closed)."""
    opened = []
    fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            opened.append(os.open(os.devnull, os.O_RDWR))
            fds.append(opened[-1])
    try:
        send(conn, request, fds)
    finally:
        for fd in opened:
            os.close(fd)


def delegate(argv: list[str]) -> int | None:
    """Run ``argv`` in this checkout's warm process, if one runs and may serve it: its exit
    code. None: run it here (no warm process, another command, ``CBM_WARM=0``, or the warm
    process refused, which one line on stderr says)."""
    if os.environ.get("CBM_WARM") == "0" or not argv or argv[0] not in WARM_COMMANDS:
        return None
    if "-h" in argv or "--help" in argv:
        return None
    try:
        cwd = os.getcwd()
    except OSError:  # gone: the command's own process says what that means
        return None
    conn = connect()
    if conn is None:
        return None
    with conn:
        request = {
            "kind": "run",
            "argv": argv,
            "cwd": cwd,
            "env": dict(os.environ),
            "identity": identity(),
        }
        try:
            _send_request(conn, request)
        except OSError:  # not sent: nothing runs there
            return None
        try:
            conn.settimeout(REPLY_TIMEOUT_S)
            reply, _ = recv(conn)
        except TimeoutError:  # it may have started the command: never run it twice
            print(
                f"cbm: the warm process did not answer in {REPLY_TIMEOUT_S} s (its log: "
                f"{log_path()}); run again with CBM_WARM=0, or cbm warm stop",
                file=sys.stderr,
            )
            return 1
        except OSError:
            reply = None
        if reply is None:  # it closed without a word: it stopped, and started nothing
            return None
        if "refused" in reply:
            print(f"cbm: warm process not used: {reply['refused']}", file=sys.stderr)
            return None
        return _wait_for_child(conn, int(reply["pid"]))


def _wait_for_child(conn: socket.socket, pid: int) -> int:
    """Forward Ctrl-C and kill signals to the child until the warm process reports its end."""

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
    before = {s: signal.signal(s, forward) for s in forwarded}
    conn.settimeout(None)  # a run takes what it takes (a signal does not end the wait: PEP 475)
    try:
        reply, _ = recv(conn)
    except OSError:
        reply = None
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    if reply is None or "exit" not in reply:
        print(
            f"cbm: the warm process ended before the command did (its log: {log_path()})",
            file=sys.stderr,
        )
        return 1
    return int(reply["exit"])


def ask(kind: str, timeout: float = 5.0) -> dict | None:
    """``status`` or ``stop`` of this checkout's warm process; None when none answers."""
    conn = connect(timeout)
    if conn is None:
        return None
    with conn:
        try:
            send(conn, {"kind": kind})
            reply, _ = recv(conn)
        except OSError:
            return None
        return reply
