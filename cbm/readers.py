"""Readers: a submission's bytes parsed with Polars into the contract's columns, as text.

Readers have explicit schemas: every contract field is read as text (no per-file type
guessing); types are checked later, row by row, by the expectation suites. A file that
cannot be read at all raises ``UnreadableSubmission`` with the reason; a JSON line that is
not an object becomes a row with ``row_error`` set, which the suites quarantine.
"""

import csv
import io
import json
from collections import Counter

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from cbm.contract import FIELDS, LATER_OPTIONAL
from cbm.registry import Limits

DEFAULT_LIMITS = Limits()


class UnreadableSubmission(ValueError):
    """The file cannot be read as its extension says; the message says why."""

    rule = "unreadable_file"


class OverLimit(UnreadableSubmission):
    """The file is over a per-submission limit of the policy; the message names it."""

    rule = "over_limit"


def _over(what: str, value: int, limit: str, maximum: int) -> OverLimit:
    return OverLimit(
        f"{what} {value:,}, over the limit of {maximum:,} (policy.yaml limits.{limit})"
    )


def check_text_limits(data: bytes, limits: Limits) -> None:
    """CSV and JSON Lines: the bytes are the decoded size; lines bound the rows. Checked
    before parsing."""
    if len(data) > limits.max_decoded_bytes:
        raise _over("decoded size", len(data), "max_decoded_bytes", limits.max_decoded_bytes)
    lines = data.count(b"\n")
    if lines > limits.max_rows + 1:
        raise _over("lines", lines, "max_rows", limits.max_rows)


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


def check_columns(count: int, limits: Limits) -> None:
    if count > limits.max_columns:
        raise _over("columns", count, "max_columns", limits.max_columns)


def read_csv(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[pl.DataFrame, list[str]]:
    text, notes = _decode(data)
    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as exc:  # e.g. a lone carriage return inside the header line
        raise UnreadableSubmission(f"not a readable CSV file: the header line: {exc}") from exc
    check_columns(len(header), limits)  # from the header, before the rows are parsed
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        raise UnreadableSubmission(f"duplicate column names in the header: {', '.join(dupes)}")
    try:
        frame = pl.read_csv(
            io.StringIO(text), infer_schema=False, empty_string_is_null=True, raise_if_empty=False
        )
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        raise UnreadableSubmission(f"not a readable CSV file: {str(exc).splitlines()[0]}") from exc
    return frame.with_columns(pl.lit(None, pl.String).alias("row_error")), notes


def read_jsonl(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[pl.DataFrame, list[str]]:
    del limits  # the keys are known once the lines are parsed: stage_rows checks them
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


def read_stix(data: bytes, kind: str) -> tuple[pl.DataFrame, list[str]]:
    """A STIX 2.1 bundle: validated, then mapped object by object (cbm.stix)."""
    from cbm.stix import StixError, read_bundle

    text, notes = _decode(data)
    try:
        rows, more = read_bundle(text, kind)
    except StixError as exc:
        raise UnreadableSubmission(str(exc)) from None
    fields = [*FIELDS[kind], ORIGIN]
    frame = pl.DataFrame(
        {c: [r.get(c) for r in rows] for c in fields} | {"row_error": [None] * len(rows)},
        schema={c: pl.String for c in [*fields, "row_error"]},
    )
    return frame, notes + more


def _scalar_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return "<nested value>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


NOT_UTF8 = "<not UTF-8 text>"


def _binary_as_text(table: pa.Table) -> pa.Table:
    """Binary columns as text: UTF-8 bytes as their text, other bytes as a marker the rules
    quarantine (so a row is named, not the whole file lost)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            column = table.column(i)
            try:
                text = column.cast(pa.string())
            except pa.ArrowInvalid:  # some values are not UTF-8: the rare, slow path
                values = []
                for value in column.to_pylist():
                    try:
                        values.append(None if value is None else value.decode("utf-8"))
                    except UnicodeDecodeError:
                        values.append(NOT_UTF8)
                text = pa.array(values, type=pa.string())
            table = table.set_column(i, pa.field(field.name, pa.string()), text)
    return table


def _plain_field(field: pa.Field) -> pa.Field:
    """The field without metadata, at every level of a nested type."""
    t = field.type
    if pa.types.is_struct(t):
        t = pa.struct([_plain_field(t.field(i)) for i in range(t.num_fields)])
    elif pa.types.is_large_list(t):
        t = pa.large_list(_plain_field(t.value_field))
    elif pa.types.is_fixed_size_list(t):
        t = pa.list_(_plain_field(t.value_field), t.list_size)
    elif pa.types.is_list(t):
        t = pa.list_(_plain_field(t.value_field))
    elif pa.types.is_map(t):
        t = pa.map_(_plain_field(t.key_field), _plain_field(t.item_field))
    return pa.field(field.name, t, field.nullable)


def _without_metadata(table: pa.Table) -> pa.Table:
    """The table without Arrow metadata (the writer's schema, notes on fields), which nothing
    here reads: a key or value in it that is not UTF-8 makes Polars' import panic, and Rust
    prints the panic with its backtrace to the run's log before it is caught."""
    table = table.replace_schema_metadata(None)
    plain = pa.schema([_plain_field(f) for f in table.schema])
    return table if plain.equals(table.schema, check_metadata=True) else table.cast(plain)


def read_parquet(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[pl.DataFrame, list[str]]:
    """Rows and decoded size are read from the footer first; the batches are then counted as
    they are decoded, so a footer that understates them cannot take more memory than the
    limit either."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        meta = parquet.metadata
        check_columns(len(parquet.schema_arrow), limits)
        if meta.num_rows > limits.max_rows:
            raise _over("rows", meta.num_rows, "max_rows", limits.max_rows)
        declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if declared > limits.max_decoded_bytes:
            raise _over("decoded size", declared, "max_decoded_bytes", limits.max_decoded_bytes)
        batches, decoded = [], 0
        for batch in parquet.iter_batches(batch_size=65_536):
            decoded += batch.nbytes
            if decoded > limits.max_decoded_bytes:
                raise _over(
                    "decoded size (at least)",
                    decoded,
                    "max_decoded_bytes",
                    limits.max_decoded_bytes,
                )
            batches.append(batch)
        table = _without_metadata(
            _binary_as_text(pa.Table.from_batches(batches, schema=parquet.schema_arrow))
        )
        try:
            table.validate(full=True)  # text that is not UTF-8 would panic inside Polars
        except pa.ArrowInvalid as exc:
            raise UnreadableSubmission(f"not a readable Parquet file: {exc}") from exc
        frame = pl.from_arrow(table, rechunk=False)
        if isinstance(frame, pl.Series):
            frame = frame.to_frame()
        frame = _to_text(frame)
    except UnreadableSubmission:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a Rust panic (invalid UTF-8...) is BaseException
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise UnreadableSubmission(f"not a readable Parquet file: {first}") from exc
    return frame.with_columns(pl.lit(None, pl.String).alias("row_error")), []


READERS = {"csv": read_csv, "jsonl": read_jsonl, "parquet": read_parquet}


OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "vertical bar"}


def _header_key(name: str) -> str:
    """Header names match the contract case-insensitively after trimming spaces (contract §1)."""
    return name.strip().lower()


def _no_contract_columns(frame: pl.DataFrame, kind: str) -> str:
    """Why a file with rows has none of the kind's columns: the likely cause, in words."""
    names = [c for c in frame.columns if c != "row_error"]
    shown = ", ".join(repr(c[:40]) for c in names[:5])
    if len(names) == 1:
        for delimiter, word in OTHER_DELIMITERS.items():
            if delimiter in names[0]:
                return (
                    f"the header is one column ({shown}) holding {word}s: this looks like a "
                    f"{word}-separated file; the contract's CSV is comma-separated (re-export it "
                    "with commas)"
                )
    expected = ", ".join(list(FIELDS[kind])[:4])
    return (
        f"none of the {kind} columns found in the header (got {shown}); the first line must "
        f"name the contract's columns ({expected}, ...), comma-separated"
    )


# Where a row's object came from, as the STIX bundle says (cbm.stix.row_origin): kept beside
# the contract's columns so the suites can tell this deployment's own releases handed back in.
# Only STIX rows carry it; a column of that name in any other file is an unknown column.
ORIGIN = "row_origin"


LISTED_NAMES = 20  # a note names this many columns at most, then says how many in all


def _listed(names: list[str]) -> str:
    if len(names) <= LISTED_NAMES:
        return ", ".join(names)
    return f"{', '.join(names[:LISTED_NAMES])}, ... ({len(names):,} in all)"


def stage_rows(
    data: bytes, fmt: str, kind: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[pl.DataFrame, list[str]]:
    """Parse one submission into the kind's contract columns (text), ``row_number``, ``row_error``.

    Header names match case-insensitively after trimming spaces; a column the contract does
    not know is ignored and named in the returned remarks (the submission's warnings). A file
    over one of the ``limits`` raises ``OverLimit``, before it is decoded in full where the
    format allows."""
    if fmt == "parquet":
        frame, notes = read_parquet(data, limits)
    elif fmt == "stix.json":
        check_text_limits(data, limits)
        frame, notes = read_stix(data, kind)
    else:
        check_text_limits(data, limits)
        frame, notes = READERS[fmt](data, limits)
    if frame.height > limits.max_rows:
        raise _over("rows", frame.height, "max_rows", limits.max_rows)
    check_columns(frame.width - 1, limits)  # row_error is ours
    fields = list(FIELDS[kind])
    origin = frame.get_column(ORIGIN) if fmt == "stix.json" else None
    if origin is not None:
        frame = frame.drop(ORIGIN)
    names = [c for c in frame.columns if c != "row_error"]
    keys = [_header_key(c) for c in names]
    counts = Counter(keys)  # linear: a header of 100,000 columns is counted once
    clashes = sorted(k for k, n in counts.items() if n > 1 and k in FIELDS[kind])
    if clashes:
        raise UnreadableSubmission(
            f"columns named twice once case and spaces are ignored: {', '.join(clashes)}"
        )
    renamed = {
        c: _header_key(c) for c in names if _header_key(c) in FIELDS[kind] and c != _header_key(c)
    }
    if renamed:
        frame = frame.rename(renamed)
    present = [c for c in frame.columns if c in FIELDS[kind]]
    all_rows_read = frame["row_error"].null_count() == frame.height
    if not present and frame.height and all_rows_read:  # rows read, but no contract column
        raise UnreadableSubmission(_no_contract_columns(frame, kind))
    extra = sorted(c for c in frame.columns if c not in FIELDS[kind] and c != "row_error")
    missing = [c for c in fields if c not in frame.columns]
    if extra:
        notes.append(f"columns not in the contract were ignored: {_listed(extra)}")
    named = [c for c in missing if c not in LATER_OPTIONAL.get(kind, ())]
    if named:
        notes.append(f"columns missing from the file (read as empty): {', '.join(named)}")
    frame = frame.with_columns([pl.lit(None, pl.String).alias(c) for c in missing])
    longest = (
        frame.select(pl.max_horizontal(pl.col(c).str.len_chars().max() for c in present)).item()
        if present and frame.height
        else 0
    )
    if longest and longest > limits.max_field_chars:
        raise _over("a field of", longest, "max_field_chars", limits.max_field_chars)
    return (
        frame.select(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("row_number"),
            *[pl.col(c).cast(pl.String) for c in fields],
            pl.col("row_error"),
            (pl.lit(origin) if origin is not None else pl.lit(None, pl.String)).alias(ORIGIN),
        ),
        notes,
    )
