-- The submissions and quarantine assets' figures (assets/submissions.py); the runner's
-- summary and cbm status read the same totals.

-- name: by_status
SELECT status, count(*) FROM submissions GROUP BY ALL ORDER BY ALL

-- name: unbalanced
-- Submissions whose rows do not add up (rows_read = rows_accepted + rows_quarantined): none,
-- or the accounting is broken.
SELECT party_code, file_name, rows_read, rows_accepted, rows_quarantined FROM submissions
WHERE status NOT IN ('landed', 'staged') AND rows_read <> rows_accepted + rows_quarantined
ORDER BY ALL

-- name: totals
-- Submissions, those rejected whole, and rows read, accepted and quarantined (each row once,
-- whatever rules it broke): the totals of cbm status, the run's summary and the UI.
SELECT count(*), count(*) FILTER (WHERE status = 'rejected'),
       coalesce(sum(rows_read), 0), coalesce(sum(rows_accepted), 0),
       coalesce(sum(rows_quarantined), 0)
FROM submissions

-- name: listed
-- The submissions as the UI lists them: rejected and partial first, by party and file name,
-- each with why: every rule that quarantined its rows (how many rows) or the whole file.
WITH rules AS (
  SELECT submission_sha, rule, count(*) AS n, bool_or(row_number IS NULL) AS whole_file
  FROM quarantine WHERE severity = 'critical' GROUP BY ALL
),
why AS (
  SELECT submission_sha,
         string_agg(CASE WHEN whole_file THEN rule || ' (whole file)'
                         ELSE rule || ' (' || n || CASE WHEN n = 1 THEN ' row)' ELSE ' rows)' END
                    END, ', ' ORDER BY rule) AS why
  FROM rules GROUP BY ALL
)
SELECT s.party_code AS party, s.file_name, s.status, coalesce(w.why, '') AS why, s.kind,
       s.rows_read, s.rows_accepted, s.rows_quarantined, left(s.sha256, 16) AS submission
FROM submissions s LEFT JOIN why w ON w.submission_sha = s.sha256
ORDER BY s.status NOT IN ('rejected', 'partial'), s.party_code, s.file_name
LIMIT $limit

-- name: findings
-- Quarantine's lines: all, whole files, critical findings (each rule a row broke), warnings.
SELECT count(*), count(*) FILTER (WHERE row_number IS NULL),
       count(*) FILTER (WHERE severity = 'critical'),
       count(*) FILTER (WHERE severity = 'warning')
FROM quarantine

-- name: by_rule
SELECT stage, rule, severity, count(*) AS findings,
       count(DISTINCT submission_sha) AS submissions, min(reason) AS example_reason
FROM quarantine GROUP BY ALL ORDER BY findings DESC, rule

-- name: shown_to_verifiers
-- The first $limit lines of the quarantine listing as the Dagster UI shows them: a row's value
-- and report id only where its TLP level is publishable (CLEAR, GREEN); above that, or when
-- the row's level is unknown, withheld (cbm status --quarantine, an operator's command on the
-- secretariat's machine, shows them).
WITH listed AS (SELECT * FROM quarantine_listing(NULL, NULL) LIMIT $limit),
anon AS (
  SELECT submission_sha, row_number, tlp FROM anon_incidents
  UNION ALL SELECT submission_sha, row_number, tlp FROM anon_compliance
  UNION ALL SELECT submission_sha, row_number, tlp FROM anon_attestations
),
levels AS (
  SELECT left(submission_sha, 12) AS submission, row_number,
         tlp_publishable(tlp_rank(upper(trim(tlp)))) AS shown
  FROM anon
  WHERE left(submission_sha, 12) IN (SELECT submission FROM listed)
)
SELECT l.* REPLACE (
  CASE WHEN l.row_number IS NULL OR coalesce(v.shown, false) THEN l.report_id
       ELSE '[withheld: TLP]' END AS report_id,
  CASE WHEN l.row_number IS NULL OR coalesce(v.shown, false) THEN l.value
       ELSE '[withheld: TLP]' END AS value)
FROM listed l
LEFT JOIN levels v ON v.submission = l.submission AND v.row_number = l.row_number
ORDER BY l.party, l.file_name, l.row_number NULLS FIRST, l.rule
