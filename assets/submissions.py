"""What intake did with every submission: the ``submissions`` and ``quarantine`` views.

Both are views over the tables the ingestion stages write (each stage its own table), so
no stage updates another's rows; their SQL is ``warehouse/sql/submissions.sql`` and
``warehouse/sql/quarantine.sql``. ``cbm status`` reads the same views.
"""

import dagster as dg

from assets.metadata import declared_schema, keeps, table_metadata
from assets.stages import VERIFICATION, WAREHOUSE_POOL, stage
from cbm.contract import KINDS
from warehouse.queries import query
from warehouse.resource import WarehouseResource

VALIDATED = stage("validated", VERIFICATION, automated=True)
# quarantined rows listed whole in the asset's metadata; beyond, the first ones and the command
QUARANTINE_LISTED = 500
STATUSES = ("accepted", "partial", "rejected", "staged", "landed")
INTAKE_TABLES = [
    "landed_submissions",
    "staged_submissions",
    "validation_findings",
    *(f"reports_{k}" for k in KINDS),
]


@dg.asset(
    deps=INTAKE_TABLES,
    **VALIDATED,
    metadata=declared_schema("submissions") | keeps("submission_copies"),
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
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
        "accepted and quarantined, and the corrections among the accepted rows. Its metadata "
        "`submissions` lists them rejected and partial first, by party and file, with `why`: "
        "each rule that quarantined rows (and how many) or the whole file. Beside it the "
        "views `accepted_reports` (every accepted row of every kind, by submission) and "
        "`submission_copies` (submissions whose bytes another party handed in first or its "
        "author signed) and `copied_reports` (accepted rows of a submission that became a copy "
        "when a signed original arrived: quarantined from then on)."
    ),
)
def submissions(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        by_status = dict(con.execute(query("submissions.by_status")).fetchall())
        broken = con.execute(query("submissions.unbalanced")).fetchall()
        totals = con.execute(query("submissions.totals")).fetchone()[2:]
        listed = table_metadata(con, query("submissions.listed"), {"limit": QUARANTINE_LISTED})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(by_status.values()),
            "by_status": dg.MetadataValue.json(by_status),
            "rows_read": int(totals[0]),
            "rows_accepted": int(totals[1]),
            "rows_quarantined": int(totals[2]),
            **{f"submissions_{status}": by_status.get(status, 0) for status in STATUSES},
            "submissions": listed,
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
    **VALIDATED,
    metadata=declared_schema("quarantine"),
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "Everything that did not pass (view over the intake tables): whole files rejected at "
        "landing or parsing (row_number NULL) and rows failing a critical expectation, with "
        "the rule, the GX expectation, the column, the (scrubbed) value and the reason. "
        "Warnings (kept rows) are listed too, with severity 'warning'. Its metadata "
        "`quarantined` lists every quarantined row and file with its reason in full (the "
        "first 500 when there are more; all of them: `cbm status --quarantine`), one line per "
        "finding: `rows_quarantined` counts each row once (as `cbm status` does), "
        "`critical_findings` each rule it broke, `warnings` the findings that kept their row; the value "
        "and report id of a row above TLP:GREEN (or of unknown level) are withheld there, "
        "since the UI shows no more than a verifier may see."
    ),
)
def quarantine(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect(readers=True) as con:
        n, files, critical, warnings = con.execute(query("submissions.findings")).fetchone()
        # the same number cbm status totals: rows set aside, each once, whatever rules it broke
        rows_quarantined = con.execute(query("submissions.totals")).fetchone()[4]
        by_rule = table_metadata(con, query("submissions.by_rule"))
        rows = table_metadata(
            con, query("submissions.shown_to_verifiers"), {"limit": QUARANTINE_LISTED}
        )
    shown = min(critical, QUARANTINE_LISTED)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "rows_quarantined": int(rows_quarantined),
            "files_rejected_whole": files,
            "critical_findings": critical,
            "warnings": warnings,
            "quarantined": rows,
            "listed": (
                f"All {critical:,} findings are listed in quarantined: {int(rows_quarantined):,} "
                f"rows quarantined and {files:,} files rejected whole (a row that breaks several "
                "rules is listed once per rule). Warnings (rows kept) are in by_rule."
                if shown == critical
                else f"quarantined lists the first {shown:,} of {critical:,} findings "
                f"({int(rows_quarantined):,} rows quarantined, {files:,} files rejected whole), by party, file "
                "and row. Every one, with its reason: cbm status --quarantine (narrow it with "
                "--party CODE or --rule RULE)."
            ),
            "by_rule": by_rule,
        }
    )
