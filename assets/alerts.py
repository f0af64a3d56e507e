"""Alerts: each dyad's escalation level brought up to date after every ingestion, an alert
recorded once when it rises, delivered through the notifiers of policy.yaml ``alerts:``.

The level is the one escalation_level computes at month ends, taken at the as-of time
(warehouse/sql/dyad_levels.sql). Alerts and their deliveries live in the warehouse
(``alerts``, ``alert_deliveries``; acknowledgements in ``alert_acks``, written by
``cbm alerts --ack``).
"""

from datetime import UTC, datetime

import dagster as dg

from assets.metadata import declared_schema, row_count, table_metadata, table_schema
from assets.resources import RegistryResource
from assets.stages import VERIFICATION, WAREHOUSE_POOL, stage
from cbm.alerts import CHECK, Alert, acknowledgement, deliver
from warehouse.db import read_release_context, sql_file
from warehouse.queries import query
from warehouse.resource import WarehouseResource

ALERTS = stage("alerts", VERIFICATION, automated=True)
LISTED = 200


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "dyad_levels",
            deps=["incident_clusters", "release_context"],
            description=(
                "The escalation level (1-5) of every dyad (alleged party x affected region) at "
                "the as-of time: the severity-weighted sum of publishable events that began in "
                "the 30 days up to it against escalation_thresholds (tentative evidence alone "
                "reaches at most tentative_max_escalation), with the events behind it. Brought "
                "up to date after every ingestion; what the next update compares with."
            ),
            **ALERTS,
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "alerts",
            deps=["dyad_levels", "party_directory", "alert_acks"],
            description=(
                "One alert per rise of a dyad's level (or a tentative level confirmed), recorded "
                "once (table `alerts`: dyad, level, previous level, evidence event ids, status, "
                "as-of and wall-clock time) and delivered through the notifiers of policy.yaml "
                "`alerts:` (webhook, e-mail), every attempt kept in `alert_deliveries`; a failed "
                "delivery is tried again on the next update. `cbm alerts --ack ID --by PARTY` "
                "acknowledges one (`alert_acks`); the check `alerts_acknowledged` warns while "
                "any is not."
            ),
            **ALERTS,
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "alert_deliveries",
            deps=["alerts"],
            metadata=declared_schema("alert_deliveries"),
            description=(
                "Every attempt to deliver an alert: alert, notifier, attempt, time, whether it "
                "went through and the endpoint's answer or the reason it failed. Written by the "
                "alerts update that made the attempt; `cbm alerts` shows the last per notifier."
            ),
            **ALERTS,
            kinds={"duckdb"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            CHECK,
            asset="alerts",
            description=(
                "Warns while an alert has not been acknowledged (`cbm alerts --ack ID --by "
                "PARTY`); the metadata lists them. Evaluated when the alerts are brought up to "
                "date."
            ),
        )
    ],
    pool=WAREHOUSE_POOL,
)
def alerts(
    context: dg.AssetExecutionContext, registry: RegistryResource, warehouse: WarehouseResource
):
    reg = registry.registry
    policy = reg.policy
    with warehouse.connect(readers=True) as con:
        as_of = read_release_context(con).as_of
        raised, open_rows, delivered = _raise_alerts(con, policy, as_of)
    # deliver with the warehouse closed: a slow notifier holds no lock
    pending = [Alert(*row[:7], tuple(row[7]), row[8], row[9]) for row in open_rows]
    attempts = deliver(
        policy.alerts,
        pending,
        lambda alert_id, notifier: (alert_id, notifier) not in delivered,
        reg.method_version,
        policy.escalation_thresholds,
    )
    for a in attempts:
        if not a.ok:
            context.log.warning(f"alert {a.alert_id}: {a.notifier} attempt {a.attempt}: {a.detail}")
    with warehouse.connect(readers=True) as con:
        if attempts:
            con.executemany(
                query("alerts.delivered_attempt"),
                [[a.alert_id, a.notifier, a.attempt, a.at, a.ok, a.detail] for a in attempts],
            )
        levels = con.execute(query("alerts.levels_summary")).fetchone()
        meta = _alerts_metadata(con)
    schemas = meta.pop("schemas")
    n_open = len(open_rows)
    yield dg.MaterializeResult(
        asset_key="dyad_levels",
        metadata={
            "dagster/row_count": levels[0],
            "dagster/column_schema": schemas["dyad_levels"],
            "as_of": str(as_of),
            "highest_level": int(levels[1]),
            "levels": meta["levels"],
        },
    )
    yield dg.MaterializeResult(
        asset_key="alerts",
        metadata={
            "dagster/row_count": meta["total"],
            "dagster/column_schema": schemas["alerts"],
            "raised_now": raised,
            "unacknowledged": n_open,
            "notifiers": ", ".join(policy.alerts.notifiers) or "none configured",
            "delivery_attempts_now": len(attempts),
            "failed_deliveries": meta["failed_deliveries"],
            "open_alerts": meta["open_alerts"],
        },
    )
    yield dg.MaterializeResult(
        asset_key="alert_deliveries",
        metadata={
            "dagster/row_count": meta["deliveries"],
            "attempts_now": len(attempts),
            "failed_now": sum(1 for a in attempts if not a.ok),
        },
    )
    yield dg.AssetCheckResult(
        asset_key="alerts",
        check_name=CHECK,
        passed=n_open == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=acknowledgement(n_open),
        metadata={"unacknowledged": n_open, "open_alerts": meta["open_alerts"]},
    )


def _raise_alerts(con, policy, as_of):
    """dyad_levels recomputed as of the release's "now"; an alert raised for each dyad whose
    level crossed a threshold since. How many were raised, the open alerts, and the
    (alert, notifier) pairs already delivered."""
    con.execute(
        sql_file("dyad_levels"),
        {
            "as_of": as_of,
            "thresholds": list(policy.escalation_thresholds),
            "tentative_max": policy.tentative_max_escalation,
        },
    )
    before = row_count(con, "alerts")
    con.execute(sql_file("alerts"), {"raised_at": datetime.now(UTC)})
    raised = row_count(con, "alerts") - before
    con.execute(query("alerts.replace_levels"))
    open_rows = con.execute(query("alerts.open")).fetchall()
    delivered = set(con.execute(query("alerts.delivered")).fetchall())
    return raised, open_rows, delivered


def _alerts_metadata(con) -> dict:
    """What the UI lists beside dyad_levels and alerts."""
    return {
        "levels": table_metadata(con, query("alerts.levels_listed"), {"limit": LISTED}),
        "open_alerts": table_metadata(con, query("alerts.open_listed"), {"limit": LISTED}),
        "failed_deliveries": con.execute(query("alerts.failed_deliveries")).fetchone()[0],
        "schemas": {t: table_schema(con, t) for t in ("dyad_levels", "alerts")},
        "total": row_count(con, "alerts"),
        "deliveries": row_count(con, "alert_deliveries"),
    }


# Written outside any run, by `cbm alerts --ack` (pipelines/cli/alerts.py), which records
# each acknowledgement in the instance as a materialization of this asset.
alert_acks = dg.AssetSpec(
    "alert_acks",
    description=(
        "Acknowledgements of alerts: alert, the registered party that acknowledged it, when, "
        "and its note. Written only by `cbm alerts --ack ID --by PARTY` (never by a run); each "
        "acknowledgement is recorded here as a materialization, and the alerts update reads "
        "the table to tell open alerts from acknowledged ones."
    ),
    **stage("alerts", VERIFICATION),
    kinds={"duckdb"},
    metadata=declared_schema("alert_acks"),
)
