"""``cbm alerts``: threshold alerts, their delivery, acknowledgement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from pipelines.cli.base import command
from pipelines.output import EXIT_OK, CannotRun, _check_folder, _say
from warehouse.queries import query


def _delivery_state(deliveries: list[dict] | None) -> str:
    """One word per notifier: delivered, or failed with the last reason."""
    if not deliveries:
        return "not sent (no notifier)"
    by_notifier: dict[str, dict] = {}
    for d in deliveries:
        if not by_notifier.get(d["notifier"], {}).get("ok"):
            by_notifier[d["notifier"]] = d
    return "; ".join(
        f"{n} delivered" if d["ok"] else f"{n} FAILED ({d['detail']})"
        for n, d in sorted(by_notifier.items())
    )


def _report_acknowledgement(workdir: Path, still_open: int, alert_id: str, by: str) -> str:
    """Record the acknowledgement in the deployment's Dagster instance (DAGSTER_HOME, or
    <workdir>/dagster_home): a materialization of the asset alert_acks (the table this command
    alone writes), and a new evaluation of the check alerts_acknowledged on the alerts' latest
    materialization, so the UI shows it at once. Says what it did in one line."""
    home = Path(os.environ.get("DAGSTER_HOME") or workdir / "dagster_home")
    if not (home / "dagster.yaml").is_file():
        return (
            f"the UI's check alerts_acknowledged follows at the next alerts update (no Dagster "
            f"instance at {home}; set DAGSTER_HOME to the deployment's to update it now)"
        )
    import dagster as dg

    from cbm.alerts import CHECK, acknowledgement
    from compat.dagster import AssetCheckEvaluationTargetMaterializationData
    from pipelines.event_log import instance_at

    key = dg.AssetKey("alerts")
    with instance_at(home) as instance:
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1
        ).records
        if not latest:
            return f"the alerts asset has no materialization in {home}: nothing to update"
        record = latest[0]
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "alert_acks",
                description=f"{alert_id} acknowledged by {by}",
                metadata={"alert_id": alert_id, "by": by, "unacknowledged": still_open},
            )
        )
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=CHECK,
                passed=still_open == 0,
                severity=dg.AssetCheckSeverity.WARN,
                description=acknowledgement(still_open),
                metadata={"unacknowledged": still_open},
                target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                ),
            )
        )
    return f"the UI's check alerts_acknowledged now says: {still_open} not acknowledged ({home})"


@command(
    "alerts",
    "threshold alerts (newest first): delivery and acknowledgement; --ack to acknowledge",
)
@click.option("--workdir", required=True, help="the workdir of 'cbm run'")
@click.option("--open", is_flag=True, help="only alerts nobody acknowledged")
@click.option("--json", is_flag=True, help="one JSON document on stdout")
@click.option("--ack", metavar="ID", help="acknowledge this alert (with --by)")
@click.option("--by", metavar="PARTY", help="the registered party code acknowledging it")
@click.option("--note", help="with --ack: a note kept with the acknowledgement")
def alerts_command(args) -> int:
    return cmd_alerts(args)


def cmd_alerts(args) -> int:
    """List alerts (newest first) or acknowledge one. Reads the warehouse only; an
    acknowledgement is one row added to alert_acks."""
    from datetime import UTC, datetime

    import duckdb

    from warehouse.db import Warehouse, sql_file

    workdir = Path(args.workdir)
    _check_folder("--workdir", workdir, must_exist=True)
    path = workdir / "warehouse.duckdb"
    if not path.exists():
        raise CannotRun(f"no warehouse in {workdir} (has 'cbm run' been run with this --workdir?)")
    if (args.ack is None) != (args.by is None):
        raise CannotRun("--ack ID and --by PARTY go together: who acknowledges which alert")
    if args.ack is not None:
        with Warehouse(str(path)).connect(readers=True) as con:
            if not con.execute(query("cli.alert_exists"), [args.ack]).fetchone():
                raise CannotRun(
                    f"--ack {args.ack}: no such alert in {path} ('cbm alerts' lists them)"
                )
            if not con.execute(query("cli.party_exists"), [args.by]).fetchone():
                raise CannotRun(
                    f"--by {args.by}: not a party code of the registry this workdir ran with"
                )
            done = con.execute(query("cli.acknowledged_at"), [args.ack, args.by]).fetchone()
            if done:
                _say(
                    f"{args.ack} was already acknowledged by {args.by} at {done[0]}: kept as it was"
                )
                return EXIT_OK
            con.execute(query("cli.acknowledge"), [args.ack, args.by, datetime.now(UTC), args.note])
            still_open = con.execute(query("cli.unacknowledged")).fetchone()[0]
        _say(f"acknowledged {args.ack} by {args.by}; {still_open} alert(s) still unacknowledged")
        _say(_report_acknowledgement(workdir, still_open, args.ack, args.by))
        return EXIT_OK
    with Warehouse(str(path)).connect(read_only=True) as con:
        try:
            cursor = con.execute(sql_file("alert_listing"))
        except duckdb.CatalogException:  # a warehouse from before alerts existed
            alerts = []
        else:
            names = [d[0] for d in cursor.description]
            alerts = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    if args.open:
        alerts = [a for a in alerts if not a["acks"]]
    if args.json:
        print(json.dumps({"alerts": alerts}, indent=2))
        return EXIT_OK
    if not alerts:
        _say("no alerts" + (" open" if args.open else "") + f" in {workdir}")
        return EXIT_OK
    for a in alerts:
        acked = ", ".join(f"{k['by']} at {k['at']}" for k in a["acks"]) or "NOT acknowledged"
        _say(
            f"{a['alert_id']}  {a['subject']} / {a['counterpart']}: level {a['previous_level']} -> "
            f"{a['level']} ({a['status']}, {a['reason']}) as of {a['as_of']}"
        )
        _say(f"{'':20}events: {' '.join(a['evidence'])}")
        _say(f"{'':20}{_delivery_state(a['deliveries'])}; {acked}")
    n_open = sum(1 for a in alerts if not a["acks"])
    _say(f"{len(alerts)} alert(s), {n_open} not acknowledged")
    return EXIT_OK
