"""Landing: every file handed in is kept byte for byte, content-addressed, before anything else.

Files are copied into the landing area by the ingestion plan (``cbm.intake``), which the
inbox sensor and ``cbm run`` both call. The ``landed_submissions`` asset then registers each
submission in the warehouse and rejects, whole and with a specific reason, what cannot be
accepted at the file level.
"""

from pathlib import Path

import dagster as dg

from assets.metadata import markdown_preview, table_schema
from assets.partitions import submissions_partitions
from assets.resources import CbmSettings
from cbm.contract import format_of, kind_of
from cbm.intake import file_level_rejection, landing_paths, read_landing_meta
from cbm.protection import load_key
from cbm.registry import Registry
from warehouse.resource import WarehouseResource

OWNER = "team:ingestion"


@dg.asset(
    partitions_def=submissions_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="landing",
    kinds={"duckdb", "file"},
    owners=[OWNER],
    pool="warehouse",
    description=(
        "One row per submission (file hash) in the warehouse `submissions` table. The bytes "
        "are kept in <workdir>/landing; files that fail a file-level rule (unregistered party, "
        "unknown kind or format, empty, bad signature, symlink) are rejected whole and recorded "
        "in `quarantine` with the reason."
    ),
)
def landed_submissions(
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    registry = settings.load_registry()
    key = load_key()
    rejected = 0
    shas = context.partition_keys
    with warehouse.connect() as con:
        _register_parties(con, registry, key)
        for sha in shas:
            meta = read_landing_meta(settings.landing_dir, sha)
            rejection = file_level_rejection(meta, registry, settings.landing_dir)
            name = Path(meta["file_name"]).name
            con.execute("DELETE FROM submissions WHERE sha256 = ?", [sha])
            con.execute("DELETE FROM quarantine WHERE submission_sha = ?", [sha])
            party_known = meta["party_dir"] in registry.parties
            con.execute(
                "INSERT INTO submissions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0,0,0,'[]')",
                [
                    sha,
                    meta["party_dir"],
                    key.pseudonym(meta["party_dir"]) if party_known else None,
                    key.version,
                    kind_of(name),
                    format_of(name),
                    meta["file_name"],
                    meta["size_bytes"],
                    meta["received_at"],
                    str(landing_paths(settings.landing_dir, sha)[0]),
                    "valid"
                    if (
                        party_known
                        and registry.parties[meta["party_dir"]].public_key
                        and rejection is None
                    )
                    else "none",
                    "rejected" if rejection else "landed",
                ],
            )
            if rejection:
                rejected += 1
                rule, reason = rejection
                con.execute(
                    "INSERT INTO quarantine (submission_sha, stage, rule, reason, severity) VALUES (?, 'landing', ?, ?, 'critical')",
                    [sha, rule, reason],
                )
                context.log.warning(reason)
        preview = markdown_preview(
            con,
            "SELECT left(sha256, 12) AS sha, party_code, kind, file_name, status FROM submissions "
            "WHERE sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY party_code, file_name",
            [shas],
            limit=20,
        )
        schema = table_schema(con, "submissions")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(shas),
            "dagster/column_schema": schema,
            "rejected_whole": rejected,
            "preview": dg.MetadataValue.md(preview),
        }
    )


def _register_parties(con, registry: Registry, key) -> None:
    """Registry tables: parties (pseudonym, class, bloc, public label; real names never
    enter) and commitments, for the suites and the verification SQL."""
    con.execute("DELETE FROM registry_commitments")
    con.executemany(
        "INSERT INTO registry_commitments VALUES (?,?,?,?,?,?,?,?)",
        [
            (
                c.commitment_id,
                c.type,
                c.schedule,
                c.lead_time_days,
                c.response_sla_hours,
                c.grace_days,
                c.valid_from,
                c.valid_to,
            )
            for c in sorted(registry.commitments.values(), key=lambda c: c.commitment_id)
        ],
    )
    con.execute("DELETE FROM registry_obligations")
    con.executemany(
        "INSERT INTO registry_obligations VALUES (?, ?)",
        [
            (c.commitment_id, code)
            for c in sorted(registry.commitments.values(), key=lambda c: c.commitment_id)
            for code in c.obligated_parties(registry.parties)
        ],
    )
    con.execute("DELETE FROM party_directory")
    con.executemany(
        "INSERT INTO party_directory VALUES (?,?,?,?,?)",
        [
            (p.code, key.pseudonym(p.code), p.party_class, p.bloc, p.public_label)
            for p in sorted(registry.parties.values(), key=lambda p: p.code)
        ],
    )
