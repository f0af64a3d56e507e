"""What intake did with every submission: the ``submissions`` and ``quarantine`` views.

Both are views over the tables the ingestion stages write (each stage its own table), so
no stage updates another's rows; their SQL is ``warehouse/sql/submissions.sql`` and
``warehouse/sql/quarantine.sql``. ``cbm status`` reads the same views.
"""

import dagster as dg

from assets.metadata import declared_schema, keeps, table_metadata
from assets.stages import VERIFICATION, WAREHOUSE_POOL, stage
from cbm.contract import KINDS
from warehouse.db import sql_file
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
        "accepted and quarantined, and the corrections among the accepted rows. Beside it the "
        "views `accepted_reports` (every accepted row of every kind, by submission) and "
        "`submission_copies` (submissions whose bytes another party handed in first or its "
        "author signed) and `copied_reports` (accepted rows of a submission that became a copy "
        "when a signed original arrived: quarantined from then on)."
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
        listed = table_metadata(
            con,
            "SELECT party_code AS party, file_name, kind, status, rows_read, rows_accepted, "
            "rows_quarantined, left(sha256, 16) AS submission FROM submissions "
            "ORDER BY status NOT IN ('rejected', 'partial'), party_code, file_name "
            f"LIMIT {QUARANTINE_LISTED}",
        )
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


def shown_to_verifiers(listing: str) -> str:
    """The first ``QUARANTINE_LISTED`` rows of the quarantine listing as the Dagster UI shows
    them: a row's value and report id only where its TLP level is publishable (CLEAR, GREEN);
    above that, or when the row's level is unknown, withheld (``cbm status --quarantine``, an
    operator's command on the secretariat's machine, shows them)."""
    anon = " UNION ALL ".join(
        f"SELECT submission_sha, row_number, tlp FROM anon_{kind}" for kind in KINDS
    )
    return f"""
        WITH listed AS (SELECT * FROM ({listing}) LIMIT {QUARANTINE_LISTED}),
        levels AS (
          SELECT left(submission_sha, 12) AS submission, row_number,
                 tlp_publishable(tlp_rank(upper(trim(tlp)))) AS shown
          FROM ({anon})
          WHERE left(submission_sha, 12) IN (SELECT submission FROM listed)
        )
        SELECT l.* REPLACE (
          CASE WHEN l.row_number IS NULL OR coalesce(v.shown, false) THEN l.report_id
               ELSE '[withheld: TLP]' END AS report_id,
          CASE WHEN l.row_number IS NULL OR coalesce(v.shown, false) THEN l.value
               ELSE '[withheld: TLP]' END AS value)
        FROM listed l
        LEFT JOIN levels v ON v.submission = l.submission AND v.row_number = l.row_number
        ORDER BY l.party, l.file_name, l.row_number NULLS FIRST, l.rule"""


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
    listing = sql_file("quarantine_listing").strip().rstrip(";")
    with warehouse.connect() as con:
        n, files, critical, warnings = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE row_number IS NULL), "
            "count(*) FILTER (WHERE severity = 'critical'), "
            "count(*) FILTER (WHERE severity = 'warning') FROM quarantine"
        ).fetchone()
        # the same number cbm status totals: rows set aside, each once, whatever rules it broke
        (rows_quarantined,) = con.execute(
            "SELECT coalesce(sum(rows_quarantined), 0) FROM submissions"
        ).fetchone()
        by_rule = table_metadata(
            con,
            "SELECT stage, rule, severity, count(*) AS findings, "
            "count(DISTINCT submission_sha) AS submissions, min(reason) AS example_reason "
            "FROM quarantine GROUP BY ALL ORDER BY findings DESC, rule",
        )
        rows = table_metadata(con, shown_to_verifiers(listing), {"party": None, "rule": None})
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
