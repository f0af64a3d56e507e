"""Readers: explicit text schemas, specific reasons for unreadable files."""

import io

import polars as pl
import pytest

from cbm.readers import OverLimit, UnreadableSubmission, stage_rows
from cbm.registry import Limits

CSV = b"report_id,version,severity,extra_col\nA-1,1,3,x\nA-2,2,high,y\n"


def test_csv_reads_every_field_as_text_with_row_numbers():
    frame, notes = stage_rows(CSV, "csv", "incidents")
    assert frame["row_number"].to_list() == [1, 2]
    assert frame["severity"].to_list() == ["3", "high"]
    assert frame.schema["version"] == pl.String
    assert any("extra_col" in n for n in notes) and any("missing" in n for n in notes)


def test_utf8_bom_is_accepted_and_noted():
    frame, notes = stage_rows(b"\xef\xbb\xbf" + CSV, "csv", "incidents")
    assert frame["report_id"].to_list() == ["A-1", "A-2"]
    assert any("byte-order mark" in n for n in notes)


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        ("report_id,summary\nX,Caf\xe9\n".encode("latin-1"), "csv", "not UTF-8: byte 0xe9"),
        (b"report_id,summary\nX,a\x00b\n", "csv", "NUL byte at offset"),
        (b"report_id,report_id\nX,Y\n", "csv", "duplicate column names"),
        (
            b"report_id;version\nX;1\n",
            "csv",
            "semicolon-separated file; the contract's CSV is comma",
        ),
        (b"report_id\tversion\nX\t1\n", "csv", "tab-separated"),
        (b"A-1,3,GREEN\nA-2,4,GREEN\n", "csv", "first line must name the contract's columns"),
        (
            b"Report_ID,report_id\nX,Y\n",
            "csv",
            "named twice once case and spaces are ignored: report_id",
        ),
        (b"PAR1 not parquet", "parquet", "not a readable Parquet file"),
        # found by make fuzz: Python's csv module raised on a lone carriage return
        (b'a\rb"\n', "csv", "not a readable CSV file: the header line"),
        (b"\n\n", "jsonl", "no JSON lines"),
    ],
)
def test_unreadable_files_say_why(data, fmt, reason):
    with pytest.raises(UnreadableSubmission, match=reason):
        stage_rows(data, fmt, "incidents")


def test_jsonl_bad_lines_become_row_errors_and_good_lines_survive():
    data = b'{"report_id": "A", "severity": 3}\nnot json\n[1, 2]\n{"report_id": "B", "severity": {"x": 1}}\n'
    frame, _ = stage_rows(data, "jsonl", "incidents")
    assert frame.height == 4
    assert frame["report_id"].to_list() == ["A", None, None, "B"]
    errors = frame["row_error"].to_list()
    assert (
        errors[0] is None
        and "line 2 is not valid JSON" in errors[1]
        and "not an object" in errors[2]
    )
    assert frame["severity"].to_list()[3] == "<nested value>"


def test_parquet_typed_columns_become_text():
    buf = io.BytesIO()
    pl.DataFrame({"report_id": ["A"], "severity": [3], "lat": [55.5]}).write_parquet(buf)
    frame, _ = stage_rows(buf.getvalue(), "parquet", "incidents")
    assert frame["severity"].to_list() == ["3"] and frame["lat"].to_list() == ["55.5"]


def test_parquet_metadata_that_is_not_utf8_is_ignored_without_a_panic(capfd):
    """Found by make fuzz: a flipped byte in the Arrow schema's metadata key, or a field note
    that is not UTF-8, made Polars' import panic; the file was refused and Rust printed the
    panic and its backtrace to the run's log. Nothing reads that metadata: the rows count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"report_id": ["A-1", "A-2"]}), buf)
    flipped = buf.getvalue().replace(b"ARROW:schema", b"ARROW\xb7schema")
    assert flipped != buf.getvalue()
    noted = pa.schema([pa.field("report_id", pa.string(), metadata={b"note\xff": b"\xfe"})])
    buf = io.BytesIO()
    pq.write_table(pa.table({"report_id": ["B-1"]}, schema=noted), buf)
    for data, ids in ((flipped, ["A-1", "A-2"]), (buf.getvalue(), ["B-1"])):
        frame, _ = stage_rows(data, "parquet", "incidents")
        assert frame["report_id"].to_list() == ids
    assert capfd.readouterr().err == ""


def test_header_names_match_ignoring_case_and_spaces_and_extras_are_named():
    data = b" Report_ID ,VERSION,Severity,Colour\nA-1,1,3,blue\n"
    frame, notes = stage_rows(data, "csv", "incidents")
    assert frame.select("report_id", "version", "severity").row(0) == ("A-1", "1", "3")
    assert "columns not in the contract were ignored: Colour" in notes


def test_parquet_bytes_that_are_not_utf8_are_named_not_a_crash():
    """Found by make fuzz: invalid UTF-8 in Parquet text panicked inside Polars."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    table = pa.table({"report_id": pa.array([b"\xff\xfe", b"A-1"], type=pa.binary())})
    pq.write_table(table, buf)
    frame, _ = stage_rows(buf.getvalue(), "parquet", "incidents")
    assert frame["report_id"].to_list() == ["<not UTF-8 text>", "A-1"]
    # a string column holding invalid UTF-8: the file is rejected with a reason
    schema = pa.schema([("report_id", pa.string())])
    bad = pa.Table.from_arrays(
        [pa.array([b"\xff"], type=pa.binary()).cast(pa.string(), safe=False)], schema=schema
    )
    buf = io.BytesIO()
    pq.write_table(bad, buf)
    with pytest.raises(UnreadableSubmission, match="not a readable Parquet file: .*UTF8"):
        stage_rows(buf.getvalue(), "parquet", "incidents")


def test_a_header_of_100000_columns_is_over_the_limit_or_read_in_linear_time_and_noted_in_brief():
    n = 100_000
    header = ",".join(f"c{i}" for i in range(n)) + ",report_id\n"
    row = ",".join("x" for _ in range(n)) + ",R-1\n"
    with pytest.raises(OverLimit, match=r"columns 100,001, over the limit of 1,000 .*max_columns"):
        stage_rows((header + row).encode(), "csv", "incidents")  # from the header alone
    limits = Limits(max_columns=200_000)  # a deployment that raises it: still linear
    frame, notes = stage_rows((header + row).encode(), "csv", "incidents", limits)
    assert frame["report_id"].to_list() == ["R-1"]
    (extra,) = [note for note in notes if note.startswith("columns not in the contract")]
    assert extra.endswith(f"({n:,} in all)") and len(extra) < 400
    twice = (header.replace("c99999", "c5") + row).encode()  # a duplicate at the far end
    with pytest.raises(UnreadableSubmission, match="duplicate column names in the header: c5"):
        stage_rows(twice, "csv", "incidents", limits)
