"""The code location: its graph (snapshot), the inbox sensor on the one ingestion plan, and
one asset materialized on a temporary DuckDB."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.resources import CbmSettings, RegistryResource
from assets.stages import STAGES
from cbm.files import sha256_file
from cbm.intake import partition_key, plan_intake, submission_key
from cbm.signatures import new_party_key, sign_file
from pipelines.definitions import build_definitions, defs
from tests.conftest import incident, set_limits, write_csv, write_registry
from warehouse.db import Warehouse

ROOT = Path(__file__).resolve().parents[1]

REGISTRY = ["party_directory", "registry_commitments", "registry_obligations"]
REPORTS = ["reports_attestations", "reports_compliance", "reports_incidents"]
# asset -> (group, upstream assets, partitioned, refreshed by declarative automation).
# A change here is a change of the graph verifiers see in the UI: review it as such.
EXPECTED_GRAPH = {
    "party_directory": ("registry", [], False, False),
    "registry_commitments": ("registry", [], False, False),
    "registry_obligations": ("registry", [], False, False),
    "registry_regions": ("registry", [], False, False),
    "verification_scope": ("registry", [], False, False),
    "landed_submissions": ("landing", [], True, False),
    "staged_submissions": ("staged", ["landed_submissions"], True, False),
    "anon_attestations": ("anonymised", ["staged_submissions"], True, False),
    "anon_compliance": ("anonymised", ["staged_submissions"], True, False),
    "anon_incidents": ("anonymised", ["staged_submissions"], True, False),
    "validation_findings": (
        "validated",
        ["anon_attestations", "anon_compliance", "anon_incidents"]
        + ["party_directory", "registry_commitments", "registry_regions"],
        True,
        False,
    ),
    "reports_attestations": ("validated", ["validation_findings"], True, False),
    "reports_compliance": ("validated", ["validation_findings"], True, False),
    "reports_incidents": ("validated", ["validation_findings"], True, False),
    "submissions": (
        "validated",
        ["landed_submissions", *REPORTS, "staged_submissions", "validation_findings"],
        False,
        True,
    ),
    "quarantine": (
        "validated",
        ["landed_submissions", "staged_submissions", "validation_findings"],
        False,
        True,
    ),
    "release_context": (
        "validated",
        [*REPORTS, *REGISTRY, "submissions", "verification_scope"],
        False,
        True,
    ),
    "event_members": ("verified", ["release_context", "reports_incidents"], False, True),
    "disputes": (
        "verified",
        ["event_members", "party_directory", "release_context", *REPORTS[:2]],
        False,
        True,
    ),
    "incident_clusters": (
        "verified",
        ["disputes", "event_members", "party_directory", "release_context"]
        + ["reports_attestations"],
        False,
        True,
    ),
    "event_evidence": ("verified", ["event_members", "reports_attestations"], False, True),
    "compliance_verdicts": (
        "verified",
        [*REGISTRY, "disputes", "release_context", *REPORTS[:2]],
        False,
        True,
    ),
    "calendar_entries": (
        "verified",
        [*REGISTRY, "compliance_verdicts", "reports_compliance"],
        False,
        True,
    ),
    "dyad_levels": ("alerts", ["incident_clusters", "release_context"], False, True),
    "alerts": ("alerts", ["alert_acks", "dyad_levels", "party_directory"], False, True),
    "alert_deliveries": ("alerts", ["alerts"], False, True),
    "alert_acks": ("alerts", [], False, False),  # written by cbm alerts --ack, outside runs
    "indicator_values": (
        "indicators",
        ["compliance_verdicts", "disputes", "event_members", "incident_clusters"]
        + ["release_context"],
        True,
        True,
    ),
    "release": (
        "published",
        [
            "calendar_entries",
            "compliance_verdicts",
            "disputes",
            "incident_clusters",
            "indicator_values",
            "key_rotations",
            "party_directory",
            "release_context",
            "submissions",
        ],
        False,
        False,
    ),
    "published_event_members": ("published", ["event_members", "release"], False, False),
    "own_publications": ("published", ["release"], False, False),
    "key_rotations": ("published", [], False, False),  # written by cbm rotate-key
}


def test_code_location_loads_with_the_expected_graph():
    graph = defs.resolve_asset_graph()
    actual = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        actual[key.to_user_string()] = (
            node.group_name,
            sorted(p.to_user_string() for p in node.parent_keys),
            node.partitions_def is not None,
            node.automation_condition is not None,
        )
    assert actual == {k: (g, sorted(u), p, a) for k, (g, u, p, a) in EXPECTED_GRAPH.items()}


GUIDE = ROOT / "docs" / "verifier-guide.md"
LINEAGE_BEGIN = "<!-- lineage table: tests/test_definitions.py writes it from the definitions -->"
LINEAGE_END = "<!-- end of the lineage table -->"


def lineage_table() -> str:
    """The lineage as text, stage by stage: what each asset reads and the checks on it."""
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for check in graph.asset_check_keys:
        checks.setdefault(check.asset_key.to_user_string(), []).append(check.name)
    rows = ["| stage | asset | reads | checks |", "|---|---|---|---|"]
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    assert {graph.get(k).group_name for k in keys} == set(STAGES)
    for stage in STAGES:
        for key in (k for k in keys if graph.get(k).group_name == stage):
            reads = sorted(p.to_user_string() for p in graph.get(key).parent_keys)
            name = key.to_user_string()
            rows.append(
                f"| {stage} | `{name}` | {', '.join(f'`{r}`' for r in reads) or '–'} "
                f"| {', '.join(f'`{c}`' for c in sorted(checks.get(name, []))) or '–'} |"
            )
    return "\n".join(rows)


def test_the_verifier_guide_lists_the_lineage_as_defined():
    """The guide's lineage table is the definitions' graph, whole and readable (the UI's own
    graph cuts long names): regenerate it from the failure message when the graph changes."""
    text = GUIDE.read_text()
    table = text.split(LINEAGE_BEGIN, 1)[1].split(LINEAGE_END, 1)[0].strip()
    expected = lineage_table()
    assert table == expected, f"docs/verifier-guide.md's lineage table is now:\n\n{expected}"


def test_every_asset_has_description_kinds_and_owner():
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert "<" not in spec.description, name  # the UI renders descriptions as Markdown
        assert spec.kinds, name
        assert spec.owners, name
        # an asset no run writes (the cbm command does) declares its columns and their
        # meanings itself: no materialization of a run will (the others' come with theirs,
        # checked in the browser suite)
        if not defs.resolve_asset_graph().get(spec.key).is_materializable:
            schema = spec.metadata.get("dagster/column_schema")
            assert schema is not None, name
            columns = schema.schema.columns if hasattr(schema, "schema") else schema.columns
            assert columns and all(c.description for c in columns), name


def test_jobs_sensor_schedule_and_checks_are_defined():
    assert defs.resolve_job_def("ingest_submissions").partitions_def.name == "submissions"
    assert defs.resolve_job_def("publish_release")
    assert defs.resolve_job_def("verify_reports")
    # cbm run's first run: ingestion's partition range, then verification
    assert defs.resolve_job_def("ingest_and_verify").partitions_def.name == "submissions"
    assert defs.resolve_job_def("compute_indicators").partitions_def.name == "months"
    # cbm run's last run: the two above together
    assert defs.resolve_job_def("indicators_and_release").partitions_def.name == "months"
    assert defs.resolve_sensor_def("inbox_sensor")
    # the assets the inbox sensor's requests name are each job's own
    from pipelines.jobs import JOB_ASSETS

    for name, assets in JOB_ASSETS.items():
        selected = defs.resolve_job_def(name).asset_layer.selected_asset_keys
        assert set(selected) == {dg.AssetKey(a) for a in assets}, name
    assert defs.resolve_schedule_def("monthly_release").cron_schedule == "0 6 1 * *"
    # scheduling as documented (docs/operations.md): all three run on a new instance
    assert defs.resolve_sensor_def("inbox_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert (
        defs.resolve_sensor_def("keep_verification_current").default_status
        == dg.DefaultSensorStatus.RUNNING
    )
    assert (
        defs.resolve_schedule_def("monthly_release").default_status
        == dg.DefaultScheduleStatus.RUNNING
    )
    checks = {
        (k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys
    }
    assert {
        ("submissions", "submission_accounting"),
        ("reports_incidents", "suite_incidents"),
        ("release_context", "suite_warehouse_submissions"),
        ("release", "manifest_integrity"),
        ("validation_findings", "submission_outcome"),
        ("alerts", "alerts_acknowledged"),
    } <= checks


def test_every_warehouse_table_and_view_belongs_to_an_asset(project):
    """After a whole run, the warehouse's real tables and views are exactly the declared
    assets that are tables, and what one writer keeps beside its table (metadata
    ``keeps_in_warehouse`` of its specs: views of it, rows it sets aside) (#37)."""
    from assets.metadata import KEEPS

    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    project.run()
    graph = defs.resolve_asset_graph()
    kept_by: dict[str, set[str]] = {}  # table or view -> the ops (writers) whose specs keep it
    for spec in defs.resolve_all_asset_specs():
        node = graph.get(spec.key)
        writer = node.assets_def.node_def.name if node.is_materializable else "cbm"
        for name in spec.metadata.get(KEEPS, dg.MetadataValue.json([])).value:
            kept_by.setdefault(name, set()).add(writer)
    assert {n: w for n, w in kept_by.items() if len(w) != 1} == {}  # one writer each
    with Warehouse(str(project.workdir / "warehouse.duckdb")).connect(read_only=True) as con:
        names = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assets = {k for k in EXPECTED_GRAPH if k != "release"}  # the release is files, not a table
    names.discard("schema_migrations")  # the warehouse's own version (warehouse/migrations.py)
    names.discard("schema_state")  # and the schema it was last brought to (warehouse/db.py)
    assert names - assets - set(kept_by) == set()  # a table no asset declares
    assert assets - names == set()  # an asset whose table was never made
    assert set(kept_by) - names == set()  # a declared view or table that does not exist
    assert not assets & set(kept_by)
    # `cbm run` followed the same plan as the sensor: nothing is left for the next one
    assert plan_intake(project.inbox, project.workdir / "landing").to_ingest == []


# ---------------------------------------------------------------- the inbox sensor


@pytest.fixture
def deployment(tmp_path):
    """A deployment's folders and its Definitions, as the code location builds them."""

    class Deployment:
        def __init__(self):
            self.inbox = tmp_path / "inbox"
            self.registry = write_registry(tmp_path / "registry")
            # an instance attribute: a resource on a class body would act as a descriptor
            self.settings = CbmSettings(
                inbox=str(tmp_path / "inbox"),
                workdir=str(tmp_path / "work"),
                publish=str(tmp_path / "publish"),
            )

        @property
        def definitions(self):
            return build_definitions(self.settings, RegistryResource(directory=str(self.registry)))

        def tick(self, instance, cursor=None):
            local = self.definitions
            context = dg.build_sensor_context(
                instance=instance,
                resources={
                    "settings": self.settings,
                    "registry": RegistryResource(directory=str(self.registry)),
                },
                cursor=cursor,
                definitions=local,
            )
            result = local.resolve_sensor_def("inbox_sensor")(context)
            if isinstance(result, dg.SensorResult):  # as the daemon does with the result
                for request in result.dynamic_partitions_requests:
                    instance.add_dynamic_partitions(
                        request.partitions_def_name, request.partition_keys
                    )
            return result

        def execute(self, instance, result, job_name: str | None = None):
            """Each requested run, as the daemon launches it (``job_name``: as that job's,
            with all its assets)."""
            for request in result.run_requests:
                job = self.definitions.resolve_job_def(job_name or request.job_name)
                assert job.execute_in_process(
                    instance=instance,
                    partition_key=request.partition_key,
                    tags=request.tags,
                    asset_selection=None if job_name else request.asset_selection,
                ).success

        def status(self):
            with Warehouse(str(tmp_path / "work" / "warehouse.duckdb")).connect() as con:
                return dict(con.execute("SELECT file_name, status FROM submissions").fetchall())

    (tmp_path / "inbox").mkdir()
    return Deployment()


def test_sensor_requests_one_run_for_new_submissions_and_counts_the_same_bytes_once(deployment):
    write_csv(deployment.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    write_csv(deployment.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    with dg.instance_for_test() as instance:
        first = deployment.tick(instance)
        # files dropped together: one run over the range of their partitions, as cbm run does
        (batch,) = first.run_requests
        partitions = instance.get_dynamic_partitions("submissions")
        assert batch.partition_key is None and len(partitions) == 2
        assert (
            batch.tags["dagster/asset_partition_range_start"],
            batch.tags["dagster/asset_partition_range_end"],
        ) == (partitions[0], partitions[-1])
        assert batch.run_key.startswith("batch:")
        assert deployment.tick(instance).run_requests[0].run_key == batch.run_key  # stable
        deployment.execute(instance, first)
        assert set(deployment.status().values()) == {"accepted"}
        # a run of a range: each submission's outcome evaluation is on its own partition
        check = dg.AssetCheckKey(dg.AssetKey("validation_findings"), "submission_outcome")
        evaluations = [
            r.event.dagster_event.event_specific_data
            for r in instance.event_log_storage.get_asset_check_execution_history(check, limit=10)
        ]
        per_partition = [e.partition for e in evaluations if e.partition]
        assert sorted(per_partition) == sorted(partitions)
        evaluations = [e for e in evaluations if e.partition]
        assert all(e.passed and ": accepted, 1 rows read" in e.description for e in evaluations)
        unchanged = deployment.tick(instance, first.cursor)
        assert isinstance(unchanged, dg.SkipReason) and "no change" in unchanged.skip_message
        # the same bytes under another name: the same submission, looked at again only to
        # list the new path; nothing is counted twice
        write_csv(deployment.inbox / "BRAVO" / "incidents_b_copy.csv", [incident("B-1")])
        again = deployment.tick(instance, first.cursor)
        assert again.cursor != first.cursor
        bravo = submission_key("BRAVO", sha256_file(deployment.inbox / "BRAVO" / "incidents_b.csv"))
        # the partition says which file it is, without a lookup
        assert [r.partition_key for r in again.run_requests] == [
            partition_key("BRAVO", "incidents_b.csv", bravo)
        ]
        assert again.run_requests[0].partition_key.startswith("BRAVO/incidents_b.csv@")
        deployment.execute(instance, again)
        with Warehouse(str(deployment.settings.warehouse_path)).connect() as con:
            assert con.execute(
                "SELECT count(*), sum(rows_accepted), max(len(paths)) FROM submissions"
            ).fetchone() == (2, 2, 2)


def test_the_sensor_and_cbm_run_make_the_same_ingestion_runs(deployment, tmp_path):
    """One runner (pipelines/runs.py): the runs the sensor requests for an inbox are the
    runs cbm run executes for it, partition range for partition range (#37)."""
    from pipelines.cli import main

    for party, n in (("ALPHA", 3), ("BRAVO", 2)):
        for i in range(n):
            write_csv(deployment.inbox / party / f"incidents_{i}.csv", [incident(f"{party}-{i}")])
    with dg.instance_for_test() as instance:
        requested = [
            (
                r.tags.get("dagster/asset_partition_range_start", r.partition_key),
                r.tags.get("dagster/asset_partition_range_end", r.partition_key),
            )
            for r in deployment.tick(instance).run_requests
        ]
    work = tmp_path / "cli"
    argv = ["run", "--inbox", str(deployment.inbox), "--registry", str(deployment.registry)]
    argv += ["--workdir", str(work), "--publish", str(tmp_path / "pub"), "--ingest-only"]
    assert main(argv) == 0
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="ingest_submissions"))
        executed = [
            (
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in reversed(runs)
        ]
    assert executed == requested and len(requested) == 1


def test_a_late_signature_gets_the_file_another_look_through_the_sensor_alone(deployment, tmp_path):
    key_file = tmp_path / "alpha.key"
    public = new_party_key("ALPHA", key_file)
    parties = yaml.safe_load((deployment.registry / "parties.yaml").read_text())
    next(p for p in parties if p["code"] == "ALPHA")["public_key"] = public
    write_registry(deployment.registry, parties)
    report = write_csv(deployment.inbox / "ALPHA" / "incidents_s.csv", [incident("S-1")])
    with dg.instance_for_test() as instance:
        first = deployment.tick(instance)
        deployment.execute(instance, first)
        assert deployment.status() == {"incidents_s.csv": "rejected"}  # signature_missing
        sign_file(key_file, report)
        second = deployment.tick(instance, first.cursor)
        assert [r.partition_key for r in second.run_requests] == [
            r.partition_key for r in first.run_requests
        ]
        assert second.run_requests[0].run_key != first.run_requests[0].run_key
        deployment.execute(instance, second)
        assert deployment.status() == {"incidents_s.csv": "accepted"}
        # looked at once: the next change of the inbox asks for nothing more
        write_csv(deployment.inbox / "ALPHA" / "notes.txt", [{"a": 1}])
        third = deployment.tick(instance, second.cursor)
        assert len(third.run_requests) == 1  # the new file only
        assert third.run_requests[0].partition_key != first.run_requests[0].partition_key


def test_a_removed_file_is_noticed_and_its_submission_kept(deployment, tmp_path):
    kept = write_csv(deployment.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    with dg.instance_for_test() as instance:
        first = deployment.tick(instance)
        deployment.execute(instance, first)
        kept.unlink()
        after = deployment.tick(instance, first.cursor)
        assert isinstance(after, dg.SensorResult) and after.run_requests == []
        assert after.cursor != first.cursor
        assert deployment.status() == {"incidents_a.csv": "accepted"}
        assert len(list((tmp_path / "work" / "landing").glob("*/*.json"))) == 1  # sidecars


# ---------------------------------------------------------------- one asset at a time


def test_materialize_landing_alone_on_a_temporary_duckdb(deployment):
    from assets.landing import landed_submissions
    from assets.resources import PseudonymKeyResource
    from warehouse.resource import WarehouseResource

    write_csv(deployment.inbox / "ZULU" / "incidents_z.csv", [incident("Z-1")])
    (sha,) = plan_intake(deployment.inbox, deployment.settings.landing_area).to_ingest
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("submissions", [sha])
        result = dg.materialize(
            [landed_submissions],
            partition_key=sha,
            instance=instance,
            resources={
                "settings": deployment.settings,
                "registry": RegistryResource(directory=str(deployment.registry)),
                "pseudonym_key": PseudonymKeyResource(),
                "warehouse": WarehouseResource(workdir=deployment.settings.workdir),
            },
        )
        assert result.success
        (mat,) = result.asset_materializations_for_node("landed_submissions")
        assert mat.metadata["rejected_whole"].value == 1
    assert deployment.status() == {"incidents_z.csv": "rejected"}
    with Warehouse(str(deployment.settings.warehouse_path)).connect() as con:
        assert con.execute("SELECT rule FROM landed_submissions").fetchall() == [
            ("unregistered_party",)
        ]


def test_verification_and_indicators_refresh_declaratively():
    graph = defs.resolve_asset_graph()
    for name, (*_, automated) in EXPECTED_GRAPH.items():
        condition = graph.get(dg.AssetKey(name)).automation_condition
        if automated:
            assert condition.get_label() == "refresh when new validated data lands", name
    # months are registered from the data: no month before the first report
    assert graph.get(dg.AssetKey("indicator_values")).partitions_def.name == "months"


def _requested(evaluation) -> set[str]:
    return {
        r.key.to_user_string()
        for r in evaluation.results
        if isinstance(r.key, dg.AssetKey) and evaluation.get_num_requested(r.key)
    }


def test_a_lone_files_run_verifies_and_raises_its_alert_and_automation_adds_the_months(
    deployment,
):
    """A lone submission: the inbox sensor's run ingests and verifies it, as cbm run's first
    run does, and raises the alert without waiting for the automation sensor's tick.
    Automation then asks for the months of indicators only, not for the verification that run
    did. Files that arrive together are ingested alone, and automation verifies them once."""
    write_csv(deployment.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1", severity=5)])
    local = deployment.definitions
    with dg.instance_for_test() as instance:
        baseline = dg.evaluate_automation_conditions(defs=local, instance=instance)
        first = deployment.tick(instance)
        assert [r.job_name for r in first.run_requests] == ["ingest_and_verify"]
        deployment.execute(instance, first)
        settled = dg.evaluate_automation_conditions(
            defs=local, instance=instance, cursor=baseline.cursor
        )
        assert _requested(settled) == {"indicator_values"}
        # the second source of the incident, alone: its run raises the alert
        write_csv(deployment.inbox / "DELTA" / "incidents_d.csv", [incident("D-1", severity=5)])
        second = deployment.tick(instance, first.cursor)
        assert [r.job_name for r in second.run_requests] == ["ingest_and_verify"]
        deployment.execute(instance, second)
        with Warehouse(str(deployment.settings.warehouse_path)).connect() as con:
            assert con.execute("SELECT level, status, previous_level FROM alerts").fetchall() == [
                (1, "tentative", 0)
            ]
        after = dg.evaluate_automation_conditions(
            defs=local, instance=instance, cursor=settled.cursor
        )
        assert _requested(after) <= {"indicator_values"}, _requested(after)
        # two files together: one run that ingests; automation verifies them
        for party in ("ALPHA", "CHARLIE"):
            write_csv(deployment.inbox / party / "incidents_x.csv", [incident(f"{party}-X")])
        together = deployment.tick(instance, second.cursor)
        assert [r.job_name for r in together.run_requests] == ["ingest_submissions"]
        deployment.execute(instance, together)
        later = dg.evaluate_automation_conditions(
            defs=local, instance=instance, cursor=after.cursor
        )
        assert {"release_context", "incident_clusters", "alerts"} <= _requested(later)


def test_after_an_ingestion_alone_automation_brings_alerts_up_to_date(deployment):
    """Ingestion without verification (the sensor's earlier batches, a backfill from the UI):
    the automation sensor then asks for the verification assets, dyad levels and alerts (not
    the release); run, they raise the alert at once."""
    write_csv(deployment.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1", severity=5)])
    write_csv(deployment.inbox / "DELTA" / "incidents_d.csv", [incident("D-1", severity=5)])
    local = deployment.definitions
    assert local.resolve_sensor_def("keep_verification_current").default_status == (
        dg.DefaultSensorStatus.RUNNING
    )
    with dg.instance_for_test() as instance:
        # the automation sensor ticks before the data lands, as it does in a deployment
        baseline = dg.evaluate_automation_conditions(defs=local, instance=instance)
        assert baseline.total_requested == 0
        deployment.execute(instance, deployment.tick(instance), "ingest_submissions")
        evaluation = dg.evaluate_automation_conditions(
            defs=local, instance=instance, cursor=baseline.cursor
        )
        requested = {
            r.key.to_user_string()
            for r in evaluation.results
            if isinstance(r.key, dg.AssetKey) and evaluation.get_num_requested(r.key)
        }
        assert {"release_context", "incident_clusters", "dyad_levels", "alerts"} <= requested
        assert "release" not in requested
        # the warehouse suites gate automation's verification as they gate cbm run's
        # (the tester counts assets only: a check's request is its condition's true subset)
        gate = {
            r.key
            for r in evaluation.results
            if isinstance(r.key, dg.AssetCheckKey) and not r.true_subset.is_empty
        }
        assert {k.name for k in gate} == {
            "suite_warehouse_submissions",
            *(
                f"suite_warehouse_reports_{kind}"
                for kind in ("incidents", "compliance", "attestations")
            ),
        }
        unpartitioned = [dg.AssetKey(k) for k in requested if k not in ("indicator_values",)]
        job = local.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, asset_selection=unpartitioned)
        assert result.success
        assert {e.check_name for e in result.get_asset_check_evaluations()} >= {
            k.name for k in gate
        }
        with Warehouse(str(deployment.settings.warehouse_path)).connect() as con:
            assert con.execute("SELECT level, status, previous_level FROM alerts").fetchall() == [
                (1, "tentative", 0)
            ]
        again = dg.evaluate_automation_conditions(
            defs=local, instance=instance, cursor=evaluation.cursor
        )
        # handled: nothing more until new data lands, but the indicator months, now that
        # verification has run
        months = dg.AssetKey("indicator_values")
        assert again.get_num_requested(months) > 0
        assert all(
            r.key == months or not again.get_num_requested(r.key)
            for r in again.results
            if isinstance(r.key, dg.AssetKey)
        )
        # more data once the months exist: verification is asked for, and the months are not
        # asked for beside it (a run of their own beside it could read verification's old
        # tables); as above, they are asked for once verification's run has landed
        quiet = dg.evaluate_automation_conditions(
            defs=local, instance=instance, cursor=again.cursor
        )
        assert quiet.total_requested == 0
        write_csv(deployment.inbox / "BRAVO" / "incidents_b2.csv", [incident("B-2", severity=4)])
        deployment.execute(instance, deployment.tick(instance), "ingest_submissions")
        more = dg.evaluate_automation_conditions(defs=local, instance=instance, cursor=quiet.cursor)
        assert more.get_num_requested(dg.AssetKey("event_members")) == 1
        assert more.get_num_requested(months) == 0


def test_an_update_upstream_after_the_assets_own_run_in_one_tick_still_refreshes_it():
    """Both the asset's own run and a newer upstream run finish between two ticks (the
    daemon's months of indicators and a later verification): the newer data is still
    handled. Resetting on the asset's own update alone (since_last_handled) left it stale."""
    from assets.partitions import refresh_on_new_data

    @dg.asset
    def upstream() -> None:
        return None

    @dg.asset(deps=[upstream], automation_condition=refresh_on_new_data)
    def downstream() -> None:
        return None

    defs = dg.Definitions(assets=[upstream, downstream])
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0
        assert dg.materialize([upstream], instance=instance).success
        requested = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=first.cursor
        )
        assert requested.get_num_requested(downstream.key) == 1
        # between this tick and the next: the requested run, then newer upstream data
        assert dg.materialize([downstream], instance=instance).success
        assert dg.materialize([upstream], instance=instance).success
        after = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=requested.cursor
        )
        assert after.get_num_requested(downstream.key) == 1
        # and once handled, nothing more
        assert dg.materialize([downstream], instance=instance).success
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
        assert quiet.get_num_requested(downstream.key) == 0


def test_a_partys_files_beyond_its_budget_wait_and_the_sensor_comes_back_for_them(deployment):
    set_limits(deployment, max_files_per_run=2)
    for i in range(3):
        write_csv(deployment.inbox / "ALPHA" / f"incidents_{i}.csv", [incident(f"A-{i}")])
    with dg.instance_for_test() as instance:
        first = deployment.tick(instance)
        assert len(instance.get_dynamic_partitions("submissions")) == 2
        assert first.cursor is None  # one file waits: the next tick plans again
        deployment.execute(instance, first)
        second = deployment.tick(instance, cursor=first.cursor)
        assert len(instance.get_dynamic_partitions("submissions")) == 3
        assert second.cursor is not None  # nothing waits any more


def test_files_left_waiting_at_staging_are_asked_for_again_by_the_sensor(deployment):
    set_limits(deployment, reader_seconds_per_run=0.001)  # spent by any one file
    for i in range(3):
        write_csv(deployment.inbox / "ALPHA" / f"incidents_{i}.csv", [incident(f"A-{i}")])
    with dg.instance_for_test() as instance:
        tick = deployment.tick(instance)
        keys = set()
        for _ in range(4):  # the inbox never changes: the staging marker brings the sensor back
            if isinstance(tick, dg.SkipReason):
                break
            keys |= {r.run_key for r in tick.run_requests}
            deployment.execute(instance, tick)
            tick = deployment.tick(instance, cursor=tick.cursor)
        assert deployment.status() == {f"incidents_{i}.csv": "accepted" for i in range(3)}
        assert len(keys) >= 2  # a file left waiting came back under a new run key
        assert isinstance(tick, dg.SkipReason) and "no change" in tick.skip_message


def _months_backfill(instance, months: list[str]) -> str:
    """A backfill of every month of indicator_values (and the registry's party_directory, a
    root it can always start with), as the automation sensor stores one."""
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.execution.backfill import PartitionBackfill

    graph = defs.resolve_asset_graph()
    indicators = dg.AssetKey("indicator_values")
    subset = AssetGraphSubset(
        partitions_subsets_by_asset_key={
            indicators: graph.get(indicators)
            .partitions_def.empty_subset()
            .with_partition_keys(months)
        },
        non_partitioned_asset_keys={dg.AssetKey("party_directory")},
    )
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id=f"months{len(instance.get_backfills())}",
        backfill_timestamp=0.0,
        tags={},
        dynamic_partitions_store=instance,
        asset_graph_subset=subset,
        title=None,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def test_a_backfill_over_the_months_survives_a_late_earlier_month(tmp_path, monkeypatch):
    """Issue #38: beside `dagster dev`, a backfill the automation had stored failed ("Unable
    to determine root partitions"). The daemon fails a backfill whose target names a month
    that is gone when it looks, and register_months used to delete every month and add them
    back whenever a month earlier than the first arrived. Shown here with the daemon's own
    backfill iteration on the real code location: a month gone before an iteration fails
    the backfill ("have been removed since this backfill was stored"; gone during one, the
    message is the one seen beside `dagster dev`); a late earlier month, registered the way
    it is now, leaves the backfill running."""
    import logging

    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    from assets.partitions import register_months

    for name in ("CBM_INBOX", "CBM_WORKDIR", "CBM_PUBLISH", "CBM_REGISTRY"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))  # for the run config only
    queued = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    target = ModuleTarget(
        module_name="pipelines.definitions",
        attribute="defs",
        working_directory=str(ROOT),
        location_name="cbm_verify",
    )
    with (
        dg.instance_for_test(overrides={"run_coordinator": queued}) as instance,
        create_test_daemon_workspace_context(target, instance) as workspace,
    ):

        def iterate():
            list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))

        months = register_months(instance, "2026-01", "2026-03")
        gone = _months_backfill(instance, months)
        instance.delete_dynamic_partition("months", "2026-01")  # what the old way did
        iterate()
        failed = instance.get_backfill(gone)
        assert failed.status.value in ("FAILING", "FAILED")
        assert "2026-01" in failed.error.message and "removed" in failed.error.message

        kept = _months_backfill(instance, register_months(instance, "2026-01", "2026-03"))
        register_months(instance, "2025-11", "2026-04")  # a late report about November
        iterate()
        running = instance.get_backfill(kept)
        assert running.error is None and running.status.value == "REQUESTED"
        assert [r.tags["dagster/backfill"] for r in instance.get_runs()] == [kept]
