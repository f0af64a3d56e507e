-- The member bundle (warehouse/bundle.py): what it holds of the warehouse, and how a member's
-- warehouse is filled from it (docs/disclosure.md, "What the member bundle holds").

-- name: named
-- The parties a release can name (subjects, alleged parties, the obligated): these keep their
-- code in the bundle; every other party is there only as its pseudonym.
SELECT subject_party AS code FROM verification_compliance
UNION SELECT alleged_party FROM verification_incidents
UNION SELECT party_code FROM registry_obligations

-- name: directory
-- party_directory as the bundle holds it: a named party keeps its code, class, bloc and
-- label, and its pseudonym only where verification matches it (its own compliance reports:
-- self-reports) or a product publishes it (no public label); every pseudonym otherwise stands
-- alone, keyed by itself, with its bloc and its class (a class other than state and
-- secretariat as a token, the same within the bundle: verification counts distinct classes
-- and never reads their names).
WITH named AS ({named}),
kept AS (
  SELECT p.code FROM party_directory p
  WHERE p.code IN (SELECT code FROM named)
    AND (p.public_label IS NULL OR EXISTS (
      SELECT 1 FROM verification_compliance c
      WHERE c.subject_party = p.code AND c.source = p.pseudonym))
)
SELECT p.code, CASE WHEN p.code IN (SELECT code FROM kept) THEN p.pseudonym ELSE '' END
         AS pseudonym,
       p.party_class, p.bloc, p.public_label
FROM party_directory p WHERE p.code IN (SELECT code FROM named)
UNION ALL
SELECT p.pseudonym, p.pseudonym,
       CASE WHEN p.party_class IN ('state', 'secretariat') THEN p.party_class
            ELSE 'class-' || left(sha256($release_id || ':' || p.party_class), 10) END,
       p.bloc, NULL
FROM party_directory p WHERE p.code NOT IN (SELECT code FROM kept)
ORDER BY ALL

-- name: reports
-- The rows a release was derived from: what verification read, of the submissions named (all
-- of them when $all), in the order the bundle's files hold them.
SELECT * FROM verification_{kind}
WHERE $all OR list_contains($shas, submission_sha)
ORDER BY submission_sha, row_number

-- name: report_columns
-- The columns and types of those rows (part of each file's fingerprint).
SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM verification_{kind})

-- name: report_fingerprints
-- Each submission's rows of that kind, summed up: how many, and two 64-bit hashes of every
-- row (all its columns), added up so the order of rows does not matter. Equal sums: the same
-- rows, so the same file (warehouse/bundle.py, M50).
SELECT submission_sha, count(*) AS n, sum(hash(v)) AS h1, sum(hash(v, 'cbm-bundle')) AS h2
FROM verification_{kind} v GROUP BY submission_sha ORDER BY submission_sha

-- name: table
SELECT * FROM {table} ORDER BY ALL

-- name: event_members
-- The reports behind the previous release's events: how the re-derivation names successors.
SELECT * FROM published_event_members WHERE release_id = ? ORDER BY ALL

-- name: load_reports
INSERT INTO reports_{kind} BY NAME SELECT * FROM read_parquet(?)

-- name: load_table
DELETE FROM {table};
INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)

-- name: load_made_table
-- A table its asset makes whole (release_context), not the schema.
CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_parquet(?)
