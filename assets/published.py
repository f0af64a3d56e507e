"""Published: disclosure control, then a deterministic, atomic release (contract §4, §5)."""

import json
import tempfile
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from assets.resources import CbmSettings, RegistryResource, SigningKeyResource
from cbm import misp, stix
from cbm import release as rel
from cbm.calendar import calendar_ics
from cbm.changes import count_changes, product_changes
from cbm.dictionary import release_dictionary
from cbm.guard import guard_findings, inputs_line
from cbm.registry import RULES_VERSION, signing_key_problem
from cbm.registry import publisher as publisher_of
from cbm.report import EVENT_STATUSES, REPORT, build_report
from cbm.signatures import SCHEME as SIGNATURE_SCHEME
from cbm.signatures import key_fingerprint
from cbm.storage import Conflict, location
from warehouse.bundle import write_bundle
from warehouse.db import (
    fetch_arrow,
    indicator_catalogue,
    read_release_context,
    recorded_key,
    sql_file,
)
from warehouse.resource import WarehouseResource

OWNER = "team:publication"


def _change_counts(release: Path) -> dict[str, dict[str, int]]:
    """Rows added, removed, revised (and so on) per product, read from the release's changes/."""
    return {
        p: count_changes(pq.read_table(release / "changes" / f"{p}.parquet")) for p in rel.PRODUCTS
    }


def _changelog_entry(
    previous_root: Path | None,
    before: dict | None,
    release: Path,
    inputs: list[str],
    corrections: dict,
    counts: dict[str, dict[str, int]],
) -> dict:
    """The CHANGELOG.jsonl line of a release: its counts are those of its changes/ files.
    ``previous_root`` and ``before``: the previous release's folder and manifest (None: none)."""

    def periods(root: Path) -> set[str]:
        return {d.name.removeprefix("period=") for d in root.glob("indicators/period=*")}

    new_inputs = set(inputs) - set(before["inputs"] if before else ())
    return {
        "previous_release_id": previous_root.name if before else None,
        "new_periods": sorted(periods(release) - (periods(previous_root) if before else set())),
        "revised_values": counts["indicators"]["revised"] + counts["indicators"]["status_changed"],
        "changes": counts,
        "new_submissions": len(new_inputs),
        "corrections": sum(corrections.get(sha, 0) for sha in new_inputs),
    }


@dg.asset(
    deps=[
        "indicator_values",
        "incident_clusters",
        "compliance_verdicts",
        "calendar_entries",
        "disputes",
        "release_context",
        "submissions",
        "party_directory",
    ],
    group_name="published",
    kinds={"parquet"},
    owners=[OWNER],
    pool="warehouse",
    description=(
        "A release in the publish folder, `releases/RELEASE_ID/` (on object storage: built in a "
        "local mirror, then copied files first, manifest next, LATEST last and conditionally): indicators (after small-cell and "
        "secondary suppression, with the reason), compliance and events (CLEAR/GREEN-derived "
        "only) as zstd Parquet partitioned by period, `changes/` row by row against the previous "
        "release, `calendar/` (notified activities and milestones, Parquet and calendar.ics; "
        "`calendar.ics` in the publish folder follows LATEST for subscriptions), `disputes/` (with status "
        "and age), `stix/bundle.json` (STIX 2.1: events and verdicts, with the JSON schemas of "
        "our extensions in `stix/schemas/`), `misp/` (a MISP feed of the events), "
        "`dictionary.json`, `report/index.html` (charts and tables from those files, "
        "one page that opens offline; metadata `report` links it), then manifest.json (signed when a publisher key is given), "
        "LATEST and a CHANGELOG.jsonl line counted from `changes/`. Same inputs + same method = "
        "same release id and bytes. The reports behind each release's events are kept in the "
        "warehouse table `published_event_members` (member tier), to name an event's successor; "
        "its publisher identity, release id, event ids and their STIX ids in `own_publications`, "
        "so the release handed back in is quarantined as a copy. Before it is signed and made "
        "LATEST the release is checked: signed whenever the registry names the publisher's key "
        "(unsigned only on purpose, `unsigned`); made after any key rotation's verification; and "
        "compared with the previous release: when it removes or revises more than policy.yaml "
        "`release_guard` allows, it is built unsigned under the workdir's `held/` folder and the "
        "run fails naming the products, until accepted on purpose (`accept_change`, recorded in "
        "the manifest). "
        "The member bundle of the release (the rows and registry it was derived from, for "
        "`cbm rederive`) is written to the workdir's `bundles/RELEASE_ID/`."
    ),
)
def release(
    context: dg.AssetExecutionContext,
    settings: CbmSettings,
    registry: RegistryResource,
    signing_key: SigningKeyResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    registry_dir, registry = Path(registry.directory), registry.registry
    rederiving = json.loads(settings.rederiving) if settings.rederiving is not None else None
    signer = None if rederiving is not None else _signer(settings, registry, signing_key)
    # a publish location on object storage is served from a local mirror (cbm.release)
    target = location(settings.publish)
    publish = settings.publish_dir
    pulled = rel.pull_published(target, publish) if target.remote else None
    with warehouse.connect() as con:
        release_context = read_release_context(con)
        rotation = _key_rotation(con, release_context) if rederiving is None else None
        method_version, inputs = release_context.method_version, release_context.inputs
        as_of_text = release_context.as_of.isoformat()
        content_id = rel.release_id_for(
            inputs,
            method_version,
            as_of_text,
            f"{release_context.key_version}/{release_context.key_fingerprint}",
            release_context.registry_digest,
        )
        # the release id covers the release it follows (LATEST): a chain that shows a fork
        latest_id = rel.latest(publish)
        latest_manifest = publish / "releases" / str(latest_id) / rel.MANIFEST
        release_id, chain = rel.chained_release(
            content_id,
            latest_id,
            latest_manifest.read_bytes() if latest_id and latest_manifest.is_file() else None,
        )
        params = {"release_id": release_id, "method_version": method_version}
        tables = {
            "indicators": fetch_arrow(
                con, sql_file("published_indicators"), params | {"k": registry.policy.small_cell_k}
            ),
            "compliance": fetch_arrow(con, sql_file("published_compliance"), params),
            "events": fetch_arrow(con, sql_file("published_events"), params),
        }
        single = {  # one file each (calendar/, disputes/)
            name: fetch_arrow(con, sql_file(f"published_{name}"), params) for name in rel.TABLES
        }
        statuses = dict(
            con.execute(
                "SELECT status, count(*) FROM submissions GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        # reports that supersede an earlier version, per submission (corrections)
        previous = chain["release_id"] if chain else None
        published_events = tables["events"].column("event_id").to_pylist()
        successors = (
            dict(
                con.execute(
                    sql_file("event_successors"),
                    {"previous": previous, "published": published_events},
                ).fetchall()
            )
            if previous and previous != release_id
            else {}
        )
        corrections_by_sha = dict(
            con.execute(
                "SELECT sha256, corrections FROM submissions WHERE corrections > 0"
            ).fetchall()
        )

    who = publisher_of(registry.parties)
    publisher = (who.public_label if who else None) or "cbm-verify secretariat"
    dictionary = release_dictionary(indicator_catalogue(), tables | single, registry.policy.raw)
    previous_root = publish / "releases" / previous if previous and previous != release_id else None
    changes = {
        product: product_changes(
            product, table, previous_root, successors if product == "events" else None
        )
        for product, table in tables.items()
    }

    def build(root: Path) -> list[dict]:
        entries = [
            entry
            for product, table in tables.items()
            for entry in rel.write_product(root, product, table)
        ]
        entries += [rel.write_table(root, f"changes/{p}.parquet", t) for p, t in changes.items()]
        entries += [rel.write_table(root, path, single[name]) for name, path in rel.TABLES.items()]
        entries.append(
            rel.write_file(
                root,
                rel.CALENDAR_ICS,
                calendar_ics(single["calendar"], release_context.as_of, release_id),
            )
        )
        entries.append(rel.write_file(root, "dictionary.json", dictionary))
        # STIX 2.1 and a MISP feed of the same events and verdicts (contract section 7)
        events, verdicts = tables["events"].to_pylist(), tables["compliance"].to_pylist()
        entries.append(
            rel.write_file(
                root,
                stix.BUNDLE,
                stix.release_bundle(
                    events,
                    verdicts,
                    release_id,
                    release_context.as_of,
                    method_version,
                    publisher,
                    who.public_key if who else None,
                ),
            )
        )
        entries += [
            rel.write_file(root, f"stix/schemas/{name}", data)
            for name, data in stix.schema_files().items()
        ]
        entries += [
            rel.write_file(root, f"misp/{name}", data)
            for name, data in misp.feed_files(events, release_context.as_of, publisher).items()
        ]
        # the report reads the files just written: the release's own, nothing else
        report = build_report(root, release_id, as_of_text, method_version)
        return entries + [rel.write_file(root, REPORT, report)]

    # what the manifest declares beyond the figures (a re-derivation: what the bundle says)
    declarations = rederiving if rederiving is not None else {}
    if rederiving is None and rotation:
        declarations["key_rotation"] = rotation
    if rederiving is None and settings.unsigned and not signer:
        declarations["unsigned"] = "on purpose (--unsigned)"
    manifest_base = {
        # whose key verifies manifest.json.sig, and where a reader gets it (not from here)
        "publisher_key": {
            "sha256": key_fingerprint(who.public_key),
            "from": "the registry's parties.yaml: public_key of the party of class "
            "secretariat, obtained from the secretariat outside this release; compare its "
            "SHA-256 with this one",
        }
        if who is not None and who.public_key
        else None,
        "content_id": content_id,
        "previous_release": chain,
        "signature_scheme": SIGNATURE_SCHEME,
        "method_version": method_version,
        "rules_version": RULES_VERSION,
        "as_of": as_of_text,
        "policy": registry.policy.raw,
        "pseudonym_key_version": release_context.key_version,
        "pseudonym_key_fingerprint": release_context.key_fingerprint,
        "inputs": inputs,
    }
    previous_manifest = _manifest(previous_root)
    findings = (
        guard_findings(
            {p: count_changes(t) for p, t in changes.items()},
            _rows_by_product(previous_manifest["files"] if previous_manifest else []),
            registry.policy.release_guard,
        )
        if rederiving is None
        and previous_manifest
        and not (publish / "releases" / release_id / rel.MANIFEST).exists()
        else []
    )
    if findings and not settings.accept_change:
        held = rel.publish_atomically(
            settings.held_dir, release_id, build, manifest_base | declarations | {"held": findings}
        )
        raise dg.Failure(
            f"release {release_id} held, not signed and not LATEST: "
            + "; ".join(findings)
            + f"; {inputs_line(previous_manifest['inputs'], inputs)}. Built at {held.path}. "
            "If the change is meant (a new policy, a correction), publish it with "
            "'cbm run ... --accept-change REASON' (recorded in the manifest); if not, fix the "
            "registry, key or inbox and run again (docs/reliability-and-security.md)"
        )
    if findings:
        declarations["accepted_change"] = {"reason": settings.accept_change, "findings": findings}
    published = rel.publish_atomically(
        publish,
        release_id,
        build,
        manifest_base | declarations,
        sign=rel.manifest_signer(signer) if signer else None,
    )
    # Also when the release existed but its changelog line did not: a run killed between the
    # rename and the changelog must end like an uninterrupted one.
    counts = _change_counts(published.path)  # read once: the changelog and the UI
    if published.new or not rel.in_changelog(publish, release_id):
        entry = _changelog_entry(
            previous_root,
            previous_manifest,
            published.path,
            inputs,
            corrections_by_sha,
            counts,
        )
        rel.append_changelog(
            publish,
            {
                "release_id": release_id,
                "as_of": as_of_text,
                "method_version": method_version,
                **entry,
            },
        )
    with warehouse.connect() as con:  # the reports behind this release's events (member tier)
        if rotation:  # the rotation is recorded by its first release
            con.execute(
                "UPDATE key_rotations SET release_id = ? WHERE release_id IS NULL", [release_id]
            )
        _record_own_publications(
            con,
            release_id,
            tables["events"],
            stix.publisher_identity(who.public_key if who else None, publisher),
        )
        con.execute("DELETE FROM published_event_members WHERE release_id = ?", [release_id])
        con.execute(
            "INSERT INTO published_event_members SELECT ?, event_id, source, report_id "
            "FROM event_members WHERE event_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY ALL",
            [release_id, published_events],
        )
        bundle = write_bundle(
            con,
            settings.bundles_dir,
            release_id,
            previous if previous != release_id else None,
            registry,
            registry_dir,
            declarations,
        )
    rel.set_latest(publish, release_id)
    if target.remote:
        try:
            copied = rel.push_release(publish, target, release_id, pulled)
        except Conflict as exc:
            raise dg.Failure(f"release {release_id} was not pointed at: {exc}") from None
        context.log.info(f"copied {copied} files of {release_id} to {target.uri}")
    rows = _rows_by_product(published.files)
    signed = (published.path / rel.SIGNATURE).is_file()
    # numbers the UI plots across releases
    events_status = tables["events"].column("status").to_pylist()
    event_counts = {s: events_status.count(s) for s in EVENT_STATUSES}
    suppressed_cells = sum(1 for v in tables["indicators"].column("suppressed").to_pylist() if v)
    context.log.info(
        f"release {release_id} at {published.path} ({'new' if published.new else 'unchanged'}, "
        f"{'signed' if signed else 'unsigned: give cbm run --signing-key to sign it'})"
    )
    return dg.MaterializeResult(
        metadata={
            "release_id": release_id,
            "path": dg.MetadataValue.path(str(published.path)),
            "published_to": target.where(f"releases/{release_id}"),
            "new_release": published.new,
            "signed": signed,
            "bundle": dg.MetadataValue.path(str(bundle)),
            "as_of": as_of_text,
            "dagster/row_count": sum(rows.values()),
            **{f"rows_{p}": n for p, n in rows.items()},
            **{f"rows_{name}": t.num_rows for name, t in single.items()},
            "open_disputes": sum(
                1 for s in single["disputes"].column("status").to_pylist() if s == "open"
            ),
            "files": len(published.files),
            "submissions_by_status": dg.MetadataValue.json(statuses),
            "manifest": dg.MetadataValue.json(
                json.loads((published.path / "manifest.json").read_text())["files"][:20]
            ),
            "report": dg.MetadataValue.url(f"{settings.docs_base}/releases/{release_id}/{REPORT}"),
            "report_file": dg.MetadataValue.path(str(published.path / REPORT)),
            **{f"events_{s}": n for s, n in event_counts.items()},
            "suppressed_cells": suppressed_cells,
            "previous_release": (previous if previous != release_id else None) or "none",
            "changes_since_previous": changes_table(counts),
            **product_schemas(published.path),
        }
    )


def _record_own_publications(con, release_id: str, events, identity: str) -> None:
    """What this deployment published (table ``own_publications``): its identity, the
    release, its events (with their published fields) and their STIX ids, for the rules that
    quarantine its own release handed back in (``copy_of_own_release``,
    ``restates_own_release``). ``events``: the release's events product."""
    fields = ("category", "region", "week", "severity_band")
    rows = [(identity, "identity", *[None] * 4), (release_id, "release", *[None] * 4)]
    for e in events.select(["event_id", *fields]).to_pylist():
        rows.append((e["event_id"], "event", *(e[f] for f in fields)))
        rows.append((stix.event_object_id(e["event_id"]), "stix_event", *[None] * 4))
    columns = ("token", "what", *fields)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE new_publications AS SELECT "
        + ", ".join(f"unnest(${c}::VARCHAR[]) AS {c}" for c in columns),
        {c: [r[i] for r in rows] for i, c in enumerate(columns)},
    )
    con.execute(
        "INSERT INTO own_publications BY NAME SELECT DISTINCT * FROM new_publications "
        "WHERE token NOT IN (SELECT token FROM own_publications) ORDER BY ALL"
    )
    con.execute("DROP TABLE new_publications")


def _signer(settings: CbmSettings, registry, signing_key: SigningKeyResource):
    """The publisher's key, checked against the registry; None only where the registry names
    no publisher key, or ``settings.unsigned`` publishes unsigned on purpose."""
    signer = signing_key.key
    if signer is not None:
        problem = signing_key_problem(registry.parties, signer.public_key, signer.party)
        if problem:
            raise dg.Failure(f"the signing key {signer.path} cannot sign: {problem}")
        return signer
    who = publisher_of(registry.parties)
    if who is not None and who.public_key and not settings.unsigned:
        raise dg.Failure(
            f"the registry names the publisher's key ({who.code}) and this run has none: set "
            "CBM_SIGNING_KEY_FILE (or cbm run --signing-key), or publish unsigned on purpose "
            "(settings.unsigned, cbm run --unsigned)"
        )
    return None


def _key_rotation(con, release_context) -> dict | None:
    """The key rotation this release is the first after (``key_rotations``), for its manifest;
    a failure when verification ran before the rotation (its pseudonyms are the old key's)."""
    recorded = recorded_key(con)
    if recorded and recorded[1] != release_context.key_fingerprint:
        raise dg.Failure(
            f"verification ran with key {release_context.key_version} "
            f"({release_context.key_fingerprint}) but the warehouse's key is now {recorded[0]} "
            f"({recorded[1]}): run verify_reports (cbm run does) before publishing"
        )
    rows = con.execute(
        "SELECT from_version, from_fingerprint, to_version, to_fingerprint FROM key_rotations "
        "WHERE release_id IS NULL ORDER BY rowid"
    ).fetchall()
    if not rows:
        return None
    return {
        "from": {"version": rows[0][0], "fingerprint": rows[0][1]},
        "to": {"version": rows[-1][2], "fingerprint": rows[-1][3]},
    }


def _manifest(root: Path | None) -> dict | None:
    path = root / rel.MANIFEST if root else None
    return json.loads(path.read_text()) if path and path.is_file() else None


def _rows_by_product(files: list[dict]) -> dict[str, int]:
    """Each product's rows in a release, from its manifest's file entries."""
    return {
        p: sum(f["rows"] or 0 for f in files if f["path"].startswith(p + "/")) for p in rel.PRODUCTS
    }


def changes_table(counts: dict[str, dict[str, int]]) -> dg.TableMetadataValue:
    """What changed since the previous release, per product, at a glance (the release's
    changes/ files list it row by row)."""
    kinds = list(next(iter(counts.values())))
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"product": p, **c}) for p, c in counts.items()],
        schema=dg.TableSchema(
            columns=[dg.TableColumn("product"), *(dg.TableColumn(k, "int") for k in kinds)]
        ),
    )


def product_schemas(path) -> dict:
    """The columns of each published product with their meaning, from the release's own
    ``dictionary.json``: what a consumer reads, shown beside the release in the UI."""
    products = json.loads((path / "dictionary.json").read_text())["products"]
    return {
        f"columns_{name}": dg.TableSchema(
            columns=[
                dg.TableColumn(c["name"], c["type"], description=c["meaning"])
                for c in product["columns"]
            ]
        )
        for name, product in products.items()
    }


@dg.asset_check(
    asset=release,
    description=(
        "The release named in LATEST matches its manifest: every file present, hashes and row "
        "counts equal, nothing extra (on object storage: as a reader downloads it)."
    ),
)
def manifest_integrity(settings: CbmSettings) -> dg.AssetCheckResult:
    target = location(settings.publish)
    if not target.remote:
        current = rel.latest(target.root)
        if current is None:
            return dg.AssetCheckResult(passed=False, metadata={"problem": "no LATEST file"})
        ok, problems = rel.verify_release(target.root / "releases" / current)
    else:  # what a reader of the object storage gets: LATEST and the release it names
        with tempfile.TemporaryDirectory() as tmp:
            pulled = rel.pull_published(target, Path(tmp))
            if pulled is None:
                return dg.AssetCheckResult(passed=False, metadata={"problem": "no LATEST object"})
            current = pulled.decode().strip()
            ok, problems = rel.verify_release(Path(tmp) / "releases" / current)
    return dg.AssetCheckResult(
        passed=ok, metadata={"release_id": current, "problems": dg.MetadataValue.json(problems)}
    )
