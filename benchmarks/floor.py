"""Where the validation floor lies (``make bench-floor``): GX on DuckDB against the
hand-written scan, as the suites are and with each suite collapsed into one expectation.

Run it on a workdir kept by ``make bench BENCH_ARGS="--keep DIR"``. In one invocation,
alternating the variants, it measures (median of ``--repeat`` runs, after one warm-up):

- ``raw_scan_s``: the same rules as hand-written SQL, one pass per table (``bench.raw_scan``);
- ``gx_suites_s``: the three suites as shipped, in the checkpoints ``validated_reports``
  groups them into, on the same tables (no quarantine inserts: GX alone);
- ``gx_one_expectation_s``: every suite collapsed into a single row rule whose predicate is
  the OR of all its rules (one GX expectation per table; the per-rule results and reasons
  are lost, so this is a measurement, not an option the pipeline offers);
- each of the two GX variants again on zero-row views (``*_empty_s``): the part that does
  not depend on the data.

Prints one JSON object with the figures and their ratios to ``raw_scan_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the benchmark's rule-to-SQL translation and raw scan)

ONE = "one_expectation_"


def collapsed(spec: dict) -> dict:
    """One row rule failing where any rule of ``spec`` fails."""
    preds = [p for e in spec["expectations"] if (p := bench.predicate(e, "{batch}"))]
    failing = " OR ".join(f"coalesce(({p}), false)" for p in preds)
    rule = {"column": "report_id", "failing_when": failing}
    return {
        "expectations": [
            {
                "type": "expect_column_values_to_pass_sql_rule",
                "kwargs": rule,
                "meta": {"rule": "any_rule", "severity": "critical"},
            }
        ]
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("workdir", type=Path, help="a bench workdir kept with --keep (DIR/work)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    warehouse_file = args.workdir / "warehouse.duckdb"
    if not warehouse_file.exists():
        sys.exit(f"floor: no warehouse at {warehouse_file} (run make bench with --keep first)")
    os.environ.setdefault("CBM_PSEUDONYM_KEY", "bench:" + "42" * 32)

    import checks.validation as validation
    from assets.validated import VALIDATION_STEPS
    from warehouse.db import Warehouse

    shipped = validation.load_suite
    validation.load_suite = lambda name: (
        collapsed(shipped(name[len(ONE) :])) if name.startswith(ONE) else shipped(name)
    )
    # a copy: the views below are not left in the caller's warehouse
    tmp = Path(tempfile.mkdtemp(prefix="cbm-floor-"))
    copy = tmp / "warehouse.duckdb"
    shutil.copy(warehouse_file, copy)
    with Warehouse(path=str(copy)).connect() as con:
        for kind in bench.KINDS:
            con.execute(f"CREATE VIEW empty_{kind} AS SELECT * FROM anon_{kind} WHERE false")
        con.execute("CHECKPOINT")
        rows = {k: con.execute(f"SELECT count(*) FROM anon_{k}").fetchone()[0] for k in bench.KINDS}

    def gx(prefix: str, table: str):
        def run() -> None:
            for step in VALIDATION_STEPS:
                runs = [(prefix + k, f"{table}{k}") for k in step]
                n = sum(rows[k] for k in step) if table == "anon_" else 0  # as the pipeline
                validation.run_suites(None, copy, tmp / "gx", runs, rows=n)

        return run

    def raw() -> None:
        with Warehouse(path=str(copy)).connect() as con:
            bench.raw_scan(con)

    variants = {
        "raw_scan_s": raw,
        "gx_suites_s": gx("", "anon_"),
        "gx_suites_empty_s": gx("", "empty_"),
        "gx_one_expectation_s": gx(ONE, "anon_"),
        "gx_one_expectation_empty_s": gx(ONE, "empty_"),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(args.repeat + 1):
        bench.log(f"floor: round {i + 1} of {args.repeat + 1} (the first is a warm-up)")
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            if i:
                times[name].append(time.perf_counter() - started)
    result = {k: round(statistics.median(v), 3) for k, v in times.items()}
    raw_s = result["raw_scan_s"]
    result |= {
        k[:-2] + "_vs_raw": round(v / raw_s, 2) for k, v in result.items() if k != "raw_scan_s"
    }
    result["rows"] = rows
    result["machine"] = bench.machine()
    print(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter noise after the JSON (DuckDB's "nanobind: leaked" at exit)
