"""Published JSON text (manifests, the STIX bundle, the MISP feed, the data dictionary) as
``json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=...)`` writes it, byte for byte,
without its pure-Python indenting encoder.

Python's C encoder serves only ``indent=None``; with an indent, ``json.dumps`` walks the
document through generators, a few microseconds a value: 0.2-0.3 s of a small release's
MISP feed (628 event files) and more for a large one (benchmarks/README.md, M41). ``dumps``
builds the same text with one recursive function and the C string encoders; anything but
plain ``dict``/``list``/``tuple``/``str``/``int``/``float``/``bool``/``None`` (a subclass, a
non-string key) goes to ``json.dumps`` itself, so the text is always json's.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii

_INF = float("inf")


class _NotPlain(Exception):
    """A value ``dumps`` leaves to ``json.dumps``."""


def dumps(doc, ensure_ascii: bool = True) -> str:
    """``json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=ensure_ascii)``."""
    parts: list[str] = []
    try:
        _encode(doc, encode_basestring_ascii if ensure_ascii else encode_basestring, parts, "\n")
    except (_NotPlain, RecursionError):
        return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=ensure_ascii)
    return "".join(parts)


def _encode(value, text, parts: list[str], newline: str) -> None:
    kind = type(value)
    if kind is str:
        parts.append(text(value))
    elif kind is dict:
        if not value:
            parts.append("{}")
            return
        inner = newline + "  "
        separator = "{" + inner
        for key in sorted(value):
            if type(key) is not str:
                raise _NotPlain
            parts.append(separator)
            parts.append(text(key))
            parts.append(": ")
            _encode(value[key], text, parts, inner)
            separator = "," + inner
        parts.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            parts.append("[]")
            return
        inner = newline + "  "
        separator = "[" + inner
        for item in value:
            parts.append(separator)
            _encode(item, text, parts, inner)
            separator = "," + inner
        parts.append(newline + "]")
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif kind is int:
        parts.append(int.__repr__(value))
    elif kind is float:
        if value != value:
            parts.append("NaN")
        elif value == _INF:
            parts.append("Infinity")
        elif value == -_INF:
            parts.append("-Infinity")
        else:
            parts.append(float.__repr__(value))
    else:
        raise _NotPlain
