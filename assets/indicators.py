"""Indicators: the catalogue (warehouse/sql/indicators/catalogue.yaml), one SQL file each.

Every indicator SQL returns subject, counterpart, period, indicator, value, numerator,
denominator, inputs_definitive and escalation_level; this asset unions them into
``indicator_values`` and labels each row tentative or definitive. A row is definitive when
its inputs are and its period is closed (as-of >= end of the month + review window).
"""

import dagster as dg

from assets.metadata import table_metadata, table_schema
from assets.partitions import monthly_partitions
from assets.resources import RegistryResource
from assets.stages import VERIFICATION, WAREHOUSE_POOL, stage
from warehouse.db import indicator_catalogue, indicator_sql, read_release_context
from warehouse.queries import Sql, query
from warehouse.resource import WarehouseResource

INDICATORS = stage("indicators", VERIFICATION, automated=True)


def build_indicator_values(con, as_of, policy, periods: list[str]) -> int:
    """Recompute ``indicator_values`` for ``periods`` (delete their rows, insert anew)."""
    catalogue = "\nUNION ALL\n".join(
        query(
            "indicators.one",
            disclosure=entry["disclosure"],
            statement=Sql(indicator_sql(entry["name"]).strip().rstrip(";")),
        )
        for entry in indicator_catalogue()
    )
    con.execute(query("indicators.forget"), [periods])
    con.execute(
        query("indicators.compute", catalogue=Sql(catalogue)),
        {
            "as_of": as_of,
            "review_days": policy.review_window_days,
            "thresholds": list(policy.escalation_thresholds),
            "tentative_max": policy.tentative_max_escalation,
            "periods": periods,
        },
    )
    return con.execute(query("indicators.computed"), [periods]).fetchone()[0]


@dg.asset(
    deps=[
        "incident_clusters",
        "event_members",
        "compliance_verdicts",
        "disputes",
        "release_context",
    ],
    partitions_def=monthly_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    **INDICATORS,
    kinds={"duckdb", "sql"},
    pool=WAREHOUSE_POOL,
    description=(
        "Indicator values per subject x month (and per dyad for escalation_level), from the "
        "catalogue in warehouse/sql/indicators, each labelled tentative or definitive, in "
        "table `indicator_values` (before disclosure control). Computed from publishable "
        "inputs only: events and verdicts derived from CLEAR/GREEN reports. One partition per "
        "month, from the first month with events or verdicts to the as-of month (verification "
        "registers them); a backfill of a month range recomputes exactly those periods."
    ),
)
def indicator_values(
    context: dg.AssetExecutionContext, registry: RegistryResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    policy = registry.registry.policy
    periods = list(context.partition_keys)
    with warehouse.connect() as con:
        as_of = read_release_context(con).as_of
        n = build_indicator_values(con, as_of, policy, periods)
        by_indicator = table_metadata(con, query("indicators.by_indicator"), [periods])
        per_month = con.execute(query("indicators.per_month"), [periods]).fetchall()
        schema = table_schema(con, "indicator_values")
        escalation = table_metadata(con, query("indicators.escalation"), [periods])
    # per month: numbers the partitions view shows for each month
    for period, cells, definitive, level in per_month:
        context.add_asset_metadata(
            {
                "cells": int(cells),
                "definitive_cells": int(definitive),
                "tentative_cells": int(cells - definitive),
                "highest_escalation_level": int(level),
            },
            partition_key=period,
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "dagster/column_schema": schema,
            "by_indicator": by_indicator,
            "highest_escalation": escalation,
        }
    )
