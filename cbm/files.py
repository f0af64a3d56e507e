"""Files on disk: content hashes and atomic writes, the one implementation of each."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file (one per process and thread),
    fsynced and renamed into place: a reader sees the old file or the new one, never half of
    one."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk: nothing half-written stays behind
        tmp.unlink(missing_ok=True)
        raise


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` the same way (temporary file, fsync, rename)."""
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    except BaseException:  # a full disk, a file that went away: nothing half-written stays
        tmp.unlink(missing_ok=True)
        raise


def sync_filesystem(path: Path) -> None:
    """Flush to disk every file written on the filesystem that holds ``path``: before a folder
    of files (a release, a member bundle) is renamed into place, so that a power loss cannot
    leave the folder visible with files the disk never got. Linux's ``syncfs``, one call for
    the folder's hundreds of files (a release holds one file per event in its MISP feed: an
    fsync each took 0.17-0.23 s for 640 files here, one ``syncfs`` 6 ms); ``os.sync`` where
    there is no ``syncfs``."""
    import ctypes

    syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)  # the C library's
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"syncfs: {os.strerror(errno)}", str(path))
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UnreadableKeyFile(RuntimeError):
    """A key file that cannot be used; the message says why in one line."""


def key_file_fields(
    path: Path, what: str, made_by: str, fields: tuple[str, ...], other: tuple[str, str]
) -> dict[str, str]:
    """The text ``fields`` of the JSON key file at ``path`` (``what``: "signing key file", say;
    ``made_by``: the command that writes one), or ``UnreadableKeyFile`` saying why not: no such
    file, a folder, unreadable, not text, not JSON, a field missing. ``other``: (a field of the
    other kind of key file, what to say when the file given has it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UnreadableKeyFile(f"{path}: no such file (a {what} is written by {made_by})") from exc
    except IsADirectoryError as exc:
        raise UnreadableKeyFile(f"{path}: a folder, not a {what}") from exc
    except OSError as exc:
        raise UnreadableKeyFile(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UnreadableKeyFile(
            f"{path}: not a {what} (one written by {made_by}): not text"
        ) from exc
    wrong = f"{path}: not a {what} (one written by {made_by})"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UnreadableKeyFile(f"{wrong}: not JSON") from exc
    if not isinstance(data, dict):
        raise UnreadableKeyFile(f"{wrong}: not a JSON object")
    for name in fields:
        if not isinstance(data.get(name), str):
            field, which = other
            hint = f" ({which})" if field in data else ""
            raise UnreadableKeyFile(f"{wrong}: no {name!r} field{hint}")
    return {name: data[name] for name in fields}
