"""Where the inbox, the landing area and the publish folder live: a local folder (the
default) or an object-storage prefix, ``s3://bucket/prefix``.

Object storage goes through pyarrow's S3 filesystem (DuckDB 2.0 cannot load httpfs
offline, see DESIGN.md "Scale"); the one write that must be conditional, a publish
folder's ``LATEST``, goes through boto3 (``If-Match`` / ``If-None-Match``). Both take the
endpoint, credentials and region from the standard ``AWS_*`` variables
(``AWS_ENDPOINT_URL`` for an S3 API that is not AWS, such as MinIO or moto on loopback).
Neither is imported unless an ``s3://`` location is used.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cbm.files import copy_atomic, sha256_file, write_atomic


class StorageError(Exception):
    """A location that cannot be used (a malformed URI, a bucket that does not exist)."""


class Conflict(Exception):
    """A conditional write found something other than what it expected."""


@dataclass(frozen=True)
class Entry:
    """One object of a location: its path below the location (``/``-separated), size and
    modification time, and what it is: ``file``, or (local folders only) ``symlink:<target>``
    or ``special:<mode>``, which are never followed or read. ``change`` (local folders only):
    the inode and the time of its last change, which no one sets back without the clock."""

    rel: str
    size: int
    mtime_ns: int
    kind: str = "file"
    change: str = ""


def is_remote(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def location(uri: str | Path) -> Location:
    """The location a folder path or an ``s3://bucket/prefix`` URI names."""
    text = str(uri)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise StorageError(f"{text}: an S3 location is s3://bucket/prefix")
        return S3Location(bucket, prefix.strip("/"))
    if "://" in text:
        raise StorageError(f"{text}: only local folders and s3://bucket/prefix are supported")
    return LocalLocation(Path(text))


class Location:
    uri: str
    remote: bool

    def entries(self, under: str = "") -> list[Entry]:
        """Every object below the location (or below its folder ``under``), sorted by path
        components; ``rel`` is always relative to the location."""
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def read_bytes(self, rel: str) -> bytes:
        raise NotImplementedError

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write one object whole: a reader sees the old bytes or the new ones."""
        raise NotImplementedError

    def get(self, rel: str, dest: Path) -> None:
        """Copy one object to a local file (atomically)."""
        raise NotImplementedError

    def put(self, src: Path, rel: str) -> None:
        """Copy a local file to one object."""
        raise NotImplementedError

    def sha256(self, rel: str) -> str:
        raise NotImplementedError

    def names(self, folder: str) -> list[str]:
        """The names of the objects directly in ``folder`` (sorted; none if it is absent)."""
        raise NotImplementedError

    def replace_if(self, rel: str, data: bytes, expected: bytes | None) -> None:
        """Write ``rel`` only if it holds ``expected`` now (``None``: only if it is absent);
        raise ``Conflict`` otherwise."""
        raise NotImplementedError

    def where(self, rel: str) -> str:
        """How a message names one object."""
        return f"{self.uri.rstrip('/')}/{rel}"


class LocalLocation(Location):
    remote = False

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uri = str(self.root)

    def is_dir(self) -> bool:
        return self.root.is_dir()

    def entries(self, under: str = "") -> list[Entry]:
        found = []
        for top, dirs, files in os.walk(self.root / under if under else self.root):
            base = Path(top)
            for name in list(dirs):
                if (base / name).is_symlink():  # listed as what it is, never entered
                    dirs.remove(name)
                    files.append(name)
            for name in files:
                path = base / name
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    kind = f"symlink:{os.readlink(path)}"
                elif stat.S_ISREG(st.st_mode):
                    kind = "file"
                else:
                    kind = f"special:{st.st_mode}"
                rel = path.relative_to(self.root).as_posix()
                change = f"{st.st_ino}:{st.st_ctime_ns}"
                found.append(Entry(rel, st.st_size, st.st_mtime_ns, kind, change))
        return sorted(found, key=lambda e: e.rel.split("/"))

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def read_bytes(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)

    def get(self, rel: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_atomic(self.root / rel, dest)

    def put(self, src: Path, rel: str) -> None:
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_atomic(src, dest)

    def sha256(self, rel: str) -> str:
        return sha256_file(self.root / rel)

    def names(self, folder: str) -> list[str]:
        path = self.root / folder
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def replace_if(self, rel: str, data: bytes, expected: bytes | None) -> None:
        import fcntl

        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with (path.parent / f".{path.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = path.read_bytes() if path.exists() else None
            if current != expected:
                raise Conflict(_conflict(self.where(rel), expected, current))
            write_atomic(path, data)


class S3Location(Location):
    remote = True

    def __init__(self, bucket: str, prefix: str):
        self.bucket, self.prefix = bucket, prefix
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._fs = None
        self._client = None

    @property
    def fs(self):
        if self._fs is None:
            from pyarrow import fs as pafs

            self._fs = pafs.S3FileSystem(
                endpoint_override=os.environ.get("AWS_ENDPOINT_URL"),
                region=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "")),
            )
        return self._fs

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _path(self, rel: str) -> str:
        return f"{self.bucket}/{self.key(rel)}"

    def is_dir(self) -> bool:
        from pyarrow import fs as pafs

        try:
            return self.fs.get_file_info(self._path("").rstrip("/")).type != pafs.FileType.NotFound
        except OSError as exc:
            raise StorageError(f"{self.uri}: {exc}") from None

    def entries(self, under: str = "") -> list[Entry]:
        from pyarrow import fs as pafs

        base = self._path("").rstrip("/")
        folder = self._path(under).rstrip("/") if under else base
        try:
            selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"{self.uri}: {exc}") from None
        found = [
            Entry(i.path[len(base) + 1 :], i.size or 0, i.mtime_ns or 0)
            for i in infos
            if i.type == pafs.FileType.File
        ]
        return sorted(found, key=lambda e: e.rel.split("/"))

    def exists(self, rel: str) -> bool:
        from pyarrow import fs as pafs

        return self.fs.get_file_info(self._path(rel)).type == pafs.FileType.File

    def read_bytes(self, rel: str) -> bytes:
        # one GET: pyarrow's stream takes the size first and then reads ranges, so an object
        # replaced in between (a sidecar rewritten by another process) came back torn
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"].read()
        except ClientError as exc:  # as a local folder says it: missing, or unusable
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"{self.where(rel)} does not exist") from None
            raise StorageError(f"{self.where(rel)}: {code or exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"{self.where(rel)}: {exc}") from None

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.fs.open_output_stream(self._path(rel)) as fh:
            fh.write(data)

    def get(self, rel: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        with self.fs.open_input_stream(self._path(rel)) as fin, tmp.open("wb") as fout:
            while chunk := fin.read(1 << 20):
                fout.write(chunk)
        os.replace(tmp, dest)

    def put(self, src: Path, rel: str) -> None:
        with Path(src).open("rb") as fin, self.fs.open_output_stream(self._path(rel)) as fout:
            while chunk := fin.read(1 << 20):
                fout.write(chunk)

    def sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        with self.fs.open_input_stream(self._path(rel)) as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    def names(self, folder: str) -> list[str]:
        from pyarrow import fs as pafs

        base = self._path(folder).rstrip("/")
        infos = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def replace_if(self, rel: str, data: bytes, expected: bytes | None) -> None:
        from botocore.exceptions import ClientError

        s3 = self.client
        key = self.key(rel)
        try:
            head = s3.get_object(Bucket=self.bucket, Key=key)
            current, etag = head["Body"].read(), head["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            current, etag = None, None
        if current != expected:
            raise Conflict(_conflict(self.where(rel), expected, current))
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.put_object(Bucket=self.bucket, Key=key, Body=data, **condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise Conflict(
                    f"{self.where(rel)} was changed by another writer meanwhile"
                ) from None
            raise


def _conflict(where: str, expected: bytes | None, current: bytes | None) -> str:
    def show(value: bytes | None) -> str:
        return "absent" if value is None else repr(value.decode("utf-8", "replace").strip())

    return f"{where} holds {show(current)}, not {show(expected)}: another writer moved it"
