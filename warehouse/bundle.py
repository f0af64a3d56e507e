"""The member bundle of a release (contract §4, "Re-derivation"): everything a party needs to
recompute the release without the raw inputs or the pseudonymisation key.

``<workdir>/bundles/<release_id>/`` (member tier, never public):

- ``reports/<kind>/<submission_sha>.parquet``: the rows verification read (views
  ``verification_<kind>``), one file per submission: current versions, pseudonymised,
  validated; no free text, technical keys only as keyed hashes, nothing above what the members
  may see (GREEN, or AMBER where policy.yaml names them its recipients; never AMBER+STRICT or
  RED). A submission whose rows are those of the previous release's bundle keeps its file
  (linked, not written again: decision 5 of #40), the bytes a full write gives (M50).
- ``tables/*.parquet``: commitments, obligations, ``verification_scope``, ``release_context``
  (as-of time, method version, input submissions, key version and fingerprint), the members
  of the previous release's events (to name an event's successor), and ``party_directory``
  reduced to what verification reads (``bundle.directory`` in warehouse/sql/queries/bundle.sql): the parties a release can name
  by code, every other source only as a pseudonym with its bloc and class.
- ``registry/``: ``commitments.yaml`` as given; ``policy.yaml`` with the agreed method only
  (no alerts, endpoints or recipients, no release guard); ``parties.yaml`` with the parties
  a release can name and the publisher, public fields only (a party's name is its code).
- ``bundle.json``: the release it derives, the previous release, every file with its SHA-256
  (a report file also with the fingerprint of its rows, ``fingerprint``), and what the
  release's manifest declares beyond its figures (``manifest_declarations``).

Same warehouse, same bytes: the bundle is written once per release id, atomically.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import duckdb
import pyarrow
import yaml

from cbm import jsontext
from cbm.contract import KINDS
from cbm.files import fsync_dir, sha256_file, sync_filesystem
from cbm.registry import Registry
from cbm.release import PARQUET_OPTIONS, ROW_GROUP_ROWS, write_batches, write_file, write_table
from warehouse.db import fetch_arrow, stream_arrow
from warehouse.queries import Sql, query

BUNDLE_VERSION = 3  # 3: a report file per submission; 2: party_directory names no one it need not
READS = (2, 3)  # the versions this cbm loads (2: one report file per kind)
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
    earlier = _report_files(bundles / previous) if previous else {}
    files = [entry for kind in KINDS for entry in _write_reports(con, tmp, kind, earlier)]
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


SHA = re.compile(r"[0-9a-f]{64}")  # a submission's id, which names its report files
# how a report file is made from its rows: DuckDB hands them over as Arrow, pyarrow writes
# them with these options (part of each file's fingerprint)
WRITTEN_BY = [duckdb.__version__, pyarrow.__version__, PARQUET_OPTIONS, ROW_GROUP_ROWS]


def _write_reports(
    con: duckdb.DuckDBPyConnection, tmp: Path, kind: str, earlier: dict[str, dict]
) -> list[dict]:
    """The report files of one kind, one per submission; their entries. A file whose rows have
    the fingerprint of the previous bundle's file of that path is that file, linked (and its
    SHA-256 checked); the others are written from one query, streamed (M30): the most rows of
    a release, never all in memory."""
    columns = con.execute(query("bundle.report_columns", kind=kind)).fetchall()
    entries, todo = {}, {}  # todo: the fingerprints of the files to write, by submission
    for sha, n, h1, h2 in con.execute(query("bundle.report_fingerprints", kind=kind)).fetchall():
        if not isinstance(sha, str) or not SHA.fullmatch(sha):
            raise BundleError(f"reports_{kind}: {sha!r} is not a submission's SHA-256")
        rel = f"reports/{kind}/{sha}.parquet"
        fingerprint = _fingerprint(columns, n, h1, h2)
        before = earlier.get(rel)
        if (
            before
            and before["entry"].get("fingerprint") == fingerprint
            and _link(before, tmp / rel)
        ):
            entries[rel] = before["entry"]
        else:
            todo[sha] = fingerprint
    if todo:
        params = {"all": not entries, "shas": list(todo)}  # nothing kept: no filter
        rows = stream_arrow(con, query("bundle.reports", kind=kind), params)
        column = rows.schema.get_field_index("submission_sha")
        for sha, part in itertools.groupby(_runs(rows, column), key=lambda run: run[0]):
            rel = f"reports/{kind}/{sha}.parquet"
            entry = write_batches(tmp, rel, rows.schema, (batch for _, batch in part))
            entries[rel] = entry | {"fingerprint": todo[sha]}
    return [entries[rel] for rel in sorted(entries)]


def _fingerprint(columns: list, n: int, h1: int, h2: int) -> str:
    """What makes a report file's bytes: its rows (how many, and their two hash sums), their
    columns and types, and how the file is made (``WRITTEN_BY``)."""
    made = [columns, n, str(h1), str(h2), *WRITTEN_BY]
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()


def _runs(batches, column: int):
    """``(value, batch)`` for each run of one value of ``column`` in the record batches (sorted
    by it): a batch is sliced where the value changes."""
    import pyarrow.compute as pc

    for batch in batches:
        values = batch.column(column)
        if not len(values):
            continue
        changes = pc.indices_nonzero(pc.not_equal(values[1:], values[:-1])).to_pylist()
        starts = [0, *(i + 1 for i in changes)]
        for start, end in zip(starts, [*starts[1:], len(values)], strict=True):
            yield values[start].as_py(), batch.slice(start, end - start)


def _report_files(root: Path) -> dict[str, dict]:
    """The report files of an earlier bundle by path, with their fingerprints (none from a
    bundle without them, or none at all)."""
    try:
        description = json.loads((root / BUNDLE_FILE).read_text(encoding="utf-8"))
        return {
            f["path"]: {"entry": f, "from": root / f["path"]}
            for f in description["files"]
            if isinstance(f, dict) and f.get("fingerprint") and isinstance(f.get("path"), str)
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _link(before: dict, path: Path) -> bool:
    """The earlier bundle's file at ``path`` (a hard link; a copy where links are refused),
    if its bytes are still those its bundle names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(before["from"], path)
    except OSError:
        try:
            shutil.copyfile(before["from"], path)
        except OSError:
            return False
    if sha256_file(path) == before["entry"].get("sha256"):
        return True
    path.unlink()  # altered since: written again from the warehouse
    return False


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
            f"{' and '.join(map(str, READS))}"
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


def load_bundle(con: duckdb.DuckDBPyConnection, root: Path, description: dict) -> None:
    """Fill a new warehouse with a bundle's rows and tables (``read_bundle`` checked it and
    gave its ``description``)."""
    listed = {str(f.get("path")) for f in description["files"]}
    for kind in KINDS:
        if description.get("bundle_version") == 2:  # one file per kind
            named = re.compile(rf"reports/{kind}\.parquet")
        else:  # one per submission, taken in the order of their names
            named = re.compile(rf"reports/{kind}/{SHA.pattern}\.parquet")
        paths = [str(root / path) for path in sorted(listed) if named.fullmatch(path)]
        if paths:
            con.execute(query("bundle.load_reports", kind=kind), [paths])
    for table in (*TABLES, "party_directory", "published_event_members"):
        source = str(root / "tables" / f"{table}.parquet")
        made = table == "release_context"  # made by its asset, not by the schema
        con.execute(
            query("bundle.load_made_table" if made else "bundle.load_table", table=table), [source]
        )
