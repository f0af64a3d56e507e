"""The inbox sensor: lands new files, adds their submission partitions, requests ingestion."""

import hashlib
from pathlib import Path

import dagster as dg

from assets.partitions import submissions_partitions
from assets.resources import CbmSettings
from cbm.intake import inbox_files, scan_inbox
from pipelines.jobs import ingest_submissions


def inbox_fingerprint(inbox: Path) -> str:
    """Changes whenever a file is added, replaced or removed (names, sizes, mtimes)."""
    h = hashlib.sha256()
    for path, _, _ in inbox_files(inbox):
        st = path.lstat()
        h.update(f"{path}\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dg.sensor(
    job=ingest_submissions,
    minimum_interval_seconds=60,
    description="Watches the inbox; each new file (by content hash) becomes a submission partition and one ingestion run.",
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
    landed = scan_inbox(inbox, settings.landing_dir, log=context.log.info)
    known = set(context.instance.get_dynamic_partitions(submissions_partitions.name))
    shas = sorted({f.sha256 for f in landed})
    new = [s for s in shas if s not in known]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=s, run_key=s) for s in new],
        dynamic_partitions_requests=[submissions_partitions.build_add_request(new)] if new else [],
        cursor=fingerprint,
    )
