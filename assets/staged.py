"""Staged: each landed file parsed (``cbm.readers``) into the contract's columns, as text.

Staged rows are kept as Parquet in ``<workdir>/staged`` (the sensitive tier, like landing):
raw text never enters the warehouse. What parsing gave for each file (rows read, remarks, or
why it could not be read) is in table ``staged_submissions``.
"""

import json

import dagster as dg

from assets.metadata import declared_schema
from assets.partitions import submissions_partitions
from assets.resources import CbmSettings, RegistryResource
from assets.stages import INGESTION, WAREHOUSE_POOL, stage
from cbm.intake import note_staging_waits, staged_path, submissions_of
from cbm.reader_worker import ReaderPool
from warehouse.queries import query
from warehouse.resource import WarehouseResource

STAGED = stage("staged", INGESTION)


@dg.asset(
    partitions_def=submissions_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["landed_submissions"],
    **STAGED,
    metadata=declared_schema("staged_submissions"),
    kinds={"polars", "parquet", "duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "Each landed submission parsed (CSV, JSON Lines, Parquet) into the contract's columns as "
        "text, with row numbers, in the workdir's `staged/SHA.parquet`; one row per file in "
        "table `staged_submissions` (rows read, remarks). Unreadable files (encoding, NUL "
        "bytes, broken Parquet, duplicate headers, wrong delimiter) are rejected whole here. "
        "A party whose files took `limits.reader_seconds_per_run` of parsing in the run has "
        "the rest wait, landed and not parsed (status `landed`), for the next run."
    ),
)
def staged_submissions(
    context: dg.AssetExecutionContext,
    settings: CbmSettings,
    registry: RegistryResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    settings.staged_dir.mkdir(parents=True, exist_ok=True)
    shas = submissions_of(settings.landing_area, context.partition_keys)
    limits = registry.registry.policy.limits
    rows = []
    with warehouse.connect() as con:
        todo = con.execute(query("intake.to_parse"), [shas]).fetchall()
    # each file is parsed in a child process held to the policy's time and memory limits;
    # settings.worker_count of them side by side, each writing its own Parquet file
    jobs = [
        (settings.landing_area.local(sha), staged_path(settings.staged_dir, sha), fmt, kind)
        for sha, kind, fmt, _, _ in todo
    ]
    with ReaderPool(limits, settings.worker_count) as readers:
        outcomes = readers.read_all(jobs, [party for _, _, _, party, _ in todo])
    waiting = []
    for (sha, _, _, party, name), outcome in zip(todo, outcomes, strict=True):
        if outcome.waiting:  # landed, not parsed: the next run takes it (not marked ingested)
            context.log.info(f"{party}/{name}: {outcome.reason}")
            waiting.append(sha)
        elif outcome.rule:
            reason = f"{party}/{name}: {outcome.reason}"
            context.log.warning(reason)
            rows.append((sha, 0, "[]", outcome.rule, reason))
        else:
            rows.append((sha, outcome.rows, json.dumps(list(outcome.notes)), None, None))
    if waiting:
        note_staging_waits(settings.landing_area, waiting, context.run.run_id)
    with warehouse.connect() as con:
        con.execute(query("intake.forget_staged"), [shas])
        if rows:
            con.executemany(query("intake.stage"), rows)
    unreadable = sum(1 for r in rows if r[3])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r[1] for r in rows),
            "submissions_parsed": len(rows) - unreadable,
            "submissions_unreadable": unreadable,
            "submissions_waiting": len(waiting),
        }
    )
