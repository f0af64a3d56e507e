"""Validated: every anonymised row checked by its Great Expectations suite, on DuckDB.

Rows failing a critical expectation go to ``quarantine`` with the rule, column, value and
reason; the rest are appended to ``reports_<kind>`` (all versions kept; ``current_<kind>``
views pick the highest version). Submission accounting is updated and checked.
"""

import re
import time

import dagster as dg

from assets.metadata import markdown_preview, table_schema
from assets.partitions import refresh_on_new_data, submissions_partitions
from assets.resources import CbmSettings
from cbm.contract import KINDS
from checks.validation import SAMPLES, SuiteResult, build_data_docs, run_suites
from warehouse.db import refresh_superseded, report_columns
from warehouse.resource import WarehouseResource

OWNER = "team:verification"
# One GX checkpoint per step. Reports first, then attestations: an attestation about a report
# handed in in the same batch finds it among the accepted reports (rule dangling_subject).
VALIDATION_STEPS = (("incidents", "compliance"), ("attestations",))
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _batch_view(con, kind: str, shas: list[str]) -> int:
    if not all(SHA_RE.match(s) for s in shas):
        raise ValueError("submission keys must be SHA-256 hex digests")
    listed = ", ".join(f"'{s}'" for s in shas) or "''"
    con.execute(
        f"CREATE OR REPLACE VIEW batch_{kind} AS SELECT * FROM anon_{kind} WHERE submission_sha IN ({listed})"
    )
    return con.execute(f"SELECT count(*) FROM batch_{kind}").fetchone()[0]


def _record_findings(con, kind: str, shas: list[str], result: SuiteResult) -> None:
    """Every failing row of a suite into ``quarantine``, selected inside DuckDB by the query
    GX (or the suite) gave for it: no row travels through Python. Each finding's samples are
    then its first quarantined values (not another pass over the batch: for a duplicate rule
    that pass would group the whole batch again)."""
    for f in result.findings:
        if not f.query:
            continue
        con.execute(
            f"""INSERT INTO quarantine BY NAME
            SELECT q.submission_sha, q.row_number, q.report_id, 'validated' AS stage,
                   $rule AS rule, $expectation AS expectation, $column AS column_name,
                   left(CAST(q."{f.value_column}" AS VARCHAR), 200) AS value,
                   $reason AS reason, $severity AS severity
            FROM ({f.query}) q""",
            {
                "rule": f.rule,
                "expectation": f.expectation,
                "column": f.column,
                "reason": f.reason,
                "severity": f.severity,
            },
        )
    samples = {
        (rule, expectation, column): values
        for rule, expectation, column, values in con.execute(
            f"""SELECT q.rule, q.expectation, q.column_name,
                   list(coalesce(q.value, 'None') ORDER BY q.submission_sha, q.row_number)[:{SAMPLES}]
            FROM quarantine q JOIN submissions s ON s.sha256 = q.submission_sha
            WHERE q.stage = 'validated' AND s.kind = ? AND q.submission_sha IN (SELECT unnest(?::VARCHAR[]))
            GROUP BY ALL""",
            [kind, shas],
        ).fetchall()
    }
    for f in result.findings:
        if f.query:
            f.samples = samples.get((f.rule, f.expectation, f.column), [])


def _accept(con, kind: str) -> None:
    cols = ", ".join(f'"{c}"' for c in report_columns(kind, with_raw=False))
    con.execute(
        f"""INSERT INTO reports_{kind} SELECT {cols} FROM batch_{kind} b
        WHERE NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.submission_sha = b.submission_sha
          AND q.row_number = b.row_number AND q.severity = 'critical' AND q.stage = 'validated')
        ORDER BY submission_sha, row_number"""
    )


ACCOUNTING_SQL = """
UPDATE submissions s SET
  rows_accepted = coalesce(a.n, 0),
  rows_quarantined = coalesce(q.n, 0),
  status = CASE WHEN coalesce(a.n, 0) = s.rows_read THEN 'accepted'
                WHEN coalesce(a.n, 0) = 0 THEN 'rejected' ELSE 'partial' END
FROM (SELECT unnest($shas::VARCHAR[]) AS sha) k
LEFT JOIN (
  SELECT submission_sha, count(*) AS n FROM (
    SELECT submission_sha FROM reports_incidents UNION ALL
    SELECT submission_sha FROM reports_compliance UNION ALL
    SELECT submission_sha FROM reports_attestations) GROUP BY ALL) a ON a.submission_sha = k.sha
LEFT JOIN (
  SELECT submission_sha, count(DISTINCT row_number) AS n FROM quarantine
  WHERE severity = 'critical' AND row_number IS NOT NULL GROUP BY ALL) q ON q.submission_sha = k.sha
WHERE s.sha256 = k.sha AND s.status IN ('staged', 'accepted', 'partial')
"""


@dg.asset(
    partitions_def=submissions_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["anonymised_reports"],
    group_name="validated",
    kinds={"great_expectations", "duckdb"},
    owners=[OWNER],
    pool="warehouse",
    check_specs=[
        dg.AssetCheckSpec(
            "submission_accounting",
            asset="validated_reports",
            description="rows_read = rows_accepted + rows_quarantined for every submission",
        ),
        *[
            dg.AssetCheckSpec(
                f"suite_{k}",
                asset="validated_reports",
                description=f"Great Expectations suite checks/suites/{k}.json on this batch",
            )
            for k in KINDS
        ],
    ],
    description=(
        "Rows that passed their Great Expectations suite (checks/suites/<kind>.json, run on "
        "DuckDB), appended to reports_incidents / reports_compliance / reports_attestations. "
        "Rows failing a critical expectation are in `quarantine` with rule, column and value."
    ),
)
def validated_reports(
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: WarehouseResource
):
    shas = list(context.partition_keys)
    batch_rows: dict[str, int] = {}
    with warehouse.connect() as con:
        con.execute(
            "DELETE FROM quarantine WHERE stage = 'validated' AND submission_sha IN (SELECT unnest(?::VARCHAR[]))",
            [shas],
        )
        for kind in KINDS:
            con.execute(
                f"DELETE FROM reports_{kind} WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))",
                [shas],
            )
        for kind in KINDS:
            batch_rows[kind] = _batch_view(con, kind, shas)
        kinds = [k for k in KINDS if batch_rows[k]]
        results: dict[str, SuiteResult | None] = dict.fromkeys(KINDS)
        seconds = {"validation": 0.0, "accept": 0.0}
        for step in VALIDATION_STEPS:
            runs = [(k, f"batch_{k}") for k in step if k in kinds]
            if not runs:
                continue
            con.execute("CHECKPOINT")  # GX reads the file through its own connection
            started = time.perf_counter()
            # no connection for samples: they come from quarantine (_record_findings)
            found = run_suites(None, settings.warehouse_path, settings.gx_dir, runs)
            for (kind, _), result in zip(runs, found, strict=True):
                results[kind] = result
                _record_findings(con, kind, shas, result)
            validated = time.perf_counter()
            for kind, _ in runs:
                _accept(con, kind)
                refresh_superseded(con, kind, shas)
            seconds["validation"] += validated - started
            seconds["accept"] += time.perf_counter() - validated
        for kind in kinds:
            context.log.info(
                f"{kind}: {batch_rows[kind]:,} rows checked by {results[kind].evaluated} "
                f"expectations; {sum(f.unexpected_count for f in results[kind].critical):,} "
                "critical findings"
            )
        context.log.info(
            f"{sum(batch_rows.values()):,} rows validated in {seconds['validation']:.1f}s "
            f"(Great Expectations and quarantine); accepted rows stored in {seconds['accept']:.1f}s"
        )
        con.execute(ACCOUNTING_SQL, {"shas": shas})
        broken = con.execute(
            "SELECT file_name, rows_read, rows_accepted, rows_quarantined FROM submissions "
            "WHERE sha256 IN (SELECT unnest(?::VARCHAR[])) AND rows_read <> rows_accepted + rows_quarantined",
            [shas],
        ).fetchall()
        accepted = con.execute(
            "SELECT coalesce(sum(rows_accepted), 0), coalesce(sum(rows_quarantined), 0) FROM submissions "
            "WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))",
            [shas],
        ).fetchone()
        per_submission: dict[str, dict[str, int]] = {k: {} for k in KINDS}
        for kind, party, name, n in con.execute(
            "SELECT s.kind, s.party_code, s.file_name, count(DISTINCT q.row_number) FROM quarantine q "
            "JOIN submissions s ON s.sha256 = q.submission_sha WHERE q.stage = 'validated' "
            "AND q.severity = 'critical' AND s.sha256 IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL ORDER BY ALL",
            [shas],
        ).fetchall():
            per_submission[kind][f"{party}/{name}"] = n
        schema = table_schema(con, "reports_incidents")
        preview = markdown_preview(
            con,
            "SELECT left(submission_sha, 12) AS submission, row_number, report_id, rule, column_name, value, reason "
            "FROM quarantine WHERE submission_sha IN (SELECT unnest(?::VARCHAR[])) ORDER BY ALL",
            [shas],
            limit=15,
        )
    docs = (
        build_data_docs(
            settings.gx_dir, [r for r in results.values() if r], keep=settings.gx_keep_results
        )
        if any(results.values())
        else None
    )
    checks = [
        dg.AssetCheckResult(
            check_name="submission_accounting",
            passed=not broken,
            metadata={
                "submissions": len(shas),
                "violations": dg.MetadataValue.json([list(b) for b in broken]),
            },
        )
    ]
    for kind in KINDS:
        r = results.get(kind)
        checks.append(
            dg.AssetCheckResult(
                check_name=f"suite_{kind}",
                passed=r is None or not r.critical,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "rows_in_batch": batch_rows.get(kind, 0),
                    "unexpected_by_rule": dg.MetadataValue.json({} if r is None else r.summary()),
                    "rows_quarantined_by_submission": dg.MetadataValue.json(per_submission[kind]),
                    "samples": dg.MetadataValue.json(
                        {} if r is None else {f.rule: f.sample() for f in r.findings}
                    ),
                },
            )
        )
    metadata = {
        "dagster/row_count": int(accepted[0]),
        "rows_quarantined": int(accepted[1]),
        # the Great Expectations suites plus the quarantine inserts (not the accepted-row copy)
        "validation_seconds": round(seconds["validation"], 3),
        "accept_seconds": round(seconds["accept"], 3),
        "dagster/column_schema": schema,
        "quarantine_preview": dg.MetadataValue.md(preview),
    }
    if docs:
        metadata["data_docs"] = dg.MetadataValue.url(docs)
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


@dg.asset(
    deps=["validated_reports"],
    group_name="validated",
    kinds={"duckdb"},
    owners=[OWNER],
    pool="warehouse",
    automation_condition=refresh_on_new_data,
    description=(
        "Everything that did not pass, from the `quarantine` table: whole files rejected at "
        "landing or parsing (row_number NULL) and rows failing a critical expectation, with "
        "the rule, the GX expectation, the column, the (scrubbed) value and the reason. "
        "Warnings (kept rows) are listed too, with severity 'warning'."
    ),
)
def quarantine(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        n, files, critical = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE row_number IS NULL), count(*) FILTER (WHERE severity = 'critical') FROM quarantine"
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
            "FROM quarantine q JOIN submissions s ON s.sha256 = q.submission_sha "
            "WHERE q.severity = 'critical' ORDER BY s.party_code, s.file_name, q.row_number NULLS FIRST, q.rule",
            limit=25,
        )
        schema = table_schema(con, "quarantine")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "dagster/column_schema": schema,
            "files_rejected_whole": files,
            "critical_findings": critical,
            "by_rule": dg.MetadataValue.md(by_rule),
            "sample": dg.MetadataValue.md(sample),
        }
    )
