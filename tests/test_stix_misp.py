"""STIX 2.1 in and out, and the MISP feed: checked with the real tools (the OASIS validator,
JSON Schema for our extensions, PyMISP), and a round trip through a second deployment."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import duckdb
import jsonschema
import pytest
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_file

from cbm import stix
from cbm.misp import feed_files
from cbm.readers import UnreadableSubmission, stage_rows
from tests.conftest import Project, attestation, incident, write_csv
from tests.hostile.corpus import stix as bundle_of
from tests.hostile.corpus import stix_incident

EVENT_COLUMNS = "category, region, week, severity_band, alleged"  # what a round trip must give back


def _release(project: Project) -> Path:
    return project.publish / "releases" / (project.publish / "LATEST").read_text().strip()


def _products(release: Path, product: str) -> list[dict]:
    return (
        duckdb.sql(
            f"SELECT * FROM read_parquet('{release}/{product}/*/*.parquet', hive_partitioning=true)"
        )
        .pl()
        .to_dicts()
    )


@pytest.fixture(scope="module")
def release(generated_run) -> Path:
    project, _ = generated_run
    return _release(project)


def test_the_bundle_passes_the_oasis_validator_strictly(release):
    # --strict, no check disabled: ids are version-4 in form yet deterministic (the bits of a
    # UUIDv5 of a stable key), so the same release still gives the same bytes
    result = validate_file(
        str(release / stix.BUNDLE), ValidationOptions(version="2.1", strict=True)
    )
    errors = [str(e) for r in result.object_results for e in r.errors]
    warnings = [str(w) for r in result.object_results for w in r.warnings]
    assert result.is_valid and not errors and not warnings, (errors + warnings)[:5]


def test_extensions_match_their_shipped_schemas(release):
    doc = json.loads((release / stix.BUNDLE).read_text())
    schemas = {
        ext: json.loads((release / "stix" / "schemas" / name).read_text())
        for ext, name in stix.SCHEMAS.items()
    }
    kinds = Counter()
    for obj in doc["objects"]:
        if obj["type"] == "incident":
            jsonschema.validate(
                obj["extensions"][stix.EVENT_EXTENSION], schemas[stix.EVENT_EXTENSION]
            )
            kinds["incident"] += 1
        elif obj["type"] == stix.VERDICT_TYPE:
            jsonschema.validate(obj, schemas[stix.VERDICT_EXTENSION])
            kinds["verdict"] += 1
    assert kinds["incident"] and kinds["verdict"]
    with pytest.raises(jsonschema.ValidationError):  # the schemas can fail
        bad = next(o for o in doc["objects"] if o["type"] == "incident")
        jsonschema.validate(
            bad["extensions"][stix.EVENT_EXTENSION] | {"status": "rumoured"},
            schemas[stix.EVENT_EXTENSION],
        )


def test_the_bundle_says_what_the_parquet_says_and_no_more(release):
    doc = json.loads((release / stix.BUNDLE).read_text())
    events = {e["event_id"]: e for e in _products(release, "events")}
    verdicts = _products(release, "compliance")
    incidents = [o for o in doc["objects"] if o["type"] == "incident"]
    assert sorted(o["extensions"][stix.EVENT_EXTENSION]["event_id"] for o in incidents) == sorted(
        events
    )
    for o in incidents:
        ext = dict(o["extensions"][stix.EVENT_EXTENSION])
        del ext["extension_type"]
        assert ext == events[ext["event_id"]]  # every value is the events product's
        assert o["object_marking_refs"] == [stix.TLP2["GREEN"]]
    assert len([o for o in doc["objects"] if o["type"] == stix.VERDICT_TYPE]) == len(verdicts)
    (report,) = [o for o in doc["objects"] if o["type"] == "report"]
    manifest = json.loads((release / "manifest.json").read_text())
    assert report["published"] == stix._stamp(datetime.fromisoformat(manifest["as_of"]))
    # rebuilt from the published Parquet alone: the same bytes
    again = stix.release_bundle(
        list(events.values()),
        verdicts,
        release.name,
        datetime.fromisoformat(manifest["as_of"]),
        manifest["method_version"],
        next(o for o in doc["objects"] if o["type"] == "identity")["name"],
    )
    assert again == (release / stix.BUNDLE).read_bytes()


def test_the_misp_feed_loads_in_pymisp_and_matches_the_events(release):
    folder = release / "misp"
    manifest = json.loads((folder / "manifest.json").read_text())
    events = {e["event_id"]: e for e in _products(release, "events")}
    files = sorted(p for p in folder.glob("*.json") if p.name != "manifest.json")
    assert sorted(p.stem for p in files) == sorted(manifest) and len(files) == len(events)
    hashes = set()
    for path in files:
        event = MISPEvent()
        event.load_file(str(path))
        values = {a.comment: a.value for a in event.attributes}
        source = events[values["event_id"]]
        week_start = values.pop("week_start")  # typed: a date MISP filters and correlates
        assert {k: str(source[k]) for k in values} == values
        assert week_start.date().isoformat() == event.date.isoformat()
        assert week_start.strftime("%G-W%V") == source["week"]
        assert event.uuid == path.stem and manifest[event.uuid]["info"] == event.info
        assert "tlp:green" in [t.name for t in event.tags]
        raw = json.loads(path.read_text())["Event"]["Attribute"]  # the values as written
        hashes |= {(hashlib.md5(a["value"].encode()).hexdigest(), event.uuid) for a in raw}
    with (folder / "hashes.csv").open() as fh:
        assert {tuple(r) for r in csv.reader(fh)} == hashes
    # derived, not random: the same events give the same files
    manifest_json = json.loads((release / "manifest.json").read_text())
    again = feed_files(
        list(events.values()),
        datetime.fromisoformat(manifest_json["as_of"]),
        json.loads((folder / files[0].name).read_text())["Event"]["Orgc"]["name"],
    )
    assert all(again[p.name] == p.read_bytes() for p in [*files, folder / "manifest.json"])


def test_misp_stix_exports_the_feed_to_stix_keeping_name_time_status_date_and_tlp(release):
    """What a MISP user's own tool makes of the feed (misp-stix, MISP's STIX exporter, pinned):
    every event a STIX 2.1 report with its name, the release's time, the status label, the
    TLP:GREEN marking, and each column and the week's date as MISP attributes."""
    from misp_stix_converter import MISPtoSTIX21Parser

    manifest = json.loads((release / "manifest.json").read_text())
    as_of = datetime.fromisoformat(manifest["as_of"])
    events = {e["event_id"]: e for e in _products(release, "events")}
    files = sorted(p for p in (release / "misp").glob("*.json") if p.name != "manifest.json")
    for path in files[:40]:
        feed_event = json.loads(path.read_text())
        parser = MISPtoSTIX21Parser()
        parser.parse_misp_event(feed_event)
        objects = json.loads(parser.bundle.serialize())["objects"]
        (report,) = [o for o in objects if o["type"] == "report"]
        attributes = {
            o["x_misp_comment"]: (o["x_misp_type"], o["x_misp_value"])
            for o in objects
            if o["type"] == "x-misp-attribute"
        }
        source = events[attributes["event_id"][1]]
        assert report["name"] == feed_event["Event"]["info"]
        assert datetime.fromisoformat(report["published"]) == as_of
        assert f'cbm-verify:status="{source["status"]}"' in report["labels"]
        markings = {o["id"]: o for o in objects if o["type"] == "marking-definition"}
        assert [markings[m]["name"] for m in report["object_marking_refs"]] == ["TLP:GREEN"]
        kind, value = attributes.pop("week_start")
        assert (
            kind == "datetime"
            and datetime.fromisoformat(value).strftime("%G-W%V") == source["week"]
        )
        assert {k: v for k, (_, v) in attributes.items()} == {k: str(source[k]) for k in attributes}


# ------------------------------------------------------------------------ STIX in


def _incident(n: int, **ext):
    item = stix_incident(f"6ba7b810-9dad-41d1-80b4-00c04fd4{n:04d}")
    item["extensions"][stix.REPORT_EXTENSION].update(ext)
    return item


def test_incidents_map_from_stix_with_their_markings():
    tlp1_amber = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
    bare = _incident(4)
    del bare["extensions"][stix.REPORT_EXTENSION]
    data = bundle_of(
        _incident(1, alleged_party="ALPHA", technical_keys="198.51.100.7"),
        _incident(2) | {"object_marking_refs": [stix.TLP2["GREEN"], tlp1_amber]},
        {k: v for k, v in _incident(3).items() if k != "object_marking_refs"},
        bare,
        {
            "type": "malware",
            "spec_version": "2.1",
            "id": "malware--6ba7b810-9dad-41d1-80b4-00c04fd40009",
            "created": "2026-03-01T12:00:00.000Z",
            "modified": "2026-03-01T12:00:00.000Z",
            "name": "x",
            "is_family": False,
        },
    )
    frame, notes = stage_rows(data, "stix.json", "incidents")
    rows = {r["report_id"][-4:]: r for r in frame.to_dicts()}
    one = rows["0001"]
    assert (one["category"], one["region"], one["severity"], one["tlp"]) == (
        "border_incident",
        "EST",
        "3",
        "GREEN",
    )
    assert one["alleged_party"] == "ALPHA" and one["technical_keys"] == "198.51.100.7"
    assert one["version"] == "1772366400"  # modified, in seconds: a later one supersedes
    assert one["determination"] == "suspected"
    assert rows["0002"]["tlp"] == "AMBER"  # the most restrictive wins; TLP 1.0 mapped
    assert rows["0003"]["tlp"] is None  # no marking: quarantined, not guessed
    assert rows["0004"]["category"] is None
    joined = " | ".join(notes)
    assert "TLP 1.0 markings read as TLP 2.0" in joined
    assert "1 malware" in joined and "without the cbm report extension" in joined


def test_opinions_become_attestations():
    opinions = [
        {
            "type": "opinion",
            "spec_version": "2.1",
            "id": f"opinion--6ba7b810-9dad-41d1-80b4-00c04fd4100{i}",
            "created": "2026-03-03T09:00:00.000Z",
            "modified": "2026-03-03T09:00:00.000Z",
            "opinion": stance,
            "object_refs": ["incident--6ba7b810-9dad-41d1-80b4-00c04fd40001"],
            "object_marking_refs": [stix.TLP2["CLEAR"]],
            "confidence": 70,
            "extensions": {
                stix.REPORT_EXTENSION: {
                    "extension_type": "property-extension",
                    "subject_party": "BRAVO",
                    "method": "technical_sensor",
                }
            },
        }
        for i, stance in enumerate(("agree", "strongly-disagree", "neutral"))
    ]
    frame, _ = stage_rows(bundle_of(*opinions), "stix.json", "attestations")
    got = [(r["stance"], r["subject_kind"], r["subject_party"], r["tlp"]) for r in frame.to_dicts()]
    assert got == [
        ("corroborates", "incidents", "BRAVO", "CLEAR"),
        ("contradicts", "incidents", "BRAVO", "CLEAR"),
        ("cannot_assess", "incidents", "BRAVO", "CLEAR"),
    ]


@pytest.mark.parametrize(
    ("data", "kind", "reason"),
    [
        (
            b'{"type": "bundle", "id": "bundle--x", "objects": [{"a": 1}]}',
            "incidents",
            "not STIX 2.1",
        ),
        (bundle_of(_incident(5) | {"created": "yesterday"}), "incidents", "OASIS validator"),
        (bundle_of(_incident(6)), "compliance", "compliance reports have no STIX form"),
        (
            bundle_of(_incident(7)),
            "attestations",
            "holds no opinion object: each row of an attestations file is one",
        ),
        (b"[1, 2]", "incidents", "not a STIX bundle"),
        # findings said briefly: no regular expression quoted whole, a count of the rest
        (
            bundle_of(*[_incident(i) | {"id": f"incident--bad{i}"} for i in range(5)]),
            "incidents",
            "and 2 more",
        ),
    ],
)
def test_a_bundle_that_is_not_stix_is_rejected_whole_with_the_reason(data, kind, reason):
    with pytest.raises(UnreadableSubmission) as err:
        stage_rows(data, "stix.json", kind)
    assert reason in str(err.value)
    assert "[0-9a-fA-F]" not in str(err.value)


def test_stix_submissions_flow_like_any_other(project):
    """Landed, validated by the same suites, accounted for; a row the mapping could not fill
    is quarantined with its reason."""
    bare = _incident(8)
    del bare["extensions"][stix.REPORT_EXTENSION]["category"]
    (project.inbox / "INTLORG").mkdir()
    (project.inbox / "INTLORG" / "incidents_feed.stix.json").write_bytes(
        bundle_of(_incident(9, alleged_party="Alphaland"), bare)
    )
    project.run(ingest_only=True)
    (row,) = project.query(
        "SELECT status, rows_read, rows_accepted, rows_quarantined FROM submissions"
    )
    assert row == ("partial", 2, 1, 1)
    assert project.query("SELECT rule FROM quarantine") == [("category_required",)]
    # a public label is read as the party it names
    assert project.query("SELECT alleged_party FROM reports_incidents") == [("ALPHA",)]


def test_a_release_handed_in_as_stix_gives_back_the_same_events(tmp_path):
    """Round trip: a release's bundle, handed in by a new party of a second deployment,
    gives events of the same category, region, week, severity band and alleged party."""
    first = Project(tmp_path / "first")
    rows = [
        incident(
            "R-1",
            region="EST",
            occurred_at="2026-03-02T10:00:00+00:00",
            reported_at="2026-03-02T12:00:00+00:00",
            severity=5,
        ),
        incident(
            "R-2",
            region="LVA",
            occurred_at="2026-03-10T10:00:00+00:00",
            reported_at="2026-03-10T12:00:00+00:00",
            severity=2,
            alleged_party="BRAVO",
        ),
        incident(
            "R-3",
            region="POL",
            occurred_at="2026-03-18T10:00:00+00:00",
            reported_at="2026-03-18T12:00:00+00:00",
            severity=3,
            category="airspace_violation",
            alleged_party="unknown",
        ),
    ]
    write_csv(first.inbox / "CHARLIE" / "incidents_a.csv", rows)
    write_csv(
        first.inbox / "DELTA" / "incidents_b.csv",
        [r | {"report_id": r["report_id"] + "D"} for r in rows],
    )
    write_csv(
        first.inbox / "ACADEMY" / "attestations_a.csv",
        [
            attestation(
                "A-1", subject_party="CHARLIE", subject_kind="incidents", subject_report_id="R-1"
            )
        ],
    )
    first.run(as_of="2026-05-01T00:00:00+00:00")
    exported = _release(first)

    def events(release):
        return sorted(
            duckdb.sql(
                f"SELECT {EVENT_COLUMNS} FROM read_parquet('{release}/events/*/*.parquet', "
                "hive_partitioning=true)"
            ).fetchall()
        )

    second = Project(tmp_path / "second")
    (second.inbox / "INTLORG").mkdir(parents=True)
    (second.inbox / "INTLORG" / "incidents_release.stix.json").write_bytes(
        (exported / stix.BUNDLE).read_bytes()
    )
    second.run(as_of="2026-05-01T00:00:00+00:00")
    (status,) = second.query("SELECT status, rows_quarantined FROM submissions")
    assert status == ("accepted", 0)

    assert events(exported) == events(_release(second))
    assert len(events(exported)) == 3


def test_incident_core_properties_map_or_are_named_and_a_declared_duplicate_is_read_once():
    """What incident-core says that the contract holds maps (a name as the summary, first_seen
    as the time it began); what it does not hold is named in the warnings; an incident the
    bundle declares a duplicate of another (duplicate-of) is one report, not two sources."""

    def core(n: int, **fields) -> dict:
        item = _incident(n)
        item["extensions"][stix.INCIDENT_CORE] |= fields
        return item

    original = core(1, incident_types=["denial-of-service"], detection_methods=["human-review"])
    copy = core(2)
    early = core(3, first_seen="2026-02-27T08:00:00.000Z")
    del early["extensions"][stix.REPORT_EXTENSION]["occurred_at"]
    described = _incident(4) | {"description": "seen from the ridge"}

    def duplicate(source: dict, target: dict, n: int) -> dict:
        return {
            "type": "relationship",
            "spec_version": "2.1",
            "id": f"relationship--6ba7b810-9dad-41d1-80b4-00c04fd4200{n}",
            "created": "2026-03-01T12:00:00.000Z",
            "modified": "2026-03-01T12:00:00.000Z",
            "relationship_type": "duplicate-of",
            "source_ref": source["id"],
            "target_ref": target["id"],
        }

    data = bundle_of(original, copy, early, described, duplicate(copy, original, 1))
    frame, notes = stage_rows(data, "stix.json", "incidents")
    rows = {r["report_id"]: r for r in frame.to_dicts()}
    assert set(rows) == {original["id"], early["id"], described["id"]}
    assert rows[original["id"]]["summary"] == original["name"]
    assert rows[described["id"]]["summary"] == "seen from the ridge"
    assert rows[early["id"]]["occurred_at"] == "2026-02-27T08:00:00.000Z"
    joined = " | ".join(notes)
    assert (
        f"1 incident(s) the bundle declares duplicates (duplicate-of) read once, as the "
        f"incident they duplicate: {copy['id']} (of {original['id']})" in joined
    )
    assert "not kept: detection_methods, incident_types, investigation_status" in joined, joined
    assert "first_seen read as occurred_at" in joined


def test_duplicate_chains_and_cycles_keep_one_incident_each():
    a, b, c, d, e = (f"incident--{x}" for x in "abcde")
    objects = [{"type": "incident", "id": i} for i in (a, b, c, d, e)] + [
        {
            "type": "relationship",
            "relationship_type": "duplicate-of",
            "source_ref": s,
            "target_ref": t,
        }
        for s, t in ((a, b), (b, c), (d, e), (e, d), (c, "incident--elsewhere"))
    ]
    # a -> b -> c (c's target is not in the bundle: c stands); d <-> e: the smaller stands
    assert stix._declared_duplicates(objects) == {a: c, b: c, e: d}


def test_misp_stix_cannot_import_stix_incidents_so_the_docs_send_misp_users_to_the_feed(release):
    """docs/interoperability.md says misp-stix reads none of the bundle's incidents; when a
    misp-stix version can, this fails and that paragraph must change."""
    from misp_stix_converter import ExternalSTIX2toMISPParser
    from stix2.parsing import parse

    parser = ExternalSTIX2toMISPParser()
    parser.load_stix_bundle(
        parse(json.loads((release / stix.BUNDLE).read_text()), allow_custom=True)
    )
    parser.parse_stix_bundle()
    events = parser.misp_events if isinstance(parser.misp_events, list) else [parser.misp_event]
    assert not any(e.objects or e.attributes for e in events)
    errors = [m for messages in parser.errors.values() for m in messages]
    assert "Unable to load STIX object type: incident" in errors
