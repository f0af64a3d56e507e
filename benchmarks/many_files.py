"""What one party costs everyone when it drops many small files at once (issue #35).

Generates a small sample inbox, adds ``--files`` one-row incident files from one party, then
runs ``cbm run`` again and again (as the schedule would) until nothing is deferred. Prints
one JSON object: per run its seconds, its peak RSS, how many files it landed, and the size of
the Dagster instance after it; then the totals. Every other party's files must be landed
by the first run (checked: the script fails if a later run lands more of them).

    make bench-many-files                                  # 10,000 files
    make bench-many-files MANY_ARGS="--files 2000 --keep /tmp/m2k"
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = (
    "report_id,version,tlp,confidence,summary,category,occurred_at,reported_at,time_precision,"
    "region,lat,lon,sector,severity,determination,alleged_party,technical_keys"
)


def log(msg: str) -> None:
    print(f"[many-files] {msg}", file=sys.stderr, flush=True)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def one_row_files(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        with open(folder / f"incidents_many_{i:05d}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(HEADER.split(","))
            w.writerow(
                [f"MANY-{i:05d}", 1, "GREEN", 80, "Observed activity near the crossing.",
                 "border_incident", "2026-03-01T10:00:00+00:00", "2026-03-01T12:00:00+00:00",
                 "hour", "EST", "", "", "", 3, "suspected", "BRAVO", ""]
            )  # fmt: skip


def cbm_run(args: list[str], env: dict) -> tuple[float, int, str]:
    """(seconds, peak RSS in bytes, stdout) of one ``cbm run`` child."""
    cmd = [sys.executable, "-m", "pipelines.cli", "run", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        elapsed = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if proc.returncode != 0:
            raise SystemExit(f"cbm run failed ({proc.returncode}):\n{text}\n{err.read().decode()}")
    return elapsed, usage.ru_maxrss * 1024, text


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--party", default="ALPHA")
    p.add_argument("--keep", help="keep the folders here instead of a temporary folder")
    p.add_argument("--max-runs", type=int, default=30)
    args = p.parse_args()

    from cbm.generate import generate

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cbm-many-"))
    shutil.rmtree(base, ignore_errors=True)
    generate(base, seed=3, reports=200)
    inbox, registry = base / "inbox", base / "registry"
    others = sum(1 for f in inbox.rglob("*") if f.is_file() and f.suffix != ".sig")
    one_row_files(inbox / args.party, args.files)
    log(f"{args.files:,} one-row files from {args.party} beside {others} others, in {base}")
    home = base / "dagster_home"
    env = dict(
        os.environ,
        CBM_PSEUDONYM_KEY="many:" + "42" * 32,
        DAGSTER_HOME=str(home),
        PYTHONPATH=str(ROOT),
    )
    run_args = [
        "--inbox", str(inbox), "--registry", str(registry),
        "--workdir", str(base / "work"), "--publish", str(base / "publish"), "--unsigned",
    ]  # fmt: skip
    import duckdb

    runs = []
    for n in range(1, args.max_runs + 1):
        seconds, rss, out = cbm_run(run_args, env)
        with duckdb.connect(str(base / "work" / "warehouse.duckdb"), read_only=True) as con:
            landed = con.execute(
                "SELECT count(*) FILTER (WHERE party_code = ?), count(*) FILTER (WHERE party_code <> ?)"
                " FROM landed_submissions",
                [args.party, args.party],
            ).fetchone()
        runs.append(
            {
                "run": n,
                "seconds": round(seconds, 1),
                "peak_rss_gib": round(rss / 2**30, 2),
                "party_files_landed": landed[0],
                "others_landed": landed[1],
                "instance_mb": round(folder_bytes(home) / 1e6, 1),
            }
        )
        log(json.dumps(runs[-1]))
        if "deferred" not in out:
            break
    if runs[-1]["others_landed"] != runs[0]["others_landed"]:
        raise SystemExit("the other parties' files were not all landed by the first run")
    result = {
        "files": args.files,
        "runs": len(runs),
        "total_seconds": round(sum(r["seconds"] for r in runs), 1),
        "max_peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
        "instance_mb": runs[-1]["instance_mb"],
        "instance_kb_per_file": round(runs[-1]["instance_mb"] * 1000 / args.files, 1),
        "per_run": runs,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
