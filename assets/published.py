"""Published: disclosure control, then a deterministic, atomic release (contract §4, §5)."""

import json
import tempfile
import threading
from pathlib import Path

import dagster as dg

from assets.metadata import declared_schema, row_count
from assets.resources import CbmSettings, RegistryResource, SigningKeyResource
from assets.stages import PUBLICATION, WAREHOUSE_POOL, stage
from cbm import release as rel
from cbm import stix
from cbm.publication import ReleaseHeld, ReleaseProducts, build_release, rows_by_product
from cbm.registry import publisher as publisher_of
from cbm.registry import signing_key_problem
from cbm.report import EVENT_STATUSES, REPORT
from cbm.storage import Conflict, location
from warehouse.bundle import write_bundle
from warehouse.db import (
    ReleaseContext,
    fetch_arrow,
    indicator_catalogue,
    read_release_context,
    recorded_key,
    sql_file,
    thread_cursor,
)
from warehouse.queries import query
from warehouse.resource import WarehouseResource

PUBLISHED = stage("published", PUBLICATION)


RELEASE_DESCRIPTION = (
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
    "its publisher identity, release id, event ids, their STIX ids and the submissions its "
    "member bundle carries in `own_publications`, so the release or the bundle handed back in "
    "is quarantined as a copy (both assets written with it). Before it is signed and made "
    "LATEST the release is checked: signed whenever the registry names the publisher's key "
    "(unsigned only on purpose, `unsigned`); made after any key rotation's verification; and "
    "compared with the previous release: when it removes or revises more than policy.yaml "
    "`release_guard` allows, it is built unsigned under the workdir's `held/` folder and the "
    "run fails naming the products, until accepted on purpose (`accept_change`, recorded in "
    "the manifest). "
    "The member bundle of the release (the rows and registry it was derived from, for "
    "`cbm rederive`) is written to the workdir's `bundles/RELEASE_ID/`: a file of report rows per "
    "submission, a file whose rows did not change since the previous bundle kept from it "
    "(hard-linked; the bytes a full write gives)."
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "release",
            deps=[
                "indicator_values",
                "incident_clusters",
                "compliance_verdicts",
                "calendar_entries",
                "disputes",
                "release_context",
                "submissions",
                "party_directory",
                "key_rotations",
            ],
            **PUBLISHED,
            kinds={"parquet"},
            description=RELEASE_DESCRIPTION,
        ),
        dg.AssetSpec(
            "published_event_members",
            deps=["release", "event_members"],
            metadata=declared_schema("published_event_members"),
            description=(
                "The reports behind each release's events (member tier: release, event, source, "
                "report id), written with the release: what names an event's successor in the "
                "next release, and part of the member bundle."
            ),
            **PUBLISHED,
            kinds={"duckdb"},
        ),
        dg.AssetSpec(
            "own_publications",
            deps=["release"],
            metadata=declared_schema("own_publications"),
            description=(
                "What this deployment published: its publisher identity, each release id, its "
                "events with their published fields, their STIX ids, and the submissions its "
                "member bundles carried. The rules copy_of_own_release and "
                "restates_own_release read it to quarantine a release handed back in as "
                "evidence; restates_other_party to quarantine a member bundle's reports handed "
                "back in, even in a signed file."
            ),
            **PUBLISHED,
            kinds={"duckdb"},
        ),
    ],
    pool=WAREHOUSE_POOL,
)
def release(
    context: dg.AssetExecutionContext,
    settings: CbmSettings,
    registry: RegistryResource,
    signing_key: SigningKeyResource,
    warehouse: WarehouseResource,
):
    registry_dir, registry = Path(registry.directory), registry.registry
    rederiving = json.loads(settings.rederiving) if settings.rederiving is not None else None
    signer = None if rederiving is not None else _signer(settings, registry, signing_key)
    # a publish location on object storage is served from a local mirror (cbm.release)
    target = location(settings.publish)
    publish = settings.publish_dir
    pulled = rel.pull_published(target, publish) if target.remote else None
    with warehouse.connect() as con:
        context_row = read_release_context(con)
        rotation = _key_rotation(con, context_row) if rederiving is None else None
        products, statuses = _gather_products(con, registry, publish, context_row)
    # what the manifest declares beyond the figures (a re-derivation: what the bundle says)
    declarations = rederiving if rederiving is not None else {}
    if rederiving is None and rotation:
        declarations["key_rotation"] = rotation
    if rederiving is None and settings.unsigned and not signer:
        declarations["unsigned"] = "on purpose (--unsigned)"
    release_id = products.release_id
    with warehouse.connect() as con:
        # the member bundle is written on a thread of its own while the release's files are
        # (M35): it reads only the warehouse, they only the products gathered above
        beside = _Beside(
            con,
            lambda cursor, final: write_bundle(
                cursor,
                settings.bundles_dir,
                release_id,
                products.previous,
                registry,
                registry_dir,
                final,
            ),
        )
        try:
            built = build_release(
                publish,
                settings.held_dir,
                products,
                declarations,
                signer=signer,
                guard=rederiving is None,
                accept_change=settings.accept_change,
                before_publishing=beside.start,
            )
        except ReleaseHeld as exc:  # held before the bundle starts: there is none
            raise dg.Failure(str(exc)) from None
        finally:
            beside.join()
        bundle = beside.result()
        members, own = _record_publication(con, products, rotation)
    rel.set_latest(publish, release_id)
    if target.remote:
        try:
            copied = rel.push_release(publish, target, release_id, pulled)
        except Conflict as exc:
            raise dg.Failure(f"release {release_id} was not pointed at: {exc}") from None
        context.log.info(f"copied {copied} files of {release_id} to {target.uri}")
    metadata = _release_metadata(settings, products, built, target, statuses)
    context.log.info(
        f"release {release_id} at {built.path} ({'new' if built.new else 'unchanged'}, "
        f"{'signed' if metadata['signed'] else 'unsigned: give cbm run --signing-key to sign it'})"
    )
    yield dg.MaterializeResult(
        asset_key="release", metadata=metadata | {"bundle": dg.MetadataValue.path(str(bundle))}
    )
    yield dg.MaterializeResult(asset_key="published_event_members", metadata=members)
    yield dg.MaterializeResult(asset_key="own_publications", metadata=own)


class _Beside:
    """``write(cursor, declarations)`` on a thread of its own, from ``start`` on, over its own
    cursor of ``con`` (``thread_cursor``)."""

    def __init__(self, con, write):
        self._con, self._write = con, write
        self._thread: threading.Thread | None = None
        self._outcome: tuple[bool, object] | None = None

    def start(self, declarations: dict) -> None:
        cursor = thread_cursor(self._con)

        def run() -> None:
            try:
                self._outcome = (True, self._write(cursor, declarations))
            except BaseException as exc:  # handed to the caller of result()
                self._outcome = (False, exc)
            finally:
                cursor.close()

        self._thread = threading.Thread(target=run, name="cbm-member-bundle", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for it (also when the release failed: nothing is left writing)."""
        if self._thread is not None:
            self._thread.join()

    def result(self):
        """What ``write`` returned (None if it never started); its exception, raised here."""
        if self._outcome is None:
            return None
        done, value = self._outcome
        if not done:
            raise value
        return value


def _gather_products(
    con, registry, publish: Path, context: ReleaseContext
) -> tuple[ReleaseProducts, dict[str, int]]:
    """The release's products from the warehouse, its id (chained to LATEST), and the
    submissions by status (for the UI)."""
    method_version, inputs = context.method_version, context.inputs
    content_id = rel.release_id_for(
        inputs,
        method_version,
        context.as_of.isoformat(),
        f"{context.key_version}/{context.key_fingerprint}",
        context.registry_digest,
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
    k = {"k": registry.policy.small_cell_k}
    tables = {
        "indicators": fetch_arrow(con, sql_file("published_indicators"), params | k),
        "compliance": fetch_arrow(con, sql_file("published_compliance"), params),
        "events": fetch_arrow(con, sql_file("published_events"), params),
    }
    single = {  # one file each (calendar/, disputes/)
        name: fetch_arrow(con, sql_file(f"published_{name}"), params) for name in rel.TABLES
    }
    statuses = dict(con.execute(query("submissions.by_status")).fetchall())
    previous = chain["release_id"] if chain else None
    published = {"previous": previous, "published": tables["events"].column("event_id").to_pylist()}
    successors = (
        dict(con.execute(sql_file("event_successors"), published).fetchall())
        if previous and previous != release_id
        else {}
    )
    # reports that supersede an earlier version, per submission (corrections)
    corrections = dict(con.execute(query("published.corrections")).fetchall())
    products = ReleaseProducts(
        release_id=release_id,
        content_id=content_id,
        chain=chain,
        method_version=method_version,
        as_of=context.as_of,
        key_version=context.key_version,
        key_fingerprint=context.key_fingerprint,
        inputs=inputs,
        tables=tables,
        single=single,
        successors=successors,
        corrections=corrections,
        catalogue=indicator_catalogue(),
        policy=registry.policy,
        publisher=publisher_of(registry.parties),
    )
    return products, statuses


def _release_metadata(settings, products: ReleaseProducts, built, target, statuses) -> dict:
    """What the UI shows beside the release, and the numbers it plots across releases."""
    release_id, tables, single = products.release_id, products.tables, products.single
    manifest = json.loads((built.path / "manifest.json").read_text())
    rows = rows_by_product(built.files)
    events_status = tables["events"].column("status").to_pylist()
    event_counts = {s: events_status.count(s) for s in EVENT_STATUSES}
    suppressed_cells = sum(1 for v in tables["indicators"].column("suppressed").to_pylist() if v)
    return {
        "release_id": release_id,
        "path": dg.MetadataValue.path(str(built.path)),
        "published_to": target.where(f"releases/{release_id}"),
        "new_release": built.new,
        "signed": (built.path / rel.SIGNATURE).is_file(),
        "as_of": products.as_of.isoformat(),
        "dagster/row_count": sum(rows.values()),
        **{f"rows_{p}": n for p, n in rows.items()},
        **{f"rows_{name}": t.num_rows for name, t in single.items()},
        "open_disputes": sum(
            1 for s in single["disputes"].column("status").to_pylist() if s == "open"
        ),
        "files": len(built.files),
        "submissions_by_status": dg.MetadataValue.json(statuses),
        "manifest": dg.MetadataValue.json(manifest["files"][:20]),
        "report": dg.MetadataValue.url(f"{settings.docs_base}/releases/{release_id}/{REPORT}"),
        "report_file": dg.MetadataValue.path(str(built.path / REPORT)),
        **{f"events_{s}": n for s, n in event_counts.items()},
        "suppressed_cells": suppressed_cells,
        # as the release's own manifest names it: a run that only signs it again, or finds it
        # published, shows the release its changes/ are against, not "none"
        "previous_release": (manifest.get("previous_release") or {}).get("release_id") or "none",
        "changes_since_previous": changes_table(built.counts),
        **product_schemas(built.path),
    }


def _record_publication(con, products: ReleaseProducts, rotation) -> tuple[dict, dict]:
    """What the warehouse keeps of a published release: the key rotation it first follows,
    what this deployment published (own_publications), the reports behind its events
    (published_event_members). The two assets' metadata."""
    release_id, events = products.release_id, products.tables["events"]
    if rotation:  # the rotation is recorded by its first release
        con.execute(query("published.rotation_recorded"), [release_id])
    identity = stix.publisher_identity(products.publisher_key, products.publisher_label)
    _record_own_publications(con, release_id, events, identity)
    _record_event_members(con, release_id, events)
    members = {
        "dagster/row_count": row_count(con, "published_event_members"),
        "rows_of_this_release": con.execute(
            query("published.members_of_release"), [release_id]
        ).fetchone()[0],
    }
    return members, {"dagster/row_count": row_count(con, "own_publications")}


def _record_event_members(con, release_id: str, events) -> None:
    """The reports behind this release's events (``published_event_members``, member tier):
    what names an event's successor in the next release."""
    con.execute(query("published.forget_event_members"), [release_id])
    con.execute(
        query("published.record_event_members"),
        {"release_id": release_id, "events": events.column("event_id").to_pylist()},
    )


def _record_own_publications(con, release_id: str, events, identity: str) -> None:
    """What this deployment published (table ``own_publications``): its identity, the
    release, its events (with their published fields) and their STIX ids, for the rules that
    quarantine its own release handed back in (``copy_of_own_release``,
    ``restates_own_release``), and the submissions its member bundle carries
    (``restates_other_party``). ``events``: the release's events product."""
    fields = ("category", "region", "week", "severity_band")
    rows = [(identity, "identity", *[None] * 4), (release_id, "release", *[None] * 4)]
    for e in events.select(["event_id", *fields]).to_pylist():
        rows.append((e["event_id"], "event", *(e[f] for f in fields)))
        rows.append((stix.event_object_id(e["event_id"]), "stix_event", *[None] * 4))
    columns = ("token", "what", *fields)
    con.execute(
        query("published.record_own_publications"),
        {c: [r[i] for r in rows] for i, c in enumerate(columns)},
    )
    con.execute(query("published.record_bundled_submissions"))


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
    rows = con.execute(query("published.pending_rotations")).fetchall()
    if not rows:
        return None
    return {
        "from": {"version": rows[0][0], "fingerprint": rows[0][1]},
        "to": {"version": rows[-1][2], "fingerprint": rows[-1][3]},
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
    asset="release",
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


# Written outside any run, by `cbm rotate-key` (warehouse/rotation.py); the release that
# first follows a rotation declares it in its manifest and records its own id beside it.
key_rotations = dg.AssetSpec(
    "key_rotations",
    description=(
        "Each rotation of the pseudonymisation key: from and to (version and fingerprint), "
        "when, and the release that first followed it. Rows are added only by `cbm rotate-key`, "
        "which re-pseudonymises the warehouse; the next release declares the rotation in its "
        "manifest (`key_rotation`)."
    ),
    **PUBLISHED,
    kinds={"duckdb"},
    metadata=declared_schema("key_rotations"),
)
