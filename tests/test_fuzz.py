"""A short slice of the fuzzing campaign (``make fuzz`` runs the long one): every target
with ``CBM_FUZZ_EXAMPLES`` generated inputs (default 40) must find nothing."""

import os

import pytest

from tests.fuzz.run import all_targets, run_target
from tests.fuzz.targets import TARGETS

EXAMPLES = int(os.environ.get("CBM_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    return all_targets(tmp_path_factory.mktemp("fuzz-release"))


@pytest.mark.parametrize("name", [*TARGETS, "verify_release"])
def test_target_finds_nothing(targets, name):
    strategy, target = targets[name]
    tried, finding = run_target(name, strategy, target, EXAMPLES)
    assert finding is None
    assert tried >= EXAMPLES // 2  # Hypothesis really generated inputs


def test_a_target_reports_what_it_finds():
    from hypothesis import strategies as st

    def fragile(value: int) -> None:
        assert value < 5, "too big"

    tried, finding = run_target("fragile", st.integers(0, 10), fragile, 200)
    assert tried > 0 and finding and "too big" in finding
