"""Releases a consumer can authenticate offline (contract §4, §6): the publisher signs the
manifest, parties co-sign, and `cbm verify-release --keys` tells a forgery from the real one."""

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.cli import main
from tests.conftest import (
    TEST_KEY,
    Project,
    dagster_home_from,
    incident,
    write_csv,
    write_registry,
)

KEY_PARTIES = ("SECRETARIAT", "BRAVO", "CHARLIE")


def register(project, party: str, key_file) -> None:
    from cbm.signatures import new_party_key

    public = new_party_key(party, key_file)
    parties = yaml.safe_load((project.registry / "parties.yaml").read_text())
    next(p for p in parties if p["code"] == party)["public_key"] = public
    write_registry(project.registry, parties)


@pytest.fixture(scope="module")
def signed_once(tmp_path_factory, dagster_home_template):
    """One signed release, made once for the module; tests change copies of it."""
    root = tmp_path_factory.mktemp("signed")
    project = Project(root / "deployment")
    keys = {p: root / "deployment" / "keys" / f"{p.lower()}.key" for p in KEY_PARTIES}
    (root / "deployment" / "keys").mkdir()
    for party, key_file in keys.items():
        register(project, party, key_file)
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    with pytest.MonkeyPatch.context() as env:  # module scope: before the per-test environment
        env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
        env.setenv(
            "DAGSTER_HOME", str(dagster_home_from(dagster_home_template, root / "dagster_home"))
        )
        summary = project.run(signing_key=str(keys["SECRETARIAT"]))
    return project, summary


@pytest.fixture
def signed(signed_once, tmp_path):
    """A copy of the signed deployment: its project, the parties' key files, the summary."""
    original, summary = signed_once
    project = original.copy(tmp_path / "deployment")
    keys = {p: project.root / "keys" / f"{p.lower()}.key" for p in KEY_PARTIES}
    release = Path(summary["release_path"]).relative_to(original.root)
    return project, keys, summary | {"release_path": str(project.root / release)}


def verify(release, capsys, *extra) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify-release", str(release), *extra])
    return code, capsys.readouterr().out


def test_a_signed_release_verifies_with_the_registry_keys(signed, capsys):
    project, _, summary = signed
    release = summary["release_path"]
    assert summary["signed"]
    keys = str(project.registry / "parties.yaml")
    code, out = verify(release, capsys, "--keys", keys)
    assert (
        code == 0
        and "integrity, authenticity" in out
        and "signed by the publisher, SECRETARIAT" in out
    )
    code, out = verify(release, capsys)
    assert code == 0 and "NOTE: authenticity not checked" in out


def test_a_rewritten_file_and_manifest_pass_integrity_but_not_authenticity(signed, capsys):
    project, _, summary = signed
    release = summary["release_path"]
    part = sorted(Path(release).glob("indicators/*/*.parquet"))[0]
    table = pq.read_table(part)
    forged = table.set_column(
        table.schema.get_field_index("method_version"),
        "method_version",
        pa.array(["m-forged"] * table.num_rows),
    )
    pq.write_table(forged, part)
    manifest_path = Path(release) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    rel = part.relative_to(release).as_posix()
    entry = next(f for f in manifest["files"] if f["path"] == rel)
    entry["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    code, out = verify(release, capsys)
    assert code == 0  # integrity alone cannot tell
    code, out = verify(release, capsys, "--keys", str(project.registry / "parties.yaml"))
    assert code == 1 and "FAIL: manifest.json.sig does not verify with the publisher's key" in out


def test_a_missing_or_foreign_signature_fails(signed, capsys, tmp_path):
    project, keys, summary = signed
    release = Path(summary["release_path"])
    parties = str(project.registry / "parties.yaml")
    from cbm.signatures import SigningKey, manifest_context

    (release / "manifest.json.sig").write_bytes(
        SigningKey(keys["BRAVO"]).sign(
            (release / "manifest.json").read_bytes(), manifest_context(release.name)
        )
    )
    code, out = verify(release, capsys, "--keys", parties)
    assert code == 1 and "does not verify with the publisher's key (SECRETARIAT)" in out
    (release / "manifest.json.sig").unlink()
    code, out = verify(release, capsys, "--keys", parties)
    assert code == 1 and "manifest.json.sig is missing" in out


def test_co_signatures_count_only_valid_ones_by_other_registered_parties(signed, capsys, tmp_path):
    project, keys, summary = signed
    release = summary["release_path"]
    parties = str(project.registry / "parties.yaml")
    assert main(["cosign", "--key", str(keys["BRAVO"]), "--party", "BRAVO", release]) == 0
    code, out = verify(release, capsys, "--keys", parties, "--require-cosigners", "1")
    assert code == 0 and "co-signed by BRAVO" in out
    code, out = verify(release, capsys, "--keys", parties, "--require-cosigners", "2")
    assert code == 1 and "FAIL: 1 valid co-signature(s), 2 required (by BRAVO)" in out
    # a key of one party cannot co-sign as another
    capsys.readouterr()
    assert main(["cosign", "--key", str(keys["BRAVO"]), "--party", "CHARLIE", release]) == 2
    assert "is BRAVO's key, not CHARLIE's" in capsys.readouterr().err
    # a co-signature file forged under CHARLIE's name does not count, and is named
    shutil.copy(f"{release}/cosign/BRAVO.sig", f"{release}/cosign/CHARLIE.sig")
    code, out = verify(release, capsys, "--keys", parties, "--require-cosigners", "1")
    assert code == 1 and "cosign/CHARLIE.sig does not verify with CHARLIE's key" in out


def test_signatures_are_deterministic_and_a_wrong_publisher_key_is_refused(
    signed, capsys, tmp_path
):
    project, keys, summary = signed
    from pipelines.cli import run_pipeline

    again = run_pipeline(
        project.inbox,
        project.registry,
        tmp_path / "work2",
        tmp_path / "publish2",
        signing_key=str(keys["SECRETARIAT"]),
    )
    first = Path(summary["release_path"], "manifest.json.sig").read_bytes()
    second = Path(again["release_path"], "manifest.json.sig").read_bytes()
    assert again["latest_release"] == summary["latest_release"] and first == second
    capsys.readouterr()
    code = main(
        project.run_args(
            workdir=tmp_path / "w3", publish=tmp_path / "p3", signing_key=keys["BRAVO"]
        )
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and "is BRAVO's key, not the one parties.yaml registers for the publisher SECRETARIAT"
        in err
    )


def test_the_consumer_guide_checks_run_as_written(signed, tmp_path):
    """`sha256sum -c` from the manifest and the signature check in a few lines of Python."""
    import re
    import subprocess
    import sys

    project, _, summary = signed
    guide = (Path(__file__).resolve().parent.parent / "docs" / "consumer-guide.md").read_text()
    shell = re.search(r"# consumer-check: sha256sum\n(.*?)```", guide, re.S).group(1)
    shell = shell.replace("<publish>/releases/<id>", summary["release_path"])
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    python = re.search(r"# consumer-check: signature\n(.*?)```", guide, re.S).group(1)
    python = python.replace("RELEASE_DIR", summary["release_path"]).replace(
        "PARTIES_YAML", str(project.registry / "parties.yaml")
    )
    done = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "signed by SECRETARIAT", done.stderr
    # and the same check refuses a forged manifest
    manifest = Path(summary["release_path"], "manifest.json")
    text = manifest.read_text()
    assert '"schema_version": 3' in text
    manifest.write_text(text.replace('"schema_version": 3', '"schema_version": 4'))
    done = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True)
    assert done.returncode != 0 and "InvalidSignature" in done.stderr


def test_without_keys_verify_release_names_the_signatures_it_did_not_check(signed, capsys):
    project, _, summary = signed
    release = Path(summary["release_path"])
    (release / "cosign").mkdir(exist_ok=True)
    (release / "cosign" / "X.sig").write_text("junk\n")
    code, out = verify(release, capsys)
    assert code == 0
    assert "NOTE: authenticity not checked: cosign/X.sig, manifest.json.sig not verified" in out


def test_a_release_copied_under_another_releases_name_fails(signed, capsys):
    _, _, summary = signed
    release = Path(summary["release_path"])
    impostor = release.parent / "r-00000000000000000000"
    shutil.copytree(release, impostor)
    code, out = verify(impostor, capsys)
    assert code == 1
    assert f"named r-00000000000000000000 but its manifest is release {release.name}" in out
