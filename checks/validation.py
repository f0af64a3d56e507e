"""Run expectation suites (JSON under checks/suites) on DuckDB tables with GX's SQL engine,
several suites in one checkpoint (``run_suites``).

The suite is the single source of truth for what is valid: the rows a failing expectation
points at are selected with GX's own ``unexpected_index_query`` (column map expectations,
including our row rules, ``checks/expectations.py``) or with the query of an
``unexpected_rows_expectation``, never re-implemented here.
Each expectation's ``meta`` carries ``severity`` (critical = quarantine, warning = kept and
reported), a short ``rule`` name and the human ``reason``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb
import great_expectations as gx
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

from cbm.contract import FIELDS, typed_fields
from checks import (
    expectations,  # noqa: F401  (registers our expectations with GX)
    gx_template,
)
from checks.offline_docs import data_docs_index, data_docs_site, make_offline
from checks.results import INDEX_COLUMNS, SAMPLES, Finding, SuiteResult
from compat import gx as gx_compat

logging.getLogger("great_expectations").setLevel(logging.ERROR)
gx_compat.install()  # before any GX project is opened: every GX patch of compat/gx.py


class SuiteError(RuntimeError):
    """An expectation could not be evaluated (a broken suite or a GX change): never a pass."""


KEY_FIELDS = ("report_id", "version")  # a report's own name for a row
RESTATES_DESCRIPTION = (
    "the row restates a report that another party handed in earlier, in an earlier run or this "
    "one: the same report id, version and every field but the free text and technical keys "
    "(unless this file is signed by its party and that one is not, and no member bundle has "
    "carried it)"
)
RESTATES_REASON = (
    "the row restates a report that another party handed in earlier (the same report id, "
    "version and every field but the free text and technical keys), as rows of a member "
    "bundle handed back in do: a copy is never independent corroboration, and it moves no "
    "status, verdict or indicator"
)

# What a typed field's text must be, for the type rules generated from the contract.
TYPE_REASONS = {
    "int": "must be a whole number",
    "float": "must be a number",
    "ts": "must be an ISO-8601 timestamp with a UTC offset",
}


def _suite_file(name: str) -> dict:
    return json.loads(resources.files("checks").joinpath("suites", f"{name}.json").read_text())


def type_rules(kind: str) -> list[dict]:
    """One rule per typed field of the kind (``cbm.contract``): text that did not cast to its
    type is quarantined with the text as handed in."""
    rules = []
    for name in typed_fields(kind):
        reason = f"{name} {TYPE_REASONS[FIELDS[kind][name]]}"
        rules.append(
            {
                "type": "expect_column_values_to_pass_sql_rule",
                "kwargs": {
                    "column": f"{name}__raw",
                    "failing_when": f'"{name}__raw" IS NOT NULL AND "{name}" IS NULL',
                    "description": reason,
                },
                "meta": {
                    "severity": "critical",
                    "rule": f"{name}_type_{FIELDS[kind][name]}",
                    "column": name,
                    "reason": reason,
                },
            }
        )
    return rules


def restates_rule(kind: str) -> dict:
    """The rule that quarantines a row restating another party's report: the same
    ``report_id``, ``version`` and every contract field of the kind but the free text and the
    technical keys (which pseudonymisation makes anew), from a file landed earlier (at the same
    time: the party code that sorts earlier), in an earlier run (accepted) or this batch. A
    byte-for-byte copy is ``copy_of_other_party``'s; a file signed by its party is not the
    copy of an unsigned one, unless a member bundle carried that one's rows (``own_publications``,
    this deployment's own output whoever signs it again)."""
    compared = [
        f for f, t in FIELDS[kind].items() if t not in ("text", "keys") and f not in KEY_FIELDS
    ]
    columns = ", ".join(["submission_sha", *KEY_FIELDS, *compared])
    same = " AND ".join(
        [f"b.{f} = r.{f}" for f in KEY_FIELDS]
        + [f"b.{f} IS NOT DISTINCT FROM r.{f}" for f in compared]
    )
    failing_when = (
        "(submission_sha, row_number) IN (SELECT b.submission_sha, b.row_number FROM {batch} b "
        f"JOIN (SELECT {columns}, true AS accepted FROM reports_{kind} "
        f"UNION ALL SELECT {columns}, false FROM {{batch}}) r ON {same} "
        "JOIN landed_submissions lb ON lb.sha256 = b.submission_sha "
        "JOIN landed_submissions lr ON lr.sha256 = r.submission_sha "
        "WHERE lr.party_code <> lb.party_code "
        "AND b.submission_sha NOT IN (SELECT sha256 FROM submission_copies) "
        "AND (lr.received_at, lr.party_code) < (lb.received_at, lb.party_code) "
        "AND (lb.signature IS DISTINCT FROM 'valid' OR lr.signature = 'valid' OR (r.accepted "
        "AND r.submission_sha IN "
        "(SELECT token FROM own_publications WHERE what = 'bundled_submission'))))"
    )
    return {
        "type": "expect_column_values_to_pass_sql_rule",
        "kwargs": {
            "column": "report_id",
            "failing_when": failing_when,
            "description": RESTATES_DESCRIPTION,
        },
        "meta": {"severity": "critical", "rule": "restates_other_party", "reason": RESTATES_REASON},
    }


def load_suite(name: str) -> dict:
    """A suite as GX runs it: the suites its ``meta.include`` names (``common.json``: the
    fields every kind shares), the type rules of a report kind, its own expectations, then
    the rule against restating another party's reports (``restates_rule``)."""
    spec = _suite_file(name)
    included = [
        e for inc in spec["meta"].get("include", []) for e in _suite_file(inc)["expectations"]
    ]
    if name not in FIELDS:
        return spec | {"expectations": included + spec["expectations"]}
    rules = included + type_rules(name) + spec["expectations"] + [restates_rule(name)]
    return spec | {"expectations": rules}


_CONTEXTS: dict[str, tuple[tuple, object]] = {}


def _context(gx_dir: Path):
    """The GX file context of ``gx_dir``. Loading one is slow (benchmarks/README.md, M6) and a
    run needs six, so one is kept per folder in this process, for as long as its ``great_expectations.yml``
    is the file it was loaded from (suites, validation definitions and checkpoints are read
    from their stores on every use; only the datasources live in that file)."""
    gx_dir.mkdir(parents=True, exist_ok=True)
    config = gx_dir / "gx" / "great_expectations.yml"

    def stamp():
        try:
            st = config.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    key = str(gx_dir.resolve())
    cached = _CONTEXTS.get(key)
    if cached is not None and cached[0] is not None and cached[0] == stamp():
        return cached[1]
    ctx = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    # GX re-reads and parses uncommitted/config_variables.yml on every access to a context
    # variable (hundreds a run, for a template that is all comments: M6); nothing
    # here substitutes config variables, and a missing file reads as none. GX writes the
    # template only when it creates the project, so it stays gone.
    (gx_dir / "gx" / "uncommitted" / "config_variables.yml").unlink(missing_ok=True)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if len(_CONTEXTS) > 16:  # a long-lived process that validates many workdirs (tests)
        _CONTEXTS.clear()
    _CONTEXTS[key] = (stamp(), ctx)
    return ctx


def _fingerprint(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _warehouse_datasource(ctx, warehouse_path: Path):
    """The GX datasource on the warehouse file. Updating a datasource replaces its table
    assets, so it is only (re)defined when missing or pointing at another file: otherwise each
    suite's registration would drop the previous suite's asset and every run would rebuild
    every checkpoint."""
    url = gx_template.warehouse_url(warehouse_path)
    try:
        ds = ctx.data_sources.get("warehouse")
        if str(ds.connection_string) == url:
            return ds
    except (KeyError, LookupError, ValueError):
        pass
    return ctx.data_sources.add_or_update_sql(name="warehouse", connection_string=url)


def _validation_definition(ctx, spec, suite_name, table, warehouse_path):
    """The GX validation definition of a suite on a table, and whether it was (re)built:
    reused while the suite's JSON, the table and the warehouse file are the same.

    Registering suite, datasource, asset and validation definition writes several files
    (and tests the connection); doing it only when something changed keeps a validation run
    to the validation itself.
    """
    fingerprint = _fingerprint(spec)
    try:
        suite = ctx.suites.get(suite_name)
        changed, exists = suite.meta.get("cbm_fingerprint") != fingerprint, True
    except Exception:  # not there yet (or unreadable)
        changed, exists = True, False
    if changed:
        new_suite = gx.ExpectationSuite(
            name=suite_name,
            expectations=spec["expectations"],
            meta=spec.get("meta", {}) | {"cbm_fingerprint": fingerprint},
        )
        # add_or_update matches every expectation against the stored ones (quadratic in the
        # suite's length): only worth it to keep the ids of a suite that is already stored
        suite = ctx.suites.add_or_update(new_suite) if exists else ctx.suites.add(new_suite)
    name = f"{suite_name}__{table}"
    if not changed:
        try:
            vd = ctx.validation_definitions.get(name)
            asset = vd.data.data_asset
            if asset.table_name == table and str(
                asset.datasource.connection_string
            ) == gx_template.warehouse_url(warehouse_path):
                return vd, False
        except Exception:  # not there yet (or unreadable): build it
            pass
    ds = _warehouse_datasource(ctx, warehouse_path)
    asset = (
        ds.get_asset(table)
        if table in {a.name for a in ds.assets}
        else ds.add_table_asset(name=table, table_name=table)
    )
    try:
        batch = asset.get_batch_definition("all")
    except (KeyError, LookupError, ValueError):
        batch = asset.add_batch_definition_whole_table("all")
    # The suite is stored above: add_or_update would store it again (GX cascades)
    _delete_if_stored(ctx.validation_definitions, name)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    return vd, True


def _delete_if_stored(factory, name: str) -> None:
    with contextlib.suppress(Exception):  # not stored (or unreadable): nothing to delete
        factory.delete(name)


# Pass/fail first (BOOLEAN_ONLY): GX then computes one bundled aggregate per rule and no
# failing-row query, sample or per-rule detail for the rules that pass, which are most; about
# a third less GX time per suite whatever the data. The rules that fail are evaluated again
# with ``_detail_format`` (``_complete_results``). That second evaluation scans the batch again:
# above DETAILS_IN_ONE_PASS_ROWS rows it costs more than pass/fail first saves
# (benchmarks/README.md, M7), so larger batches
# get their details in one pass.
PASS_FAIL = {"result_format": "BOOLEAN_ONLY"}
DETAILS_IN_ONE_PASS_ROWS = 500_000


def _checkpoint(ctx, runs, warehouse_path, result_format: dict):
    """One GX checkpoint validating every (suite, table) of ``runs`` with ``result_format``,
    and whether it was built now (not read from its store):
    one run, one engine, one result store pass (less per suite than a checkpoint each: M7). The pass/fail and the detailed checkpoint of the same runs are stored apart, so
    neither is rebuilt when a run switches between them."""
    vds, rebuilt = [], False
    for suite_name, table in runs:
        vd, new = _validation_definition(
            ctx, load_suite(suite_name), suite_name, table, warehouse_path
        )
        vds.append(vd)
        rebuilt |= new
    name = "+".join(vd.name for vd in vds) + ("" if result_format == PASS_FAIL else "+detailed")
    if not rebuilt:
        try:
            checkpoint = ctx.checkpoints.get(name)
            if checkpoint.result_format == result_format:
                return checkpoint, False
        except Exception:  # not there yet (or unreadable): build it
            pass
    # The validation definitions are stored: add_or_update would store each again, suite included
    _delete_if_stored(ctx.checkpoints, name)
    checkpoint = gx.Checkpoint(
        name=name, validation_definitions=vds, actions=[], result_format=result_format
    )
    return ctx.checkpoints.add(checkpoint), True


def _detail_format(index_columns: list[str]) -> dict:
    """How a failing rule is reported. BASIC + return_unexpected_index_query: GX hands back
    the SQL selecting the failing rows without fetching every unexpected value into Python.
    With index columns the samples come from that SQL (run_suites), so GX is asked for none:
    its sample query per column map expectation is a full scan."""
    result_format = {"result_format": "BASIC", "return_unexpected_index_query": True}
    if index_columns:
        result_format["unexpected_index_column_names"] = index_columns
        result_format["partial_unexpected_count"] = 0
    else:
        result_format["partial_unexpected_count"] = SAMPLES
    return result_format


def _complete_results(ctx, checkpoint, result, index_columns: list[str]) -> None:
    """After pass/fail first, in each validation of ``result`` (the checkpoint's result and
    the stored one that Data Docs renders): the rules that did not pass get their detailed
    results (``_with_details``), and those that passed their counts (``_passed_counts``)."""
    definitions = {
        (vd.suite.name, vd.data.data_asset.name): vd for vd in checkpoint.validation_definitions
    }
    for result_id, validation in result.run_results.items():
        if not all(r.success for r in validation.results):
            vd = definitions[
                result_id.expectation_suite_identifier.name,
                validation.meta["active_batch_definition"]["data_asset_name"],
            ]
            validation.results = _with_details(vd, validation.results, index_columns)
        _passed_counts(validation.results)
        ctx.validation_results_store.set(result_id, validation)


# What a row rule that passed without ``mostly`` found: no unexpected value. Pass/fail first
# leaves a passing rule without counts, which Data Docs showed as "--" or "unknown % not
# null"; with these it shows "0% unexpected" or "100% not null", which is what the pass means.
PASSED_COUNTS = {
    "unexpected_count": 0,
    "unexpected_percent": 0.0,
    "unexpected_percent_total": 0.0,
    "unexpected_percent_nonmissing": 0.0,
    "partial_unexpected_list": [],
}


def _passed_counts(results: list) -> None:
    for r in results:
        cfg = r.expectation_config
        if (
            r.success
            and not r.result
            and cfg.kwargs.get("mostly", 1) == 1
            and _is_row_rule(cfg.type)
        ):
            r.result = dict(PASSED_COUNTS)


@functools.cache
def _is_row_rule(expectation_type: str) -> bool:
    """Whether GX evaluates the expectation row by row (a map expectation: it counts
    unexpected values)."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    return issubclass(
        get_expectation_impl(expectation_type),
        (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation),
    )


def _with_details(vd, results: list, index_columns: list[str]) -> list:
    """``results`` with every rule that did not pass (failed, or could not be evaluated)
    evaluated again on the same batch, together, with ``_detail_format`` (its count and the
    query selecting its rows)."""
    failed = {r.expectation_config.id for r in results if not r.success}
    # copies: GX lets an expectation belong to one suite. A copy has no id, and GX orders
    # results its own way, so each detailed result is matched to the first one by rule.
    again = gx.ExpectationSuite(
        name=vd.suite.name,
        expectations=[copy.copy(e) for e in vd.suite.expectations if e.id in failed],
    )
    detailed: dict[str, list] = {}
    batch = vd.batch_definition.get_batch()
    for r in batch.validate(again, result_format=_detail_format(index_columns)).results:
        detailed.setdefault(_rule_key(r.expectation_config), []).append(r)
    merged = []
    for r in results:
        if r.success:
            merged.append(r)
            continue
        detail = (detailed.get(_rule_key(r.expectation_config)) or [None]).pop(0)
        if detail is None or detail.success:
            raise SuiteError(
                f"suite {vd.suite.name} on {vd.data.data_asset.name}: "
                f"{r.expectation_config.type} failed, then did not fail again on the same data"
            )
        detail.expectation_config.id = r.expectation_config.id  # the suite's, as stored
        merged.append(detail)
    return merged


def build_data_docs(
    gx_dir: Path,
    results: list[SuiteResult] | None = None,
    keep: int | None = None,
    since: datetime | None = None,
) -> str | None:
    """Render GX Data Docs and return the index URL: the pages of ``results`` (this run's
    validations), or of every result stored ``since`` a time (what ``cbm run`` validated),
    and the index; with neither, every stored validation result. With ``keep``, only the
    ``keep`` newest results of each suite and table stay stored (``prune_validation_results``)
    before the index is rendered."""
    ctx = _context(gx_dir)
    if keep is not None:
        prune_validation_results(ctx, gx_dir, keep)
    started = time.time() - 1  # file times may be coarser than the clock
    if since is not None:
        ids = [
            key
            for key in ctx.validation_results_store.list_keys()
            if key.run_id.run_time and key.run_id.run_time >= since
        ]
    elif results is not None:
        ids = [r.result_id for r in results if r is not None and r.result_id is not None]
    else:
        ids = None
    if ids is None:
        ctx.build_data_docs()
    else:  # the suites' own pages too: each result page links to its suite
        suites = sorted({i.expectation_suite_identifier.name for i in ids})
        pages = [*ids, *(ExpectationSuiteIdentifier(name=s) for s in suites)]
        ctx.build_data_docs(resource_identifiers=pages)
    make_offline(data_docs_site(gx_dir), since=started)
    index = data_docs_index(gx_dir)
    return index.as_uri() if index.exists() else None


def prune_validation_results(ctx, gx_dir: Path, keep: int) -> int:
    """Remove all but the ``keep`` newest stored validation results of each suite and table,
    with their Data Docs pages; return how many were removed.

    Every run stores one result per suite it ran and the Data Docs index lists them all: its
    rendering, twice per ``cbm run``, grows with them (benchmarks/README.md, M8). What a run found stays in ``quarantine`` and the asset check metadata.
    """
    if keep < 1:
        raise ValueError("keep at least the newest validation result of each suite (keep >= 1)")
    store = ctx.validation_results_store
    by_suite_and_table: dict[tuple[str, str], list] = {}
    for key in store.list_keys():
        parts = key.to_tuple()  # (suite, run name, run time, batch), the store's file layout
        by_suite_and_table.setdefault((parts[0], parts[-1]), []).append(key)
    site = data_docs_site(gx_dir) / "validations"
    removed = 0
    for keys in by_suite_and_table.values():
        keys.sort(key=lambda k: k.run_id.run_time or datetime.min.replace(tzinfo=UTC))
        for key in keys[:-keep]:
            store.remove_key(key)
            *folders, batch = key.to_tuple()
            page = site.joinpath(*folders, f"{batch}.html")
            page.unlink(missing_ok=True)
            for folder in (page.parent, page.parent.parent):  # the run's folders, once empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            removed += 1
    return removed


def run_suite(
    con: duckdb.DuckDBPyConnection | None,
    warehouse_path: Path,
    gx_dir: Path,
    suite_name: str,
    table: str,
    index_columns: list[str] | None = None,
    rows: int = 0,
) -> SuiteResult:
    """Validate ``table`` with ``suite_name`` (see ``run_suites``)."""
    (result,) = run_suites(
        con, warehouse_path, gx_dir, [(suite_name, table)], index_columns, rows=rows
    )
    return result


def run_suites(
    con: duckdb.DuckDBPyConnection | None,
    warehouse_path: Path,
    gx_dir: Path,
    runs: list[tuple[str, str]],
    index_columns: list[str] | None = None,
    rows: int = 0,
    run_name: str | None = None,
) -> list[SuiteResult]:
    """Validate each ``(suite_name, table)`` of ``runs`` in one GX checkpoint run; return a
    result per run, in order, whose findings carry the SQL that selects their failing rows
    (``Finding.query``) as GX states it.

    ``con`` is the caller's warehouse connection (for the failing-row samples); it must have
    committed what GX is to see. ``rows``: how many rows the tables hold together, when the
    caller knows; above ``DETAILS_IN_ONE_PASS_ROWS`` GX is asked for the details in one pass,
    otherwise for pass/fail first and then for the details of the rules that failed.
    ``run_name``: what Data Docs names the results by (``data_docs_run_name``: the
    submissions checked); GX's own ``__none__`` without it.
    """
    index_columns = INDEX_COLUMNS if index_columns is None else index_columns
    # a new workdir gets the project last set up here; a copied one names its own warehouse
    if not gx_template.seed(gx_dir, warehouse_path):
        gx_template.follow(gx_dir, warehouse_path)
    ctx = _context(gx_dir)
    one_pass = rows > DETAILS_IN_ONE_PASS_ROWS
    result_format = _detail_format(index_columns) if one_pass else PASS_FAIL
    checkpoint, built = _checkpoint(ctx, runs, warehouse_path, result_format)
    if built:
        gx_template.keep(gx_dir, warehouse_path)
    # The checkpoint was just read from its store or added to it; pass/fail-first results are
    # stored once, completed, by _complete_results (compat/gx.py, patches 5 and 6).
    stored_here = contextlib.nullcontext() if one_pass else gx_compat.results_stored_by_caller()
    try:
        with gx_compat.fresh_from_store(checkpoint), stored_here:
            result = checkpoint.run(run_id=RunIdentifier(run_name=run_name) if run_name else None)
        if not one_pass:
            _complete_results(ctx, checkpoint, result, index_columns)
    finally:
        _close_engines([v.data.data_asset.datasource for v in checkpoint.validation_definitions])
    by_run = {
        (
            rid.expectation_suite_identifier.name,
            v.meta["active_batch_definition"]["data_asset_name"],
        ): (rid, v)
        for rid, v in result.run_results.items()
    }
    out = [
        _suite_result(con, suite_name, table, *by_run[suite_name, table], index_columns)
        for suite_name, table in runs
    ]
    return out


def prepare_project(gx_dir: Path, warehouse_path: Path, checkpoints: list[list[tuple[str, str]]]):
    """Set ``gx_dir``'s project up with a pass/fail checkpoint for each list of (suite, table)
    of ``checkpoints`` (as a small run's validation builds them, validating nothing), and keep
    it as the next new workdir's project (``gx_template.keep``). The tables must exist in
    ``warehouse_path``."""
    ctx = _context(gx_dir)
    for runs in checkpoints:
        _checkpoint(ctx, runs, warehouse_path, PASS_FAIL)
    gx_template.keep(gx_dir, warehouse_path)


def _has_tlp(con, table: str) -> bool:
    return con is None or bool(
        con.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = ? AND column_name = 'tlp'",
            [table],
        ).fetchall()
    )


def _visible_samples(
    con, table: str, tlp: bool, query: str, value_column: str, index_columns
) -> list[str]:
    """Up to ``SAMPLES`` failing values, as the Dagster UI shows them (contract §5): of a
    table with a ``tlp`` column (``tlp``), only values of rows whose level is publishable
    (CLEAR, GREEN); a row above that, or whose level is unreadable, gives none."""
    failing = f'SELECT q."{value_column}" AS v FROM ({query.strip().rstrip(";")}) q'
    if tlp:
        if not index_columns:
            return []
        on = " AND ".join(f'q."{c}" IS NOT DISTINCT FROM t."{c}"' for c in index_columns)
        failing += (
            f" JOIN {table} t ON {on} "
            "WHERE coalesce(tlp_publishable(tlp_rank(upper(trim(t.tlp)))), false)"
        )
    return [str(v) for (v,) in con.execute(f"{failing} LIMIT {SAMPLES}").fetchall()]


def _suite_result(con, suite_name, table, result_id, validation, index_columns) -> SuiteResult:
    findings: list[Finding] = []
    tlp = _has_tlp(con, table)  # once per table: whether its rows carry a TLP level
    for r in validation.results:
        cfg = r.expectation_config
        meta = cfg.meta or {}
        error = _raised(r.exception_info)
        res = r.result or {}
        if error is None and not r.success and not res:
            error = "it failed without a result"
        if error:
            raise SuiteError(
                f"suite {suite_name} on {table}: {cfg.type} ({meta.get('rule')}) could not be "
                f"evaluated: {error}"
            )
        if r.success:
            continue
        column = meta.get("column", cfg.kwargs.get("column"))
        if cfg.type == "unexpected_rows_expectation":
            query = cfg.kwargs["unexpected_rows_query"].format(batch=table)  # as GX formats it
            count = int(res.get("observed_value") or 0)
            value_column, sample = (
                "value",
                [str(row) for row in (res.get("details") or {}).get("unexpected_rows", [])[:5]],
            )
        else:
            query = res.get("unexpected_index_query")
            count = int(res.get("unexpected_count") or 0)
            value_column, sample = (
                cfg.kwargs.get("column"),
                [str(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
            )
            if not query and count and index_columns:
                raise SuiteError(
                    f"suite {suite_name}: {cfg.type} failed without an unexpected_index_query"
                )
        # what the UI may show of the failing rows, whichever kind of rule found them
        if query and con is not None:
            sample = _visible_samples(con, table, tlp, query, value_column, index_columns)
        elif tlp:  # no way to tell the rows' levels: no values shown
            sample = []
        findings.append(
            Finding(
                rule=meta.get("rule", cfg.type),
                expectation=cfg.type,
                column=column,
                severity=meta.get("severity", "critical"),
                reason=meta.get("reason", cfg.type),
                unexpected_count=count,
                query=(query or "").strip().rstrip(";") or None,
                value_column=value_column,
                samples=sample,
            )
        )
    return SuiteResult(
        suite=suite_name,
        table=table,
        evaluated=len(validation.results),
        findings=findings,
        docs_url=None,
        result_id=result_id,
    )


def _rule_key(config) -> str:
    return json.dumps([config.type, config.kwargs, config.meta], sort_keys=True, default=str)


def _raised(info) -> str | None:
    """GX reports an evaluation error flat or nested per metric; either way it is not a pass."""
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _close_engines(datasources) -> None:
    """Release GX's DuckDB connections (the persisted one and the pooled one GX opened to test
    the datasource), so the warehouse file is not held open after validation; then forget
    the closed engines, which GX keeps on the datasource: the next checkpoint on the same
    context (the second of a run, or the next run in the process) builds new ones instead
    of failing its first query on a closed connection and printing GX's traceback."""
    for ds in datasources:
        steps = (
            lambda d: d.get_execution_engine().close(),
            lambda d: d.get_execution_engine().engine.dispose(),
            lambda d: d.get_engine().dispose(),
        )
        for close in steps:
            # best effort: a failure to close is not a validation result
            with contextlib.suppress(Exception):
                close(ds)
        for cached in ("_execution_engine", "_engine"):
            with contextlib.suppress(Exception):  # GX keeps them as private attributes
                object.__setattr__(ds, cached, None)
