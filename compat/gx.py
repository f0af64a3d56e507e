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

4. Each expectation's configuration built once per validation (``install_configurations``)
------------------------------------------------------------------------------------------

``Expectation.configuration`` is a property that builds a new ``ExpectationConfiguration``
from the expectation's fields (a pydantic ``dict()``, deep copies) on every read, and GX reads
it once per keyword while it builds the metric graph: about 16,000 builds for the 428 rules
of one small run's suites, a quarter of GX's fixed cost (benchmarks/README.md, M20). Within
one ``Validator.graph_validate`` call, where GX makes the expectations from their
configurations and only reads them, ``install_configurations`` builds each expectation's
configuration once and hands the same one to every read. Outside that call the property is
GX's own, so an expectation edited between validations is read afresh. The cache holds the
expectations it saw until the call ends (no address reused within it) and is per thread.

5. Freshness taken as read for a checkpoint just read or written (``fresh_from_store``)
----------------------------------------------------------------------------------------

``Checkpoint.run`` first checks that the checkpoint, each of its validation definitions and
each of their suites equal what their stores hold: it reads every one of them back from disk
and compares, and each ``ValidationDefinition.run`` checks its definition and suite again
(a tenth of GX's fixed cost, M20). ``checks.validation`` runs a checkpoint it has just read
from its store or just added to it, in the same call. Within ``fresh_from_store(checkpoint)``
that checkpoint and its validation definitions are taken as fresh without reading the stores
again; what GX's check also does on the way, recording each suite's owning context (GX issue
#12209), is still done. Any other object, or the same one outside the block, is checked as
GX checks it.

6. Results stored once (``results_stored_by_caller``)
----------------------------------------------------

Each ``ValidationDefinition.run`` serialises its result and writes it to the result store.
``checks.validation`` then completes every result of a pass/fail-first run (details of the
rules that failed, counts of those that passed) and stores each again, so every result was
serialised and written twice (about a tenth of GX's fixed cost, M20). Within
``results_stored_by_caller()`` GX's ``store_validation_results`` writes nothing and the
caller stores each result once, completed. Outside the block GX stores as it does.

7. Metric ids without GX's general converter (``install_metric_ids``)
--------------------------------------------------------------------

GX names every metric it plans by an id: ``IDDict.to_id`` turns the metric's keyword dicts
into JSON with ``convert_to_json_serializable`` and hashes it, about 8,000 times for the
suites of one validation. That converter is written for any value (pydantic models, numpy,
pandas, shapely, Spark): a ``None``, the commonest keyword value here, passes three
``numpy.issubdtype`` calls and a ``pandas.isna`` before it is returned as it came. A quarter
of GX's fixed cost went there (benchmarks/README.md, M33). ``install_metric_ids`` gives the
one module that makes ids (``great_expectations.core.id_dict``) a converter that returns what
GX's returns for the exact built-in types (``str``, ``int``, ``bool``, ``None``, ``float``
with NaN as ``None``, ``dict`` with its keys made strings, ``list`` and ``tuple`` as lists)
and hands every other value, subclasses included, to GX's own. The ids are the same strings
(tested on GX's own conversion of many values); everything else in GX converts as before.

8. Column names on DuckDB without the catalog queries that fail (``install_column_names``)
----------------------------------------------------------------------------------------

Every table GX validates needs its columns (the ``table.column_types`` metric). GX asks
SQLAlchemy's inspector, and ``duckdb_engine`` answers as PostgreSQL would: through
``pg_catalog`` queries, the primary key's (``CAST(... AS REGCLASS)``) and the columns'
(``pg_collation``), both of which DuckDB rejects. GX catches each error and falls back to the
column names of a one-row ``SELECT *`` (``column_reflection_fallback``), without types and
with no primary key. Building, compiling and failing those two statements, and opening the
inspector's connection, was a fifth of GX's fixed cost (benchmarks/README.md, M46).
``install_column_names`` gives ``table_column_types`` a ``get_sqlalchemy_column_metadata`` that,
on DuckDB, goes to that fallback at once and builds the same result; every other dialect, and a
custom query, goes to GX's own. The test compares both on a table and a view, so a DuckDB or
SQLAlchemy that starts answering the catalog queries (columns with types) makes it fail.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import threading
from pathlib import Path

import great_expectations
import sqlalchemy as _sa
from great_expectations.checkpoint.checkpoint import Checkpoint
from great_expectations.core import id_dict as _id_dict
from great_expectations.core.freshness_diagnostics import (
    CheckpointFreshnessDiagnostics,
    ValidationDefinitionFreshnessDiagnostics,
)
from great_expectations.core.owner_resolution import owner_from_batch_definition
from great_expectations.core.validation_definition import ValidationDefinition
from great_expectations.data_context.data_context import file_data_context as _file_context
from great_expectations.data_context.data_context import (
    serializable_data_context as _serializable,
)
from great_expectations.data_context.store import tuple_store_backend as _tuple_store
from great_expectations.data_context.store.validation_results_store import (
    ValidationResultsStore,
)
from great_expectations.execution_engine import sqlalchemy_execution_engine as _see
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.metrics import util as _metrics_util
from great_expectations.expectations.metrics.table_metrics import (
    table_column_types as _column_types,
)
from great_expectations.render.view.view import DefaultJinjaView
from great_expectations.validator.validator import Validator
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


# GX's own functions, kept before patching (the patches call them; the tests compare them
# with what was patched)
GX_CONFIGURATION = Expectation.configuration.fget
GX_GRAPH_VALIDATE = Validator.graph_validate
GX_CHECKPOINT_IS_FRESH = Checkpoint.is_fresh
GX_DEFINITION_IS_FRESH = ValidationDefinition.is_fresh
GX_STORE_VALIDATION_RESULTS = ValidationResultsStore.store_validation_results
GX_TO_JSON = _id_dict.convert_to_json_serializable
GX_COLUMN_METADATA = _metrics_util.get_sqlalchemy_column_metadata


def _ours(func) -> bool:
    """Whether ``func`` is one of this module's replacements (patches 4 to 8)."""
    return getattr(func, "__cbm_patch__", False)


def _replace(owner, name: str, func) -> None:
    func.__cbm_patch__ = True
    setattr(owner, name, func)


# 4. configurations built once per validation

_BUILT = threading.local()  # .configs: {id(expectation): (expectation, configuration)} in a call


def _configuration(self):
    configs = getattr(_BUILT, "configs", None)
    if configs is None:  # outside graph_validate: GX's own
        return GX_CONFIGURATION(self)
    held = configs.get(id(self))
    if held is None:
        held = configs[id(self)] = (self, GX_CONFIGURATION(self))
    return held[1]


def _graph_validate_once(self, *args, **kwargs):
    if getattr(_BUILT, "configs", None) is not None:  # nested: the outer call's cache
        return GX_GRAPH_VALIDATE(self, *args, **kwargs)
    _BUILT.configs = {}
    try:
        return GX_GRAPH_VALIDATE(self, *args, **kwargs)
    finally:
        _BUILT.configs = None


def install_configurations() -> None:
    """Build each expectation's configuration once per ``Validator.graph_validate`` call
    (idempotent)."""
    if configurations_installed():
        return
    _replace(Validator, "graph_validate", _graph_validate_once)
    _configuration.__cbm_patch__ = True
    Expectation.configuration = property(_configuration, doc=Expectation.configuration.__doc__)


def configurations_installed() -> bool:
    return _ours(Expectation.configuration.fget)


# 5. freshness taken as read for a checkpoint just read or written

_FRESH = threading.local()  # .held: {id(obj): obj} taken as fresh within fresh_from_store


def _held_fresh(obj) -> bool:
    held = getattr(_FRESH, "held", None)
    return held is not None and held.get(id(obj)) is obj and bool(obj.id)


@contextlib.contextmanager
def fresh_from_store(checkpoint):
    """Within the block, ``checkpoint`` and its validation definitions (just read from their
    stores or just added to them by the caller) are taken as fresh (patch 5)."""
    outer = getattr(_FRESH, "held", None)
    held = dict(outer or {})
    for obj in (checkpoint, *checkpoint.validation_definitions):
        held[id(obj)] = obj
    _FRESH.held = held
    try:
        yield checkpoint
    finally:
        _FRESH.held = outer


def _checkpoint_fresh(self):
    if not _held_fresh(self):
        return GX_CHECKPOINT_IS_FRESH(self)
    for vd in self.validation_definitions:
        vd.is_fresh()
    return CheckpointFreshnessDiagnostics(errors=[])


def _definition_fresh(self):
    if not _held_fresh(self):
        return GX_DEFINITION_IS_FRESH(self)
    self._record_suite_owner(owner_from_batch_definition(self.data))
    return ValidationDefinitionFreshnessDiagnostics(errors=[])


def install_freshness() -> None:
    """Let ``fresh_from_store`` skip the store reads of GX's freshness checks (idempotent)."""
    if not freshness_installed():
        _replace(Checkpoint, "is_fresh", _checkpoint_fresh)
        _replace(ValidationDefinition, "is_fresh", _definition_fresh)


def freshness_installed() -> bool:
    return _ours(Checkpoint.is_fresh)


# 6. results stored once

_DEFERRED = threading.local()  # .on: the caller stores the results of this block


@contextlib.contextmanager
def results_stored_by_caller():
    """Within the block GX stores no validation result: the caller stores each (patch 6)."""
    outer = getattr(_DEFERRED, "on", False)
    _DEFERRED.on = True
    try:
        yield
    finally:
        _DEFERRED.on = outer


def _store_unless_deferred(self, *args, **kwargs):
    if getattr(_DEFERRED, "on", False):
        return False
    return GX_STORE_VALIDATION_RESULTS(self, *args, **kwargs)


def install_results_once() -> None:
    """Let ``results_stored_by_caller`` hold GX's own result writes (idempotent)."""
    if not results_once_installed():
        _replace(ValidationResultsStore, "store_validation_results", _store_unless_deferred)


def results_once_installed() -> bool:
    return _ours(ValidationResultsStore.store_validation_results)


# 7. metric ids without GX's general converter


def plain_to_json(data):
    """GX's ``convert_to_json_serializable`` for the exact built-in types; GX's own for the
    rest (patch 7)."""
    kind = type(data)
    if kind is str or kind is int or kind is bool or data is None:
        return data
    if kind is dict:
        return {str(key): plain_to_json(value) for key, value in data.items()}
    if kind is list or kind is tuple:
        return [plain_to_json(value) for value in data]
    if kind is float:
        return None if data != data else data  # NaN, as GX writes it
    return GX_TO_JSON(data)


def install_metric_ids() -> None:
    """Let ``IDDict.to_id`` convert plain values without GX's general converter (idempotent)."""
    if not metric_ids_installed():
        _replace(_id_dict, "convert_to_json_serializable", plain_to_json)


def metric_ids_installed() -> bool:
    return _ours(_id_dict.convert_to_json_serializable)


# 8. column names on DuckDB without the catalog queries that fail


def duckdb_column_metadata(execution_engine, table_selectable, schema_name=None):
    """GX's ``get_sqlalchemy_column_metadata`` as it ends on DuckDB, without the two catalog
    queries that fail on the way there (patch 8); GX's own for anything else."""
    engine = execution_engine.engine
    if engine.dialect.name != "duckdb" or isinstance(table_selectable, _sa.TextClause):
        return GX_COLUMN_METADATA(execution_engine, table_selectable, schema_name)
    columns = _metrics_util.column_reflection_fallback(
        selectable=table_selectable,
        dialect=engine.dialect,
        sqlalchemy_engine=engine,
        schema_name=schema_name,
    )
    return _metrics_util._build_column_metadata_result(columns, set(), execution_engine)


def install_column_names() -> None:
    """Let ``table.column_types`` read DuckDB's column names at once (idempotent)."""
    if not column_names_installed():
        _replace(_column_types, "get_sqlalchemy_column_metadata", duckdb_column_metadata)


def column_names_installed() -> bool:
    return _ours(_column_types.get_sqlalchemy_column_metadata)


def install() -> None:
    """Every patch above (idempotent), after checking that this is the GX they were made for."""
    check_version("great_expectations", great_expectations.__version__, SUPPORTED)
    install_duckdb()
    install_whole_files()
    install_templates()
    install_configurations()
    install_freshness()
    install_results_once()
    install_metric_ids()
    install_column_names()
