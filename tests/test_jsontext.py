"""``cbm.jsontext.dumps`` writes what ``json.dumps(indent=2, sort_keys=True)`` writes, byte for
byte: the published JSON files (manifest, STIX, MISP, dictionary) depend on it."""

import enum
import json
import random
from collections import OrderedDict

import pytest

from cbm.jsontext import dumps

TEXTS = [
    "",
    "a",
    "é",
    "日本",
    "tab\there",
    'quote"',
    "back\\slash",
    "\x00\x1f",
    "\u2028",
    "😀",
    "\ud800",
]
FLOATS = [0.0, -0.0, 1.5, 1e300, 1e-300, 0.1, float("nan"), float("inf"), float("-inf"), 2.0**60]


def _value(rng: random.Random, depth: int):
    pick = rng.randrange(10 if depth < 4 else 6)
    if pick == 0:
        return rng.choice(TEXTS) + str(rng.randrange(100))
    if pick == 1:
        return rng.choice([0, -1, 7, 2**70, -(2**64)])
    if pick == 2:
        return rng.choice(FLOATS)
    if pick == 3:
        return rng.choice([True, False, None])
    if pick == 4:
        return rng.choice(TEXTS)
    if pick == 5:
        return {}
    if pick in (6, 7):
        keys = {rng.choice(TEXTS) + str(rng.randrange(50)) for _ in range(rng.randrange(6))}
        return {k: _value(rng, depth + 1) for k in keys}
    if pick == 8:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return tuple(_value(rng, depth + 1) for _ in range(rng.randrange(4)))


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_random_documents_are_written_as_json_writes_them(ensure_ascii):
    rng = random.Random(20261207)
    for _ in range(3000):
        doc = _value(rng, 0)
        assert dumps(doc, ensure_ascii) == json.dumps(
            doc, indent=2, sort_keys=True, ensure_ascii=ensure_ascii
        ), doc


class Level(enum.IntEnum):
    HIGH = 1


class Name(str):
    pass


@pytest.mark.parametrize(
    "doc",
    [
        {"a": Level.HIGH},  # an int subclass: json's own text
        {"a": Name("x")},
        OrderedDict(b=1, a=2),
        {1: "x", 2: "y"},  # keys json turns into text
        {"a": [1, {"b": Level.HIGH}]},
    ],
)
def test_anything_else_is_left_to_json(doc):
    assert dumps(doc) == json.dumps(doc, indent=2, sort_keys=True)


def test_what_json_refuses_is_refused_the_same_way():
    for doc in ({"a": object()}, {1: "x", "b": "y"}):
        with pytest.raises(TypeError):
            json.dumps(doc, indent=2, sort_keys=True)
        with pytest.raises(TypeError):
            dumps(doc)
