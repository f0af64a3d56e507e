"""Verified: the warehouse gate, incident clusters with their status ladder, compliance verdicts.

The release's "now" is its as-of time (contract §4): ``--as-of`` when given, otherwise the
latest timestamp among accepted inputs. ``release_context`` fixes it so every later asset of
the run measures review windows and expiry from the same instant.
"""

import dagster as dg
import polars as pl

from assets.metadata import (
    breakdown,
    counts_by,
    data_docs_of,
    row_count,
    table_metadata,
    table_schema,
)
from assets.partitions import register_months
from assets.resources import CbmSettings, PseudonymKeyResource, RegistryResource
from assets.stages import VERIFICATION, WAREHOUSE_POOL, stage
from cbm.clustering import assign_events
from cbm.contract import KINDS
from cbm.dictionary import DISPUTE_STATUSES, STATUS, VERDICTS
from cbm.release import parse_as_of
from checks.results import INDEX_COLUMNS
from warehouse.db import fetch_arrow, indicator_period_range, read_release_context, sql_file
from warehouse.queries import query
from warehouse.resource import WarehouseResource

VALIDATED = stage("validated", VERIFICATION, automated=True)
VERIFIED = stage("verified", VERIFICATION, automated=True)
WAREHOUSE_RUN_NAME = "whole-warehouse_before-verification"  # the Data Docs name of the run
NOTHING_TO_VERIFY = "no report has been accepted: nothing to verify or publish yet"
EVENTS_LISTED = 200  # events of one status listed in the UI (newest months first)

# One GX checkpoint per group: (suite by table, the columns that name a failing row). The
# report tables name it by its submission row, so GX needs no sample scan of a rule that
# passes (on a million reports a full pass; a whole GROUP BY for a duplicate rule);
# submissions has no such columns.
WAREHOUSE_CHECKPOINTS = (
    ({"submissions": "warehouse_submissions"}, []),
    ({f"reports_{k}": f"warehouse_reports_{k}" for k in KINDS}, INDEX_COLUMNS),
)
WAREHOUSE_SUITES = {t: s for suites, _ in WAREHOUSE_CHECKPOINTS for t, s in suites.items()}


# the warehouse suites run wherever verification does: in the jobs that include them, and in
# a run declarative automation makes for release_context (a check without a condition of its
# own is left out of those, and verification then ran without its gate)
WITH_AUTOMATED_VERIFICATION = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.will_be_requested()
).with_label("whenever automation refreshes release_context")


def gx_checkpoints() -> list[list[tuple[str, str]]]:
    """The (suite, table) lists of ``WAREHOUSE_CHECKPOINTS``, as ``warehouse_table_checks``
    runs them."""
    return [
        [(suite, table) for table, suite in suites.items()] for suites, _ in WAREHOUSE_CHECKPOINTS
    ]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            f"suite_{suite}",
            asset="release_context",
            blocking=True,
            description=f"Great Expectations suite checks/suites/{suite}.json on warehouse table "
            f"{table}; a critical failure blocks verification and publication.",
            automation_condition=WITH_AUTOMATED_VERIFICATION,
        )
        for table, suite in WAREHOUSE_SUITES.items()
    ],
)
def warehouse_table_checks(settings: CbmSettings, warehouse: WarehouseResource):
    """The warehouse-level suites, in the checkpoints of ``WAREHOUSE_CHECKPOINTS``; one Data
    Docs build for their results."""
    from checks.validation import run_suites  # the validation stack: only where it validates

    with warehouse.connect() as con:
        con.execute("CHECKPOINT")
        results = [
            result
            for runs, (_, index_columns) in zip(
                gx_checkpoints(), WAREHOUSE_CHECKPOINTS, strict=True
            )
            for result in run_suites(
                con,
                settings.warehouse_path,
                settings.gx_dir,
                runs,
                index_columns=index_columns,
                rows=sum(row_count(con, table) for _, table in runs),
                run_name=WAREHOUSE_RUN_NAME,
            )
        ]
    docs = data_docs_of(settings, results)
    for result in results:
        yield dg.AssetCheckResult(
            asset_key="release_context",
            check_name=f"suite_{result.suite}",
            passed=not result.critical,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "expectations": result.evaluated,
                "unexpected_by_rule": dg.MetadataValue.json(result.summary()),
                "samples": dg.MetadataValue.json({f.rule: f.sample() for f in result.findings}),
                **(
                    {"data_docs": dg.MetadataValue.url(settings.data_docs_link(docs))}
                    if docs
                    else {}
                ),
            },
        )


@dg.asset(
    deps=[
        "submissions",
        *(f"reports_{k}" for k in KINDS),
        "party_directory",
        "verification_scope",
        "registry_commitments",
        "registry_obligations",
    ],
    **VALIDATED,
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "The as-of time, method version and inputs of the next release (table "
        "`release_context`): `--as-of` when given, otherwise the latest timestamp among the rows "
        "verification reads (the `verification_*` views: current reports without free text, "
        "TLP:RED left out); the inputs are the submissions those rows came from, with the "
        "pseudonymisation key's version and fingerprint, and a digest of the registry tables (which "
        "the release id covers). The warehouse-level Great Expectations suites run as blocking checks on the "
        "accepted warehouse here: a critical failure stops verification and publication. "
        "While no report has been accepted and no as-of time is given there is nothing to "
        "verify: this step then materializes nothing and verification's steps are skipped."
    ),
    output_required=False,
)
def release_context(
    context: dg.AssetExecutionContext,
    settings: CbmSettings,
    registry: RegistryResource,
    pseudonym_key: PseudonymKeyResource,
    warehouse: WarehouseResource,
):
    method_version = registry.registry.method_version
    as_of = parse_as_of(settings.as_of) if settings.as_of else None
    with warehouse.connect() as con:
        if as_of is None and not _any_accepted(con):
            context.log.info(NOTHING_TO_VERIFY)
            return
        key = pseudonym_key.claimed(con)
        con.execute(
            sql_file("release_context"),
            {
                "as_of": as_of,
                "method_version": method_version,
                "key_version": key.version,
                "key_fingerprint": key.fingerprint,
            },
        )
        as_of, n_inputs = con.execute(query("verified.context")).fetchone()
        schema = table_schema(con, "release_context")
        counts = {k: row_count(con, f"verification_{k}") for k in KINDS}
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": 1,
            "dagster/column_schema": schema,
            "as_of": str(as_of),
            "method_version": method_version,
            "input_submissions": n_inputs,
            **{f"verified_{k}": v for k, v in counts.items()},
        }
    )


CLUSTER_TABLES = {
    "event_members": (
        "One row per current incident report (false positives aside) with its event: "
        "event_id, whether it is the event's origin, and how it joined (region, or technical "
        "key or distance to the origin). By source and report_id: join `current_incidents` "
        "for the submission row."
    ),
    "incident_clusters": (
        "Incident clusters (events): reports of one category joined when they fall within the "
        "category's window of the event origin and share its region, lie within the policy "
        "radius of the origin, or share a keyed technical key with a member (origin-anchored, "
        "no chaining). Status ladder reported / tentative / definitive / disputed / expired with "
        "the reason and the sources (pseudonyms). The metadata lists the definitive, tentative "
        "and disputed events (the newest 200 of each) and counts events by category, month and "
        "alleged party against their status. These are all events verification holds; the "
        "release publishes only the publishable ones (derived from CLEAR/GREEN reports), so "
        "its `events_*` counts are at most these."
    ),
    "disputes": (
        "One dispute per report attested and party contradicting it (on an event's member "
        "report or a compliance claim): opened by a `contradicts` attestation; withdrawn when "
        "that party later attests the report otherwise; upheld or rejected by the secretariat's "
        "own attestation on the report (contradicts = upheld, corroborates = rejected). Status "
        "open, upheld, rejected or withdrawn, with its age at the as-of time. An open or upheld "
        "dispute makes the event or verdict disputed (an upheld one on a claim: not_honoured). "
        "These are all disputes verification holds; the release publishes only the publishable "
        "ones (on CLEAR/GREEN reports), so its `open_disputes` is at most `disputes_open`."
    ),
    "event_evidence": (
        "View: the member reports of every event and every attestation on them, what a "
        "verifier inspects for one event (`WHERE event_id = 'E-...'`)."
    ),
}


def _any_accepted(con) -> bool:
    # fetchall, not fetchone: a result left unread keeps its transaction open on the
    # connection a run holds, and release_context returns with no statement after this one
    ((accepted,),) = con.execute(query("verified.accepted_rows")).fetchall()
    return bool(accepted)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "event_members",
            deps=["release_context", "reports_incidents"],
            description=CLUSTER_TABLES["event_members"],
            **VERIFIED,
            kinds={"duckdb", "polars"},
        ),
        dg.AssetSpec(
            "disputes",
            deps=[
                "event_members",
                "release_context",
                "party_directory",
                "reports_attestations",
                "reports_compliance",
            ],
            description=CLUSTER_TABLES["disputes"],
            **VERIFIED,
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "incident_clusters",
            deps=[
                "event_members",
                "disputes",
                "release_context",
                "party_directory",
                "reports_attestations",
            ],
            description=CLUSTER_TABLES["incident_clusters"],
            **VERIFIED,
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "event_evidence",
            deps=["event_members", "reports_attestations"],
            description=CLUSTER_TABLES["event_evidence"],
            **VERIFIED,
            kinds={"duckdb"},
        ),
    ],
    pool=WAREHOUSE_POOL,
)
def events_and_disputes(
    context: dg.AssetExecutionContext, registry: RegistryResource, warehouse: WarehouseResource
):
    """Makes event_members, disputes, incident_clusters and event_evidence."""
    policy = registry.registry.policy
    with warehouse.connect() as con:
        as_of = read_release_context(con).as_of
        n_members = _cluster_events(con, policy)
        con.execute(sql_file("event_evidence"))
        con.execute(sql_file("disputes"), {"as_of": as_of})
        con.execute(
            sql_file("incident_clusters"),
            {
                "as_of": as_of,
                "review_days": policy.review_window_days,
                "expiry_days": policy.expiry_days,
            },
        )
        metadata = _events_metadata(con)
        span = indicator_period_range(con)
    if span:
        register_months(context.instance, *span)
    metadata["event_members"]["dagster/row_count"] = n_members
    for key in ("event_members", "disputes", "incident_clusters", "event_evidence"):
        yield dg.MaterializeResult(asset_key=key, metadata=metadata[key])


def _cluster_events(con, policy) -> int:
    """event_members: each incident report joined to its event (cbm.clustering by region,
    then the association window and radius in SQL); how many members."""
    # The rows stay in DuckDB, sorted once into a temporary table (within the warehouse's
    # memory limit, spilled beyond it); polars sees only the five columns the region pass
    # needs, read back in that order, and its two result columns are joined on by position
    # (holding every column in Python as well cost more at the peak: benchmarks/README.md,
    # item 30, and M16).
    windows = policy.association_window_hours
    con.execute(query("verified.incident_rows"))
    keys = pl.from_arrow(fetch_arrow(con, query("verified.region_pass_keys")))
    events = assign_events(keys, windows, presorted=True).select("event_id", "is_origin")
    del keys
    con.register("region_events", events.to_arrow())
    con.execute(query("verified.region_members"))
    con.register(
        "association_windows",
        pl.DataFrame({"category": list(windows), "hours": list(windows.values())}).to_arrow(),
    )
    con.execute(sql_file("event_members"), {"radius_km": policy.association_radius_km})
    con.unregister("association_windows")
    con.execute("DROP VIEW region_members")
    con.unregister("region_events")
    con.execute("DROP TABLE incident_rows")
    return events.height


def _events_metadata(con) -> dict[str, dict]:
    """What the UI shows beside each of the four tables."""
    schemas = {t: table_schema(con, t) for t in CLUSTER_TABLES}
    joined = dict(con.execute(query("verified.joined_by")).fetchall())
    listed = query("verified.events_listed")
    return {
        "event_members": {
            "dagster/column_schema": schemas["event_members"],
            "joined_by": dg.MetadataValue.json(joined),
        },
        "disputes": {
            "dagster/row_count": row_count(con, "disputes"),
            "dagster/column_schema": schemas["disputes"],
            **counts_by(con, "disputes", "status", DISPUTE_STATUSES, "disputes_"),
            "by_object_and_status": breakdown(con, "disputes", "object", "status"),
            "open_disputes": table_metadata(
                con, query("verified.open_disputes"), {"limit": EVENTS_LISTED}
            ),
        },
        "incident_clusters": {
            "dagster/row_count": row_count(con, "incident_clusters"),
            "dagster/column_schema": schemas["incident_clusters"],
            **counts_by(con, "incident_clusters", "status", STATUS["events"], "events_"),
            "by_category_and_status": breakdown(con, "incident_clusters", "category", "status"),
            "by_month_and_status": breakdown(con, "incident_clusters", "period", "status"),
            "by_alleged_party_and_status": breakdown(
                con, "incident_clusters", "alleged_party", "status"
            ),
            **{
                f"{status}_events": table_metadata(
                    con, listed, {"status": status, "limit": EVENTS_LISTED}
                )
                for status in ("definitive", "tentative", "disputed")
            },
            "largest_events": table_metadata(con, query("verified.largest_events")),
            "look_up_an_event": dg.MetadataValue.md(
                "```sql\nSELECT * FROM event_evidence WHERE event_id = 'E-…' ORDER BY item DESC, at\n```"
            ),
        },
        "event_evidence": {
            "dagster/row_count": row_count(con, "event_evidence"),
            "dagster/column_schema": schemas["event_evidence"],
        },
    }


@dg.asset(
    deps=[
        "release_context",
        "disputes",
        "reports_compliance",
        "reports_attestations",
        "registry_commitments",
        "registry_obligations",
        "party_directory",
    ],
    **VERIFIED,
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "One verdict per commitment occurrence due by the as-of time (registry schedule + "
        "grace; milestone: one occurrence per date) or reported: honoured_confirmed, "
        "honoured_self_reported, late, not_honoured, missed, disputed, with the reason and "
        "tentative/definitive status. A claim with an open dispute is disputed; one whose "
        "dispute the secretariat upheld is not_honoured."
    ),
)
def compliance_verdicts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        as_of = read_release_context(con).as_of
        first = con.execute(query("verified.first_month"), [as_of]).fetchone()[0]
        con.execute(sql_file("compliance_verdicts"), {"as_of": as_of, "first_month": first})
        n = row_count(con, "compliance_verdicts")
        schema = table_schema(con, "compliance_verdicts")
        views = {
            **counts_by(con, "compliance_verdicts", "verdict", VERDICTS, "verdicts_"),
            **counts_by(con, "compliance_verdicts", "status", STATUS["compliance"], "status_"),
            "by_verdict_and_status": breakdown(con, "compliance_verdicts", "verdict", "status"),
            "by_subject_and_verdict": breakdown(con, "compliance_verdicts", "subject", "verdict"),
            "by_month_and_verdict": breakdown(con, "compliance_verdicts", "period", "verdict"),
            "by_commitment_and_verdict": breakdown(
                con, "compliance_verdicts", "commitment_id", "verdict"
            ),
        }
        span = indicator_period_range(con)
    if span:
        register_months(context.instance, *span)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": n, "dagster/column_schema": schema, **views}
    )


@dg.asset(
    deps=[
        "compliance_verdicts",
        "reports_compliance",
        "registry_commitments",
        "registry_obligations",
        "party_directory",
    ],
    **VERIFIED,
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "The security calendar (table `calendar_entries`): every activity a party notified in "
        "advance (its own advance_notification report with activity_start, and activity_end "
        "when given) with the lead time it gave and the lead time required, and every "
        "milestone of the registry (schedule milestone:YYYY-MM-DD,...) per obligated party, "
        "each with its verdict when one is due (status upcoming otherwise)."
    ),
)
def calendar_entries(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        con.execute(sql_file("calendar_entries"))
        n = row_count(con, "calendar_entries")
        schema = table_schema(con, "calendar_entries")
        views = {
            "by_type_and_status": breakdown(con, "calendar_entries", "entry_type", "status"),
            "upcoming": table_metadata(con, query("verified.upcoming"), {"limit": EVENTS_LISTED}),
        }
    return dg.MaterializeResult(
        metadata={"dagster/row_count": n, "dagster/column_schema": schema, **views}
    )
