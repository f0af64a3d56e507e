"""Fuzz targets: each takes one generated input and raises only on a finding.

A finding is what must never happen whatever a party or an operator hands in: an exception
other than the documented rejection (``UnreadableSubmission``, ``RegistryError``, ...), rows
that do not add up, a traceback from ``cbm``. ``tests/test_fuzz.py`` runs a short slice of
every target in ``make test``; ``make fuzz`` runs many more examples (``tests/fuzz/run.py``).
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import strategies as st

from cbm.contract import FIELDS, KINDS
from cbm.readers import UnreadableSubmission, stage_rows
from cbm.registry import Limits, RegistryError, load_commitments, load_parties, load_policy
from cbm.release import verify_release
from cbm.signatures import verify_signature

LIMITS = Limits(max_rows=10_000, max_decoded_bytes=5_000_000, max_field_chars=50_000)
COLUMNS = sorted({f for kind in KINDS for f in FIELDS[kind]}) + ["Report_ID ", "extra", ""]


# ---------------------------------------------------------------- readers

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", "1", "-1", "2026-01-01T00:00:00+00:00", "nan", "GREEN", '"', "\n", ";"]
)


@st.composite
def csv_files(draw) -> bytes:
    """CSV that is mostly the contract's shape, with every kind of damage mixed in."""
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=0, max_size=8))
    rows = draw(st.lists(st.lists(text, max_size=len(header) + 2), max_size=12))
    sep = draw(st.sampled_from([",", ",", ",", ";", "\t"]))
    body = "\n".join(sep.join(r) for r in [header, *rows])
    data = body.encode(draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"])), "replace")
    if draw(st.booleans()):
        data = draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + data
    return data


@st.composite
def jsonl_files(draw) -> bytes:
    value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )
    records = draw(
        st.lists(st.dictionaries(st.sampled_from(COLUMNS) | text, value, max_size=8), max_size=10)
    )
    lines = [json.dumps(r, allow_nan=True) for r in records]
    lines += draw(
        st.lists(st.sampled_from(["", "not json", "[1,2]", "{", '"x"', "null"]), max_size=3)
    )
    order = draw(st.permutations(lines))
    return "\n".join(order).encode()


@st.composite
def parquet_files(draw) -> bytes:
    """Valid Parquet of text, numbers and nested values, then possibly truncated or flipped."""
    n = draw(st.integers(0, 20))
    columns = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5, unique=True))
    frame = pl.DataFrame(
        {
            c: draw(
                st.sampled_from(
                    [
                        pl.Series([str(i) for i in range(n)]),
                        pl.Series(list(range(n))),
                        pl.Series([float(i) / 3 for i in range(n)]),
                        pl.Series([[i] for i in range(n)]),
                        pl.Series([None] * n, dtype=pl.String),
                    ]
                )
            )
            for c in columns
        }
    )
    buf = io.BytesIO()
    frame.write_parquet(buf)
    data = bytearray(buf.getvalue())
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def stix_files(draw) -> bytes:
    """STIX bundles built from incidents and opinions, then damaged: fields dropped or
    replaced, wrong types, unknown markings and types, deep or cyclic references."""
    from cbm.stix import INCIDENT_CORE, REPORT_EXTENSION, TLP1, TLP2

    value = st.none() | st.integers() | text | st.lists(text, max_size=3)
    marking = st.sampled_from(
        [*TLP2.values(), *TLP1, "marking-definition--00000000-0000-4000-8000-000000000000", "x"]
    )
    objects = []
    for i in range(draw(st.integers(0, 5))):
        uid = f"6ba7b810-9dad-41d1-80b4-00c04fd4{i:04d}"
        kind = draw(st.sampled_from(["incident", "opinion", "malware", "identity", "bundle"]))
        obj = {
            "type": kind,
            "spec_version": draw(st.sampled_from(["2.1", "2.1", "2.0", None])),
            "id": f"{kind}--{uid}",
            "created": "2026-03-01T12:00:00.000Z",
            "modified": draw(st.sampled_from(["2026-03-01T12:00:00.000Z", "yesterday", ""])),
            "name": draw(text),
            "opinion": draw(st.sampled_from(["agree", "disagree", "neutral", "maybe"])),
            "object_refs": [f"incident--{uid}"],
            "object_marking_refs": draw(st.lists(marking, max_size=3)),
            "extensions": {
                INCIDENT_CORE: {
                    "extension_type": "property-extension",
                    "determination": draw(text),
                    "investigation_status": "open",
                },
                REPORT_EXTENSION: draw(st.dictionaries(st.sampled_from(COLUMNS), value, max_size=6))
                | {"extension_type": "property-extension"},
            },
        }
        for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=3)):
            obj[key] = draw(value)
        objects.append(obj)
    bundle = {
        "type": draw(st.sampled_from(["bundle", "bundle", "report"])),
        "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd43000",
        "objects": objects,
    }
    return json.dumps(bundle).encode()


def reader_target(fmt: str):
    def run(data: bytes) -> None:
        for kind in KINDS:
            try:
                frame, notes = stage_rows(data, fmt, kind, LIMITS)
            except UnreadableSubmission:
                continue  # rejected whole, with a reason: accounted for
            assert frame.columns == ["row_number", *FIELDS[kind], "row_error", "row_origin"]
            if fmt != "stix.json":  # only a STIX object says where it came from
                assert frame["row_origin"].null_count() == frame.height
            assert frame["row_number"].to_list() == list(range(1, frame.height + 1))
            assert all(dtype == pl.String for c, dtype in frame.schema.items() if c != "row_number")
            assert all(isinstance(n, str) for n in notes)

    return run


# ---------------------------------------------------------------- registry

yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10_000) | st.floats(allow_nan=True) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def registry_texts(draw) -> str:
    import yaml

    from cbm.generate import COMMITMENTS, POLICY, sample_parties

    which = draw(st.sampled_from(["parties", "commitments", "policy"]))
    base = {"parties": sample_parties(), "commitments": COMMITMENTS, "policy": POLICY}[which]
    doc = json.loads(json.dumps(base, default=str))
    if isinstance(doc, list) and doc:
        entry = doc[draw(st.integers(0, len(doc) - 1))]
        entry[draw(st.sampled_from(sorted(entry)))] = draw(yaml_values)
    elif isinstance(doc, dict):
        key = draw(st.sampled_from(sorted(doc) + ["limits"]))
        doc[key] = draw(yaml_values)
    text_ = yaml.safe_dump(doc, allow_unicode=True)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text_)))
        text_ = text_[:cut] + draw(st.sampled_from(["", ":", "- [", "\t", "{{"])) + text_[cut:]
    return which + "\0" + text_


def registry_target(payload: str) -> None:
    which, _, body = payload.partition("\0")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{which}.yaml"
        path.write_text(body, encoding="utf-8")
        try:
            if which == "parties":
                load_parties(path)
            elif which == "commitments":
                from cbm.generate import sample_parties

                load_commitments(path, {p["code"]: p for p in sample_parties()})
            else:
                load_policy(path)
        except RegistryError as exc:
            assert str(exc).startswith(str(path)), exc  # names the file


# ---------------------------------------------------------------- signatures

signature_inputs = st.tuples(
    st.one_of(
        st.text(max_size=60), st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
    ),
    st.binary(max_size=200),
    st.one_of(st.binary(max_size=100), st.binary(min_size=64, max_size=64)),
)


def signature_target(args) -> None:
    key, data, sig = args
    for context in ("submission of party ALPHA", None):  # the scheme, and bare bytes
        assert verify_signature(key, data, sig, context) in (True, False)


# ---------------------------------------------------------------- verify-release


@st.composite
def release_damage(draw):
    return (
        draw(
            st.sampled_from(
                ["manifest", "file", "file_rehashed", "entry", "extra", "remove", "signature"]
            )
        ),
        draw(st.binary(max_size=300)),
        draw(st.integers(0, 10_000)),
    )


def make_release(root: Path) -> Path:
    """A small real release (two Parquet products and a manifest), made once per session."""
    from cbm import release as rel

    table = pl.DataFrame({"period": ["2026-01", "2026-02"], "v": [1.0, 2.0]}).to_arrow()

    def build(tmp: Path) -> list[dict]:
        return rel.write_product(tmp, "indicators", table)

    return rel.publish_atomically(root, "r-fuzz", build, {"inputs": []}).path


def release_target(release: Path):
    import shutil

    from pipelines.cli import main

    def run(damage) -> None:
        what, blob, at = damage
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "r"
            shutil.copytree(release, copy)
            manifest = copy / "manifest.json"
            part = next(copy.rglob("*.parquet"))
            if what == "manifest":
                text_ = manifest.read_bytes()
                manifest.write_bytes(text_[: at % (len(text_) + 1)] + blob)
            elif what == "file":
                part.write_bytes(blob)
            elif what in ("file_rehashed", "entry"):  # the manifest rewritten to match
                import hashlib

                part.write_bytes(blob)
                doc = json.loads(manifest.read_text())
                entry = doc["files"][0]
                entry["sha256"] = hashlib.sha256(blob).hexdigest()
                if what == "entry":
                    entry.pop(sorted(entry)[at % len(entry)])
                manifest.write_text(json.dumps(doc))
            elif what == "extra":
                (copy / "extra.bin").write_bytes(blob)
            elif what == "remove":
                part.unlink()
            else:
                (copy / "manifest.json.sig").write_bytes(blob)
            ok, problems = verify_release(copy)
            assert isinstance(ok, bool) and all(isinstance(p, str) for p in problems)
            err = io.StringIO()
            import contextlib

            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(["verify-release", str(copy)])
            assert code in (0, 1, 2) and "Traceback" not in err.getvalue()

    return run


TARGETS = {
    "csv_reader": (csv_files(), reader_target("csv")),
    "jsonl_reader": (jsonl_files(), reader_target("jsonl")),
    "parquet_reader": (parquet_files(), reader_target("parquet")),
    "stix_reader": (stix_files(), reader_target("stix.json")),
    "raw_bytes_reader": (
        st.binary(max_size=2_000),
        lambda d: [reader_target(f)(d) for f in ("csv", "jsonl", "parquet")],
    ),
    "registry_loader": (registry_texts(), registry_target),
    "signature_check": (signature_inputs, signature_target),
}
