"""Ingestion with 1, 2 and 4 workers (``CBM_WORKERS``), measured in one invocation.

    .venv/bin/python benchmarks/scaling.py [--reports N] [--workers 1 2 4] [--repeat K]

The same cached inbox (``make bench``'s generator: N incident reports over 20 parties, with
compliance reports and attestations) goes through ``cbm run`` in a fresh workdir for each
worker count, in turn, K times; the medians are kept. Per-stage seconds come from the Dagster
instance. The per-submission stages (``staged``: parsing in reader processes; ``anonymised``:
keyed hashing and scrubbing) run side by side; landing, the warehouse merge (validation and
the insert) and everything after are serial. The output ends with one JSON object: seconds
per stage and in all, reports per second, speed-up against one worker, the serial fraction
and what Amdahl's law predicts from it per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402 - the benchmark's own helpers, beside this file

PARALLEL = ("staged", "anonymised")


def one_run(inbox: Path, registry: Path, key: Path, workers: int, base: Path) -> dict:
    workdir, publish = base / "work", base / "publish"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CBM_", "DAGSTER_"))}
    env |= {
        "CBM_KEY_FILE": str(key),
        "CBM_WORKERS": str(workers),
        "DAGSTER_HOME": str(workdir / "dagster_home"),
    }
    (workdir / "dagster_home").mkdir(parents=True)
    from pipelines.event_log import default_instance_yaml  # the instance cbm run makes

    home = workdir / "dagster_home"
    (home / "dagster.yaml").write_text(default_instance_yaml())
    total = bench.run_cbm(inbox, registry, workdir, publish, env)
    stages = bench.stage_seconds(workdir / "dagster_home")
    release = (publish / "LATEST").read_text().strip()
    return {"total_s": total, "stages": stages, "release": release}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200_000)
    parser.add_argument("--parties", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from cbm.protection import new_key_file

    cache = bench.cached_inbox(args.reports, args.parties, seed=11)
    files = sum(1 for p in (cache / "inbox").rglob("*") if p.is_file())
    scratch = Path(tempfile.mkdtemp(prefix="cbm-scaling-"))
    key = new_key_file(scratch / "pseudonym.key")
    runs: dict[int, list[dict]] = {w: [] for w in args.workers}
    try:
        for round_ in range(args.repeat):  # interleaved, so drift hits every count alike
            for workers in args.workers:
                base = scratch / f"w{workers}-r{round_}"
                bench.log(f"round {round_ + 1}/{args.repeat}: {workers} worker(s)")
                runs[workers].append(
                    one_run(cache / "inbox", cache / "registry", key, workers, base)
                )
                shutil.rmtree(base, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    releases = {r["release"] for rs in runs.values() for r in rs}
    figures = {}
    for workers, rs in runs.items():
        stages = {s: statistics.median(r["stages"][s] for r in rs) for s in rs[0]["stages"]}
        total = statistics.median(r["total_s"] for r in rs)
        parallel = sum(stages[s] for s in PARALLEL)
        figures[workers] = {
            "total_s": round(total, 2),
            "parallel_stages_s": round(parallel, 2),
            "serial_s": round(total - parallel, 2),
            "reports_per_s": round(args.reports / total),
            "stages": {s: round(v, 2) for s, v in stages.items()},
        }
    one = figures[min(figures)]
    serial_fraction = one["serial_s"] / one["total_s"]
    for f in figures.values():
        f["speedup"] = round(one["total_s"] / f["total_s"], 2)
        f["parallel_speedup"] = round(one["parallel_stages_s"] / f["parallel_stages_s"], 2)
    print(
        json.dumps(
            {
                "reports": args.reports,
                "files": files,
                "repeat": args.repeat,
                "machine": bench.machine(),
                "same_release_for_every_worker_count": len(releases) == 1,
                "workers": figures,
                "serial_fraction_at_1": round(serial_fraction, 3),
                # Amdahl: with the serial part as measured, what n cores would give at best
                "amdahl_speedup": {
                    n: round(1 / (serial_fraction + (1 - serial_fraction) / n), 2)
                    for n in (2, 4, 8, 16)
                },
                "amdahl_ceiling": round(1 / serial_fraction, 2),
            },
            indent=2,
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # no interpreter noise after the JSON
