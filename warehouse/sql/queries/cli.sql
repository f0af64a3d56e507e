-- What the cbm command reads and writes itself (pipelines/runner.py, pipelines/cli/).

-- name: batch_rows
-- The rows of this run's submissions ($todo): read, accepted, quarantined.
SELECT coalesce(sum(rows_read), 0), coalesce(sum(rows_accepted), 0),
       coalesce(sum(rows_quarantined), 0)
FROM submissions WHERE sha256 IN (SELECT unnest($todo::VARCHAR[]))

-- name: anonymisation_failures
SELECT s.party_code || '/' || s.file_name || ': ' || f.reason
FROM anonymisation_failures f JOIN submissions s USING (sha256)
WHERE f.sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1

-- name: alert_counts
-- Every alert raised, and those nobody acknowledged (open_alerts(): defined once).
SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM open_alerts())

-- name: open_disputes
SELECT count(*) FROM disputes WHERE status = 'open'

-- name: known_parties
SELECT DISTINCT party_code FROM submissions

-- name: known_rules
-- The rules that quarantined something: what --rule can name.
SELECT DISTINCT rule FROM quarantine WHERE severity = 'critical'

-- name: quarantine
SELECT * FROM quarantine_listing($party, $rule)

-- name: alert_exists
SELECT 1 FROM alerts WHERE alert_id = ?

-- name: party_exists
SELECT 1 FROM party_directory WHERE code = ?

-- name: acknowledged_at
SELECT strftime(acked_at, '%Y-%m-%dT%H:%M:%SZ') FROM alert_acks
WHERE alert_id = ? AND by_party = ?

-- name: acknowledge
INSERT INTO alert_acks VALUES (?, ?, ?, ?)

-- name: unacknowledged
SELECT count(*) FROM open_alerts()
