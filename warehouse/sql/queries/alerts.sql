-- Alerts (assets/alerts.py); what "unacknowledged" means is open_alerts() (open_alerts.sql).

-- name: delivered_attempt
INSERT INTO alert_deliveries VALUES (?, ?, ?, ?, ?, ?)

-- name: levels_summary
SELECT count(*), coalesce(max(level), 0) FROM dyad_levels

-- name: replace_levels
DELETE FROM dyad_levels;
INSERT INTO dyad_levels BY NAME SELECT * FROM new_dyad_levels;
DROP TABLE new_dyad_levels

-- name: open
SELECT * FROM open_alerts()

-- name: delivered
-- The (alert, notifier) pairs delivered at least once: never sent again.
SELECT DISTINCT alert_id, notifier FROM alert_deliveries WHERE ok

-- name: levels_listed
SELECT coalesce(p.public_label, p.pseudonym, d.subject) AS subject, d.counterpart,
       d.level, d.status, d.definitive_sum, d.evidence_sum,
       array_to_string(d.evidence, ' ') AS evidence
FROM dyad_levels d LEFT JOIN party_directory p ON p.code = d.subject
ORDER BY d.level DESC, subject, d.counterpart LIMIT $limit

-- name: open_listed
SELECT alert_id, subject, counterpart, level, previous_level, status, reason,
       CAST(as_of AS VARCHAR) AS as_of
FROM open_alerts() LIMIT $limit

-- name: failed_deliveries
-- (alert, notifier) pairs no attempt delivered.
SELECT count(*) FROM (
  SELECT alert_id, notifier FROM alert_deliveries GROUP BY ALL HAVING NOT bool_or(ok))
