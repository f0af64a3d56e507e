"""Validated: every anonymised row checked by its Great Expectations suite, on DuckDB.

Rows failing an expectation go to ``validation_findings`` with the rule, column, value and
reason; rows with no critical finding are appended to ``reports_<kind>`` (all versions
kept; ``current_<kind>`` views pick the highest version). The last ingestion step: each
submission it finishes is marked ingested in the landing area (``cbm.intake``).
"""

import itertools
import re
import time

import dagster as dg
import duckdb

from assets.metadata import data_docs_of, declared_schema, keeps, md_text, row_count
from assets.partitions import submissions_partitions
from assets.resources import CbmSettings
from assets.stages import VERIFICATION, WAREHOUSE_POOL, stage
from cbm.contract import KINDS
from cbm.intake import mark_ingested, submissions_of
from checks.results import SAMPLES, SuiteResult, data_docs_run_name
from compat.dagster import (  # Dagster internals, in one place
    AssetCheckEvaluationTargetMaterializationData,  # not exported; names what a check checked
    partitions_read_once,
)
from warehouse.db import refresh_superseded, sql_file
from warehouse.queries import query
from warehouse.resource import WarehouseResource

FETCH_AT_ONCE = 1_000  # partitions whose materializations are fetched in one request
VALIDATED = stage("validated", VERIFICATION)
# One GX checkpoint per step. Reports first, then attestations: an attestation about a report
# handed in in the same batch finds it among the accepted reports (rule dangling_subject).
VALIDATION_STEPS = (("incidents", "compliance"), ("attestations",))
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def _batch_view(con, kind: str, shas: list[str]) -> int:
    if not all(SHA_RE.match(s) for s in shas):
        raise ValueError("submission keys must be SHA-256 hex digests")
    # a stored view, not a temporary one: GX reads it through its own connection, where no
    # parameter can travel; DuckDB writes the hashes into the view as constants
    con.abort()  # a relation starts only once earlier results are done (warehouse.db._relation)
    batch = con.table(f"anon_{kind}").filter(
        duckdb.ColumnExpression("submission_sha").isin(*map(duckdb.ConstantExpression, shas))
        if shas
        else duckdb.ConstantExpression(False)
    )
    batch.create_view(_batch_name(kind), replace=True)
    return row_count(con, _batch_name(kind))


def _batch_name(kind: str) -> str:
    """The view of the submissions' rows of ``kind`` being validated (``_batch_view``)."""
    return f"batch_{kind}"


def gx_checkpoints(con) -> list[list[tuple[str, str]]]:
    """The (suite, table) lists of the checkpoints runs use, whichever kinds their
    submissions hold (``_validate`` leaves out a kind without rows), their tables made in
    ``con`` (empty): what a warm process sets up once for new workdirs
    (``pipelines.warm_server``)."""
    for kind in KINDS:
        _batch_view(con, kind, [])
    return [
        [(k, _batch_name(k)) for k in kinds]
        for step in VALIDATION_STEPS
        for size in range(len(step), 0, -1)
        for kinds in itertools.combinations(step, size)
    ]


def _record_findings(con, kind: str, shas: list[str], result: SuiteResult) -> None:
    """Every failing row of a suite into ``quarantine``, selected inside DuckDB by the query
    GX (or the suite) gave for it: no row travels through Python. Each finding's samples are
    then its first quarantined values (not another pass over the batch: for a duplicate rule
    that pass would group the whole batch again)."""
    for f in result.findings:
        if not f.query:
            continue
        con.abort()  # as in _batch_view
        con.sql(f.query).create_view("finding_rows", replace=True)  # GX's query for it
        con.execute(
            query("validated.record_finding", value_column=f.value_column),
            {
                "rule": f.rule,
                "expectation": f.expectation,
                "column": f.column,
                "reason": f.reason,
                "severity": f.severity,
            },
        )
    con.execute("DROP VIEW IF EXISTS finding_rows")
    samples = {
        (rule, expectation, column): values
        for rule, expectation, column, values in con.execute(
            query("validated.finding_samples", kind=kind),
            {"kind": kind, "shas": shas, "samples": SAMPLES},
        ).fetchall()
    }
    for f in result.findings:
        if f.query:
            f.samples = samples.get((f.rule, f.expectation, f.column), [])


def _accept(con, kind: str) -> None:
    con.execute(query("validated.accept", kind=kind))


OUTCOME_FIELDS = (
    "sha256",
    "party",
    "file_name",
    "kind",
    "status",
    "rows_read",
    "rows_accepted",
    "rows_quarantined",
    "copy_of",
    "reasons",
    "findings",
)


def outcome_text(o: dict) -> str:
    """One line a verifier reads: the file, its status and its accounting."""
    counts = (
        f"{o['rows_read']:,} rows read = {o['rows_accepted']:,} accepted + "
        f"{o['rows_quarantined']:,} quarantined"
    )
    where = f"{o['party']}/{o['file_name']} ({o['kind'] or 'kind unknown'})"
    if o["status"] == "landed":  # left waiting at staging: its party's reading time was spent
        return f"{where}: landed, not parsed yet: a later run parses it"
    return f"{where}: {o['status']}, {counts}"


def outcome_metadata(o: dict) -> dict:
    """Partition metadata of a submission: who, what, how it went, and why, in full."""
    reasons = "\n".join(f"- {md_text(r)}" for r in o["reasons"]) or "_nothing quarantined_"
    return {
        "party": o["party"],
        "file_name": o["file_name"],
        "kind": o["kind"] or "unknown",
        "status": o["status"],
        "rows_read": int(o["rows_read"]),
        "rows_accepted": int(o["rows_accepted"]),
        "rows_quarantined": int(o["rows_quarantined"]),
        "reasons": dg.MetadataValue.md(reasons),
        "submission": o["sha256"],
        **({"copy_of": o["copy_of"]} if o["copy_of"] else {}),
    }


def _submission_outcomes(
    context, outcomes: list[dict], key_of: dict[str, str], overall: tuple[int, int]
):
    """The ``submission_outcome`` check, one evaluation per submission on its own partition.
    A run of one partition yields it as the check's result; a run of a range (which has no
    single partition) logs one evaluation per partition and yields a summary of the state of
    every submission (``overall``: how many there are, and how many are not accepted whole),
    with this run's beside it."""
    if context.has_partition_key and len(outcomes) == 1:
        (outcome,) = outcomes
        yield dg.AssetCheckResult(
            asset_key="validation_findings",
            check_name="submission_outcome",
            passed=outcome["status"] == "accepted",
            severity=dg.AssetCheckSeverity.WARN,
            description=outcome_text(outcome),
            metadata=outcome_metadata(outcome),
        )
        return
    # each evaluation names the materialization of its partition that it checked, so the
    # UI counts it as that partition's current status
    asset = dg.AssetKey("validation_findings")
    targets = {}
    partitions = list(key_of.values())
    for start in range(0, len(partitions), FETCH_AT_ONCE):  # Dagster fetches 10,000 at most
        chunk = partitions[start : start + FETCH_AT_ONCE]
        for record in context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset, asset_partitions=chunk), limit=len(chunk)
        ).records:
            targets.setdefault(
                record.partition_key,
                AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                ),
            )
    for outcome in outcomes:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey("validation_findings"),
                check_name="submission_outcome",
                passed=outcome["status"] == "accepted",
                severity=dg.AssetCheckSeverity.WARN,
                description=outcome_text(outcome),
                metadata=outcome_metadata(outcome),
                partition=key_of[outcome["sha256"]],
                target_materialization_data=targets.get(key_of[outcome["sha256"]]),
            )
        )
    not_whole = [o for o in outcomes if o["status"] != "accepted"]
    everywhere, anywhere_not_whole = overall  # every submission in the warehouse
    yield dg.AssetCheckResult(
        asset_key="validation_findings",
        check_name="submission_outcome",
        passed=not anywhere_not_whole,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{anywhere_not_whole} of {everywhere} submissions not accepted whole "
            f"({len(not_whole)} of {len(outcomes)} in this run)"
            if anywhere_not_whole
            else f"all {everywhere} submissions accepted whole ({len(outcomes)} in this run)"
        ),
        metadata={
            "submissions": everywhere,
            "submissions_not_accepted_whole": anywhere_not_whole,
            "submissions_this_run": len(outcomes),
            "not_accepted_whole": dg.MetadataValue.md(
                "\n".join(f"- {md_text(outcome_text(o))}" for o in not_whole) or "_none_"
            ),
        },
    )


def suite_check(
    kind: str,
    result: SuiteResult | None,
    batch: int,
    accepted: int,
    quarantined: int,
    per_submission: dict[str, int],
) -> dg.AssetCheckResult:
    """``suite_<kind>`` on ``reports_<kind>``: the kind's suite ran on the batch and its verdict
    was carried out, every row of the batch accepted or quarantined (rows quarantined by the
    rules are the suite working, not failing). It fails, as a warning, when the two do not add
    up to the batch: a row neither stored nor set aside."""
    held = accepted + quarantined == batch
    if result is None:
        description = "no rows in this batch"
    elif held:
        description = (
            f"{quarantined:,} of {batch:,} rows quarantined by design, {accepted:,} accepted"
        )
    else:
        description = (
            f"{batch:,} rows checked but {accepted:,} accepted + {quarantined:,} quarantined: "
            f"{batch - accepted - quarantined:+,} rows unaccounted for"
        )
    return dg.AssetCheckResult(
        asset_key=f"reports_{kind}",
        check_name=f"suite_{kind}",
        passed=held,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "rows_quarantined_by_design": quarantined,
            "rows_in_batch": batch,
            "rows_accepted": accepted,
            "unexpected_by_rule": dg.MetadataValue.json({} if result is None else result.summary()),
            "rows_quarantined_by_submission": dg.MetadataValue.json(per_submission),
            "samples": dg.MetadataValue.json(
                {} if result is None else {f.rule: f.sample() for f in result.findings}
            ),
        },
    )


REPORT_TABLE_TEXT = (
    "Accepted {kind} reports: rows of validated submissions with no critical finding, every "
    "version kept (a higher version supersedes a lower one of the same report_id and source). "
    "View `current_{kind}` holds the current version of each report (index table "
    "`superseded_{kind}`); rows in `version_conflicts` (one version, several contents from "
    "one source) are set aside and quarantined. View `verification_{kind}` is what "
    "verification reads and the member bundle holds: the current rows without free text and "
    "without TLP:RED."
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "validation_findings",
            metadata=declared_schema("validation_findings"),
            deps=[f"anon_{k}" for k in KINDS]
            + ["party_directory", "registry_commitments", "registry_regions"],
            partitions_def=submissions_partitions,
            **VALIDATED,
            kinds={"great_expectations", "duckdb"},
            description=(
                "Every row that failed an expectation of its Great Expectations suite "
                "(`checks/suites/KIND.json`, run on DuckDB): submission, row, report_id, rule, "
                "GX expectation, column, the (scrubbed) value, the reason and the severity "
                "(critical: the row is quarantined; warning: kept and reported)."
            ),
        ),
        *[
            dg.AssetSpec(
                f"reports_{kind}",
                metadata=declared_schema(f"reports_{kind}")
                | keeps(
                    f"superseded_{kind}",
                    f"current_{kind}",
                    f"verification_{kind}",
                    "version_conflicts",
                    "accepted_reports",
                    "copied_reports",
                ),
                deps=["validation_findings"],
                partitions_def=submissions_partitions,
                **VALIDATED,
                kinds={"duckdb"},
                description=REPORT_TABLE_TEXT.format(kind=kind),
            )
            for kind in KINDS
        ],
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "submission_outcome",
            asset="validation_findings",
            partitions_def=submissions_partitions,
            description=(
                "Per submission: passes when every row was accepted; a warning when the file "
                "was rejected whole or some rows were quarantined, naming the party, the file, "
                "the status, the accounting and each rule with its reason in full."
            ),
        ),
        *[
            dg.AssetCheckSpec(
                f"suite_{k}",
                asset=f"reports_{k}",
                description=f"Great Expectations suite checks/suites/{k}.json on this batch. "
                "Rows failing a critical rule are quarantined by design, so they do not fail "
                "this check: it passes, saying how many rows it quarantined and by which rule "
                "(a suite that cannot be evaluated fails the run instead).",
            )
            for k in KINDS
        ],
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
)
def validated_reports(
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: WarehouseResource
):
    shas = submissions_of(settings.landing_area, context.partition_keys)
    with warehouse.connect() as con:
        con.execute(query("validated.forget_findings"), [shas])
        for kind in KINDS:
            con.execute(query("validated.forget_accepted", kind=kind), [shas])
        batch_rows = {kind: _batch_view(con, kind, shas) for kind in KINDS}
        results, seconds = _validate(context, settings, con, shas, batch_rows)
        figures = _batch_figures(con, shas)
        for kind in KINDS:  # the batch views were for GX's connection only
            con.execute(f"DROP VIEW IF EXISTS {_batch_name(kind)}")
    docs = data_docs_of(settings, list(results.values()))
    # the ingestion of these submissions is complete: no plan asks for them again
    for sha, intake_key in figures["intake_keys"]:
        mark_ingested(settings.landing_area, sha, intake_key)
    key_of = dict(zip(shas, context.partition_keys, strict=True))
    outcomes = figures["outcomes"]
    with partitions_read_once(context.instance):
        for outcome in outcomes:
            # a partition's row count is its submission's: its findings, its accepted rows
            # (the run's figures, which every partition of the run gets, are the whole table's)
            for asset, rows in (
                ("validation_findings", outcome["findings"]),
                (f"reports_{outcome['kind']}", outcome["rows_accepted"]),
            ):
                if asset == "reports_None":  # rejected before its kind was known
                    continue
                context.add_asset_metadata(
                    {**outcome_metadata(outcome), "dagster/row_count": int(rows)},
                    asset_key=asset,
                    partition_key=key_of[outcome["sha256"]],
                )
    findings = figures["findings"]
    yield dg.MaterializeResult(
        asset_key="validation_findings",
        metadata={
            "dagster/row_count": int(findings[0]),
            "rows_quarantined": int(findings[1]),
            # the Great Expectations suites plus the quarantine inserts (not the accepted-row copy)
            "validation_seconds": round(seconds["validation"], 3),
            "accept_seconds": round(seconds["accept"], 3),
            **({"data_docs": dg.MetadataValue.url(settings.data_docs_link(docs))} if docs else {}),
        },
    )
    yield from _submission_outcomes(context, outcomes, key_of, figures["overall"])
    for kind in KINDS:
        accepted = figures["accepted"][kind]
        yield dg.MaterializeResult(
            asset_key=f"reports_{kind}",
            metadata={"dagster/row_count": accepted, "rows_in_batch": batch_rows[kind]},
        )
        yield suite_check(
            kind,
            results.get(kind),
            batch_rows.get(kind, 0),
            accepted,
            figures["quarantined"].get(kind, 0),
            figures["per_submission"][kind],
        )


def _validate(context, settings: CbmSettings, con, shas: list[str], batch_rows: dict[str, int]):
    """The batch's rows through the GX suites, one checkpoint per step of kinds; findings
    recorded, accepted rows stored. The suite results by kind, and the seconds spent."""
    kinds = [k for k in KINDS if batch_rows[k]]
    results: dict[str, SuiteResult | None] = dict.fromkeys(KINDS)
    seconds = {"validation": 0.0, "accept": 0.0}
    for step in VALIDATION_STEPS:
        runs = [(k, _batch_name(k)) for k in step if k in kinds]
        if not runs:
            continue
        con.execute("CHECKPOINT")  # GX reads the file through its own connection
        started = time.perf_counter()
        from checks.validation import run_suites  # the validation stack: only with rows to check

        # no connection for samples: they come from the findings (_record_findings)
        found = run_suites(
            None,
            settings.warehouse_path,
            settings.gx_dir,
            runs,
            rows=sum(batch_rows[kind] for kind, _ in runs),
            run_name=data_docs_run_name(context.partition_keys),
        )
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
    return results, seconds


def _batch_figures(con, shas: list[str]) -> dict:
    """The batch's counts after validation: quarantined rows per kind and file, findings,
    accepted rows per kind, each submission's outcome, and the submissions now done."""
    per_submission: dict[str, dict[str, int]] = {k: {} for k in KINDS}
    for kind, party, name, n in con.execute(
        query("validated.quarantined_by_file"), [shas]
    ).fetchall():
        per_submission[kind][f"{party}/{name}"] = n
    return {
        "per_submission": per_submission,
        "findings": con.execute(query("validated.findings"), [shas]).fetchone(),
        "accepted": {
            kind: con.execute(query("validated.accepted", kind=kind), [shas]).fetchone()[0]
            for kind in KINDS
        },
        "quarantined": dict(con.execute(query("validated.quarantined_by_kind"), [shas]).fetchall()),
        "outcomes": [
            dict(zip(OUTCOME_FIELDS, row, strict=True))
            for row in con.execute(sql_file("submission_outcomes"), {"shas": shas}).fetchall()
        ],
        "overall": con.execute(query("validated.overall")).fetchone(),
        "intake_keys": con.execute(query("validated.done"), [shas]).fetchall(),
    }
