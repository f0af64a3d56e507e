"""expect_column_values_to_pass_sql_rule (checks/expectations.py) and the GX objects run_suite
keeps between runs, on DuckDB."""

import duckdb
import pytest

import checks.validation as validation
from checks.offline_docs import data_docs_site
from warehouse.db import connection_config


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path), config=connection_config())
    con.execute(
        """CREATE TABLE t AS SELECT 's' AS submission_sha, i AS row_number, 'r' || i AS report_id,
        CASE WHEN i % 10 = 3 THEN NULL ELSE i END AS a, i % 4 AS b, NULL::VARCHAR AS empty
        FROM range(40) r(i)"""
    )
    con.close()
    return path


def _run(tmp_path, table, monkeypatch, *rules, con=None):
    """Run a suite of ``rules`` on table t: (column, failing_when) for a SQL rule, or a whole
    expectation (type, kwargs)."""
    expectations = [
        {
            **(
                {"type": rule["type"], "kwargs": rule["kwargs"]}
                if isinstance(rule, dict)
                else {
                    "type": "expect_column_values_to_pass_sql_rule",
                    "kwargs": {"column": rule[0], "failing_when": rule[1]},
                }
            ),
            "meta": {"rule": f"r{i}", "severity": "critical", "reason": "test"},
        }
        for i, rule in enumerate(rules)
    ]
    monkeypatch.setattr(validation, "load_suite", lambda name: {"expectations": expectations})
    return validation.run_suite(con, table, tmp_path / "gx", "rules", "t")


def test_failing_rows_are_selected_by_the_query_gx_returns(tmp_path, table, monkeypatch):
    result = _run(tmp_path, table, monkeypatch, ("b", "b = 1 AND a > 20"))
    (finding,) = result.findings
    expected = [i for i in range(21, 40) if i % 4 == 1 and i % 10 != 3]  # a is NULL at 33
    assert finding.unexpected_count == len(expected) == 4
    rows = (
        duckdb.connect(str(table)).execute(f"SELECT row_number FROM ({finding.query})").fetchall()
    )
    assert sorted(r for (r,) in rows) == expected


def test_a_rule_whose_column_is_null_everywhere_still_fails(tmp_path, table, monkeypatch):
    """A plain column map expectation passes 'vacuously' when its column is all NULL."""
    result = _run(tmp_path, table, monkeypatch, ("empty", "b = 0"))
    (finding,) = result.findings
    assert finding.unexpected_count == 10


def test_a_null_predicate_counts_as_passing(tmp_path, table, monkeypatch):
    result = _run(tmp_path, table, monkeypatch, ("a", "a > 100 OR a IS NULL AND NULL"))
    assert result.findings == []


def test_several_rules_report_separately_with_samples(tmp_path, table, monkeypatch):
    con = duckdb.connect(str(table), config=connection_config())
    try:
        result = _run(
            tmp_path,
            table,
            monkeypatch,
            ("a", "a IS NULL"),
            ("b", "b = 3"),
            ("a", "a < 0"),
            con=con,
        )
    finally:
        con.close()
    by_rule = {f.rule: f for f in result.findings}
    assert sorted(by_rule) == ["r0", "r1"]
    assert by_rule["r0"].unexpected_count == 4 and by_rule["r0"].samples == ["None"] * 4
    assert by_rule["r1"].unexpected_count == 10 and by_rule["r1"].samples == ["3"] * 5


def test_checkpoints_of_several_tables_survive_each_other(tmp_path, table, monkeypatch):
    """Registering one table's validation must not drop another's (GX replaces a datasource's
    assets when the datasource is updated), else every run rebuilds every checkpoint."""
    con = duckdb.connect(str(table))
    con.execute("CREATE TABLE t2 AS SELECT * FROM t")
    con.close()
    spec = {
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "b"}}]
    }
    for name, t in (("s1", "t"), ("s2", "t2")):
        vd, rebuilt = validation._validation_definition(
            validation._context(tmp_path / "gx"), spec, name, t, table
        )
        assert rebuilt
    ctx = validation._context(tmp_path / "gx")
    assert {a.name for a in ctx.data_sources.get("warehouse").assets} == {"t", "t2"}

    def redefined(*args, **kwargs):
        raise AssertionError("the datasource was redefined although nothing changed")

    monkeypatch.setattr(ctx.data_sources, "add_or_update_sql", redefined)
    for name, t in (("s1", "t"), ("s2", "t2")):
        vd, rebuilt = validation._validation_definition(ctx, spec, name, t, table)
        assert vd.name == f"{name}__{t}" and not rebuilt


def test_an_edited_suite_is_what_the_next_run_checks(tmp_path, table, monkeypatch):
    """Editing a suite's JSON re-registers it (and its validation definition and checkpoint)
    on the next run; an unchanged suite is reused as stored."""
    first = ("b", "b = 1")  # 10 rows
    edited = ("b", "b >= 2")  # 20 rows
    for rules, expected in (
        ((first,), {"r0": 10}),
        ((first,), {"r0": 10}),  # stored objects reused
        ((edited,), {"r0": 20}),  # rule edited
        ((edited, first), {"r0": 20, "r1": 10}),  # rule added
        ((first,), {"r0": 10}),  # back to the first version
    ):
        result = _run(tmp_path, table, monkeypatch, *rules)
        assert {f.rule: f.unexpected_count for f in result.findings} == expected
        assert result.evaluated == len(rules)


def test_several_suites_in_one_checkpoint_report_separately(tmp_path, table, monkeypatch):
    con = duckdb.connect(str(table))
    con.execute("CREATE TABLE t2 AS SELECT * FROM t WHERE b = 0")
    con.close()
    suites = {
        "on_a": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}],
        "on_b": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "b", "max_value": 0},
            }
        ],
    }
    monkeypatch.setattr(validation, "load_suite", lambda name: {"expectations": suites[name]})
    runs = [("on_a", "t"), ("on_b", "t"), ("on_b", "t2")]
    for _ in range(2):  # the second time from the stored checkpoint
        a, b, b2 = validation.run_suites(None, table, tmp_path / "gx", runs, [])
        assert (a.suite, a.table, a.summary()) == (
            "on_a",
            "t",
            {"expect_column_values_to_not_be_null:a": 4},
        )
        assert (b.suite, b.table, b.summary()) == (
            "on_b",
            "t",
            {"expect_column_values_to_be_between:b": 30},
        )
        assert (b2.table, b2.findings) == ("t2", [])


def test_gx_unexpected_rows_expectation_still_gives_the_failing_rows(tmp_path, table, monkeypatch):
    """GX's own cross-row rule type stays usable in a suite: its query, with {batch}
    substituted, is what selects the rows to quarantine."""
    monkeypatch.setattr(
        validation,
        "load_suite",
        lambda name: {
            "expectations": [
                {
                    "type": "unexpected_rows_expectation",
                    "kwargs": {
                        "unexpected_rows_query": "SELECT submission_sha, row_number, report_id, "
                        "b AS value FROM {batch} WHERE b = 2 AND a > 30"
                    },
                    "meta": {"rule": "late_twos", "severity": "critical", "reason": "test"},
                }
            ]
        },
    )
    (finding,) = validation.run_suite(None, table, tmp_path / "gx", "rows", "t").findings
    rows = (
        duckdb.connect(str(table)).execute(f"SELECT row_number FROM ({finding.query})").fetchall()
    )
    expected = [i for i in range(31, 40) if i % 4 == 2 and i % 10 != 3]
    assert finding.unexpected_count == len(expected) and sorted(r for (r,) in rows) == expected


def test_only_the_newest_validation_results_stay_stored(tmp_path, table, monkeypatch):
    """Stored results (and their Data Docs pages) beyond ``keep`` per suite and table go; the
    index then lists only those kept."""
    suites = {"s": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}]}
    monkeypatch.setattr(validation, "load_suite", lambda name: {"expectations": suites[name]})
    gx_dir = tmp_path / "gx"
    con = duckdb.connect(str(table))
    con.execute("CREATE TABLE t2 AS SELECT * FROM t")
    con.close()
    run_ids = []
    for _ in range(4):
        results = validation.run_suites(None, table, gx_dir, [("s", "t"), ("s", "t2")], [])
        run_ids.append(results[0].result_id.to_tuple()[2])
        validation.build_data_docs(gx_dir, results, keep=2)
    ctx = validation._context(gx_dir)
    kept = sorted(k.to_tuple() for k in ctx.validation_results_store.list_keys())
    assert [(k[0], k[2], k[3]) for k in kept] == sorted(
        ("s", run, batch) for run in run_ids[-2:] for batch in ("warehouse-t", "warehouse-t2")
    )
    site = data_docs_site(gx_dir)
    pages = sorted(p.parent.name for p in site.glob("validations/s/*/*/*.html"))
    assert pages == sorted(run_ids[-2:] * 2)
    index = (site / "index.html").read_text()
    assert run_ids[-1] in index and run_ids[0] not in index
    assert validation.prune_validation_results(ctx, gx_dir, 2) == 0
    with pytest.raises(ValueError, match="keep >= 1"):
        validation.prune_validation_results(ctx, gx_dir, 0)


def test_a_gx_context_is_loaded_once_per_folder_until_its_config_changes(tmp_path):
    from checks.validation import _context

    first = _context(tmp_path / "gx")
    assert _context(tmp_path / "gx") is first  # 0.25 s saved per use
    config = tmp_path / "gx" / "gx" / "great_expectations.yml"
    config.write_text(config.read_text() + "\n")  # another process changed it
    assert _context(tmp_path / "gx") is not first


def test_a_gx_context_does_not_keep_the_config_variables_template(tmp_path):
    """GX parses uncommitted/config_variables.yml on every context-variable read (hundreds a
    run); the template it writes is removed, and a reloaded context does not bring it back."""
    from checks.validation import _context

    template = tmp_path / "gx" / "gx" / "uncommitted" / "config_variables.yml"
    ctx = _context(tmp_path / "gx")
    assert (tmp_path / "gx" / "gx" / "great_expectations.yml").is_file()
    assert not template.exists()
    assert ctx.variables.data_docs_sites  # still readable without it
    config = tmp_path / "gx" / "gx" / "great_expectations.yml"
    config.write_text(config.read_text() + "\n")
    assert _context(tmp_path / "gx") is not ctx
    assert not template.exists()


def test_a_later_checkpoint_on_a_cached_context_opens_its_own_connection(
    tmp_path, table, monkeypatch, caplog
):
    """The engines closed after a checkpoint are not reused by the next one on the same
    (cached) context: no query fails on a closed connection, nothing is logged by GX."""
    import logging

    # the first run stores the datasource, which changes the config: the second loads the
    # context again and the third finds it cached
    first = _run(tmp_path, table, monkeypatch, ("b", "b = 1"))
    with caplog.at_level(logging.ERROR, logger="great_expectations"):
        later = [_run(tmp_path, table, monkeypatch, ("b", "b = 1")) for _ in range(2)]
    assert [r.findings[0].unexpected_count for r in [first, *later]] == [10, 10, 10]
    assert not [r for r in caplog.records if r.name.startswith("great_expectations")], [
        r.getMessage()[:200] for r in caplog.records
    ]


def test_rules_that_fail_the_pass_fail_run_are_stored_and_rendered_with_their_details(
    tmp_path, table, monkeypatch
):
    """The checkpoint asks GX for pass/fail only; the rules that fail are evaluated again for
    their count and failing-row query, and that detailed result is what the store keeps and
    Data Docs shows. Rules that pass are shown with nothing unexpected."""
    not_null = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "b"}}
    result = _run(
        tmp_path, table, monkeypatch, ("b", "b = 3"), ("a", "a < 0"), ("a", "a IS NULL"), not_null
    )
    assert sorted((f.rule, f.unexpected_count) for f in result.findings) == [("r0", 10), ("r2", 4)]
    ctx = validation._context(tmp_path / "gx")
    stored = ctx.validation_results_store.get(result.result_id)
    by_rule = {r.expectation_config.meta["rule"]: r for r in stored.results}
    assert {rule: r.success for rule, r in by_rule.items()} == {
        "r0": False,
        "r1": True,
        "r2": False,
        "r3": True,
    }
    assert by_rule["r0"].result["unexpected_count"] == 10
    assert "unexpected_index_query" in by_rule["r2"].result
    # a rule that passed was not counted; without `mostly`, a pass means nothing unexpected
    assert by_rule["r1"].result == by_rule["r3"].result == validation.PASSED_COUNTS
    # the ids are the suite's, so Data Docs links each result to its expectation
    suite_ids = {e.meta["rule"]: e.id for e in ctx.suites.get("rules").expectations}
    assert {rule: r.expectation_config.id for rule, r in by_rule.items()} == suite_ids
    docs = validation.build_data_docs(tmp_path / "gx", [result])
    page = next(data_docs_site(tmp_path / "gx").glob("validations/rules/*/*/*.html")).read_text()
    assert docs and "10 unexpected values found" in page and "4 unexpected values found" in page
    # what the passing rules found, not "--" and "unknown % not null"
    assert "0% unexpected" in page and "100% not null" in page and "unknown" not in page


def test_a_rule_that_cannot_be_evaluated_is_an_error_not_a_finding(tmp_path, table, monkeypatch):
    with pytest.raises(validation.SuiteError, match="could not be evaluated"):
        _run(tmp_path, table, monkeypatch, ("b", "no_such_column = 1"))


def test_data_docs_templates_are_compiled_once_and_render_the_same_pages(
    tmp_path, table, monkeypatch
):
    """GX's Data Docs views each make a new Jinja environment; compat.gx keeps the
    compiled templates for the process. A second build compiles none of them and writes the
    same pages as a build that compiled them all."""
    import jinja2

    from compat.gx import TEMPLATES

    result = _run(tmp_path, table, monkeypatch, ("b", "b = 3"), ("a", "a < 0"))
    compiled = []
    compile_ = jinja2.Environment.compile

    def counting(self, source, name=None, *args, **kwargs):
        if name is not None:  # a template of GX's loaders, not a string rendered once
            compiled.append(name)
        return compile_(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    site = data_docs_site(tmp_path / "gx")

    def build() -> dict[str, bytes]:
        compiled.clear()
        validation.build_data_docs(tmp_path / "gx", [result])
        return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*.html")}

    TEMPLATES.clear()
    first = build()
    assert compiled and len(TEMPLATES) == len(set(compiled))
    second = build()
    assert compiled == []
    assert len(first) == 3 and second == first  # index, suite page, result page


def test_a_large_batch_gets_its_details_in_one_pass_with_the_same_findings(
    tmp_path, table, monkeypatch
):
    """Above DETAILS_IN_ONE_PASS_ROWS the checkpoint asks for the details at once (a second
    evaluation of the failing rules would scan the batch again): the same findings, and the
    rules that pass carry their counts too."""
    rules = (("b", "b = 3"), ("a", "a < 0"), ("a", "a IS NULL"))
    small = _run(tmp_path, table, monkeypatch, *rules)
    monkeypatch.setattr(validation, "DETAILS_IN_ONE_PASS_ROWS", 39)
    large = validation.run_suite(None, table, tmp_path / "gx", "rules", "t", rows=40)

    def found(result):
        return sorted((f.rule, f.unexpected_count, f.query) for f in result.findings)

    assert found(large) == found(small) and len(found(large)) == 2
    stored = validation._context(tmp_path / "gx").validation_results_store.get(large.result_id)
    passing = next(r for r in stored.results if r.expectation_config.meta["rule"] == "r1")
    assert passing.success and passing.result["unexpected_count"] == 0
    checkpoints = validation._context(tmp_path / "gx").checkpoints.all()
    assert sorted(
        c.result_format["result_format"] for c in checkpoints if c.name.startswith("rules__t")
    ) == [
        "BASIC",
        "BOOLEAN_ONLY",
    ]


def test_data_docs_names_a_validation_run_after_the_submissions_it_checked():
    from checks.results import data_docs_run_name

    assert data_docs_run_name(["ALPHA/incidents_a.csv@0123456789abcdef"]) == (
        "ALPHA-incidents_a.csv@0123456789abcdef"
    )
    assert data_docs_run_name(["A/x.csv@1", "B/y.csv@2", "C/z.csv@3"]) == (
        "3-submissions_A-x.csv@1_to_C-z.csv@3"
    )
    assert data_docs_run_name([]) == "no-submission"
    assert " " not in data_docs_run_name(["A/a b.csv@1"])
    # a party's file name reaches Data Docs only through its partition key: nothing a page or
    # a folder of GX's store would take for markup or a path
    import re

    from cbm.intake import partition_key

    hostile = partition_key("ALPHA", "<img src=x> \"'..%2f../x.csv", "a" * 64)
    assert re.fullmatch(
        r"[A-Za-z0-9._@-]+", data_docs_run_name([hostile, hostile]).replace("_to_", "-")
    )
