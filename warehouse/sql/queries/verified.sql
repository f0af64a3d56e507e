-- Verification's own statements beside its SQL files (assets/verified.py, assets/registry.py).

-- name: set_scope
-- What verification reads: up to the TLP level policy.yaml lets the members see.
INSERT INTO verification_scope VALUES (tlp_rank(?))

-- name: clear
-- The registry tables are written whole from the registry each time.
DELETE FROM {table}

-- name: accepted_rows
-- Every accepted row of the warehouse: while there is none (and no --as-of) there is nothing
-- to verify (release_context), and cbm run says so.
SELECT coalesce(sum(rows_accepted), 0) FROM submissions

-- name: context
SELECT as_of, len(inputs) FROM release_context

-- name: incident_rows
-- The incident reports verification clusters (a false positive joins no event), sorted once in
-- cbm.clustering's order (ORDER, NULLs first as polars sorts them), for the region pass.
CREATE OR REPLACE TEMP TABLE incident_rows AS
SELECT source, report_id, category, region, occurred_at,
       reported_at, severity, alleged_party, tlp, tlp_rank(tlp) AS tlp_rank,
       lat, lon, technical_keys
FROM verification_incidents WHERE determination <> 'false_positive'
ORDER BY category NULLS FIRST, region NULLS FIRST, occurred_at NULLS FIRST,
         source NULLS FIRST, report_id NULLS FIRST

-- name: region_pass_keys
-- What the region pass reads, in that order.
SELECT category, region, occurred_at, source, report_id FROM incident_rows

-- name: region_members
-- Each sorted incident beside the event the region pass gave it (by position).
CREATE OR REPLACE TEMP VIEW region_members AS
SELECT * FROM incident_rows POSITIONAL JOIN region_events

-- name: joined_by
SELECT joined_by, count(*) FROM event_members GROUP BY ALL

-- name: events_listed
SELECT event_id, category, region, week, n_sources, n_classes, alleged_party, status_reason
FROM incident_clusters WHERE status = $status
ORDER BY period DESC, event_id LIMIT $limit

-- name: open_disputes
SELECT dispute_id, object, event_id, commitment_id, subject, claim_period,
       CAST(opened_at AS VARCHAR) AS opened_at, age_days
FROM disputes WHERE status = 'open'
ORDER BY age_days DESC, dispute_id LIMIT $limit

-- name: largest_events
SELECT event_id, category, region, week, n_sources, n_reports, status, status_reason
FROM incident_clusters ORDER BY n_sources DESC, event_id LIMIT 25

-- name: first_month
-- Occurrences start at the first month any party reported on (not at valid_from, which may
-- lie years before the deployment began); the as-of month when none did.
SELECT coalesce(min(CAST(period || '-01' AS DATE)),
                CAST(date_trunc('month', CAST(? AS DATE)) AS DATE))
FROM verification_compliance

-- name: upcoming
SELECT entry_id, entry_type, subject, commitment_id,
       CAST(starts_at AS VARCHAR) AS starts_at, CAST(ends_at AS VARCHAR) AS ends_at
FROM calendar_entries WHERE status = 'upcoming' ORDER BY starts_at LIMIT $limit

-- name: add_registry_rows
-- One registry table's rows, column by column in its order (registry_rows).
INSERT INTO {table} SELECT * FROM registry_rows
