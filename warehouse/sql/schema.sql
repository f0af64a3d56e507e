-- Warehouse tables that are not derived from the report contract (see warehouse/db.py for those).
CREATE TABLE IF NOT EXISTS submissions (
    sha256          VARCHAR PRIMARY KEY,   -- identity of a submission: the hash of its bytes
    party_code      VARCHAR,               -- inbox directory (a code, never a real name)
    source          VARCHAR,               -- keyed-hash pseudonym of the submitter
    key_version     VARCHAR,
    kind            VARCHAR,
    format          VARCHAR,
    file_name       VARCHAR,
    size_bytes      BIGINT,
    received_at     TIMESTAMPTZ,           -- when the file was landed (reports cannot postdate it)
    landing_path    VARCHAR,
    signature       VARCHAR,               -- none | valid | (rejections are quarantined)
    status          VARCHAR,               -- landed | accepted | partial | rejected
    rows_read       BIGINT,
    rows_accepted   BIGINT,
    rows_quarantined BIGINT,
    notes           VARCHAR                -- JSON list of submission-level remarks (extra columns ...)
);

-- Everything that did not pass, with the rule that failed. row_number NULL = whole submission.
CREATE TABLE IF NOT EXISTS quarantine (
    submission_sha  VARCHAR NOT NULL,
    row_number      BIGINT,
    report_id       VARCHAR,
    stage           VARCHAR NOT NULL,      -- landing | staged | validated
    rule            VARCHAR NOT NULL,      -- e.g. unregistered_party, severity_range
    expectation     VARCHAR,               -- the GX expectation type that failed (NULL before validation)
    column_name     VARCHAR,
    value           VARCHAR,               -- offending value, scrubbed like all warehouse text
    reason          VARCHAR NOT NULL,
    severity        VARCHAR NOT NULL       -- critical (row or file rejected) | warning (kept)
);

CREATE TABLE IF NOT EXISTS party_directory (
    code            VARCHAR PRIMARY KEY,
    pseudonym       VARCHAR NOT NULL,
    party_class     VARCHAR NOT NULL,
    bloc            VARCHAR,
    public_label    VARCHAR                -- how the party appears when it is a subject
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
