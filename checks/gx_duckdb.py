"""Great Expectations on DuckDB: the workaround GX 1.24 needs to run on DuckDB, in one place.

GX has no DuckDB dialect. Through ``duckdb_engine`` every expectation errors
(``IndexError`` in ``resolve_metric_bundle``; GX issues #10738, #11579) because query
results are fetched after the connection went back to the pool. GX keeps one persisted
connection for the dialects listed in ``_PERSISTED_CONNECTION_DIALECTS`` (SQLite, ...);
adding DuckDB there makes the SQL engine work. That tuple holds ``GXSqlDialect`` members and
is compared through ``.value`` (and ``==`` against the dialect name), so we add a small
stand-in with ``value == "duckdb"``.

``tests/test_gx_duckdb.py`` fails loudly if a GX upgrade moves or renames any of this.
"""

from __future__ import annotations

from great_expectations.execution_engine import sqlalchemy_execution_engine as _see


class _DuckDBDialect:
    """Compares equal to the dialect name 'duckdb', as GXSqlDialect members do."""

    value = "duckdb"

    def __eq__(self, other: object) -> bool:
        return str(getattr(other, "value", other)).lower() == "duckdb"

    def __hash__(self) -> int:
        return hash("duckdb")

    def __repr__(self) -> str:
        return "<DuckDB dialect (cbm-verify persisted-connection fix)>"


def install() -> None:
    """Make GX keep one persisted connection for DuckDB. Idempotent."""
    dialects = _see._PERSISTED_CONNECTION_DIALECTS
    if not any(getattr(d, "value", None) == "duckdb" for d in dialects):
        _see._PERSISTED_CONNECTION_DIALECTS = (*dialects, _DuckDBDialect())


def is_installed() -> bool:
    return "duckdb" in _see._PERSISTED_CONNECTION_DIALECTS


install()
