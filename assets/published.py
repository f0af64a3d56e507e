"""Published: disclosure control, then a deterministic, atomic release (contract §4, §5)."""

import json
from pathlib import Path

import dagster as dg
import duckdb

from assets.verified import release_context
from pipelines import release as rel
from pipelines.protection import load_key
from pipelines.registry import RULES_VERSION
from pipelines.settings import CbmSettings
from warehouse.db import Warehouse, fetch_arrow, sql_file

OWNER = "team:publication"


def _changes(publish: Path, previous: str | None, new_root: Path) -> dict:
    """What changed against the previous release: new periods and revised indicator values."""
    new_glob = str(new_root / "indicators" / "**" / "*.parquet")
    if not previous or not (publish / "releases" / previous / "manifest.json").exists():
        return {"previous_release_id": None, "new_periods": _periods(new_glob), "revised_values": 0}
    old_glob = str(publish / "releases" / previous / "indicators" / "**" / "*.parquet")
    con = duckdb.connect()
    try:
        old_p, new_p = set(_periods(old_glob, con)), _periods(new_glob, con)
        revised = 0
        if old_p and new_p:
            revised = con.execute(
                f"""SELECT count(*) FROM read_parquet('{old_glob}', hive_partitioning=true) o
                JOIN read_parquet('{new_glob}', hive_partitioning=true) n
                  USING (period, subject, counterpart, indicator)
                WHERE o.value IS DISTINCT FROM n.value OR o.status IS DISTINCT FROM n.status
                   OR o.suppressed IS DISTINCT FROM n.suppressed"""
            ).fetchone()[0]
    finally:
        con.close()
    return {
        "previous_release_id": previous,
        "new_periods": sorted(set(new_p) - old_p),
        "revised_values": int(revised),
    }


def _corrections(
    warehouse: Warehouse, publish: Path, previous: str | None, inputs: list[str]
) -> dict:
    """Submissions new since the previous release, and how many of their reports revise an
    earlier version (corrections)."""
    before: set[str] = set()
    if previous and (publish / "releases" / previous / "manifest.json").exists():
        before = set(
            json.loads((publish / "releases" / previous / "manifest.json").read_text())["inputs"]
        )
    new = sorted(set(inputs) - before)
    with warehouse.connect() as con:
        corrections = con.execute(
            "SELECT count(*) FROM (SELECT submission_sha, version FROM reports_incidents UNION ALL "
            "SELECT submission_sha, version FROM reports_compliance UNION ALL "
            "SELECT submission_sha, version FROM reports_attestations) "
            "WHERE version > 1 AND submission_sha IN (SELECT unnest(?::VARCHAR[]))",
            [new],
        ).fetchone()[0]
    return {"new_submissions": len(new), "corrections": int(corrections)}


def _periods(glob: str, con=None) -> list[str]:
    own = con is None
    con = con or duckdb.connect()
    try:
        return [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT period FROM read_parquet('{glob}', hive_partitioning=true) ORDER BY 1"
            ).fetchall()
        ]
    except duckdb.IOException:
        return []
    finally:
        if own:
            con.close()


@dg.asset(
    deps=["subject_indicators", "incident_clusters", "compliance_verdicts"],
    group_name="published",
    kinds={"parquet"},
    owners=[OWNER],
    pool="warehouse",
    description=(
        "A release under <publish>/releases/<release_id>: indicators (after small-cell and "
        "secondary suppression), compliance and events (CLEAR/GREEN-derived only) as zstd "
        "Parquet partitioned by period, manifest.json written last, then LATEST and a "
        "CHANGELOG.jsonl line. Same inputs + same method = same release id and bytes."
    ),
)
def release(
    context: dg.AssetExecutionContext, settings: CbmSettings, warehouse: Warehouse
) -> dg.MaterializeResult:
    registry = settings.load_registry()
    key = load_key()
    publish = Path(settings.publish)
    with warehouse.connect() as con:
        as_of, method_version = release_context(con)
        inputs = [
            r[0] for r in con.execute("SELECT sha256 FROM submissions ORDER BY sha256").fetchall()
        ]
        as_of_text = as_of.isoformat()
        release_id = rel.release_id_for(
            inputs, method_version, as_of_text, f"{key.version}/{key.fingerprint}"
        )
        params = {"release_id": release_id, "method_version": method_version}
        tables = {
            "indicators": fetch_arrow(
                con, sql_file("published_indicators"), params | {"k": registry.policy.small_cell_k}
            ),
            "compliance": fetch_arrow(con, sql_file("published_compliance"), params),
            "events": fetch_arrow(con, sql_file("published_events"), params),
        }
        statuses = dict(
            con.execute(
                "SELECT status, count(*) FROM submissions GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )

    def build(root: Path) -> list[dict]:
        return [
            entry
            for product, table in tables.items()
            for entry in rel.write_product(root, product, table)
        ]

    previous = rel.latest(publish)
    published = rel.publish_atomically(
        publish,
        release_id,
        build,
        {
            "method_version": method_version,
            "rules_version": RULES_VERSION,
            "as_of": as_of_text,
            "policy": registry.policy.raw,
            "pseudonym_key_version": key.version,
            "pseudonym_key_fingerprint": key.fingerprint,
            "inputs": inputs,
        },
    )
    # Also when the release existed but its changelog line did not: a run killed between the
    # rename and the changelog must end like an uninterrupted one.
    if published.new or not rel.in_changelog(publish, release_id):
        changes = _changes(publish, previous if previous != release_id else None, published.path)
        changes |= _corrections(warehouse, publish, changes["previous_release_id"], inputs)
        rel.append_changelog(
            publish,
            {
                "release_id": release_id,
                "as_of": as_of_text,
                "method_version": method_version,
                **changes,
            },
        )
    rel.set_latest(publish, release_id)
    rows = {
        p: sum(f["rows"] for f in published.files if f["path"].startswith(p + "/"))
        for p in rel.PRODUCTS
    }
    context.log.info(
        f"release {release_id} at {published.path} ({'new' if published.new else 'unchanged'})"
    )
    return dg.MaterializeResult(
        metadata={
            "release_id": release_id,
            "path": dg.MetadataValue.path(str(published.path)),
            "new_release": published.new,
            "as_of": as_of_text,
            "dagster/row_count": sum(rows.values()),
            **{f"rows_{p}": n for p, n in rows.items()},
            "files": len(published.files),
            "submissions_by_status": dg.MetadataValue.json(statuses),
            "manifest": dg.MetadataValue.json(
                json.loads((published.path / "manifest.json").read_text())["files"][:20]
            ),
        }
    )


@dg.asset_check(
    asset=release,
    description="The release named in LATEST matches its manifest: every file present, hashes and row counts equal, nothing extra.",
)
def manifest_integrity(settings: CbmSettings) -> dg.AssetCheckResult:
    publish = Path(settings.publish)
    current = rel.latest(publish)
    if current is None:
        return dg.AssetCheckResult(passed=False, metadata={"problem": "no LATEST file"})
    ok, problems = rel.verify_release(publish / "releases" / current)
    return dg.AssetCheckResult(
        passed=ok, metadata={"release_id": current, "problems": dg.MetadataValue.json(problems)}
    )
