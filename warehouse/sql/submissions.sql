-- Every submission seen (asset submissions; what `cbm status` lists): landing, parsing and
-- validation put together. Accounting: rows_read = rows_accepted + rows_quarantined (a row in
-- a version conflict was accepted by its suite, then quarantined: it counts as quarantined).
CREATE OR REPLACE VIEW submissions AS
WITH accepted AS (
  SELECT submission_sha, count(*) AS n, count(*) FILTER (WHERE version > 1) AS corrections
  FROM accepted_reports GROUP BY ALL
),
quarantined AS (
  SELECT submission_sha, count(DISTINCT row_number) AS n FROM (
    SELECT submission_sha, row_number FROM validation_findings WHERE severity = 'critical'
    UNION ALL SELECT submission_sha, row_number FROM version_conflicts
    UNION ALL SELECT submission_sha, row_number FROM copied_reports) GROUP BY ALL
)
SELECT l.sha256, l.file_sha256, l.party_code, l.source, l.key_version, l.kind, l.format,
       l.file_name, l.paths, l.size_bytes, l.received_at, l.landing_path, l.signature,
       l.intake_key, c.copy_of,
       CASE WHEN l.rule IS NOT NULL OR s.rule IS NOT NULL OR f.sha256 IS NOT NULL THEN 'rejected'
            WHEN s.sha256 IS NULL THEN 'landed'
            WHEN s.rows_read > 0 AND a.n IS NULL AND q.n IS NULL THEN 'staged'
            WHEN coalesce(a.n, 0) = s.rows_read THEN 'accepted'
            WHEN coalesce(a.n, 0) = 0 THEN 'rejected'
            ELSE 'partial' END AS status,
       CASE WHEN f.sha256 IS NULL THEN coalesce(s.rows_read, 0) ELSE 0 END AS rows_read,
       coalesce(a.n, 0) AS rows_accepted,
       coalesce(q.n, 0) AS rows_quarantined,
       coalesce(s.notes, '[]') AS notes,
       coalesce(a.corrections, 0) AS corrections   -- accepted rows that revise an earlier version
FROM landed_submissions l
LEFT JOIN staged_submissions s USING (sha256)
LEFT JOIN accepted a ON a.submission_sha = l.sha256
LEFT JOIN quarantined q ON q.submission_sha = l.sha256
LEFT JOIN submission_copies c ON c.sha256 = l.sha256
LEFT JOIN anonymisation_failures f ON f.sha256 = l.sha256;
