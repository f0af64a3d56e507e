"""The member bundle of a release (contract §4, "Re-derivation"): everything a party needs to
recompute the release without the raw inputs or the pseudonymisation key.

``<workdir>/bundles/<release_id>/`` (member tier, never public):

- ``reports/<kind>/<submission sha256>.parquet``: the rows verification read (views
  ``verification_<kind>``), one file per submission: current versions, pseudonymised,
  validated; no free text, technical keys only as keyed hashes, nothing above what the
  members may see (GREEN, or AMBER where policy.yaml names them its recipients; never
  AMBER+STRICT or RED). A submission's file holds the same rows from one release to the next
  unless a later version supersedes one of them, so the next bundle copies it from this one
  instead of writing it again (``Earlier``; the bytes are those of a full write). Bundles of
  version 2 held one ``reports/<kind>.parquet`` per kind; ``cbm rederive`` reads both.
- ``tables/*.parquet``: commitments, obligations, ``verification_scope``, ``release_context``
  (as-of time, method version, input submissions, key version and fingerprint), the members
  of the previous release's events (to name an event's successor), and ``party_directory``
  reduced to what verification reads (``bundle.directory`` in warehouse/sql/queries/bundle.sql): the parties a release can name
  by code, every other source only as a pseudonym with its bloc and class.
- ``registry/``: ``commitments.yaml`` as given; ``policy.yaml`` with the agreed method only
  (no alerts, endpoints or recipients, no release guard); ``parties.yaml`` with the parties
  a release can name and the publisher, public fields only (a party's name is its code).
- ``bundle.json``: the release it derives, the previous release, every file with its SHA-256,
  what the release's manifest declares beyond its figures (``manifest_declarations``), and
  the Parquet writer of its files and of the release's (``parquet_writer``: the library and
  options; the next release copies unchanged files only from one written the same way).

Same warehouse, same bytes: the bundle is written once per release id, atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from cbm.contract import KINDS
from cbm.files import fsync_dir, sha256_file
from cbm.registry import Registry
from cbm.release import parquet_writer, write_file, write_parquet, write_table
from warehouse.db import fetch_arrow
from warehouse.queries import Sql, query

# 2: party_directory names no one it need not; verification_scope. 3: reports one file per
# submission, and the Parquet writer recorded
BUNDLE_VERSION = 3
READS = (2, 3)  # the bundle versions cbm rederive reads
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
    earlier = earlier_bundle(bundles / previous) if previous else None
    files = [
        entry
        for kind in KINDS
        for entry in _write_reports(
            tmp, kind, fetch_arrow(con, query("bundle.reports", kind=kind)), earlier
        )
    ]
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
        "parquet_writer": parquet_writer(),
        "files": sorted(files, key=lambda f: f["path"]),
    }
    if declarations:
        description["manifest_declarations"] = declarations
    write_file(
        tmp, BUNDLE_FILE, (json.dumps(description, indent=2, sort_keys=True) + "\n").encode()
    )
    try:
        tmp.rename(root)
    except OSError:  # another run wrote it first: same release id, same bytes
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(bundles)
    return root


# A submission's rows are compared with the earlier file's only from this many rows on: below
# it, writing them costs no more than reading the earlier file back (0.9 ms against 1.4 ms for
# 1,000 rows; 59 ms against 31 ms for 200,000: benchmarks/README.md, M26). The bytes are the
# same either way.
COPY_FROM_ROWS = 10_000


@dataclass(frozen=True)
class Earlier:
    """The report files of the previous bundle, written by this same Parquet writer
    (``parquet_writer``), which the next bundle copies instead of writing again: its folder,
    and each file's SHA-256 as its description lists it.

    A file is copied only when the rows it holds, read back, are the rows to be written, and
    the copy has the SHA-256 listed: the bytes are those that writing the rows gives (the
    same rows, options and library), and a file altered since it was listed is written
    anew."""

    root: Path
    files: dict[str, str]  # path -> sha256

    @classmethod
    def of(cls, root: Path | None, entries: list[dict] | None) -> Earlier | None:
        """From a bundle description's file entries."""
        files = {str(f["path"]): str(f["sha256"]) for f in entries or []}
        return cls(root, files) if root is not None and files else None

    def copy(self, rel: str, rows: pa.Table, path: Path) -> bool:
        """Whether ``rel``, holding exactly ``rows``, was copied to ``path``."""
        listed, source = self.files.get(rel), self.root / rel
        if listed is None or not source.is_file():
            return False
        try:
            if not pq.read_table(source).equals(rows, check_metadata=True):
                return False
        except (OSError, pa.ArrowException):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        if sha256_file(path) == listed:
            return True
        path.unlink()
        return False


def _write_reports(root: Path, kind: str, rows: pa.Table, earlier: Earlier | None) -> list[dict]:
    """``reports/<kind>/<submission>.parquet``, one file per submission, from ``rows`` sorted
    by submission and row number; a submission whose rows ``earlier`` holds is copied."""
    rows = rows.combine_chunks()
    shas = rows.column("submission_sha").combine_chunks()
    n = len(shas)
    if n == 0:
        return []
    changes = pc.indices_nonzero(pc.not_equal(shas.slice(1), shas.slice(0, n - 1)))
    starts = [0, *(i + 1 for i in changes.to_pylist())]
    entries = []
    for start, end in zip(starts, [*starts[1:], n], strict=True):
        part = rows.slice(start, end - start)
        rel = f"reports/{kind}/{shas[start].as_py()}.parquet"
        copied = (
            earlier is not None
            and part.num_rows >= COPY_FROM_ROWS
            and earlier.copy(rel, part, root / rel)
        )
        entries.append(
            {"path": rel, "rows": part.num_rows, "sha256": earlier.files[rel]}
            if copied
            else write_parquet(root, rel, part)
        )
    return entries


def earlier_bundle(root: Path) -> Earlier | None:
    """The report files of the bundle at ``root``, when it was written by this Parquet writer
    (None: no such bundle, another version or writer, or its description does not read)."""
    try:
        description = json.loads((root / BUNDLE_FILE).read_text(encoding="utf-8"))
        if description.get("parquet_writer") != parquet_writer():
            return None
        return Earlier.of(root, description["files"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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
    if description.get("bundle_version") not in READS:
        raise BundleError(
            f"{path}: bundle version {description.get('bundle_version')!r}, this cbm reads "
            + " and ".join(map(str, READS))
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
    listed = [f["path"] for f in json.loads((root / BUNDLE_FILE).read_text())["files"]]
    for kind in KINDS:
        # version 3: one file per submission (none for a kind without rows); 2: one per kind
        parts = [
            str(root / p)
            for p in listed
            if p == f"reports/{kind}.parquet" or p.startswith(f"reports/{kind}/")
        ]
        if parts:
            con.execute(query("bundle.load_reports", kind=kind), [parts])
    for table in (*TABLES, "party_directory", "published_event_members"):
        source = str(root / "tables" / f"{table}.parquet")
        made = table == "release_context"  # made by its asset, not by the schema
        con.execute(
            query("bundle.load_made_table" if made else "bundle.load_table", table=table), [source]
        )
