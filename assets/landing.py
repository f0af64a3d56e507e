"""Landing: every file handed in is kept byte for byte, content-addressed, before anything else.

Files are copied into the landing area by the one ingestion plan (``cbm.intake``), which the
inbox sensor and ``cbm run`` both call. The ``landed_submissions`` asset registers each
submission of its partitions and rejects, whole and with a specific reason, what cannot be
accepted at the file level.
"""

from pathlib import Path

import dagster as dg

from assets.metadata import declared_schema, keeps, markdown_preview
from assets.partitions import submissions_partitions
from assets.resources import CbmSettings, PseudonymKeyResource, RegistryResource
from assets.stages import INGESTION, WAREHOUSE_POOL, stage
from cbm.admission import file_level_rejection
from cbm.contract import format_of, kind_of
from cbm.intake import (
    current_intake_key,
    submissions_of,
)
from warehouse.queries import query
from warehouse.resource import WarehouseResource

LANDING = stage("landing", INGESTION)
# what a signature that arrives after an accepted file can say, and never does to it
LATE_SIGNATURE_RULES = ("signature_invalid", "signature_missing")


@dg.asset(
    partitions_def=submissions_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    **LANDING,
    metadata=declared_schema("landed_submissions") | keeps("pseudonym_key"),
    kinds={"duckdb", "file"},
    pool=WAREHOUSE_POOL,
    description=(
        "One row per submission (file hash) in table `landed_submissions`: party, kind, "
        "format, file name, size, signature. The bytes are kept in the landing area (the "
        "workdir's `landing/` folder, or `CBM_LANDING` on object storage). A file that fails a file-level rule (unregistered party, unknown kind or "
        "format, empty, missing or bad signature, symlink) is rejected whole here, with the "
        "rule and the reason. Before it writes, the warehouse's key is checked: the first run "
        "records the pseudonymisation key's version and fingerprint in `pseudonym_key`, and a "
        "run with another key fails here, writing nothing (`cbm rotate-key` changes keys on "
        "purpose and lists the rotation in `key_rotations` for the next release)."
    ),
)
def landed_submissions(
    context: dg.AssetExecutionContext,
    settings: CbmSettings,
    registry: RegistryResource,
    pseudonym_key: PseudonymKeyResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    key = pseudonym_key.key
    landing = settings.landing_area
    shas = submissions_of(settings.landing_area, context.partition_keys)
    with warehouse.connect() as con:  # what landing said of these before, if anything
        before = dict(con.execute(query("intake.signatures_before"), [shas]).fetchall())
    rows, kept = [], 0
    for sha in shas:
        row, late = _landed_row(context, sha, registry.registry, landing, key, before)
        rows.append(row)
        kept += late
    with warehouse.connect() as con:
        pseudonym_key.claimed(con)  # another key stops the run here, before anything is written
        con.execute(query("intake.forget_landed"), [shas])
        con.executemany(query("intake.land"), rows)
        preview = markdown_preview(con, query("intake.landed_preview"), [shas], limit=20)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "rejected_whole": sum(1 for r in rows if r[-2]),
            "late_signatures_not_revoking": kept,
            "preview": dg.MetadataValue.md(preview),
        }
    )


def _landed_row(context, sha: str, registry, landing, key, before: dict) -> tuple[tuple, bool]:
    """One submission's row of landed_submissions, and whether a late signature was set
    aside (``before``: what landing said of the accepted ones before)."""
    parties = registry.parties
    meta = landing.meta(sha)
    rule, reason = file_level_rejection(meta, registry, landing) or (None, None)
    party = meta["party_dir"]
    name = Path(meta["file_name"]).name
    signature = (
        "valid" if party in parties and parties[party].public_key and rule is None else "none"
    )
    late = sha in before and rule in LATE_SIGNATURE_RULES
    if late:
        # a signature that arrives later never revokes what was accepted: it is told
        context.log.warning(
            f"{party}/{name}: a .sig arrived after it was accepted ({reason.split(': ', 1)[-1]}); "
            "the submission stays as it was: a late signature never revokes one"
        )
        rule, reason, signature = None, None, before[sha]
    if reason:
        context.log.warning(reason)
    row = (
        sha,
        meta.get("file_sha256", sha),
        party,
        key.pseudonym(party) if party in parties else None,
        key.version,
        kind_of(name),
        format_of(name),
        meta["file_name"],
        meta.get("paths", [meta["file_name"]]),
        meta["size_bytes"],
        meta["received_at"],
        landing.recorded_where(sha),
        signature,
        current_intake_key(landing, sha),
        rule,
        reason,
    )
    return row, late
