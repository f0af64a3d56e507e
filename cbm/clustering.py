"""Incident association, anchored on the event origin (no transitive chaining).

Within one category and region, reports sorted by ``occurred_at``: the first report is an
origin; every report within the category's window of that origin joins it; the first
report after the window is the next origin. ``next_origin[i]`` (the first report beyond
``t[i] + window``) is computed for all reports at once with ``searchsorted``; the only
Python loop follows those pointers, once per *event*, never once per report.
"""

import hashlib

import numpy as np
import polars as pl

ORDER = ["category", "region", "occurred_at", "source", "report_id"]
# The same order in SQL (polars sorts NULLs first), for callers that let DuckDB sort.
ORDER_SQL = ", ".join(f"{c} NULLS FIRST" for c in ORDER)


def assign_events(
    reports: pl.DataFrame, window_hours: dict[str, int], presorted: bool = False
) -> pl.DataFrame:
    """Add ``event_id`` and ``is_origin`` to reports (columns: category, region, occurred_at,
    source, report_id). Stable: the same reports give the same ids.

    ``presorted``: the rows are already in ``ORDER`` (e.g. ``ORDER BY {ORDER_SQL}`` in
    DuckDB, which sorts a million rows in about a third of the time polars takes here); the
    result then keeps their order row for row, so its two columns can be appended to the
    rows they came from.
    """
    if reports.height == 0:
        return reports.with_columns(
            pl.lit(None, pl.String).alias("event_id"), pl.lit(False).alias("is_origin")
        )
    ordered = reports if presorted else reports.sort(ORDER)
    t = ordered["occurred_at"].dt.epoch("s").to_numpy()
    window = (
        ordered["category"].replace_strict(window_hours, default=48).to_numpy().astype(np.int64)
        * 3600
    )
    # groups are contiguous in this order: a new group starts where category or region changes
    group = (
        ordered.select(
            (
                pl.col("category").ne_missing(pl.col("category").shift())
                | pl.col("region").ne_missing(pl.col("region").shift())
            ).cum_sum()
        )
        .to_series()
        .to_numpy()
    )
    n = ordered.height
    # Reports of one group are contiguous; offset time by group so a search never crosses groups.
    span = int(t.max() - t.min()) + int(window.max()) + 1
    key = (group.astype(np.int64) * span) + (t - t.min())
    next_origin = np.searchsorted(key, key + window, side="right")
    is_origin = np.zeros(n, dtype=bool)
    group_starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    group_end = np.r_[group_starts[1:], n]
    for start, end in zip(group_starts, group_end, strict=True):
        i = start
        while i < end:
            is_origin[i] = True
            i = next_origin[i]
    # Hash only the origins (one per event), then let every member take its origin's id.
    origin_rows = np.flatnonzero(is_origin)
    keys = (
        ordered[origin_rows.tolist()]
        .select(
            pl.concat_str(
                ["category", "region", "source", "report_id"], separator="\x1f", ignore_nulls=True
            )
        )
        .to_series()
    )
    ids = pl.Series(
        [f"E-{hashlib.sha256(k.encode()).hexdigest()[:16]}" for k in keys], dtype=pl.String
    )
    origin_index = np.maximum.accumulate(np.where(is_origin, np.arange(n), 0))
    position = np.searchsorted(origin_rows, origin_index)
    return ordered.with_columns(
        ids.gather(pl.Series(position)).alias("event_id"),
        pl.Series("is_origin", is_origin),
    )
