"""Every contract rule: a row that breaks it is quarantined with that rule named; a row
that satisfies it is accepted. One real pipeline run (GX on DuckDB) covers all rules."""

import pytest

from tests.conftest import attestation, compliance, incident, write_csv, write_jsonl

INCIDENT_CASES = {  # report_id -> (overrides, rule expected)
    "i-version": ({"version": 0}, "version_range"),
    "i-version-text": ({"version": "two"}, "version_type_int"),
    "i-tlp": ({"tlp": "PURPLE"}, "tlp_allowed_values"),
    "i-tlp-missing": ({"tlp": None}, "tlp_required"),
    "i-confidence": ({"confidence": 101}, "confidence_range"),
    "i-summary-long": ({"summary": "x" * 4001}, "summary_length"),
    "i-category": ({"category": "alien_landing"}, "category_allowed_values"),
    "i-occurred-missing": ({"occurred_at": None}, "occurred_at_required"),
    "i-no-offset": ({"occurred_at": "2026-03-01T10:00:00"}, "occurred_at_type_ts"),
    "i-not-a-date": ({"reported_at": "yesterday"}, "reported_at_type_ts"),
    "i-reported-first": ({"reported_at": "2026-02-28T10:00:00+00:00"}, "reported_before_occurred"),
    "i-future": ({"reported_at": "2999-01-01T00:00:00+00:00"}, "reported_in_future"),
    "i-precision": ({"time_precision": "second"}, "time_precision_allowed_values"),
    "i-region": ({"region": "Estonia"}, "region_format"),
    "i-region-missing": ({"region": None}, "region_required"),
    "i-region-invented": ({"region": "XAA"}, "region_known"),
    "i-lat": ({"lat": 91, "lon": 10}, "lat_range"),
    "i-lon": ({"lat": 50, "lon": 181}, "lon_range"),
    "i-lat-alone": ({"lat": 50}, "lat_lon_pair"),
    "i-nan": ({"lat": "NaN", "lon": 10}, "lat_type_float"),
    "i-sector": ({"sector": "space"}, "sector_allowed_values"),
    "i-severity": ({"severity": 6}, "severity_range"),
    "i-severity-text": ({"severity": "high"}, "severity_type_int"),
    "i-severity-missing": ({"severity": None}, "severity_required"),
    "i-determination": ({"determination": "maybe"}, "determination_allowed_values"),
    "i-alleged": ({"alleged_party": "ZULU"}, "alleged_party_registered"),
    "i-category-missing": ({"category": None}, "category_required"),
    "i-year-1": (
        {"occurred_at": "0001-01-01T00:00:00+00:00", "reported_at": "0001-01-02T00:00:00+00:00"},
        "occurred_at_plausible",
    ),
}
COMPLIANCE_CASES = {
    "c-commitment": ({"commitment_id": "NO-SUCH"}, "commitment_unknown"),
    "c-not-valid-yet": (
        {"commitment_id": "HOTLINE-TEST", "period": "2019-12"},
        "commitment_not_valid_for_period",
    ),
    "c-subject": ({"subject_party": "ZULU"}, "subject_party_registered"),
    "c-period": ({"period": "2026-13"}, "period_format"),
    "c-claim": ({"claim": "maybe"}, "claim_allowed_values"),
    "c-reply-first": ({"responded_at": "2026-03-01T09:00:00+00:00"}, "response_before_request"),
    "c-commitment-missing": ({"commitment_id": None}, "commitment_id_required"),
    "c-year-9999": ({"responded_at": "9999-01-01T00:00:00+00:00"}, "timestamps_plausible"),
}
ATTESTATION_CASES = {
    "a-stance": ({"stance": "shrug"}, "stance_allowed_values"),
    "a-kind": ({"subject_kind": "gossip"}, "subject_kind_allowed_values"),
    "a-method": ({"method": "telepathy"}, "method_allowed_values"),
    "a-subject": ({"subject_party": "ZULU"}, "subject_party_registered"),
    "a-self": ({"subject_party": "CHARLIE"}, "attestation_of_self"),
    "a-observed": ({"observed_at": None}, "observed_at_required"),
    "a-year-1": ({"observed_at": "0001-06-01T00:00:00+00:00"}, "observed_at_plausible"),
}


@pytest.fixture(scope="module")
def ruled(tmp_path_factory, dagster_home_template):
    from tests.conftest import TEST_KEY, dagster_home_from, write_registry

    base = tmp_path_factory.mktemp("rules")
    env = pytest.MonkeyPatch()  # module scope: before the per-test environment, undone after
    env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
    env.setenv("DAGSTER_HOME", str(dagster_home_from(dagster_home_template, base / "dh")))
    inbox = base / "inbox"
    write_csv(
        inbox / "BRAVO" / "incidents_rules.csv",
        [incident("i-good")]
        + [incident(rid, **o) for rid, (o, _) in INCIDENT_CASES.items()]
        + [
            incident("bad/../id"),
            incident(None),
            incident("dup"),
            incident("dup"),
            incident("i-twice"),
            incident(".."),
            incident("a..b"),
        ],
    )
    # the same report and version in another submission of the same run: not a duplicate
    # within a submission (the warehouse suite warns about it instead)
    write_csv(inbox / "BRAVO" / "incidents_again.csv", [incident("i-twice")])
    write_csv(
        inbox / "BRAVO" / "compliance_rules.csv",
        [compliance("C-1"), compliance("c-good", period="2026-04")]
        + [compliance(rid, **o) for rid, (o, _) in COMPLIANCE_CASES.items()],
    )
    write_jsonl(
        inbox / "CHARLIE" / "attestations_rules.jsonl",
        [attestation("a-good"), attestation("a-dangling", subject_report_id="NOPE")]
        + [attestation(rid, **o) for rid, (o, _) in ATTESTATION_CASES.items()],
    )
    from pipelines.cli import run_pipeline

    # validation is ingestion: nothing verified or published is looked at here
    try:
        run_pipeline(
            inbox,
            write_registry(base / "registry"),
            base / "work",
            base / "publish",
            ingest_only=True,
        )
    finally:
        env.undo()
    from warehouse.db import Warehouse

    with Warehouse(path=str(base / "work" / "warehouse.duckdb")).connect() as con:
        quarantine = con.execute(
            "SELECT q.report_id, q.row_number, s.kind, q.rule, q.severity, q.value, q.expectation FROM quarantine q "
            "JOIN submissions s ON s.sha256 = q.submission_sha WHERE q.stage = 'validated'"
        ).fetchall()
        accepted = {
            (k, r)
            for k, r in con.execute(
                "SELECT 'incidents', report_id FROM reports_incidents UNION ALL "
                "SELECT 'compliance', report_id FROM reports_compliance UNION ALL "
                "SELECT 'attestations', report_id FROM reports_attestations"
            ).fetchall()
        }
        subs = con.execute(
            "SELECT kind, rows_read, rows_accepted, rows_quarantined FROM submissions"
        ).fetchall()
    return quarantine, accepted, subs


def _critical_rules(quarantine, kind, report_id):
    return {
        rule
        for rid, _, k, rule, sev, _, _ in quarantine
        if k == kind and rid == report_id and sev == "critical"
    }


@pytest.mark.parametrize(
    ("kind", "report_id", "rule"),
    [("incidents", rid, rule) for rid, (_, rule) in INCIDENT_CASES.items()]
    + [("compliance", rid, rule) for rid, (_, rule) in COMPLIANCE_CASES.items()]
    + [("attestations", rid, rule) for rid, (_, rule) in ATTESTATION_CASES.items()],
)
def test_breaking_a_rule_quarantines_the_row_with_that_rule(ruled, kind, report_id, rule):
    quarantine, accepted, _ = ruled
    assert rule in _critical_rules(quarantine, kind, report_id)
    assert (kind, report_id) not in accepted


@pytest.mark.parametrize(
    ("kind", "report_id"),
    [("incidents", "i-good"), ("compliance", "c-good"), ("attestations", "a-good")],
)
def test_a_good_row_is_accepted_and_not_quarantined(ruled, kind, report_id):
    quarantine, accepted, _ = ruled
    assert (kind, report_id) in accepted
    assert not [q for q in quarantine if q[0] == report_id and q[2] == kind]


def test_report_id_rules(ruled):
    quarantine, accepted, _ = ruled
    assert "report_id_format" in _critical_rules(quarantine, "incidents", "bad/../id")
    assert any(r[3] == "report_id_required" and r[2] == "incidents" for r in quarantine)
    assert _critical_rules(quarantine, "incidents", "dup") == {"duplicate_in_submission"}
    # the same report and version handed in by two submissions validated together
    assert _critical_rules(quarantine, "incidents", "i-twice") == set()
    assert ("incidents", "i-twice") in accepted
    assert _critical_rules(quarantine, "incidents", "..") == {"report_id_dot_segments"}
    assert _critical_rules(quarantine, "incidents", "a..b") == {"report_id_dot_segments"}


def test_dangling_attestation_is_kept_with_a_warning(ruled):
    quarantine, accepted, _ = ruled
    assert ("attestations", "a-dangling") in accepted
    assert [q[3] for q in quarantine if q[0] == "a-dangling"] == ["dangling_subject"]
    assert [q[4] for q in quarantine if q[0] == "a-dangling"] == ["warning"]


def test_quarantine_names_the_offending_value(ruled):
    quarantine, _, _ = ruled
    values = {
        q[0]: q[5]
        for q in quarantine
        if q[3] in ("severity_type_int", "region_format", "occurred_at_type_ts")
    }
    assert values == {
        "i-severity-text": "high",
        "i-region": "Estonia",
        "i-no-offset": "2026-03-01T10:00:00",
    }


def test_accounting_holds_for_every_submission(ruled):
    _, _, subs = ruled
    assert len(subs) == 4
    for kind, read, accepted, quarantined in subs:
        assert read == accepted + quarantined, kind
    # every submission but the one-row incidents_again.csv breaks some rule
    assert sorted(q > 0 for _, _, _, q in subs) == [False, True, True, True]


def test_quarantine_names_the_expectation_type(ruled):
    quarantine, _, _ = ruled
    by_rule = {
        q[3]: q[6] for q in quarantine if q[0] in ("i-severity", "i-tlp", "i-reported-first")
    }
    assert by_rule == {
        "severity_range": "expect_column_values_to_be_between",
        "tlp_allowed_values": "expect_column_values_to_be_in_set",
        "reported_before_occurred": "expect_column_values_to_pass_sql_rule",
    }


def check_evaluations() -> list:
    """Every asset check evaluation of every run in the instance at DAGSTER_HOME."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        return [
            e.dagster_event.event_specific_data
            for run in instance.get_runs()
            for e in instance.all_logs(
                run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
        ]


def test_the_suite_checks_pass_when_every_row_is_accepted_or_quarantined(
    generated_run, monkeypatch
):
    """suite_<kind> on the generated run (spoiled rows, revisions, rejected files): every row
    of every batch accepted or quarantined, so every evaluation passed."""

    project, _ = generated_run
    monkeypatch.setenv("DAGSTER_HOME", str(project.root / "dagster_home"))
    evaluations = check_evaluations()
    suites = [
        e
        for e in evaluations
        if e.check_name.startswith("suite_") and "warehouse" not in e.check_name
    ]
    assert {e.check_name for e in suites} == {
        "suite_incidents",
        "suite_compliance",
        "suite_attestations",
    }
    assert all(e.passed for e in suites), [e.description for e in suites if not e.passed]
    assert any("quarantined by design" in e.description for e in suites)


def test_a_suite_check_fails_when_a_row_is_neither_accepted_nor_quarantined():
    from assets.validated import suite_check
    from checks.validation import SuiteResult

    result = SuiteResult("incidents", "batch_incidents", 3, [], None)
    ok = suite_check("incidents", result, batch=10, accepted=7, quarantined=3, per_submission={})
    assert ok.passed and "3 of 10 rows quarantined by design, 7 accepted" in ok.description
    lost = suite_check("incidents", result, batch=10, accepted=6, quarantined=3, per_submission={})
    assert not lost.passed and "+1 rows unaccounted for" in lost.description


def test_the_run_headline_of_submission_outcome_describes_every_submission(project):

    from tests.conftest import incident, write_csv

    def headlines() -> list:
        return [
            e
            for e in check_evaluations()
            if e.check_name == "submission_outcome" and not e.partition
        ]

    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    write_csv(project.inbox / "ALPHA" / "incidents_bad.csv", [incident("A-2", severity=9)])
    project.run(ingest_only=True)
    write_csv(project.inbox / "BRAVO" / "incidents_b.csv", [incident("B-1")])
    write_csv(project.inbox / "BRAVO" / "incidents_c.csv", [incident("B-2")])
    project.run(ingest_only=True)
    first, second = sorted(
        headlines(), key=lambda e: e.description.endswith("(0 of 2 in this run)")
    )
    assert first.description == "1 of 2 submissions not accepted whole (1 of 2 in this run)"
    # the second run's files are all fine, and the headline still says one is not
    assert second.description == "1 of 4 submissions not accepted whole (0 of 2 in this run)"
    assert not second.passed


def test_the_quarantine_asset_counts_rows_as_cbm_status_does(generated_run, monkeypatch, capsys):
    """One number, one meaning: rows quarantined (each row once) and files rejected whole, in
    the quarantine asset's metadata (what the UI shows) and in cbm status --json."""
    import json

    import dagster as dg

    from pipelines.cli import main

    project, _ = generated_run
    monkeypatch.setenv("DAGSTER_HOME", str(project.root / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("quarantine"))
    meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    capsys.readouterr()
    assert main(["status", "--workdir", str(project.workdir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    whole = sum(
        1
        for s in listed["submissions"]
        if s["status"] == "rejected" and s["rows_read"] == 0 and not s["duplicate_of"]
    )
    assert meta["rows_quarantined"] == listed["totals"]["rows_quarantined"] > 0
    assert meta["files_rejected_whole"] == whole > 0
    assert meta["critical_findings"] >= meta["rows_quarantined"] + whole  # a finding per rule
    assert f"{meta['rows_quarantined']:,} rows quarantined" in meta["listed"]


def test_the_submissions_asset_lists_each_partys_files_not_accepted_whole_and_why(
    generated_run, monkeypatch, capsys
):
    """A verifier answers "which of party X's files were rejected or partial, and why" from
    the submissions asset's page: its table lists those first, by party and file name, each
    with the rules (and rows) that cbm status --json gives for it."""
    import json
    import re

    import dagster as dg

    from pipelines.cli import main

    project, _ = generated_run
    monkeypatch.setenv("DAGSTER_HOME", str(project.root / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("submissions"))
    table = event.asset_materialization.metadata["submissions"]
    rows = [r.data for r in table.records]
    assert "why" in [c.name for c in table.schema.columns]
    not_whole = [r["status"] in ("rejected", "partial") for r in rows]
    assert any(not_whole) and not_whole == sorted(not_whole, reverse=True)  # those first
    firsts = [(r["party"], r["file_name"]) for r in rows if r["status"] != "accepted"]
    assert firsts == sorted(firsts)
    capsys.readouterr()
    assert main(["status", "--workdir", str(project.workdir), "--json"]) == 0
    status = {
        s["submission"][:16]: s
        for s in json.loads(capsys.readouterr().out)["submissions"]
        if not s["duplicate_of"]
    }
    for row in rows:
        reasons = status[row["submission"]]["reasons"]
        shown = dict(re.findall(r"(\w+) \((\d+) rows?|whole file\)", row["why"]))
        named = re.findall(r"(\w+) \(", row["why"])
        assert sorted(named) == sorted(reasons), row
        for rule, n in shown.items():
            if rule:
                assert int(n) == reasons[rule], row
        assert bool(row["why"]) == (row["status"] in ("rejected", "partial")), row


def _partition_metadata(instance, asset: str, key: str):
    import dagster as dg

    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
    ).records
    return record.event_log_entry.asset_materialization.metadata.items()


def test_a_partition_counts_its_own_submission(generated_run, monkeypatch):
    """A submission's partition page counts that submission, not the whole table: on
    validation_findings its findings, on reports_<kind> its accepted rows."""
    import dagster as dg

    from warehouse.db import Warehouse

    project, _ = generated_run
    monkeypatch.setenv("DAGSTER_HOME", str(project.root / "dagster_home"))
    with Warehouse(str(project.workdir / "warehouse.duckdb")).connect() as con:
        findings = dict(
            con.execute(
                "SELECT submission_sha, count(*) FROM validation_findings GROUP BY ALL"
            ).fetchall()
        )
        whole_table = sum(findings.values())
    seen = set()
    with dg.DagsterInstance.get() as instance:
        for key in instance.get_dynamic_partitions("submissions"):
            meta = {
                k: v.value for k, v in _partition_metadata(instance, "validation_findings", key)
            }
            assert meta["dagster/row_count"] == findings.get(meta["submission"], 0), key
            seen.add(meta["dagster/row_count"])
            if meta["kind"] != "unknown" and meta["status"] != "rejected":
                reports = dict(_partition_metadata(instance, f"reports_{meta['kind']}", key))
                assert reports["dagster/row_count"].value == meta["rows_accepted"], key
    assert len(seen) > 1 and whole_table not in seen
