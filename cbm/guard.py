"""The release guard (contract §4): what a release may change before a person says so.

Re-derivation proves a release is what the method gives its inputs, not that the inputs and
the method were the ones meant. So before a release is signed and becomes LATEST it is
compared with the previous one: when it would remove or revise more than the policy's share
of a product's rows (``policy.yaml`` ``release_guard``), it is held, built but unsigned and
not LATEST, until an operator accepts the change on purpose (``cbm run --accept-change``),
which the manifest then records. Rows whose event was re-anchored (``replaced_by``, with the
successor named) and status changes (a review window elapsing, an expiry) are not counted:
they are what time and new evidence do.
"""

from __future__ import annotations

from cbm.registry import ReleaseGuard

COUNTED = ("removed", "revised")


def guard_findings(
    counts: dict[str, dict[str, int]], previous_rows: dict[str, int], guard: ReleaseGuard
) -> list[str]:
    """One line per product that changes more than the guard allows; [] when none does.
    ``counts``: the release's change counts per product (``cbm.changes.count_changes``);
    ``previous_rows``: each product's rows in the previous release."""
    findings = []
    for product, changes in counts.items():
        before = previous_rows.get(product, 0)
        changed = sum(changes.get(c, 0) for c in COUNTED)
        if before and before >= guard.min_rows and changed > guard.max_changed_share * before:
            findings.append(
                f"{product}: {changed:,} of the previous release's {before:,} rows removed or "
                f"revised ({changed / before:.0%}; policy release_guard.max_changed_share "
                f"{guard.max_changed_share:.0%})"
            )
    return findings


def inputs_line(previous_inputs: list[str], inputs: list[str]) -> str:
    """How the inputs moved since the previous release, for the operator reading a hold."""
    gone = len(set(previous_inputs) - set(inputs))
    new = len(set(inputs) - set(previous_inputs))
    return (
        f"inputs {len(previous_inputs):,} -> {len(inputs):,} submissions "
        f"({gone:,} of the previous release's gone, {new:,} new)"
    )
