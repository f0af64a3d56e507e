"""The code location: loads, has the expected graph, and every asset documents itself."""

import dagster as dg

from assets.resources import CbmSettings
from pipelines.definitions import build_definitions, defs
from tests.conftest import incident, write_csv

EXPECTED_GRAPH = {  # asset -> (group, upstream assets)
    "landed_submissions": ("landing", set()),
    "staged_reports": ("staged", {"landed_submissions"}),
    "anonymised_reports": ("anonymised", {"staged_reports"}),
    "validated_reports": ("validated", {"anonymised_reports"}),
    "release_context": ("validated", {"validated_reports"}),
    "quarantine": ("validated", {"validated_reports"}),
    "incident_clusters": ("verified", {"release_context"}),
    "compliance_verdicts": ("verified", {"release_context"}),
    "indicator_values": ("indicators", {"incident_clusters", "compliance_verdicts"}),
    "release": ("published", {"indicator_values", "incident_clusters", "compliance_verdicts"}),
}


def test_code_location_loads_with_the_expected_graph():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(EXPECTED_GRAPH)
    for name, (group, upstream) in EXPECTED_GRAPH.items():
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == group, name
        assert {p.to_user_string() for p in node.parent_keys} == upstream, name
    groups = {g for g, _ in EXPECTED_GRAPH.values()}
    assert groups == {
        "landing",
        "staged",
        "anonymised",
        "validated",
        "verified",
        "indicators",
        "published",
    }


def test_every_asset_has_description_kinds_and_owner():
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.kinds, name
        assert spec.owners, name


def test_jobs_sensor_and_schedule_are_defined():
    assert defs.resolve_job_def("ingest_submissions").partitions_def.name == "submissions"
    assert defs.resolve_job_def("publish_release")
    assert defs.resolve_job_def("verify_reports")
    assert (
        defs.resolve_job_def("compute_indicators").partitions_def.get_partition_keys()[0]
        == "2015-01"
    )
    assert defs.resolve_sensor_def("inbox_sensor")
    assert defs.resolve_schedule_def("monthly_release").cron_schedule == "0 6 1 * *"
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "submission_accounting",
        "suite_incidents",
        "suite_warehouse_submissions",
        "manifest_integrity",
    } <= checks


def _settings(tmp_path):
    return CbmSettings(
        inbox=str(tmp_path / "inbox"),
        registry=str(tmp_path / "registry"),
        workdir=str(tmp_path / "work"),
        publish=str(tmp_path / "publish"),
    )


def test_inbox_sensor_lands_files_and_requests_one_run_per_new_submission(tmp_path):
    from tests.conftest import write_registry

    write_registry(tmp_path / "registry")
    write_csv(tmp_path / "inbox" / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    write_csv(tmp_path / "inbox" / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    write_csv(tmp_path / "inbox" / "BRAVO" / "incidents_b_copy.csv", [incident("B-1")])
    settings = _settings(tmp_path)
    local = build_definitions(settings)
    sensor = local.resolve_sensor_def("inbox_sensor")
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(
            instance=instance, resources={"settings": settings}, definitions=local
        )
        result = sensor(ctx)
        assert len(result.run_requests) == 2  # the copy has the same bytes: one submission
        assert {r.run_key for r in result.run_requests} == {
            r.partition_key for r in result.run_requests
        }
        assert len(list((tmp_path / "work" / "landing").rglob("*.json"))) == 2
        instance.add_dynamic_partitions(
            "submissions", [r.partition_key for r in result.run_requests]
        )
        again = sensor(
            dg.build_sensor_context(
                instance=instance,
                resources={"settings": settings},
                cursor=result.cursor,
                definitions=local,
            )
        )
        assert isinstance(again, dg.SkipReason) and "no change" in again.skip_message


def test_materialize_ingestion_for_one_submission(tmp_path):
    from assets.anonymised import anonymised_reports
    from assets.landing import landed_submissions
    from assets.staged import staged_reports
    from assets.validated import validated_reports
    from cbm.intake import scan_inbox
    from tests.conftest import write_registry
    from warehouse.db import Warehouse

    write_registry(tmp_path / "registry")
    write_csv(
        tmp_path / "inbox" / "ALPHA" / "incidents_a.csv",
        [incident("A-1"), incident("A-2", severity=9)],
    )
    settings = _settings(tmp_path)
    (sha,) = [f.sha256 for f in scan_inbox(tmp_path / "inbox", settings.landing_dir)]
    warehouse = Warehouse(path=str(settings.warehouse_path))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("submissions", [sha])
        result = dg.materialize(
            [landed_submissions, staged_reports, anonymised_reports, validated_reports],
            partition_key=sha,
            instance=instance,
            resources={"settings": settings, "warehouse": warehouse},
        )
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["submission_accounting"] is True
        assert checks["suite_incidents"] is False  # one critical finding: severity 9
        (suite,) = [
            e for e in result.get_asset_check_evaluations() if e.check_name == "suite_incidents"
        ]
        # samples are the quarantined values of each failing rule
        assert suite.metadata["samples"].value == {"severity_range": ["9"]}
    with warehouse.connect() as con:
        assert con.execute(
            "SELECT status, rows_read, rows_accepted, rows_quarantined FROM submissions"
        ).fetchall() == [("partial", 2, 1, 1)]


def test_verification_and_indicators_refresh_declaratively():
    graph = defs.resolve_asset_graph()
    for name in (
        "release_context",
        "incident_clusters",
        "compliance_verdicts",
        "quarantine",
        "indicator_values",
    ):
        condition = graph.get(dg.AssetKey(name)).automation_condition
        assert (
            condition is not None
            and condition.get_label() == "refresh when new validated data lands"
        ), name
    assert isinstance(
        graph.get(dg.AssetKey("indicator_values")).partitions_def, dg.MonthlyPartitionsDefinition
    )
