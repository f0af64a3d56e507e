"""Hostile input: every bad submission is kept, accounted for and explained; nothing outside
the workdir and the publish folder is read or written; the run completes."""

import hashlib
import os
from pathlib import Path

import pytest

from tests.hostile.corpus import CASES


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if any(p == s or s in p.parents for s in skip) or p.is_symlink() or not p.is_file():
            continue
        out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, dagster_home_template):
    from tests.conftest import TEST_KEY, dagster_home_from, write_registry

    base = tmp_path_factory.mktemp("hostile")
    env = pytest.MonkeyPatch()  # module scope: before the per-test environment, undone after
    env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
    env.setenv("DAGSTER_HOME", str(dagster_home_from(dagster_home_template, base / "dh")))
    inbox, registry = base / "inbox", write_registry(base / "registry")
    expected = {}
    for party, name, data, outcome in CASES:
        folder = inbox / party if party else inbox
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data() if callable(data) else data)
        expected[(party, name)] = outcome
    secret = base / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("report_id\nTOP-SECRET-OUTSIDE\n")
    os.symlink(secret, inbox / "ALPHA" / "incidents_symlink.csv")
    os.symlink(secret.parent, inbox / "BRAVO")  # a whole party directory that is a link
    os.mkfifo(inbox / "ALPHA" / "incidents_fifo.csv")
    expected[("ALPHA", "incidents_symlink.csv")] = "file:not_a_regular_file"
    expected[("", "BRAVO")] = "file:not_a_regular_file"
    expected[("ALPHA", "incidents_fifo.csv")] = "file:not_a_regular_file"
    work, publish = base / "work", base / "publish"
    before = _snapshot(base, (work, publish, base / "dh"))
    from pipelines.cli import run_pipeline
    from warehouse.db import Warehouse

    try:
        summary = run_pipeline(inbox, registry, work, publish)
    finally:
        env.undo()
    after = _snapshot(base, (work, publish, base / "dh"))
    with Warehouse(path=str(work / "warehouse.duckdb")).connect() as con:
        subs = {
            (party, name): (sha, status, read, acc, quar, work / "landing" / path)
            for sha, party, name, status, read, acc, quar, path in con.execute(
                "SELECT sha256, party_code, file_name, status, rows_read, rows_accepted, rows_quarantined, landing_path FROM submissions"
            ).fetchall()
        }
        rules = {}
        for sha, rule, whole in con.execute(
            "SELECT submission_sha, rule, row_number IS NULL FROM quarantine WHERE severity = 'critical'"
        ).fetchall():
            rules.setdefault(sha, set()).add(("file:" if whole else "rows:") + rule)
    return {
        "expected": expected,
        "subs": subs,
        "rules": rules,
        "summary": summary,
        "before": before,
        "after": after,
        "inbox": inbox,
    }


def test_the_corpus_is_large_enough(hostile):
    assert len(hostile["expected"]) >= 40


def test_every_submission_is_kept_and_accounted_for(hostile):
    subs = hostile["subs"]
    missing = set(hostile["expected"]) - set(subs)
    assert not missing
    for key, (_, _, read, accepted, quarantined, landing) in subs.items():
        assert read == accepted + quarantined, key
        assert landing.exists(), key


def test_landing_copies_are_byte_for_byte(hostile):
    for (party, name), (_, _, _, _, _, landing) in hostile["subs"].items():
        source = hostile["inbox"] / party / name if party else hostile["inbox"] / name
        if source.is_file() and not source.is_symlink():
            assert landing.read_bytes() == source.read_bytes(), name


@pytest.mark.parametrize(
    "case",
    [f"{p}/{n}" for p, n, _, _ in CASES]
    + ["ALPHA/incidents_symlink.csv", "/BRAVO", "ALPHA/incidents_fifo.csv"],
)
def test_each_case_has_its_outcome(hostile, case):
    party, name = case.split("/", 1)
    expected = hostile["expected"][(party, name)]
    sha, status, *_ = hostile["subs"][(party, name)]
    found = hostile["rules"].get(sha, set())
    if expected == "accepted":
        assert status == "accepted" and not found, found
    elif expected.startswith("file:"):
        assert status == "rejected" and expected in found, (status, found)
    else:
        assert status in ("partial", "rejected") and expected in found, (status, found)


def test_nothing_outside_workdir_and_publish_was_written(hostile):
    assert hostile["before"] == hostile["after"]


def test_the_symlink_target_was_never_read(hostile):
    for _, _, _, _, _, landing in hostile["subs"].values():
        assert b"TOP-SECRET-OUTSIDE" not in landing.read_bytes()


def test_the_run_still_publishes(hostile):
    assert hostile["summary"]["latest_release"]
