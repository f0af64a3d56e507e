"""A release built from its products: a plain function of the domain (contract §4, §7).

``build_release`` takes what a release is made of (``ReleaseProducts``: the product tables,
the previous release's successors, the method, the as-of time, the publisher) and writes the
release folder: the products and their ``changes/`` against the previous release, the
calendar, the dictionary, STIX and the MISP feed, the report, the manifest (signed when a
signer is given) and the changelog line. It reads nothing but its arguments and the
previous release's folder, and imports no Dagster: the ``release`` asset gathers the
products from the warehouse, calls it and records metadata; tests call it directly.

Before it signs, the release guard compares it with the previous release: a release that
removes or revises more than ``policy.release_guard`` allows is built unsigned under
``held_dir`` and ``ReleaseHeld`` says why, unless the change is accepted on purpose.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cbm import misp, stix
from cbm import release as rel
from cbm.calendar import calendar_ics
from cbm.changes import count_changes, product_changes
from cbm.dictionary import release_dictionary
from cbm.guard import guard_findings, inputs_line
from cbm.registry import RULES_VERSION
from cbm.report import REPORT, build_report
from cbm.signatures import SCHEME as SIGNATURE_SCHEME
from cbm.signatures import key_fingerprint

DEFAULT_PUBLISHER = "cbm-verify secretariat"


@dataclass(frozen=True)
class ReleaseProducts:
    """What one release is made of.

    ``tables``: the products partitioned by period (``rel.PRODUCTS``); ``single``: the ones
    published as one file each (``rel.TABLES``); ``chain``: the release this one follows, as
    its manifest names it (None: the first); ``successors``: the previous release's events and
    the events that succeed them here; ``corrections``: reports superseding an earlier version,
    per submission; ``catalogue``: the indicators' definitions, for the dictionary;
    ``publisher``: the registry's secretariat (None: none registered)."""

    release_id: str
    content_id: str
    chain: dict | None
    method_version: str
    as_of: datetime
    key_version: str
    key_fingerprint: str
    inputs: list[str]
    tables: dict[str, pa.Table]
    single: dict[str, pa.Table]
    successors: dict[str, str]
    corrections: dict[str, int]
    catalogue: list
    policy: object  # cbm.registry.Policy: .raw for the manifest, .release_guard
    publisher: object | None = None  # cbm.registry.Party

    @property
    def previous(self) -> str | None:
        """The release this one follows, if any and not itself (a run publishing it again)."""
        previous = self.chain["release_id"] if self.chain else None
        return previous if previous != self.release_id else None

    @property
    def publisher_label(self) -> str:
        who = self.publisher
        return (who.public_label if who else None) or DEFAULT_PUBLISHER

    @property
    def publisher_key(self) -> str | None:
        return self.publisher.public_key if self.publisher is not None else None


class ReleaseHeld(Exception):
    """The release guard held the release: built unsigned under ``held``, not LATEST."""

    def __init__(self, message: str, held: Path):
        super().__init__(message)
        self.held = held


@dataclass
class BuiltRelease:
    """A published release: its folder, whether this call wrote it, its manifest entries,
    the changes per product (as its changes/ files count them) and what its manifest
    declares beyond the figures."""

    path: Path
    new: bool
    files: list[dict]
    counts: dict[str, dict[str, int]]
    declarations: dict = field(default_factory=dict)


def build_release(
    publish: Path,
    held_dir: Path,
    products: ReleaseProducts,
    declarations: dict,
    signer=None,
    guard: bool = True,
    accept_change: str | None = None,
    before_publishing=None,
) -> BuiltRelease:
    """Write ``products`` as release ``products.release_id`` under ``publish`` (atomically;
    the folder exists whole or not at all) and add its changelog line.

    ``declarations``: what the manifest says beyond the figures (a key rotation, "unsigned on
    purpose", a re-derivation's declarations). ``signer``: the publisher's key (None:
    unsigned). ``guard``: compare with the previous release first (a re-derivation does not:
    it reproduces a release that was published). ``accept_change``: the reason a held change
    is published anyway, recorded in the manifest. ``before_publishing``: called with the
    manifest's final declarations once the release is to be published (not held), before its
    files are written (the release asset starts the member bundle there)."""
    p = products
    declarations = dict(declarations)
    previous_root = publish / "releases" / p.previous if p.previous else None
    with duckdb.connect() as con:  # one for the three products
        changes = {
            product: product_changes(
                product, table, previous_root, p.successors if product == "events" else None, con
            )
            for product, table in p.tables.items()
        }
    base = _manifest_base(p)
    before = read_manifest(previous_root)
    findings = (
        guard_findings(
            {product: count_changes(t) for product, t in changes.items()},
            rows_by_product(before["files"] if before else []),
            p.policy.release_guard,
        )
        if guard and before and not (publish / "releases" / p.release_id / rel.MANIFEST).exists()
        else []
    )

    def build(root: Path) -> list[dict]:
        return write_release_files(root, p, changes)

    if findings and not accept_change:
        held = rel.publish_atomically(
            held_dir, p.release_id, build, base | declarations | {"held": findings}
        )
        raise ReleaseHeld(
            f"release {p.release_id} held, not signed and not LATEST: "
            + "; ".join(findings)
            + f"; {inputs_line(before['inputs'], p.inputs)}. Built at {held.path}. "
            "If the change is meant (a new policy, a correction), publish it with "
            "'cbm run ... --accept-change REASON' (recorded in the manifest); if not, fix the "
            "registry, key or inbox and run again (docs/reliability-and-security.md)",
            held.path,
        )
    if findings:
        declarations["accepted_change"] = {"reason": accept_change, "findings": findings}
    if before_publishing is not None:
        before_publishing(dict(declarations))
    published = rel.publish_atomically(
        publish,
        p.release_id,
        build,
        base | declarations,
        sign=rel.manifest_signer(signer) if signer else None,
    )
    # Also when the release existed but its changelog line did not: a run killed between the
    # rename and the changelog must end like an uninterrupted one.
    counts = change_counts(published.path)  # read once: the changelog and the UI
    if published.new or not rel.in_changelog(publish, p.release_id):
        entry = changelog_entry(
            previous_root, before, published.path, p.inputs, p.corrections, counts
        )
        rel.append_changelog(
            publish,
            {
                "release_id": p.release_id,
                "as_of": p.as_of.isoformat(),
                "method_version": p.method_version,
                **entry,
            },
        )
    return BuiltRelease(published.path, published.new, published.files, counts, declarations)


def write_release_files(root: Path, p: ReleaseProducts, changes: dict[str, pa.Table]) -> list[dict]:
    """Every file of the release but its manifest, in ``root``; their manifest entries. The
    Parquet files are written on a thread of their own while the text files (mostly Python)
    are made: pyarrow writes without holding the interpreter (M53). The manifest sorts the
    entries, so their order is not the bytes'."""
    with ThreadPoolExecutor(1, thread_name_prefix="cbm-release-parquet") as pool:
        parquet = pool.submit(_write_parquet_files, root, p, changes)
        entries = _write_text_files(root, p)
        entries = parquet.result() + entries
    # the report reads the files just written: the release's own, nothing else
    report = build_report(root, p.release_id, p.as_of.isoformat(), p.method_version, p.previous)
    return entries + [rel.write_file(root, REPORT, report)]


def _write_parquet_files(
    root: Path, p: ReleaseProducts, changes: dict[str, pa.Table]
) -> list[dict]:
    """The release's Parquet files: the products by period, ``changes/`` and the tables."""
    entries = [
        entry
        for product, table in p.tables.items()
        for entry in rel.write_product(root, product, table)
    ]
    entries += [rel.write_table(root, f"changes/{name}.parquet", t) for name, t in changes.items()]
    entries += [rel.write_table(root, path, p.single[name]) for name, path in rel.TABLES.items()]
    return entries


def _write_text_files(root: Path, p: ReleaseProducts) -> list[dict]:
    """The calendar, the data dictionary, the STIX bundle with its schemas, the MISP feed."""
    tables, single = p.tables, p.single
    entries = []
    calendar = calendar_ics(single["calendar"], p.as_of, p.release_id)
    entries.append(rel.write_file(root, rel.CALENDAR_ICS, calendar))
    dictionary = release_dictionary(p.catalogue, tables | single, p.policy.raw)
    entries.append(rel.write_file(root, "dictionary.json", dictionary))
    # STIX 2.1 and a MISP feed of the same events and verdicts (contract section 7)
    events, verdicts = tables["events"].to_pylist(), tables["compliance"].to_pylist()
    bundle = stix.release_bundle(
        events,
        verdicts,
        p.release_id,
        p.as_of,
        p.method_version,
        p.publisher_label,
        p.publisher_key,
    )
    entries.append(rel.write_file(root, stix.BUNDLE, bundle))
    entries += [
        rel.write_file(root, f"stix/schemas/{name}", data)
        for name, data in stix.schema_files().items()
    ]
    entries += [
        rel.write_file(root, f"misp/{name}", data)
        for name, data in misp.feed_files(events, p.as_of, p.publisher_label).items()
    ]
    return entries


def _manifest_base(p: ReleaseProducts) -> dict:
    """The manifest's fields beyond the files and the declarations."""
    return {
        # whose key verifies manifest.json.sig, and where a reader gets it (not from here)
        "publisher_key": {
            "sha256": key_fingerprint(p.publisher_key),
            "from": "the registry's parties.yaml: public_key of the party of class "
            "secretariat, obtained from the secretariat outside this release; compare its "
            "SHA-256 with this one",
        }
        if p.publisher_key
        else None,
        "content_id": p.content_id,
        "previous_release": p.chain,
        "signature_scheme": SIGNATURE_SCHEME,
        "method_version": p.method_version,
        "rules_version": RULES_VERSION,
        "as_of": p.as_of.isoformat(),
        "policy": p.policy.raw,
        "pseudonym_key_version": p.key_version,
        "pseudonym_key_fingerprint": p.key_fingerprint,
        "inputs": p.inputs,
    }


def change_counts(release: Path) -> dict[str, dict[str, int]]:
    """Rows added, removed, revised (and so on) per product, read from the release's changes/."""
    return {
        p: count_changes(pq.read_table(release / "changes" / f"{p}.parquet")) for p in rel.PRODUCTS
    }


def changelog_entry(
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


def read_manifest(root: Path | None) -> dict | None:
    """A release folder's manifest (None: no folder, or no manifest in it)."""
    path = root / rel.MANIFEST if root else None
    return json.loads(path.read_text()) if path and path.is_file() else None


def rows_by_product(files: list[dict]) -> dict[str, int]:
    """Each product's rows in a release, from its manifest's file entries."""
    return {
        p: sum(f["rows"] or 0 for f in files if f["path"].startswith(p + "/")) for p in rel.PRODUCTS
    }
