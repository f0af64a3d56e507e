-- The warehouse's own statements (warehouse/db.py): the schema of each kind of report, its
-- versions, and what the warehouse records about itself.

-- name: table_names
SELECT table_name FROM information_schema.tables

-- name: superseded_table
-- Accepted rows that are not the current version of their report (kept up to date by
-- refresh_superseded; made from reports_<kind> where missing, so an older warehouse gets it
-- filled).
CREATE TABLE IF NOT EXISTS superseded_{kind} AS
SELECT submission_sha, row_number, source, report_id FROM (
  SELECT submission_sha, row_number, source, report_id, row_number() OVER (
           PARTITION BY source, report_id ORDER BY version DESC, submission_sha, row_number
         ) AS rn
  FROM reports_{kind} r
  WHERE NOT EXISTS (SELECT 1 FROM version_conflicts c WHERE c.kind = '{kind}'
    AND c.submission_sha = r.submission_sha AND c.row_number = r.row_number)
) WHERE rn > 1;

-- name: kind_views
-- current_<kind>: the highest version of each report of each source (ties: the first
-- submission and row), without ranking the whole table on every read; never a version in
-- conflict, nor a row of a submission that became a copy.
-- verification_<kind>: what verification reads, the current rows without free text, up to the
-- TLP level the members may see (verification_scope: GREEN, or AMBER where policy.yaml names
-- them its recipients; never AMBER+STRICT or RED, and an unknown level ranks as RED), so no
-- row above it influences a released byte and the member bundle (warehouse.bundle) holds
-- exactly the rows a release was derived from.
CREATE OR REPLACE VIEW current_{kind} AS
SELECT r.* FROM reports_{kind} r
ANTI JOIN superseded_{kind} s USING (submission_sha, row_number)
ANTI JOIN (SELECT * FROM version_conflicts WHERE kind = '{kind}') c
  USING (submission_sha, row_number)
ANTI JOIN submission_copies k ON k.sha256 = r.submission_sha;
CREATE OR REPLACE VIEW verification_{kind} AS
SELECT * EXCLUDE (summary) FROM current_{kind}
WHERE tlp_rank(tlp) <= (SELECT coalesce(max(max_tlp_rank), max_publishable_rank())
                        FROM verification_scope);

-- name: report_views
-- accepted_reports: every accepted row of every kind, by submission (version conflicts, and the
-- rows of a submission that became a copy later, are quarantined, not accepted).
-- copied_reports: the accepted rows of a submission that became a copy after it was accepted
-- (a signed original arrived later), quarantined from then on (views quarantine, submissions).
CREATE OR REPLACE MACRO accepted_rows() AS TABLE
SELECT 'incidents' AS kind, submission_sha, row_number, report_id, version FROM reports_incidents
UNION ALL
SELECT 'compliance', submission_sha, row_number, report_id, version FROM reports_compliance
UNION ALL
SELECT 'attestations', submission_sha, row_number, report_id, version FROM reports_attestations;
CREATE OR REPLACE VIEW accepted_reports AS
SELECT * FROM accepted_rows() a
ANTI JOIN version_conflicts c USING (kind, submission_sha, row_number)
ANTI JOIN submission_copies k ON k.sha256 = a.submission_sha;
CREATE OR REPLACE VIEW copied_reports AS
SELECT a.*, k.copy_of FROM accepted_rows() a JOIN submission_copies k ON k.sha256 = a.submission_sha;

-- name: touched_reports
-- The reports that rows of these submissions ($shas) belong to: re-ranked by refresh_superseded.
CREATE OR REPLACE TEMP TABLE touched_reports AS
SELECT DISTINCT source, report_id FROM anon_{kind}
WHERE submission_sha IN (SELECT unnest($shas::VARCHAR[]))

-- name: forget_rank
DELETE FROM version_conflicts c USING touched_reports t
WHERE c.kind = '{kind}' AND c.source = t.source AND c.report_id = t.report_id;
DELETE FROM superseded_{kind} s USING touched_reports t
WHERE s.source = t.source AND s.report_id = t.report_id;

-- name: rank
-- A report with one accepted row has no other version and no other copy: only reports with
-- several rows are ranked and hashed (hashing every row's content was most of this work:
-- benchmarks/README.md, M14). First the version conflicts (the same report_id and version
-- from one source with different content: every such copy is set aside, whatever order it
-- arrived in), then the versions below the highest one without a conflict.
CREATE OR REPLACE TEMP TABLE repeated_reports AS
SELECT r.source, r.report_id FROM reports_{kind} r SEMI JOIN touched_reports t
  ON r.source = t.source AND r.report_id = t.report_id
GROUP BY ALL HAVING count(*) > 1;
INSERT INTO version_conflicts
SELECT '{kind}', submission_sha, row_number, source, report_id, version, copies FROM (
  SELECT r.submission_sha, r.row_number, r.source, r.report_id, r.version,
         count(DISTINCT {content_hash}) OVER (PARTITION BY r.source, r.report_id, r.version) AS copies
  FROM reports_{kind} r SEMI JOIN repeated_reports t
    ON r.source = t.source AND r.report_id = t.report_id
) WHERE copies > 1;
INSERT INTO superseded_{kind}
SELECT submission_sha, row_number, source, report_id FROM (
  SELECT submission_sha, row_number, source, report_id, row_number() OVER (
           PARTITION BY source, report_id ORDER BY version DESC, submission_sha, row_number
         ) AS rn
  FROM reports_{kind} r SEMI JOIN repeated_reports t
    ON r.source = t.source AND r.report_id = t.report_id
  WHERE NOT EXISTS (SELECT 1 FROM version_conflicts c WHERE c.kind = '{kind}'
    AND c.submission_sha = r.submission_sha AND c.row_number = r.row_number)
) WHERE rn > 1;
DROP TABLE repeated_reports;
DROP TABLE touched_reports;

-- name: old_submissions_table
-- A warehouse from before each stage had its own table kept submissions as a table.
SELECT count(*) FROM information_schema.tables
WHERE table_name = 'submissions' AND table_type = 'BASE TABLE'

-- name: drop_old_submissions
DROP TABLE submissions;
DROP TABLE IF EXISTS quarantine

-- name: keyed_by_file
-- A warehouse from before a submission was a party plus its bytes: landed_submissions has a
-- sha256 and no paths.
SELECT (SELECT count(*) = 1 FROM information_schema.columns
        WHERE table_name = 'landed_submissions' AND column_name = 'sha256')
   AND (SELECT count(*) = 0 FROM information_schema.columns
        WHERE table_name = 'landed_submissions' AND column_name = 'paths')

-- name: drop_keyed_by_file
DROP VIEW IF EXISTS quarantine;
DROP VIEW IF EXISTS submissions;
DROP VIEW IF EXISTS submission_copies;
DROP VIEW IF EXISTS accepted_reports;
DROP TABLE IF EXISTS landed_submissions;
DROP TABLE IF EXISTS staged_submissions;
DROP TABLE IF EXISTS validation_findings

-- name: has_column
SELECT count(*) > 0 FROM duckdb_columns() WHERE table_name = ? AND column_name = ?

-- name: release_context
SELECT as_of, method_version, inputs, pseudonym_key_version, pseudonym_key_fingerprint,
       registry_digest
FROM release_context

-- name: release_context_before_digest
-- A bundle's release context from before the registry's digest was kept.
SELECT as_of, method_version, inputs, pseudonym_key_version, pseudonym_key_fingerprint, NULL
FROM release_context

-- name: period_range
-- The first and last month with events or verdicts (the union of periods_of over the tables
-- verification made), up to the as-of month.
SELECT min(period), max(period) FROM ({periods})
WHERE period <= (SELECT strftime(as_of, '%Y-%m') FROM release_context)

-- name: periods_of
SELECT period FROM {table}

-- name: key_recorded
SELECT key_version, key_fingerprint FROM pseudonym_key

-- name: key_of_last_release
-- The key of a warehouse from before pseudonym_key was kept: its last release context's.
SELECT pseudonym_key_version, pseudonym_key_fingerprint FROM release_context

-- name: forget_key
DELETE FROM pseudonym_key

-- name: record_key
INSERT INTO pseudonym_key VALUES (?, ?)

-- name: schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL,
  ran BOOLEAN NOT NULL)

-- name: schema_version
SELECT coalesce(max(version), 0) FROM schema_migrations

-- name: migrations_done
SELECT version FROM schema_migrations

-- name: migration_done
INSERT INTO schema_migrations VALUES (?, ?, ?, ?)

-- name: schema_state
-- The schema this warehouse was last brought to (``warehouse.db.schema_fingerprint``) and
-- the migrations it records: a process whose schema is that one skips the DDL (M52).
SELECT (SELECT max(fingerprint) FROM schema_state),
       (SELECT coalesce(list(version ORDER BY version), []) FROM schema_migrations)

-- name: record_schema_state
CREATE OR REPLACE TABLE schema_state AS SELECT CAST(? AS VARCHAR) AS fingerprint

-- name: is_new
-- Whether the warehouse holds none of our tables yet.
SELECT count(*) = 0 FROM information_schema.tables WHERE table_schema = 'main'

-- name: has_table
SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = ?
