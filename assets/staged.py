"""Staged: each landed file parsed (``cbm.readers``) into the contract's columns, as text.

Staged rows are kept as Parquet in ``<workdir>/staged`` (the sensitive tier, like landing):
raw text never enters the warehouse.
"""

import json
from pathlib import Path

import dagster as dg

from assets.partitions import submissions_partitions
from assets.resources import CbmSettings
from cbm.intake import landing_paths
from cbm.readers import UnreadableSubmission, stage_rows
from warehouse.resource import WarehouseResource

OWNER = "team:ingestion"


def staged_path(settings: CbmSettings, sha: str) -> Path:
    return settings.staged_dir / f"{sha}.parquet"


@dg.asset(
    partitions_def=submissions_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["landed_submissions"],
    group_name="staged",
    kinds={"polars", "parquet"},
    owners=[OWNER],
    pool="warehouse",
    description=(
        "Each landed submission parsed (CSV, JSON Lines, Parquet) into the contract's columns as "
        "text, with row numbers, in <workdir>/staged/<sha>.parquet. Unreadable files (encoding, "
        "NUL bytes, broken Parquet, duplicate headers, wrong delimiter) are rejected whole."
    ),
)
def staged_reports(
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    settings.staged_dir.mkdir(parents=True, exist_ok=True)
    total_rows, unreadable = 0, 0
    with warehouse.connect() as con:
        todo = con.execute(
            "SELECT sha256, kind, format, party_code, file_name FROM submissions "
            "WHERE sha256 IN (SELECT unnest(?::VARCHAR[])) AND status <> 'rejected' ORDER BY sha256",
            [context.partition_keys],
        ).fetchall()
        for sha, kind, fmt, party, name in todo:
            con.execute(
                "DELETE FROM quarantine WHERE submission_sha = ? AND stage = 'staged'", [sha]
            )
            data = landing_paths(settings.landing_dir, sha)[0].read_bytes()
            try:
                frame, notes = stage_rows(data, fmt, kind)
            except Exception as exc:  # a hostile file must not stop the run: reject it, say why
                unreadable += 1
                detail = (
                    str(exc)
                    if isinstance(exc, UnreadableSubmission)
                    else (f"reader failed ({exc.__class__.__name__}: {str(exc)[:200]})")
                )
                reason = f"{party}/{name}: {detail}"
                context.log.warning(reason)
                con.execute(
                    "UPDATE submissions SET status = 'rejected', rows_read = 0, notes = '[]' WHERE sha256 = ?",
                    [sha],
                )
                con.execute(
                    "INSERT INTO quarantine (submission_sha, stage, rule, reason, severity) VALUES (?, 'staged', 'unreadable_file', ?, 'critical')",
                    [sha, reason],
                )
                continue
            frame.write_parquet(staged_path(settings, sha), compression="zstd")
            total_rows += frame.height
            con.execute(
                "UPDATE submissions SET status = 'staged', rows_read = ?, notes = ? WHERE sha256 = ?",
                [frame.height, json.dumps(notes), sha],
            )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total_rows,
            "submissions_parsed": len(todo) - unreadable,
            "submissions_unreadable": unreadable,
        }
    )
