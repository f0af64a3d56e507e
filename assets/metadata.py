"""Asset metadata the Dagster UI shows: column schemas and small Markdown previews."""

import dagster as dg
import duckdb


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
