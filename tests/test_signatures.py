"""Signed submissions: a party with a public key must sign; forgeries are rejected and kept."""

import yaml

from pipelines.cli import main
from tests.conftest import incident, write_csv, write_registry


def _register_key(project, party, key_file, capsys):
    assert main(["keygen", "--party", party, "--out", str(key_file)]) == 0
    public = capsys.readouterr().out.split("public_key: ")[1].strip()
    parties = yaml.safe_load((project.registry / "parties.yaml").read_text())
    next(p for p in parties if p["code"] == party)["public_key"] = public
    write_registry(project.registry, parties)


def test_signatures_are_required_verified_and_recorded(project, tmp_path, capsys):
    alpha_key, bravo_key = tmp_path / "alpha.key", tmp_path / "bravo.key"
    _register_key(project, "ALPHA", alpha_key, capsys)
    assert (
        main(["keygen", "--party", "BRAVO", "--out", str(bravo_key)]) == 0
    )  # BRAVO's own, unregistered
    signed = write_csv(project.inbox / "ALPHA" / "incidents_signed.csv", [incident("S-1")])
    assert main(["sign", "--key", str(alpha_key), str(signed)]) == 0
    write_csv(project.inbox / "ALPHA" / "incidents_unsigned.csv", [incident("U-1")])
    forged = write_csv(project.inbox / "ALPHA" / "incidents_forged.csv", [incident("F-1")])
    assert main(["sign", "--key", str(bravo_key), str(forged)]) == 0  # BRAVO posing as ALPHA
    tampered = write_csv(project.inbox / "ALPHA" / "incidents_tampered.csv", [incident("T-1")])
    assert main(["sign", "--key", str(alpha_key), str(tampered)]) == 0
    tampered.write_text(tampered.read_text().replace("T-1", "T-2"))
    write_csv(
        project.inbox / "BRAVO" / "incidents_free.csv", [incident("B-1")]
    )  # no key: no signature needed
    capsys.readouterr()
    project.run(ingest_only=True)
    rows = {
        name: (status, sig, rule)
        for name, status, sig, rule in project.query(
            "SELECT s.file_name, s.status, s.signature, q.rule FROM submissions s "
            "LEFT JOIN quarantine q ON q.submission_sha = s.sha256 AND q.row_number IS NULL"
        )
    }
    assert rows["incidents_signed.csv"] == ("accepted", "valid", None)
    assert rows["incidents_unsigned.csv"] == ("rejected", "none", "signature_missing")
    assert rows["incidents_forged.csv"][0::2] == ("rejected", "signature_invalid")
    assert rows["incidents_tampered.csv"][0::2] == ("rejected", "signature_invalid")
    assert rows["incidents_free.csv"] == ("accepted", "none", None)


def test_a_signature_arriving_after_its_file_is_examined_again(project, tmp_path, capsys):
    key = tmp_path / "alpha.key"
    _register_key(project, "ALPHA", key, capsys)
    path = write_csv(project.inbox / "ALPHA" / "incidents_late.csv", [incident("L-1")])
    project.run(ingest_only=True)
    assert project.query("SELECT status FROM submissions") == [("rejected",)]
    assert main(["sign", "--key", str(key), str(path)]) == 0
    project.run(ingest_only=True)
    assert project.query("SELECT status, signature FROM submissions") == [("accepted", "valid")]


def test_sign_with_a_bad_key_file_says_so(tmp_path, capsys):
    (tmp_path / "k").write_text("nope")
    (tmp_path / "f.csv").write_text("x")
    assert main(["sign", "--key", str(tmp_path / "k"), str(tmp_path / "f.csv")]) == 2
    assert "not a signing key file" in capsys.readouterr().err
