"""Every patch of Great Expectations' internals, in one place (GX 1.24; ``check_version``).

Applied by the entry points that validate (``checks.validation`` installs them as it is
imported); the domain package imports none of them. ``tests/test_gx_compat.py`` holds a test
per patch that fails loudly when GX changes what it patches.

1. The DuckDB persisted connection (``install_duckdb``)
-------------------------------------------------------

Great Expectations on DuckDB: the workaround GX 1.24 needs to run on DuckDB, in one place.

GX has no DuckDB dialect. Through ``duckdb_engine`` every expectation errors
(``IndexError`` in ``resolve_metric_bundle``; GX issues #10738, #11579) because query
results are fetched after the connection went back to the pool. GX keeps one persisted
connection for the dialects listed in ``_PERSISTED_CONNECTION_DIALECTS`` (SQLite, ...);
adding DuckDB there makes the SQL engine work. That tuple holds ``GXSqlDialect`` members and
is compared through ``.value`` (and ``==`` against the dialect name), so we add a small
stand-in with ``value == "duckdb"``.

2. Files written whole (``install_whole_files``)
------------------------------------------------

Great Expectations' files written whole, kept in one place.

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
the same way. A small run writes about a hundred such files; their flushing to disk costs
little (benchmarks/README.md, M10).

3. Data Docs templates compiled once (``install_templates``)
-----------------------------------------------------------

Data Docs without compiling GX's page templates on every build.

GX's Data Docs views (``DefaultJinjaView`` and its subclasses) each make a new Jinja
``Environment``, so every page of every build compiled its templates again: about half of a
Data Docs build, which ``cbm run`` does twice (validation, warehouse checks). Jinja can keep
compiled templates in a bytecode cache, checked against each template's source (a changed
template is compiled again). ``install`` gives every GX view one in-memory cache for the
process: the pages are rendered from the same templates, only not compiled twice.
"""

from __future__ import annotations

import builtins
import io
import os
import threading
from pathlib import Path

import great_expectations
from great_expectations.data_context.data_context import file_data_context as _file_context
from great_expectations.data_context.data_context import (
    serializable_data_context as _serializable,
)
from great_expectations.data_context.store import tuple_store_backend as _tuple_store
from great_expectations.execution_engine import sqlalchemy_execution_engine as _see
from great_expectations.render.view.view import DefaultJinjaView
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket

from cbm.files import write_atomic
from compat import check_version

SUPPORTED = "1.24."  # the GX release these patches were written against and tested with


class _DuckDBDialect:
    """Compares equal to the dialect name 'duckdb', as GXSqlDialect members do."""

    value = "duckdb"

    def __eq__(self, other: object) -> bool:
        return str(getattr(other, "value", other)).lower() == "duckdb"

    def __hash__(self) -> int:
        return hash("duckdb")

    def __repr__(self) -> str:
        return "<DuckDB dialect (cbm-verify persisted-connection fix)>"


def install_duckdb() -> None:
    """Make GX keep one persisted connection for DuckDB. Idempotent."""
    dialects = _see._PERSISTED_CONNECTION_DIALECTS
    if not any(getattr(d, "value", None) == "duckdb" for d in dialects):
        _see._PERSISTED_CONNECTION_DIALECTS = (*dialects, _DuckDBDialect())


def duckdb_installed() -> bool:
    return "duckdb" in _see._PERSISTED_CONNECTION_DIALECTS


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


def install_whole_files() -> None:
    """Idempotent."""
    for module in _MODULES:
        module.open = whole_file_open
    _serializable.SerializableDataContext._write_project_template_to_disk = classmethod(
        _write_project_template_to_disk
    )


def whole_files_installed() -> bool:
    return all(getattr(m, "open", None) is whole_file_open for m in _MODULES)


class CompiledTemplates(BytecodeCache):
    """Compiled Jinja templates by name and source checksum, in this process's memory."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # ignored unless the source checksum matches

    def dump_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            self._code[bucket.key] = bucket.bytecode_to_string()

    def clear(self) -> None:
        with self._lock:
            self._code.clear()

    def __len__(self) -> int:
        return len(self._code)


TEMPLATES = CompiledTemplates()


def install_templates() -> None:
    """Give every GX Data Docs view the shared template cache (idempotent)."""
    if getattr(DefaultJinjaView.__init__, "__cbm_templates__", False):
        return
    init = DefaultJinjaView.__init__

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        self.env.bytecode_cache = TEMPLATES

    __init__.__cbm_templates__ = True
    DefaultJinjaView.__init__ = __init__


def install() -> None:
    """Every patch above (idempotent), after checking that this is the GX they were made for."""
    check_version("great_expectations", great_expectations.__version__, SUPPORTED)
    install_duckdb()
    install_whole_files()
    install_templates()
