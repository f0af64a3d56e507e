"""The code location: every asset, check, job, sensor and schedule of cbm-verify.

``dagster dev -w workspace.yaml`` loads ``defs``; ``cbm run`` builds the same Definitions
with explicit folders (``build_definitions``) and executes them in-process.
"""

from __future__ import annotations

import dagster as dg

from assets.anonymised import anonymised_reports
from assets.indicators import indicator_values
from assets.landing import landed_submissions
from assets.published import manifest_integrity, release
from assets.resources import CbmSettings, settings_from_env
from assets.staged import staged_reports
from assets.validated import quarantine, validated_reports
from assets.verified import (
    compliance_verdicts,
    incident_clusters,
    release_context,
    warehouse_table_checks,
)
from pipelines.jobs import compute_indicators, ingest_submissions, publish_release, verify_reports
from pipelines.sensors import inbox_sensor
from warehouse.resource import WarehouseResource

ASSETS = [
    landed_submissions,
    staged_reports,
    anonymised_reports,
    validated_reports,
    quarantine,
    release_context,
    incident_clusters,
    compliance_verdicts,
    indicator_values,
    release,
]
CHECKS = [warehouse_table_checks, manifest_integrity]

monthly_release_schedule = dg.ScheduleDefinition(
    name="monthly_release",
    job=publish_release,
    cron_schedule="0 6 1 * *",
    execution_timezone="UTC",
    description=(
        "Cut a release on the first of every month at 06:00 UTC from the indicators, verdicts "
        "and events that declarative automation keeps current."
    ),
)


def build_definitions(settings: CbmSettings) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[ingest_submissions, verify_reports, compute_indicators, publish_release],
        sensors=[inbox_sensor],
        schedules=[monthly_release_schedule],
        resources={
            "settings": settings,
            "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
        },
        executor=dg.in_process_executor,  # one process writes the DuckDB file (DESIGN.md)
    )


defs = build_definitions(settings_from_env())
