"""``cbm``: the operator interface (contract §6). Runs the same Definitions as Dagster, in-process.

Exit codes: 0 success (quarantined rows are not a failure); 1 the run started but a step
failed, or a release does not verify; 2 it could not start (missing inbox, invalid registry,
no key, bad arguments).
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.cli.alerts import cmd_alerts
from pipelines.cli.docs import cmd_docs
from pipelines.cli.keys import cmd_keygen, cmd_keygen_pseudonym, cmd_rotate_key
from pipelines.cli.releases import cmd_cosign, cmd_rederive, cmd_sign, cmd_verify_release
from pipelines.cli.run import cmd_demo, cmd_generate, cmd_run
from pipelines.cli.status import cmd_status
from pipelines.output import (
    EXIT_FAILED,
    EXIT_READER_GONE,
    EXIT_USAGE,
    CannotRun,
    Progress,
    _stdout_gone,
    _to_devnull,
    printable,
)
from pipelines.runner import run_pipeline

# what other modules and the tests take from here: the entry points, the runner's one
# function, and the output helpers
__all__ = [
    "CannotRun",
    "Progress",
    "build_parser",
    "console_main",
    "main",
    "printable",
    "run_pipeline",
]

EPILOG = """environment:
  CBM_KEY_FILE          the pseudonymisation key file (cbm keygen-pseudonym), kept outside
                        the repository; or CBM_PSEUDONYM_KEY=<version>:<hex> (32+ hex digits)
  CBM_SIGNING_KEY_FILE  the publisher's signing key file (cbm keygen), as --signing-key
  DAGSTER_HOME          Dagster's instance (default: <workdir>/dagster_home)
  CBM_GX_KEEP_RESULTS   validation results kept per suite and table in Data Docs (default 30)
  CBM_DOCS_URL          where 'cbm docs' serves the Data Docs, for the UI's links
                        (default http://127.0.0.1:8765)
  CBM_DEBUG=1           print the traceback of an unexpected error

exit codes:
  0  success (quarantined rows are not a failure)
  1  the run started but a step failed, or a release does not verify
  2  it could not start: a wrong path, flag, registry value or key (one line says which)
  141  the reader of its output left first (`cbm status | head`), quietly; `cbm run`
       instead finishes its run unheard and exits as it would have
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the mistake, where, and what to type instead."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise _UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


def _unknown_options(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """Name the first option no command knows, with the nearest known one."""
    import difflib

    known = {opt for action in parser._actions for opt in action.option_strings}
    for sub in _subparsers(parser).values():
        known |= {opt for action in sub._actions for opt in action.option_strings}
    for word in argv:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            near = difflib.get_close_matches(flag, sorted(known), n=1)
            return f"unknown option {flag}" + (f" (did you mean {near[0]}?)" if near else "")
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _whole_number(minimum: int, maximum: int | None = None):
    wanted = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text: str) -> int:
        number = int(text) if text.lstrip("-").isdigit() else None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number {wanted}")
        return number

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cbm",
        description="cbm-verify: verification pipeline for confidence-building measures",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"cbm-verify {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, text: str, func) -> argparse.ArgumentParser:
        parser = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(func=func)
        return parser

    g = command("generate", "write a synthetic inbox and registries", cmd_generate)
    g.add_argument("--out", required=True, help="folder to write inbox/ and registry/ into")
    g.add_argument(
        "--seed", type=int, default=7, help="random seed (default 7): same seed, same files"
    )
    g.add_argument(
        "--reports",
        type=_whole_number(1),
        default=2000,
        help="how many incident reports (default 2000); compliance reports, attestations, "
        "revisions and a few bad rows and files come on top",
    )
    r = command("run", "one full run: land, ingest, verify, publish", cmd_run)
    r.add_argument("--inbox", required=True, help="the inbox: <inbox>/<PARTY>/<kind>_*.<ext>")
    r.add_argument(
        "--registry", required=True, help="folder with parties.yaml, commitments.yaml, policy.yaml"
    )
    r.add_argument(
        "--workdir", required=True, help="landing area, warehouse and Dagster instance (created)"
    )
    r.add_argument("--publish", required=True, help="where releases are published (created)")
    r.add_argument(
        "--as-of",
        help="the release's 'now', ISO 8601 with an offset (e.g. 2026-10-31T00:00:00+00:00); "
        "default: the latest timestamp among accepted reports",
    )
    r.add_argument(
        "--signing-key",
        help="the publisher's key file ('cbm keygen --party <secretariat code>'), kept outside "
        "the repository; default CBM_SIGNING_KEY_FILE. Required when parties.yaml names the "
        "publisher's public_key (unless --unsigned); run again with it to sign a release "
        "published unsigned",
    )
    r.add_argument(
        "--unsigned",
        action="store_true",
        help="publish unsigned on purpose although parties.yaml names the publisher's key "
        "(the manifest says so)",
    )
    r.add_argument(
        "--accept-change",
        metavar="REASON",
        help="publish a release the release guard held (it removes or revises more than "
        "policy.yaml release_guard allows), recording REASON in its manifest",
    )
    r.add_argument(
        "--ingest-only",
        action="store_true",
        help="land and ingest what is new, then stop; the next run without it verifies and "
        "publishes (e.g. ingest through the day, publish once)",
    )
    s = command("status", "every submission seen, and why rows were quarantined", cmd_status)
    s.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    s.add_argument("--json", action="store_true", help="one JSON document on stdout")
    s.add_argument(
        "--quarantine",
        action="store_true",
        help="list every quarantined row and file instead: submission, party, file, row, rule, "
        "column, value and the full reason",
    )
    s.add_argument("--party", help="with --quarantine: only this party's submissions")
    s.add_argument("--rule", help="with --quarantine: only this rule (e.g. severity_range)")
    al = command(
        "alerts",
        "threshold alerts (newest first): delivery and acknowledgement; --ack to acknowledge",
        cmd_alerts,
    )
    al.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    al.add_argument("--open", action="store_true", help="only alerts nobody acknowledged")
    al.add_argument("--json", action="store_true", help="one JSON document on stdout")
    al.add_argument("--ack", metavar="ID", help="acknowledge this alert (with --by)")
    al.add_argument("--by", metavar="PARTY", help="the registered party code acknowledging it")
    al.add_argument("--note", help="with --ack: a note kept with the acknowledgement")
    rd = command(
        "rederive",
        "recompute a release from its member bundle and compare every file byte for byte",
        cmd_rederive,
    )
    rd.add_argument("bundle", help="the member bundle: <workdir>/bundles/<release_id>")
    rd.add_argument(
        "--release",
        required=True,
        help="the release to compare with: a release folder, or a publish folder (its LATEST)",
    )
    rd.add_argument(
        "--workdir",
        help="an empty or new folder to recompute in (kept afterwards); default a temporary folder, removed",
    )
    v = command(
        "verify-release",
        "check a release (or a publish folder's LATEST) against its manifest",
        cmd_verify_release,
    )
    v.add_argument("path", help="a release folder, or a publish folder (its LATEST release)")
    v.add_argument(
        "--keys",
        help="parties.yaml: check the publisher's signature (the secretariat's public_key) and "
        "the co-signatures too; without it only integrity is checked",
    )
    v.add_argument(
        "--require-cosigners",
        type=_whole_number(0),
        default=0,
        help="valid co-signatures by distinct registered parties other than the publisher "
        "that the release must carry (default 0)",
    )
    v.add_argument(
        "--since",
        metavar="RELEASE_ID",
        help="the release you saw last: this one's chain of previous releases must reach it "
        "(a LATEST moved back, or another history, fails)",
    )
    cs = command(
        "cosign", "sign a release this party re-derived: writes cosign/<PARTY>.sig", cmd_cosign
    )
    cs.add_argument("--key", required=True, help="the party's key file ('cbm keygen')")
    cs.add_argument("--party", required=True, help="the party code the key belongs to")
    cs.add_argument("path", help="the release folder")
    k = command("keygen-pseudonym", "write a new pseudonymisation key file", cmd_keygen_pseudonym)
    k.add_argument("--out", required=True, help="the key file to write (mode 0600)")
    k.add_argument(
        "--key-version",
        help="recorded in every release (default: k- and the start of the key's fingerprint, "
        "so every new key has its own)",
    )
    k.add_argument("--force", action="store_true", help="replace an existing key file")
    rk = command(
        "rotate-key",
        "re-pseudonymise the warehouse with a new pseudonymisation key (the current one in "
        "CBM_KEY_FILE); the next release records the rotation",
        cmd_rotate_key,
    )
    rk.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    rk.add_argument(
        "--new-key", required=True, help="the new key file ('cbm keygen-pseudonym --out FILE')"
    )
    kg = command(
        "keygen",
        "a party's Ed25519 signing key (private file + public key to register)",
        cmd_keygen,
    )
    kg.add_argument("--party", required=True, help="the party code, as in parties.yaml")
    kg.add_argument("--out", required=True, help="the private key file to write (mode 0600)")
    kg.add_argument("--force", action="store_true", help="replace an existing key file")
    sg = command("sign", "write FILE.sig (detached Ed25519 signature) for each file", cmd_sign)
    sg.add_argument("--key", required=True, help="the key file written by 'cbm keygen'")
    sg.add_argument("files", nargs="+", help="the files to sign")
    dd = command(
        "docs",
        "serve the Great Expectations Data Docs on localhost, for the Dagster UI's data_docs links",
        cmd_docs,
    )
    dd.add_argument("--workdir", required=True, help="the workdir of 'cbm run'")
    dd.add_argument(
        "--publish",
        help="also serve this publish folder's release reports under /releases/ (the links of "
        "the release asset)",
    )
    dd.add_argument(
        "--port",
        type=_whole_number(1, 65535),
        default=8765,
        help="port on 127.0.0.1 (default 8765, the address the data_docs links use)",
    )
    d = command("demo", "generate a sample inbox and run the whole pipeline on it", cmd_demo)
    d.add_argument("--dir", default=".cbm/demo", help="the demo's folder (default .cbm/demo)")
    d.add_argument("--seed", type=int, default=7, help="random seed of the sample (default 7)")
    d.add_argument(
        "--reports", type=_whole_number(1), default=2000, help="incident reports (default 2000)"
    )
    return p


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("cbm-verify")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        unknown = _unknown_options(parser, argv)
        print(f"cbm: {unknown}" if unknown else str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except CannotRun as exc:
        print(f"cbm {args.command}: cannot run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:
        print(f"cbm {args.command}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # an unexpected error still ends in one line (traceback on demand)
        if isinstance(exc, BrokenPipeError) and _stdout_gone():
            raise  # the reader of our output left: console_main ends quietly
        if os.environ.get("CBM_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"cbm {args.command}: failed: {exc.__class__.__name__}: {first} "
            "(set CBM_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def console_main() -> None:
    """Console-script entry point.

    SIGPIPE stays ignored, as Python sets it: a connection that a peer closes (a browser
    leaving a `cbm docs` page, an alert endpoint, object storage) raises an error where it
    happened instead of ending the process. Only a reader of standard output that leaves
    first ends a command, quietly (``EXIT_READER_GONE``).

    Exits with ``os._exit`` after flushing: DuckDB's bindings print "nanobind: leaked ..."
    warnings at interpreter shutdown while GX still holds type objects; they say nothing about
    the run and would bury its last line.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        _to_devnull(sys.stdout)
        code = EXIT_READER_GONE
    sys.stderr.flush()
    os._exit(code)
