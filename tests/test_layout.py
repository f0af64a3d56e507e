"""The direction of imports (DESIGN.md, Layout): wiring -> assets -> domain, checks, warehouse.

The domain package ``cbm`` imports nothing of ours above it and no Dagster; asset modules
never import each other (only the shared Dagster vocabulary beside them); quick commands
import neither Dagster nor Great Expectations.
"""

import ast
import gc
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from compat import imports

ROOT = Path(__file__).resolve().parent.parent
OURS = ("cbm", "compat", "assets", "checks", "warehouse", "pipelines")
ALLOWED = {  # package -> our packages it may import
    "cbm": {"cbm"},
    "compat": {"cbm", "compat"},  # patches of libraries' internals, applied from entry points
    "warehouse": {"cbm", "warehouse"},
    "checks": {"cbm", "checks", "warehouse", "compat"},
    "assets": {"cbm", "checks", "warehouse", "assets", "compat"},
    "pipelines": set(OURS),
}
ASSET_VOCABULARY = {
    "assets",
    "assets.resources",
    "assets.partitions",
    "assets.metadata",
    "assets.stages",
}
NO_DAGSTER = {"cbm", "warehouse.db", "checks.validation", "compat.gx"}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def modules():
    for package in OURS:
        for path in sorted((ROOT / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            yield package, name, imports_of(path)


def test_imports_run_one_way():
    wrong = []
    for package, name, imported in modules():
        for target in imported:
            top = target.split(".")[0]
            if top in OURS and top not in ALLOWED[package]:
                wrong.append(f"{name} imports {target}")
            if package == "assets" and name not in ASSET_VOCABULARY and top == "assets":
                module = ".".join(target.split(".")[:2])
                if module not in ASSET_VOCABULARY and module in {n for _, n, _ in modules()}:
                    wrong.append(f"{name} imports another stage: {target}")
            if (name in NO_DAGSTER or package == "cbm") and top == "dagster":
                wrong.append(f"{name} imports dagster")
    assert wrong == []


def test_the_check_finds_a_wrong_direction(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from pipelines.cli import main\nimport dagster as dg\n")
    assert {"pipelines.cli", "dagster"} <= imports_of(bad)


def test_quick_commands_load_neither_dagster_nor_great_expectations():
    code = (
        "import sys; import pipelines.cli, warehouse.db, cbm.release, cbm.intake; "
        "print(sorted(m for m in ('dagster', 'great_expectations', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_command_that_hands_its_run_to_a_warm_process_imports_the_standard_library_only():
    """What ``cbm run`` imports before it hands itself to a warm process (``pipelines.cli``,
    ``pipelines.warm``): no numpy, polars, DuckDB or pyarrow (M42), so handing over costs
    a few hundredths of a second."""
    (loaded,) = _fresh_python(
        "import sys, json; import pipelines.cli, pipelines.warm; "
        "print(json.dumps([sorted(m for m in ('numpy', 'scipy', 'polars', 'duckdb', 'pyarrow', "
        "'dagster', 'great_expectations') if m in sys.modules)]))"
    )
    assert loaded == []


IRI_CASES = ["http://example.org/ä", "not an iri", "urn:x", "a/b", "http://[::1", ""]


def _fresh_python(code: str) -> list:
    """What ``code`` prints as JSON in a new interpreter (nothing imported yet)."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    return json.loads(out)


def _iri_code(prelude: str) -> str:
    """Code printing whether the grammar (lark) was imported after ``prelude``, then what
    jsonschema's iri and iri-reference checks say of IRI_CASES."""
    return (
        f"{prelude}; import sys, json, jsonschema; lark = 'lark' in sys.modules; "
        "fc = jsonschema.FormatChecker(); "
        "iri = [lark] + [[fc.conforms(v, f) for f in ('iri', 'iri-reference')] "
        f"for v in {IRI_CASES!r}]"
    )


@pytest.fixture(scope="module")
def pipeline_imported() -> dict:
    """In one new interpreter that imports the pipeline, then the validation stack (GX):
    whether GX came with the first, whether scipy.stats and the IRI grammar were executed,
    and what they then answer."""
    (gx, iri, stats, collector) = _fresh_python(
        # the collections made from here on, by generation
        "import gc; made = [0, 0, 0]; gc.callbacks.append(lambda phase, info: phase == 'stop' "
        "and made.__setitem__(info['generation'], made[info['generation']] + 1)); "
        "import sys; import pipelines.definitions; gx = 'great_expectations' in sys.modules; "
        # as cbm run imports it: on its own thread while the ingestion run starts (M29)
        + _iri_code(
            "from pipelines.runner import _import_validation_stack_behind as behind; "
            "behind().join(); assert 'great_expectations' in sys.modules"
        )
        + "; loaded = 'scipy.stats._stats_py' in sys.modules; from scipy import stats; "
        "print(json.dumps([gx, iri, [loaded, stats.entropy([0.25, 0.75]), "
        "'scipy.stats._stats_py' in sys.modules], [gc.get_threshold(), made]]))"
    )
    return {"gx": gx, "iri": iri, "stats": stats, "collector": collector}


def test_no_full_collection_while_the_stack_imports(pipeline_imported):
    """At CPython's thresholds the collector walked every object six times while Dagster, GX
    and the definitions were imported (0.7 s; M34). The entry points raise the first
    threshold, and importing them all makes no full collection."""
    thresholds, made = pipeline_imported["collector"]
    assert tuple(thresholds) == imports.GC_THRESHOLDS
    assert made[2] == 0, f"full collections while the stack imports: {made}"
    assert made[0] < 150, made  # the young generation: about 900 at the default


def test_a_process_that_set_its_own_thresholds_keeps_them():
    before = gc.get_threshold()
    try:
        gc.set_threshold(500, 5, 5)
        imports.collect_less_often()
        assert gc.get_threshold() == (500, 5, 5)
        gc.set_threshold(*imports.DEFAULT_GC_THRESHOLDS)
        imports.collect_less_often()
        assert gc.get_threshold() == imports.GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)


def test_the_code_location_loads_without_the_validation_stack(pipeline_imported):
    """Great Expectations is imported where rows are validated (``checks.validation``, inside
    the validating assets), not by loading the definitions: a run that validates nothing
    (indicators, a release, a re-derivation) never pays for it."""
    assert pipeline_imported["gx"] is False


def test_the_iri_grammar_is_compiled_on_first_use_and_checks_the_same(pipeline_imported):
    # checks/__init__ puts it off before anything imports GX
    deferred = pipeline_imported["iri"]
    eager = _fresh_python(_iri_code("import jsonschema") + "; print(json.dumps(iri))")
    assert deferred[0] is False, "importing the pipeline compiled rfc3987_syntax's grammar"
    assert eager[0] is True  # without cbm, jsonschema imports it at once
    assert deferred[1:] == eager[1:]
    assert [True, True] in deferred[1:] and [False, False] in deferred[1:]


def test_scipy_stats_is_loaded_on_first_use_and_computes_the_same(pipeline_imported):
    """Great Expectations imports scipy.stats for an expectation no suite uses; cbm has it
    loaded on first use (compat.imports.defer_unused), and it then answers as ever."""
    loaded, entropy, loaded_after = pipeline_imported["stats"]
    assert loaded is False, "importing the pipeline executed scipy.stats"
    assert entropy == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert loaded_after is True
    # without cbm, GX would import it at once: a module GX imports with the package says so
    # at its top level (read, not imported: a second interpreter importing GX costs seconds)
    gx_root = Path(importlib.util.find_spec("great_expectations").origin).parent
    kl = gx_root / "expectations" / "core" / "expect_column_kl_divergence_to_be_less_than.py"
    assert "\nfrom scipy import stats\n" in kl.read_text()
    assert (
        "expect_column_kl_divergence_to_be_less_than"
        in (gx_root / "expectations" / "core" / "__init__.py").read_text()
    )


def test_an_import_that_fails_behind_the_run_fails_again_where_the_step_imports():
    """``cbm run`` imports the validation stack on a thread of its own (M29); when that
    import fails, nothing half-imported stays behind: the step's own import raises the
    error, as it did before."""
    (first, again) = _fresh_python(
        "import sys, json; sys.modules['great_expectations'] = None; "
        "from pipelines.runner import _import_validation_stack_behind as behind; "
        "behind().join(); first = 'checks.validation' in sys.modules\n"
        "try:\n    import checks.validation\nexcept ImportError as e:\n"
        "    again = type(e).__name__ + ': ' + str(e)\n"
        "print(json.dumps([first, again]))"
    )
    assert first is False
    assert again.startswith("ModuleNotFoundError") and "great_expectations" in again


ARROW_POOL_AND_BYTES = (
    "import hashlib, io, json, pipelines, pyarrow as pa; from cbm.release import "
    "PARQUET_OPTIONS; import pyarrow.parquet as pq; t = pa.table({'a': list(range(50000)), "
    "'b': [str(i % 97) for i in range(50000)]}); buf = io.BytesIO(); "
    "pq.write_table(t, buf, **PARQUET_OPTIONS); print(json.dumps("
    "[pa.default_memory_pool().backend_name, hashlib.sha256(buf.getvalue()).hexdigest()]))"
)


def test_the_entry_points_give_arrow_the_system_allocator_and_the_bytes_stay():
    """``pipelines`` has Arrow allocate from the system (M28), unless the operator chose a
    pool; the Parquet bytes are the same under either."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    run = [sys.executable, "-c", ARROW_POOL_AND_BYTES]
    ours = json.loads(
        subprocess.run(run, capture_output=True, text=True, cwd=ROOT, env=env, check=True).stdout
    )
    chosen = json.loads(
        subprocess.run(
            run,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env | {"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"},
            check=True,
        ).stdout
    )
    assert ours[0] == "system"
    assert chosen[0] == "mimalloc"
    assert ours[1] == chosen[1]


def all_modules() -> dict[str, set[str]]:
    """Every module of ours (packages' submodules included) -> the modules of ours it
    imports, at the top or inside a function."""
    found = {}
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "vendor" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = imports_of(path)
    return {
        name: {t for t in imported if t in found and t != name}
        | {".".join(t.split(".")[:-1]) for t in imported if ".".join(t.split(".")[:-1]) in found}
        - {name}
        for name, imported in found.items()
    }


def cycles_of(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package importing its own submodules
                continue
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycle_anywhere():
    graph = all_modules()
    assert "pipelines.cli.status" in graph and "pipelines.runner" in graph
    assert cycles_of(graph) == []
    # the check finds one: the runner importing the command that imports it
    assert cycles_of({"a.cli": {"a.rederive"}, "a.rederive": {"a.cli"}}) == [
        ["a.cli", "a.rederive", "a.cli"]
    ]


def test_no_module_of_ours_is_over_700_lines():
    long = {
        p.relative_to(ROOT).as_posix(): n
        for package in OURS
        for p in (ROOT / package).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 700
    }
    assert long == {}, long


def test_asset_functions_gather_call_and_record_in_80_lines_at_most():
    """Assets gather inputs, call the domain and record metadata (#37): a longer asset function
    is work that belongs in cbm/, warehouse/ or a named helper."""
    import ast

    long = {}
    for path in sorted((ROOT / "assets").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            decorated = isinstance(node, ast.FunctionDef) and any(
                "asset" in ast.unparse(d) for d in node.decorator_list
            )
            if decorated and (n := node.end_lineno - node.lineno + 1) > 80:
                long[f"{path.name}:{node.name}"] = n
    assert long == {}, long


def test_the_domain_package_patches_nothing():
    """No module of cbm/ edits sys.modules or a library's attributes: patches live in compat/,
    applied from the entry points (#37)."""
    edits = []
    for path in sorted((ROOT / "cbm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                text = ast.unparse(target)
                if text.startswith("sys.modules") or (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id
                    in {"dg", "dagster", "gx", "duckdb", "pl", "pa", "jsonschema"}
                ):
                    edits.append(f"{path.name}:{node.lineno} {text}")
    assert edits == [], edits


SQL_STATEMENT = re.compile(r"\b(SELECT|INSERT|DELETE|UPDATE|CREATE)\b")
# where Python may hold SQL text (a module, or one function of it), and why
SQL_ALLOWED = {
    "assets/metadata.py": "generic helpers over a table or query they are given (schemas, previews)",
    "pipelines/cli/run.py:cmd_demo": "a command printed for the operator to type",
    "warehouse/db.py:anon_insert_sql": "the contract's fields, each read by its type's macro",
    "warehouse/db.py:_create_table": "the report tables, column by column from the contract",
    "warehouse/db.py:tlp_macros": "the contract's TLP levels as SQL macros",
    "warehouse/db.py:content_hash_sql": "the contract's fields, hashed",
}


def sql_in_python(path: Path) -> list[str]:
    """``path:function:line`` of each string literal of ``path`` that holds an SQL statement
    (an f-string's text parts taken together), but docstrings and Markdown that shows one."""
    found, parts = [], set()
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(getattr(node, "body", None), list)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    enclosing = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(fn):
                enclosing.setdefault(id(inner), fn.name)  # outermost first: the top-level name
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts |= {id(v) for v in node.values}
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if (
                id(node) in parts
                or id(node) in docstrings
                or node.value.lstrip().startswith("```sql")
            ):
                continue
            text = node.value
        else:
            continue
        if SQL_STATEMENT.search(text):
            where = path.relative_to(ROOT).as_posix()
            found.append(f"{where}:{enclosing.get(id(node), '')}:{node.lineno}")
    return found


def test_sql_that_states_a_rule_lives_in_warehouse_sql():
    """The assets, the warehouse and the cbm command run named statements of warehouse/sql
    (#37): no SQL statement in their Python, so each rule is written once and read by all.
    What the warehouse generates from the contract (its fields and TLP levels) is listed."""
    found = [
        hit
        for package in ("assets", "pipelines", "warehouse")
        for path in sorted((ROOT / package).rglob("*.py"))
        for hit in sql_in_python(path)
        if hit.split(":")[0] not in SQL_ALLOWED and ":".join(hit.split(":")[:2]) not in SQL_ALLOWED
    ]
    assert found == [], found


def test_the_sql_check_finds_a_statement():
    bad = ROOT / "tests" / "_sql_probe.py"
    try:
        bad.write_text(
            '"""Doc: SELECT in a docstring is prose."""\nQ = "DELETE FROM t WHERE a = ?"\n'
        )
        assert sql_in_python(bad) == ["tests/_sql_probe.py::2"]
    finally:
        bad.unlink()
