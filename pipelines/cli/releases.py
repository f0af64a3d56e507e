"""``cbm verify-release``, ``cbm rederive``, ``cbm cosign``, ``cbm sign``."""

from __future__ import annotations

import re
from pathlib import Path

import click

from pipelines.cli.base import WholeNumber, command
from pipelines.output import EXIT_FAILED, EXIT_OK, CannotRun, _check_folder, _say, _show


@command("verify-release", "check a release (or a publish folder's LATEST) against its manifest")
@click.argument("path")
@click.option(
    "--keys",
    help="parties.yaml: check the publisher's signature (the secretariat's public_key) and "
    "the co-signatures too; without it only integrity is checked",
)
@click.option(
    "--require-cosigners",
    type=WholeNumber(0),
    default=0,
    help="valid co-signatures by distinct registered parties other than the publisher "
    "that the release must carry (default 0)",
)
@click.option(
    "--since",
    metavar="RELEASE_ID",
    help="the release you saw last: this one's chain of previous releases must reach it "
    "(a LATEST moved back, or another history, fails)",
)
def verify_release_command(args) -> int:
    """PATH: a release folder, or a publish folder (its LATEST release)."""
    return cmd_verify_release(args)


def cmd_verify_release(args) -> int:
    from cbm.registry import RegistryError, load_parties
    from cbm.release import (
        check_chain,
        check_publish_root,
        check_signatures,
        release_folder,
        verify_release,
    )

    path = Path(args.path)
    if not path.is_dir():
        raise CannotRun(f"{path} does not exist or is not a folder (a release or a publish folder)")
    parties = None
    if args.keys:
        try:
            parties = load_parties(Path(args.keys))
        except RegistryError as exc:
            raise CannotRun(f"--keys {exc}") from exc
    elif args.require_cosigners:
        raise CannotRun("--require-cosigners needs --keys parties.yaml (the parties' public keys)")
    publish = (
        path if (path / "LATEST").is_file() and not (path / "manifest.json").exists() else None
    )
    path = release_folder(path)
    if args.since and not re.fullmatch(r"r-[0-9a-f]{20}", args.since):
        raise CannotRun(
            f"--since {args.since}: not a release id (r- and 20 hex digits, as LATEST holds one)"
        )
    if args.since and path.parent.name != "releases":
        raise CannotRun(
            f"--since needs the publish folder (or a release inside its releases/): {path} has no "
            "sibling releases to follow"
        )
    ok, problems = verify_release(path)
    notes: list[str] = []
    if parties is not None and (path / "manifest.json").is_file():
        more, notes = check_signatures(path, parties, args.require_cosigners)
        problems += more
    if (path / "manifest.json").is_file() and path.parent.name == "releases":
        more, chain_notes = check_chain(path, args.since)
        problems, notes = problems + more, notes + chain_notes
    if publish is not None:
        more, root_notes = check_publish_root(publish, path)
        problems, notes = problems + more, notes + root_notes
    for p in problems:
        _say(f"FAIL: {p}")
    if problems:
        return EXIT_FAILED
    checked = "integrity" + (", authenticity" if parties is not None else "")
    if args.require_cosigners:
        checked += f", {args.require_cosigners} co-signature(s)"
    _say(f"OK: {path} ({checked}){': ' + '; '.join(notes) if notes else ''}")
    if parties is None:
        unchecked = sorted(
            p.relative_to(path).as_posix()
            for p in [path / "manifest.json.sig", *sorted((path / "cosign").glob("*.sig"))]
            if p.is_file()
        )
        _show(
            "NOTE: authenticity not checked: "
            + (f"{', '.join(unchecked)} not verified" if unchecked else "the release is unsigned")
            + " (give --keys parties.yaml to check the signatures)"
        )
    if not args.since and path.parent.name == "releases":
        _show(
            "NOTE: give --since RELEASE_ID (the release you saw last) to check that this one "
            "follows it: a LATEST moved back or a forked history shows only that way"
        )
    return EXIT_OK


@command(
    "rederive",
    "recompute a release from its member bundle and compare every file byte for byte",
)
@click.argument("bundle")
@click.option(
    "--release",
    required=True,
    help="the release to compare with: a release folder, or a publish folder (its LATEST)",
)
@click.option(
    "--workdir",
    help="an empty or new folder to recompute in (kept afterwards); default a temporary "
    "folder, removed",
)
def rederive_command(args) -> int:
    """BUNDLE: the member bundle, <workdir>/bundles/<release_id>."""
    return cmd_rederive(args)


def cmd_rederive(args) -> int:
    from pipelines.rederive import RederiveError, rederive

    bundle = Path(args.bundle)
    if not bundle.is_dir():
        raise CannotRun(f"{bundle} does not exist or is not a folder (a release bundle)")
    if args.workdir:
        workdir = Path(args.workdir)
        _check_folder("--workdir", workdir, must_exist=False)
        if workdir.is_dir() and any(workdir.iterdir()):
            raise CannotRun(f"--workdir {workdir}: not empty (re-derivation starts from nothing)")
    try:
        problems = rederive(
            bundle, Path(args.release), Path(args.workdir) if args.workdir else None, say=_say
        )
    except RederiveError as exc:
        raise CannotRun(str(exc)) from None
    for p in problems:
        _say(f"FAIL: {p}")
    if problems:
        return EXIT_FAILED
    _say(f"OK: {args.release} re-derived byte for byte from {bundle}")
    return EXIT_OK


@command("cosign", "sign a release this party re-derived: writes cosign/<PARTY>.sig")
@click.option("--key", required=True, help="the party's key file ('cbm keygen')")
@click.option("--party", required=True, help="the party code the key belongs to")
@click.argument("path")
def cosign_command(args) -> int:
    return cmd_cosign(args)


def cmd_cosign(args) -> int:
    from cbm.release import COSIGN_DIR, signing_contexts, verify_release
    from cbm.signatures import SigningError, SigningKey

    path = Path(args.path)
    if not (path / "manifest.json").is_file():
        raise CannotRun(f"{path} is not a release folder (no manifest.json)")
    try:
        key = SigningKey(Path(args.key))
    except SigningError as exc:
        raise CannotRun(f"--key {exc}") from exc
    if key.party != args.party:
        raise CannotRun(f"--key {args.key} is {key.party}'s key, not {args.party}'s")
    ok, problems = verify_release(path)
    if not ok:
        for p in problems:
            _say(f"FAIL: {p}")
        raise RuntimeError(f"{path} does not match its manifest: not co-signed")
    from cbm.files import write_atomic

    (path / COSIGN_DIR).mkdir(exist_ok=True)
    out = path / COSIGN_DIR / f"{args.party}.sig"
    manifest = (path / "manifest.json").read_bytes()
    write_atomic(out, key.sign(manifest, signing_contexts(manifest)[1](args.party)))
    _say(f"co-signed {path.name} as {args.party}: {out}")
    return EXIT_OK


@command("sign", "write FILE.sig (detached Ed25519 signature) for each file")
@click.option("--key", required=True, help="the key file written by 'cbm keygen'")
@click.argument("files", nargs=-1, required=True)
def sign_command(args) -> int:
    return cmd_sign(args)


def cmd_sign(args) -> int:
    from cbm.signatures import SigningError, sign_file

    for name in args.files:
        try:
            sig = sign_file(Path(args.key), Path(name))
        except SigningError as exc:
            raise CannotRun(str(exc)) from exc
        _say(f"signed {name} -> {sig}")
    return EXIT_OK
