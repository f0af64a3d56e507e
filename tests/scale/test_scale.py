"""The scale-out deployment, for real (``make test-scale``, run by ``.ci/run``): PostgreSQL
instance storage, S3 (moto) for inbox, landing and publish, webserver, daemon and code server
as separate processes. Submissions from 20 parties arrive in waves; the inbox sensor, the run
queue and declarative automation do the work; the release is cut through the webserver's
GraphQL API as an operator would. Then: every submission accounted for, no run failed, and
the release is the same, file for file and hash for hash, as ``cbm run`` makes of the same
inputs on one machine (the deployment with two workers, ``cbm run`` with one).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.scale.deployment import BIN, BUCKET, ROOT, Deployment

pytestmark = pytest.mark.scale

WAVES = 3
TIMEOUT = 420  # seconds for the whole intake; the test stops by itself


def _wait(what: str, done, deployment: Deployment, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(2)
    raise AssertionError(f"{what}: not done within {timeout:.0f} s\n{deployment.logs()}")


def _ingested(deployment: Deployment) -> tuple[int, int]:
    """(landed submissions, of which ingested with their current intake key)."""
    from cbm.intake import Landing, current_intake_key

    os.environ.update({k: v for k, v in deployment.env.items() if k.startswith("AWS_")})
    landing = Landing(deployment.landing, cache=deployment.base / "probe-cache")
    shas = [
        e.rel.rpartition("/")[2][:-5] for e in landing.store.entries() if e.rel.endswith(".json")
    ]
    done = sum(
        1
        for sha in shas
        if landing.meta(sha).get("ingested_key") == current_intake_key(landing, sha)
    )
    return len(shas), done


def _runs(instance) -> list:
    return list(instance.get_runs())


def _release_files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_waves_from_20_parties_through_postgres_s3_and_the_daemon(tmp_path):
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from cbm.generate import generate
    from cbm.protection import new_key_file
    from cbm.storage import location

    gen = generate(tmp_path / "gen", reports=600, parties=20, halves=False)
    key = new_key_file(tmp_path / "pseudonym.key")
    files = sorted(p for p in gen.inbox.rglob("*") if p.is_file())
    parties = sorted({p.relative_to(gen.inbox).parts[0] for p in files})
    assert len(parties) >= 20
    waves = [
        [p for p in files if parties.index(p.relative_to(gen.inbox).parts[0]) % WAVES == w]
        for w in range(WAVES)
    ]

    with Deployment(tmp_path / "scale", gen.registry, key) as deployment:
        instance = deployment.instance()
        t0 = time.monotonic()
        expected = 0
        for wave in waves:
            deployment.drop([(p, p.relative_to(gen.inbox).as_posix()) for p in wave])
            expected += len(wave)
            _wait(
                f"wave of {len(wave)} files ingested",
                lambda n=expected: _ingested(deployment) == (n, n),
                deployment,
                TIMEOUT - (time.monotonic() - t0),
            )
        # files of a wave come as one run; a file the sensor saw alone, as one that verifies too
        ingestion = {"ingest_submissions", "ingest_and_verify"}
        ingest_runs = [r for r in _runs(instance) if r.job_name in ingestion]
        # automation catches up (events, verdicts, months of indicators, alerts): no run
        # active or queued, and none started for a whole automation interval
        quiet = {"since": time.monotonic(), "count": len(_runs(instance))}

        def settled() -> bool:
            runs = _runs(instance)
            if len(runs) != quiet["count"] or any(not r.is_finished for r in runs):
                quiet.update(since=time.monotonic(), count=len(runs))
                return False
            return time.monotonic() - quiet["since"] > 75

        _wait("automation settled", settled, deployment, 300)
        # the operator cuts a release through the webserver, as from the UI
        client = DagsterGraphQLClient("127.0.0.1", port_number=deployment.web_port)
        run_id = client.submit_job_execution(
            "publish_release",
            repository_location_name="cbm_verify",
            repository_name="__repository__",
        )
        _wait(
            "publish_release finished",
            lambda: instance.get_run_by_id(run_id).is_finished,
            deployment,
            180,
        )
        runs = _runs(instance)
        failed = [(r.job_name, r.run_id) for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        assert not failed, f"runs that did not succeed: {failed}\n{deployment.logs()}"
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        # manifest_integrity downloaded the release LATEST names from S3 and verified it
        checks = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        integrity = [c for c in checks if c.check_name == "manifest_integrity"]
        assert integrity and all(c.passed for c in integrity), integrity
        # the sensor batched: far fewer ingestion runs than files, and every wave had one
        assert WAVES <= len(ingest_runs) < len(files)
        assert {r.job_name for r in runs} >= {"publish_release"}
        assert {r.job_name for r in runs} & ingestion
        assert len({r.job_name for r in runs}) >= 3, "automation requested no verification run"

        # every submission accounted for, through the release's member-tier records
        import duckdb

        with duckdb.connect(str(deployment.workdir / "warehouse.duckdb"), read_only=True) as con:
            subs = con.execute(
                "SELECT count(*), count(*) FILTER (WHERE rows_read = rows_accepted + rows_quarantined) "
                "FROM submissions"
            ).fetchone()
            accepted = [
                sha
                for (sha,) in con.execute(
                    "SELECT sha256 FROM submissions WHERE rows_accepted > 0"
                ).fetchall()
            ]
        assert subs == (len(files), len(files))

        # the published release, as a reader of the object storage gets it
        os.environ.update({k: v for k, v in deployment.env.items() if k.startswith("AWS_")})
        publish = location(deployment.publish)
        latest = publish.read_bytes("LATEST").decode().strip()
        remote = tmp_path / "remote"
        for entry in publish.entries(f"releases/{latest}/"):
            publish.get(entry.rel, remote / entry.rel)
        objects = deployment.s3().list_objects_v2(Bucket=BUCKET, Prefix="publish/")["Contents"]
        assert not [o["Key"] for o in objects if "/.tmp" in o["Key"]]
    assert not deployment.leftovers(), "processes left running after the deployment stopped"

    # the embedded default on the same inputs: the same release, file for file
    embedded = tmp_path / "embedded"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CBM_", "DAGSTER_", "AWS_"))}
    subprocess.run(
        [BIN / "cbm", "run", "--inbox", gen.inbox, "--registry", gen.registry,
         "--workdir", embedded / "work", "--publish", embedded / "publish"],
        env=env | {"CBM_KEY_FILE": str(key)}, cwd=ROOT, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    local_latest = (embedded / "publish" / "LATEST").read_text().strip()
    assert latest == local_latest
    ours, theirs = (
        _release_files(remote / "releases" / latest),
        _release_files(embedded / "publish" / "releases" / local_latest),
    )
    assert sorted(ours) == sorted(theirs)
    differ = [f for f in ours if ours[f] != theirs[f]]
    assert not differ, f"files that differ from the embedded mode's: {differ[:10]}"
    # the submissions the release was computed from: every one that verification reads
    manifest = json.loads((remote / "releases" / latest / "manifest.json").read_text())
    assert set(manifest["inputs"]) <= set(accepted) and len(manifest["inputs"]) > len(files) // 2
