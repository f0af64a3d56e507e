"""The data dictionary every release carries (``dictionary.json``): every product, its
columns with their types (read from the Parquet written) and meanings, the indicator
catalogue, and what each status and suppression value means. Deterministic bytes."""

from __future__ import annotations

import pyarrow as pa

from cbm import jsontext

COMMON = {
    "release_id": "the release this row belongs to",
    "period": "the month, YYYY-MM (from the period=YYYY-MM folder)",
    "method_version": "hash of the code rules and the agreed policy that made the row",
}

PRODUCTS: dict[str, dict] = {
    "indicators": {
        "grain": "one row per subject x indicator x period (and counterpart for dyads) where "
        "the indicator has something to count or measure. No row is not a missing figure: for "
        "a count (definitive_incidents.*) the month had none, zero; for a rate or a median it "
        "had nothing to measure, no figure. The release report's lines break at such months "
        "rather than join across them",
        "columns": {
            "subject": "the party's public label, or its pseudonym when it has none",
            "counterpart": "for dyad indicators (escalation_level): the affected region, ISO 3166-1 alpha-3; null otherwise",
            "indicator": "the indicator's name (see indicators below)",
            "value": "the figure, in the indicator's unit; null when suppressed",
            "numerator": "the count behind a rate or a count; null when suppressed",
            "denominator": "the count a rate divides by; null when suppressed or not a rate",
            "status": "tentative or definitive (see status)",
            "suppressed": "true when disclosure control withheld value, numerator and denominator",
            "suppression": "why it was withheld: primary, secondary, or null (see suppression)",
            "escalation_level": "0-5, set only for the escalation_level indicator",
        },
    },
    "compliance": {
        "grain": "one row per commitment occurrence that is due or reported",
        "columns": {
            "subject": "the obligated party's public label, or its pseudonym",
            "commitment_id": "the commitment (commitments.yaml)",
            "verdict": "honoured_confirmed, honoured_self_reported, late, not_honoured, missed or disputed",
            "status": "tentative or definitive (see status)",
        },
    },
    "events": {
        "grain": "one row per incident cluster (event), single-source ones included",
        "columns": {
            "event_id": "stable while its origin report stays in the event",
            "category": "incident category (contract section 3)",
            "region": "ISO 3166-1 alpha-3 of the event's origin",
            "week": "ISO week of the origin, YYYY-Www",
            "severity_band": "low (1-2), medium (3) or high (4-5): the highest severity reported",
            "status": "reported, tentative, definitive, disputed or expired (see status)",
            "n_sources_bucket": "independent sources: 1, 2, 3-4 or 5+",
            "alleged": "the alleged party's public label, or unknown",
        },
    },
    "calendar": {
        "grain": "one row per notified activity (a party's own advance notification) and per "
        "milestone of a commitment and obligated party; calendar/calendar.ics holds the same "
        "entries as iCalendar (RFC 5545)",
        "columns": {
            "entry_id": "stable id of the entry (also the iCalendar UID, with @cbm-verify)",
            "entry_type": "notified_activity or milestone",
            "subject": "the notifying or obligated party's public label, or its pseudonym",
            "commitment_id": "the commitment (commitments.yaml)",
            "starts_at": "activity start; for a milestone its due date (00:00 UTC)",
            "ends_at": "activity end (its start when none was notified); for a milestone the "
            "end of its grace period (exclusive)",
            "all_day": "true for milestones (dates, not times)",
            "notified_at": "when the activity was notified; null for milestones",
            "lead_days": "days between notification and activity start",
            "required_lead_days": "the lead time the commitment requires (lead_time_days)",
            "lead_time_met": "lead_days >= required_lead_days; null when no lead time applies",
            "verdict": "the verdict of the occurrence (see compliance); null while upcoming",
            "status": "upcoming (no verdict due yet), tentative or definitive",
        },
    },
    "disputes": {
        "grain": "one row per dispute on a published event or verdict: a party contradicted a "
        "report; no party that disputed or ruled is named",
        "columns": {
            "dispute_id": "stable id of the dispute",
            "object": "event or compliance: what the disputed report belongs to",
            "event_id": "the event (events product) for object event; null otherwise",
            "commitment_id": "the commitment for object compliance; null otherwise",
            "subject": "the event's alleged party or the claim's subject: public label, "
            "pseudonym or unknown",
            "status": "open, upheld, rejected or withdrawn (see status)",
            "opened_on": "date the contradicting attestation observed (UTC)",
            "closed_on": "date of the ruling or withdrawal; null while open",
            "age_days": "days from opening to closing, or to the release's as-of time while open",
        },
    },
}

# the compliance verdicts, in the order the catalogue names them
VERDICTS = (
    "honoured_confirmed",
    "honoured_self_reported",
    "late",
    "not_honoured",
    "missed",
    "disputed",
)

DISPUTE_STATUSES = ("open", "upheld", "rejected", "withdrawn")

STATUS = {
    "events": {
        "reported": "one source",
        "tentative": "two independent sources, or one plus a corroborating attestation by another party",
        "definitive": "three or more sources from two or more stakeholder classes, one non-aligned, review window elapsed, no open contradiction",
        "disputed": "an open dispute on a member report, or one the secretariat upheld; kept, never dropped",
        "expired": "still one source after the expiry window",
    },
    "indicators": {
        "tentative": "an input is not definitive, or the month is not closed (as-of < end of month + review window); may change",
        "definitive": "every input definitive and the month closed",
    },
    "compliance": {
        "tentative": "honoured_self_reported or disputed: may change with an attestation",
        "definitive": "honoured_confirmed, late, not_honoured or missed",
    },
    "disputes": {
        "open": "a party contradicted the report; no withdrawal or ruling yet",
        "upheld": "the secretariat's ruling: the report is wrong (event stays disputed, a claim becomes not_honoured)",
        "rejected": "the secretariat's ruling: the report stands (the dispute no longer counts)",
        "withdrawn": "the disputing party later attested the report otherwise",
    },
    "calendar": {
        "upcoming": "no verdict due yet",
        "tentative": "the occurrence's verdict is tentative",
        "definitive": "the occurrence's verdict is definitive",
    },
}

SUPPRESSION = {
    "primary": "a count below small_cell_k (and above 0), or a rate whose denominator is below small_cell_k",
    "secondary": "withheld so that a primary cell cannot be recovered by subtraction from a published total",
    "null": "published",
}

DISCLOSURE = {
    "protects": (
        "the sources (a figure built from fewer than small_cell_k reports describes the few "
        "parties behind it) and anything above TLP:GREEN (no AMBER or RED report reaches any "
        "published file: events, compliance and indicators are all derived from CLEAR/GREEN "
        "reports only)"
    ),
    "indicator_disclosure": {
        "published": "recomputable exactly from the events or compliance product of this release, "
        "so never suppressed; it gives the same number as counting that product",
        "rate_of_counts": "built from reports' own timestamps, which no product publishes; "
        "suppressed (primary) when fewer than small_cell_k reports are behind it",
        "count": "a count of sources' reports that no product publishes; suppressed (primary) "
        "below small_cell_k, and secondary suppression keeps it from being recovered from a total",
        "none": "a property of the subject's own reports about itself, or a level against the "
        "agreed thresholds; never suppressed",
    },
    "same_question_same_number": [
        "definitive_incidents.<category> and .total = the number of events rows with status "
        "definitive, that alleged and period (and category)",
        "corroboration_yield = events rows with n_sources_bucket other than 1 / all events rows "
        "of that alleged and period",
        "compliance_rate, confirmed_compliance_rate, dispute_rate = the share of compliance rows "
        "of that subject and period with the verdicts named in the definition",
        "open_disputes = the number of disputes rows with status open, that subject and period",
    ],
}


def release_dictionary(catalogue: list[dict], tables: dict[str, pa.Table], policy: dict) -> bytes:
    """The dictionary of a release: ``tables`` are the products as published (their Arrow
    schemas give the types); ``catalogue`` the indicator catalogue entries."""
    products = {}
    for name, table in tables.items():
        meanings = COMMON | PRODUCTS[name]["columns"]
        products[name] = {
            "grain": PRODUCTS[name]["grain"],
            "columns": [
                {"name": f.name, "type": str(f.type), "meaning": meanings.get(f.name, "")}
                for f in table.schema
            ],
        }
    doc = {
        "products": products,
        "indicators": [
            {k: entry[k] for k in ("name", "unit", "definition", "status", "disclosure")}
            for entry in catalogue
        ],
        "status": STATUS,
        "suppression": SUPPRESSION,
        "disclosure_control": DISCLOSURE,
        "small_cell_k": policy.get("small_cell_k"),
    }
    return (jsontext.dumps(doc, ensure_ascii=False) + "\n").encode()
