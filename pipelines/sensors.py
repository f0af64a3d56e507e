"""The inbox sensor: the same ingestion plan as `cbm run` (``cbm.intake.plan_intake``)."""

import hashlib

import dagster as dg

from assets.partitions import submissions_partitions
from assets.resources import CbmSettings, RegistryResource
from cbm.intake import inbox_fingerprint, plan_intake, staging_waits_marker
from cbm.protection import KeyError_, load_key
from cbm.storage import location
from pipelines.jobs import ingest_and_verify, ingest_submissions
from pipelines.runs import ingestion_batches, run_request
from warehouse.db import WarehouseBusy, warehouse_key_problem


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _key_problem(settings: CbmSettings) -> str | None:
    """Why no run should start: no usable key, or not the warehouse's (key continuity). A
    warehouse busy with a run is not waited for: the run's own assets check the key."""
    try:
        key = load_key()
    except KeyError_ as exc:
        return str(exc)
    try:
        return warehouse_key_problem(
            settings.warehouse_path, key.version, key.fingerprint, wait_seconds=2
        )
    except WarehouseBusy:
        return None


@dg.sensor(
    jobs=[ingest_submissions, ingest_and_verify],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Running by default. Watches the inbox (files and their .sig signatures); lands what is new and requests "
        "the ingestion of every submission the ingestion plan names (a new file, or a file "
        "whose signature arrived or changed): one run per stretch of consecutive submission "
        "partitions, as `cbm run` does, so many files dropped at once are one run (a lone "
        "submission: its partition, run key the submission with its signature; several: a "
        "partition range, run key the digest of theirs). A lone submission's run is "
        "`ingest_and_verify`, as in `cbm run`: verification, dyad levels and alerts follow its "
        "ingestion in the same run, so its alert does not wait for the automation sensor; "
        "files that arrive together are `ingest_submissions`, verified once by automation."
    ),
)
def inbox_sensor(
    context: dg.SensorEvaluationContext, settings: CbmSettings, registry: RegistryResource
) -> dg.SensorResult | dg.SkipReason:
    inbox = location(settings.inbox)
    if not inbox.is_dir():
        return dg.SkipReason(
            f"inbox {inbox.uri} does not exist"
            + (" (on object storage: no object under that prefix yet)" if inbox.remote else "")
        )
    # the inbox, and what runs left waiting at staging (a party's reading time was spent):
    # either changing makes the sensor plan again
    waits = staging_waits_marker(settings.landing_area)
    fingerprint = inbox_fingerprint(inbox) + (f"+{hash_text(waits)}" if waits else "")
    if fingerprint == context.cursor:
        return dg.SkipReason("no change in the inbox")
    if problem := _key_problem(settings):
        return dg.SkipReason(problem)  # nothing landed; the cursor stays, so it asks again
    plan = plan_intake(
        inbox,
        settings.landing_area,
        log=context.log.info,
        workers=settings.worker_count,
        limits=registry.registry.policy.limits,
    )
    known = context.instance.get_dynamic_partitions(submissions_partitions.name)
    runs, new = ingestion_batches(plan, known)  # the same runs cbm run executes
    # a lone submission is ingested and verified in one run, as by cbm run: its alert does
    # not wait for the automation sensor's tick, and automation then asks only for the months
    # of indicators (Dagster's any_deps_updated ignores an update made by a run that also ran
    # the asset). Not for several: Dagster tells that only of a partition materialized last,
    # so automation would verify once more; their verification is automation's, once
    job = ingest_and_verify if len(runs) == 1 and runs[0].size == 1 else ingest_submissions
    return dg.SensorResult(
        run_requests=[run_request(run, job.name) for run in runs],
        dynamic_partitions_requests=[submissions_partitions.build_add_request(new)] if new else [],
        # files left for a later run (a party's budget, a file still being written): the
        # cursor stays, so the next tick plans again though the inbox did not change
        cursor=context.cursor if plan.deferred else fingerprint,
    )
