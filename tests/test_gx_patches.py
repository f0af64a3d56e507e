"""compat/gx.py patches 4 to 8, which cut GX's fixed cost per validation (benchmarks/README.md,
M20). Each test fails loudly when GX changes what a patch relies on: the source of every GX
function a patch replaces or wraps is pinned by its hash, and what each patch is for (GX
rebuilding configurations, re-reading its stores, writing results twice) is shown on GX's own
code, so a GX that stops doing it makes the test say the patch can go."""

import datetime
import decimal
import enum
import hashlib
import inspect
import json
import random

import duckdb
import great_expectations as gx
import numpy as np
import pytest
import sqlalchemy as sa
from great_expectations.checkpoint.checkpoint import Checkpoint
from great_expectations.core import id_dict
from great_expectations.core.id_dict import IDDict
from great_expectations.core.validation_definition import ValidationDefinition
from great_expectations.data_context.store.expectations_store import ExpectationsStore
from great_expectations.data_context.store.store import Store
from great_expectations.data_context.store.validation_results_store import ValidationResultsStore
from great_expectations.expectations.metrics import util as metrics_util
from great_expectations.expectations.metrics.table_metrics import table_column_types
from great_expectations.validator.validator import Validator

import checks.validation  # noqa: F401  (installs compat/gx.py, as the validation stack does)
from compat import gx as gx_compat
from warehouse.db import connection_config

# What the patches were read against (GX 1.24): the source of each function they replace or
# wrap. A different hash means GX changed it: read the new code against the patch's
# docstring in compat/gx.py, then update the hash.
PATCHED_SOURCES = {
    "Expectation.configuration": "017b2b788132d570",
    "Validator.graph_validate": "179acad7dc6ff0ea",
    "Checkpoint.is_fresh": "5ce9272644cf66d9",
    "ValidationDefinition.is_fresh": "6b854fd63e220aac",
    "ValidationResultsStore.store_validation_results": "60db16b874ded8c4",
    "IDDict.to_id": "3820fd313f5a0f69",
    "convert_to_json_serializable": "a282e2e272fc0dd2",
    "get_sqlalchemy_column_metadata": "aad261140bab40d6",
    "column_reflection_fallback": "82599e7919b14bf3",
    "_build_column_metadata_result": "5b92722fc61bd848",
}


def _source_hash(fn) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


GX_FUNCTIONS = {
    "Expectation.configuration": gx_compat.GX_CONFIGURATION,
    "Validator.graph_validate": gx_compat.GX_GRAPH_VALIDATE,
    "Checkpoint.is_fresh": gx_compat.GX_CHECKPOINT_IS_FRESH,
    "ValidationDefinition.is_fresh": gx_compat.GX_DEFINITION_IS_FRESH,
    "ValidationResultsStore.store_validation_results": gx_compat.GX_STORE_VALIDATION_RESULTS,
    "IDDict.to_id": IDDict.to_id,
    "convert_to_json_serializable": gx_compat.GX_TO_JSON,
    "get_sqlalchemy_column_metadata": gx_compat.GX_COLUMN_METADATA,
    "column_reflection_fallback": metrics_util.column_reflection_fallback,
    "_build_column_metadata_result": metrics_util._build_column_metadata_result,
}


@pytest.mark.parametrize("name", sorted(PATCHED_SOURCES))
def test_the_gx_functions_patched_are_the_ones_read(name):
    assert _source_hash(GX_FUNCTIONS[name]) == PATCHED_SOURCES[name], (
        f"GX changed {name}: read it against compat/gx.py before updating the hash"
    )


def test_every_patch_is_installed_by_the_validation_stack():
    assert gx_compat.configurations_installed()
    assert gx_compat.freshness_installed()
    assert gx_compat.results_once_installed()
    assert gx_compat.metric_ids_installed()
    assert gx_compat.column_names_installed()
    assert id_dict.convert_to_json_serializable is not gx_compat.GX_TO_JSON
    assert Validator.graph_validate is not gx_compat.GX_GRAPH_VALIDATE
    assert Checkpoint.is_fresh is not gx_compat.GX_CHECKPOINT_IS_FRESH
    assert ValidationDefinition.is_fresh is not gx_compat.GX_DEFINITION_IS_FRESH
    assert (
        ValidationResultsStore.store_validation_results is not gx_compat.GX_STORE_VALIDATION_RESULTS
    )


def _project(tmp_path):
    path = tmp_path / "t.duckdb"
    con = duckdb.connect(str(path), config=connection_config())
    con.execute("CREATE TABLE t AS SELECT i AS id, i % 7 AS v, 'x' AS s FROM range(100) r(i)")
    con.close()
    ctx = gx.get_context(mode="ephemeral")
    ds = ctx.data_sources.add_sql(name="w", connection_string=f"duckdb:///{path}")
    batch = ds.add_table_asset(name="t", table_name="t").add_batch_definition_whole_table("all")
    suite = ctx.suites.add(
        gx.ExpectationSuite(
            name="s",
            expectations=[
                gx.expectations.ExpectColumnValuesToBeBetween(column="v", min_value=1, max_value=5),
                gx.expectations.ExpectColumnValuesToNotBeNull(column="s"),
                gx.expectations.ExpectColumnValuesToBeInSet(column="s", value_set=["x", "y"]),
            ],
        )
    )
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(name="c", validation_definitions=[vd]))
    return ctx, ds, checkpoint


@pytest.fixture
def project(tmp_path):
    ctx, ds, checkpoint = _project(tmp_path)
    yield ctx, checkpoint
    ds.get_execution_engine().close()


def _counted(results) -> list:
    return [(r.success, (r.result or {}).get("unexpected_count")) for r in results]


# 4. configurations built once per validation


def test_gx_builds_a_new_configuration_on_every_read():
    """What patch 4 is for; outside a validation the property is still GX's own."""
    e = gx.expectations.ExpectColumnValuesToNotBeNull(column="s")
    assert e.configuration is not e.configuration
    assert e.configuration == e.configuration
    e.column = "t"  # edited between validations: read afresh
    assert e.configuration.kwargs["column"] == "t"


def test_within_a_validation_each_configuration_is_built_once(project, monkeypatch):
    ctx, checkpoint = project
    builds, build = [], gx_compat.GX_CONFIGURATION

    def counting(self):
        builds.append(id(self))
        return build(self)

    monkeypatch.setattr(gx_compat, "GX_CONFIGURATION", counting)
    patched = _counted(checkpoint.run().run_results.popitem()[1].results)
    patched_builds = len(builds)
    assert patched_builds == len(set(builds))  # never twice for one expectation

    builds.clear()  # GX's own graph_validate: the same results from many more builds
    monkeypatch.setattr(Validator, "graph_validate", gx_compat.GX_GRAPH_VALIDATE)
    own = _counted(checkpoint.run().run_results.popitem()[1].results)
    assert own == patched == [(False, 29), (True, 0), (True, 0)]
    assert len(builds) > 5 * patched_builds, (
        f"GX now builds configurations {len(builds)} times per validation: patch 4 may go"
    )


# 5. freshness taken as read for a checkpoint just read or written


def _store_reads(monkeypatch) -> list:
    """The class name of every store GX reads an object from, from here on."""
    reads = []
    for cls in (Store, ExpectationsStore):  # the suites' store has a get of its own
        get = cls.get

        def counting(self, *args, _get=get, **kwargs):
            reads.append(type(self).__name__)
            return _get(self, *args, **kwargs)

        monkeypatch.setattr(cls, "get", counting)
    return reads


def test_gx_reads_every_store_back_before_a_run(project, monkeypatch):
    """What patch 5 is for: GX's own check reads the checkpoint, definition and suite back."""
    ctx, checkpoint = project
    reads = _store_reads(monkeypatch)
    checkpoint.run()
    assert {"CheckpointStore", "ValidationDefinitionStore", "ExpectationsStore"} <= set(reads)


def test_a_checkpoint_just_read_runs_without_reading_the_stores_again(project, monkeypatch):
    ctx, checkpoint = project
    checkpoint = ctx.checkpoints.get("c")
    vd = checkpoint.validation_definitions[0]
    vd.suite._owner = None  # as a suite read from its store is: the check records the owner
    reads = _store_reads(monkeypatch)
    with gx_compat.fresh_from_store(checkpoint):
        result = checkpoint.run()
    assert reads == []
    assert vd.suite._owner is not None
    assert _counted(result.run_results.popitem()[1].results)[0] == (False, 29)


def test_outside_the_block_or_for_another_object_gx_checks_as_before(project):
    ctx, checkpoint = project
    edited = ctx.checkpoints.get("c")
    edited.validation_definitions[0].suite.expectations[0].max_value = 6  # not stored
    with (
        gx_compat.fresh_from_store(checkpoint),  # another object: still checked
        pytest.raises(Exception, match="(?i)fresh|changed|modified"),
    ):
        edited.run()
    with pytest.raises(Exception, match="(?i)fresh|changed|modified"):
        edited.run()


# 6. results stored once


def _stored(ctx) -> int:
    return len(ctx.validation_results_store.list_keys())


def test_gx_stores_each_result_as_it_runs(project):
    """What patch 6 is for: GX writes the result, before ours completes and writes it."""
    ctx, checkpoint = project
    checkpoint.run()
    assert _stored(ctx) == 1


def test_within_the_block_gx_stores_no_result(project):
    ctx, checkpoint = project
    with gx_compat.results_stored_by_caller():
        result = checkpoint.run()
    assert _stored(ctx) == 0
    rid, validation = result.run_results.popitem()
    ctx.validation_results_store.set(rid, validation)  # the caller stores it, once
    assert _stored(ctx) == 1
    checkpoint.run()  # after the block GX stores again
    assert _stored(ctx) == 2


# 7. metric ids without GX's general converter


class _Kind(enum.StrEnum):
    A = "a"


class _Level(enum.IntEnum):
    LOW = 1


_ODD_VALUES = [
    _Kind.A,
    _Level.LOW,
    np.int64(3),
    np.float64("nan"),
    np.float64(0.1),
    np.bool_(True),
    datetime.date(2026, 12, 7),
    decimal.Decimal("1.5"),
    {3, 1, 2},
    range(3),
    b"x",
    IDDict({"column": "v"}),
    float("inf"),
    float("-inf"),
    -0.0,
    1e300,
    True,
    False,
]


def _value(rng: random.Random, depth: int = 0):
    """A random keyword value: plain built-ins mostly, now and then one GX converts its way."""
    roll = rng.random()
    if depth < 3 and roll < 0.2:
        return {
            rng.choice(["column", "min_value", 1, 2.5, None, True, _Kind.A]): _value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))
        }
    if depth < 3 and roll < 0.35:
        items = [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return items if rng.random() < 0.5 else tuple(items)
    if roll < 0.45:
        return rng.choice(_ODD_VALUES)
    return rng.choice([None, "", "x", "é", 0, -7, 2**70, 0.5, float("nan"), True, False])


def _as_json(value) -> str:
    return json.dumps(value, sort_keys=True)


def test_plain_values_convert_as_gx_converts_them():
    rng = random.Random(7)
    for _ in range(3000):
        value = _value(rng)
        mine, theirs = gx_compat.plain_to_json(value), gx_compat.GX_TO_JSON(value)
        assert _as_json(mine) == _as_json(theirs), value
        assert type(mine) is type(theirs), value


def test_gx_passes_a_none_through_numpy_before_returning_it(monkeypatch):
    """What patch 7 is for: GX's converter asks numpy about a None three times (and pandas
    once) before returning it. A GX that returns plain values at once makes the patch moot."""
    calls = []
    issubdtype = np.issubdtype

    def counting(*args):
        calls.append(args)
        return issubdtype(*args)

    monkeypatch.setattr(np, "issubdtype", counting)
    assert gx_compat.GX_TO_JSON({"column": "v", "row_condition": None}) == {
        "column": "v",
        "row_condition": None,
    }
    assert len(calls) >= 3, "GX converts None without numpy now: patch 7 may go"


def test_a_validation_makes_the_same_metric_ids_as_gx(project, monkeypatch):
    ctx, checkpoint = project
    ids, to_id = [], IDDict.to_id

    def both(self, *args, **kwargs):
        ours = to_id(self, *args, **kwargs)
        monkeypatch.setattr(id_dict, "convert_to_json_serializable", gx_compat.GX_TO_JSON)
        try:
            theirs = to_id(self, *args, **kwargs)
        finally:
            monkeypatch.setattr(id_dict, "convert_to_json_serializable", gx_compat.plain_to_json)
        ids.append((ours, theirs))
        return ours

    monkeypatch.setattr(IDDict, "to_id", both)
    assert _counted(checkpoint.run().run_results.popitem()[1].results) == [
        (False, 29),
        (True, 0),
        (True, 0),
    ]
    hashed = [pair for pair in ids if isinstance(pair[0], str) and len(pair[0]) == 32]
    assert len(hashed) > 50  # the ids GX hashes from several keywords were compared
    assert all(ours == theirs for ours, theirs in ids)


# 8. column names on DuckDB without the catalog queries that fail


def test_on_duckdb_gx_s_catalog_queries_fail_and_it_falls_back_to_column_names(
    project, monkeypatch
):
    """What patch 8 is for: GX's own reflection on DuckDB raises on both catalog queries and
    ends in the one-row fallback, names without types. A DuckDB or SQLAlchemy that answers
    them makes this test say the patch can go."""
    ctx, _ = project
    engine = ctx.data_sources.get("w").get_execution_engine()
    failed, fell_back = [], []
    inspector = engine.get_inspector()
    for name in ("get_pk_constraint", "get_columns"):
        own = getattr(type(inspector), name)

        def counted(self, *args, _own=own, _name=name, **kwargs):
            try:
                return _own(self, *args, **kwargs)
            except Exception:
                failed.append(_name)
                raise

        monkeypatch.setattr(type(inspector), name, counted)
    fallback = metrics_util.column_reflection_fallback
    monkeypatch.setattr(
        metrics_util,
        "column_reflection_fallback",
        lambda **kw: fell_back.append(kw) or fallback(**kw),
    )
    columns = gx_compat.GX_COLUMN_METADATA(engine, "t")
    assert sorted(failed) == ["get_columns", "get_pk_constraint"]
    assert len(fell_back) == 1
    assert [(c["name"], c.get("type"), c["primary_key"]) for c in columns] == [
        ("id", None, False),
        ("v", None, False),
        ("s", None, False),
    ]


def test_column_names_on_duckdb_are_what_gx_s_own_reflection_gives(project, tmp_path):
    ctx, _ = project
    engine = ctx.data_sources.get("w").get_execution_engine()
    with engine.engine.connect() as conn:
        conn.exec_driver_sql("CREATE VIEW tv AS SELECT s, id FROM t")
        conn.commit()
    assert table_column_types.get_sqlalchemy_column_metadata is gx_compat.duckdb_column_metadata
    for table in ("t", "tv", sa.quoted_name("t", quote=None)):
        ours = gx_compat.duckdb_column_metadata(engine, table)
        theirs = gx_compat.GX_COLUMN_METADATA(engine, table)
        assert [dict(c) for c in ours] == [dict(c) for c in theirs], table
        assert [c["name"] for c in ours] == (["s", "id"] if table == "tv" else ["id", "v", "s"])
