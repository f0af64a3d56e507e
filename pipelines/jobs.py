"""Jobs. Assets of different partitioning run in separate jobs; `cbm run` chains them:
ingest_submissions (per file hash) > verify_reports > compute_indicators (per month) > publish_release.
"""

import dagster as dg

from assets.partitions import monthly_partitions, submissions_partitions

ingest_submissions = dg.define_asset_job(
    name="ingest_submissions",
    selection=dg.AssetSelection.assets(
        "landed_submissions", "staged_reports", "anonymised_reports", "validated_reports"
    ),
    partitions_def=submissions_partitions,
    description="Land, parse, anonymise and validate one or more submissions (dynamic partitions).",
)

verify_reports = dg.define_asset_job(
    name="verify_reports",
    selection=dg.AssetSelection.assets(
        "quarantine", "release_context", "incident_clusters", "compliance_verdicts"
    ),
    description="Fix the as-of time, run the warehouse suites, cluster incidents, compute verdicts.",
)

compute_indicators = dg.define_asset_job(
    name="compute_indicators",
    selection=dg.AssetSelection.assets("indicator_values"),
    partitions_def=monthly_partitions,
    description="Indicator values for one month or a range of months (backfill from the UI).",
)

publish_release = dg.define_asset_job(
    name="publish_release",
    selection=dg.AssetSelection.assets("release"),
    description="Cut a release from the current indicators, verdicts and events (on demand).",
)
