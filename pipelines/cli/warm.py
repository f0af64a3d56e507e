"""``cbm warm start|stop|status``: the warm process that ``cbm run`` and ``cbm demo`` start in
(``pipelines.warm``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import click

from pipelines.cli.base import WholeNumber, command
from pipelines.output import EXIT_OK, CannotRun, _say
from pipelines.warm import (
    DEFAULT_IDLE_MINUTES,
    ROOT,
    WarmError,
    ask,
    log_path,
    private_dir,
    socket_path,
)

START_TIMEOUT_S = 180


@command(
    "warm",
    "keep Dagster, Great Expectations and the definitions imported in a background process, "
    "so each 'cbm run', 'cbm demo' and 'cbm rederive' of this checkout starts in a fork of it",
)
@click.argument("action", type=click.Choice(["start", "stop", "status"]))
@click.option(
    "--idle-minutes",
    type=WholeNumber(1),
    default=DEFAULT_IDLE_MINUTES,
    help=f"start: stop after this long without a command (default {DEFAULT_IDLE_MINUTES})",
)
def warm_command(args) -> int:
    """ACTION: start (idempotent), stop (after the commands it runs end), or status."""
    return {"start": warm_start, "stop": warm_stop, "status": warm_status}[args.action](args)


def warm_status(_args) -> int:
    reply = ask("status")
    if reply is None:
        _say(f"no warm process for this checkout ({ROOT}); start one: cbm warm start")
        return EXIT_OK
    since = datetime.fromtimestamp(reply["started"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    fresh = "" if reply["fresh"] else " (the code changed: it stops at the next command)"
    _say(
        f"warm process {reply['pid']} since {since}: {reply['served']} command(s) served, "
        f"{reply['running']} running{fresh}"
    )
    _say(f"socket {socket_path()}; log {reply['log']}")
    return EXIT_OK


def warm_stop(_args) -> int:
    status = ask("status")
    reply = ask("stop")
    if reply is None or status is None:
        _say("no warm process for this checkout: nothing to stop")
        return EXIT_OK
    if reply.get("running"):
        _say(f"waiting for {reply['running']} command(s) it runs to end")
    while _alive(status["pid"]):
        time.sleep(0.1)
    _say("warm process stopped; cbm run, demo and rederive start in their own process again")
    return EXIT_OK


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the number
        return False
    return True


def warm_start(args) -> int:
    reply = ask("status")
    if reply is not None and reply["fresh"]:
        _say(f"warm process {reply['pid']} already runs for this checkout (cbm warm status)")
        return EXIT_OK
    if reply is not None:  # started from older code: replace it
        warm_stop(args)
    try:
        log = log_path()
        private_dir(create=True)
    except (WarmError, OSError) as exc:
        raise CannotRun(f"warm: {exc}") from exc
    started = time.monotonic()
    with log.open("a") as out:
        os.chmod(log, 0o600)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.warm_server",
                "--idle-minutes",
                str(args.idle_minutes),
            ],
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C
        )
    _say(f"warm: importing the stack in process {proc.pid} (log {log})")
    while (reply := ask("status", timeout=1)) is None or reply["pid"] != proc.pid:
        if proc.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            raise RuntimeError(
                f"the warm process did not start: {lines[-1] if lines else 'no output'} (log {log})"
            )
        if time.monotonic() - started > START_TIMEOUT_S:
            proc.terminate()
            raise RuntimeError(
                f"the warm process was not ready after {START_TIMEOUT_S} s (log {log})"
            )
        time.sleep(0.1)
    _say(
        f"warm process {proc.pid} ready in {time.monotonic() - started:.1f} s: cbm run, demo "
        f"and rederive from {ROOT} now start in it (stops after {args.idle_minutes} idle "
        "minutes, or cbm warm stop)"
    )
    return EXIT_OK
