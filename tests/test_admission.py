"""The file-level rules (cbm.admission.file_level_rejection) as a function: a sidecar, the
registry and the landed signature in, a rule and its reason out. No run needed."""

import pytest
import yaml

from cbm.admission import file_level_rejection
from cbm.intake import Landing
from cbm.registry import load_registry
from cbm.signatures import SigningKey, cosign_context, new_party_key, submission_context
from tests.conftest import write_registry

SHA = "ab" * 32


@pytest.fixture
def world(tmp_path):
    registry_dir = write_registry(tmp_path / "registry")
    parties = yaml.safe_load((registry_dir / "parties.yaml").read_text())
    key_file = tmp_path / "bravo.key"
    next(p for p in parties if p["code"] == "BRAVO")["public_key"] = new_party_key(
        "BRAVO", key_file
    )
    (registry_dir / "parties.yaml").write_text(yaml.safe_dump(parties))
    landing = Landing(tmp_path / "landing")
    (tmp_path / "landing" / SHA[:2]).mkdir(parents=True)
    (tmp_path / "landing" / SHA[:2] / SHA).write_bytes(b"report_id\nB-1\n")
    return load_registry(registry_dir), landing, SigningKey(key_file)


def meta(party="ALPHA", name="incidents_a.csv", **extra) -> dict:
    return {"sha256": SHA, "party_dir": party, "file_name": name, "size_bytes": 14} | extra


@pytest.mark.parametrize(
    ("sidecar", "rule", "says"),
    [
        (meta(symlink=True), "not_a_regular_file", "symbolic link"),
        (meta(over_limit={"bytes": 9, "max_bytes": 5}), "over_limit", "not read or copied"),
        (meta(name_not_utf8=True), "file_name_not_utf8", "not UTF-8"),
        (meta(party=""), "outside_party_directory", "inbox root"),
        (meta(party="ZULU"), "unregistered_party", "'ZULU' is not registered"),
        (meta(name="incidents_a.csv.sig"), "orphan_signature", "without its file"),
        (meta(name="gossip.csv"), "unknown_kind", "must start with incidents_"),
        (meta(name="incidents_a.xlsx"), "unknown_format", "extension must be"),
        (meta(size_bytes=0), "empty_file", "is empty"),
        (meta(party="BRAVO"), "signature_missing", "signs its submissions"),
        (meta(), None, None),
    ],
)
def test_each_rule_names_the_file_and_why(world, sidecar, rule, says):
    registry, landing, _ = world
    found = file_level_rejection(sidecar, registry, landing)
    if rule is None:
        assert found is None
    else:
        assert (
            found[0] == rule
            and says in found[1]
            and found[1].startswith(
                f"{sidecar['party_dir']}/" if sidecar["party_dir"] else sidecar["file_name"]
            )
        )


def test_a_signature_counts_only_as_its_partys_submission_signature(world):
    registry, landing, key = world
    data = landing.local(SHA).read_bytes()
    for made, verdict in (
        (key.sign(data, submission_context("BRAVO")), None),
        (key.sign(data, cosign_context("r-1", "BRAVO")), "signature_invalid"),
        (key.sign(data, submission_context("ALPHA")), "signature_invalid"),
        (b"x" * 5000, "signature_invalid"),
    ):
        landing.put_signature(SHA, made)
        found = file_level_rejection(meta(party="BRAVO"), registry, landing)
        assert (found and found[0]) == verdict, made[:20]
