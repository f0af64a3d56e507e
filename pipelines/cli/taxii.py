"""``cbm taxii``: the TAXII 2.1 server (cbm/taxii.py); ``cbm taxii-credential``: a party's
credential for it."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.base import WholeNumber, command
from pipelines.output import EXIT_OK, CannotRun, _check_folder, _say


def _parties(registry: Path) -> set[str]:
    from cbm.registry import RegistryError, load_parties

    _check_folder("--registry", registry, must_exist=True)
    try:
        return set(load_parties(registry / "parties.yaml"))
    except RegistryError as exc:
        raise CannotRun(str(exc)) from None


def _credentials(path: Path):
    from cbm.taxii import Credentials

    if path.is_dir():
        raise CannotRun(f"--credentials {path}: is a folder; give the credentials file")
    try:
        return Credentials(path)
    except (ValueError, OSError) as exc:
        raise CannotRun(f"--credentials {path}: unreadable ({exc})") from None


@command(
    "taxii",
    "serve the published releases over TAXII 2.1 (read-only) and take each party's "
    "submissions through a write-only collection of its own",
)
@click.option("--publish", required=True, help="the publish folder whose releases are served")
@click.option("--inbox", required=True, help="the inbox a party's posted objects are written to")
@click.option("--registry", required=True, help="the registry (parties.yaml names the parties)")
@click.option(
    "--credentials",
    required=True,
    help="the parties' credentials (cbm taxii-credential writes it; keep it outside the "
    "repository)",
)
@click.option("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
@click.option("--port", type=WholeNumber(1, 65535), default=8766, help="port (default 8766)")
@click.option("--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key)")
@click.option("--tls-key", help="PEM private key of --tls-cert")
@click.option(
    "--max-content-length",
    type=WholeNumber(1024, 1 << 31),
    default=10 * 1024 * 1024,
    help="bytes a party may POST at once (default 10 MiB)",
)
def taxii_command(args) -> int:
    return cmd_taxii(args)


def cmd_taxii(args) -> int:
    from cbm.taxii import API_ROOT, RELEASES, Server, make_server

    publish, inbox = Path(args.publish), Path(args.inbox)
    _check_folder("--publish", publish, must_exist=True)
    _check_folder("--inbox", inbox, must_exist=True)
    parties = _parties(Path(args.registry))
    credentials = _credentials(Path(args.credentials))
    unknown = sorted(set(credentials.parties()) - parties)
    if unknown:
        raise CannotRun(
            f"--credentials {args.credentials}: {', '.join(unknown)} not in the registry's "
            "parties.yaml"
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CannotRun("--tls-cert and --tls-key go together")
    for flag, value in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if value and not Path(value).is_file():
            raise CannotRun(f"{flag} {value}: no such file")
    server = Server(publish, inbox, credentials, parties, args.max_content_length)
    try:
        httpd = make_server(
            server,
            args.host,
            args.port,
            Path(args.tls_cert) if args.tls_cert else None,
            Path(args.tls_key) if args.tls_key else None,
        )
    except OSError as exc:
        raise CannotRun(
            f"--port {args.port}: cannot listen on {args.host} ({exc.strerror})"
        ) from None
    except Exception as exc:  # ssl errors: a certificate or key that does not load
        raise CannotRun(f"--tls-cert {args.tls_cert}: {exc}") from None
    scheme = "https" if args.tls_cert else "http"
    base = f"{scheme}://{args.host}:{args.port}"
    records = server.served.records()  # checked now, not on the first client's request
    _say(f"TAXII 2.1 discovery: {base}/taxii2/ (Ctrl-C stops)")
    _say(
        f"releases (read-only): {base}/{API_ROOT}/collections/{RELEASES}/ "
        f"({len(server.served.releases)} releases, {len(records):,} object versions)"
    )
    _say(
        f"parties with a credential ({len(credentials.parties())}): "
        f"{', '.join(credentials.parties()) or 'none yet: cbm taxii-credential'}"
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return EXIT_OK


@command(
    "taxii-credential",
    "issue a party's TAXII credential: printed once, only its salted hash is kept",
)
@click.option("--credentials", required=True, help="the credentials file (created if missing)")
@click.option("--party", required=True, help="the party's code, as parties.yaml names it")
@click.option("--registry", required=True, help="the registry (parties.yaml names the parties)")
def taxii_credential_command(args) -> int:
    from cbm.taxii import inbox_collection

    parties = _parties(Path(args.registry))
    if args.party not in parties:
        raise CannotRun(
            f"--party {args.party}: not in parties.yaml (parties: {', '.join(sorted(parties))})"
        )
    credentials = _credentials(Path(args.credentials))
    token = credentials.issue(args.party)
    # the credential alone on stdout (TOKEN=$(cbm taxii-credential ...)); what it is on stderr
    click.echo(
        f"credential of {args.party} (shown once; {args.credentials} keeps its hash):", err=True
    )
    click.echo(token)
    click.echo(
        f"{args.party}'s collection: {inbox_collection(args.party)} "
        f"(HTTP Basic: user {args.party}, password the credential)",
        err=True,
    )
    return EXIT_OK
