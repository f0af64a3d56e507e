-- Stored warehouse tables that are not derived from the report contract (warehouse/db.py makes
-- those, and the views after them: submissions.sql, quarantine.sql). Each is written by one asset.

-- How a report's typed field is read from its text (anonymised rows keep the text beside it,
-- as <field>__raw, for the checks): a whole number of up to 18 digits; a finite number; an
-- ISO 8601 time with its offset. Anything else is NULL, and its check names the raw text.
CREATE OR REPLACE MACRO read_int(t) AS
  CASE WHEN regexp_full_match(trim(t), '[+-]?[0-9]{1,18}') THEN TRY_CAST(trim(t) AS BIGINT) END;
CREATE OR REPLACE MACRO read_float(t) AS
  CASE WHEN isfinite(TRY_CAST(trim(t) AS DOUBLE)) THEN TRY_CAST(trim(t) AS DOUBLE) END;
CREATE OR REPLACE MACRO read_ts(t) AS
  CASE WHEN regexp_full_match(
         trim(t), '\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)')
       THEN TRY_CAST(trim(t) AS TIMESTAMPTZ) END;

-- Landing (asset landed_submissions): one row per submission (file hash) of the batches
-- landed so far; rule and reason are set when the file is rejected whole at this stage.
CREATE TABLE IF NOT EXISTS landed_submissions (
    sha256          VARCHAR PRIMARY KEY,   -- identity of a submission: SHA-256 of its party and its bytes' SHA-256
    file_sha256     VARCHAR,               -- SHA-256 of its bytes (what sha256sum prints)
    party_code      VARCHAR,               -- inbox directory (a code, never a real name)
    source          VARCHAR,               -- keyed-hash pseudonym of the submitter
    key_version     VARCHAR,
    kind            VARCHAR,
    format          VARCHAR,
    file_name       VARCHAR,               -- the first path it was handed in under
    paths           VARCHAR[],             -- every path it was handed in under, in the order seen
    size_bytes      BIGINT,
    received_at     TIMESTAMPTZ,           -- when the file was landed (reports cannot postdate it)
    landing_path    VARCHAR,
    signature       VARCHAR,               -- none | valid (a bad one rejects the file)
    intake_key      VARCHAR,               -- the file and its signature as this landing saw them
    rule            VARCHAR,               -- file-level rejection (NULL: landed)
    reason          VARCHAR
);

-- Staging (asset staged_submissions): what parsing each landed file gave.
CREATE TABLE IF NOT EXISTS staged_submissions (
    sha256          VARCHAR PRIMARY KEY,
    rows_read       BIGINT NOT NULL,
    notes           VARCHAR NOT NULL,      -- JSON list of submission-level remarks (extra columns ...)
    rule            VARCHAR,               -- unreadable_file when the file could not be parsed
    reason          VARCHAR
);

-- Anonymisation (assets anon_<kind>): a submission whose rows could not be anonymised (a
-- fault of ours, not of the party); it fails alone and `cbm run` exits 1 naming it.
CREATE TABLE IF NOT EXISTS anonymisation_failures (
    sha256          VARCHAR PRIMARY KEY,
    reason          VARCHAR NOT NULL
);

-- Accepted rows that are not current (asset reports_<kind>, kept by refresh_superseded):
-- the same report_id and version from one source with different content. Every such copy is
-- quarantined (view quarantine) and the previous version stays current.
CREATE TABLE IF NOT EXISTS version_conflicts (
    kind            VARCHAR NOT NULL,
    submission_sha  VARCHAR NOT NULL,
    row_number      BIGINT NOT NULL,
    source          VARCHAR NOT NULL,
    report_id       VARCHAR NOT NULL,
    version         BIGINT NOT NULL,
    copies          BIGINT NOT NULL        -- how many different contents that version has
);

-- Validation (asset validation_findings): every row that failed an expectation.
CREATE TABLE IF NOT EXISTS validation_findings (
    submission_sha  VARCHAR NOT NULL,
    row_number      BIGINT NOT NULL,
    report_id       VARCHAR,
    rule            VARCHAR NOT NULL,      -- e.g. severity_range
    expectation     VARCHAR NOT NULL,      -- the GX expectation type that failed
    column_name     VARCHAR,
    value           VARCHAR,               -- offending value, scrubbed like all warehouse text
    reason          VARCHAR NOT NULL,
    severity        VARCHAR NOT NULL       -- critical (row quarantined) | warning (kept)
);

-- The highest TLP level verification reads (policy.yaml amber_recipients; written with
-- party_directory): AMBER (2) when the members are AMBER's recipients, else GREEN (1).
CREATE TABLE IF NOT EXISTS verification_scope (
    max_tlp_rank    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS party_directory (
    code            VARCHAR PRIMARY KEY,
    pseudonym       VARCHAR NOT NULL,
    party_class     VARCHAR NOT NULL,
    bloc            VARCHAR,
    public_label    VARCHAR                -- how the party appears when it is a subject
);

-- The regions an incident may name: ISO 3166-1 alpha-3, and the codes policy.yaml adds
-- (extra_regions); the suite rule region_known reads it.
CREATE TABLE IF NOT EXISTS registry_regions (
    code            VARCHAR PRIMARY KEY,
    name            VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS registry_commitments (
    commitment_id   VARCHAR PRIMARY KEY,
    type            VARCHAR NOT NULL,
    schedule        VARCHAR NOT NULL,
    lead_time_days  INTEGER,
    response_sla_hours INTEGER,
    grace_days      INTEGER NOT NULL,
    valid_from      DATE NOT NULL,
    valid_to        DATE
);

CREATE TABLE IF NOT EXISTS registry_obligations (
    commitment_id   VARCHAR NOT NULL,
    party_code      VARCHAR NOT NULL
);

-- The reports behind each published release's events (asset release; member tier, never
-- published): how an event of an earlier release is traced to its successor.
CREATE TABLE IF NOT EXISTS published_event_members (
    release_id      VARCHAR NOT NULL,
    event_id        VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    report_id       VARCHAR NOT NULL
);

-- Indicator values per subject x month before disclosure control (one partition per period).
CREATE TABLE IF NOT EXISTS indicator_values (
    subject         VARCHAR,
    counterpart     VARCHAR,
    period          VARCHAR NOT NULL,
    indicator       VARCHAR NOT NULL,
    value           DOUBLE,
    numerator       BIGINT,
    denominator     BIGINT,
    escalation_level INTEGER,
    disclosure      VARCHAR NOT NULL,
    status          VARCHAR NOT NULL
);

-- Alerts (asset alerts; docs/alerts-and-calendar.md). dyad_levels: the escalation level of each
-- dyad when the alerts asset last ran (level 0 dyads left out), what the next run compares with.
CREATE TABLE IF NOT EXISTS dyad_levels (
    subject         VARCHAR NOT NULL,      -- alleged party (code)
    counterpart     VARCHAR NOT NULL,      -- affected region
    level           INTEGER NOT NULL,
    status          VARCHAR NOT NULL,      -- definitive | tentative
    definitive_sum  BIGINT NOT NULL,
    evidence_sum    BIGINT NOT NULL,
    evidence        VARCHAR[] NOT NULL,    -- event ids behind the level
    tlp_rank        INTEGER NOT NULL,
    as_of           TIMESTAMPTZ NOT NULL
);

-- One row per alert raised; never rewritten (acknowledgements are in alert_acks).
CREATE TABLE IF NOT EXISTS alerts (
    alert_id        VARCHAR PRIMARY KEY,
    subject         VARCHAR NOT NULL,
    counterpart     VARCHAR NOT NULL,
    level           INTEGER NOT NULL,
    previous_level  INTEGER NOT NULL,
    status          VARCHAR NOT NULL,
    previous_status VARCHAR,
    reason          VARCHAR NOT NULL,      -- rise | confirmed (a tentative level became definitive)
    evidence        VARCHAR[] NOT NULL,
    tlp_rank        INTEGER NOT NULL,
    as_of           TIMESTAMPTZ NOT NULL,  -- the data's time (the release's as-of rule)
    raised_at       TIMESTAMPTZ NOT NULL   -- wall-clock time the alert was recorded
);

-- Every attempt to deliver an alert through a notifier (webhook, email), failed ones included.
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert_id        VARCHAR NOT NULL,
    notifier        VARCHAR NOT NULL,
    attempt         INTEGER NOT NULL,
    attempted_at    TIMESTAMPTZ NOT NULL,
    ok              BOOLEAN NOT NULL,
    detail          VARCHAR NOT NULL       -- e.g. "HTTP 200", "250 OK", or why it failed
);

-- Acknowledgements (cbm alerts --ack ID --by PARTY): kept, never deleted.
CREATE TABLE IF NOT EXISTS alert_acks (
    alert_id        VARCHAR NOT NULL,
    by_party        VARCHAR NOT NULL,
    acked_at        TIMESTAMPTZ NOT NULL,
    note            VARCHAR
);

-- Key continuity (contract §5): the pseudonymisation key this warehouse's pseudonyms and keyed
-- hashes were made with (one row, version and fingerprint, never the key). Recorded by the
-- first asset that writes a pseudonym (warehouse.db.claim_key); a run with another key stops
-- before writing. Changed only by `cbm rotate-key` (warehouse/rotation.py).
CREATE TABLE IF NOT EXISTS pseudonym_key (
    key_version     VARCHAR NOT NULL,
    key_fingerprint VARCHAR NOT NULL
);

-- Key rotations (cbm rotate-key): what the next release records in its manifest, and what
-- explains its changes to the release guard. release_id: the first release after the rotation.
CREATE TABLE IF NOT EXISTS key_rotations (
    from_version     VARCHAR NOT NULL,
    from_fingerprint VARCHAR NOT NULL,
    to_version       VARCHAR NOT NULL,
    to_fingerprint   VARCHAR NOT NULL,
    release_id       VARCHAR
);

-- This deployment's own publications (asset release): its publisher identity, release ids,
-- event ids and the STIX ids of its events. A row that carries one (a STIX object created by
-- the publisher or naming one of its releases, a report_id restating an event) is quarantined
-- as a copy of this deployment's own release (suite rule copy_of_own_release), and so is an
-- incident that restates a published event's fields (restates_own_release): a re-sent release
-- is never evidence. The submissions a member bundle carried (bundled_submission): their rows
-- restated by another party are a copy even in a signed file (restates_other_party).
CREATE TABLE IF NOT EXISTS own_publications (
    token           VARCHAR NOT NULL,
    what            VARCHAR NOT NULL,      -- identity | release | event | stix_event | bundled_submission
    category        VARCHAR,               -- an event's published fields (what = 'event'), for
    region          VARCHAR,               -- the rule restates_own_release: a row that states
    week            VARCHAR,               -- them as a release read back does
    severity_band   VARCHAR
);
