-- Validating a batch of submissions and storing what passes (assets/validated.py).
-- ?: the batch's submissions (file hashes).

-- name: forget_findings
DELETE FROM validation_findings WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))

-- name: forget_accepted
DELETE FROM reports_{kind} WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))

-- name: record_finding
-- One finding of a suite: every row of GX's query for it (the view finding_rows), with the
-- value that broke the rule, cut to 200 characters.
INSERT INTO validation_findings BY NAME
SELECT q.submission_sha, q.row_number, q.report_id,
       $rule AS rule, $expectation AS expectation, $column AS column_name,
       left(CAST(q."{value_column}" AS VARCHAR), 200) AS value,
       $reason AS reason, $severity AS severity
FROM finding_rows q

-- name: finding_samples
-- The first quarantined values of each finding ($samples of them), from rows whose TLP level
-- is publishable only (contract §5): what the UI and Data Docs show.
SELECT q.rule, q.expectation, q.column_name,
       list(coalesce(q.value, 'None') ORDER BY q.submission_sha, q.row_number)[:$samples]
FROM validation_findings q JOIN landed_submissions s ON s.sha256 = q.submission_sha
JOIN anon_{kind} a ON a.submission_sha = q.submission_sha AND a.row_number = q.row_number
WHERE s.kind = $kind AND q.submission_sha IN (SELECT unnest($shas::VARCHAR[]))
  AND coalesce(tlp_publishable(tlp_rank(upper(trim(a.tlp)))), false)
GROUP BY ALL

-- name: accept
-- The batch's rows that broke no critical rule, as accepted reports: every column but the
-- raw text (<field>__raw, subject_party__code) and the reading notes (row_error, row_origin).
INSERT INTO reports_{kind} BY NAME
SELECT COLUMNS(lambda c: c NOT LIKE '%\_\_%' ESCAPE '\' AND c NOT IN ('row_error', 'row_origin'))
FROM batch_{kind} b
WHERE NOT EXISTS (
  SELECT 1 FROM validation_findings q
  WHERE q.submission_sha = b.submission_sha AND q.row_number = b.row_number
    AND q.severity = 'critical')
ORDER BY submission_sha, row_number

-- name: quarantined_by_file
-- Rows quarantined (at least one critical finding) per kind and file of the batch.
SELECT s.kind, s.party_code, s.file_name, count(DISTINCT q.row_number)
FROM validation_findings q JOIN landed_submissions s ON s.sha256 = q.submission_sha
WHERE q.severity = 'critical' AND s.sha256 IN (SELECT unnest(?::VARCHAR[]))
GROUP BY ALL ORDER BY ALL

-- name: findings
-- The batch's findings, and the rows they quarantine (a row breaking three rules is one row).
SELECT count(*), count(DISTINCT (submission_sha, row_number)) FILTER (WHERE severity = 'critical')
FROM validation_findings WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))

-- name: accepted
SELECT count(*) FROM reports_{kind} WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))

-- name: quarantined_by_kind
SELECT s.kind, count(DISTINCT (q.submission_sha, q.row_number))
FROM validation_findings q JOIN landed_submissions s ON s.sha256 = q.submission_sha
WHERE q.severity = 'critical' AND s.sha256 IN (SELECT unnest(?::VARCHAR[]))
GROUP BY ALL

-- name: overall
-- Every submission, and those not accepted whole.
SELECT count(*), count(*) FILTER (WHERE status <> 'accepted') FROM submissions

-- name: done
-- The batch's submissions that are done: rejected at landing, or parsed (a file left waiting
-- at staging, its party's reading time spent, is not done).
SELECT sha256, intake_key FROM landed_submissions
WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))
  AND (rule IS NOT NULL OR sha256 IN (SELECT sha256 FROM staged_submissions))
