"""A member bundle written from the previous one (issue #40, decision 5): each submission's
report file whose rows did not change is copied, not written again, and the bundle is byte
for byte the one a full write makes (``warehouse.bundle._write_reports``, ``Earlier``)."""

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from cbm import release as rel
from warehouse import bundle as bundles

SCHEMA = pa.schema(
    [
        ("submission_sha", pa.string()),
        ("row_number", pa.int64()),
        ("report_id", pa.string()),
        ("severity", pa.int64()),
    ]
)


def _files(root: Path, entries) -> dict[str, bytes]:
    return {e["path"]: (root / e["path"]).read_bytes() for e in entries}


@pytest.fixture(autouse=True)
def small_files_copied_too(monkeypatch):
    """These histories are small: every file is compared and copied, not from 10,000 rows on."""
    monkeypatch.setattr(bundles, "COPY_FROM_ROWS", 1)


@pytest.fixture
def written(monkeypatch) -> list[Path]:
    """The paths pyarrow writes from now on (a copied file is not among them)."""
    paths: list[Path] = []
    real = rel.pq.write_table
    monkeypatch.setattr(
        rel.pq, "write_table", lambda t, path, **kw: paths.append(Path(path)) or real(t, path, **kw)
    )
    return paths


def _rows(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(
        sorted(rows, key=lambda r: (r["submission_sha"], r["row_number"])), SCHEMA
    )


@pytest.mark.parametrize("seed", range(12))
def test_incremental_and_full_bundles_agree_over_random_histories(tmp_path, written, seed):
    """Random histories of submissions (rows superseded and so left out, submissions new,
    a kind with no rows at all, chunked as a query may hand them over): each step's files
    written from the previous step's equal a full write, and every submission the step did
    not touch is copied."""
    rng = random.Random(seed)
    rows: list[dict] = []

    def submit(sha: str) -> None:
        rows.extend(
            {
                "submission_sha": sha,
                "row_number": n,
                "report_id": f"{sha}-{n}",
                "severity": rng.choice([None, 1, 2, 3, 4, 5]),
            }
            for n in range(rng.randint(1, 30))
        )

    for s in range(rng.randint(0, 6)):
        submit(f"{s:02d}" * 32)
    previous_root = previous = None
    touched: set[str] = set()  # the submissions the step changed or added
    for step in range(4):
        table = _rows(rows)
        if table.num_rows > 3:  # as a query hands rows over: in batches
            table = pa.concat_tables([table.slice(0, 3), table.slice(3)])
        root, full_root = tmp_path / f"b{step}", tmp_path / f"full{step}"
        written.clear()
        entries = bundles._write_reports(
            root, "incidents", table, bundles.Earlier.of(previous_root, previous)
        )
        copied = {e["path"] for e in entries} - {p.relative_to(root).as_posix() for p in written}
        full = bundles._write_reports(full_root, "incidents", table, None)
        assert entries == full and _files(root, entries) == _files(full_root, full), (seed, step)
        assert all(e["rows"] > 0 for e in entries) and sum(e["rows"] for e in entries) == len(rows)
        before = {e["path"] for e in previous or []}
        untouched = {e["path"] for e in entries if Path(e["path"]).stem not in touched} & before
        assert untouched <= copied <= before, (seed, step)
        previous_root, previous = root, entries
        # the next step: a later version supersedes some rows (they leave their submission's
        # file), and a new submission arrives
        shas = sorted({r["submission_sha"] for r in rows})
        touched = set(rng.sample(shas, min(len(shas), rng.randint(0, 2))))
        rows[:] = [r for r in rows if r["submission_sha"] not in touched or rng.random() > 0.3]
        touched.add(f"{step + 10:02d}" * 32)
        submit(f"{step + 10:02d}" * 32)


def test_an_earlier_file_altered_since_is_written_anew(tmp_path, written):
    table = _rows(
        [
            {"submission_sha": sha * 64, "row_number": 1, "report_id": sha, "severity": 3}
            for sha in "ab"
        ]
    )
    first = bundles._write_reports(tmp_path / "a", "incidents", table, None)
    # the same rows, other bytes (another compression): not the file its description lists
    altered = tmp_path / "a" / first[0]["path"]
    rel.pq.write_table(rel.pq.read_table(altered), altered, compression="snappy")
    written.clear()
    again = bundles._write_reports(
        tmp_path / "b", "incidents", table, bundles.Earlier.of(tmp_path / "a", first)
    )
    assert again == first
    assert written == [tmp_path / "b" / first[0]["path"]]  # the altered one; the other copied


def test_only_a_bundle_written_the_same_way_is_copied_from(tmp_path):
    root = tmp_path / "bundle"
    root.mkdir()
    description = {"bundle_version": 3, "parquet_writer": rel.parquet_writer(), "files": []}
    (root / bundles.BUNDLE_FILE).write_text(json.dumps(description))
    assert bundles.earlier_bundle(root) is None  # nothing to copy
    description["files"] = [{"path": "reports/incidents/x.parquet", "sha256": "0" * 64}]
    (root / bundles.BUNDLE_FILE).write_text(json.dumps(description))
    assert bundles.earlier_bundle(root) == bundles.Earlier(
        root, {"reports/incidents/x.parquet": "0" * 64}
    )
    # another writer (a pyarrow upgrade, other options), a version-2 bundle, an unreadable one
    for other in (
        {**description, "parquet_writer": "pyarrow 1.0.0 {}"},
        {k: v for k, v in description.items() if k != "parquet_writer"},
    ):
        (root / bundles.BUNDLE_FILE).write_text(json.dumps(other))
        assert bundles.earlier_bundle(root) is None
    (root / bundles.BUNDLE_FILE).write_text("{not json")
    assert bundles.earlier_bundle(root) is None
    assert bundles.earlier_bundle(tmp_path / "none") is None


def test_a_small_submission_is_written_without_reading_the_earlier_file(tmp_path, monkeypatch):
    """Below ``COPY_FROM_ROWS`` writing costs no more than reading back: the same bytes."""
    monkeypatch.setattr(bundles, "COPY_FROM_ROWS", 3)
    table = _rows(
        [
            {"submission_sha": "a" * 64, "row_number": n, "report_id": f"A-{n}", "severity": 1}
            for n in range(2)
        ]
        + [
            {"submission_sha": "b" * 64, "row_number": n, "report_id": f"B-{n}", "severity": 2}
            for n in range(3)
        ]
    )
    first = bundles._write_reports(tmp_path / "a", "incidents", table, None)
    read = []
    real = bundles.pq.read_table
    monkeypatch.setattr(
        bundles.pq, "read_table", lambda p, **kw: read.append(Path(p)) or real(p, **kw)
    )
    again = bundles._write_reports(
        tmp_path / "b", "incidents", table, bundles.Earlier.of(tmp_path / "a", first)
    )
    assert again == first and read == [tmp_path / "a" / first[1]["path"]]  # only b's, 3 rows
