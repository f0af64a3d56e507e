"""Asset metadata the Dagster UI shows: column schemas and small Markdown previews."""

import functools

import dagster as dg
import duckdb

from warehouse.db import schema_ddl


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    """Dagster column schema of a warehouse table, for asset metadata."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name=n, type=t) for n, t in rows])


def markdown_preview(con: duckdb.DuckDBPyConnection, sql: str, params=None, limit: int = 10) -> str:
    """A small Markdown table of a query's first rows, for the Dagster UI."""
    rel = con.execute(f"SELECT * FROM ({sql}) LIMIT {limit}", params or [])
    cols = [d[0] for d in rel.description]
    rows = rel.fetchall()
    if not rows:
        return "_no rows_"
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join(
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|")[:60] for v in r) + " |\n"
        for r in rows
    )
    return head + body


@functools.cache
def _declared_schemas() -> dict[str, dg.TableSchema]:
    """The column schema of every stored table and view the warehouse DDL declares, read from
    an in-memory DuckDB built with that DDL (no file is touched)."""
    con = duckdb.connect()
    try:
        con.execute(schema_ddl())
        return {
            table: table_schema(con, table)
            for (table,) in con.execute(
                "SELECT DISTINCT table_name FROM information_schema.columns"
            ).fetchall()
        }
    finally:
        con.close()


def declared_schema(table: str) -> dict:
    """Definition metadata for an asset that is a declared warehouse table: its column schema,
    shown by the UI once, not repeated in every materialization of every partition."""
    return {"dagster/column_schema": _declared_schemas()[table], "dagster/table_name": table}
