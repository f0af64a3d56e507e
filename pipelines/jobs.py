"""Jobs: ingest submissions (partitioned by file hash) and publish a release."""

import dagster as dg

from pipelines.partitions import submissions_partitions

ingest_submissions = dg.define_asset_job(
    name="ingest_submissions",
    selection=dg.AssetSelection.assets(
        "landed_submissions", "staged_reports", "anonymised_reports", "validated_reports"
    ),
    partitions_def=submissions_partitions,
    description="Land, parse, anonymise and validate one or more submissions (dynamic partitions).",
)

publish_release = dg.define_asset_job(
    name="publish_release",
    selection=dg.AssetSelection.assets(
        "warehouse_tables",
        "incident_clusters",
        "compliance_verdicts",
        "subject_indicators",
        "release",
    ),
    description="Verify, compute indicators and publish a release from the current warehouse.",
)
