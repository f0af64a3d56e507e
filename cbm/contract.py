"""The report fields of contract §3, declared once.

Every reader, warehouse table and expectation suite derives its columns from here.
Types: ``str`` text, ``int``, ``float``, ``ts`` ISO-8601 timestamp with offset (stored UTC),
``text`` free text (scrubbed, never published), ``keys`` technical keys (keyed-hashed).
"""

from __future__ import annotations

KINDS = ("incidents", "compliance", "attestations")
FORMATS = ("stix.json", "csv", "jsonl", "parquet")  # stix.json: a STIX 2.1 bundle (section 7)

COMMON: dict[str, str] = {
    "report_id": "str",
    "version": "int",
    "tlp": "str",
    "confidence": "int",
    "summary": "text",
}

FIELDS: dict[str, dict[str, str]] = {
    "incidents": COMMON
    | {
        "category": "str",
        "occurred_at": "ts",
        "reported_at": "ts",
        "time_precision": "str",
        "region": "str",
        "lat": "float",
        "lon": "float",
        "sector": "str",
        "severity": "int",
        "determination": "str",
        "alleged_party": "str",
        "technical_keys": "keys",
    },
    "compliance": COMMON
    | {
        "commitment_id": "str",
        "subject_party": "str",
        "period": "str",
        "claim": "str",
        "notified_at": "ts",
        "activity_start": "ts",
        "activity_end": "ts",
        "requested_at": "ts",
        "responded_at": "ts",
    },
    "attestations": COMMON
    | {
        "subject_party": "str",
        "subject_kind": "str",
        "subject_report_id": "str",
        "stance": "str",
        "method": "str",
        "observed_at": "ts",
    },
}

# Optional fields added to the contract after parties began handing in files: a file without
# the column reads it as empty without a warning (other missing columns are named).
LATER_OPTIONAL: dict[str, frozenset[str]] = {"compliance": frozenset({"activity_end"})}

SQL_TYPES = {
    "str": "VARCHAR",
    "text": "VARCHAR",
    "keys": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "ts": "TIMESTAMPTZ",
}

# FIRST TLP 2.0, least restrictive first: a level's rank is its position here. Derived data
# takes the most restrictive (highest) rank of its inputs.
TLP_LEVELS = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
TLP_PUBLISHABLE = ("CLEAR", "GREEN")
MAX_PUBLISHABLE_TLP_RANK = max(TLP_LEVELS.index(t) for t in TLP_PUBLISHABLE)

INCIDENT_CATEGORIES = (
    "cyber_intrusion",
    "unusual_military_activity",
    "airspace_violation",
    "maritime_incident",
    "border_incident",
    "espionage_exposure",
    "other",
)

# The closed value sets of contract §3, by field: the suites' in-set rules must say the same
# (tests/test_expectations.py checks them against this).
ENUMS: dict[str, dict[str, tuple[str, ...]]] = {
    "incidents": {
        "tlp": TLP_LEVELS,
        "category": INCIDENT_CATEGORIES,
        "time_precision": ("minute", "hour", "day", "month"),
        "sector": (
            "energy",
            "water",
            "health",
            "finance",
            "telecom",
            "transport",
            "government",
            "defence",
            "other",
        ),
        "determination": ("suspected", "confirmed", "false_positive"),
    },
    "compliance": {
        "tlp": TLP_LEVELS,
        "claim": ("honoured", "not_honoured", "partially_honoured", "nil_report"),
    },
    "attestations": {
        "tlp": TLP_LEVELS,
        "subject_kind": ("incidents", "compliance"),
        "stance": ("corroborates", "contradicts", "cannot_assess"),
        "method": (
            "direct_observation",
            "technical_sensor",
            "on_site_inspection",
            "document_review",
            "open_source",
            "counterpart_receipt",
        ),
    },
}


def typed_fields(kind: str) -> list[str]:
    """Fields whose text must parse as a number or timestamp (their raw text is kept for errors)."""
    return [f for f, t in FIELDS[kind].items() if t in ("int", "float", "ts")]


def kind_of(file_name: str) -> str | None:
    """The report kind named by a file's prefix (``incidents_x.csv`` -> ``incidents``)."""
    prefix = file_name.split("_", 1)[0]
    return prefix if prefix in KINDS and "_" in file_name else None


def format_of(file_name: str) -> str | None:
    lower = file_name.lower()
    for fmt in FORMATS:
        if lower.endswith("." + fmt):
            return fmt
    return None
