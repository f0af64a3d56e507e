"""Staged: each landed file parsed with Polars into the contract's columns, as text.

Readers have explicit schemas: every contract field is read as text (no per-file type
guessing); types are checked later, row by row, by the expectation suites. A file that
cannot be read at all is rejected whole with the reason; a JSON line that is not an object
becomes a row with ``row_error`` set, which the suites quarantine. Staged rows are kept as
Parquet in ``<workdir>/staged`` (the sensitive tier, like landing): raw text never enters
the warehouse.
"""

import csv
import io
import json
from pathlib import Path

import dagster as dg
import polars as pl

from assets.landing import landing_paths
from cbm.contract import FIELDS
from pipelines.partitions import submissions_partitions
from pipelines.settings import CbmSettings
from warehouse.db import Warehouse

OWNER = "team:ingestion"


class UnreadableSubmission(ValueError):
    """The file cannot be read as its extension says; the message says why."""


def _decode(data: bytes) -> tuple[str, list[str]]:
    notes = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        notes.append("UTF-8 byte-order mark removed")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise UnreadableSubmission(f"contains a NUL byte at offset {nul}; not a text file")
    try:
        return data.decode("utf-8"), notes
    except UnicodeDecodeError as exc:
        raise UnreadableSubmission(
            f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (re-export as UTF-8)"
        ) from exc


def _to_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Every column as text; nested values become a marker that fails the type rules."""
    out = []
    for name, dtype in frame.schema.items():
        c = pl.col(name)
        if dtype == pl.String:
            out.append(c)
        elif isinstance(dtype, pl.Datetime):
            fmt = "%Y-%m-%dT%H:%M:%S%.f%:z" if dtype.time_zone else "%Y-%m-%dT%H:%M:%S%.f"
            out.append(c.dt.strftime(fmt).alias(name))
        elif dtype.is_nested() or dtype == pl.Object:
            out.append(
                pl.when(c.is_null()).then(None).otherwise(pl.lit("<nested value>")).alias(name)
            )
        else:
            out.append(c.cast(pl.String).alias(name))
    return frame.select(out)


def read_csv(data: bytes) -> tuple[pl.DataFrame, list[str]]:
    text, notes = _decode(data)
    header = next(csv.reader(io.StringIO(text)), [])
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UnreadableSubmission(f"duplicate column names in the header: {', '.join(dupes)}")
    try:
        frame = pl.read_csv(
            io.StringIO(text), infer_schema=False, empty_string_is_null=True, raise_if_empty=False
        )
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise UnreadableSubmission(f"not a readable CSV file: {str(exc).splitlines()[0]}") from exc
    return frame.with_columns(pl.lit(None, pl.String).alias("row_error")), notes


def read_jsonl(data: bytes) -> tuple[pl.DataFrame, list[str]]:
    text, notes = _decode(data)
    try:  # fast path: a well-formed file
        frame = pl.read_ndjson(io.StringIO(text), infer_schema_length=None)
        if frame.height == 0 and text.strip():
            raise ValueError("no rows")
        return _to_text(frame).with_columns(pl.lit(None, pl.String).alias("row_error")), notes
    except Exception:  # slow path: find the bad lines, keep the good ones
        pass
    records, errors = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            err = None if isinstance(obj, dict) else f"line {number} is JSON but not an object"
        except (json.JSONDecodeError, RecursionError) as exc:
            obj, err = None, f"line {number} is not valid JSON ({exc.__class__.__name__})"
        if err:
            records.append({})
        else:
            records.append({k: _scalar_text(v) for k, v in obj.items()})
        errors.append(err)
    if not records:
        raise UnreadableSubmission("no JSON lines in the file")
    columns = sorted({k for r in records for k in r})
    frame = pl.DataFrame(
        {c: [r.get(c) for r in records] for c in columns} | {"row_error": errors},
        schema={c: pl.String for c in [*columns, "row_error"]},
    )
    return frame, notes


def _scalar_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return "<nested value>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def read_parquet(data: bytes) -> tuple[pl.DataFrame, list[str]]:
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise UnreadableSubmission(
            f"not a readable Parquet file: {str(exc).splitlines()[0][:200]}"
        ) from exc
    return _to_text(frame).with_columns(pl.lit(None, pl.String).alias("row_error")), []


READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


def stage_rows(data: bytes, fmt: str, kind: str) -> tuple[pl.DataFrame, list[str]]:
    """Parse one submission into the kind's contract columns (text), ``row_number``, ``row_error``."""
    frame, notes = READERS[fmt](data)
    fields = list(FIELDS[kind])
    present = [c for c in frame.columns if c in FIELDS[kind]]
    all_rows_read = frame["row_error"].null_count() == frame.height
    if not present and frame.height and all_rows_read:  # rows read, but no contract column
        raise UnreadableSubmission(
            f"none of the {kind} columns found (got {', '.join(frame.columns[:5])}); "
            "check the delimiter (comma) and the header row"
        )
    extra = sorted(c for c in frame.columns if c not in FIELDS[kind] and c != "row_error")
    missing = [c for c in fields if c not in frame.columns]
    if extra:
        notes.append(f"columns not in the contract were ignored: {', '.join(extra)}")
    if missing:
        notes.append(f"columns missing from the file (read as empty): {', '.join(missing)}")
    frame = frame.with_columns([pl.lit(None, pl.String).alias(c) for c in missing])
    return (
        frame.select(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("row_number"),
            *[pl.col(c).cast(pl.String) for c in fields],
            pl.col("row_error"),
        ),
        notes,
    )


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
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: Warehouse
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
