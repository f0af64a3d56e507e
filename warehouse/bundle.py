"""The member bundle of a release (contract §4, "Re-derivation"): everything a party needs to
recompute the release without the raw inputs or the pseudonymisation key.

``<workdir>/bundles/<release_id>/`` (member tier, never public):

- ``reports/<kind>.parquet``: the rows verification read (views ``verification_<kind>``):
  current versions, pseudonymised, validated; no free text, technical keys only as keyed
  hashes, nothing above what the members may see (GREEN, or AMBER where policy.yaml names
  them its recipients; never AMBER+STRICT or RED).
- ``tables/*.parquet``: commitments, obligations, ``verification_scope``, ``release_context``
  (as-of time, method version, input submissions, key version and fingerprint), the members
  of the previous release's events (to name an event's successor), and ``party_directory``
  reduced to what verification reads (``bundle.directory`` in warehouse/sql/queries/bundle.sql): the parties a release can name
  by code, every other source only as a pseudonym with its bloc and class.
- ``registry/``: ``commitments.yaml`` as given; ``policy.yaml`` with the agreed method only
  (no alerts, endpoints or recipients, no release guard); ``parties.yaml`` with the parties
  a release can name and the publisher, public fields only (a party's name is its code).
- ``bundle.json``: the release it derives, the previous release, every file with its SHA-256,
  and what the release's manifest declares beyond its figures (``manifest_declarations``).

Same warehouse, same bytes: the bundle is written once per release id, atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import yaml

from cbm import jsontext
from cbm.contract import KINDS
from cbm.files import fsync_dir, sha256_file, sync_filesystem
from cbm.registry import Registry
from cbm.release import write_batches, write_file, write_table
from warehouse.db import fetch_arrow, stream_arrow
from warehouse.queries import Sql, query

BUNDLE_VERSION = 2  # 2: party_directory names no one it need not; verification_scope
BUNDLE_FILE = "bundle.json"
TABLES = ("registry_commitments", "registry_obligations", "release_context", "verification_scope")


class BundleError(ValueError):
    """A bundle that cannot be used: missing, incomplete or altered (the message says which)."""


def write_bundle(
    con: duckdb.DuckDBPyConnection,
    bundles: Path,
    release_id: str,
    previous: str | None,
    registry: Registry,
    registry_dir: Path,
    declarations: dict | None = None,
) -> Path:
    """Write the bundle of ``release_id`` from the warehouse behind it (unless it exists).
    ``declarations``: what the release's manifest declares beyond its figures (a key rotation,
    a change accepted on purpose, unsigned on purpose), which a re-derivation declares alike."""
    root = bundles / release_id
    if (root / BUNDLE_FILE).is_file():
        return root
    bundles.mkdir(parents=True, exist_ok=True)
    for stale in bundles.glob(f".tmp-{release_id}-*"):  # a run killed while writing it
        shutil.rmtree(stale, ignore_errors=True)
    tmp = bundles / f".tmp-{release_id}-{os.getpid()}"
    files = []
    for kind in KINDS:  # the most rows of a release: streamed, never all in memory (M30)
        rows = stream_arrow(con, query("bundle.reports", kind=kind))
        files.append(write_batches(tmp, f"reports/{kind}.parquet", rows.schema, rows))
    files += [
        write_table(tmp, f"tables/{t}.parquet", fetch_arrow(con, query("bundle.table", table=t)))
        for t in TABLES
    ]
    directory = query("bundle.directory", named=Sql(query("bundle.named")))
    files.append(
        write_table(
            tmp,
            "tables/party_directory.parquet",
            fetch_arrow(con, directory, {"release_id": release_id}),
        )
    )
    files.append(
        write_table(
            tmp,
            "tables/published_event_members.parquet",
            fetch_arrow(con, query("bundle.event_members"), [previous]),
        )
    )
    named = {code for (code,) in con.execute(query("bundle.named")).fetchall()}
    public_parties = [  # the parties the release can name, and its publisher; no one else
        {
            "code": p.code,
            "name": p.code,  # real names stay with the secretariat
            "class": p.party_class,
            "bloc": p.bloc,
            "public_label": p.public_label,
            "public_key": p.public_key,
        }
        for p in sorted(registry.parties.values(), key=lambda p: p.code)
        if p.code in named or p.party_class == "secretariat"
    ]
    files.append(
        write_file(
            tmp,
            "registry/parties.yaml",
            yaml.safe_dump(public_parties, sort_keys=False).encode(),
        )
    )
    files.append(
        write_file(
            tmp, "registry/commitments.yaml", (registry_dir / "commitments.yaml").read_bytes()
        )
    )
    # the agreed method only: no alerts (endpoints, hosts, recipients) and no release guard
    files.append(
        write_file(
            tmp,
            "registry/policy.yaml",
            yaml.safe_dump(registry.policy.raw, sort_keys=True).encode(),
        )
    )
    description = {
        "bundle_version": BUNDLE_VERSION,
        "release_id": release_id,
        "previous_release_id": previous,
        "files": sorted(files, key=lambda f: f["path"]),
    }
    if declarations:
        description["manifest_declarations"] = declarations
    write_file(tmp, BUNDLE_FILE, (jsontext.dumps(description) + "\n").encode())
    sync_filesystem(tmp)  # the files on disk before the bundle is visible (a power loss)
    try:
        tmp.rename(root)
    except OSError:  # another run wrote it first: same release id, same bytes
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(bundles)
    return root


def read_bundle(root: Path) -> dict:
    """The bundle's description, after checking every file against it (BundleError if not)."""
    path = Path(root) / BUNDLE_FILE
    if not path.is_file():
        raise BundleError(f"{root}: not a release bundle ({BUNDLE_FILE} is missing)")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
        files = description["files"]
        release_id = description["release_id"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not a readable bundle description ({exc})") from None
    if description.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(
            f"{path}: bundle version {description.get('bundle_version')!r}, this cbm reads "
            f"{BUNDLE_VERSION}"
        )
    for entry in files:
        file = Path(root) / str(entry.get("path"))
        if not file.is_file():
            raise BundleError(f"{root}: {entry.get('path')} is missing from the bundle")
        if sha256_file(file) != entry.get("sha256"):
            raise BundleError(f"{root}: {entry['path']} does not match bundle.json (altered?)")
    if not isinstance(release_id, str):
        raise BundleError(f"{path}: no release_id")
    return description


def load_bundle(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Fill a new warehouse with a bundle's rows and tables (``read_bundle`` checked it)."""
    for kind in KINDS:
        con.execute(
            query("bundle.load_reports", kind=kind), [str(root / "reports" / f"{kind}.parquet")]
        )
    for table in (*TABLES, "party_directory", "published_event_members"):
        source = str(root / "tables" / f"{table}.parquet")
        made = table == "release_context"  # made by its asset, not by the schema
        con.execute(
            query("bundle.load_made_table" if made else "bundle.load_table", table=table), [source]
        )
