"""The consumer guide's three reading examples run, as written, on a real release."""

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "consumer-guide.md"


def examples() -> dict[str, str]:
    blocks = re.findall(r"```python\n# consumer-example: (\w+)\n(.*?)```", GUIDE.read_text(), re.S)
    return dict(blocks)


def test_the_guide_has_three_examples():
    assert set(examples()) == {"duckdb", "polars", "pandas"}


@pytest.fixture(scope="module")
def publish_dir(generated_run):
    return generated_run[0].publish


@pytest.mark.parametrize("name", ["duckdb", "polars", "pandas"])
def test_example_reads_the_release(publish_dir, name):
    namespace: dict = {}
    exec(examples()[name].replace("PUBLISH_DIR", str(publish_dir)), namespace)  # noqa: S102
    frame = namespace["frame"]
    assert len(frame) > 0
    if name == "duckdb":
        periods = {row[0] for row in frame}
    elif name == "polars":
        periods = set(frame["period"].to_list())
    else:
        periods = set(frame["period"].astype(str))
    assert all(re.fullmatch(r"\d{4}-\d{2}", p) for p in periods) and len(periods) > 1


def test_all_readers_agree(publish_dir):
    counts = {}
    for name, code in examples().items():
        namespace: dict = {}
        exec(code.replace("PUBLISH_DIR", str(publish_dir)), namespace)  # noqa: S102
        counts[name] = len(namespace["frame"])
    assert len(set(counts.values())) == 1, counts
