"""The code location: every asset, check, job, sensor and schedule of cbm-verify.

``dagster dev -w workspace.yaml`` loads ``defs``, whose resources take their folders from the
``CBM_*`` variables when a run or a sensor starts (``make ui`` sets them to the demo's);
nothing is read at import. ``cbm run`` builds the same Definitions with explicit folders
(``build_definitions``) and executes them in-process.
"""

from __future__ import annotations

import dagster as dg

from assets.alerts import alert_acks, alerts
from assets.anonymised import anonymised_reports
from assets.indicators import indicator_values
from assets.landing import landed_submissions
from assets.published import key_rotations, manifest_integrity, release
from assets.registry import registry_tables
from assets.resources import (
    CbmSettings,
    PseudonymKeyResource,
    RegistryResource,
    SigningKeyResource,
)
from assets.staged import staged_submissions
from assets.submissions import quarantine, submissions
from assets.validated import validated_reports
from assets.verified import (
    calendar_entries,
    compliance_verdicts,
    events_and_disputes,
    release_context,
    warehouse_table_checks,
)
from pipelines.event_log import batch_events
from pipelines.jobs import JOBS, publish_release
from pipelines.sensors import inbox_sensor
from warehouse.resource import WarehouseResource

ASSETS = [
    registry_tables,
    landed_submissions,
    staged_submissions,
    anonymised_reports,
    validated_reports,
    submissions,
    quarantine,
    release_context,
    events_and_disputes,
    compliance_verdicts,
    calendar_entries,
    alerts,
    indicator_values,
    release,
    # tables written outside any run, by the cbm command
    alert_acks,
    key_rotations,
]
CHECKS = [warehouse_table_checks, manifest_integrity]

monthly_release_schedule = dg.ScheduleDefinition(
    name="monthly_release",
    job=publish_release,
    cron_schedule="0 6 1 * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Running by default. Cut a release on the first of every month at 06:00 UTC from the indicators, verdicts "
        "and events that declarative automation keeps current."
    ),
)


keep_verification_current = dg.AutomationConditionSensorDefinition(
    "keep_verification_current",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description=(
        "Declarative automation, running by default: after every ingestion that did not "
        "verify (the inbox sensor's runs of files that arrived together, or a backfill) it "
        "refreshes what depends on the new data: release context, events, disputes, "
        "verdicts, calendar, dyad levels and alerts; after every verification, the months "
        "of indicators. So a dyad crossing a threshold is told at once, not at the next "
        "release (a file that arrived alone is verified in its own ingestion run)."
    ),
)


def build_definitions(
    settings: CbmSettings,
    registry: RegistryResource,
    signing_key: SigningKeyResource | None = None,
) -> dg.Definitions:
    """The Definitions for one deployment: its folders, its registry, the publisher's key.
    Every process that builds them (a code server, a run worker, ``cbm run``) has Dagster
    write its asset events in batches (``pipelines.event_log``)."""
    batch_events()
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=JOBS,
        sensors=[inbox_sensor, keep_verification_current],
        schedules=[monthly_release_schedule],
        resources={
            "settings": settings,
            "registry": registry,
            "pseudonym_key": PseudonymKeyResource(),
            "signing_key": signing_key or SigningKeyResource(),
            "warehouse": WarehouseResource(workdir=settings.workdir),
        },
        executor=dg.in_process_executor,  # one process writes the DuckDB file (DESIGN.md)
    )


defs = build_definitions(
    CbmSettings(
        inbox=dg.EnvVar("CBM_INBOX"),
        workdir=dg.EnvVar("CBM_WORKDIR"),
        publish=dg.EnvVar("CBM_PUBLISH"),
    ),
    RegistryResource(directory=dg.EnvVar("CBM_REGISTRY")),
)
