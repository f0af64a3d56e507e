"""Verified: the warehouse gate, incident clusters with their status ladder, compliance verdicts.

The release's "now" is its as-of time (contract §4): ``--as-of`` when given, otherwise the
latest timestamp among accepted inputs. It is stored in ``release_context`` so every later
asset of the run measures review windows and expiry from the same instant.
"""

from datetime import datetime

import dagster as dg
import polars as pl

from assets.metadata import markdown_preview, table_schema
from assets.partitions import refresh_on_new_data
from assets.resources import CbmSettings
from cbm.clustering import ORDER, ORDER_SQL, assign_events
from cbm.contract import KINDS
from checks.validation import INDEX_COLUMNS, build_data_docs, run_suites
from warehouse.db import fetch_arrow, sql_file
from warehouse.resource import WarehouseResource

OWNER = "team:verification"
TLP_RANK_SQL = "CASE tlp WHEN 'CLEAR' THEN 0 WHEN 'GREEN' THEN 1 WHEN 'AMBER' THEN 2 WHEN 'AMBER+STRICT' THEN 3 ELSE 4 END"
# One GX checkpoint per group: (suite by table, the columns that name a failing row). The
# report tables name it by its submission row, so GX needs no sample scan of a rule that
# passes (on a million reports a full pass; a whole GROUP BY for a duplicate rule);
# submissions has no such columns.
WAREHOUSE_CHECKPOINTS = (
    ({"submissions": "warehouse_submissions"}, []),
    ({f"reports_{k}": f"warehouse_reports_{k}" for k in KINDS}, INDEX_COLUMNS),
)
WAREHOUSE_SUITES = {t: s for suites, _ in WAREHOUSE_CHECKPOINTS for t, s in suites.items()}

AS_OF_SQL = """
SELECT greatest(
  (SELECT max(reported_at) FROM current_incidents),
  (SELECT max(greatest(responded_at, activity_start, notified_at, requested_at)) FROM current_compliance),
  (SELECT max(observed_at) FROM current_attestations))
"""


def parse_as_of(text: str) -> datetime:
    """``--as-of`` must carry an offset, like every timestamp of the contract."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"--as-of {text!r} needs a UTC offset, e.g. 2026-10-31T00:00:00+00:00")
    return value


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            f"suite_{suite}",
            asset="release_context",
            blocking=True,
            description=f"Great Expectations suite checks/suites/{suite}.json on warehouse table "
            f"{table}; a critical failure blocks verification and publication.",
        )
        for table, suite in WAREHOUSE_SUITES.items()
    ],
)
def warehouse_table_checks(settings: CbmSettings, warehouse: WarehouseResource):
    """The warehouse-level suites, in the checkpoints of ``WAREHOUSE_CHECKPOINTS``; one Data
    Docs build for their results."""
    with warehouse.connect() as con:
        con.execute("CHECKPOINT")
        results = [
            result
            for suites, index_columns in WAREHOUSE_CHECKPOINTS
            for result in run_suites(
                con,
                settings.warehouse_path,
                settings.gx_dir,
                [(suite, table) for table, suite in suites.items()],
                index_columns=index_columns,
            )
        ]
    docs = build_data_docs(settings.gx_dir, results, keep=settings.gx_keep_results)
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
                **({"data_docs": dg.MetadataValue.url(docs)} if docs else {}),
            },
        )


@dg.asset(
    deps=["validated_reports"],
    group_name="validated",
    kinds={"duckdb"},
    owners=[OWNER],
    pool="warehouse",
    automation_condition=refresh_on_new_data,
    description=(
        "The accepted warehouse as a whole (submissions, reports_*), fixed at an as-of time in "
        "`release_context`. Warehouse-level Great Expectations suites run as blocking checks on "
        "it: a critical failure stops verification and publication."
    ),
)
def release_context(settings: CbmSettings, warehouse: WarehouseResource) -> dg.MaterializeResult:
    registry = settings.load_registry()
    with warehouse.connect() as con:
        if settings.as_of:
            as_of = parse_as_of(settings.as_of)
        else:
            as_of = con.execute(AS_OF_SQL).fetchone()[0]
        con.execute(
            "CREATE OR REPLACE TABLE release_context AS SELECT CAST(? AS TIMESTAMPTZ) AS as_of, ? AS method_version",
            [as_of, registry.method_version],
        )
        counts = {k: con.execute(f"SELECT count(*) FROM current_{k}").fetchone()[0] for k in KINDS}
        subs = con.execute(
            "SELECT status, count(*) FROM submissions GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(counts.values()),
            "as_of": str(as_of),
            "method_version": registry.method_version,
            **{f"current_{k}": v for k, v in counts.items()},
            "submissions_by_status": dg.MetadataValue.json(dict(subs)),
        }
    )


def read_release_context(con) -> tuple[datetime, str]:
    row = con.execute("SELECT as_of, method_version FROM release_context").fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(
            "no as-of time: the warehouse has no accepted reports and no --as-of was given"
        )
    return row[0], row[1]


@dg.asset(
    deps=["release_context"],
    group_name="verified",
    kinds={"duckdb", "polars"},
    owners=[OWNER],
    pool="warehouse",
    automation_condition=refresh_on_new_data,
    description=(
        "Incident clusters (events): reports of one category joined when they fall within the "
        "category's window of the event origin and share its region, lie within the policy "
        "radius of the origin, or share a keyed technical key with a member (origin-anchored, "
        "no chaining). Status ladder reported / tentative / definitive / disputed / expired with "
        "the reason and the sources (pseudonyms). Members in `event_members` (by source and "
        "report_id: join `current_incidents` for the submission row); reports and "
        "attestations of any event in the view `event_evidence`."
    ),
)
def incident_clusters(settings: CbmSettings, warehouse: WarehouseResource) -> dg.MaterializeResult:
    policy = settings.load_registry().policy
    with warehouse.connect() as con:
        as_of, _ = read_release_context(con)
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW incident_rows AS
            SELECT source, report_id, category, region, occurred_at,
                   reported_at, severity, alleged_party, tlp, {TLP_RANK_SQL} AS tlp_rank,
                   lat, lon, technical_keys
            FROM current_incidents WHERE determination <> 'false_positive'"""
        )
        # The rows come out sorted by DuckDB as one Arrow table; polars sees the five columns
        # the region pass needs, and the rows go back with their region event appended in
        # place. The association statement reads them several times: joining the events back
        # onto the rows by (source, report_id) for each read cost a second at 1M reports.
        windows = policy.association_window_hours
        rows = fetch_arrow(con, f"SELECT * FROM incident_rows ORDER BY {ORDER_SQL}")
        events = assign_events(pl.from_arrow(rows.select(ORDER)), windows, presorted=True)
        con.register(
            "region_members",
            rows.append_column("event_id", events["event_id"].to_arrow()).append_column(
                "is_origin", events["is_origin"].to_arrow()
            ),
        )
        con.register(
            "association_windows",
            pl.DataFrame({"category": list(windows), "hours": list(windows.values())}).to_arrow(),
        )
        con.execute(sql_file("event_members"), {"radius_km": policy.association_radius_km})
        con.unregister("association_windows")
        con.unregister("region_members")
        con.execute("DROP VIEW incident_rows")
        con.execute(sql_file("event_evidence"))
        con.execute(
            sql_file("incident_clusters"),
            {
                "as_of": as_of,
                "review_days": policy.review_window_days,
                "expiry_days": policy.expiry_days,
            },
        )
        by_status = dict(
            con.execute(
                "SELECT status, count(*) FROM incident_clusters GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        n = sum(by_status.values())
        con_joined = con.execute(
            "SELECT count(*) FROM event_members WHERE joined_by <> 'region'"
        ).fetchone()[0]
        schema = table_schema(con, "incident_clusters")
        preview = markdown_preview(
            con,
            "SELECT event_id, category, region, week, n_sources, status, status_reason FROM incident_clusters "
            "ORDER BY n_sources DESC, event_id",
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "dagster/column_schema": schema,
            "by_status": dg.MetadataValue.json(by_status),
            "member_reports": events.height,
            "joined_by_key_or_distance": con_joined,
            "look_up_an_event": dg.MetadataValue.md(
                "```sql\nSELECT * FROM event_evidence WHERE event_id = 'E-…' ORDER BY item DESC, at\n```"
            ),
            "preview": dg.MetadataValue.md(preview),
        }
    )


@dg.asset(
    deps=["release_context"],
    group_name="verified",
    kinds={"duckdb"},
    owners=[OWNER],
    pool="warehouse",
    automation_condition=refresh_on_new_data,
    description=(
        "One verdict per commitment occurrence due by the as-of time (registry schedule + "
        "grace) or reported: honoured_confirmed, honoured_self_reported, late, not_honoured, "
        "missed, disputed, with the reason and tentative/definitive status."
    ),
)
def compliance_verdicts(
    settings: CbmSettings, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        as_of, _ = read_release_context(con)
        # Occurrences start at the first month any party reported on (not at valid_from, which
        # may lie years before the deployment began).
        first = con.execute(
            "SELECT coalesce(min(CAST(period || '-01' AS DATE)), CAST(date_trunc('month', CAST(? AS DATE)) AS DATE)) "
            "FROM current_compliance",
            [as_of],
        ).fetchone()[0]
        con.execute(sql_file("compliance_verdicts"), {"as_of": as_of, "first_month": first})
        by_verdict = dict(
            con.execute(
                "SELECT verdict, count(*) FROM compliance_verdicts GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        schema = table_schema(con, "compliance_verdicts")
        preview = markdown_preview(
            con,
            "SELECT commitment_id, subject, period, verdict, status, verdict_reason FROM compliance_verdicts ORDER BY ALL",
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(by_verdict.values()),
            "dagster/column_schema": schema,
            "by_verdict": dg.MetadataValue.json(by_verdict),
            "preview": dg.MetadataValue.md(preview),
        }
    )
