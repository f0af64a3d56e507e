"""What intake did with every submission: the ``submissions`` and ``quarantine`` views.

Both are views over the tables the ingestion stages write (each stage its own table), so
no stage updates another's rows; their SQL is ``warehouse/sql/submissions.sql`` and
``warehouse/sql/quarantine.sql``. ``cbm status`` reads the same views.
"""

import dagster as dg

from assets.metadata import declared_schema, markdown_preview
from assets.partitions import refresh_on_new_data
from cbm.contract import KINDS
from warehouse.resource import WarehouseResource

OWNER = "team:verification"
INTAKE_TABLES = [
    "landed_submissions",
    "staged_submissions",
    "validation_findings",
    *(f"reports_{k}" for k in KINDS),
]


@dg.asset(
    deps=INTAKE_TABLES,
    group_name="validated",
    metadata=declared_schema("submissions"),
    kinds={"duckdb"},
    owners=[OWNER],
    pool="warehouse",
    automation_condition=refresh_on_new_data,
    check_specs=[
        dg.AssetCheckSpec(
            "submission_accounting",
            asset="submissions",
            description="rows_read = rows_accepted + rows_quarantined for every submission",
        )
    ],
    description=(
        "Every submission seen (view over the intake tables; what `cbm status` lists): party, "
        "kind, file name, status (landed, staged, accepted, partial, rejected), rows read, "
        "accepted and quarantined, and the corrections among the accepted rows. Beside it the "
        "views `accepted_reports` (every accepted row of every kind, by submission) and "
        "`submission_copies` (submissions whose bytes another party handed in first)."
    ),
)
def submissions(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        by_status = dict(
            con.execute(
                "SELECT status, count(*) FROM submissions GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        broken = con.execute(
            "SELECT party_code, file_name, rows_read, rows_accepted, rows_quarantined FROM submissions "
            "WHERE status NOT IN ('landed', 'staged') AND rows_read <> rows_accepted + rows_quarantined "
            "ORDER BY ALL"
        ).fetchall()
        totals = con.execute(
            "SELECT coalesce(sum(rows_read), 0), coalesce(sum(rows_accepted), 0), "
            "coalesce(sum(rows_quarantined), 0) FROM submissions"
        ).fetchone()
        preview = markdown_preview(
            con,
            "SELECT left(sha256, 12) AS sha, party_code, kind, file_name, status, rows_read, "
            "rows_accepted, rows_quarantined FROM submissions "
            "ORDER BY status <> 'rejected', party_code, file_name",
            limit=25,
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(by_status.values()),
            "by_status": dg.MetadataValue.json(by_status),
            "rows_read": int(totals[0]),
            "rows_accepted": int(totals[1]),
            "rows_quarantined": int(totals[2]),
            "preview": dg.MetadataValue.md(preview),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="submission_accounting",
                passed=not broken,
                metadata={
                    "submissions": sum(by_status.values()),
                    "violations": dg.MetadataValue.json([list(b) for b in broken]),
                },
            )
        ],
    )


@dg.asset(
    deps=["landed_submissions", "staged_submissions", "validation_findings"],
    group_name="validated",
    metadata=declared_schema("quarantine"),
    kinds={"duckdb"},
    owners=[OWNER],
    pool="warehouse",
    automation_condition=refresh_on_new_data,
    description=(
        "Everything that did not pass (view over the intake tables): whole files rejected at "
        "landing or parsing (row_number NULL) and rows failing a critical expectation, with "
        "the rule, the GX expectation, the column, the (scrubbed) value and the reason. "
        "Warnings (kept rows) are listed too, with severity 'warning'."
    ),
)
def quarantine(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        n, files, critical = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE row_number IS NULL), "
            "count(*) FILTER (WHERE severity = 'critical') FROM quarantine"
        ).fetchone()
        by_rule = markdown_preview(
            con,
            "SELECT stage, rule, severity, count(*) AS n, count(DISTINCT submission_sha) AS submissions, "
            "any_value(reason) AS reason FROM quarantine GROUP BY ALL ORDER BY n DESC, rule",
            limit=40,
        )
        sample = markdown_preview(
            con,
            "SELECT s.party_code, s.file_name, q.row_number, q.report_id, q.rule, q.column_name, q.value, q.reason "
            "FROM quarantine q JOIN landed_submissions s ON s.sha256 = q.submission_sha "
            "WHERE q.severity = 'critical' ORDER BY s.party_code, s.file_name, q.row_number NULLS FIRST, q.rule",
            limit=25,
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "files_rejected_whole": files,
            "critical_findings": critical,
            "by_rule": dg.MetadataValue.md(by_rule),
            "sample": dg.MetadataValue.md(sample),
        }
    )
