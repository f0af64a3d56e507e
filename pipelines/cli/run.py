"""``cbm generate``, ``cbm run``, ``cbm demo``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from pipelines.cli.base import WholeNumber, command
from pipelines.output import (
    EXIT_FAILED,
    EXIT_OK,
    CannotRun,
    _check_folder,
    _count,
    _finish_whoever_reads,
    _say,
)
from pipelines.runner import _print_summary, run_pipeline

# ---------------------------------------------------------------- commands


@command("generate", "write a synthetic inbox and registries")
@click.option("--out", required=True, help="folder to write inbox/ and registry/ into")
@click.option("--seed", type=int, default=7, help="random seed (default 7): same seed, same files")
@click.option(
    "--reports",
    type=WholeNumber(1),
    default=2000,
    help="how many incident reports (default 2000); compliance reports, attestations, "
    "revisions and a few bad rows and files come on top",
)
def generate_command(args) -> int:
    return cmd_generate(args)


def cmd_generate(args) -> int:
    from cbm.generate import generate

    _check_folder("--out", Path(args.out), must_exist=False)
    out = generate(args.out, seed=args.seed, reports=args.reports)
    _say(
        f"wrote {out.files} files ({out.reports:,} report rows) to {out.inbox} and registries to {out.registry}"
    )
    return EXIT_OK


@command("run", "one full run: land, ingest, verify, publish")
@click.option("--inbox", required=True, help="the inbox: <inbox>/<PARTY>/<kind>_*.<ext>")
@click.option(
    "--registry", required=True, help="folder with parties.yaml, commitments.yaml, policy.yaml"
)
@click.option(
    "--workdir", required=True, help="landing area, warehouse and Dagster instance (created)"
)
@click.option("--publish", required=True, help="where releases are published (created)")
@click.option(
    "--as-of",
    help="the release's 'now', ISO 8601 with an offset (e.g. 2026-10-31T00:00:00+00:00); "
    "default: the latest timestamp among accepted reports",
)
@click.option(
    "--signing-key",
    help="the publisher's key file ('cbm keygen --party <secretariat code>'), kept outside "
    "the repository; default CBM_SIGNING_KEY_FILE. Required when parties.yaml names the "
    "publisher's public_key (unless --unsigned); run again with it to sign a release "
    "published unsigned",
)
@click.option(
    "--unsigned",
    is_flag=True,
    help="publish unsigned on purpose although parties.yaml names the publisher's key "
    "(the manifest says so)",
)
@click.option(
    "--accept-change",
    metavar="REASON",
    help="publish a release the release guard held (it removes or revises more than "
    "policy.yaml release_guard allows), recording REASON in its manifest",
)
@click.option(
    "--ingest-only",
    is_flag=True,
    help="land and ingest what is new, then stop; the next run without it verifies and "
    "publishes (e.g. ingest through the day, publish once)",
)
def run_command(args) -> int:
    return cmd_run(args)


def cmd_run(args) -> int:
    with _finish_whoever_reads():
        return _cmd_run(args)


def _cmd_run(args) -> int:
    for flag in ("inbox", "registry", "workdir", "publish"):
        if "://" in getattr(args, flag):
            raise CannotRun(
                f"--{flag} {getattr(args, flag)}: cbm run works on local folders; object "
                "storage (s3://) is for a Dagster deployment, see docs/deployment.md"
            )
    summary = run_pipeline(
        Path(args.inbox),
        Path(args.registry),
        Path(args.workdir),
        Path(args.publish),
        args.as_of,
        signing_key=args.signing_key,
        ingest_only=args.ingest_only,
        accept_change=args.accept_change,
        unsigned=args.unsigned,
    )
    _print_summary(summary)
    _say(f"\ndone in {summary['seconds']}s")
    if summary.get("failed_submissions"):
        failed = summary["failed_submissions"]
        print(
            f"cbm run: failed: {_count(len(failed), 'submission')} failed alone, the rest went "
            f"through: {'; '.join(failed)}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


@command("demo", "generate a sample inbox and run the whole pipeline on it")
@click.option("--dir", default=".cbm/demo", help="the demo's folder (default .cbm/demo)")
@click.option("--seed", type=int, default=7, help="random seed of the sample (default 7)")
@click.option(
    "--reports", type=WholeNumber(1), default=2000, help="incident reports (default 2000)"
)
def demo_command(args) -> int:
    return cmd_demo(args)


def cmd_demo(args) -> int:
    from cbm.generate import generate
    from cbm.protection import new_key_file

    base = Path(args.dir)
    if not os.environ.get("CBM_KEY_FILE") and not os.environ.get("CBM_PSEUDONYM_KEY"):
        key = base / "secrets" / "pseudonym.key"
        if not key.exists():
            new_key_file(key)
            _say(
                f"generated a local demo pseudonymisation key at {key} (a real deployment keeps its own, outside the repository)"
            )
        os.environ["CBM_KEY_FILE"] = str(key.resolve())
    os.environ.setdefault("DAGSTER_HOME", str((base / "dagster_home").resolve()))
    out = generate(base, seed=args.seed, reports=args.reports)
    _say(f"generated {out.files} sample files ({out.reports:,} report rows) in {out.inbox}")
    signing_key = _demo_publisher_key(base, out.registry, out.inbox)
    summary = run_pipeline(
        out.inbox, out.registry, base / "work", base / "publish", None, signing_key=str(signing_key)
    )
    _print_summary(summary)
    _say("")
    _say("Next:")
    _say(f"  cbm status --workdir {base / 'work'}            every submission, accepted or why not")
    _say(f"  cbm alerts --workdir {base / 'work'} --open     threshold alerts nobody acknowledged")
    _say(f"  cbm verify-release {summary['release_path']} --keys {out.registry / 'parties.yaml'}")
    _say(
        f"  cbm rederive {base / 'work' / 'bundles' / summary['latest_release']} "
        f"--release {summary['release_path']}   as a member party would, without the key"
    )
    query = "print(duckdb.sql(f'SELECT * FROM read_parquet({sys.argv[1]!r}, hive_partitioning=true) LIMIT 5'))"
    _say(
        f"  .venv/bin/python -c \"import duckdb, sys; {query}\" '{summary['release_path']}/indicators/*/*.parquet'"
    )
    _say(
        "  make ui                                       the same runs, assets and checks in the Dagster UI,\n"
        "                                                with the Data Docs on http://127.0.0.1:8765"
    )
    _say(f"\ndone in {summary['seconds']}s")
    return EXIT_OK


def _demo_publisher_key(base: Path, registry: Path, inbox: Path) -> Path:
    """The demo's secretariat signs its releases and its own submissions (its rulings on
    disputes): a local key (made once, beside the demo's pseudonymisation key) whose public
    key the demo's parties.yaml registers."""
    import yaml

    from cbm.signatures import SigningKey, new_party_key, sign_file

    key_file = base / "secrets" / "secretariat.key"
    if not key_file.exists():
        new_party_key("SECRETARIAT", key_file)
        _say(f"generated the demo publisher's signing key at {key_file}")
    parties_file = registry / "parties.yaml"
    parties = yaml.safe_load(parties_file.read_text())
    for party in parties:
        if party["class"] == "secretariat":
            party["public_key"] = SigningKey(key_file).public_key
            for name in sorted((inbox / party["code"]).glob("*_*.*")):
                if name.suffix != ".sig":
                    sign_file(key_file, name)
    parties_file.write_text(yaml.safe_dump(parties, sort_keys=False))
    return key_file
