"""Jobs. `cbm run` chains two runs, one per partitioned stage: ingest_and_verify (the
submissions' partition range, then verification) > indicators_and_release (the months with
data, then the release). ingest_submissions and verify_reports are the first run's halves,
compute_indicators and publish_release the second's, for the sensor, the UI and the schedule
(and for a `cbm run` with nothing to ingest, which verifies alone). The registry tables are
refreshed by ingestion and by verify_reports, so a run always checks and verifies against
the registry it was given."""

import dagster as dg

REGISTRY = [
    "party_directory",
    "verification_scope",
    "registry_commitments",
    "registry_obligations",
    "registry_regions",
]

INGESTION = [
    *REGISTRY,
    "landed_submissions",
    "staged_submissions",
    "anon_incidents",
    "anon_compliance",
    "anon_attestations",
    "validation_findings",
    "reports_incidents",
    "reports_compliance",
    "reports_attestations",
    "submissions",
    "quarantine",
]

ingest_submissions = dg.define_asset_job(
    name="ingest_submissions",
    selection=dg.AssetSelection.assets(*INGESTION),
    description=(
        "Land, parse, anonymise and validate one or more submissions (dynamic partitions, one "
        "per file hash), then refresh the submissions and quarantine views."
    ),
)

# what verification computes from the warehouse (and re-derivation recomputes from a bundle)
VERIFICATION = [
    "event_members",
    "disputes",
    "incident_clusters",
    "event_evidence",
    "compliance_verdicts",
    "calendar_entries",
]

# what verify_reports makes besides the registry tables: what ingest_and_verify adds to
# ingestion, which refreshes the registry tables itself
VERIFY_AFTER_INGESTION = [
    "release_context",
    *VERIFICATION,
    "dyad_levels",
    "alerts",
    "alert_deliveries",
]

verify_reports = dg.define_asset_job(
    name="verify_reports",
    selection=dg.AssetSelection.assets(*REGISTRY, *VERIFY_AFTER_INGESTION),
    description=(
        "Fix the as-of time, run the warehouse suites, cluster incidents, track disputes, "
        "compute verdicts and the calendar, bring dyad levels up to date and raise alerts."
    ),
)

# cbm run's first step: one run for what would be two (decision 3 of #40: a run per
# partitioned stage; a run costs Dagster planning, a job snapshot and its events: M51)
ingest_and_verify = dg.define_asset_job(
    name="ingest_and_verify",
    selection=dg.AssetSelection.assets(*INGESTION, *VERIFY_AFTER_INGESTION),
    description=(
        "What `cbm run` does first: ingest one or more submissions (a partition range), then "
        "verify the whole warehouse with the registry ingestion just refreshed: "
        "ingest_submissions and verify_reports in one run. Verification is skipped (its steps "
        "shown as skipped) while no report has been accepted and no as-of time is given."
    ),
)

rederive_verification = dg.define_asset_job(
    name="rederive_verification",
    selection=dg.AssetSelection.assets(*VERIFICATION),
    description=(
        "Cluster incidents and compute verdicts on a warehouse filled from a member bundle "
        "(`cbm rederive`): the registry tables and release_context come from the bundle. No "
        "alerts: re-deriving tells nobody anything."
    ),
)

compute_indicators = dg.define_asset_job(
    name="compute_indicators",
    selection=dg.AssetSelection.assets("indicator_values"),
    description="Indicator values for one month or a range of months (backfill from the UI).",
)

RELEASE_ASSETS = ["release", "published_event_members", "own_publications"]

publish_release = dg.define_asset_job(
    name="publish_release",
    selection=dg.AssetSelection.assets(*RELEASE_ASSETS),
    description="Cut a release from the current indicators, verdicts and events (on demand).",
)

# cbm run's last step: one run for what would be two (a run costs Dagster about 0.2 s of
# planning and recording: benchmarks/README.md, M23)
indicators_and_release = dg.define_asset_job(
    name="indicators_and_release",
    selection=dg.AssetSelection.assets("indicator_values", *RELEASE_ASSETS),
    description=(
        "Indicator values for a range of months, then the release from them (what `cbm run` "
        "does after verification): compute_indicators and publish_release in one run."
    ),
)

# each partitioned ingestion job's assets, named in the runs the inbox sensor requests: a run
# that names its assets is one Dagster's automation knows also ran the assets it verified
# (any_deps_updated ignores updates made by such a run), so none is asked for again
JOB_ASSETS = {
    ingest_submissions.name: INGESTION,
    ingest_and_verify.name: [*INGESTION, *VERIFY_AFTER_INGESTION],
}

JOBS = [
    ingest_submissions,
    verify_reports,
    ingest_and_verify,
    rederive_verification,
    compute_indicators,
    publish_release,
    indicators_and_release,
]
