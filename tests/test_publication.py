"""The release is built by a plain function of the domain (``cbm.publication``): products in,
files and manifest out, without Dagster (#37)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Rebuild a published release from its own products, in a process that must not load Dagster.
# The products are read back from the release's Parquet (each partition's rows, the period
# column put back where the dictionary says it was); the rest from its manifest and registry.
REBUILD = r"""
import json, sys
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cbm import release as rel
from cbm.publication import ReleaseHeld, ReleaseProducts, build_release
from cbm.registry import load_registry, publisher
from warehouse.db import indicator_catalogue

original, registry_dir, out, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
manifest = json.loads((original / rel.MANIFEST).read_text())

def product(name):
    parts = []
    for path in sorted((original / name).glob("period=*/part-0.parquet")):
        table = pq.read_table(path)
        period = path.parent.name.removeprefix("period=")
        parts.append(table.add_column(1, "period", pa.array([period] * table.num_rows, pa.string())))
    return pa.concat_tables(parts)

tables = {name: product(name) for name in rel.PRODUCTS}
if mode == "shrink":  # half the events gone: more than the release guard allows
    tables["events"] = tables["events"].slice(0, tables["events"].num_rows // 2)
single = {name: pq.read_table(original / path) for name, path in rel.TABLES.items()}
registry = load_registry(registry_dir)
base = {"files", "release_id", "schema_version", "publisher_key", "content_id", "previous_release",
        "signature_scheme", "method_version", "rules_version", "as_of", "policy",
        "pseudonym_key_version", "pseudonym_key_fingerprint", "inputs"}
products = ReleaseProducts(
    release_id=manifest["release_id"] if mode == "same" else "r-00000000000000000001",
    content_id=manifest["content_id"],
    chain=manifest["previous_release"] if mode == "same" else {
        "release_id": manifest["release_id"], "manifest_sha256": "x"},
    method_version=manifest["method_version"],
    as_of=datetime.fromisoformat(manifest["as_of"]),
    key_version=manifest["pseudonym_key_version"],
    key_fingerprint=manifest["pseudonym_key_fingerprint"],
    inputs=manifest["inputs"],
    tables=tables,
    single=single,
    successors={},
    corrections={},
    catalogue=indicator_catalogue(),
    policy=registry.policy,
    publisher=publisher(registry.parties),
)
declarations = {k: v for k, v in manifest.items() if k not in base}
calls = []  # what the release asset starts the member bundle from, and when
def before(final):
    calls.append([final, (out / "releases" / products.release_id).exists()])
try:
    built = build_release(
        out, out / "held", products, declarations, accept_change=None, before_publishing=before
    )
    result = {"path": str(built.path), "new": built.new, "counts": built.counts}
except ReleaseHeld as exc:
    result = {"held": str(exc.held), "message": str(exc)}
result["before_publishing"] = calls
result["declarations"] = declarations
result["dagster_loaded"] = any(m == "dagster" or m.startswith("dagster.") for m in sys.modules)
print(json.dumps(result))
"""


def rebuild(original: Path, registry: Path, out: Path, mode: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", REBUILD, str(original), str(registry), str(out), mode],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_domain_rebuilds_the_pipelines_release_byte_for_byte_without_dagster(
    generated_run, tmp_path
):
    from cbm import release as rel

    deployment, summary = generated_run
    original = Path(summary["release_path"])
    built = rebuild(original, deployment.registry, tmp_path / "publish", "same")
    assert built["dagster_loaded"] is False and built["new"] is True
    # told once, before the release's folder existed, with the manifest's declarations
    assert built["before_publishing"] == [[built["declarations"], False]]
    made = Path(built["path"])
    assert made.name == original.name
    theirs = {p.relative_to(original): p for p in original.rglob("*") if p.is_file()}
    ours = {p.relative_to(made): p for p in made.rglob("*") if p.is_file()}
    assert set(ours) == set(theirs) - {Path(rel.SIGNATURE)}  # no signer given: unsigned
    different = [str(p) for p in ours if ours[p].read_bytes() != theirs[p].read_bytes()]
    assert different == []
    assert rel.verify_release(made) == (True, [])
    (line,) = (tmp_path / "publish" / "CHANGELOG.jsonl").read_text().splitlines()
    assert json.loads(line)["release_id"] == original.name


def test_the_release_guard_holds_a_mass_removal_before_anything_is_signed(generated_run, tmp_path):
    deployment, summary = generated_run
    original = Path(summary["release_path"])
    publish = tmp_path / "publish"
    (publish / "releases").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(original), str(publish / "releases")], check=True)
    held = rebuild(original, deployment.registry, publish, "shrink")
    assert held["dagster_loaded"] is False
    assert held["before_publishing"] == []  # a held release: no member bundle is started
    assert "held, not signed and not LATEST" in held["message"] and "events" in held["message"]
    assert Path(held["held"]) == publish / "held" / "releases" / "r-00000000000000000001"
    assert (Path(held["held"]) / "manifest.json").is_file()
    assert not (Path(held["held"]) / "manifest.json.sig").exists()
    assert not (publish / "releases" / "r-00000000000000000001").exists()
