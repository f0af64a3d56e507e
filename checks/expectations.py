"""``expect_column_values_to_pass_sql_rule``: a row rule written as SQL, run as a GX column map.

GX's ``UnexpectedRowsExpectation`` runs its query twice over the whole batch (a count and a
fetch of up to 200 rows) and nothing is shared between expectations: our cross-field rules
cost more than every other expectation of the suite together (benchmarks/README.md, M9). A column
map expectation is different: GX folds the unexpected counts of every column map
expectation on a table into one ``SELECT sum(CASE WHEN ...)`` pass, and hands back the SQL
that selects the failing rows as ``unexpected_index_query``, like the built-in ones.

So a rule that looks at one row (several columns, constants, registry tables) is written as

    {"type": "expect_column_values_to_pass_sql_rule",
     "kwargs": {"column": "lat__raw",
                "failing_when": "(lat__raw IS NULL) <> (lon__raw IS NULL)"}}

``failing_when`` is a SQL predicate that is true for a failing row (NULL counts as passing,
as in a ``WHERE`` clause); ``column`` is the value shown in quarantine and Data Docs. A rule
that compares a row with the other rows of the batch (duplicates) names the batch
``{batch}``, as ``unexpected_rows_expectation`` does: it is replaced by a subquery selecting
the batch GX validates, e.g.
``(submission_sha, source, report_id) IN (SELECT submission_sha, source, report_id FROM
{batch} GROUP BY ALL HAVING count(*) > 1)``. Braces are not doubled (no ``str.format`` here).

Importing this module registers the expectation and its metric with GX.
"""

from typing import ClassVar

import sqlalchemy as sa
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

METRIC = "column_values.cbm_pass_sql_rule"


class ColumnValuesPassSqlRule(ColumnMapMetricProvider):
    """True for a row where ``failing_when`` is not true."""

    condition_metric_name = METRIC
    condition_value_keys = ("failing_when",)
    filter_column_isnull = False  # the rule decides about NULLs, not the column

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, failing_when, _table=None, _sqlalchemy_engine=None, **kwargs):
        if "{batch}" in failing_when:
            failing_when = failing_when.replace(
                "{batch}", f"({_batch_sql(_table, _sqlalchemy_engine)})"
            )
        # literal_column: the rule is SQL text, and ':' inside it is not a bind parameter
        return sa.literal_column(f"(NOT coalesce(({failing_when}), false))", type_=sa.Boolean)


def _batch_sql(selectable, engine) -> str:
    """The batch GX validates (a table, or a SELECT over one) as SQL text for ``{batch}``."""
    if isinstance(selectable, sa.TableClause):
        return f"SELECT * FROM {selectable.name}"
    return str(selectable.compile(engine, compile_kwargs={"literal_binds": True}))


class ExpectColumnValuesToPassSqlRule(ColumnMapExpectation):
    """Expect no row for which the SQL predicate ``failing_when`` is true.

    ``column`` names the value reported for a failing row. Runs on SQL data sources only.
    """

    failing_when: str
    map_metric = METRIC
    args_keys = ("column", "failing_when")
    success_keys: ClassVar[tuple[str, ...]] = ("failing_when", "mostly")

    def _validate(self, metrics: dict, runtime_configuration=None, execution_engine=None):
        result = super()._validate(metrics, runtime_configuration, execution_engine)
        # A column map expectation passes "vacuously" when its column is NULL in every row;
        # a row rule must not: the column only names the value to show. Success is judged
        # on all rows of the batch.
        total = metrics.get("table.row_count") or 0
        unexpected = metrics.get(f"{METRIC}.unexpected_count") or 0
        result["success"] = total == 0 or (total - unexpected) / total >= self.mostly
        return result
