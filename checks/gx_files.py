"""Great Expectations' files written whole, kept in one place.

GX 1.24 writes its project file (``great_expectations.yml``: the datasources and stores)
and every stored object (suites, validation definitions, checkpoints, validation results,
Data Docs pages) by opening the file with ``"w"`` and writing into it. A run killed in
between (SIGKILL, the OOM killer) left the file empty or half written, and every later run
failed loading the project ("Error while processing DataContextConfig: _schema"): found by
``tests/test_reliability.py`` killing a run during ingestion.

``install`` gives the two GX modules that write those files an ``open`` of their own: a file
opened for writing goes to a temporary file beside it, which replaces it only when it is
closed without error (``os.replace``), so a killed run leaves the old file or the new one.
Reading is Python's ``open`` as before. The project template GX writes when it creates a
project goes the same way. Nothing is flushed to disk before the rename: these files are
derived (a run rebuilds what is missing); the point is a process killed mid-write.

``tests/test_gx_files.py`` fails loudly if a GX upgrade writes these files another way.
"""

from __future__ import annotations

import builtins
import os
import threading

from great_expectations.data_context.data_context import file_data_context as _file_context
from great_expectations.data_context.data_context import (
    serializable_data_context as _serializable,
)
from great_expectations.data_context.store import tuple_store_backend as _tuple_store

_MODULES = (_file_context, _tuple_store)


class _WholeFile:
    """A file opened for writing whose target is replaced only when it is closed without
    error; until then the writes go to ``<target>.<pid>.<thread>.tmp``."""

    def __init__(self, path: str, mode: str, *args, **kwargs):
        self.path = path
        self.partial = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        self._file = builtins.open(self.partial, mode, *args, **kwargs)  # noqa: SIM115 - closed by close()

    def __getattr__(self, name: str):
        return getattr(self._file, name)

    def __enter__(self) -> _WholeFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:  # what was written is not the file: the old one stays
            self._file.close()
            os.unlink(self.partial)
        return False

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            os.replace(self.partial, self.path)


def whole_file_open(file, mode: str = "r", *args, **kwargs):
    """``open``, except that a file opened to be written (``"w"``, ``"wb"``) is written whole
    (``_WholeFile``)."""
    if isinstance(file, int) or "w" not in mode or "+" in mode:
        return builtins.open(file, mode, *args, **kwargs)
    return _WholeFile(os.fspath(file), mode, *args, **kwargs)


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
