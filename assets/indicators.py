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
from warehouse.resource import WarehouseResource

INDICATORS = stage("indicators", VERIFICATION, automated=True)


def build_indicator_values(con, as_of, policy, periods: list[str]) -> int:
    """Recompute ``indicator_values`` for ``periods`` (delete their rows, insert anew)."""
    parts = []
    for entry in indicator_catalogue():
        parts.append(
            f"""SELECT subject, CAST(counterpart AS VARCHAR) AS counterpart, period, indicator,
                       CAST(value AS DOUBLE) AS value, CAST(numerator AS BIGINT) AS numerator,
                       CAST(denominator AS BIGINT) AS denominator, inputs_definitive,
                       CAST(escalation_level AS INTEGER) AS escalation_level,
                       '{entry["disclosure"]}' AS disclosure
                FROM ({indicator_sql(entry["name"]).strip().rstrip(";")})"""
        )
    # Indicators are computed from what may be published only (contract §5): events and
    # verdicts derived from CLEAR/GREEN reports. These names shadow the tables for the
    # catalogue's SQL, so nothing above TLP:GREEN reaches a published figure, and a figure
    # that another product also answers (events, compliance) gives the same number.
    publishable = """WITH
      incident_clusters AS (SELECT * FROM main.incident_clusters WHERE tlp_publishable(tlp_rank)),
      event_members AS (SELECT m.* FROM main.event_members m SEMI JOIN incident_clusters c USING (event_id)),
      compliance_verdicts AS (SELECT * FROM main.compliance_verdicts WHERE tlp_publishable(tlp_rank)),
      disputes AS (SELECT * FROM main.disputes WHERE tlp_publishable(tlp_rank))
    """
    union = publishable + "SELECT * FROM (" + "\nUNION ALL\n".join(parts) + ")"
    con.execute(
        "DELETE FROM indicator_values WHERE period IN (SELECT unnest(?::VARCHAR[]))", [periods]
    )
    con.execute(
        f"""INSERT INTO indicator_values BY NAME
        SELECT * EXCLUDE (inputs_definitive),
          CASE WHEN inputs_definitive AND CAST($as_of AS DATE) >=
                    last_day(CAST(period || '-01' AS DATE)) + to_days($review_days + 1)
               THEN 'definitive' ELSE 'tentative' END AS status
        FROM ({union})
        WHERE period IN (SELECT unnest($periods::VARCHAR[]))
        ORDER BY period, subject, counterpart, indicator""",
        {
            "as_of": as_of,
            "review_days": policy.review_window_days,
            "thresholds": list(policy.escalation_thresholds),
            "tentative_max": policy.tentative_max_escalation,
            "periods": periods,
        },
    )
    return con.execute(
        "SELECT count(*) FROM indicator_values WHERE period IN (SELECT unnest(?::VARCHAR[]))",
        [periods],
    ).fetchone()[0]


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
        by_indicator = table_metadata(
            con,
            "SELECT split_part(indicator, '.', 1) AS indicator, count(*) AS cells, "
            "count(*) FILTER (WHERE status = 'definitive') AS definitive, "
            "count(*) FILTER (WHERE status = 'tentative') AS tentative "
            "FROM indicator_values WHERE period IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY ALL ORDER BY ALL",
            [periods],
        )
        per_month = con.execute(
            "SELECT period, count(*), count(*) FILTER (WHERE status = 'definitive'), "
            "coalesce(max(escalation_level), 0) FROM indicator_values "
            "WHERE period IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL",
            [periods],
        ).fetchall()
        schema = table_schema(con, "indicator_values")
        escalation = table_metadata(
            con,
            "SELECT period, subject, counterpart, value, escalation_level, status "
            "FROM indicator_values WHERE indicator = 'escalation_level' "
            "AND period IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY value DESC, subject, counterpart, period LIMIT 25",
            [periods],
        )
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
