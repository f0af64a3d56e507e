"""The inbox and the landing area: what was handed in, kept byte for byte.

``scan_inbox`` copies new files into ``<workdir>/landing/<sha[:2]>/<sha>`` with a ``.json``
sidecar saying where the file came from; ``file_level_rejection`` says why a landed file
cannot be accepted at all (unregistered party, unknown kind or format, empty, bad signature,
not a regular file).
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cbm.contract import format_of, kind_of
from cbm.files import copy_atomic, sha256_file, write_atomic
from cbm.registry import Registry
from cbm.signatures import verify_signature


@dataclass(frozen=True)
class LandedFile:
    """One file of the inbox, as landed: its submission (``sha256``) and where it lay."""

    sha256: str
    party_dir: str
    file_name: str
    new: bool  # landed by this scan
    intake_key: str  # the submission and its signature: what an ingestion looked at
    partition_key: str  # its Dagster partition: readable, see ``partition_key``


@dataclass(frozen=True)
class IntakePlan:
    """What to do with the inbox: every file seen (in inbox order) and the submissions to
    ingest now, in the order they were first seen."""

    files: list[LandedFile]
    to_ingest: list[str]

    @property
    def submissions(self) -> list[str]:
        """Every distinct submission in the inbox, in the order first seen."""
        return list(dict.fromkeys(f.sha256 for f in self.files))

    def intake_key(self, sha: str) -> str:
        return next(f.intake_key for f in self.files if f.sha256 == sha)

    def partition_key(self, sha: str) -> str:
        return next(f.partition_key for f in self.files if f.sha256 == sha)

    @property
    def partition_keys(self) -> list[str]:
        """The partition key of every distinct submission, in the order first seen."""
        return [self.partition_key(sha) for sha in self.submissions]

    def batches(self, ordered: list[str]) -> list["Batch"]:
        """The submissions to ingest as runs: one run per stretch of consecutive partitions
        (``ordered``: every submission partition, in the partitions' order), so 72 files
        dropped at once are one run, not 72. A batch's run key is its submissions with their
        signatures: the same batch is never run twice, and a signature that arrives later
        makes a new one."""
        intake = {self.partition_key(sha): self.intake_key(sha) for sha in self.to_ingest}
        position = {key: i for i, key in enumerate(ordered)}
        out = []
        for start, end, _ in contiguous_ranges(ordered, set(intake)):
            keys = ordered[position[start] : position[end] + 1]
            if len(keys) == 1:
                run_key = intake[start]
            else:
                digest = hashlib.sha256("\n".join(sorted(intake[k] for k in keys)).encode())
                run_key = "batch:" + digest.hexdigest()[:32]
            out.append(Batch(start, end, keys, run_key))
        return out


@dataclass(frozen=True)
class Batch:
    """Consecutive submission partitions ingested in one run."""

    start: str
    end: str
    keys: list[str]
    run_key: str


def contiguous_ranges(ordered: list[str], wanted: set[str]) -> list[tuple[str, str, int]]:
    """The stretches of ``ordered`` whose keys are all ``wanted``: (first, last, how many)."""
    ranges, start, count, prev = [], None, 0, None
    for key in ordered:
        if key in wanted:
            if start is None:
                start, count = key, 0
            prev, count = key, count + 1
        elif start is not None:
            ranges.append((start, prev, count))
            start = None
    if start is not None:
        ranges.append((start, prev, count))
    return ranges


KEY_DIGITS = 16  # of the submission's SHA-256 in its partition key
_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")


def partition_key(party: str, file_name: str, sha: str) -> str:
    """A submission's Dagster partition key, recognisable without a lookup:
    ``PARTY/file_name@<first 16 hex digits of the submission>`` (the party and the name it
    was first handed in under; characters Dagster or a URL would trip on become ``_``)."""
    name = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", file_name))[-80:].strip("/") or "_"
    return f"{_UNSAFE.sub('_', party) or '_'}/{name}@{sha[:KEY_DIGITS]}"


def submission_of(landing_dir: Path, key: str) -> str:
    """The submission (its full SHA-256) a partition key names. A bare SHA-256 (the keys
    of workdirs made before readable keys) names itself."""
    if re.fullmatch(r"[0-9a-f]{64}", key):
        return key
    prefix = key.rpartition("@")[2]
    if not re.fullmatch(rf"[0-9a-f]{{{KEY_DIGITS}}}", prefix):
        raise ValueError(f"{key!r} is not a submission partition key (PARTY/name@digest)")
    found = [p.stem for p in (landing_dir / prefix[:2]).glob(f"{prefix}*.json")]
    if len(found) != 1:
        raise ValueError(f"partition {key!r}: {len(found)} landed submissions start with {prefix}")
    return found[0]


def submissions_of(landing_dir: Path, keys) -> list[str]:
    return [submission_of(landing_dir, k) for k in keys]


def landing_paths(landing_dir: Path, sha: str) -> tuple[Path, Path, Path]:
    """The landed bytes, their sidecar (``.json``) and their detached signature (``.sig``)."""
    base = landing_dir / sha[:2] / sha
    return base, base.with_suffix(".json"), base.with_suffix(".sig")


def staged_path(staged_dir: Path, sha: str) -> Path:
    """Where a submission's parsed rows are kept (the sensitive tier, like landing)."""
    return staged_dir / f"{sha}.parquet"


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


def inbox_fingerprint(inbox: Path) -> str:
    """Changes whenever a file or a signature is added, replaced or removed (names, sizes,
    modification times): the cheap test of whether the inbox needs another plan."""
    h = hashlib.sha256()
    for path, _, _ in inbox_files(inbox):
        for entry in (path, path.with_name(path.name + ".sig")):
            st = entry.lstat() if entry.is_symlink() or entry.exists() else None
            stamp = f"{st.st_size}\x1f{st.st_mtime_ns}" if st else "-"
            h.update(f"{entry}\x1f{stamp}\n".encode())
    return h.hexdigest()


def current_intake_key(landing_dir: Path, sha: str) -> str:
    """The submission, its landed signature and the paths it was handed in under: a
    signature that arrives or changes later, or a repeat under a new name, makes a new key,
    so the file is looked at again (a repeat, to be listed)."""
    _, meta, sig = landing_paths(landing_dir, sha)
    signed = sha256_file(sig) if sig.exists() else "unsigned"
    paths = json.loads(meta.read_text()).get("paths", [])
    return hashlib.sha256(f"{sha}\x1f{signed}\x1f{json.dumps(paths)}".encode()).hexdigest()


def submission_key(party: str, file_sha256: str) -> str:
    """A submission is a party plus the SHA-256 of its bytes (contract §1): the same bytes
    from two parties are two submissions; from one party, under two names, one."""
    return hashlib.sha256(f"{party}\x00{file_sha256}".encode()).hexdigest()


def scan_inbox(inbox: Path, landing_dir: Path, log=None, progress=None) -> list[LandedFile]:
    """Copy every inbox file not yet landed into the landing area; return all files seen.

    A symlink or other non-regular file (FIFO, device) is landed as a marker with its name,
    never followed or read, and is rejected at the landing stage. A ``.sig`` that arrives
    after its file, or replaces the landed one, is kept beside the landed bytes (which never
    change). Every path a submission was handed in under is kept in its sidecar (``paths``,
    in the order seen): a repeat is listed, never counted twice.
    """
    landed: list[LandedFile] = []
    files = inbox_files(inbox)
    for number, (path, party, name) in enumerate(files, 1):
        if progress:
            progress(number, len(files))
        if path.is_symlink() or not path.is_file():
            what = (
                f"symlink:{os.readlink(path)}"
                if path.is_symlink()
                else f"special:{path.lstat().st_mode}"
            )
            content = hashlib.sha256(
                b"cbm-not-a-file\x00" + f"{party}/{name}\x00{what}".encode()
            ).hexdigest()
            source = None
        else:
            content, source = sha256_file(path), path
        sha = submission_key(party, content)
        blob, meta, sig = landing_paths(landing_dir, sha)
        sig_path = path.with_name(path.name + ".sig")
        has_sig_file = source is not None and sig_path.is_file() and not sig_path.is_symlink()
        new = not meta.exists()
        if new:
            blob.parent.mkdir(parents=True, exist_ok=True)
            if source is None:
                write_atomic(blob, b"")
            else:
                copy_atomic(source, blob)
                if sha256_file(blob) != content:
                    raise OSError(f"landing copy of {path} does not match its hash; disk problem?")
            if has_sig_file:
                copy_atomic(sig_path, sig)
            info = {
                "sha256": sha,
                "file_sha256": content,
                "party_dir": party,
                "file_name": name,
                "paths": [name],
                "size_bytes": 0 if source is None else blob.stat().st_size,
                "symlink": source is None,
                "has_signature": sig.exists(),
                "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_atomic(meta, json.dumps(info, sort_keys=True).encode())
            if log:
                log(f"landed {party}/{name} as {sha[:12]}")
        else:
            info = json.loads(meta.read_text())
            changed = {}
            if name not in info.get("paths", [info["file_name"]]):
                changed["paths"] = [*info.get("paths", [info["file_name"]]), name]
                if log:
                    log(f"{party}/{name}: the same bytes as {party}/{info['file_name']} (a repeat)")
            if has_sig_file and (not sig.exists() or sha256_file(sig) != sha256_file(sig_path)):
                copy_atomic(sig_path, sig)
                changed["has_signature"] = True
                if log:
                    log(f"signature for {party}/{name} ({sha[:12]}) arrived: another look")
            if changed:
                write_atomic(meta, json.dumps(info | changed, sort_keys=True).encode())
        landed.append(
            LandedFile(
                sha,
                party,
                name,
                new,
                current_intake_key(landing_dir, sha),
                partition_key(info["party_dir"], info["file_name"], sha),
            )
        )
    return landed


def plan_intake(inbox: Path, landing_dir: Path, log=None, progress=None) -> IntakePlan:
    """The one ingestion plan, for the inbox sensor and ``cbm run`` alike: land what is new
    (files and late signatures), then ingest every submission whose intake key has not been
    ingested yet (new files, files whose signature arrived or changed, and files whose
    ingestion never finished)."""
    files = scan_inbox(inbox, landing_dir, log, progress)
    to_ingest = [
        sha
        for sha, key in {f.sha256: f.intake_key for f in files}.items()
        if read_landing_meta(landing_dir, sha).get("ingested_key") != key
    ]
    return IntakePlan(files, to_ingest)


def mark_ingested(landing_dir: Path, sha: str, intake_key: str) -> None:
    """Record in the submission's sidecar that its ingestion with this key finished, so no
    plan asks for it again until its signature changes."""
    meta = landing_paths(landing_dir, sha)[1]
    info = json.loads(meta.read_text()) | {"ingested_key": intake_key}
    write_atomic(meta, json.dumps(info, sort_keys=True).encode())


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
