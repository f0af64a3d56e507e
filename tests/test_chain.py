"""Signatures that mean one thing and a release chain that shows a fork (issue #36; the
consumer guide, "What a signature covers" and "The chain")."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cbm import release as rel
from cbm.files import sha256_file
from cbm.signatures import (
    LEGACY,
    SigningKey,
    cosign_context,
    manifest_context,
    new_party_key,
    sign_file,
    submission_context,
    verify_signature,
)
from pipelines.cli import main
from tests.conftest import Project, dagster_home_from, incident, write_csv
from tests.test_trust import register, verify

AS_OF = "2026-06-30T00:00:00+00:00"


def test_a_signature_verifies_only_in_its_own_context(tmp_path):
    key_file = tmp_path / "bravo.key"
    public = new_party_key("BRAVO", key_file)
    key, data = SigningKey(key_file), b'{"release_id": "r-1"}\n'
    contexts = [
        submission_context("BRAVO"),
        submission_context("ALPHA"),
        manifest_context("r-1"),
        cosign_context("r-1", "BRAVO"),
        cosign_context("r-2", "BRAVO"),
        LEGACY,
    ]
    for made in contexts:
        sig = key.sign(data, made)
        verifies = [verify_signature(public, data, sig, other) for other in contexts]
        assert verifies == [other == made for other in contexts], made


def test_a_cosignature_handed_in_as_a_submission_signature_is_invalid(project, tmp_path, capsys):
    """The attack of the issue: BRAVO's co-signature over a manifest, next to the manifest's
    bytes handed in as a submission, must not pass as BRAVO's submission signature."""
    key_file = tmp_path / "bravo.key"
    register(project, "BRAVO", key_file)
    manifest = b'{"release_id": "r-0123456789abcdef0123"}\n'
    handed = project.inbox / "BRAVO" / "incidents_from_manifest.jsonl"
    handed.parent.mkdir(parents=True, exist_ok=True)
    handed.write_bytes(manifest)
    Path(str(handed) + ".sig").write_bytes(
        SigningKey(key_file).sign(manifest, cosign_context("r-0123456789abcdef0123", "BRAVO"))
    )
    signed = write_csv(project.inbox / "BRAVO" / "incidents_ok.csv", [incident("B-1")])
    sign_file(key_file, signed)
    project.run(ingest_only=True)
    rows = dict(project.query("SELECT file_name, rule FROM landed_submissions"))
    assert rows == {"incidents_from_manifest.jsonl": "signature_invalid", "incidents_ok.csv": None}
    reason = project.query(
        "SELECT reason FROM landed_submissions WHERE file_name = 'incidents_from_manifest.jsonl'"
    )[0][0]
    assert "as BRAVO's submission signature" in reason


def test_a_release_from_before_the_scheme_keeps_verifying(signed_release, tmp_path):
    """A manifest without ``signature_scheme`` was signed over its bare bytes (LEGACY)."""
    project, keys, release = signed_release
    manifest = json.loads((release / rel.MANIFEST).read_bytes())
    for field in ("signature_scheme", "content_id", "previous_release"):
        manifest.pop(field)
    old = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (release / rel.MANIFEST).write_bytes(old)
    (release / rel.SIGNATURE).write_bytes(SigningKey(keys["SECRETARIAT"]).sign(old, LEGACY))
    from cbm.registry import load_parties

    parties = load_parties(project.registry / "parties.yaml")
    assert rel.check_signatures(release, parties)[0] == []
    # the same bytes signed under the scheme do not pass as an old release's signature
    (release / rel.SIGNATURE).write_bytes(
        SigningKey(keys["SECRETARIAT"]).sign(old, manifest_context(release.name))
    )
    assert rel.check_signatures(release, parties)[0]


@pytest.fixture
def signed_release(tmp_path):
    project = Project(tmp_path / "deployment")
    keys = {p: tmp_path / f"{p.lower()}.key" for p in ("SECRETARIAT",)}
    for party, key_file in keys.items():
        register(project, party, key_file)
    write_csv(project.inbox / "ALPHA" / "incidents_a.csv", [incident("A-1")])
    summary = project.run(signing_key=str(keys["SECRETARIAT"]))
    return project, keys, Path(summary["release_path"])


@pytest.fixture(scope="module")
def histories(tmp_path_factory, dagster_home_template):
    """The same inbox published in two ways with the same --as-of: partial then full (A), and
    full at once (B), with their own Dagster instance: made once for the module (three runs),
    copied by each test (``two_histories``)."""
    from tests.conftest import TEST_KEY

    root = tmp_path_factory.mktemp("histories")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CBM_PSEUDONYM_KEY", TEST_KEY)
        env.setenv(
            "DAGSTER_HOME", str(dagster_home_from(dagster_home_template, root / "dagster_home"))
        )
        a, b = Project(root / "a"), Project(root / "b")
        first = [incident("A-1"), incident("A-2", category="airspace_violation")]
        second = [incident("A-3", region="LVA")]
        for project in (a, b):
            write_csv(project.inbox / "ALPHA" / "incidents_1.csv", first)
        partial = a.run(as_of=AS_OF)["latest_release"]
        for project in (a, b):
            write_csv(project.inbox / "ALPHA" / "incidents_2.csv", second)
            project.run(as_of=AS_OF)
    return root, partial


@pytest.fixture
def two_histories(histories, tmp_path, monkeypatch) -> tuple[Project, Project, str]:
    """A copy of ``histories`` for this test to change: A, B and A's first release id."""
    root, partial = histories
    shutil.copytree(root, tmp_path / "histories", symlinks=True)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "histories" / "dagster_home"))
    copy = tmp_path / "histories"
    return Project(copy / "a", registry=False), Project(copy / "b", registry=False), partial


def manifest_of(project: Project) -> dict:
    latest = (project.publish / "LATEST").read_text().strip()
    return json.loads((project.publish / "releases" / latest / rel.MANIFEST).read_text())


def test_two_histories_of_the_same_figures_have_different_ids_and_verify_since_shows_the_fork(
    two_histories, capsys
):
    a, b, partial = two_histories
    ma, mb = manifest_of(a), manifest_of(b)
    # the same figures (content), reached by two paths: two release ids, a fork two parties see
    assert ma["content_id"] == mb["content_id"]
    assert ma["release_id"] != mb["release_id"]
    assert ma["previous_release"]["release_id"] == partial and mb["previous_release"] is None
    assert ma["previous_release"]["manifest_sha256"] == sha256_file(
        a.publish / "releases" / partial / rel.MANIFEST
    )
    code, out = verify(a.publish, capsys, "--since", partial)
    assert code == 0 and f"follows {partial} (1 release(s) since)" in out, out
    # a reader of A who saw the partial release is shown B's history as not following it
    shutil.copytree(a.publish / "releases" / partial, b.publish / "releases" / partial)
    code, out = verify(b.publish, capsys, "--since", partial)
    assert code == 1 and f"does not follow {partial}" in out and "forked" in out, out


def test_latest_moved_back_forged_root_files_and_an_edited_link_fail(two_histories, capsys):
    a, _, partial = two_histories
    newest = (a.publish / "LATEST").read_text().strip()
    code, out = verify(a.publish, capsys)
    assert code == 0 and "CHANGELOG.jsonl is not signed" in out and "--since" in out, out
    # LATEST pointed back at the older release: a reader who saw the newest one is told
    (a.publish / "LATEST").write_text(partial + "\n")
    (a.publish / "calendar.ics").write_bytes(
        (a.publish / "releases" / partial / rel.CALENDAR_ICS).read_bytes()
    )
    code, out = verify(a.publish, capsys, "--since", newest)
    assert code == 1 and f"{partial} does not follow {newest}" in out, out
    (a.publish / "LATEST").write_text(newest + "\n")
    # a forged calendar at the publish root
    (a.publish / "calendar.ics").write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    code, out = verify(a.publish, capsys)
    assert code == 1 and f"not the calendar of {newest}" in out, out
    (a.publish / "calendar.ics").write_bytes(
        (a.publish / "releases" / newest / rel.CALENDAR_ICS).read_bytes()
    )
    # an edited previous_release_id in the (unsigned) changelog
    lines = (a.publish / "CHANGELOG.jsonl").read_text().splitlines()
    entry = json.loads(lines[-1]) | {"previous_release_id": "r-00000000000000000000"}
    (a.publish / "CHANGELOG.jsonl").write_text("\n".join([*lines[:-1], json.dumps(entry)]) + "\n")
    code, out = verify(a.publish, capsys)
    assert code == 1 and f"{newest} follows r-00000000000000000000, but its signed" in out, out
    (a.publish / "CHANGELOG.jsonl").write_text("\n".join(lines) + "\n")
    # the previous release's manifest edited after the next one named it
    before = a.publish / "releases" / partial / rel.MANIFEST
    before.write_bytes(before.read_bytes().replace(b'"as_of"', b'"as_of" ', 1))
    code, out = verify(a.publish, capsys)
    assert code == 1 and "another history (a fork) or an edited release" in out, out


def test_a_run_with_nothing_new_keeps_the_release_and_its_chain(two_histories):
    a, _, partial = two_histories
    before = manifest_of(a)
    again = a.run(as_of=AS_OF)
    assert again["latest_release"] == before["release_id"]
    assert manifest_of(a)["previous_release"]["release_id"] == partial
    lines = (a.publish / "CHANGELOG.jsonl").read_text().splitlines()
    assert [json.loads(x)["release_id"] for x in lines] == [partial, before["release_id"]]
    # the jobs run again (no "nothing new" shortcut) and find the release published: the UI
    # names the release its changes are against, never "none" (#38)
    (a.workdir / "last_run.json").unlink()
    assert a.run(as_of=AS_OF)["latest_release"] == before["release_id"]
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("release")), limit=1
        ).records
    metadata = record.event_log_entry.asset_materialization.metadata
    assert metadata["new_release"].value is False
    assert metadata["previous_release"].value == partial


def test_since_needs_a_release_among_its_siblings(tmp_path, capsys):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / rel.MANIFEST).write_text("{}")
    assert main(["verify-release", str(lone), "--since", "r-0123456789abcdef0123"]) == 2
    assert "--since needs the publish folder" in capsys.readouterr().err
    # a value that is no release id at all: one line, exit 2
    assert main(["verify-release", str(lone), "--since", "LATEST"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--since LATEST: not a release id" in err and "\n" not in err


def test_the_manifest_names_the_publishers_key_and_where_to_get_it(
    signed_release, tmp_path, capsys
):
    from cbm.signatures import key_fingerprint

    project, _, release = signed_release
    manifest = json.loads((release / rel.MANIFEST).read_text())
    parties = yaml.safe_load((project.registry / "parties.yaml").read_text())
    publisher = next(p for p in parties if p["class"] == "secretariat")
    assert manifest["publisher_key"]["sha256"] == key_fingerprint(publisher["public_key"])
    assert "outside this release" in manifest["publisher_key"]["from"]
    # a registry that names another publisher key: told plainly, before the signature
    other = tmp_path / "other.key"
    publisher["public_key"] = new_party_key("SECRETARIAT", other)
    (tmp_path / "parties.yaml").write_text(yaml.safe_dump(parties))
    code, out = verify(release, capsys, "--keys", str(tmp_path / "parties.yaml"))
    assert code == 1 and "the manifest names the publisher's key" in out, out
