"""What every warehouse column means: the report fields as contract §3 states them, and the
columns the pipeline adds. The Dagster UI shows these beside each asset's column schema;
``tests/test_definitions.py`` fails on a column without one."""

from __future__ import annotations

from cbm.contract import ENUMS

# contract §3, field by field
REPORT_FIELDS = {
    "report_id": "the submitter's id of the report: unique per party and kind",
    "version": "a higher version supersedes a lower one of the same report_id and source",
    "tlp": "FIRST TLP 2.0 marking: CLEAR and GREEN may be published, AMBER and RED never",
    "confidence": "0-100: the submitter's confidence in its own report (STIX meaning)",
    "summary": "free text, scrubbed of names and technical keys; never published",
    "category": "incident category",
    "occurred_at": "when the incident happened (UTC)",
    "reported_at": "when the submitter reported it (UTC); not before occurred_at",
    "time_precision": "how precise occurred_at is",
    "region": "where: ISO 3166-1 alpha-3",
    "lat": "latitude, -90..90 (with lon, or neither)",
    "lon": "longitude, -180..180 (with lat, or neither)",
    "sector": "the critical-infrastructure sector affected",
    "severity": "1 (minor) to 5 (grave)",
    "determination": "suspected, confirmed or false_positive (STIX incident-core meaning)",
    "alleged_party": "the party alleged responsible: its pseudonym, or unknown",
    "technical_keys": "indicators (IPs, hashes, call signs), keyed-hashed on ingest; used only "
    "for matching, never published",
    "commitment_id": "the commitment reported on (commitments.yaml)",
    "subject_party": "whose report (attestations) or whose compliance (compliance): pseudonym",
    "period": "the month, YYYY-MM",
    "claim": "honoured, not_honoured, partially_honoured or nil_report",
    "notified_at": "advance notification sent (lead = activity_start - notified_at)",
    "activity_start": "when the notified activity began",
    "activity_end": "when the notified activity ends (optional; not before activity_start)",
    "requested_at": "hotline test or consultation request sent (latency = responded_at - "
    "requested_at)",
    "responded_at": "when the request was answered",
    "subject_kind": "the kind of the attested report: incidents or compliance",
    "subject_report_id": "the report_id of the attested report",
    "stance": "corroborates, contradicts or cannot_assess (STIX opinion / MISP sighting meaning)",
    "method": "how the attesting party checked the report",
    "observed_at": "when the attesting party observed what it attests",
}

# the columns the pipeline adds
PIPELINE = {
    # submissions and intake
    "sha256": "the submission: SHA-256 of its party and its bytes (a partition of the "
    "ingestion assets)",
    "submission_sha": "the submission the row came from (sha256 of submissions)",
    "file_sha256": "SHA-256 of the file's bytes as handed in",
    "original_sha": "the submission first handed in with these bytes",
    "party_code": "the party directory the file was handed in under (sensitive tier)",
    "source": "the submitting party's pseudonym (keyed hash of its code)",
    "key_version": "version of the pseudonymisation key that made the pseudonyms",
    "kind": "report kind: incidents, compliance or attestations (from the file name)",
    "format": "file format: csv, jsonl or parquet",
    "file_name": "the file's name in the party's inbox folder, as first handed in",
    "paths": "every name the same bytes were handed in under by this party",
    "size_bytes": "the file's size",
    "received_at": "when the file was landed (UTC)",
    "landing_path": "where the bytes are kept in the landing area (sensitive tier): relative to "
    "the landing area (<workdir>/landing or CBM_LANDING), or the object's s3:// URI",
    "signature": "valid when the party signs and its signature verified; none otherwise",
    "intake_key": "the submission with its signature and paths: what an ingestion looked at",
    "copy_of": "the submission of another party that handed in the same bytes first",
    "copies": "how many different contents one source handed in for this version",
    "status": "what came of it; see the asset description for the values",
    "rows_read": "rows parsed from the file",
    "rows_accepted": "rows stored in the warehouse",
    "rows_quarantined": "rows set aside with a reason (rows_read = rows_accepted + "
    "rows_quarantined)",
    "notes": "warnings about the file that did not reject it (unknown columns, header case)",
    "corrections": "accepted rows that revise an earlier version",
    "row_number": "the row's position in its file (1 = first data row); null for a whole file",
    "row_error": "why the reader could not parse this row",
    "row_origin": "for a STIX row: its object's id, creator identity and the cbm release and "
    "event it names (to recognise this deployment's own release handed back in)",
    "token": "an id this deployment published: its publisher identity, a release, an event or "
    "an event's STIX id",
    "what": "which kind of id the token is: identity, release, event or stix_event",
    "key_fingerprint": "fingerprint of the pseudonymisation key (never the key)",
    "from_version": "the key version before the rotation",
    "from_fingerprint": "the key fingerprint before the rotation",
    "to_version": "the key version after the rotation",
    "to_fingerprint": "the key fingerprint after the rotation",
    "registry_digest": "SHA-256 of the registry tables' rows (parties, commitments, obligations) "
    "that the release id covers",
    "stage": "where it was stopped: landing, staged, anonymised or validated",
    "rule": "the rule that failed (short name; the reason says it in words)",
    "expectation": "the Great Expectations expectation that found it",
    "column_name": "the column the rule looked at",
    "value": "the offending value, scrubbed and cut to 200 characters (quarantine); the figure "
    "(indicators)",
    "reason": "why, in words",
    "severity_finding": "critical (quarantined) or warning (kept)",
    # registry
    "code": "the party's code (sensitive tier: the registry's key)",
    "pseudonym": "the party's pseudonym (keyed hash of its code)",
    "public_label": "how the party is named in published files, when it agreed to be",
    "party_class": "stakeholder class: state, observer, industry, international or civil society",
    "bloc": "alignment bloc; non-aligned parties make an event definitive",
    "type": "the commitment's type (notification, hotline test, ...)",
    "schedule": "how often the commitment falls due",
    "grace_days": "days after the due date before a missing report counts as missed",
    "lead_time_days": "the advance notice the commitment requires",
    "response_sla_hours": "the response time the commitment requires",
    "valid_from": "first day the commitment applies",
    "valid_to": "last day the commitment applies (null: open-ended)",
    # verification
    "event_id": "the event (incident cluster): stable while its origin report stays in it",
    "is_origin": "true for the report that anchors the event",
    "joined_by": "how the report joined its event: region window, technical key or distance",
    "origin_at": "occurred_at of the event's origin report",
    "week": "ISO week of the origin, YYYY-Www",
    "n_sources": "independent sources (pseudonyms) reporting the event",
    "n_classes": "stakeholder classes among the sources",
    "n_reports": "reports behind the row",
    "severity_band": "low (1-2), medium (3) or high (4-5): the highest severity reported",
    "last_reported_at": "the latest reported_at among the members",
    "tlp_rank": "the most restrictive TLP among the inputs (0 CLEAR .. 4 RED)",
    "sources": "the reporting sources (pseudonyms)",
    "corroborators": "parties whose attestations corroborate (pseudonyms)",
    "contradictors": "parties whose attestations contradict (pseudonyms)",
    "status_reason": "why the event has its status",
    "commitment_type": "the commitment's type",
    "subject": "the party the figure is about: pseudonym in the warehouse, public label when "
    "published",
    "due_date": "when the occurrence fell due",
    "deadline": "due date plus the grace period",
    "lead_days": "days of advance notice given",
    "latency_hours": "hours from request to response",
    "verdict": "honoured_confirmed, honoured_self_reported, late, not_honoured, missed or disputed",
    "verdict_reason": "why the verdict, in words",
    "item": "report or attestation",
    "at": "when (occurred_at for a report, observed_at for an attestation)",
    "as_of": "the release's 'now': --as-of, or the latest timestamp among the inputs",
    "method_version": "hash of the code rules and the agreed policy",
    "inputs": "the submissions whose rows the release used",
    "pseudonym_key_version": "the pseudonymisation key's version",
    "pseudonym_key_fingerprint": "a fingerprint of the key (not the key)",
    "release_id": "the release",
    # indicators
    "counterpart": "for dyad indicators: the affected region; null otherwise",
    "indicator": "the indicator's name (catalogue: warehouse/sql/indicators/catalogue.yaml)",
    "numerator": "the count behind a rate or a count",
    "denominator": "the count a rate divides by",
    "escalation_level": "0-5, for the escalation_level indicator",
    "disclosure": "how disclosure control treats the indicator (docs/disclosure.md)",
    # disputes
    "dispute_id": "the dispute: stable for one report attested and one contradicting party",
    "object": "event or compliance: what the disputed report belongs to",
    "claim_period": "the period of the disputed claim (object compliance)",
    "opened_by": "the party that contradicted the report (pseudonym)",
    "opened_at": "when the contradicting attestation observed",
    "closed_at": "when the dispute was withdrawn or ruled on; null while open",
    "age_days": "days from opening to closing, or to the as-of time while open",
    # calendar
    "entry_id": "the calendar entry: stable id, also its iCalendar UID",
    "entry_type": "notified_activity or milestone",
    "starts_at": "activity start, or a milestone's due date",
    "ends_at": "activity end, or the end of a milestone's grace period",
    "all_day": "true for milestones (dates, not times)",
    "required_lead_days": "the lead time the commitment requires",
    "lead_time_met": "the notice given met the required lead time",
    # alerts
    "level": "escalation level 1-5 of the dyad",
    "definitive_sum": "severity-weighted sum of definitive events in the 30 days",
    "evidence_sum": "severity-weighted sum of definitive and tentative events in the 30 days",
    "evidence": "the public ids of the events behind the level",
    "alert_id": "the alert: derived from the dyad, level, status and as-of time",
    "previous_level": "the dyad's level before this alert (0: none)",
    "previous_status": "tentative or definitive: the status before this alert",
    "raised_at": "when the alert was recorded (wall clock)",
    "notifier": "webhook or email",
    "attempt": "1 for the first try of a notifier within one update, 2 for the next, ...",
    "attempted_at": "when the delivery was tried (wall clock)",
    "ok": "true when the notifier accepted the alert",
    "detail": "what the notifier answered, or why the delivery failed",
    "by_party": "the party that acknowledged the alert (registered code)",
    "acked_at": "when it was acknowledged (wall clock)",
    "note": "the acknowledging party's note, if any",
}

# where one name means something else in one table
BY_TABLE = {
    ("validation_findings", "severity"): PIPELINE["severity_finding"],
    ("quarantine", "severity"): PIPELINE["severity_finding"],
    ("indicator_values", "status"): "tentative or definitive",
    ("incident_clusters", "status"): "reported, tentative, definitive, disputed or expired",
    ("compliance_verdicts", "status"): "tentative or definitive",
    ("submissions", "status"): "landed, staged, accepted, partial or rejected",
    ("incident_clusters", "severity"): "the highest severity among the members",
    ("disputes", "status"): "open, upheld, rejected or withdrawn",
    ("submission_copies", "original_signed"): "whether the original's author signed it",
    ("registry_regions", "code"): "an ISO 3166-1 alpha-3 code, or one policy.yaml adds",
    ("registry_regions", "name"): "the region's name (ISO 3166-1), or that policy.yaml added it",
    ("disputes", "subject"): "the claim's subject (party code; object compliance)",
    ("disputes", "subject_kind"): "the kind of the disputed report",
    ("disputes", "subject_party"): "who filed the disputed report (pseudonym)",
    ("disputes", "subject_report_id"): "the report_id of the disputed report",
    ("calendar_entries", "status"): "upcoming, tentative or definitive",
    ("calendar_entries", "subject"): "the notifying or obligated party (code)",
    ("calendar_entries", "period"): "the month of the occurrence",
    ("dyad_levels", "status"): "definitive (definitive events alone reach the level) or tentative",
    ("dyad_levels", "subject"): "the alleged party (code)",
    ("dyad_levels", "counterpart"): "the affected region",
    ("alerts", "status"): "definitive or tentative: the level's status",
    ("alerts", "subject"): "the alleged party (code)",
    ("alerts", "counterpart"): "the affected region",
    (
        "alerts",
        "reason",
    ): "rise (the level rose) or confirmed (a tentative level became definitive)",
    ("alerts", "as_of"): "the data's time: the as-of time of the update that raised it",
    ("verification_scope", "max_tlp_rank"): "the highest TLP rank verification reads: 2 "
    "(AMBER) when policy.yaml names the members as AMBER's recipients, else 1 (GREEN)",
}


def describe(table: str, column: str) -> str | None:
    """The meaning of ``table.column``, or None when nobody wrote it down."""
    if (table, column) in BY_TABLE:
        return BY_TABLE[(table, column)]
    if column.endswith("__raw"):
        field = column.removesuffix("__raw")
        return f"{field} as handed in, kept to explain a type error"
    if column.endswith("__code"):
        return f"{column.removesuffix('__code')} as the party code (sensitive tier)"
    meaning = REPORT_FIELDS.get(column) or PIPELINE.get(column)
    if meaning is None:
        return None
    values = next((ENUMS[k][column] for k in ENUMS if column in ENUMS[k]), ())
    if values and values[0] not in meaning and column in REPORT_FIELDS:
        meaning += ": " + ", ".join(values)
    return meaning
