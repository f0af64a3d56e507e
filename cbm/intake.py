"""The inbox and the landing area: what was handed in, kept byte for byte.

``scan_inbox`` copies new files into the landing area (``Landing``: ``<workdir>/landing`` or
object storage) as ``<sha[:2]>/<sha>`` with a ``.json`` sidecar saying where the file came
from; ``cbm.admission.file_level_rejection`` says why a landed file
cannot be accepted at all (unregistered party, unknown kind or format, empty, bad signature,
not a regular file).
"""

import functools
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cbm.files import sha256_file
from cbm.registry import Limits
from cbm.storage import Entry, Location, location


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
    # files that could not be read whole this time (path, why): not landed, looked at again
    deferred: list[tuple[str, str]] = field(default_factory=list)
    # of ``to_ingest``, those ingested before and looked at again (a repeat under a new name,
    # a signature that arrived or changed): their rows were counted by the run that read them
    again: list[str] = field(default_factory=list)

    @functools.cached_property
    def _first_file(self) -> dict[str, LandedFile]:
        """Each submission's first file in the inbox, by submission: one pass, not one per
        question (a plan of 10,000 files asked once per file took seconds)."""
        first: dict[str, LandedFile] = {}
        for f in self.files:
            first.setdefault(f.sha256, f)
        return first

    @property
    def submissions(self) -> list[str]:
        """Every distinct submission in the inbox, in the order first seen."""
        return list(self._first_file)

    def intake_key(self, sha: str) -> str:
        return self._first_file[sha].intake_key

    def partition_key(self, sha: str) -> str:
        return self._first_file[sha].partition_key

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


class Landing:
    """The landing area: every submission's bytes, sidecar (``.json``) and detached signature
    (``.sig``) under ``<sha[:2]>/<sha>`` of a location, a local folder or ``s3://`` (see
    ``cbm.storage``). On object storage, the bytes a run reads are copied into a local cache
    (``cache``) first; the sidecars are always read from the location itself, so every host
    sees the same state."""

    def __init__(self, where: str | Path, cache: Path | None = None):
        self.store = location(where)
        if self.store.remote and cache is None:
            raise ValueError(f"landing at {where}: a local cache folder is needed")
        self.cache = Path(cache) if self.store.remote else self.store.root

    @staticmethod
    def rel(sha: str, suffix: str = "") -> str:
        return f"{sha[:2]}/{sha}{suffix}"

    def has(self, sha: str) -> bool:
        return self.store.exists(self.rel(sha, ".json"))

    def meta(self, sha: str) -> dict:
        return json.loads(self.store.read_bytes(self.rel(sha, ".json")))

    def write_meta(self, sha: str, info: dict) -> None:
        self.store.write_bytes(self.rel(sha, ".json"), json.dumps(info, sort_keys=True).encode())

    def signature(self, sha: str) -> bytes | None:
        rel = self.rel(sha, ".sig")
        return self.store.read_bytes(rel) if self.store.exists(rel) else None

    def local(self, sha: str) -> Path:
        """The landed bytes as a local file (fetched into the cache from object storage)."""
        path = self.cache / self.rel(sha)
        if self.store.remote and not path.exists():
            self.store.get(self.rel(sha), path)
        return path

    def where(self, sha: str) -> str:
        return self.store.where(self.rel(sha))

    def recorded_where(self, sha: str) -> str:
        """Where the warehouse says a submission's bytes are: on object storage the object's
        URI; in a local folder the path relative to the landing area, so a copied or moved
        workdir never points into the folder it was copied from."""
        return self.where(sha) if self.store.remote else self.rel(sha)

    def find(self, prefix: str) -> list[str]:
        """The submissions whose SHA-256 starts with ``prefix``."""
        return [
            name[: -len(".json")]
            for name in self.store.names(prefix[:2])
            if name.startswith(prefix) and name.endswith(".json")
        ]

    def put_bytes(self, sha: str, inbox: Location, rel: str, content: str) -> int:
        """Copy an inbox file in; check the copy against the hash it was landed under. On
        object storage the checked copy is the cache's, then uploaded."""
        local = self.cache / self.rel(sha)
        inbox.get(rel, local)
        if sha256_file(local) != content:
            local.unlink(missing_ok=True)
            raise LandingMismatch(
                f"{rel} changed while it was read (still being written?): not landed this "
                "time, looked at again next run"
            )
        if self.store.remote:
            self.store.put(local, self.rel(sha))
        return local.stat().st_size

    def put_marker(self, sha: str) -> None:
        self.store.write_bytes(self.rel(sha), b"")

    def put_signature(self, sha: str, data: bytes) -> None:
        self.store.write_bytes(self.rel(sha, ".sig"), data)


def as_landing(landing: Landing | str | Path) -> Landing:
    return landing if isinstance(landing, Landing) else Landing(landing)


def as_location(where: Location | str | Path) -> Location:
    return where if isinstance(where, Location) else location(where)


def submission_of(landing: Landing | Path, key: str) -> str:
    """The submission (its full SHA-256) a partition key names. A bare SHA-256 (the keys
    of workdirs made before readable keys) names itself."""
    if re.fullmatch(r"[0-9a-f]{64}", key):
        return key
    prefix = key.rpartition("@")[2]
    if not re.fullmatch(rf"[0-9a-f]{{{KEY_DIGITS}}}", prefix):
        raise ValueError(f"{key!r} is not a submission partition key (PARTY/name@digest)")
    found = as_landing(landing).find(prefix)
    if len(found) != 1:
        raise ValueError(f"partition {key!r}: {len(found)} landed submissions start with {prefix}")
    return found[0]


def submissions_of(landing: Landing | Path, keys) -> list[str]:
    landing = as_landing(landing)
    return [submission_of(landing, k) for k in keys]


def staged_path(staged_dir: Path, sha: str) -> Path:
    """Where a submission's parsed rows are kept (the sensitive tier, like landing)."""
    return staged_dir / f"{sha}.parquet"


def inbox_fingerprint(inbox: Location | Path | str) -> str:
    """Changes whenever a file or a signature is added, replaced or removed (names, sizes,
    modification times and, in local folders, ``Entry.change``, as ``InboxHashes`` reads
    them): the cheap test of whether the inbox needs another plan."""
    h = hashlib.sha256()
    for entry in as_location(inbox).entries():
        h.update(
            f"{entry.rel}\x1f{entry.size}\x1f{entry.mtime_ns}\x1f{entry.kind}\x1f{entry.change}\n".encode(
                "utf-8",
                "surrogateescape",  # a name that is not UTF-8 is that file's problem
            )
        )
    return h.hexdigest()


def current_intake_key(landing: Landing | Path, sha: str) -> str:
    """The submission, its landed signature and the paths it was handed in under: a
    signature that arrives or changes later, or a repeat under a new name, makes a new key,
    so the file is looked at again (a repeat, to be listed); so does a file left waiting at
    staging (``note_staging_waits``), so its next run is a new one."""
    landing = as_landing(landing)
    sig = landing.signature(sha)
    signed = hashlib.sha256(sig).hexdigest() if sig is not None else "unsigned"
    meta = landing.meta(sha)
    key = f"{sha}\x1f{signed}\x1f{json.dumps(meta.get('paths', []))}"
    if waits := meta.get("staging_waits"):  # left waiting at staging: a new look each time
        key += f"\x1fwaited:{waits}"
    return hashlib.sha256(key.encode()).hexdigest()


def submission_key(party: str, file_sha256: str) -> str:
    """A submission is a party plus the SHA-256 of its bytes (contract §1): the same bytes
    from two parties are two submissions; from one party, under two names, one."""
    return hashlib.sha256(f"{party}\x00{file_sha256}".encode()).hexdigest()


def worker_count(value: str | int | None) -> int:
    """How many submissions to take side by side: ``CBM_WORKERS`` (or a setting), 1 when
    unset. ``ValueError``, naming the value, unless it is a whole number of at least 1."""
    text = str(value if value is not None else 1).strip()
    if not (text.isdigit() and int(text) >= 1):
        raise ValueError(f"CBM_WORKERS={value!r}: a whole number of workers, 1 or more")
    return int(text)


def _in_order(function, items: list, workers: int, progress=None) -> list:
    """``function`` over ``items`` on ``workers`` threads (I/O: hashing, copying, object
    storage); results in the items' order, ``progress(done, total)`` as they come."""
    with ThreadPoolExecutor(max(1, min(workers, len(items)))) as pool:
        mapped = pool.map(function, items) if workers > 1 else map(function, items)
        results = []
        for number, result in enumerate(mapped, 1):
            if progress:
                progress(number, len(items))
            results.append(result)
        return results


# An Ed25519 signature is 64 bytes, 88 in base64: a .sig larger than this is not one, and is
# not read (a sparse .sig of gigabytes cost a run its whole size in memory)
SIGNATURE_MAX_BYTES = 4096


class Unsettled(str):
    """Why a file could not be read whole this time (it is looked at again next run)."""


def _or_failure(function):
    """``function`` of one file, or ``Unsettled`` with the reason when reading it failed."""

    def attempt(item):
        try:
            return function(item)
        except LandingMismatch as exc:
            return Unsettled(str(exc))
        except OSError as exc:
            return Unsettled(
                f"{exc.strerror or exc}: not landed this time, looked at again next run "
                "(a file still being written, removed or unreadable)"
            )

    return attempt


class LandingMismatch(OSError):
    """The bytes copied to landing are not those that were hashed: the file changed between."""


def _within_party_budget(files, hashes: "InboxHashes", limits: Limits, deferred: list) -> list:
    """The files of this scan within each party's budget per run for files never seen before
    (never hashed): at most ``max_files_per_run`` files and ``max_bytes_per_run`` bytes (a
    party's first new file always goes: one file is held to the per-file limits; a file
    over ``max_decoded_bytes`` is never read, so its size costs nothing). The rest wait, one
    line per party in ``deferred``, for the next runs, in inbox order."""
    taken: dict[str, list[int]] = {}  # party -> [files, bytes] taken
    waiting: dict[str, list[int]] = {}  # party -> [files, bytes] left for later
    kept = []
    for item in files:
        entry, party, _ = item
        if entry.rel not in hashes.kept:
            size = (
                entry.size if entry.kind == "file" and entry.size <= limits.max_decoded_bytes else 0
            )
            files_, bytes_ = taken.setdefault(party, [0, 0])
            if party in waiting or (
                files_
                and (
                    files_ + 1 > limits.max_files_per_run
                    or bytes_ + size > limits.max_bytes_per_run
                )
            ):
                left = waiting.setdefault(party, [0, 0])
                left[0], left[1] = left[0] + 1, left[1] + size
                continue
            taken[party] = [files_ + 1, bytes_ + size]
        kept.append(item)
    for party, (n, size) in waiting.items():
        files_, bytes_ = taken[party]
        deferred.append(
            (
                f"{party or '(inbox root)'}/",
                f"{n:,} more new files ({size:,} bytes) wait: one party lands at most "
                f"{limits.max_files_per_run:,} files and {limits.max_bytes_per_run:,} bytes in a run "
                f"(policy.yaml limits.max_files_per_run, max_bytes_per_run; this run took "
                f"{files_:,} files, {bytes_:,} bytes): the next runs take them",
            )
        )
    return kept


def scan_inbox(
    inbox: Location | Path | str,
    landing: Landing | Path,
    log=None,
    progress=None,
    workers: int = 1,
    deferred: list[tuple[str, str]] | None = None,
    limits: Limits | None = None,
) -> list[LandedFile]:
    """Copy every inbox file not yet landed into the landing area; return all files seen.

    A symlink or other non-regular file (FIFO, device) is landed as a marker with its name,
    never followed or read, and is rejected at the landing stage. A ``.sig`` that arrives
    after its file, or replaces the landed one, is kept beside the landed bytes (which never
    change). Every path a submission was handed in under is kept in its sidecar (``paths``,
    in the order seen): a repeat is listed, never counted twice.

    With ``workers`` above 1, the files are hashed, and the new submissions' bytes copied,
    on that many threads (one copy per distinct submission); the sidecars are then written
    in inbox order, as with one.
    """
    inbox, landing = as_location(inbox), as_landing(landing)
    deferred = [] if deferred is None else deferred  # (path, why): files left for a later run
    landed: list[LandedFile] = []
    entries = inbox.entries()
    signatures = {e.rel: e.size for e in entries if e.rel.endswith(".sig") and e.kind == "file"}
    files = inbox_files(entries)
    hashes = InboxHashes.load(landing, inbox)
    max_bytes = limits.max_decoded_bytes if limits else None
    if limits is not None:
        files = _within_party_budget(files, hashes, limits, deferred)

    def oversize(entry: Entry) -> bool:
        """Over the size limit by its metadata: never read, hashed or copied (a sparse file
        costs its party nothing to hand in, and us its whole size)."""
        return entry.kind == "file" and max_bytes is not None and entry.size > max_bytes

    def content_of(item) -> str:
        entry, party, name = item
        if entry.kind == "file" and not oversize(entry):
            return hashes.sha256(entry)
        what = f"over:{entry.size}:{entry.mtime_ns}" if oversize(entry) else entry.kind
        marker = f"{party}/{name}\x00{what}".encode("utf-8", "surrogateescape")
        return hashlib.sha256(b"cbm-not-a-file\x00" + marker).hexdigest()

    contents = _in_order(_or_failure(content_of), files, workers, progress)
    hashes.save()
    # a file that cannot be read whole now (removed, unreadable, still being written) waits
    # for a later run; it stops no one else's
    failed = [(f, c) for f, c in zip(files, contents, strict=True) if isinstance(c, Unsettled)]
    for (_, party, name), reason in failed:
        deferred.append((f"{party}/{name}" if party else name, reason))
    files = [f for f, c in zip(files, contents, strict=True) if not isinstance(c, Unsettled)]
    contents = [c for c in contents if not isinstance(c, Unsettled)]
    shas = [submission_key(party, c) for (_, party, _), c in zip(files, contents, strict=True)]
    present = {sha: landing.has(sha) for sha in dict.fromkeys(shas)}  # one look each
    # the new submissions' bytes, one copy each, side by side
    copies: dict[str, tuple[str, str]] = {}
    for (entry, _, _), content, sha in zip(files, contents, shas, strict=True):
        if entry.kind == "file" and not oversize(entry) and sha not in copies and not present[sha]:
            copies[sha] = (entry.rel, content)
    sizes = dict(
        zip(
            copies,
            _in_order(
                _or_failure(lambda kv: landing.put_bytes(kv[0], inbox, *kv[1])),
                list(copies.items()),
                workers,
            ),
            strict=True,
        )
    )
    unsettled = {sha: why for sha, why in sizes.items() if isinstance(why, Unsettled)}
    told: set[str] = set()
    for (entry, party, name), content, sha in zip(files, contents, shas, strict=True):
        if sha in unsettled:
            if sha not in told:  # once, for the first path of those bytes
                deferred.append((f"{party}/{name}" if party else name, unsettled[sha]))
                told.add(sha)
            continue
        regular = entry.kind == "file" and not oversize(entry)
        sig_rel = entry.rel + ".sig"
        sig_bytes = None
        if regular and sig_rel in signatures:  # read only when it can be a signature at all
            too_big = signatures[sig_rel] > SIGNATURE_MAX_BYTES
            sig_bytes = b"" if too_big else inbox.read_bytes(sig_rel)[: SIGNATURE_MAX_BYTES + 1]
        new = not present[sha]
        if new:
            present[sha] = True
            if regular:
                size = sizes[sha]
            else:
                landing.put_marker(sha)
                size = entry.size if oversize(entry) else 0
            if sig_bytes is not None:
                landing.put_signature(sha, sig_bytes)
            info = {
                "sha256": sha,
                "file_sha256": content,
                "party_dir": party,
                "file_name": name,
                "paths": [name],
                "size_bytes": size,
                "symlink": entry.kind != "file",
                "has_signature": sig_bytes is not None,
                "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            if not name_is_utf8(entry.rel):
                info["name_not_utf8"] = True
            if oversize(entry):
                info["over_limit"] = {"bytes": entry.size, "max_bytes": max_bytes}
            landing.write_meta(sha, info)
            if log:
                log(f"landed {party}/{name} as {sha[:12]}")
        else:
            info = landing.meta(sha)
            changed = {}
            if name not in info.get("paths", [info["file_name"]]):
                changed["paths"] = [*info.get("paths", [info["file_name"]]), name]
                if log:
                    log(f"{party}/{name}: the same bytes as {party}/{info['file_name']} (a repeat)")
            if sig_bytes is not None and landing.signature(sha) != sig_bytes:
                landing.put_signature(sha, sig_bytes)
                changed["has_signature"] = True
                if log:
                    log(f"signature for {party}/{name} ({sha[:12]}) arrived: another look")
            if changed:
                landing.write_meta(sha, info | changed)
        landed.append(
            LandedFile(
                sha,
                party,
                name,
                new,
                current_intake_key(landing, sha),
                partition_key(info["party_dir"], info["file_name"], sha),
            )
        )
    return landed


class InboxHashes:
    """The SHA-256 of each inbox file as last taken, kept in the landing area (``HASHES``,
    JSON lines: the inbox, then one file a line; not ``.json``, which names a submission's
    sidecar), so that a scan reads only the files that changed: a plan of a large inbox
    (every ``cbm run``, every sensor tick that sees a change) no longer reads every byte,
    and on object storage no longer downloads every object.

    A kept hash is used only for the same path with the same size, modification time and
    ``Entry.change`` (local folders: inode and change time), and only when the file had
    not been modified for ``SETTLE_NS`` before it was hashed: a file still being written
    (or, on object storage, whose clock is not ours) is hashed again on the next scan.
    Whatever is wrong with the kept file (missing, unreadable, another inbox's) only means
    hashing again."""

    HASHES = "inbox-hashes.jsonl"
    SETTLE_NS = 60 * 10**9

    def __init__(self, landing: "Landing", inbox: Location, kept: dict[str, list]):
        self.landing, self.inbox, self.kept = landing, inbox, kept
        self.taken: dict[str, list] = {}

    @classmethod
    def load(cls, landing: "Landing", inbox: Location) -> "InboxHashes":
        kept: dict[str, list] = {}
        try:
            head, *lines = landing.store.read_bytes(cls.HASHES).decode().splitlines()
            if json.loads(head) == {"inbox": inbox.uri}:
                for line in lines:
                    rel, *record = json.loads(line)
                    if len(record) == 5:  # size, mtime, change, sha256, hashed at
                        kept[rel] = record
        except (OSError, ValueError, TypeError):
            kept = {}
        return cls(landing, inbox, kept)

    def sha256(self, entry: Entry) -> str:
        record = self.kept.get(entry.rel)
        if (
            record is not None
            and record[:3] == [entry.size, entry.mtime_ns, entry.change]
            and entry.mtime_ns < record[4] - self.SETTLE_NS
        ):
            self.taken[entry.rel] = record
            return record[3]
        hashed_at = time.time_ns()
        sha = self.inbox.sha256(entry.rel)
        self.taken[entry.rel] = [entry.size, entry.mtime_ns, entry.change, sha, hashed_at]
        return sha

    def save(self) -> None:
        """Keep the hashes of this scan's files (those of files gone from the inbox go), if
        any differs from what was kept."""
        if self.taken == self.kept:
            return
        lines = [json.dumps({"inbox": self.inbox.uri})]
        lines += [json.dumps([rel, *record]) for rel, record in sorted(self.taken.items())]
        self.landing.store.write_bytes(self.HASHES, ("\n".join(lines) + "\n").encode())


def inbox_files(entries: list[Entry]) -> list[tuple[Entry, str, str]]:
    """(entry, party directory, file name) of every submission file of an inbox listing, in
    its order.

    Detached signatures (``*.sig``) travel with their file. Nothing else is skipped: hidden
    files, files outside a party directory and a ``.sig`` without its file (an orphan
    signature, or a data file named ``.sig``) become submissions that are rejected with a
    reason, so nothing handed in disappears silently. Symlinked directories are not entered.
    """
    found = []
    present = {e.rel for e in entries}
    for entry in entries:
        if entry.rel.endswith(".sig") and entry.rel.removesuffix(".sig") in present:
            continue  # travels with its file
        party, _, name = shown_name(entry.rel).partition("/")
        found.append((entry, party, name) if name else (entry, "", party))
    return found


def shown_name(rel: str) -> str:
    """A path as the pipeline records and prints it: UTF-8 as it is; bytes that are not UTF-8
    (which Python hands over as lone surrogates, and which no database, JSON document or
    partition key takes) as ``\\xNN`` escapes. The file itself is read by its real path."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def name_is_utf8(rel: str) -> bool:
    return shown_name(rel) == rel


def plan_intake(
    inbox: Location | Path | str,
    landing: Landing | Path,
    log=None,
    progress=None,
    workers: int = 1,
    limits: Limits | None = None,
) -> IntakePlan:
    """The one ingestion plan, for the inbox sensor and ``cbm run`` alike: land what is new
    (files and late signatures), then ingest every submission whose intake key has not been
    ingested yet (new files, files whose signature arrived or changed, and files whose
    ingestion never finished). With the policy's ``limits``: a file larger than
    ``max_decoded_bytes`` by its metadata is landed as a marker, never read, and rejected;
    a party's new files beyond ``max_files_per_run`` or ``max_bytes_per_run`` wait for the
    next runs."""
    landing = as_landing(landing)
    deferred: list[tuple[str, str]] = []
    files = scan_inbox(inbox, landing, log, progress, workers, deferred, limits)
    if log:
        for path, why in deferred:
            log(f"deferred {path}: {why}")
    record_waiting(landing, deferred)
    # each submission's intake key when last ingested (None: never), if not its key now
    done = {f.sha256: (f.intake_key, landing.meta(f.sha256).get("ingested_key")) for f in files}
    to_ingest = [sha for sha, (key, ingested) in done.items() if ingested != key]
    again = [sha for sha in to_ingest if done[sha][1] is not None]
    return IntakePlan(files, to_ingest, deferred, again)


WAITING = "WAITING.json"  # in the landing area: what the last look at the inbox left for later


def landing_where(workdir: str | Path, landing: str | None = None) -> str:
    """Where a workdir's landing area is: ``landing`` when given, else ``CBM_LANDING``, else
    ``<workdir>/landing``."""
    return landing or os.environ.get("CBM_LANDING") or str(Path(workdir) / "landing")


def read_waiting(store: Location) -> list[dict]:
    """What ``record_waiting`` kept in the landing area ``store``: ``[{path, why}]``, empty
    when nothing waits."""
    try:
        return json.loads(store.read_bytes(WAITING)) if store.exists(WAITING) else []
    except (OSError, ValueError):
        return []


def record_waiting(landing: Landing, deferred: list[tuple[str, str]]) -> None:
    """Keep what the last look at the inbox left for a later run (``cbm status`` lists it);
    written only when it changed."""
    data = (json.dumps([{"path": p, "why": w} for p, w in deferred], indent=1) + "\n").encode()
    store = landing.store
    if (store.read_bytes(WAITING) if store.exists(WAITING) else b"[]\n") != data:
        store.write_bytes(WAITING, data)


STAGING_WAITS = (
    "STAGING_WAITS"  # in the landing area: changes whenever staging leaves files waiting
)


def note_staging_waits(landing: Landing, shas: list[str], run: str) -> None:
    """Files landed but left unparsed by a run (their party's reading time was spent): each
    gets a new intake key (``current_intake_key``), so the next plan asks for it again under a
    new run key, and the landing area's ``STAGING_WAITS`` changes, so the inbox sensor looks
    again though the inbox did not change."""
    for sha in shas:
        meta = landing.meta(sha)
        landing.write_meta(sha, meta | {"staging_waits": meta.get("staging_waits", 0) + 1})
    landing.store.write_bytes(STAGING_WAITS, (run + "\n" + "\n".join(sorted(shas)) + "\n").encode())


def staging_waits_marker(landing: Landing) -> str:
    """What ``STAGING_WAITS`` holds now ("" when no run left files waiting)."""
    store = landing.store
    return store.read_bytes(STAGING_WAITS).decode() if store.exists(STAGING_WAITS) else ""


def mark_ingested(landing: Landing | Path, sha: str, intake_key: str) -> None:
    """Record in the submission's sidecar that its ingestion with this key finished, so no
    plan asks for it again until its signature changes."""
    landing = as_landing(landing)
    landing.write_meta(sha, landing.meta(sha) | {"ingested_key": intake_key})


def read_landing_meta(landing: Landing | Path, sha: str) -> dict:
    return as_landing(landing).meta(sha)
