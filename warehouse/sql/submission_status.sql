-- What `cbm status` lists: every submission with its accounting; per rule, how many of its
-- rows (or the whole file) were quarantined and the first reason given; its warnings
-- (remarks of parsing, and rules that kept their rows).
WITH findings AS (
  SELECT submission_sha, rule, severity, count(*) AS n,
         arg_min(reason, coalesce(row_number, -1)) AS reason
  FROM quarantine GROUP BY ALL
),
by_submission AS (
  SELECT submission_sha,
         map_from_entries(list({'k': rule, 'v': n} ORDER BY rule) FILTER (severity = 'critical')) AS reasons,
         map_from_entries(list({'k': rule, 'v': reason} ORDER BY rule) FILTER (severity = 'critical')) AS messages,
         list(format('{} ({} rows kept): {}', rule, n, reason) ORDER BY rule) FILTER (severity = 'warning') AS kept
  FROM findings GROUP BY ALL
)
SELECT s.sha256, s.party_code, s.kind, s.file_name, s.status, s.rows_read, s.rows_accepted,
       s.rows_quarantined,
       coalesce(b.reasons, MAP {}) AS reasons,
       coalesce(b.messages, MAP {}) AS messages,
       list_concat(from_json(s.notes, '["VARCHAR"]'), coalesce(b.kept, [])) AS warnings
FROM submissions s LEFT JOIN by_submission b ON b.submission_sha = s.sha256
ORDER BY s.party_code, s.file_name
