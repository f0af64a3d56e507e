"""Asset metadata the Dagster UI shows: column schemas and small Markdown previews."""

import functools
import re

import dagster as dg
import duckdb

from cbm.columns import describe
from warehouse.db import schema_ddl


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    """Dagster column schema of a warehouse table, for asset metadata."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return _schema(table, rows)


def _schema(table: str, columns) -> dg.TableSchema:
    """``columns``: (name, type) in the table's order."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name=n, type=t, description=describe(table, n)) for n, t in columns]
    )


def markdown_preview(con: duckdb.DuckDBPyConnection, sql: str, params=None, limit: int = 10) -> str:
    """A small Markdown table of a query's first rows, for the Dagster UI."""
    rel = con.execute(f"SELECT * FROM ({sql}) LIMIT {limit}", params or [])
    cols = [d[0] for d in rel.description]
    rows = rel.fetchall()
    if not rows:
        return "_no rows_"
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join(
        "| " + " | ".join("" if v is None else _cell(v) for v in r) + " |\n" for r in rows
    )
    return head + body


# every character Markdown or HTML gives a meaning to: escaped, a party's text renders as text
# (no image fetched from its host, no link, no HTML), whatever it holds
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}


def md_text(value) -> str:
    """Any text (a file name, a reason, a party's value) as Markdown that renders as that
    text, on one line."""
    text = " ".join(str(value).split())
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return "".join(_HTML.get(c, c) for c in text)


def _cell(value) -> str:
    """A Markdown table cell: the whole value on one line (a cell cannot hold a line break),
    escaped (``md_text``)."""
    return md_text(value)


TABLE_TYPES = {bool: "bool", int: "int", float: "float"}


def table_metadata(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> dg.TableMetadataValue:
    """A query's rows as a table the Dagster UI shows whole (values in full, no Markdown)."""
    rel = con.execute(sql, params or [])
    cols = [d[0] for d in rel.description]
    rows = rel.fetchall()
    plain = [
        {
            c: v if v is None or type(v) in TABLE_TYPES or isinstance(v, str) else str(v)
            for c, v in zip(cols, row, strict=True)
        }
        for row in rows
    ]
    types = {
        c: next(
            (TABLE_TYPES.get(type(r[c]), "string") for r in plain if r[c] is not None), "string"
        )
        for c in cols
    }
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in plain],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types[c]) for c in cols]),
    )


@functools.cache
def _declared_schemas() -> dict[str, dg.TableSchema]:
    """The column schema of every stored table and view the warehouse DDL declares, read from
    an in-memory DuckDB built with that DDL (no file is touched)."""
    con = duckdb.connect()
    try:
        con.execute(schema_ddl())
        rows = con.execute(  # one query for all of them (a query a table cost 0.1 s a process)
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    columns: dict[str, list] = {}
    for table, name, kind in rows:
        columns.setdefault(table, []).append((name, kind))
    return {table: _schema(table, cols) for table, cols in columns.items()}


def declared_schema(table: str) -> dict:
    """Definition metadata for an asset that is a declared warehouse table: its column schema,
    shown by the UI once, not repeated in every materialization of every partition."""
    return {"dagster/column_schema": _declared_schemas()[table], "dagster/table_name": table}


def data_docs_of(settings, results: list) -> str | None:
    """The Data Docs page (``file://`` URI) for a step's validation ``results``: built now,
    or, when ``cbm run`` builds them once after its last run (``docs_after_run``), the index
    it will build; None without results."""
    from checks.offline_docs import data_docs_index
    from checks.validation import build_data_docs

    done = [r for r in results if r]
    if not done:
        return None
    if settings.docs_after_run:
        return data_docs_index(settings.gx_dir).as_uri()
    return build_data_docs(settings.gx_dir, done, keep=settings.gx_keep_results)


def row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """How many rows ``table`` holds: the figure an asset reports (a count with a condition
    is a named statement, warehouse/queries.py)."""
    con.abort()  # a relation starts only once earlier results are done (warehouse.db._relation)
    return con.table(table).count("*").fetchall()[0][0]


KEEPS = "keeps_in_warehouse"


def keeps(*objects: str) -> dict:
    """Definition metadata naming the warehouse tables and views an asset keeps beside its own
    table (a view of it, the rows it sets aside): declared here, shown in the UI, and compared
    with the warehouse's real tables by tests/test_definitions.py."""
    return {KEEPS: dg.MetadataValue.json(sorted(objects))}


def breakdown(
    con: duckdb.DuckDBPyConnection, table: str, by: str, column: str
) -> dg.TableMetadataValue:
    """Counts of ``table`` by ``by`` (rows) and each value of ``column`` (columns, with a
    total): what the UI tabulates, e.g. events by category and status."""
    values = [
        v for (v,) in con.execute(f"SELECT DISTINCT {column} FROM {table} ORDER BY 1").fetchall()
    ]
    counts = ", ".join(
        f"count(*) FILTER (WHERE {column} = '{str(v).replace(chr(39), chr(39) * 2)}') AS \"{v}\""
        for v in values
    )
    return table_metadata(
        con,
        f"SELECT coalesce(CAST({by} AS VARCHAR), '(none)') AS {by}, {counts}{',' if counts else ''} "
        f"count(*) AS total FROM {table} GROUP BY ALL ORDER BY 1",
    )


def counts_by(con: duckdb.DuckDBPyConnection, table: str, column: str, values, prefix: str) -> dict:
    """One whole-number entry per value of ``column`` (zero when absent): numeric metadata the
    UI plots across materializations."""
    found = dict(con.execute(f"SELECT {column}, count(*) FROM {table} GROUP BY ALL").fetchall())
    return {f"{prefix}{v}": int(found.get(v, 0)) for v in values}
