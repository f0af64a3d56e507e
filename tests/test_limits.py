"""Per-submission limits (policy.yaml ``limits:``) and isolation: one party's hostile file is
rejected alone, with a reason naming the limit, and every other submission goes through."""

import io

import polars as pl
import pytest
import yaml

from cbm.readers import OverLimit, stage_rows
from cbm.registry import Limits, RegistryError, load_policy
from tests.conftest import incident, set_limits, write_csv

SMALL = Limits(max_rows=1_000, max_decoded_bytes=200_000, max_field_chars=500, max_columns=30)
WIDE = {f"c{i}": ["x"] for i in range(40)} | {"report_id": ["R-1"]}


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd")
    return buf.getvalue()


def test_a_parquet_row_bomb_is_refused_from_its_footer_before_decoding():
    bomb = parquet_bytes(pl.DataFrame({"report_id": ["x"] * 2_000_000}))
    assert len(bomb) < 50_000  # a small file that decodes to two million rows
    with pytest.raises(OverLimit, match=r"rows 2,000,000, over the limit of 1,000 .*max_rows"):
        stage_rows(bomb, "parquet", "incidents", SMALL)


def test_a_parquet_size_bomb_is_refused():
    wide = parquet_bytes(pl.DataFrame({"summary": ["a" * 400] * 900}))
    with pytest.raises(OverLimit, match="max_decoded_bytes"):
        stage_rows(wide, "parquet", "incidents", SMALL)


@pytest.mark.parametrize(
    ("data", "fmt", "limit"),
    [
        (b"report_id\n" + b"x\n" * 5_000, "csv", "max_rows"),
        (b'{"report_id": "x"}\n' * 20_000, "jsonl", "max_decoded_bytes"),
        (b"report_id,summary\nx," + b"a" * 600 + b"\n", "csv", "max_field_chars"),
        (pl.DataFrame(WIDE).write_csv().encode(), "csv", "columns 41, .*max_columns"),
        (pl.DataFrame(WIDE).write_ndjson().encode(), "jsonl", "columns 41, .*max_columns"),
        (parquet_bytes(pl.DataFrame(WIDE)), "parquet", "columns 41, .*max_columns"),
    ],
)
def test_text_formats_are_held_to_the_same_limits(data, fmt, limit):
    with pytest.raises(OverLimit, match=limit):
        stage_rows(data, fmt, "incidents", SMALL)


def test_limits_come_from_the_policy_and_are_checked(tmp_path):
    from cbm.generate import POLICY

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY | {"limits": {"max_rows": 10}}))
    assert load_policy(path).limits == Limits(max_rows=10)
    path.write_text(yaml.safe_dump(POLICY | {"limits": {"max_rowz": 10}}))
    with pytest.raises(RegistryError, match="unknown limits \\['max_rowz'\\]"):
        load_policy(path)
    path.write_text(yaml.safe_dump(POLICY))
    assert load_policy(path).limits == Limits()  # documented defaults


def invalid_utf8_parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = pa.array([b"\xff"], type=pa.binary()).cast(pa.string(), safe=False)
    buf = io.BytesIO()
    pq.write_table(pa.table({"report_id": column}), buf)
    return buf.getvalue()


def test_one_bad_file_fails_alone_beside_good_ones_from_another_party(project):
    set_limits(project, max_rows=1_000)
    (project.inbox / "ALPHA").mkdir()
    (project.inbox / "ALPHA" / "incidents_bomb.parquet").write_bytes(
        parquet_bytes(pl.DataFrame({"report_id": ["x"] * 200_000}))
    )
    # text that is not UTF-8 made Polars panic (found by make fuzz)
    (project.inbox / "ALPHA" / "incidents_utf8.parquet").write_bytes(invalid_utf8_parquet())
    write_csv(project.inbox / "BRAVO" / "incidents_b1.csv", [incident("B-1")])
    write_csv(project.inbox / "BRAVO" / "incidents_b2.csv", [incident("B-2"), incident("B-3")])
    summary = project.run(ingest_only=True)
    rows = {
        name: (status, read, accepted, quarantined, rule)
        for name, status, read, accepted, quarantined, rule in project.query(
            "SELECT s.file_name, s.status, s.rows_read, s.rows_accepted, s.rows_quarantined, q.rule "
            "FROM submissions s LEFT JOIN quarantine q ON q.submission_sha = s.sha256"
        )
    }
    assert rows["incidents_bomb.parquet"] == ("rejected", 0, 0, 0, "over_limit")
    assert rows["incidents_utf8.parquet"] == ("rejected", 0, 0, 0, "unreadable_file")
    assert rows["incidents_b1.csv"][:4] == ("accepted", 1, 1, 0)
    assert rows["incidents_b2.csv"][:4] == ("accepted", 2, 2, 0)
    assert summary["rows_read"] == summary["rows_accepted"] + summary["rows_quarantined"] == 3


def test_a_reader_past_its_time_is_stopped_and_the_run_goes_on(project):
    # the least policy.yaml takes, far below what starting a reader costs: no file is in time
    set_limits(project, reader_seconds=0.001)
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    project.run(ingest_only=True)  # returns: nothing waits on a reader that cannot finish
    reasons = project.query("SELECT rule, reason FROM quarantine")
    assert len(reasons) == 2 and {r[0] for r in reasons} == {"reader_timeout"}
    assert "longer than 0.001 s (policy.yaml limits.reader_seconds)" in reasons[0][1]
    set_limits(project)  # a later run with the defaults is not held by the first
    assert project.run(ingest_only=True)["submissions"] == 2


def test_a_reader_over_its_memory_ceiling_rejects_that_file_only(tmp_path):
    from cbm.reader_worker import ReaderProcess

    source = tmp_path / "incidents_a.csv"
    write_csv(source, [incident("A-1")])
    with ReaderProcess(Limits(reader_memory_bytes=200_000_000)) as reader:  # too small to start
        outcome = reader.read(source, tmp_path / "out.parquet", "csv", "incidents")
    assert outcome.rule == "over_limit", outcome.reason
    assert "more than 200,000,000 bytes of memory" in outcome.reason
    with ReaderProcess(Limits()) as reader:  # the default ceiling parses it
        outcome = reader.read(source, tmp_path / "out.parquet", "csv", "incidents")
    assert (outcome.rows, outcome.rule) == (1, None)
    assert pl.read_parquet(tmp_path / "out.parquet")["report_id"].to_list() == ["A-1"]


@pytest.mark.parametrize(
    "exc, over",
    [
        (RuntimeError("memory allocation of 1520 bytes failed"), True),
        (OSError(12, "Cannot allocate memory"), True),
        (RuntimeError("failed to spawn thread: Os { code: 11 }"), True),
        (  # polars' async executor, in a fresh clone under load
            RuntimeError(
                "called `Result::unwrap()` on an `Err` value: Os { code: 11, kind: WouldBlock, "
                'message: "Resource temporarily unavailable" }'
            ),
            True,
        ),
        (ValueError("could not parse 'x' as i64"), False),
        (OSError(2, "No such file or directory"), False),
    ],
)
def test_running_out_of_the_readers_address_space_is_over_its_limit_however_it_shows(exc, over):
    from cbm.reader_worker import _out_of_address_space

    assert _out_of_address_space(exc) is over


def test_readers_side_by_side_answer_in_the_order_asked_and_a_bad_file_fails_alone(tmp_path):
    """Three workers over five files, one of them unreadable: every outcome in job order,
    each file's own rows in its own Parquet file, the bad one rejected with its reason."""
    from cbm.reader_worker import ReaderPool

    jobs = []
    for n in range(5):
        source = tmp_path / f"incidents_{n}.csv"
        if n == 2:
            source.write_bytes(b"report_id,version\n\x00\x00\n")
        else:
            write_csv(source, [incident(f"A-{n}-{i}") for i in range(n + 1)])
        jobs.append((source, tmp_path / f"out{n}.parquet", "csv", "incidents"))
    with ReaderPool(Limits(), workers=3) as readers:
        outcomes = readers.read_all(jobs)
        children = {r._child.pid for r in readers._readers if r._child is not None}
    assert [o.rows for o in outcomes] == [1, 2, 0, 4, 5]
    assert outcomes[2].rule and not any(o.rule for i, o in enumerate(outcomes) if i != 2)
    for n in (0, 1, 3, 4):
        ids = pl.read_parquet(tmp_path / f"out{n}.parquet")["report_id"].to_list()
        assert ids == [f"A-{n}-{i}" for i in range(n + 1)]
    assert len(children) > 1  # the files were parsed by more than one child process


def test_a_submission_that_fails_in_a_later_stage_fails_alone_and_the_run_exits_1(
    project, monkeypatch, capsys
):
    import assets.anonymised
    from pipelines.cli import main

    real = assets.anonymised.anonymise_staged

    def failing(staged, *args):
        if "X-1" in pl.read_parquet(staged)["report_id"].to_list():
            raise RuntimeError("a fault of ours")
        return real(staged, *args)

    monkeypatch.setattr(assets.anonymised, "anonymise_staged", failing)
    write_csv(project.inbox / "ALPHA" / "incidents_bad.csv", [incident("X-1")])
    write_csv(project.inbox / "BRAVO" / "incidents_good.csv", [incident("B-1")])
    code = main(project.run_args())
    err = capsys.readouterr().err
    assert code == 1
    assert "1 submission failed alone, the rest went through: ALPHA/incidents_bad.csv" in err
    assert "a fault of ours" in err and len(err.strip().splitlines()) == 1
    assert sorted(
        project.query("SELECT file_name, status, rows_read, rows_accepted FROM submissions")
    ) == [
        ("incidents_bad.csv", "rejected", 0, 0),
        ("incidents_good.csv", "accepted", 1, 1),
    ]
    assert (project.publish / "LATEST").exists()  # the rest was published
