"""Partitions: one dynamic partition per submission (its SHA-256), one per month for indicators."""

import dagster as dg

submissions_partitions = dg.DynamicPartitionsDefinition(name="submissions")

# Indicator months: the months with events or verdicts, from the first one with data to the
# as-of month, registered by verification (``register_months``) so the catalogue shows no
# month before the data begins.
monthly_partitions = dg.DynamicPartitionsDefinition(name="months")


def months_between(first: str, last: str) -> list[str]:
    """Every month 'YYYY-MM' from ``first`` to ``last``, both included."""
    year, month = map(int, first.split("-"))
    end = tuple(map(int, last.split("-")))
    out = []
    while (year, month) <= end:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def register_months(instance: dg.DagsterInstance, first: str, last: str) -> list[str]:
    """Make the month partitions cover ``first``..``last`` and every month between them and
    those registered before; return them in the order registered.

    Months are only ever added. Putting them back in calendar order when a month earlier
    than the first one arrived meant deleting every month and adding them again, and a
    backfill or automation tick of a running daemon that read the months in between failed
    ("Unable to determine root partitions for backfill", issue #38; the daemon fails a
    backfill naming a month that is gone: tests/test_definitions.py). Such a month is therefore added after the others, where the
    UI then lists it; a run over every month takes the range from the first registered to
    the last."""
    name = monthly_partitions.name
    known = instance.get_dynamic_partitions(name)
    span = [*known, first, last]
    have = set(known)
    missing = [m for m in months_between(min(span), max(span)) if m not in have]
    if not missing:
        return known
    try:
        instance.add_dynamic_partitions(name, missing)
    except Exception:  # another process added some of them in between: add the rest
        have = set(instance.get_dynamic_partitions(name))
        instance.add_dynamic_partitions(name, [m for m in missing if m not in have])
    return instance.get_dynamic_partitions(name)


# Refresh when new validated data lands: any upstream update not yet handled, nothing
# upstream missing or in progress. Unlike eager(), every partition is eligible, since a late
# report can revise an old month. A request or an update of the asset handles the upstream
# updates only when none came in the same tick: when the asset's own run and a newer
# upstream run both finish between two ticks, the newer data still gets its refresh
# (make test-scale found months of indicators left stale by since_last_handled(), which
# resets on both at once).
_deps_updated = dg.AutomationCondition.any_deps_updated()
_handled = (
    (dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated())
    & ~_deps_updated
) | dg.AutomationCondition.initial_evaluation()
refresh_on_new_data = (
    _deps_updated.since(_handled.with_label("handled"))
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh when new validated data lands")
