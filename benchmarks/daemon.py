"""The daemon path, measured: the sample inbox dropped at once into a deployment that runs
``dagster-daemon`` with the inbox sensor and the automation sensor, timed until every file is
ingested and until verification (dyad levels, alerts) has caught up; then one more file,
dropped alone, timed until it is listed and until the alert it raises reaches a webhook.

    .venv/bin/python benchmarks/daemon.py [--reports N] [--keep DIR]

Prints one JSON object: files, seconds to the first run, to all ingested, to verified, files
per minute; for the lone file the seconds until ``cbm status`` lists it (``single_file_s``)
and until its alert is delivered (``single_alert_s``); and the runs the daemon launched.
A real daemon, a real instance (SQLite, in a temporary DAGSTER_HOME), the code location of
workspace.yaml, the sensors at their documented intervals, and a local HTTP server as the
policy's alert webhook.

The lone file is the second source of an incident: the backlog holds BRAVO's report of a
severity-5 incident in a region the sample never names (Iceland), alleged against ALPHA; the
lone file is DELTA's report of it. Corroborated, the event turns tentative and the dyad
(Alphaland, ISL) rises from level 0 to 1: one alert (docs/alerts-and-calendar.md). The
incident is dated in the sample's last month, within the policy's 90 days of expiry before
its as-of time.
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(ROOT))
from tests.alert_servers import WebhookServer  # noqa: E402

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


def _interval(sensor: str) -> int:
    """The sensor's minimum interval as the code location declares it."""
    from pipelines.definitions import defs

    return defs.resolve_sensor_def(sensor).minimum_interval_seconds


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


# the lone file's incident, first as BRAVO hands it in with the backlog, then as DELTA does
INCIDENT = (
    "report_id,version,tlp,confidence,summary,category,occurred_at,reported_at,time_precision,"
    "region,lat,lon,sector,severity,determination,alleged_party,technical_keys\n"
    "{rid},1,GREEN,80,,border_incident,2026-10-15T10:00:00+00:00,2026-10-15T12:00:00+00:00,"
    "hour,ISL,,,,{severity},suspected,ALPHA,\n"
)
SEED = ("BRAVO/incidents_bench_seed.csv", INCIDENT.format(rid="BENCH-SEED", severity=5))
LONE = ("DELTA/incidents_bench_alert.csv", INCIDENT.format(rid="BENCH-ALERT", severity=4))


def first_alert_about(hook, region: str, since: float) -> float | None:
    """When the first alert on a dyad with ``region`` reached ``hook`` after ``since``."""
    for request in list(hook.requests):
        payload = json.loads(request["body"] or b"{}")
        if request["at"] >= since and (payload.get("dyad") or {}).get("counterpart") == region:
            return request["at"]
    return None


def _use_webhook(registry: Path, url: str) -> None:
    import yaml

    policy = yaml.safe_load((registry / "policy.yaml").read_text())
    policy["alerts"] = {"webhook": {"url": url}}
    (registry / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


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
    (gen.inbox / SEED[0]).write_text(SEED[1])
    files = [p for p in gen.inbox.rglob("*") if p.is_file()]
    servers = contextlib.ExitStack()
    hook = servers.enter_context(WebhookServer())  # the tests' alert endpoint, with arrival times
    _use_webhook(gen.registry, hook.url)
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
        # then one more file, alone: how long until cbm status lists it, and until the alert
        # it raises reaches the webhook
        single = alert = None
        if verified_at:
            target = inbox / LONE[0]
            before = _ingested(workdir)
            t1 = time.monotonic()
            target.write_text(LONE[1])
            while time.monotonic() - t1 < args.timeout:
                if single is None and _ingested(workdir) > before:
                    single = time.monotonic() - t1
                if alert is None and (at := first_alert_about(hook, "ISL", t1)) is not None:
                    alert = at - t1
                busy = any(s in ACTIVE for _, s in _runs(home))
                if single is not None and alert is not None and not busy:
                    break  # its runs, and what automation started after them, have finished
                time.sleep(1)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        servers.close()
    runs = _runs(home)
    result = {
        "files": len(files),
        "first_run_s": round(first_run, 1) if first_run else None,
        "ingested_s": round(ingested_at, 1) if ingested_at else None,
        "verified_s": round(verified_at, 1) if verified_at else None,
        "files_per_minute": round(len(files) / ingested_at * 60, 1) if ingested_at else None,
        "single_file_s": round(single, 1) if single else None,
        "single_alert_s": round(alert, 1) if alert else None,
        "alerts_delivered": len(hook.requests),
        "sensor_interval_s": _interval("inbox_sensor"),
        "automation_interval_s": _interval("keep_verification_current"),
        "runs": {f"{j}:{s}": sum(1 for r in runs if r == (j, s)) for j, s in sorted(set(runs))},
    }
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0 if verified_at and alert else 1


if __name__ == "__main__":
    sys.exit(main())
