"""A corpus of bad and hostile submissions, each with the outcome it must produce.

Small files are built here from bytes (so the corpus is reviewable as code); large ones
(a 10 MB field, 100,000-deep JSON) are built at test time. Every case names:
- ``file:<rule>``     the submission is rejected whole with that rule
- ``rows:<rule>``     at least one row is quarantined with that rule
- ``accepted``        everything is accepted (hostile-looking but valid)
"""

import io
import json

import polars as pl

HEADER = "report_id,version,tlp,confidence,summary,category,occurred_at,reported_at,time_precision,region,severity,determination"
GOOD = "{rid},1,GREEN,80,ok,border_incident,2026-03-01T10:00:00+00:00,2026-03-01T12:00:00+00:00,hour,EST,3,suspected"


def row(rid="H-1", **over) -> str:
    values = dict(zip(HEADER.split(","), GOOD.format(rid=rid).split(","), strict=True))
    values.update({k: str(v) for k, v in over.items()})
    return ",".join(values[c] for c in HEADER.split(","))


def csv(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def jsonl(*objs) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def obj(rid="J-1", **over) -> dict:
    values = dict(zip(HEADER.split(","), GOOD.format(rid=rid).split(","), strict=True))
    values.update(over)
    return values


def parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def big_field() -> bytes:
    return csv(row("BIG-1", summary="x" * 10_000_000))


def deep_json() -> bytes:
    return b'{"report_id": "DEEP-1", "summary": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"


def stix_incident(rid: str, markings=("GREEN",), **over) -> dict:
    """A STIX incident a party hands in: the report fields in our extension (cbm.stix)."""
    from cbm.stix import INCIDENT_CORE, REPORT_EXTENSION, TLP2

    uid = f"incident--{rid}"
    return {
        "type": "incident",
        "spec_version": "2.1",
        "id": uid,
        "created": "2026-03-01T12:00:00.000Z",
        "modified": "2026-03-01T12:00:00.000Z",
        "name": f"incident {rid}",
        "confidence": 80,
        "object_marking_refs": [TLP2.get(m, m) for m in markings],
        "extensions": {
            INCIDENT_CORE: {
                "extension_type": "property-extension",
                "determination": "suspected",
                "investigation_status": "open",
            },
            REPORT_EXTENSION: {
                "extension_type": "property-extension",
                "category": "border_incident",
                "occurred_at": "2026-03-01T10:00:00+00:00",
                "reported_at": "2026-03-01T12:00:00+00:00",
                "time_precision": "hour",
                "region": "EST",
                "severity": 3,
            },
        },
    } | over


def stix(*objects: dict) -> bytes:
    import uuid

    bundle_id = f"bundle--{uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(objects, sort_keys=True))}"
    return json.dumps({"type": "bundle", "id": bundle_id, "objects": list(objects)}).encode()


def huge_stix() -> bytes:
    return stix(stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd430c1", description="x" * 2_000_000))


CASES: list[tuple[str, str, object, str]] = [
    # (party, file name, bytes or a function making them, expected outcome)
    (
        "ALPHA",
        "incidents_truncated.csv",
        csv(row("T-1"), row("T-2"))[:-60],
        "rows:reported_at_required",
    ),
    (
        "ALPHA",
        "incidents_truncated.parquet",
        parquet(pl.DataFrame({"report_id": ["A"] * 50}))[:-40],
        "file:unreadable_file",
    ),
    (
        "ALPHA",
        "incidents_truncated.jsonl",
        jsonl(obj("J-1"), obj("J-2"))[:-30],
        "rows:unreadable_row",
    ),
    (
        "ALPHA",
        "incidents_semicolon.csv",
        csv(row("S-1").replace(",", ";"), header=HEADER.replace(",", ";")),
        "file:unreadable_file",
    ),
    (
        "ALPHA",
        "incidents_tabs.csv",
        csv(row("S-2").replace(",", "\t"), header=HEADER.replace(",", "\t")),
        "file:unreadable_file",
    ),
    ("ALPHA", "incidents_bom.csv", b"\xef\xbb\xbf" + csv(row("BOM-1")), "accepted"),
    (
        "ALPHA",
        "incidents_utf16.csv",
        csv(row("U16-1")).decode().encode("utf-16"),
        "file:unreadable_file",
    ),
    (
        "ALPHA",
        "incidents_latin1.csv",
        csv(row("L-1", summary="Caf\u00e9")).decode().encode("latin-1"),
        "file:unreadable_file",
    ),
    ("ALPHA", "incidents_nul.csv", csv(row("N-1", summary="a\x00b")), "file:unreadable_file"),
    ("ALPHA", "incidents_bigfield.csv", big_field, "file:over_limit"),  # limits.max_field_chars
    ("ALPHA", "incidents_lone_cr.csv", b'report_id\rversion"\n', "file:unreadable_file"),  # fuzz
    ("ALPHA", "incidents_deep.jsonl", deep_json, "rows:unreadable_row"),
    (
        "ALPHA",
        "incidents_dupheader.csv",
        csv(row("D-1"), header=HEADER.replace("summary", "severity")),
        "file:unreadable_file",
    ),
    (
        "ALPHA",
        "incidents_missingcol.csv",
        csv(",".join(row("M-1").split(",")[:-2]), header=",".join(HEADER.split(",")[:-2])),
        "rows:severity_required",
    ),
    (
        "ALPHA",
        "incidents_extracol.csv",
        csv(row("E-1") + ",surplus", header=HEADER + ",favourite_colour"),
        "accepted",
    ),
    (
        "ALPHA",
        "incidents_numbers_as_text.jsonl",
        jsonl(obj("NT-1", severity="3", confidence="80", version="1")),
        "accepted",
    ),
    (
        "ALPHA",
        "incidents_numbers_as_numbers.jsonl",
        jsonl(obj("NN-1") | {"severity": 3, "confidence": 80, "version": 1}),
        "accepted",
    ),
    (
        "ALPHA",
        "incidents_nan.jsonl",
        jsonl(obj("NAN-1", lat="NaN", lon="10")),
        "rows:lat_type_float",
    ),
    (
        "ALPHA",
        "incidents_infinity.csv",
        csv(row("INF-1") + ",Infinity,10", header=HEADER + ",lat,lon"),
        "rows:lat_type_float",
    ),
    (
        "ALPHA",
        "incidents_year9999.csv",
        csv(
            row(
                "Y9-1",
                occurred_at="9999-01-01T00:00:00+00:00",
                reported_at="9999-01-02T00:00:00+00:00",
            )
        ),
        "rows:reported_in_future",
    ),
    (
        "ALPHA",
        "incidents_year0001.csv",
        csv(
            row(
                "Y1-1",
                occurred_at="0001-01-01T00:00:00+00:00",
                reported_at="0001-01-02T00:00:00+00:00",
            )
        ),
        "rows:occurred_at_plausible",
    ),
    (
        "ALPHA",
        "incidents_no_offset.csv",
        csv(row("NO-1", occurred_at="2026-03-01T10:00:00")),
        "rows:occurred_at_type_ts",
    ),
    ("ALPHA", "incidents_pathsep.csv", csv(row("a/b/c"), row("..\\\\x")), "rows:report_id_format"),
    ("ALPHA", "incidents_dotdot.csv", csv(row("..")), "rows:report_id_dot_segments"),
    ("ALPHA", "incidents_with spaces.csv", csv(row("SP-1")), "accepted"),
    ("ALPHA", "incidents_\u65e5\u672c\u8a9e.csv", csv(row("UNI-1")), "accepted"),
    ("ALPHA", "incidents_empty.csv", b"", "file:empty_file"),
    ("ALPHA", "incidents_whitespace.csv", b"   \n\n  \n", "file:unreadable_file"),
    ("ALPHA", "incidents_headeronly.csv", csv(), "accepted"),
    (
        "ALPHA",
        "incidents_wrongschema.parquet",
        parquet(pl.DataFrame({"colour": ["red"], "size": [3]})),
        "file:unreadable_file",
    ),
    (
        "ALPHA",
        "incidents_nested.parquet",
        parquet(pl.DataFrame({"report_id": ["NP-1"], "severity": [[1, 2]]})),
        "rows:severity_type_int",
    ),
    (
        "ALPHA",
        "incidents_image.csv",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "file:unreadable_file",
    ),
    ("ALPHA", "incidents_csv_in_disguise.parquet", csv(row("CD-1")), "file:unreadable_file"),
    (
        "ALPHA",
        "incidents_array.jsonl",
        json.dumps([obj("AR-1"), obj("AR-2")]).encode() + b"\n",
        "rows:unreadable_row",
    ),
    ("ALPHA", "incidents_ragged.csv", csv(row("R-1") + ",1,2,3"), "file:unreadable_file"),
    (
        "ALPHA",
        "incidents_quoted_newline.csv",
        csv(row("QN-1", summary='"line one\nline two"')),
        "accepted",
    ),
    (
        "ALPHA",
        "incidents_injection.csv",
        csv(row("x';DROP TABLE reports_incidents;--")),
        "rows:report_id_format",
    ),
    ("ALPHA", "incidents_long_id.csv", csv(row("L" * 65)), "rows:report_id_format"),
    ("ALPHA", "incidents_negative.csv", csv(row("NEG-1", severity="-1")), "rows:severity_range"),
    (
        "ALPHA",
        "incidents_float_int.csv",
        csv(row("FI-1", severity="3.0")),
        "rows:severity_type_int",
    ),
    ("ALPHA", "incidents_exponent.csv", csv(row("EX-1", version="1e3")), "rows:version_type_int"),
    (
        "ALPHA",
        "incidents_control_chars.csv",
        csv(row("CC-1", summary="beep\x07 esc\x1b[31m red")),
        "accepted",
    ),
    (
        "ALPHA",
        "incidents_bool.jsonl",
        jsonl(obj("B-1") | {"severity": True}),
        "rows:severity_type_int",
    ),
    (
        "ALPHA",
        "incidents_null_everything.jsonl",
        jsonl({k: None for k in HEADER.split(",")}),
        "rows:report_id_required",
    ),
    ("ALPHA", ".hidden_incidents.csv", csv(row("HID-1")), "file:unknown_kind"),
    ("ALPHA", "compliance_not_a_kind.txt", b"hello", "file:unknown_format"),
    ("ZULU", "incidents_unregistered.csv", csv(row("Z-1")), "file:unregistered_party"),
    ("", "incidents_in_root.csv", csv(row("ROOT-1")), "file:outside_party_directory"),
    # STIX 2.1 bundles (contract section 7)
    (
        "ALPHA",
        "incidents_spec20.stix.json",
        stix(stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd43001", spec_version="2.0")),
        "file:unreadable_file",
    ),
    (
        "ALPHA",
        "incidents_cycle.stix.json",  # objects whose references run in a circle: not followed
        stix(
            stix_incident(
                "6ba7b810-9dad-41d1-80b4-00c04fd43002",
                created_by_ref="identity--6ba7b810-9dad-41d1-80b4-00c04fd43003",
            ),
            *(
                {
                    "type": "identity",
                    "spec_version": "2.1",
                    "id": f"identity--6ba7b810-9dad-41d1-80b4-00c04fd4300{a}",
                    "created_by_ref": f"identity--6ba7b810-9dad-41d1-80b4-00c04fd4300{b}",
                    "created": "2026-03-01T12:00:00.000Z",
                    "modified": "2026-03-01T12:00:00.000Z",
                    "name": f"identity {a}",
                }
                for a, b in ((3, 4), (4, 3))
            ),
        ),
        "accepted",
    ),
    ("ALPHA", "incidents_huge.stix.json", huge_stix, "file:over_limit"),
    (
        "ALPHA",
        "incidents_unknown_marking.stix.json",
        stix(
            stix_incident(
                "6ba7b810-9dad-41d1-80b4-00c04fd43005",
                markings=("marking-definition--6ba7b810-9dad-41d1-80b4-00c04fd43006",),
            )
        ),
        "rows:tlp_allowed_values",
    ),
    (
        "ALPHA",
        "incidents_red.stix.json",  # accepted, kept, and never published (no RED row is)
        stix(stix_incident("6ba7b810-9dad-41d1-80b4-00c04fd43007", markings=("RED",))),
        "accepted",
    ),
    ("ALPHA", "incidents_not_json.stix.json", b"{not json", "file:unreadable_file"),
]
