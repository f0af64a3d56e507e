"""Partitions: one dynamic partition per submission (its SHA-256), one per month for indicators."""

import dagster as dg

submissions_partitions = dg.DynamicPartitionsDefinition(name="submissions")

# Indicator months. end_offset=1 includes the current month (tentative until it closes).
# Reports about months before 2015 would need an earlier start_date here.
monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date="2015-01", fmt="%Y-%m", end_offset=1, timezone="UTC"
)

# Refresh when new validated data lands: any upstream update not yet handled, nothing
# upstream missing or in progress. Unlike eager(), every partition is eligible, since a late
# report can revise an old month.
refresh_on_new_data = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh when new validated data lands")
