"""The daemon path, measured: the sample inbox dropped at once into a deployment that runs
``dagster-daemon`` with the inbox sensor and the automation sensor, timed until every file is
ingested and until verification (dyad levels, alerts) has caught up.

    .venv/bin/python benchmarks/daemon.py [--reports N] [--keep DIR]

Prints one JSON object: files, seconds to the first run, to all ingested, to verified, files
per minute, then the seconds until one more file, dropped alone, is listed by ``cbm status``,
and the runs the daemon launched. A real daemon, a real instance (SQLite, in a
temporary DAGSTER_HOME), the code location of workspace.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACTIVE = ("QUEUED", "STARTING", "STARTED", "NOT_STARTED", "CANCELING")


def _runs(home: Path) -> list[tuple[str, str]]:
    """(job, status) of every run of the instance, read from its SQLite run storage."""
    import sqlite3

    db = home / "history" / "runs.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        return con.execute("SELECT pipeline_name, status FROM runs").fetchall()


def _ingested(workdir: Path) -> int:
    import duckdb

    path = workdir / "warehouse.duckdb"
    if not path.exists():
        return 0
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            return con.execute(
                "SELECT count(*) FROM submissions WHERE status IN ('accepted', 'partial', 'rejected')"
            ).fetchone()[0]
    except duckdb.Error:  # a run holds the writer's lock: ask again
        return -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--keep", help="keep the deployment in this folder")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    base = Path(args.keep or tempfile.mkdtemp(prefix="cbm-daemon-"))
    base.mkdir(parents=True, exist_ok=True)
    from cbm.generate import generate
    from cbm.protection import new_key_file

    gen = generate(base / "gen", reports=args.reports)
    files = [p for p in gen.inbox.rglob("*") if p.is_file()]
    home, inbox, workdir, publish = (base / n for n in ("dagster_home", "inbox", "work", "publish"))
    for d in (home, inbox, workdir, publish):
        d.mkdir(exist_ok=True)
    from pipelines.event_log import default_instance_yaml  # the instance cbm run makes

    (home / "dagster.yaml").write_text(default_instance_yaml())
    key = new_key_file(base / "pseudonym.key")
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "CBM_INBOX": str(inbox),
        "CBM_REGISTRY": str(gen.registry),
        "CBM_WORKDIR": str(workdir),
        "CBM_PUBLISH": str(publish),
        "CBM_KEY_FILE": str(key),
    }
    ws = ["-w", str(ROOT / "workspace.yaml")]
    subprocess.run(
        [BIN / "dagster", "sensor", "start", "inbox_sensor", *ws],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    log = (base / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", *ws],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(20)  # the daemon is up and has ticked on the empty inbox
        t0 = time.monotonic()
        for path in files:
            target = inbox / path.relative_to(gen.inbox)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        first_run = ingested_at = verified_at = None
        while time.monotonic() - t0 < args.timeout:
            runs = _runs(home)
            if runs and first_run is None:
                first_run = time.monotonic() - t0
            if ingested_at is None and _ingested(workdir) >= len(files):
                ingested_at = time.monotonic() - t0
            busy = any(s in ACTIVE for _, s in runs)
            if ingested_at and not busy and any(j != "ingest_submissions" for j, _ in runs):
                verified_at = time.monotonic() - t0
                break
            time.sleep(2)
        # then one more file, alone: how long until cbm status lists it
        single = None
        if verified_at:
            extra = generate(base / "gen2", seed=8, reports=50, halves=False)
            source = sorted(extra.inbox.glob("ACADEMY/incidents_*.csv"))[0]
            target = inbox / "ACADEMY" / "incidents_late_arrival.csv"
            before = _ingested(workdir)
            t1 = time.monotonic()
            shutil.copy2(source, target)
            while time.monotonic() - t1 < args.timeout:
                if single is None and _ingested(workdir) > before:
                    single = time.monotonic() - t1
                busy = any(s in ACTIVE for _, s in _runs(home))
                if single is not None and not busy:
                    break  # its run, and what automation started after it, have finished
                time.sleep(1)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    runs = _runs(home)
    result = {
        "files": len(files),
        "first_run_s": round(first_run, 1) if first_run else None,
        "ingested_s": round(ingested_at, 1) if ingested_at else None,
        "verified_s": round(verified_at, 1) if verified_at else None,
        "files_per_minute": round(len(files) / ingested_at * 60, 1) if ingested_at else None,
        "single_file_s": round(single, 1) if single else None,
        "sensor_interval_s": 30,
        "runs": {f"{j}:{s}": sum(1 for r in runs if r == (j, s)) for j, s in sorted(set(runs))},
    }
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0 if verified_at else 1


if __name__ == "__main__":
    sys.exit(main())
