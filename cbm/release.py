"""Releases on disk (contract §4): deterministic Parquet, a manifest written last, atomic.

A release is assembled in ``<publish>/releases/.tmp-<id>-<pid>`` and renamed into place in
one step, so a run killed mid-way leaves no partial release visible; ``LATEST`` is replaced
only after the rename. ``verify_release`` is what a consumer runs to check a release. A
publish location on object storage gets the same guarantees from a local mirror
(``pull_published``, ``push_release``): files first, manifest next, ``LATEST`` last and
conditionally.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cbm import jsontext
from cbm.files import fsync_dir, sha256_file, sync_filesystem, write_atomic
from cbm.storage import Conflict, Location

# Bump when the published files change form for the same figures (it is part of every release
# id): 2 (2026-12) the manifest's content_id, previous_release and signature_scheme, STIX ids
# version-4 in form, member bundle version 2; 3 (2026-12, later) changes/ with `changed`
# (field by field), the MISP feed's typed `week_start` attribute, the report's corrections
# field by field and additions by month, the indicators' grain saying what no row means
SCHEMA_VERSION = 3
PRODUCTS = ("indicators", "compliance", "events")  # partitioned by period, with changes/
# products of one file each, not partitioned (their rows still carry period)
TABLES = {"calendar": "calendar/calendar.parquet", "disputes": "disputes/disputes.parquet"}
CALENDAR_ICS = "calendar/calendar.ics"


def parse_as_of(text: str) -> datetime:
    """``--as-of``: ISO 8601 with an offset, like every timestamp of the contract."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--as-of {text!r} is not an ISO 8601 timestamp; write e.g. 2026-10-31T00:00:00+00:00"
        ) from None
    if value.tzinfo is None:
        raise ValueError(f"--as-of {text!r} needs a UTC offset, e.g. 2026-10-31T00:00:00+00:00")
    return value


def release_id_for(
    inputs: list[str],
    method_version: str,
    as_of: str,
    key_version: str,
    registry_digest: str | None = None,
) -> str:
    """The id of the release of these inputs by this method at this as-of time, with this key
    and registry (its parties' classes, blocs and labels, its commitments and obligations, as
    verification read them): what it depends on, so a release with other figures never takes
    an existing id. ``registry_digest`` None (a bundle from before it was recorded) keeps the
    id such a release had."""
    fields = {
        "inputs": sorted(inputs),
        "method": method_version,
        "as_of": as_of,
        "key": key_version,
        "schema": SCHEMA_VERSION,
    }
    if registry_digest is not None:
        fields["registry"] = registry_digest
    blob = json.dumps(fields, sort_keys=True)
    return "r-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


def chained_release(
    content_id: str, latest_id: str | None, latest_manifest: bytes | None
) -> tuple[str, dict | None]:
    """The id of a release and the previous release it names, ``(release_id, previous)``.

    ``content_id`` (``release_id_for``) says what the release is derived from; the release id
    also covers the release it follows: ``previous`` is ``{release_id, manifest_sha256}`` of
    the publish folder's LATEST, so two histories that reach the same figures by different
    paths (a partial inbox, then the full one; or the full one at once) have different ids.
    When LATEST already has this content, it is this release (a run with nothing new), and
    keeps the previous release it named. The first release's id is its content id."""
    if latest_id is None or latest_manifest is None:
        return content_id, None
    try:
        manifest = json.loads(latest_manifest)
    except ValueError:
        manifest = {}
    if manifest.get("content_id", latest_id) == content_id:
        return latest_id, manifest.get("previous_release")
    previous = {
        "release_id": latest_id,
        "manifest_sha256": hashlib.sha256(latest_manifest).hexdigest(),
    }
    blob = json.dumps({"content": content_id, "previous": previous}, sort_keys=True)
    return "r-" + hashlib.sha256(blob.encode()).hexdigest()[:20], previous


def check_chain(release: Path, since: str | None = None) -> tuple[list[str], list[str]]:
    """Follow a release's ``previous_release`` links through its sibling folders, checking
    that each names the previous manifest's exact bytes: (problems, notes). With ``since``
    (the release a reader saw last), the chain must reach it: a LATEST pointed back at an
    older release, or a release of another history (a fork), does not."""
    problems, notes, seen = [], [], []
    current = release
    while True:
        try:
            manifest = json.loads((current / MANIFEST).read_bytes())
        except (OSError, ValueError):
            problems.append(f"{current.name}: no readable {MANIFEST}: the chain cannot be followed")
            break
        seen.append(current.name)
        if current.name == since:
            break
        previous = manifest.get("previous_release")
        if not isinstance(previous, dict):
            why = (
                "the first release"
                if "content_id" in manifest
                else "published before releases named their previous one"
            )
            notes.append(f"chain: {len(seen)} release(s) back to {current.name} ({why})")
            break
        before = release.parent / str(previous.get("release_id"))
        if not (before / MANIFEST).is_file():
            text = f"{current.name} follows {previous.get('release_id')}, which is not here"
            if since:
                problems.append(text + f": the chain cannot be followed to {since}")
            else:
                notes.append(f"chain: {len(seen)} release(s), then " + text)
            break
        digest = hashlib.sha256((before / MANIFEST).read_bytes()).hexdigest()
        if digest != previous.get("manifest_sha256"):
            problems.append(
                f"{current.name} follows {before.name} with manifest {str(previous.get('manifest_sha256'))[:12]}, "
                f"but {before.name}/{MANIFEST} is {digest[:12]}: another history (a fork) or an edited release"
            )
            break
        if before.name in seen:
            problems.append(f"{before.name}: the chain goes round in a circle")
            break
        current = before
    if since and since not in seen and not problems:
        problems.append(
            f"{release.name} does not follow {since} (its chain: {' <- '.join(seen)}): LATEST "
            "moved back, or this publisher's history forked from the one you saw"
        )
    elif since and since in seen:
        notes.append(f"follows {since} ({len(seen) - 1} release(s) since)")
    return problems, notes


def check_publish_root(publish: Path, release: Path) -> tuple[list[str], list[str]]:
    """The files at the publish root a consumer subscribes to, against the signed release
    LATEST names: ``calendar.ics`` must be that release's (covered by its manifest);
    ``CHANGELOG.jsonl`` is not signed, and each of its lines must agree with the manifests it
    names (release, previous release)."""
    problems, notes = [], []
    calendar = publish / "calendar.ics"
    if calendar.is_file():
        own = release / CALENDAR_ICS
        if not own.is_file() or own.read_bytes() != calendar.read_bytes():
            problems.append(
                f"{calendar}: not the calendar of {release.name} (its {CALENDAR_ICS} is covered "
                "by the manifest; this one is not)"
            )
    changelog = publish / "CHANGELOG.jsonl"
    if changelog.is_file():
        lines = changelog.read_text(errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                named = (entry["release_id"], entry.get("previous_release_id"))
            except (ValueError, KeyError, TypeError):
                problems.append(f"{changelog.name} line {number}: not a changelog entry")
                continue
            try:
                manifest = json.loads(
                    (publish / "releases" / str(named[0]) / MANIFEST).read_bytes()
                )
            except (OSError, ValueError):
                continue  # a release no longer kept here: nothing to compare with
            previous = manifest.get("previous_release")
            if isinstance(previous, dict) and previous.get("release_id") != named[1]:
                problems.append(
                    f"{changelog.name} line {number}: {named[0]} follows {named[1]}, but its "
                    f"signed manifest says {previous.get('release_id')}"
                )
        notes.append(
            f"{changelog.name} is not signed: its {len(lines)} line(s) were compared with the manifests"
        )
    return problems, notes


# How every Parquet file of a release and of a member bundle is written. A file's bytes are a
# function of its rows, these options and the library that writes them: each row group's rows
# are handed over as one chunk, so how a query happened to batch them does not show in the
# bytes. A row group is pyarrow's default size, named so the slices below match it.
PARQUET_OPTIONS = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}
ROW_GROUP_ROWS = 1024 * 1024


def write_table(root: Path, rel: str, table: pa.Table) -> dict:
    """One Parquet file of a release or a member bundle (a product's period, ``changes/``, a
    bundle's table); its manifest entry."""
    return write_batches(root, rel, table.schema, table.to_batches())


def write_batches(root: Path, rel: str, schema: pa.Schema, batches) -> dict:
    """One Parquet file from ``batches`` (record batches of ``schema``, in order: a table's,
    or a query's as DuckDB streams them); its manifest entry. Written one row group at a
    time, each made one chunk: the bytes of the whole table made one chunk, without all its
    rows in memory at once (the member bundle's incident rows at 4,000,000 reports:
    benchmarks/README.md, M30)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(path, schema, **PARQUET_OPTIONS) as writer:
        for group in _row_groups(schema, batches):
            writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
            rows += group.num_rows
    return {"path": rel, "rows": rows, "sha256": sha256_file(path)}


def _row_groups(schema: pa.Schema, batches):
    """``batches`` regrouped into tables of ``ROW_GROUP_ROWS`` rows (the last one shorter;
    one empty table for no rows), each one chunk."""
    held, count, made = [], 0, False
    for batch in batches:
        while batch.num_rows:
            take = min(batch.num_rows, ROW_GROUP_ROWS - count)
            held.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == ROW_GROUP_ROWS:
                yield pa.Table.from_batches(held, schema).combine_chunks()
                held, count, made = [], 0, True
    if held or not made:
        yield pa.Table.from_batches(held, schema).combine_chunks()


def write_product(root: Path, product: str, table: pa.Table) -> list[dict]:
    """One zstd Parquet file per period under ``product/period=YYYY-MM/``; returns file entries.
    Written whole each release: every row of a product names its release (``release_id``), so
    no period holds the rows of the previous release's (benchmarks/README.md, M26)."""
    entries = []
    periods = sorted(set(table.column("period").to_pylist())) if table.num_rows else []
    for period in periods:
        mask = pc.equal(table.column("period"), period)
        part = table.filter(mask).drop_columns(["period"])
        rel = (Path(product) / f"period={period}" / "part-0.parquet").as_posix()
        entries.append(write_table(root, rel, part))
    return entries


def write_file(root: Path, rel: str, data: bytes) -> dict:
    """A file of a release that is not a Parquet product; returns its manifest entry."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    # the bytes just written, hashed as they are in memory (not read back: M45)
    return {"path": rel, "rows": None, "sha256": hashlib.sha256(data).hexdigest()}


@dataclass
class PublishedRelease:
    release_id: str
    path: Path
    new: bool
    files: list[dict]


MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"  # the publisher's Ed25519 signature over the manifest bytes
COSIGN_DIR = "cosign"  # cosign/<PARTY>.sig: a party's signature over the same bytes


def signing_contexts(manifest_bytes: bytes) -> tuple[str | None, Callable[[str], str | None]]:
    """The contexts a release's signatures cover, from its manifest: (the publisher's, a
    function of a party code for a co-signature). A manifest without ``signature_scheme``
    (published before it) was signed over its bare bytes: ``LEGACY`` for both."""
    from cbm.signatures import LEGACY, SCHEME, cosign_context, manifest_context

    try:
        manifest = json.loads(manifest_bytes)
        scheme, release_id = manifest.get("signature_scheme"), str(manifest.get("release_id"))
    except (ValueError, AttributeError):
        scheme = release_id = None
    if scheme != SCHEME:
        return LEGACY, lambda party: LEGACY
    return manifest_context(release_id), lambda party: cosign_context(release_id, party)


def manifest_signer(key) -> Callable[[bytes], bytes]:
    """``publish_atomically``'s ``sign`` for a ``SigningKey``: the publisher's signature over a
    manifest, in the context its manifest calls for (``signing_contexts``)."""
    return lambda manifest: key.sign(manifest, signing_contexts(manifest)[0])


def publish_atomically(
    publish: Path, release_id: str, build, manifest_base: dict, sign=None
) -> PublishedRelease:
    """Build a release with ``build(tmp_root) -> file entries``; write the manifest last, its
    signature with it (``sign(manifest bytes) -> signature file bytes``, when given); rename
    the whole folder into place in one step."""
    releases = publish / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    for stale in releases.glob(".tmp-*"):  # left by a killed run; never visible as a release
        shutil.rmtree(stale, ignore_errors=True)
    final = releases / release_id
    if (final / MANIFEST).exists():
        manifest = json.loads((final / MANIFEST).read_text())
        if sign is not None and not (final / SIGNATURE).exists():  # published unsigned before
            write_atomic(final / SIGNATURE, sign((final / MANIFEST).read_bytes()))
        return PublishedRelease(release_id, final, False, manifest["files"])
    tmp = releases / f".tmp-{release_id}-{os.getpid()}"
    tmp.mkdir()
    files = sorted(build(tmp), key=lambda e: e["path"])
    manifest = manifest_base | {
        "release_id": release_id,
        "schema_version": SCHEMA_VERSION,
        "files": files,
    }
    manifest_bytes = (jsontext.dumps(manifest) + "\n").encode()
    write_atomic(tmp / MANIFEST, manifest_bytes)
    if sign is not None:
        write_atomic(tmp / SIGNATURE, sign(manifest_bytes))
    sync_filesystem(tmp)  # files and folder on disk before it is visible (a power loss)
    os.rename(tmp, final)
    fsync_dir(releases)
    return PublishedRelease(release_id, final, True, files)


def set_latest(publish: Path, release_id: str) -> None:
    """Point LATEST at a release; ``<publish>/calendar.ics`` follows it, so a calendar
    application subscribed to that one address always sees the newest release's calendar."""
    ics = publish / "releases" / release_id / CALENDAR_ICS
    if ics.is_file():
        write_atomic(publish / "calendar.ics", ics.read_bytes())
    write_atomic(publish / "LATEST", release_id + "\n")


def release_folder(path: str | Path) -> Path:
    """A release folder as given, or the LATEST release of a publish folder."""
    path = Path(path)
    if (path / "LATEST").is_file() and not (path / MANIFEST).exists():
        return path / "releases" / (path / "LATEST").read_text().strip()
    return path


def latest(publish: Path) -> str | None:
    path = publish / "LATEST"
    return path.read_text().strip() if path.exists() else None


def in_changelog(publish: Path, release_id: str) -> bool:
    path = publish / "CHANGELOG.jsonl"
    if not path.exists():
        return False
    return any(
        json.loads(line).get("release_id") == release_id
        for line in path.read_text().splitlines()
        if line.strip()
    )


def append_changelog(publish: Path, entry: dict) -> None:
    path = publish / "CHANGELOG.jsonl"
    existing = path.read_text().splitlines() if path.exists() else []
    if any(
        json.loads(line).get("release_id") == entry["release_id"]
        for line in existing
        if line.strip()
    ):
        return
    write_atomic(
        path, "".join(line + "\n" for line in existing) + json.dumps(entry, sort_keys=True) + "\n"
    )


def verify_release(path: str | Path) -> tuple[bool, list[str]]:
    """Check every file of a release against its manifest: (ok, problems). Whatever the
    release holds (a truncated manifest, an entry without a hash, a file that is not Parquet),
    each problem is a line; nothing raises."""
    root = Path(path)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return False, [f"{root}: no manifest.json (not a release, or an incomplete one)"]
    try:
        manifest = json.loads(manifest_path.read_bytes())
        entries = manifest["files"]
        if not isinstance(entries, list):
            raise TypeError("'files' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        return False, [f"{manifest_path}: unreadable manifest ({exc.__class__.__name__}: {exc})"]
    problems: list[str] = []
    named = manifest.get("release_id")
    if root.parent.name == "releases" and named != root.name:  # a release copied under a new name
        problems.append(
            f"{root}: the folder is named {root.name} but its manifest is release {named}"
        )
    listed: dict[str, dict] = {}
    for number, entry in enumerate(entries, 1):
        rel = entry.get("path") if isinstance(entry, dict) else None
        if (
            not isinstance(rel, str)
            or not rel
            or ".." in Path(rel).parts
            or Path(rel).is_absolute()
        ):
            problems.append(f"manifest entry {number}: no usable path")
            continue
        listed[rel] = entry
    for rel, entry in sorted(listed.items()):
        problems += _check_file(root, rel, entry)
    actual = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    signatures = {MANIFEST, SIGNATURE} | {
        rel for rel in actual if rel.startswith(f"{COSIGN_DIR}/") and rel.endswith(".sig")
    }
    problems += [
        f"extra file not in manifest: {rel}" for rel in sorted(actual - set(listed) - signatures)
    ]
    return not problems, problems


def _named_publisher_key(manifest: bytes) -> str | None:
    try:
        named = json.loads(manifest).get("publisher_key")
    except (ValueError, AttributeError):
        return None
    return named.get("sha256") if isinstance(named, dict) else None


def check_signatures(
    path: str | Path, parties: dict, require_cosigners: int = 0
) -> tuple[list[str], list[str]]:
    """Authenticity and co-signatures of a release, offline, with the registry's public keys:
    (problems, notes). The publisher is the party of class ``secretariat``; its signature over
    the manifest bytes must verify. A co-signature counts when it verifies with the key of a
    registered party other than the publisher; ``require_cosigners`` of them are needed."""
    from cbm.registry import publisher as publisher_of
    from cbm.signatures import key_fingerprint, verify_signature

    root = Path(path)
    manifest = (root / MANIFEST).read_bytes()
    publisher_context, cosign_context = signing_contexts(manifest)
    problems, notes = [], []
    publisher = publisher_of(parties)
    if publisher is None or not publisher.public_key:
        return [
            "parties.yaml names no single secretariat with a public_key: authenticity cannot "
            "be checked"
        ], notes
    named = _named_publisher_key(manifest)
    if named and named != key_fingerprint(publisher.public_key):
        problems.append(
            f"the manifest names the publisher's key {named[:16]}…, but parties.yaml's "
            f"{publisher.code} key is {key_fingerprint(publisher.public_key)[:16]}…: another "
            "registry, or the release of another publisher"
        )
    signature = root / SIGNATURE
    if not signature.is_file():
        problems.append(f"{SIGNATURE} is missing: the release is not signed by its publisher")
    elif not verify_signature(
        publisher.public_key, manifest, signature.read_bytes(), publisher_context
    ):
        problems.append(
            f"{SIGNATURE} does not verify with the publisher's key ({publisher.code}): the "
            "manifest was changed after signing, or another key signed it"
        )
    else:
        notes.append(f"signed by the publisher, {publisher.code}")
    valid = []
    for sig in sorted((root / COSIGN_DIR).glob("*.sig")) if (root / COSIGN_DIR).is_dir() else []:
        code = sig.name[: -len(".sig")]
        party = parties.get(code)
        if party is None or code == publisher.code or not party.public_key:
            why = (
                "the publisher's own"
                if code == publisher.code
                else "not a registered party with a public_key"
            )
            problems.append(f"{COSIGN_DIR}/{sig.name}: {why}; it does not count")
        elif not verify_signature(
            party.public_key, manifest, sig.read_bytes(), cosign_context(code)
        ):
            problems.append(f"{COSIGN_DIR}/{sig.name} does not verify with {code}'s key")
        else:
            valid.append(code)
    if valid:
        notes.append(f"co-signed by {', '.join(valid)}")
    if len(valid) < require_cosigners:
        problems.append(
            f"{len(valid)} valid co-signature(s), {require_cosigners} required"
            + (f" (by {', '.join(valid)})" if valid else "")
        )
    return problems, notes


def _check_file(root: Path, rel: str, entry: dict) -> list[str]:
    file = root / rel
    if not file.is_file():
        return [f"missing: {rel}"]
    expected = entry.get("sha256")
    if not isinstance(expected, str):
        return [f"manifest entry for {rel} has no sha256"]
    digest = sha256_file(file)
    if digest != expected:
        return [f"checksum mismatch: {rel} (manifest {expected[:12]}, file {digest[:12]})"]
    if rel.endswith(".parquet"):
        try:
            rows = pq.ParquetFile(file).metadata.num_rows
        except Exception as exc:  # noqa: BLE001 - any damage is a finding, not a crash
            return [f"not a readable Parquet file: {rel} ({exc.__class__.__name__})"]
        if rows != entry.get("rows"):
            return [f"row count mismatch: {rel} (manifest {entry.get('rows')}, file {rows})"]
    return []


def pull_published(target: Location, mirror: Path) -> bytes | None:
    """Before a release is built for a publish location on object storage: bring into its
    local mirror what the new release builds on (``LATEST``, ``CHANGELOG.jsonl`` and the
    release LATEST names, when the mirror lacks it). Returns ``LATEST`` as read, the
    condition under which ``push_release`` may move it."""
    mirror.mkdir(parents=True, exist_ok=True)
    latest = target.read_bytes("LATEST") if target.exists("LATEST") else None
    if target.exists("CHANGELOG.jsonl"):
        target.get("CHANGELOG.jsonl", mirror / "CHANGELOG.jsonl")
    if latest is None:
        (mirror / "LATEST").unlink(missing_ok=True)
        return None
    release_id = latest.decode().strip()
    folder = mirror / "releases" / release_id
    if not (folder / MANIFEST).exists():
        tmp = mirror / "releases" / f".tmp-pull-{release_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        prefix = f"releases/{release_id}/"
        for entry in target.entries(prefix):
            target.get(entry.rel, tmp / entry.rel[len(prefix) :])
        if not (tmp / MANIFEST).exists():
            raise OSError(f"{target.where(prefix)}: LATEST names it, but it has no {MANIFEST}")
        shutil.rmtree(folder, ignore_errors=True)
        sync_filesystem(tmp)
        os.rename(tmp, folder)
    write_atomic(mirror / "LATEST", latest)
    return latest


def push_release(mirror: Path, target: Location, release_id: str, latest: bytes | None) -> int:
    """Copy a release from the local mirror to a publish location on object storage, in the
    order that keeps every reader safe: the data files first, then ``manifest.json`` and its
    signature (a release folder without a manifest is not a release), then the changelog, then
    ``LATEST``, written only if it still holds what ``pull_published`` read (another
    publisher's release is never overwritten: ``storage.Conflict``), and ``calendar.ics``,
    which follows LATEST. Returns the number of files copied."""
    root = mirror / "releases" / release_id
    prefix = f"releases/{release_id}"
    last = [MANIFEST, SIGNATURE]
    copied = 0
    if not target.exists(f"{prefix}/{MANIFEST}"):
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        for rel in [f for f in files if f not in last] + [f for f in last if f in files]:
            target.put(root / rel, f"{prefix}/{rel}")
            copied += 1
    elif (root / SIGNATURE).exists() and not target.exists(f"{prefix}/{SIGNATURE}"):
        target.put(root / SIGNATURE, f"{prefix}/{SIGNATURE}")  # published unsigned before
        copied += 1
    current = target.read_bytes("LATEST") if target.exists("LATEST") else None
    if current != latest:  # checked again, conditionally, when LATEST is written
        raise Conflict(f"{target.where('LATEST')} moved from {latest!r} to {current!r} meanwhile")
    if (mirror / "CHANGELOG.jsonl").exists():
        target.put(mirror / "CHANGELOG.jsonl", "CHANGELOG.jsonl")
    target.replace_if("LATEST", (release_id + "\n").encode(), latest)
    if (root / CALENDAR_ICS).is_file():
        target.put(root / CALENDAR_ICS, "calendar.ics")
    return copied
