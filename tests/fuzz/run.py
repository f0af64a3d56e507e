"""``make fuzz``: every fuzz target with many generated inputs; prints what it tried and found.

    python tests/fuzz/run.py --examples 20000 [--target csv_reader ...]

Ends with one JSON line: inputs tried per target, and the findings (target, error, the
smallest failing input Hypothesis found). Exit 1 when anything was found. A finding becomes
a corpus case in ``tests/hostile/`` once fixed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.fuzz.targets import TARGETS, make_release, release_damage, release_target  # noqa: E402


def run_target(name: str, strategy, target, examples: int) -> tuple[int, str | None]:
    tried = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def fuzz(value):
        nonlocal tried
        tried += 1
        target(value)

    try:
        fuzz()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a finding (a Rust panic is BaseException)
        return tried, f"{exc.__class__.__name__}: {str(exc).strip()[:500]}"
    return tried, None


def all_targets(release_root: Path) -> dict:
    release = make_release(release_root)
    return TARGETS | {"verify_release": (release_damage(), release_target(release))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000, help="inputs per target")
    parser.add_argument("--target", action="append", help="only these targets")
    args = parser.parse_args()
    tried: dict[str, int] = {}
    findings = []
    with tempfile.TemporaryDirectory() as tmp:
        targets = all_targets(Path(tmp))
        for name, (strategy, target) in targets.items():
            if args.target and name not in args.target:
                continue
            started = time.monotonic()
            n, finding = run_target(name, strategy, target, args.examples)
            tried[name] = n
            took = time.monotonic() - started
            print(
                f"[fuzz] {name}: {n:,} inputs in {took:.0f}s, {'FOUND ' + finding if finding else 'nothing found'}",
                file=sys.stderr,
                flush=True,
            )
            if finding:
                findings.append({"target": name, "finding": finding})
    print(json.dumps({"inputs": tried, "total": sum(tried.values()), "findings": findings}))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
