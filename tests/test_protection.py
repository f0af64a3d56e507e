"""Source protection: pseudonyms, scrubbing, keyed technical keys."""

import polars as pl
import pytest

from cbm.protection import (
    KeyError_,
    keyed_technical_keys,
    load_key,
    redact_identifiers,
    scrub_expr,
)


def test_pseudonyms_are_keyed_and_stable():
    a = load_key({"CBM_PSEUDONYM_KEY": "k1:" + "11" * 32})
    b = load_key({"CBM_PSEUDONYM_KEY": "k1:" + "22" * 32})
    assert a.pseudonym("ALPHA") == a.pseudonym("ALPHA")
    assert a.pseudonym("ALPHA") != b.pseudonym("ALPHA")
    assert a.pseudonym("ALPHA").startswith("P-") and "ALPHA" not in a.pseudonym("ALPHA")
    assert a.version == "k1"


def test_missing_or_weak_key_is_refused():
    with pytest.raises(KeyError_, match="no pseudonymisation key"):
        load_key({})
    with pytest.raises(KeyError_, match="too short .* at least 32 hex digits"):
        load_key({"CBM_PSEUDONYM_KEY": "k1:abcd"})
    with pytest.raises(KeyError_, match="not hexadecimal; expected <version>:<hex>"):
        load_key({"CBM_PSEUDONYM_KEY": "abc"})


def test_scrub_removes_identifiers_but_keeps_dates():
    text = (
        "Mail ops@example.org or see https://x.example/a?b=1, host 203.0.113.7 / 2001:db8::1, "
        "call +44 20 7946 0958 or (030) 123 4567; the Republic of Alphaland said so on 2026-01-05."
    )
    out = pl.select(scrub_expr(pl.lit(text), ["Republic of Alphaland"])).item()
    for leaked in (
        "ops@example.org",
        "x.example",
        "203.0.113.7",
        "2001:db8::1",
        "7946",
        "123 4567",
        "Alphaland",
    ):
        assert leaked not in out
    assert "2026-01-05" in out
    assert (
        "[email]" in out
        and "[url]" in out
        and "[ip]" in out
        and "[phone]" in out
        and "[party]" in out
    )


def test_technical_keys_are_hashed_per_distinct_value_and_sorted():
    key = load_key({"CBM_PSEUDONYM_KEY": "k1:" + "33" * 32})
    frame = pl.DataFrame({"technical_keys": ["198.51.100.7; SHA256:AB", None, "sha256:ab", ""]})
    out = keyed_technical_keys(frame, "technical_keys", key).to_list()
    assert out[1] is None and out[3] is None
    assert "198.51.100.7" not in out[0] and all(k.startswith("K-") for k in out[0].split(";"))
    assert out[2] in out[0].split(";")  # case and spacing do not defeat matching
    assert out[0].split(";") == sorted(out[0].split(";"))


def test_scrub_leaves_timestamps_and_ids_intact():
    values = [
        "2026-03-01 10:00:00+00:00",
        "2026-03-01T10:00:00+02:00",
        "INC-000123456789",
        "fe80::1",
    ]
    out = pl.select(redact_identifiers(pl.Series(values), ["Echo Islands"])).to_series().to_list()
    assert out[:3] == values[:3]
    assert out[3] == "[redacted]"


def test_key_fingerprint_names_the_key_without_revealing_it():
    a = load_key({"CBM_PSEUDONYM_KEY": "k1:" + "11" * 32})
    b = load_key({"CBM_PSEUDONYM_KEY": "k1:" + "22" * 32})
    assert a.fingerprint == load_key({"CBM_PSEUDONYM_KEY": "k1:" + "11" * 32}).fingerprint
    assert a.fingerprint != b.fingerprint and "11" * 8 not in a.fingerprint
