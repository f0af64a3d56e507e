"""Great Expectations' files written whole, kept in one place.

GX 1.24 writes its project file (``great_expectations.yml``: the datasources and stores)
and every stored object (suites, validation definitions, checkpoints, validation results,
Data Docs pages) by opening the file with ``"w"`` and writing into it. A run killed in
between (SIGKILL, the OOM killer) left the file empty or half written, and every later run
failed loading the project ("Error while processing DataContextConfig: _schema"): found by
``tests/test_reliability.py`` killing a run during ingestion.

``install`` gives the two GX modules that write those files an ``open`` of their own: what
is written to a file opened for writing is held until the file is closed without error and
then written the project's one way, ``cbm.files.write_atomic`` (a temporary file, flushed
and renamed into place), so a killed run leaves the old file or the new one. Reading is
Python's ``open`` as before. The project template GX writes when it creates a project goes
the same way. A small run writes about a hundred such files; their flushing to disk took
0.05 s in all.

``tests/test_gx_files.py`` fails loudly if a GX upgrade writes these files another way.
"""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

from great_expectations.data_context.data_context import file_data_context as _file_context
from great_expectations.data_context.data_context import (
    serializable_data_context as _serializable,
)
from great_expectations.data_context.store import tuple_store_backend as _tuple_store

from cbm.files import write_atomic

_MODULES = (_file_context, _tuple_store)


class _WholeFile:
    """What GX writes to a file, held until the file is closed without error, then written
    whole (``cbm.files.write_atomic``); if the writing fails, the old file stays."""

    def __init__(self, path: str, binary: bool):
        self.path = Path(path)
        self._buffer = io.BytesIO() if binary else io.StringIO()

    def __getattr__(self, name: str):
        return getattr(self._buffer, name)

    def __enter__(self) -> _WholeFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        return False

    def close(self) -> None:
        if not self._buffer.closed:
            write_atomic(self.path, self._buffer.getvalue())
            self._buffer.close()


def whole_file_open(file, mode: str = "r", *args, **kwargs):
    """``open``, except that a file opened to be written (``"w"``, ``"wb"``; GX's text is
    UTF-8) is written whole (``_WholeFile``)."""
    if isinstance(file, int) or "w" not in mode or "+" in mode:
        return builtins.open(file, mode, *args, **kwargs)
    return _WholeFile(os.fspath(file), binary="b" in mode)


def _write_project_template_to_disk(cls, gx_dir) -> None:
    """GX's own (``SerializableDataContext``), written whole."""
    path = os.path.join(os.fspath(gx_dir), cls.GX_YML)
    with whole_file_open(path, "w") as template:
        template.write(_serializable.PROJECT_TEMPLATE_USAGE_STATISTICS_ENABLED)


def install() -> None:
    """Idempotent."""
    for module in _MODULES:
        module.open = whole_file_open
    _serializable.SerializableDataContext._write_project_template_to_disk = classmethod(
        _write_project_template_to_disk
    )


def is_installed() -> bool:
    return all(getattr(m, "open", None) is whole_file_open for m in _MODULES)


install()
