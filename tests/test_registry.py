"""Registries: a wrong registry is refused with the file, the entry and the rule."""

import pytest
import yaml

from cbm.registry import RegistryError, load_registry
from tests.conftest import write_registry


def test_loads_the_sample_registry(tmp_path):
    reg = load_registry(write_registry(tmp_path))
    assert reg.parties["GOLF"].bloc is None
    assert reg.commitments["HOTLINE-TEST"].response_sla_hours == 48
    assert reg.policy.small_cell_k == 5
    assert reg.method_version.startswith("m-")
    assert len(reg.commitments["HOTLINE-TEST"].obligated_parties(reg.parties)) == 7


def test_method_version_follows_the_policy(tmp_path):
    first = load_registry(write_registry(tmp_path / "a")).method_version
    d = write_registry(tmp_path / "b")
    policy = yaml.safe_load((d / "policy.yaml").read_text())
    policy["small_cell_k"] = 10
    (d / "policy.yaml").write_text(yaml.safe_dump(policy))
    assert load_registry(d).method_version != first


@pytest.mark.parametrize(
    ("file", "mutate", "message"),
    [
        (
            "parties.yaml",
            lambda d: d.append({"code": "bad code", "name": "x", "class": "state"}),
            "code must match",
        ),
        (
            "parties.yaml",
            lambda d: d.append({"code": "ZED", "name": "x", "class": "pirate"}),
            "class 'pirate'",
        ),
        ("parties.yaml", lambda d: d.append(dict(d[0])), "duplicate code"),
        ("commitments.yaml", lambda d: d[0].update(schedule="weekly"), "schedule 'weekly'"),
        ("commitments.yaml", lambda d: d[0].update(obligated=["NOBODY"]), "unregistered parties"),
        ("policy.yaml", lambda d: d.update(escalation_thresholds=[5, 1]), "escalation_thresholds"),
        ("policy.yaml", lambda d: d["association_window_hours"].pop("other"), "lacks categories"),
    ],
)
def test_invalid_registry_names_file_and_rule(tmp_path, file, mutate, message):
    d = write_registry(tmp_path)
    data = yaml.safe_load((d / file).read_text())
    mutate(data)
    (d / file).write_text(yaml.safe_dump(data))
    with pytest.raises(RegistryError, match=message) as err:
        load_registry(d)
    assert file in str(err.value)


def test_missing_registry_file(tmp_path):
    d = write_registry(tmp_path)
    (d / "policy.yaml").unlink()
    with pytest.raises(RegistryError, match="policy.yaml: registry file not found"):
        load_registry(d)


def test_a_misspelt_policy_key_is_refused_naming_the_known_ones(tmp_path):
    import yaml

    from cbm.generate import POLICY
    from cbm.registry import RegistryError, load_policy

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY | {"amber_recipent": "members"}))
    with pytest.raises(
        RegistryError, match=r"unknown keys \['amber_recipent'\]; known: .*amber_recipients"
    ):
        load_policy(path)
