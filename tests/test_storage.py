"""Locations on disk and on object storage (``cbm.storage``), the landing area and the
ingestion plan on S3, and a release copied to S3 in reader-safe order. The S3 API is moto's
server, in this process, on loopback: real HTTP, pyarrow's S3 filesystem and boto3."""

from __future__ import annotations

import os

import pytest

from cbm import release as rel
from cbm.intake import Landing, plan_intake
from cbm.signatures import SigningKey, new_party_key
from cbm.storage import Conflict, StorageError, location
from tests.conftest import incident, write_csv


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = request.node.name.replace("_", "-")[:60].strip("-").lower()
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


def test_a_local_folder_lists_links_and_special_files_as_what_they_are(tmp_path):
    (tmp_path / "ALPHA" / "sub").mkdir(parents=True)
    (tmp_path / "ALPHA" / "incidents_a.csv").write_text("x\n")
    (tmp_path / "ALPHA" / "sub" / "b.csv").write_text("yy\n")
    (tmp_path / "ALPHA" / ".hidden").write_text("")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret").write_text("never read")
    (tmp_path / "ALPHA" / "linked").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(tmp_path / "ALPHA" / "pipe")
    entries = {e.rel: e for e in location(tmp_path / "ALPHA").entries()}
    assert sorted(entries) == [".hidden", "incidents_a.csv", "linked", "pipe", "sub/b.csv"]
    assert entries["linked"].kind == f"symlink:{tmp_path / 'elsewhere'}"
    assert entries["pipe"].kind.startswith("special:")
    assert entries["sub/b.csv"].size == 3 and entries["incidents_a.csv"].kind == "file"


def test_malformed_locations_are_named(tmp_path):
    with pytest.raises(StorageError, match="s3://bucket/prefix"):
        location("s3://")
    with pytest.raises(StorageError, match="only local folders and s3://"):
        location("gs://bucket/x")


@pytest.mark.parametrize("remote", [False, True])
def test_objects_round_trip_and_latest_moves_only_from_what_was_read(tmp_path, remote, request):
    where = f"s3://{request.getfixturevalue('s3')}/pub" if remote else tmp_path / "pub"
    loc = location(where)
    assert loc.remote is remote
    loc.write_bytes("releases/r-1/a.txt", b"one")
    (tmp_path / "src.bin").write_bytes(b"\x00" * 3_000_000)
    loc.put(tmp_path / "src.bin", "releases/r-1/big.bin")
    assert loc.read_bytes("releases/r-1/a.txt") == b"one"
    assert loc.exists("releases/r-1/a.txt") and not loc.exists("releases/r-1/nope")
    assert [e.rel for e in loc.entries("releases/r-1/")] == [
        "releases/r-1/a.txt",
        "releases/r-1/big.bin",
    ]
    assert loc.names("releases") == ["r-1"]
    loc.get("releases/r-1/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"\x00" * 3_000_000
    assert loc.sha256("releases/r-1/a.txt") == rel.sha256_file(_file(tmp_path, b"one"))

    loc.replace_if("LATEST", b"r-1\n", None)
    with pytest.raises(Conflict, match="'r-1'"):
        loc.replace_if("LATEST", b"r-2\n", None)  # expected absent: it is not
    with pytest.raises(Conflict, match="another writer"):
        loc.replace_if("LATEST", b"r-3\n", b"r-0\n")  # stale expectation
    loc.replace_if("LATEST", b"r-2\n", b"r-1\n")
    assert loc.read_bytes("LATEST") == b"r-2\n"
    with pytest.raises(FileNotFoundError, match="releases/r-1/nope"):  # gone since listed
        loc.read_bytes("releases/r-1/nope")


def test_an_unusable_bucket_is_a_storage_error_naming_it(s3):
    missing = location(f"s3://{s3}-not-made/pub")
    with pytest.raises(StorageError, match=f"s3://{s3}-not-made/pub/LATEST: NoSuchBucket"):
        missing.read_bytes("LATEST")


def _file(tmp_path, data: bytes):
    path = tmp_path / "expected"
    path.write_bytes(data)
    return path


def test_the_ingestion_plan_on_s3_lands_once_and_looks_again_at_a_late_signature(s3, tmp_path):
    inbox, landing = location(f"s3://{s3}/inbox"), Landing(f"s3://{s3}/landing", tmp_path / "cache")
    write_csv(tmp_path / "incidents_a.csv", [incident("A-1")])
    inbox.put(tmp_path / "incidents_a.csv", "ALPHA/incidents_a.csv")
    first = plan_intake(inbox, landing)
    assert [(f.party_dir, f.file_name, f.new) for f in first.files] == [
        ("ALPHA", "incidents_a.csv", True)
    ]
    (sha,) = first.to_ingest
    assert landing.meta(sha)["size_bytes"] == (tmp_path / "incidents_a.csv").stat().st_size
    assert landing.local(sha).read_bytes() == (tmp_path / "incidents_a.csv").read_bytes()
    # the same bytes again: nothing new; marked ingested: nothing to do
    again = plan_intake(inbox, landing)
    assert [f.new for f in again.files] == [False] and again.to_ingest == [sha]
    from cbm.intake import mark_ingested

    mark_ingested(landing, sha, again.intake_key(sha))
    assert plan_intake(inbox, landing).to_ingest == []
    # a signature arrives later: another look, through the plan alone
    inbox.write_bytes("ALPHA/incidents_a.csv.sig", b"signature bytes")
    late = plan_intake(inbox, landing)
    assert late.to_ingest == [sha] and landing.signature(sha) == b"signature bytes"
    # a second host with an empty cache sees the same state
    other = Landing(f"s3://{s3}/landing", tmp_path / "other-cache")
    assert other.meta(sha) == landing.meta(sha) and other.find(sha[:16]) == [sha]


def test_a_plan_on_s3_downloads_only_the_objects_that_changed(s3, tmp_path, monkeypatch):
    """The kept hashes on object storage: a settled object is not downloaded again to hash
    it; one replaced (same size, other bytes) is, and lands as a new submission. Objects
    modified less than ``SETTLE_NS`` before their hashing are hashed again (S3's times have
    whole seconds and another clock)."""
    from cbm.intake import InboxHashes
    from cbm.storage import S3Location

    read = []
    hash_object = S3Location.sha256
    monkeypatch.setattr(
        S3Location, "sha256", lambda self, rel: (read.append(rel), hash_object(self, rel))[1]
    )
    inbox, landing = location(f"s3://{s3}/inbox"), Landing(f"s3://{s3}/landing", tmp_path / "c")
    write_csv(tmp_path / "incidents_a.csv", [incident("A-1")])
    inbox.put(tmp_path / "incidents_a.csv", "ALPHA/incidents_a.csv")
    first = plan_intake(inbox, landing)
    plan_intake(inbox, landing)
    assert read == ["ALPHA/incidents_a.csv"] * 2  # just written: not settled yet
    monkeypatch.setattr(InboxHashes, "SETTLE_NS", 0)  # as if written long before
    assert plan_intake(inbox, landing).to_ingest == first.to_ingest
    assert read == ["ALPHA/incidents_a.csv"] * 2  # not downloaded again
    monkeypatch.setattr(InboxHashes, "SETTLE_NS", 60 * 10**9)
    read.clear()
    write_csv(tmp_path / "incidents_a.csv", [incident("A-2")])  # the same size
    inbox.put(tmp_path / "incidents_a.csv", "ALPHA/incidents_a.csv")
    later = plan_intake(inbox, landing)
    assert read == ["ALPHA/incidents_a.csv"] and later.to_ingest != first.to_ingest


def test_a_release_reaches_s3_files_first_latest_last_and_never_over_another(s3, tmp_path):
    mirror, target = tmp_path / "mirror", location(f"s3://{s3}/publish")
    new_party_key("SECRETARIAT", tmp_path / "k.json")
    signer = SigningKey(tmp_path / "k.json")

    def publish(release_id: str, value: str) -> None:
        latest = rel.pull_published(target, mirror)
        rel.publish_atomically(
            mirror,
            release_id,
            lambda root: [rel.write_file(root, "data/x.txt", value.encode())],
            {"inputs": []},
            sign=rel.manifest_signer(signer),
        )
        rel.set_latest(mirror, release_id)
        rel.push_release(mirror, target, release_id, latest)

    publish("r-1", "first")
    assert target.read_bytes("LATEST") == b"r-1\n"
    publish("r-2", "second")
    # a fresh mirror (another host) gets the release LATEST names, whole and verifiable
    fresh = tmp_path / "fresh"
    assert rel.pull_published(target, fresh) == b"r-2\n"
    ok, problems = rel.verify_release(fresh / "releases" / "r-2")
    assert ok, problems
    assert (fresh / "releases" / "r-2" / rel.SIGNATURE).is_file()
    # another publisher moved LATEST after this one read it: nothing is pointed at
    latest = rel.pull_published(target, mirror)
    target.replace_if("LATEST", b"r-other\n", latest)
    rel.publish_atomically(
        mirror, "r-3", lambda root: [rel.write_file(root, "data/x.txt", b"third")], {"inputs": []}
    )
    with pytest.raises(Conflict, match="r-other"):
        rel.push_release(mirror, target, "r-3", latest)
    assert target.read_bytes("LATEST") == b"r-other\n"


def test_landing_on_several_threads_gives_the_plan_of_one(s3, tmp_path):
    """Hashing and copying side by side: the same files, submissions, keys and sidecars, in
    the same order, as one thread; a repeat under a second name is still one submission."""
    from cbm.intake import Landing

    inbox = location(f"s3://{s3}/inbox")
    for n in range(6):
        write_csv(tmp_path / f"f{n}.csv", [incident(f"A-{n}")])
        inbox.put(tmp_path / f"f{n}.csv", f"{'ALPHA' if n % 2 else 'BRAVO'}/incidents_{n}.csv")
    inbox.put(tmp_path / "f1.csv", "ALPHA/incidents_again.csv")  # the same bytes, renamed
    plans = {}
    for workers in (1, 4):
        landing = Landing(f"s3://{s3}/landing{workers}", tmp_path / f"cache{workers}")
        seen = []
        plan = plan_intake(
            inbox, landing, progress=lambda i, n, seen=seen: seen.append((i, n)), workers=workers
        )
        metas = {sha: landing.meta(sha) for sha in plan.submissions}
        plans[workers] = (
            plan.files,
            plan.to_ingest,
            {sha: {k: v for k, v in m.items() if k != "received_at"} for sha, m in metas.items()},
        )
        assert seen[-1] == (7, 7)
    assert plans[1] == plans[4]
    files, to_ingest, metas = plans[4]
    assert len(files) == 7 and len(to_ingest) == 6
    assert sorted(m["paths"] for m in metas.values() if len(m["paths"]) > 1) == [
        ["incidents_1.csv", "incidents_again.csv"]
    ]
