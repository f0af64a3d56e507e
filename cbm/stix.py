"""STIX 2.1 in and out (contract §7; docs/interoperability.md).

In: a party's ``incidents_*.stix.json`` or ``attestations_*.stix.json`` is a STIX 2.1 bundle.
It is checked with the OASIS validator (``stix2-validator``) and then mapped, object by
object, to the kind's contract rows (as text, like every reader): ``incident`` objects to
incident reports, ``opinion`` objects to attestations. What the mapping cannot place is
named in the submission's warnings; a field it cannot fill stays empty and the kind's suite
quarantines the row with its reason. TLP comes from the TLP 2.0 (or 1.0) marking
definitions; the most restrictive wins; an unknown marking is kept as the row's ``tlp`` so
the suite names it.

Out: a release's published events and verdicts as one bundle (``release_bundle``): ids are
UUIDv5 from stable keys, timestamps come from the release, keys are sorted: the same release
gives the same bytes. Nothing goes out that the Parquet products do not publish.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime

from cbm import jsontext

# pinned from oasis-open/cti-stix-common-objects (docs/interoperability.md names the commits)
INCIDENT_CORE = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2 = {  # TLP 2.0 marking-definition ids, by level
    "CLEAR": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "GREEN": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "AMBER": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "AMBER+STRICT": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "RED": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP1 = {  # the STIX 2.1 specification's TLP 1.0 markings, mapped to TLP 2.0 (WHITE = CLEAR)
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "CLEAR",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "GREEN",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "AMBER",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "RED",
}
TLP_ORDER = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
TLP2_CREATED = "2022-10-01T00:00:00.000Z"

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://cbm-verify.invalid/stix")


def deterministic_v4(name: str) -> uuid.UUID:
    """A UUID of version 4 form (the version and variant bits STIX 2.1 asks of an SDO's id,
    which ``stix2_validator --strict`` checks) whose other 122 bits are those of the UUIDv5
    of ``name``: the same name, the same id, so the same release gives the same bytes."""
    return uuid.UUID(bytes=uuid.uuid5(NAMESPACE, name).bytes, version=4)


# our extension definitions: fixed ids, so every release names the same ones. The report
# extension is what parties write into their bundles: its id stays the UUIDv5 it was
REPORT_EXTENSION = f"extension-definition--{uuid.uuid5(NAMESPACE, 'extension:report')}"
EVENT_EXTENSION = f"extension-definition--{deterministic_v4('extension:event')}"
VERDICT_EXTENSION = f"extension-definition--{deterministic_v4('extension:verdict')}"
VERDICT_TYPE = "x-cbm-verdict"
SCHEMAS = {  # shipped in every release under stix/schemas/ (cbm/stix_schemas/)
    EVENT_EXTENSION: "cbm-event.json",
    VERDICT_EXTENSION: "cbm-verdict.json",
    REPORT_EXTENSION: "cbm-report.json",
}
EXTENSION_VERSION = "1.0.0"
# the events product's columns: the cbm event extension carries each (and the MISP feed)
EVENT_COLUMNS = (
    "event_id",
    "period",
    "category",
    "region",
    "week",
    "severity_band",
    "status",
    "n_sources_bucket",
    "alleged",
    "method_version",
    "release_id",
)
BUNDLE = "stix/bundle.json"
IGNORED_CODES = "103"  # {103} "not a UUIDv4": our ids are UUIDv5 on purpose (determinism)

STANCES = {
    "strongly-agree": "corroborates",
    "agree": "corroborates",
    "neutral": "cannot_assess",
    "disagree": "contradicts",
    "strongly-disagree": "contradicts",
}
DETERMINATIONS = {  # incident-core determination -> contract determination
    "suspected": "suspected",
    "false-positive": "false_positive",
    "successful-attempt": "confirmed",
    "failed-attempt": "confirmed",
    "blocked": "confirmed",
    "low-value": "confirmed",
}
BAND_SEVERITY = {"low": "2", "medium": "3", "high": "4"}  # an exported event's band, read back
# incident-core (and STIX incident) properties the contract has no field for: named in the
# submission's warnings when a bundle uses them, never kept (docs/interoperability.md)
NOT_KEPT = (
    "investigation_status",
    "incident_types",
    "detection_methods",
    "criticality",
    "recoverability",
    "scores",
    "blocked",
    "malicious",
    "impact_refs",
    "event_refs",
    "task_refs",
    "sighting_refs",
    "other_object_refs",
    "kill_chain_phases",
)
CONTEXT_TYPES = {"identity", "marking-definition", "extension-definition", "report", "relationship"}
ROW_TYPES = {"incidents": "incident", "attestations": "opinion"}


class StixError(ValueError):
    """The bundle is not STIX 2.1 this pipeline can read; the message says why."""


def _uuid(kind: str, key: str) -> str:
    return f"{kind}--{deterministic_v4(f'{kind}:{key}')}"


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ------------------------------------------------------------------------------------ in


def validate(doc: dict, text: str) -> list[str]:
    """Reject what is not a STIX 2.1 bundle (raises StixError with the validator's first
    findings); return the validator's warnings worth telling the party."""
    if not isinstance(doc, dict) or doc.get("type") != "bundle":
        raise StixError("not a STIX bundle: the top level must be an object with type 'bundle'")
    objects = doc.get("objects")
    if not isinstance(objects, list) or not objects:
        raise StixError("the bundle has no objects")
    wrong = [
        o.get("id", "?")
        for o in objects
        if not isinstance(o, dict) or o.get("spec_version") != "2.1"
    ]
    wrong = [w for w in wrong if not str(w).startswith("marking-definition--") or w not in TLP1]
    if wrong:
        raise StixError(
            f"not STIX 2.1: spec_version is not '2.1' on {wrong[0]} ({len(wrong)} objects)"
        )
    from stix2validator import ValidationOptions, validate_string
    from stix2validator.errors import ValidationError

    try:
        result = validate_string(text, ValidationOptions(version="2.1", disabled=IGNORED_CODES))
    except ValidationError as exc:
        raise StixError(f"not valid STIX 2.1: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the validator on hostile input: said, not raised
        raise StixError(
            f"not valid STIX 2.1: the OASIS validator could not read it "
            f"({exc.__class__.__name__}: {str(exc)[:200]})"
        ) from None
    if not result.is_valid:
        errors = list(dict.fromkeys(_brief(str(e)) for e in result.errors))
        raise StixError(
            f"not valid STIX 2.1 (OASIS validator, {len(result.errors)} findings): "
            + "; ".join(errors[:3])
            + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
        )
    return [str(w) for w in result.warnings][:3]


_PATTERN = re.compile(r"'\^[^']*\$'")


def _brief(finding: str) -> str:
    """A validator finding without the regular expressions it quotes whole (the id pattern
    alone is 90 characters, repeated in every finding)."""
    return _PATTERN.sub("the STIX pattern", finding)


def _tlp(obj: dict, notes: dict) -> str | None:
    levels = []
    refs = obj.get("object_marking_refs")
    for ref in refs if isinstance(refs, list) else []:
        tlp2 = {v: k for k, v in TLP2.items()}.get(ref)
        if tlp2:
            levels.append(tlp2)
        elif ref in TLP1:
            levels.append(TLP1[ref])
            notes["TLP 1.0 markings read as TLP 2.0 (WHITE as CLEAR)"] = True
        else:
            return f"unknown marking {ref}"  # kept: the suite quarantines it, naming it
    return max(levels, key=TLP_ORDER.index) if levels else None


def _version(obj: dict) -> str | None:
    """A STIX object's version: its ``modified`` time in whole seconds since 1970, so a later
    modification supersedes an earlier one as a higher contract version does."""
    try:
        modified = datetime.fromisoformat(str(obj.get("modified")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return str(max(1, int(modified.timestamp())))


def week_monday(week: str) -> date | None:
    """The Monday of an ISO week 'YYYY-Www' (None for anything else)."""
    try:
        year, number = week.split("-W")
        return date.fromisocalendar(int(year), int(number), 1)
    except (ValueError, AttributeError):
        return None


def _week_start(week: str) -> str | None:
    monday = week_monday(week)
    return f"{monday.isoformat()}T00:00:00+00:00" if monday else None


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def _lookup(table: dict, value) -> str | None:
    """A vocabulary value mapped to the contract's; anything else kept as text for the suite."""
    return table.get(value, value) if isinstance(value, str) else _text(value)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def row_origin(obj: dict) -> str | None:
    """What a STIX object says of where it came from, as space-separated tokens: its id, its
    creator's identity (``created_by_ref``) and, for an event of a cbm-verify release, that
    release's id and the event's id. The suites compare them with this deployment's own
    publications (table ``own_publications``): its own release handed back in is a copy."""
    event = _dict(_dict(obj.get("extensions")).get(EVENT_EXTENSION))
    tokens = [
        obj.get("id"),
        obj.get("created_by_ref"),
        event.get("release_id"),
        event.get("event_id"),
    ]
    found = sorted({t for t in tokens if isinstance(t, str) and t and " " not in t})
    return " ".join(found) or None


def event_object_id(event_id: str) -> str:
    """The STIX id of a release's event (the same in every release that publishes it)."""
    return _uuid("incident", event_id)


def publisher_identity(publisher_key: str | None, publisher_label: str) -> str:
    """The STIX identity of a deployment's publisher: named after its public key (its label
    where it has none), so two secretariats never share one and each knows its own."""
    return _uuid("identity", f"publisher:{publisher_key or publisher_label}")


def _incident_row(obj: dict, notes: dict, not_kept: set[str]) -> dict:
    ext = _dict(obj.get("extensions"))
    core = _dict(ext.get(INCIDENT_CORE))
    mine = _dict(ext.get(REPORT_EXTENSION))
    event = _dict(ext.get(EVENT_EXTENSION))
    if event and not mine:  # a cbm-verify release's event, handed in again
        notes[
            "events of a cbm-verify release read back: occurred_at is the Monday of their week"
        ] = True
        mine = {
            "category": event.get("category"),
            "region": event.get("region"),
            "occurred_at": _week_start(str(event.get("week"))),
            "time_precision": "day",
            "severity": _lookup(BAND_SEVERITY, event.get("severity_band")),
            "alleged_party": event.get("alleged"),
        }
        if obj.get("confidence") is None:  # a release states no confidence; STIX's "medium"
            notes["events without a confidence read as 50"] = True
            obj = obj | {"confidence": 50}
    if not mine:
        notes[
            f"incident objects without the cbm report extension ({REPORT_EXTENSION}): category, region, time and severity are empty"
        ] = True
    for field in NOT_KEPT:
        if core.get(field) not in (None, [], {}) or obj.get(field) not in (None, [], {}):
            not_kept.add(field)
    summary = obj.get("description")
    if summary is None and obj.get("name") is not None:
        notes["incident names read as the summary where there is no description"] = True
        summary = obj.get("name")
    first_seen = core.get("first_seen")
    if not mine.get("occurred_at") and first_seen:
        notes["incident-core first_seen read as occurred_at"] = True
    determination = core.get("determination")
    return {
        "row_origin": row_origin(obj),
        "report_id": _text(obj.get("id")),
        "version": _version(obj),
        "tlp": _tlp(obj, notes),
        "confidence": _text(obj.get("confidence")),
        "summary": _text(summary),
        "category": _text(mine.get("category")),
        "occurred_at": _text(mine.get("occurred_at") or first_seen),
        "reported_at": _text(mine.get("reported_at") or obj.get("created")),
        "time_precision": _text(mine.get("time_precision")),
        "region": _text(mine.get("region")),
        "lat": _text(mine.get("lat")),
        "lon": _text(mine.get("lon")),
        "sector": _text(mine.get("sector")),
        "severity": _text(mine.get("severity")),
        "determination": _lookup(DETERMINATIONS, determination),
        "alleged_party": _text(mine.get("alleged_party")),
        "technical_keys": _text(mine.get("technical_keys")),
    }


def _opinion_rows(obj: dict, notes: dict) -> list[dict]:
    mine = _dict(_dict(obj.get("extensions")).get(REPORT_EXTENSION))
    refs = obj.get("object_refs") if isinstance(obj.get("object_refs"), list) else []
    targets = [mine["subject_report_id"]] if mine.get("subject_report_id") else refs
    rows = []
    for i, ref in enumerate(targets, 1):
        # an opinion on anything but an incident names that thing's STIX type as its kind,
        # which the suite quarantines (an attestation names a report of the three kinds)
        kind = mine.get("subject_kind") or (
            "incidents" if str(ref).startswith("incident--") else str(ref).partition("--")[0]
        )
        rows.append(
            {
                "row_origin": row_origin(obj),
                "report_id": _text(obj.get("id")) if len(targets) == 1 else f"{obj.get('id')}.{i}",
                "version": _version(obj),
                "tlp": _tlp(obj, notes),
                "confidence": _text(obj.get("confidence")),
                "summary": _text(obj.get("explanation")),
                "subject_party": _text(mine.get("subject_party")),
                "subject_kind": kind,
                "subject_report_id": _text(ref),
                "stance": _lookup(STANCES, obj.get("opinion")),
                "method": _text(mine.get("method")),
                "observed_at": _text(mine.get("observed_at") or obj.get("created")),
            }
        )
    return rows


def read_bundle(data: str, kind: str) -> tuple[list[dict], list[str]]:
    """The contract rows (text) of a STIX bundle handed in as ``kind``, and the notes."""
    if kind not in ROW_TYPES:
        raise StixError(
            f"{kind} reports have no STIX form: hand them in as CSV, JSON Lines or Parquet"
        )
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise StixError(f"not JSON: {exc.__class__.__name__}: {exc}") from None
    warnings = validate(doc, data)
    notes: dict[str, bool] = {}
    not_kept: set[str] = set()  # incident properties met that have no place in the contract
    rows: list[dict] = []
    skipped: dict[str, int] = {}
    copies = _declared_duplicates(doc["objects"]) if kind == "incidents" else {}
    for obj in doc["objects"]:
        kind_of_obj = _text(obj.get("type"))
        if kind_of_obj == ROW_TYPES[kind] and obj.get("id") in copies:
            continue  # one incident, told twice: read once, as the one it duplicates
        if kind_of_obj == ROW_TYPES[kind]:
            rows += (
                [_incident_row(obj, notes, not_kept)]
                if kind == "incidents"
                else _opinion_rows(obj, notes)
            )
        elif kind_of_obj not in CONTEXT_TYPES:
            skipped[kind_of_obj] = skipped.get(kind_of_obj, 0) + 1
    if skipped:
        listed = ", ".join(f"{n} {t}" for t, n in sorted(skipped.items()))
        notes[f"objects of types an {kind} file does not use were ignored: {listed}"] = True
    if copies:
        shown = ", ".join(f"{c} (of {o})" for c, o in sorted(copies.items())[:3])
        more = f" and {len(copies) - 3} more" if len(copies) > 3 else ""
        notes[
            f"{len(copies)} incident(s) the bundle declares duplicates (duplicate-of) read once, "
            f"as the incident they duplicate: {shown}{more}"
        ] = True
    if not_kept:
        notes[
            "incident properties with no place in the contract, not kept: "
            + ", ".join(sorted(not_kept))
        ] = True
    if not rows:
        raise StixError(
            f"the bundle holds no {ROW_TYPES[kind]} object: each row of an {kind} file is one"
        )
    return rows, [*notes, *(f"STIX validator: {w}" for w in warnings)]


def _declared_duplicates(objects: list) -> dict[str, str]:
    """The incidents of a bundle that a ``duplicate-of`` relationship declares the same as
    another incident of the bundle: duplicate id -> the id it is read as. Chains are followed
    to their end; of a cycle, the smallest id is kept."""
    incidents = {
        o.get("id") for o in objects if isinstance(o, dict) and o.get("type") == "incident"
    }
    of: dict[str, str] = {}
    for o in objects:
        if (
            isinstance(o, dict)
            and o.get("type") == "relationship"
            and o.get("relationship_type") == "duplicate-of"
            and o.get("source_ref") in incidents
            and o.get("target_ref") in incidents
            and o.get("source_ref") != o.get("target_ref")
        ):
            of.setdefault(o["source_ref"], o["target_ref"])
    copies = {}
    for start in sorted(of):
        seen, node = [start], of[start]
        while node in of and node not in seen:
            seen.append(node)
            node = of[node]
        if node in seen:  # a cycle: its smallest id stands for it
            node = min(seen[seen.index(node) :])
        if node != start:
            copies[start] = node
    return copies


# ----------------------------------------------------------------------------------- out


def _marking(level: str) -> dict:
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": TLP2[level],
        "created": TLP2_CREATED,
        "name": f"TLP:{level}",
        "extensions": {
            TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level.lower()}
        },
    }


def _extension_definition(
    ext_id: str, name: str, description: str, types: list[str], created: str, identity: str
) -> dict:
    return {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": ext_id,
        "created": created,
        "modified": created,
        "created_by_ref": identity,
        "name": name,
        "description": description,
        "schema": f"stix/schemas/{SCHEMAS[ext_id]} in the release folder (JSON Schema)",
        "version": EXTENSION_VERSION,
        "extension_types": types,
        "object_marking_refs": [TLP2["CLEAR"]],
    }


def release_bundle(
    events: list[dict],
    verdicts: list[dict],
    release_id: str,
    as_of: datetime,
    method_version: str,
    publisher_label: str,
    publisher_key: str | None = None,
) -> bytes:
    """The release's events and verdicts as one STIX 2.1 bundle (rows as the Parquet
    products publish them)."""
    stamp = _stamp(as_of)
    epoch = "2026-01-01T00:00:00.000Z"  # our extension definitions' creation (fixed)
    identity = publisher_identity(publisher_key, publisher_label)
    green = [TLP2["GREEN"]]
    objects: list[dict] = [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": identity,
            "created": epoch,
            "modified": epoch,
            "name": publisher_label,
            "identity_class": "organization",
            "object_marking_refs": [TLP2["CLEAR"]],
        },
        _marking("CLEAR"),
        _marking("GREEN"),
        _extension_definition(
            EVENT_EXTENSION,
            "cbm-verify event",
            "A cbm-verify event (incident cluster): its verification status, week and method.",
            ["property-extension"],
            epoch,
            identity,
        ),
        _extension_definition(
            VERDICT_EXTENSION,
            "cbm-verify verdict",
            "A compliance verdict for one commitment occurrence (x-cbm-verdict).",
            ["new-sdo"],
            epoch,
            identity,
        ),
    ]
    refs = []
    for e in sorted(events, key=lambda r: r["event_id"]):
        monday = week_monday(e["week"])
        created = f"{monday.isoformat()}T00:00:00.000Z" if monday else stamp
        obj = {
            "type": "incident",
            "spec_version": "2.1",
            "id": event_object_id(e["event_id"]),
            "created": min(created, stamp),
            "modified": stamp,
            "created_by_ref": identity,
            "name": f"{e['category']} in {e['region']}, {e['week']} ({e['event_id']})",
            "object_marking_refs": green,
            "extensions": {
                INCIDENT_CORE: {
                    "extension_type": "property-extension",
                    "determination": "suspected",
                    "investigation_status": "closed"
                    if e["status"] in ("definitive", "expired")
                    else "open",
                },
                EVENT_EXTENSION: {
                    "extension_type": "property-extension",
                    **{k: e[k] for k in EVENT_COLUMNS},
                },
            },
        }
        objects.append(obj)
        refs.append(obj["id"])
    for v in sorted(verdicts, key=lambda r: (r["period"], r["subject"], r["commitment_id"])):
        first = f"{v['period']}-01T00:00:00.000Z"
        obj = {
            "type": VERDICT_TYPE,
            "spec_version": "2.1",
            "id": _uuid(VERDICT_TYPE, f"{v['period']}|{v['subject']}|{v['commitment_id']}"),
            "created": min(first, stamp),
            "modified": stamp,
            "created_by_ref": identity,
            "object_marking_refs": green,
            **{
                k: v[k]
                for k in (
                    "subject",
                    "commitment_id",
                    "period",
                    "verdict",
                    "status",
                    "method_version",
                    "release_id",
                )
            },
            "extensions": {VERDICT_EXTENSION: {"extension_type": "new-sdo"}},
        }
        objects.append(obj)
        refs.append(obj["id"])
    objects.append(
        {
            "type": "report",
            "spec_version": "2.1",
            "id": _uuid("report", release_id),
            "created": stamp,
            "modified": stamp,
            "created_by_ref": identity,
            "name": f"cbm-verify release {release_id}",
            "description": f"Events and compliance verdicts of release {release_id} (method {method_version}).",
            "published": stamp,
            "report_types": ["threat-report"],
            "object_refs": refs or [identity],
            "object_marking_refs": green,
        }
    )
    bundle = {"type": "bundle", "id": _uuid("bundle", release_id), "objects": objects}
    return (jsontext.dumps(bundle, ensure_ascii=False) + "\n").encode()


def schema_files() -> dict[str, bytes]:
    """The JSON schemas of our extensions, as shipped in every release (stix/schemas/)."""
    from pathlib import Path

    folder = Path(__file__).with_name("stix_schemas")
    return {name: (folder / name).read_bytes() for name in sorted(SCHEMAS.values())}
