"""The inbox sensor: the same ingestion plan as `cbm run` (``cbm.intake.plan_intake``)."""

from pathlib import Path

import dagster as dg

from assets.partitions import submissions_partitions
from assets.resources import CbmSettings
from cbm.intake import inbox_fingerprint, plan_intake
from pipelines.jobs import ingest_submissions


@dg.sensor(
    job=ingest_submissions,
    minimum_interval_seconds=60,
    description=(
        "Watches the inbox (files and their .sig signatures); lands what is new and requests one "
        "ingestion run per submission the ingestion plan names: a new file, or a file whose "
        "signature arrived or changed (partition: the party and file name with the start of the submission's hash; run key: the submission with its signature)."
    ),
)
def inbox_sensor(
    context: dg.SensorEvaluationContext, settings: CbmSettings
) -> dg.SensorResult | dg.SkipReason:
    inbox = Path(settings.inbox)
    if not inbox.is_dir():
        return dg.SkipReason(f"inbox {inbox} does not exist")
    fingerprint = inbox_fingerprint(inbox)
    if fingerprint == context.cursor:
        return dg.SkipReason("no change in the inbox")
    plan = plan_intake(inbox, settings.landing_dir, log=context.log.info)
    known = set(context.instance.get_dynamic_partitions(submissions_partitions.name))
    new = [k for k in plan.partition_keys if k not in known]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=plan.partition_key(sha), run_key=plan.intake_key(sha))
            for sha in plan.to_ingest
        ],
        dynamic_partitions_requests=[submissions_partitions.build_add_request(new)] if new else [],
        cursor=fingerprint,
    )
