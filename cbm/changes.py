"""What changed since the previous release, row by row (contract §4, ``changes/*``).

For each product, one row per key that was added, removed or revised, with the old and new
value and status, and (``changed``) each field that differs, old and new: ``numerator 3 -> 4;
status tentative -> definitive``. Keys compare with NULL-safe equality (a dyad's counterpart is NULL for
every other indicator). An event whose id went away while its reports now sit in another
event is ``replaced_by`` that one (re-anchored or merged), not merely removed.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

KEYS = {
    "indicators": ["period", "subject", "counterpart", "indicator"],
    "compliance": ["period", "subject", "commitment_id"],
    "events": ["event_id"],
}
# what "the value" of a row is; for events, its public attributes together
VALUE_SQL = {
    "indicators": "CAST({t}.value AS VARCHAR)",
    "compliance": "{t}.verdict",
    "events": "concat_ws(';', {t}.period, {t}.category, {t}.region, {t}.week, {t}.severity_band, "
    "{t}.n_sources_bucket, {t}.alleged)",
}
# a difference here (beyond status) makes a row revised
COMPARED = {
    "indicators": ["value", "numerator", "denominator", "suppressed", "escalation_level"],
    "compliance": ["verdict"],
    "events": [
        "period",
        "category",
        "region",
        "week",
        "severity_band",
        "n_sources_bucket",
        "alleged",
    ],
}
CHANGES = ("added", "removed", "revised", "status_changed", "replaced_by")


def product_changes(
    product: str,
    new: pa.Table,
    old_root: Path | None,
    replaced: dict[str, str] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """The change rows of one product: ``new`` as it will be published, ``old_root`` the
    previous release's folder (None: every row is added). ``replaced`` maps an event id that
    went away to the event that took its reports. ``con``: an in-memory connection to use
    (its views ``new_rows``, ``old_rows`` and ``replacements`` replaced), for a release's
    products one after the other (a new one costs about 20 ms); otherwise one of its own."""
    if con is None:
        with duckdb.connect() as own:
            return product_changes(product, new, old_root, replaced, own)
    con.register("new_rows", new)
    old_files = sorted(old_root.glob(f"{product}/period=*/*.parquet")) if old_root else []
    if old_files:
        listed = ", ".join(f"'{p}'" for p in old_files)
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW old_rows AS SELECT * FROM read_parquet([{listed}], "
            "hive_partitioning = true)"
        )
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW old_rows AS SELECT * FROM new_rows WHERE false")
    con.register(
        "replacements",
        pa.table(
            {
                "event_id": list((replaced or {}).keys()),
                "successor": list((replaced or {}).values()),
            },
            schema=pa.schema([("event_id", pa.string()), ("successor", pa.string())]),
        ),
    )
    keys = KEYS[product]
    on = " AND ".join(f"o.{k} IS NOT DISTINCT FROM n.{k}" for k in keys)
    differs = " OR ".join(f"o.{c} IS DISTINCT FROM n.{c}" for c in COMPARED[product])
    # every row has a status: a NULL one means the row is not on that side
    key_cols = ", ".join(f"CAST(coalesce(n.{k}, o.{k}) AS VARCHAR) AS {k}" for k in keys)
    # field by field, what a row on both sides changed: "numerator 3 -> 4; status ..."
    fields = ", ".join(
        f"CASE WHEN o.{c} IS DISTINCT FROM n.{c} THEN '{c} ' || "
        f"coalesce(CAST(o.{c} AS VARCHAR), 'null') || ' -> ' || "
        f"coalesce(CAST(n.{c} AS VARCHAR), 'null') END"
        for c in [*COMPARED[product], "status"]
    )
    return con.sql(  # a relation: Arrow output of con.execute copies the rows once more
        f"""SELECT {key_cols},
               CASE WHEN o.status IS NULL THEN 'added'
                    WHEN n.status IS NULL AND r.successor IS NOT NULL THEN 'replaced_by'
                    WHEN n.status IS NULL THEN 'removed'
                    WHEN {differs} THEN 'revised'
                    ELSE 'status_changed' END AS change,
               {VALUE_SQL[product].format(t="o")} AS old_value,
               {VALUE_SQL[product].format(t="n")} AS new_value,
               o.status AS old_status, n.status AS new_status,
               r.successor AS replaced_by,
               CASE WHEN o.status IS NOT NULL AND n.status IS NOT NULL
                    THEN nullif(concat_ws('; ', {fields}), '') END AS changed
        FROM old_rows o FULL OUTER JOIN new_rows n ON {on}
        LEFT JOIN replacements r ON r.event_id = {"o.event_id" if product == "events" else "NULL"}
        WHERE o.status IS NULL OR n.status IS NULL OR ({differs})
           OR o.status IS DISTINCT FROM n.status
        ORDER BY ALL"""
    ).to_arrow_table()


def count_changes(table: pa.Table) -> dict[str, int]:
    """How many rows of each kind of change (every kind named, zeros included)."""
    counts = dict.fromkeys(CHANGES, 0)
    for change in table.column("change").to_pylist():
        counts[change] += 1
    return counts
