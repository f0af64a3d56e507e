-- What `cbm status --quarantine` lists: every quarantined row (or whole file), by party, file
-- and row; $party and $rule narrow it when given.
SELECT left(q.submission_sha, 12) AS submission, s.party_code AS party, s.file_name,
       q.row_number, q.report_id, q.stage, q.rule, q.column_name, q.value, q.reason
FROM quarantine q JOIN submissions s ON s.sha256 = q.submission_sha
WHERE q.severity = 'critical'
  AND ($party IS NULL OR s.party_code = $party)
  AND ($rule IS NULL OR q.rule = $rule)
ORDER BY s.party_code, s.file_name, q.row_number NULLS FIRST, q.rule
