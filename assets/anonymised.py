"""Anonymised: anonymisation enforced, not trusted, before anything reaches the warehouse.

Submitters become keyed pseudonyms; free text is scrubbed of e-mails, URLs, IPs, phone
numbers and registered party names; technical keys become keyed hashes (each distinct value
hashed once, then joined back). Typed columns are cast in DuckDB; the text of every typed
field is kept beside it (scrubbed) so a value that does not parse can be named in quarantine.
"""

import dagster as dg
import polars as pl

from assets.metadata import markdown_preview, table_schema
from assets.partitions import submissions_partitions
from assets.resources import CbmSettings
from assets.staged import staged_path
from cbm.contract import FIELDS
from cbm.protection import anonymise_frame, load_key
from warehouse.db import report_columns
from warehouse.resource import WarehouseResource

OWNER = "team:ingestion"
ISO_TS = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)"


def _cast_sql(field: str, ftype: str) -> str:
    c = f'trim("{field}")'
    if ftype == "int":
        return f"CASE WHEN regexp_full_match({c}, '[+-]?[0-9]{{1,18}}') THEN TRY_CAST({c} AS BIGINT) END"
    if ftype == "float":
        return f"CASE WHEN isfinite(TRY_CAST({c} AS DOUBLE)) THEN TRY_CAST({c} AS DOUBLE) END"
    if ftype == "ts":
        return f"CASE WHEN regexp_full_match({c}, '{ISO_TS}') THEN TRY_CAST({c} AS TIMESTAMPTZ) END"
    return f'"{field}"'


def insert_sql(kind: str) -> str:
    """INSERT from the registered frame ``anon_frame`` (with its submission in ``_sha``) into
    ``anon_<kind>``, casting typed fields."""
    select = []
    for col in report_columns(kind, with_raw=True):
        if col.endswith("__raw"):
            select.append(f'"{col[:-5]}" AS "{col}"')
        elif col in FIELDS[kind]:
            select.append(f'{_cast_sql(col, FIELDS[kind][col])} AS "{col}"')
        elif col == "submission_sha":
            select.append("_sha AS submission_sha")
        else:
            select.append(f'"{col}"')
    return f"INSERT INTO anon_{kind} SELECT {', '.join(select)} FROM anon_frame"


BATCH_ROWS = 250_000


def _insert(con, kind: str, frames: list[pl.DataFrame]) -> None:
    if not frames:
        return
    con.register("anon_frame", pl.concat(frames, how="vertical").to_arrow())
    con.execute(insert_sql(kind))
    con.unregister("anon_frame")
    frames.clear()


@dg.asset(
    partitions_def=submissions_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["staged_reports"],
    group_name="anonymised",
    kinds={"polars", "duckdb"},
    owners=[OWNER],
    pool="warehouse",
    description=(
        "Staged rows with submitters as HMAC-SHA-256 pseudonyms, free text scrubbed, technical "
        "keys keyed-hashed and types cast, in warehouse tables anon_incidents, anon_compliance "
        "and anon_attestations. Nothing raw from a party's text reaches the warehouse."
    ),
)
def anonymised_reports(
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    registry = settings.load_registry()
    key = load_key()
    names = [p.name for p in registry.parties.values()]
    counts = {k: 0 for k in FIELDS}
    with warehouse.connect() as con:
        todo = con.execute(
            "SELECT sha256, kind, party_code FROM submissions "
            "WHERE sha256 IN (SELECT unnest(?::VARCHAR[])) AND status = 'staged' ORDER BY sha256",
            [context.partition_keys],
        ).fetchall()
        for kind in FIELDS:
            con.execute(
                f"DELETE FROM anon_{kind} WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))",
                [context.partition_keys],
            )
        # Appends are batched (one large insert beats many small ones into the DuckDB file);
        # a batch is written once it holds BATCH_ROWS rows, so memory stays bounded.
        pending: dict[str, list[pl.DataFrame]] = {k: [] for k in FIELDS}
        for sha, kind, party in todo:
            frame = pl.read_parquet(staged_path(settings, sha))
            anon = anonymise_frame(frame, kind, key.pseudonym(party), key, names)
            pending[kind].append(anon.with_columns(pl.lit(sha).alias("_sha")))
            counts[kind] += anon.height
            if sum(f.height for f in pending[kind]) >= BATCH_ROWS:
                _insert(con, kind, pending[kind])
        for kind, frames in pending.items():
            _insert(con, kind, frames)
        schema = table_schema(con, "anon_incidents")
        preview = markdown_preview(
            con,
            "SELECT source, report_id, category, occurred_at, region, severity, technical_keys, summary "
            "FROM anon_incidents WHERE submission_sha IN (SELECT unnest(?::VARCHAR[])) ORDER BY ALL",
            [context.partition_keys],
        )
    context.log.info(f"anonymised {sum(counts.values())} rows from {len(todo)} submissions")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(counts.values()),
            "dagster/column_schema": schema,
            **{f"rows_{k}": v for k, v in counts.items()},
            "key_version": key.version,
            "preview_incidents": dg.MetadataValue.md(preview),
        }
    )
