"""Releases: manifest checks, atomic publication."""

import itertools

import pyarrow as pa
import pytest

from cbm import release as rel


def _table():
    return pa.table({"period": ["2026-01", "2026-01", "2026-02"], "value": [1.0, 2.0, 3.0]})


def _publish(tmp_path, rid="r-test"):
    return rel.publish_atomically(
        tmp_path,
        rid,
        lambda root: rel.write_product(root, "indicators", _table()),
        {"method_version": "m-x"},
    )


def test_release_layout_and_manifest(tmp_path):
    out = _publish(tmp_path)
    assert out.new
    assert [f["path"] for f in out.files] == [
        "indicators/period=2026-01/part-0.parquet",
        "indicators/period=2026-02/part-0.parquet",
    ]
    assert [f["rows"] for f in out.files] == [2, 1]
    assert rel.verify_release(out.path) == (True, [])


def test_verify_reports_tampered_missing_and_extra_files(tmp_path):
    out = _publish(tmp_path)
    first, second = (out.path / f["path"] for f in out.files)
    first.write_bytes(first.read_bytes() + b"x")
    second.unlink()
    (out.path / "indicators" / "stray.parquet").write_bytes(b"")
    ok, problems = rel.verify_release(out.path)
    assert not ok
    assert any(p.startswith("checksum mismatch: indicators/period=2026-01") for p in problems)
    assert any(p.startswith("missing: indicators/period=2026-02") for p in problems)
    assert any(
        p.startswith("extra file not in manifest: indicators/stray.parquet") for p in problems
    )


def test_no_manifest_is_not_a_release(tmp_path):
    ok, problems = rel.verify_release(tmp_path)
    assert not ok and "no manifest.json" in problems[0]


def test_a_failed_build_leaves_no_visible_release(tmp_path):
    def broken(root):
        rel.write_product(root, "indicators", _table())
        raise RuntimeError("killed mid-publication")

    with pytest.raises(RuntimeError):
        rel.publish_atomically(tmp_path, "r-broken", broken, {})
    assert not (tmp_path / "releases" / "r-broken").exists()
    _publish(tmp_path)  # the next publication sweeps the leftovers
    assert not list((tmp_path / "releases").glob(".tmp-*"))


def test_same_release_is_not_rewritten(tmp_path):
    _publish(tmp_path)
    again = _publish(tmp_path)
    assert not again.new


def test_verify_release_names_damage_the_fuzzer_found_without_raising(tmp_path):
    """Found by `make fuzz`: a manifest rewritten to match a file that is not Parquet, and an
    entry without its hash, crashed verify_release; each is now one problem line."""
    import hashlib
    import json as _json

    import pyarrow as pa

    from cbm import release as rel

    table = pa.table({"period": ["2026-01"], "v": [1.0]})
    path = rel.publish_atomically(
        tmp_path, "r-x", lambda root: rel.write_product(root, "indicators", table), {}
    ).path
    part = next(path.rglob("*.parquet"))
    part.write_bytes(b"not parquet")
    manifest = _json.loads((path / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = hashlib.sha256(b"not parquet").hexdigest()
    (path / "manifest.json").write_text(_json.dumps(manifest))
    ok, problems = rel.verify_release(path)
    assert not ok and problems == [
        "not a readable Parquet file: indicators/period=2026-01/part-0.parquet (ArrowInvalid)"
    ]
    del manifest["files"][0]["sha256"]
    (path / "manifest.json").write_text(_json.dumps(manifest))
    assert rel.verify_release(path) == (
        False,
        ["manifest entry for indicators/period=2026-01/part-0.parquet has no sha256"],
    )


def test_a_files_bytes_do_not_show_how_its_rows_were_batched(tmp_path, monkeypatch):
    """write_table hands each row group over as one chunk (M30): the bytes are those of the
    whole table made one chunk, whatever chunks the rows came in, row group by row group."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(rel, "ROW_GROUP_ROWS", 1000)
    # small pages, so a page ends inside a row group, where a chunk's edge would move it
    monkeypatch.setattr(rel, "PARQUET_OPTIONS", rel.PARQUET_OPTIONS | {"data_page_size": 256})
    n = 4321
    whole = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "code": pa.array([None if i % 7 == 0 else f"c{i % 13}" for i in range(n)]),
        }
    )
    cuts = [0, 1, 999, 1000, 2500, 2501, 4000, n]  # chunk edges off the row groups' edges
    batched = pa.concat_tables([whole.slice(a, b - a) for a, b in itertools.pairwise(cuts)])
    assert batched.column("id").num_chunks == len(cuts) - 1
    pq.write_table(
        whole, tmp_path / "reference.parquet", row_group_size=1000, **rel.PARQUET_OPTIONS
    )
    reference = (tmp_path / "reference.parquet").read_bytes()
    for name, table in (("whole", whole), ("batched", batched)):
        entry = rel.write_table(tmp_path, f"{name}.parquet", table)
        assert (tmp_path / f"{name}.parquet").read_bytes() == reference, name
        assert entry["rows"] == n
    assert pq.ParquetFile(tmp_path / "batched.parquet").num_row_groups == 5
    empty = rel.write_table(tmp_path, "empty.parquet", whole.slice(0, 0))
    assert empty["rows"] == 0 and pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_a_releases_files_are_on_disk_before_its_folder_is_renamed_into_place(
    tmp_path, monkeypatch
):
    """A power loss must not leave a release folder visible with files the disk never got:
    the filesystem is flushed (``syncfs``) while the folder still has its temporary name and
    holds every file, manifest included."""
    seen = []

    def flushed(path):
        seen.append((path.name, sorted(p.name for p in path.iterdir())))
        assert not (tmp_path / "releases" / "r-test").exists()

    monkeypatch.setattr(rel, "sync_filesystem", flushed)
    _publish(tmp_path)
    assert len(seen) == 1
    folder, names = seen[0]
    assert folder.startswith(".tmp-r-test-") and {"indicators", rel.MANIFEST} <= set(names)
    assert (tmp_path / "releases" / "r-test" / rel.MANIFEST).is_file()


def test_the_filesystem_flush_runs_and_names_a_missing_folder(tmp_path):
    from cbm.files import sync_filesystem

    (tmp_path / "f").write_bytes(b"x")
    sync_filesystem(tmp_path)  # syncfs returned 0
    with pytest.raises(FileNotFoundError, match="gone"):
        sync_filesystem(tmp_path / "gone")


def test_the_member_bundle_beside_the_release_hands_back_its_result_or_its_error(tmp_path):
    """The release asset writes the member bundle on a thread of its own while the release's
    files are written (M35): over its own cursor, on that thread; what it returns, or raises,
    reaches the step; a bundle never started (a held release) is None."""
    import threading

    from assets.published import _Beside
    from warehouse.db import Warehouse

    with Warehouse(path=str(tmp_path / "w.duckdb")).connect() as con:
        seen = []

        def write(cursor, declarations):
            seen.append((threading.current_thread().name, cursor is not con))
            return cursor.execute("SELECT 40 + ?", [declarations["n"]]).fetchone()[0]

        done = _Beside(con, write)
        done.start({"n": 2})
        done.join()
        assert done.result() == 42
        assert seen == [("cbm-member-bundle", True)]

        def fail(cursor, declarations):
            raise OSError("disk full")

        failed = _Beside(con, fail)
        failed.start({})
        failed.join()
        with pytest.raises(OSError, match="disk full"):
            failed.result()

        never = _Beside(con, write)
        never.join()
        assert never.result() is None
