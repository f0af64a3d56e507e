"""The expectation suites as data: they agree with the contract, and shared rules are written once."""

import json
from importlib import resources

import pytest

from cbm.contract import ENUMS, FIELDS, KINDS, typed_fields
from checks.validation import load_suite


def _file(name: str) -> dict:
    return json.loads(resources.files("checks").joinpath("suites", f"{name}.json").read_text())


@pytest.mark.parametrize("kind", KINDS)
def test_every_value_set_is_the_contracts_enum(kind):
    in_set = {
        e["kwargs"]["column"]: tuple(e["kwargs"]["value_set"])
        for e in load_suite(kind)["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set"
    }
    assert in_set == ENUMS[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_every_typed_field_has_its_type_rule_and_rules_are_unique(kind):
    rules = [e["meta"]["rule"] for e in load_suite(kind)["expectations"]]
    assert len(rules) == len(set(rules))
    assert {f"{f}_type_{FIELDS[kind][f]}" for f in typed_fields(kind)} <= set(rules)


def test_the_common_fields_are_written_once():
    common = {e["meta"]["rule"] for e in _file("common")["expectations"]}
    assert {"report_id_format", "tlp_allowed_values", "summary_length"} <= common
    for kind in KINDS:
        own = {e["meta"]["rule"] for e in _file(kind)["expectations"]}
        assert _file(kind)["meta"]["include"] == ["common"]
        assert not own & common, kind
        assert not any("_type_" in rule for rule in own), kind  # generated, not written


def test_every_rule_says_its_severity_and_reason():
    for kind in KINDS:
        for e in load_suite(kind)["expectations"]:
            meta = e["meta"]
            assert meta["severity"] in ("critical", "warning"), meta
            assert meta["rule"] and meta["reason"], meta
