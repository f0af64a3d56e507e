-- What `cbm status --quarantine` and the quarantine asset list: every quarantined row (or whole
-- file), by party, file and row; only_party and only_rule narrow it when not NULL.
CREATE OR REPLACE TEMP MACRO quarantine_listing(only_party, only_rule) AS TABLE
SELECT left(q.submission_sha, 12) AS submission, s.party_code AS party, s.file_name,
       q.row_number, q.report_id, q.stage, q.rule, q.column_name, q.value, q.reason
FROM quarantine q JOIN submissions s ON s.sha256 = q.submission_sha
WHERE q.severity = 'critical'
  AND (only_party IS NULL OR s.party_code = only_party)
  AND (only_rule IS NULL OR q.rule = only_rule)
ORDER BY s.party_code, s.file_name, q.row_number NULLS FIRST, q.rule;
