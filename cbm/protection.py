"""Source protection (contract §5): keyed pseudonyms, scrubbed free text, keyed technical keys.

The key never lives in the repository. It is read from ``CBM_PSEUDONYM_KEY``
(``<version>:<hex>``) or from the JSON file named by ``CBM_KEY_FILE``
(``{"key_version": "k1", "key": "<hex>"}``). ``cbm keygen-pseudonym`` writes such a file.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cbm.contract import FIELDS
from cbm.files import UnreadableKeyFile, key_file_fields

EMAIL_RE = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"
# a URL with a scheme, a scheme-relative one (//host/...), www.…, and a bare host: one with a
# path (phish.invalid/login) or ending in a common or reserved top-level domain (beacon.invalid)
_HOST = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
URL_RE = (
    r"(?i)\b(?:https?|ftp)://[^\s\"'<>]+|\B//[^\s\"'<>]+|\bwww\.[^\s\"'<>]+"
    rf"|\b{_HOST}[a-z]{{2,24}}(?::\d+)?/[^\s\"'<>]*"
    rf"|\b{_HOST}(?:com|net|org|info|biz|io|ru|cn|ir|kp|gov|mil|int|edu|invalid|example|test|"
    r"localhost|onion|local)\b"
)
IPV4_RE = r"\b(?:\d{1,3}\.){3}\d{1,3}\b"
# Full eight-group form, or any compressed form with "::"; never a time like 10:00:00.
IPV6_RE = (
    r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b"
    r"|(?:\b[0-9a-f]{1,4})?(?::[0-9a-f]{1,4}){0,6}::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?"
)
# International (+...), bracketed area codes, or 3-3-4 groups; not ISO dates or plain ids.
PHONE_RE = (
    r"\+\d[\d\s().\-]{6,}\d|\(\d{2,5}\)\s?\d[\d\s.\-]{5,}\d|\b\d{3}[\s.\-]\d{3}[\s.\-]\d{4}\b"
)


class KeyError_(RuntimeError):
    """No usable pseudonymisation key."""


@dataclass(frozen=True)
class PseudonymKey:
    version: str
    secret: bytes

    def digest(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}\x1f{value}".encode(), hashlib.sha256).hexdigest()

    @property
    def fingerprint(self) -> str:
        """Names the key without revealing it: same key, same fingerprint."""
        return "F-" + self.digest("fingerprint", "cbm-verify")[:16]

    def pseudonym(self, party_code: str) -> str:
        """Stable keyed pseudonym of a party, e.g. ``P-3fa2c81b09de``."""
        return "P-" + self.digest("party", party_code)[:12]


def new_key_file(path: Path, version: str | None = None) -> Path:
    """Write a new random key to ``path`` (mode 0600). Without ``version``, the key's version
    is named after its fingerprint (``k-3fa2c81b``), so two keys never share a version and a
    manifest's key version shows a change of key."""
    secret = secrets.token_bytes(32)
    version = version or "k-" + PseudonymKey("", secret).fingerprint.removeprefix("F-")[:8]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key_version": version, "key": secret.hex()}) + "\n")
    path.chmod(0o600)
    return path


def load_key(env: dict[str, str] | None = None) -> PseudonymKey:
    env = os.environ if env is None else env
    if env.get("CBM_PSEUDONYM_KEY"):
        version, _, hexkey = env["CBM_PSEUDONYM_KEY"].rpartition(":")
        return _key(version or "k1", hexkey, "CBM_PSEUDONYM_KEY")
    if env.get("CBM_KEY_FILE"):
        return _key_from_file(Path(env["CBM_KEY_FILE"]))
    raise KeyError_(
        "no pseudonymisation key: set CBM_KEY_FILE to a key file (create one with "
        "'cbm keygen-pseudonym --out FILE', kept outside the repository) or CBM_PSEUDONYM_KEY"
    )


def _key_from_file(path: Path) -> PseudonymKey:
    """The key of a file ``cbm keygen-pseudonym`` wrote; what is wrong with it, in one line."""
    signing_key = "a party's signing key: that one goes to --signing-key or CBM_SIGNING_KEY_FILE"
    try:
        key = key_file_fields(
            path,
            "pseudonymisation key file",
            "'cbm keygen-pseudonym'",
            ("key_version", "key"),
            other=("private_key", signing_key),
        )
    except UnreadableKeyFile as exc:
        raise KeyError_(str(exc)) from exc
    return _key(key["key_version"], key["key"], f"pseudonymisation key file {path}")


def _key(version: str, hexkey: str, where: str) -> PseudonymKey:
    form = (
        "expected <version>:<hex>, at least 32 hex digits (e.g. k1:<64 hex digits>); "
        "'cbm keygen-pseudonym --out FILE' writes a key file for CBM_KEY_FILE"
    )
    try:
        secret = bytes.fromhex(hexkey.strip())
    except ValueError as exc:
        raise KeyError_(f"{where}: the key is not hexadecimal; {form}") from exc
    if len(secret) < 16:
        raise KeyError_(f"{where}: the key is too short ({len(secret)} bytes); {form}")
    return PseudonymKey(version=version, secret=secret)


def _names_pattern(party_names: list[str]) -> str | None:
    """Registered party names as one case-insensitive alternation, longest first."""
    names = sorted({n for n in party_names if n}, key=len, reverse=True)
    return "|".join(re.escape(n) for n in names) or None


def scrub_expr(expr: pl.Expr, party_names: list[str]) -> pl.Expr:
    """Free text: e-mails, URLs, IPs, phone numbers and registered party names become tags
    ([email], [url], [ip], [phone], [party])."""
    out = (
        expr.str.replace_all(EMAIL_RE, "[email]")
        .str.replace_all(URL_RE, "[url]")
        .str.replace_all(IPV4_RE, "[ip]")
        .str.replace_all(IPV6_RE, "[ip]")
        .str.replace_all(PHONE_RE, "[phone]")
    )
    names = _names_pattern(party_names)
    return out.str.replace_all("(?i)" + names, "[party]") if names else out


def redact_identifiers(expr: pl.Expr, party_names: list[str]) -> pl.Expr:
    """Short coded fields: e-mails, URLs, IPs and registered party names become
    ``[redacted]`` in a single regex pass; digit runs and timestamps are left alone (no
    phone rule), and values are cut to 200 characters."""
    return expr.str.replace_all(_identifier_pattern(tuple(party_names)), "[redacted]").str.slice(
        0, 200
    )


@functools.cache
def _identifier_pattern(party_names: tuple[str, ...]) -> str:
    parts = [EMAIL_RE, URL_RE, IPV4_RE, IPV6_RE]
    if names := _names_pattern(list(party_names)):
        parts.append(names)
    return "(?i)" + "|".join(f"(?:{p.removeprefix('(?i)')})" for p in parts)


def keyed_technical_keys(frame: pl.DataFrame, column: str, key: PseudonymKey) -> pl.Series:
    """``;``-separated indicators -> sorted ``;``-joined keyed hashes (each distinct value hashed once)."""
    exploded = (
        frame.select(pl.int_range(pl.len()).alias("_i"), pl.col(column).str.split(";").alias("_k"))
        .explode("_k")
        .with_columns(pl.col("_k").str.strip_chars().str.to_lowercase())
        .filter(pl.col("_k").is_not_null() & (pl.col("_k") != ""))
    )
    distinct = exploded.select(pl.col("_k").unique())
    hashed = distinct.with_columns(
        pl.Series(
            "_h",
            ["K-" + key.digest("tkey", v)[:24] for v in distinct["_k"].to_list()],
            dtype=pl.String,
        )
    )
    joined = (
        exploded.join(hashed, on="_k", how="left")
        .group_by("_i")
        .agg(pl.col("_h").unique().sort().str.join(";"))
    )
    return (
        pl.DataFrame({"_i": pl.int_range(frame.height, eager=True)})
        .join(joined, on="_i", how="left")
        .sort("_i")["_h"]
        .alias(column)
    )


def anonymise_frame(
    frame: pl.DataFrame, kind: str, source: str, key: PseudonymKey, party_names: list[str]
) -> pl.DataFrame:
    """Staged text rows -> rows safe for the warehouse (still text for typed fields)."""
    exprs: list[pl.Expr] = [pl.lit(source).alias("source"), pl.col("row_number")]
    for field, ftype in FIELDS[kind].items():
        if ftype == "text":
            exprs.append(scrub_expr(pl.col(field), party_names).alias(field))
        elif ftype == "keys":
            continue
        else:
            exprs.append(
                redact_identifiers(pl.col(field).str.strip_chars(), party_names).alias(field)
            )
    exprs.append(pl.col("row_error"))
    # where a STIX row's object came from (ids only; staged files from before it have none)
    origin = pl.col("row_origin") if "row_origin" in frame.columns else pl.lit(None, pl.String)
    exprs.append(redact_identifiers(origin, party_names).alias("row_origin"))
    out = frame.select(exprs)
    if "technical_keys" in FIELDS[kind]:
        out = out.with_columns(keyed_technical_keys(frame, "technical_keys", key))
    if kind == "attestations":
        codes = out["subject_party"].drop_nulls().unique().to_list()
        mapping = pl.DataFrame(
            {"subject_party": codes, "_ps": [key.pseudonym(c) for c in codes]},
            schema={"subject_party": pl.String, "_ps": pl.String},
        )
        out = (
            out.join(mapping, on="subject_party", how="left", maintain_order="left")
            .rename({"subject_party": "subject_party__code"})
            .rename({"_ps": "subject_party"})
        )
    return out


def anonymise_staged(
    staged: Path,
    kind: str,
    party: str,
    key: PseudonymKey,
    party_names: list[str],
    code_by_label: dict[str, str],
) -> pl.DataFrame:
    """One staged submission (its Parquet file) made safe for the warehouse: the submitter
    becomes its pseudonym; an incident's ``alleged_party`` given as a public label becomes
    the party code first."""
    frame = pl.read_parquet(staged)
    if kind == "incidents" and code_by_label:
        frame = frame.with_columns(pl.col("alleged_party").replace(code_by_label))
    return anonymise_frame(frame, kind, key.pseudonym(party), key, party_names)


def anonymise_to_file(target: Path, *args) -> int:
    """``anonymise_staged`` in a worker process: the rows go to ``target`` (Parquet, in the
    workdir, the sensitive tier's neighbour), not through the pipe. Returns the row count."""
    frame = anonymise_staged(*args)
    frame.write_parquet(target, compression="lz4")
    return frame.height
