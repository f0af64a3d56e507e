"""``cbm keygen``, ``cbm keygen-pseudonym``, ``cbm rotate-key``."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.base import command
from pipelines.output import EXIT_OK, CannotRun, _check_folder, _count, _say
from pipelines.runner import _forget_last_run_state, _workdir_lock


@command("keygen-pseudonym", "write a new pseudonymisation key file")
@click.option("--out", required=True, help="the key file to write (mode 0600)")
@click.option(
    "--key-version",
    help="recorded in every release (default: k- and the start of the key's fingerprint, "
    "so every new key has its own)",
)
@click.option("--force", is_flag=True, help="replace an existing key file")
def keygen_pseudonym_command(args) -> int:
    return cmd_keygen_pseudonym(args)


def cmd_keygen_pseudonym(args) -> int:
    from cbm.protection import load_key, new_key_file

    out = Path(args.out)
    _check_folder("--out", out.parent, must_exist=False)
    if out.exists() and not args.force:
        raise CannotRun(f"{out} exists; pass --force to replace it (pseudonyms will change)")
    key = load_key({"CBM_KEY_FILE": str(new_key_file(out, args.key_version))})
    _say(
        f"wrote pseudonymisation key {key.version} ({key.fingerprint}) to {out}; keep it outside "
        f"the repository and set CBM_KEY_FILE={out} (a warehouse built with another key: "
        "'cbm rotate-key --new-key FILE')"
    )
    return EXIT_OK


@command(
    "rotate-key",
    "re-pseudonymise the warehouse with a new pseudonymisation key (the current one in "
    "CBM_KEY_FILE); the next release records the rotation",
)
@click.option("--workdir", required=True, help="the workdir of 'cbm run'")
@click.option(
    "--new-key", required=True, help="the new key file ('cbm keygen-pseudonym --out FILE')"
)
def rotate_key_command(args) -> int:
    return cmd_rotate_key(args)


def cmd_rotate_key(args) -> int:
    """Re-pseudonymise a warehouse from the key in CBM_KEY_FILE to ``--new-key``."""
    from cbm.protection import KeyError_, load_key
    from warehouse.db import Warehouse
    from warehouse.rotation import RotationError, rotate_key

    workdir = Path(args.workdir)
    _check_folder("--workdir", workdir, must_exist=True)
    path = workdir / "warehouse.duckdb"
    if not path.is_file():
        raise CannotRun(f"no warehouse in {workdir} (has 'cbm run' been run with this --workdir?)")
    try:
        old = load_key()
    except KeyError_ as exc:
        raise CannotRun(f"the current key: {exc}") from exc
    try:
        new = load_key({"CBM_KEY_FILE": args.new_key})
    except KeyError_ as exc:
        raise CannotRun(f"--new-key: {exc}") from exc
    with _workdir_lock(workdir, wait_seconds=600), Warehouse(str(path)).connect() as con:
        try:
            done = rotate_key(con, old, new, workdir / "staged")
        except RotationError as exc:
            raise CannotRun(str(exc)) from exc
        _forget_last_run_state(workdir)  # the next run verifies and publishes again
    _say(
        f"rotated {path} from {done.old[0]} ({done.old[1]}) to {done.new[0]} ({done.new[1]}): "
        f"{_count(done.parties, 'party pseudonym')}, {_count(done.technical_keys, 'technical key')}, "
        f"{done.rows:,} values"
    )
    _say(
        f"next: set CBM_KEY_FILE={args.new_key} and run 'cbm run'; it verifies again and its "
        "release names the rotation (its event ids change: changes/events lists each successor)"
    )
    return EXIT_OK


@command("keygen", "a party's Ed25519 signing key (private file + public key to register)")
@click.option("--party", required=True, help="the party code, as in parties.yaml")
@click.option("--out", required=True, help="the private key file to write (mode 0600)")
@click.option("--force", is_flag=True, help="replace an existing key file")
def keygen_command(args) -> int:
    return cmd_keygen(args)


def cmd_keygen(args) -> int:
    from cbm.signatures import new_party_key

    out = Path(args.out)
    _check_folder("--out", out.parent, must_exist=False)
    if out.exists() and not args.force:
        raise CannotRun(f"{out} exists; pass --force to replace it")
    public = new_party_key(args.party, out)
    _say(f"wrote {args.party}'s signing key to {out} (keep it private)")
    _say(f"add to {args.party}'s entry in parties.yaml:  public_key: {public}")
    return EXIT_OK
