"""Fixtures: a test pseudonymisation key, an isolated Dagster instance, small inboxes."""

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from cbm.generate import COMMITMENTS, POLICY, sample_parties

TEST_KEY = "t1:" + "5a" * 32


@pytest.fixture(scope="session")
def dagster_home_template(tmp_path_factory) -> Path:
    """A Dagster home as ``cbm run`` makes it, its storages created and stamped by Dagster
    itself, once per worker: each test's home is a copy of it, which spares Dagster creating
    and migrating its SQLite storages for every test (0.5-0.9 s a home against 0.15-0.3 s
    for a copy, benchmarks/README.md "The test suite")."""
    from pipelines.event_log import default_instance_yaml, instance_at  # the instance cbm run makes

    home = tmp_path_factory.mktemp("dagster-home-template") / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(default_instance_yaml())
    with instance_at(home) as instance:
        instance.get_runs()
        instance.get_dynamic_partitions("submissions")
        instance.event_log_storage.get_asset_records()
        instance.event_log_storage.run_template()  # else each test's first run makes it
    return home


def dagster_home_from(template: Path, home: Path) -> Path:
    """A module's own Dagster home, a copy of the worker's ``dagster_home_template``."""
    shutil.copytree(template, home)
    return home


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch, dagster_home_template):
    """Every test gets its own key and DAGSTER_HOME; nothing leaks between tests. A ``cbm``
    the tests start runs in its own process even where a warm process serves this checkout
    (``cbm warm``): tests/test_warm.py starts its own."""
    monkeypatch.setenv("CBM_WARM", "0")
    monkeypatch.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.delenv("CBM_KEY_FILE", raising=False)
    home = tmp_path / "dagster_home"
    shutil.copytree(dagster_home_template, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))


def write_registry(directory: Path, parties_override: list[dict] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    parties = sample_parties()
    (directory / "parties.yaml").write_text(
        yaml.safe_dump(parties_override or parties, sort_keys=False)
    )
    (directory / "commitments.yaml").write_text(yaml.safe_dump(COMMITMENTS, sort_keys=False))
    (directory / "policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=False))
    return directory


def set_limits(project, **limits) -> None:
    """The deployment's policy.yaml with these ``limits`` (the rest of the policy kept)."""
    policy = yaml.safe_load((project.registry / "policy.yaml").read_text())
    policy["limits"] = limits
    (project.registry / "policy.yaml").write_text(yaml.safe_dump(policy))


def add_regions(registry: Path, codes) -> None:
    """Let incidents name ``codes`` as regions (policy.yaml extra_regions): scenario labels
    such as "TWO" or "AMB" that are not ISO 3166-1 alpha-3 codes."""
    policy = yaml.safe_load((registry / "policy.yaml").read_text())
    policy["extra_regions"] = sorted(set(codes))
    (registry / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def incident(report_id: str, **overrides) -> dict:
    row = {
        "report_id": report_id,
        "version": 1,
        "tlp": "GREEN",
        "confidence": 80,
        "summary": "Observed activity near the crossing.",
        "category": "border_incident",
        "occurred_at": "2026-03-01T10:00:00+00:00",
        "reported_at": "2026-03-01T12:00:00+00:00",
        "time_precision": "hour",
        "region": "EST",
        "lat": None,
        "lon": None,
        "sector": None,
        "severity": 3,
        "determination": "suspected",
        "alleged_party": "ALPHA",
        "technical_keys": None,
    }
    row.update(overrides)
    return row


def compliance(report_id: str, **overrides) -> dict:
    row = {
        "report_id": report_id,
        "version": 1,
        "tlp": "GREEN",
        "confidence": 90,
        "summary": None,
        "commitment_id": "HOTLINE-TEST",
        "subject_party": "BRAVO",
        "period": "2026-03",
        "claim": "honoured",
        "requested_at": "2026-03-02T09:00:00+00:00",
        "responded_at": "2026-03-02T10:00:00+00:00",
    }
    row.update(overrides)
    return row


def attestation(report_id: str, **overrides) -> dict:
    row = {
        "report_id": report_id,
        "version": 1,
        "tlp": "GREEN",
        "confidence": 70,
        "summary": None,
        "subject_party": "BRAVO",
        "subject_kind": "compliance",
        "subject_report_id": "C-1",
        "stance": "corroborates",
        "method": "counterpart_receipt",
        "observed_at": "2026-03-03T09:00:00+00:00",
    }
    row.update(overrides)
    return row


class Project:
    """Folders of one deployment under ``root``: inbox, registry, workdir, publish."""

    def __init__(self, root: Path, registry: bool = True):
        self.root = root
        self.inbox = root / "inbox"
        self.registry = write_registry(root / "registry") if registry else root / "registry"
        self.workdir = root / "work"
        self.publish = root / "publish"
        self.inbox.mkdir(parents=True, exist_ok=True)

    def run_args(self, **flags: str) -> list[str]:
        """`cbm run` with this deployment's folders; ``flags`` replace or add (as_of=...)."""
        folders = {
            "inbox": self.inbox,
            "registry": self.registry,
            "workdir": self.workdir,
            "publish": self.publish,
        } | flags
        return [
            "run",
            *(x for k, v in folders.items() for x in (f"--{k.replace('_', '-')}", str(v))),
        ]

    def run(self, as_of=None, **options):
        from pipelines.cli import run_pipeline

        return run_pipeline(self.inbox, self.registry, self.workdir, self.publish, as_of, **options)

    def query(self, sql, params=None):
        from warehouse.db import Warehouse

        with Warehouse(path=str(self.workdir / "warehouse.duckdb")).connect() as con:
            return con.execute(sql, params or []).fetchall()

    def copy(self, root: Path) -> "Project":
        """The same deployment copied under ``root``, to change without touching this one."""
        shutil.copytree(self.root, root, symlinks=True)
        return Project(root, registry=False)


@pytest.fixture
def project(tmp_path):
    """Folders of one deployment: inbox, registry, workdir, publish."""
    return Project(tmp_path)


@pytest.fixture(scope="session")
def generated_run(tmp_path_factory, worker_id):
    """A generated inbox (``cbm.generate``, seed 5, 150 reports, one file per party and kind)
    run once through the whole pipeline, shared read-only by every test that needs one:
    computed by the first xdist worker that asks, under a file lock, and read by the others.
    Returns the deployment and the run's summary. Copy it (``Project.copy``) to change it."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    root = shared / "generated-run"
    with FileLock(str(shared / "generated-run.lock")):
        done = root / "summary.json"
        if not done.exists():
            from cbm.generate import generate

            gen = generate(root / "gen", seed=5, reports=150, halves=False)
            shutil.move(gen.inbox, root / "inbox")
            shutil.move(gen.registry, root / "registry")
            deployment = Project(root, registry=False)
            with pytest.MonkeyPatch.context() as env:  # before the per-test environment
                env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
                env.delenv("CBM_KEY_FILE", raising=False)
                env.setenv("DAGSTER_HOME", str(root / "dagster_home"))
                (root / "dagster_home").mkdir()
                from pipelines.event_log import default_instance_yaml

                (root / "dagster_home" / "dagster.yaml").write_text(default_instance_yaml())
                summary = deployment.run()
            done.write_text(json.dumps(summary, default=str))
    return Project(root, registry=False), json.loads(done.read_text())


# The modules that take longest, longest first (seconds summed over their tests with
# `pytest --durations=0`; the figures: benchmarks/README.md, "The test suite").
# xdist (`--dist loadscope --no-loadscope-reorder`, pyproject.toml) hands modules to workers
# in this order, so no worker is left running a long module alone at the end; by default it
# would order them by their number of tests, which put the longest module among the last.
# Modules not listed follow in collection order. Only the order changes, never what runs.
LONGEST_FIRST = (
    "test_reliability.py",  # make test-crash
    "test_pipeline.py",
    "test_definitions.py",
    "test_refusals.py",
    "test_warm.py",  # a warm process and a 150-report run through it, on one worker
    "test_changes.py",
    "test_stix_misp.py",
    "test_intake.py",
    "test_taxii.py",
    "test_rederive.py",
    "test_bundle_reuse.py",
    "test_cli.py",
    "test_alerts.py",
    "test_layout.py",
    "test_trust.py",
    "test_limits.py",
    "test_hostile.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


def pytest_sessionfinish(session, exitstatus):
    session.config._cbm_exitstatus = int(exitstatus)


def pytest_unconfigure(config):
    """Leave without DuckDB's "nanobind: leaked ..." shutdown noise (GX keeps type objects
    alive until interpreter exit), so pytest's own summary stays the last line printed."""
    status = getattr(config, "_cbm_exitstatus", None)
    if status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
