"""The registry in the warehouse: parties (pseudonym, class, bloc, public label; real names
never enter), commitments and who owes them, for the suites and the verification SQL."""

import dagster as dg
import pyarrow as pa

from assets.metadata import declared_schema
from assets.resources import PseudonymKeyResource, RegistryResource
from assets.stages import VERIFICATION, WAREHOUSE_POOL, stage
from cbm.registry import verification_max_tlp
from warehouse.queries import query
from warehouse.resource import WarehouseResource

REGISTRY = stage("registry", VERIFICATION)


def regions(extra: tuple[str, ...]) -> list[tuple[str, str]]:
    """(code, name) of every region an incident may name: ISO 3166-1 alpha-3, then the
    registry's own additions."""
    from iso3166 import countries_by_alpha3

    iso = {code: country.name for code, country in countries_by_alpha3.items()}
    added = {code: "added by policy.yaml extra_regions" for code in extra if code not in iso}
    return sorted((iso | added).items())


REGISTRY_TABLES = {
    "party_directory": "Registered parties by code: keyed pseudonym, stakeholder class, bloc "
    "and public label (parties.yaml). Real names never enter the warehouse.",
    "verification_scope": "The highest TLP level verification reads (one row): AMBER when "
    "policy.yaml names the members as AMBER's recipients (`amber_recipients: members`), else "
    "GREEN; never AMBER+STRICT or RED. The views verification_incidents, _compliance and _attestations read only up to it.",
    "registry_commitments": "Commitments (commitments.yaml): type, schedule, lead time, "
    "response window, grace days and validity.",
    "registry_obligations": "Who owes each commitment: one row per commitment and obligated "
    "party code (all_states expanded).",
    "registry_regions": "The regions an incident may name: every ISO 3166-1 alpha-3 code, and "
    "the codes policy.yaml adds (extra_regions, e.g. a disputed territory).",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            table,
            description=text,
            metadata=declared_schema(table),
            **REGISTRY,
            kinds={"duckdb", "yaml"},
        )
        for table, text in REGISTRY_TABLES.items()
    ],
    pool=WAREHOUSE_POOL,
)
def registry_tables(
    registry: RegistryResource, pseudonym_key: PseudonymKeyResource, warehouse: WarehouseResource
):
    """Replace the registry tables with the registry of this run."""
    reg, key = registry.registry, pseudonym_key.key
    commitments = sorted(reg.commitments.values(), key=lambda c: c.commitment_id)
    rows = {
        "party_directory": [
            (p.code, key.pseudonym(p.code), p.party_class, p.bloc, p.public_label)
            for p in sorted(reg.parties.values(), key=lambda p: p.code)
        ],
        "registry_commitments": [
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
            for c in commitments
        ],
        "registry_obligations": [
            (c.commitment_id, code)
            for c in commitments
            for code in c.obligated_parties(reg.parties)
        ],
        "registry_regions": regions(reg.policy.extra_regions),
    }
    with warehouse.connect() as con:
        pseudonym_key.claimed(con)
        con.execute(query("verified.clear", table="verification_scope"))
        con.execute(query("verified.set_scope"), [verification_max_tlp(reg.policy)])
        yield dg.MaterializeResult(
            asset_key="verification_scope",
            metadata={"dagster/row_count": 1, "reads_up_to": verification_max_tlp(reg.policy)},
        )
        for table, values in rows.items():
            con.execute(query("verified.clear", table=table))
            if values:  # one insert a table: DuckDB's executemany inserts row by row (M18)
                columns = {f"c{i}": [row[i] for row in values] for i in range(len(values[0]))}
                con.register("registry_rows", pa.table(columns))
                con.execute(query("verified.add_registry_rows", table=table))
                con.unregister("registry_rows")
            yield dg.MaterializeResult(
                asset_key=table,
                metadata={
                    "dagster/row_count": len(values),
                },
            )
