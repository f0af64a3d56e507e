-- What happened to each submission of an ingestion batch ($shas), for its partition in the
-- Dagster UI (asset check submission_outcome on validation_findings): party, file, kind,
-- status, the accounting, every rule that quarantined something with its reason in full,
-- and how many findings (lines of validation_findings) it has.
WITH reasons AS (
  SELECT submission_sha, rule, count(*) AS n, bool_or(row_number IS NULL) AS whole_file,
         min(reason) AS reason
  FROM quarantine
  WHERE severity = 'critical' AND submission_sha IN (SELECT unnest($shas::VARCHAR[]))
  GROUP BY ALL
)
SELECT s.sha256, s.party_code, s.file_name, s.kind, s.status, s.rows_read, s.rows_accepted,
       s.rows_quarantined, s.copy_of,
       coalesce(list(CASE WHEN r.whole_file THEN r.rule || ': ' || r.reason
                          ELSE r.rule || ' (' || r.n || ' rows): ' || r.reason END
                     ORDER BY r.whole_file DESC, r.n DESC, r.rule)
                FILTER (WHERE r.rule IS NOT NULL), []) AS reasons,
       -- its lines in validation_findings (rule hits, critical and warnings): the partition's
       -- dagster/row_count on that asset
       (SELECT count(*) FROM validation_findings v WHERE v.submission_sha = s.sha256) AS findings
FROM submissions s LEFT JOIN reasons r ON r.submission_sha = s.sha256
WHERE s.sha256 IN (SELECT unnest($shas::VARCHAR[]))
GROUP BY ALL
ORDER BY s.party_code, s.file_name
