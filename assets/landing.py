"""Landing: every file handed in is kept byte for byte, content-addressed, before anything else.

``scan_inbox`` (used by the inbox sensor and by ``cbm run``) copies new files into
``<workdir>/landing/<sha[:2]>/<sha>`` with a ``.json`` sidecar saying where the file came
from. The ``landed_submissions`` asset then registers each submission in the warehouse and
rejects, whole and with a specific reason, what cannot be accepted at the file level.
"""

import base64
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cbm.contract import format_of, kind_of
from cbm.protection import load_key
from cbm.registry import Registry
from cbm.release import sha256_file
from pipelines.partitions import submissions_partitions
from pipelines.settings import CbmSettings
from warehouse.db import Warehouse, markdown_preview, table_schema

OWNER = "team:ingestion"


@dataclass(frozen=True)
class LandedFile:
    sha256: str
    party_dir: str
    file_name: str
    new: bool
    signature_added: bool = False  # a .sig arrived after its file was landed


def landing_paths(landing_dir: Path, sha: str) -> tuple[Path, Path, Path]:
    base = landing_dir / sha[:2] / sha
    return base, base.with_suffix(".json"), base.with_suffix(".sig")


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    with src.open("rb") as fin, tmp.open("wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)


def _write_atomic(dst: Path, data: bytes) -> None:
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, dst)


def inbox_files(inbox: Path) -> list[tuple[Path, str, str]]:
    """(path, party directory, file name) of every submission file, in a stable order.

    Detached signatures (``*.sig``) travel with their file. Nothing else is skipped: hidden
    files and files outside a party directory become submissions that are rejected with a
    reason, so nothing handed in disappears silently. Symlinked directories are not entered.
    """
    found = []
    for entry in sorted(inbox.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            for path in sorted(entry.rglob("*")):
                if path.name.endswith(".sig") or (path.is_dir() and not path.is_symlink()):
                    continue
                found.append((path, entry.name, str(path.relative_to(entry))))
        elif not entry.name.endswith(".sig"):
            found.append((entry, "", entry.name))
    return found


def scan_inbox(inbox: Path, landing_dir: Path, log=None) -> list[LandedFile]:
    """Copy every inbox file not yet landed into the landing area; return all files seen.

    A symlink or other non-regular file (FIFO, device) is landed as a marker with its name,
    never followed or read, and is rejected at the landing stage.
    """
    landed: list[LandedFile] = []
    for path, party, name in inbox_files(inbox):
        if path.is_symlink() or not path.is_file():
            what = (
                f"symlink:{os.readlink(path)}"
                if path.is_symlink()
                else f"special:{path.lstat().st_mode}"
            )
            sha = hashlib.sha256(
                b"cbm-not-a-file\x00" + f"{party}/{name}\x00{what}".encode()
            ).hexdigest()
            source = None
        else:
            sha, source = sha256_file(path), path
        blob, meta, sig = landing_paths(landing_dir, sha)
        sig_path = path.with_name(path.name + ".sig")
        has_sig_file = source is not None and sig_path.is_file() and not sig_path.is_symlink()
        new = not meta.exists()
        signature_added = False
        if new:
            blob.parent.mkdir(parents=True, exist_ok=True)
            if source is None:
                _write_atomic(blob, b"")
            else:
                _copy_atomic(source, blob)
                if sha256_file(blob) != sha:
                    raise OSError(f"landing copy of {path} does not match its hash; disk problem?")
            if has_sig_file:
                _copy_atomic(sig_path, sig)
            info = {
                "sha256": sha,
                "party_dir": party,
                "file_name": name,
                "size_bytes": 0 if source is None else blob.stat().st_size,
                "symlink": source is None,
                "has_signature": sig.exists(),
                "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            _write_atomic(meta, json.dumps(info, sort_keys=True).encode())
            if log:
                log(f"landed {party}/{name} as {sha[:12]}")
        elif has_sig_file and not sig.exists():
            # the signature arrived after its file: keep it, and give the file another look
            _copy_atomic(sig_path, sig)
            info = json.loads(meta.read_text()) | {"has_signature": True}
            _write_atomic(meta, json.dumps(info, sort_keys=True).encode())
            signature_added = True
        landed.append(LandedFile(sha, party, name, new, signature_added))
    return landed


def read_landing_meta(landing_dir: Path, sha: str) -> dict:
    return json.loads(landing_paths(landing_dir, sha)[1].read_text())


def file_level_rejection(
    meta: dict, registry: Registry, landing_dir: Path
) -> tuple[str, str] | None:
    """(rule, reason) when a submission must be rejected whole, else None."""
    party, name = meta["party_dir"], meta["file_name"]
    where = f"{party}/{name}"
    if meta.get("symlink"):
        return (
            "not_a_regular_file",
            f"{where}: is a symbolic link or special file; only regular files are accepted",
        )
    if not party:
        return (
            "outside_party_directory",
            f"{name}: lies in the inbox root; submissions go in <inbox>/<party_code>/",
        )
    if party not in registry.parties:
        return (
            "unregistered_party",
            f"{where}: party code '{party}' is not registered in parties.yaml",
        )
    if kind_of(Path(name).name) is None:
        return "unknown_kind", (
            f"{where}: file name must start with incidents_, compliance_ or attestations_"
        )
    if format_of(name) is None:
        return "unknown_format", f"{where}: extension must be .csv, .jsonl or .parquet"
    if meta["size_bytes"] == 0:
        return "empty_file", f"{where}: file is empty"
    public_key = registry.parties[party].public_key
    if public_key:
        blob, _, sig = landing_paths(landing_dir, meta["sha256"])
        if not sig.exists():
            return (
                "signature_missing",
                f"{where}: party {party} signs its submissions; no {name}.sig",
            )
        if not verify_signature(public_key, blob.read_bytes(), sig.read_bytes()):
            return "signature_invalid", f"{where}: {name}.sig does not verify with {party}'s key"
    return None


def verify_signature(public_key_b64: str, data: bytes, sig_bytes: bytes) -> bool:
    """Ed25519 over the file bytes; the .sig holds the signature in base64 (or raw 64 bytes)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        sig = (
            sig_bytes
            if len(sig_bytes) == 64
            else base64.b64decode(sig_bytes.strip(), validate=True)
        )
        key.verify(sig, data)
        return True
    except (InvalidSignature, ValueError):
        return False


@dg.asset(
    partitions_def=submissions_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="landing",
    kinds={"duckdb", "file"},
    owners=[OWNER],
    pool="warehouse",
    description=(
        "One row per submission (file hash) in the warehouse `submissions` table. The bytes "
        "are kept in <workdir>/landing; files that fail a file-level rule (unregistered party, "
        "unknown kind or format, empty, bad signature, symlink) are rejected whole and recorded "
        "in `quarantine` with the reason."
    ),
)
def landed_submissions(
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: Warehouse
) -> dg.MaterializeResult:
    registry = settings.load_registry()
    key = load_key()
    rejected = 0
    shas = context.partition_keys
    with warehouse.connect() as con:
        _register_parties(con, registry, key)
        for sha in shas:
            meta = read_landing_meta(settings.landing_dir, sha)
            rejection = file_level_rejection(meta, registry, settings.landing_dir)
            name = Path(meta["file_name"]).name
            con.execute("DELETE FROM submissions WHERE sha256 = ?", [sha])
            con.execute("DELETE FROM quarantine WHERE submission_sha = ?", [sha])
            party_known = meta["party_dir"] in registry.parties
            con.execute(
                "INSERT INTO submissions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0,0,0,'[]')",
                [
                    sha,
                    meta["party_dir"],
                    key.pseudonym(meta["party_dir"]) if party_known else None,
                    key.version,
                    kind_of(name),
                    format_of(name),
                    meta["file_name"],
                    meta["size_bytes"],
                    meta["received_at"],
                    str(landing_paths(settings.landing_dir, sha)[0]),
                    "valid"
                    if (
                        party_known
                        and registry.parties[meta["party_dir"]].public_key
                        and rejection is None
                    )
                    else "none",
                    "rejected" if rejection else "landed",
                ],
            )
            if rejection:
                rejected += 1
                rule, reason = rejection
                con.execute(
                    "INSERT INTO quarantine (submission_sha, stage, rule, reason, severity) VALUES (?, 'landing', ?, ?, 'critical')",
                    [sha, rule, reason],
                )
                context.log.warning(reason)
        preview = markdown_preview(
            con,
            "SELECT left(sha256, 12) AS sha, party_code, kind, file_name, status FROM submissions "
            "WHERE sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY party_code, file_name",
            [shas],
            limit=20,
        )
        schema = table_schema(con, "submissions")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(shas),
            "dagster/column_schema": schema,
            "rejected_whole": rejected,
            "preview": dg.MetadataValue.md(preview),
        }
    )


def _register_parties(con, registry: Registry, key) -> None:
    """Registry tables: parties (pseudonym, class, bloc, public label; real names never
    enter) and commitments, for the suites and the verification SQL."""
    con.execute("DELETE FROM registry_commitments")
    con.executemany(
        "INSERT INTO registry_commitments VALUES (?,?,?,?,?,?,?,?)",
        [
            (
                c.commitment_id,
                c.type,
                c.schedule,
                c.lead_time_days,
                c.response_sla_hours,
                c.grace_days,
                c.valid_from,
                c.valid_to,
            )
            for c in sorted(registry.commitments.values(), key=lambda c: c.commitment_id)
        ],
    )
    con.execute("DELETE FROM registry_obligations")
    con.executemany(
        "INSERT INTO registry_obligations VALUES (?, ?)",
        [
            (c.commitment_id, code)
            for c in sorted(registry.commitments.values(), key=lambda c: c.commitment_id)
            for code in c.obligated_parties(registry.parties)
        ],
    )
    con.execute("DELETE FROM party_directory")
    con.executemany(
        "INSERT INTO party_directory VALUES (?,?,?,?,?)",
        [
            (p.code, key.pseudonym(p.code), p.party_class, p.bloc, p.public_label)
            for p in sorted(registry.parties.values(), key=lambda p: p.code)
        ],
    )
