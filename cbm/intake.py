"""The inbox and the landing area: what was handed in, kept byte for byte.

``scan_inbox`` copies new files into ``<workdir>/landing/<sha[:2]>/<sha>`` with a ``.json``
sidecar saying where the file came from; ``file_level_rejection`` says why a landed file
cannot be accepted at all (unregistered party, unknown kind or format, empty, bad signature,
not a regular file).
"""

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cbm.contract import format_of, kind_of
from cbm.files import copy_atomic, sha256_file, write_atomic
from cbm.registry import Registry
from cbm.signatures import verify_signature


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
                write_atomic(blob, b"")
            else:
                copy_atomic(source, blob)
                if sha256_file(blob) != sha:
                    raise OSError(f"landing copy of {path} does not match its hash; disk problem?")
            if has_sig_file:
                copy_atomic(sig_path, sig)
            info = {
                "sha256": sha,
                "party_dir": party,
                "file_name": name,
                "size_bytes": 0 if source is None else blob.stat().st_size,
                "symlink": source is None,
                "has_signature": sig.exists(),
                "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_atomic(meta, json.dumps(info, sort_keys=True).encode())
            if log:
                log(f"landed {party}/{name} as {sha[:12]}")
        elif has_sig_file and not sig.exists():
            # the signature arrived after its file: keep it, and give the file another look
            copy_atomic(sig_path, sig)
            info = json.loads(meta.read_text()) | {"has_signature": True}
            write_atomic(meta, json.dumps(info, sort_keys=True).encode())
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
