-- What `cbm status` lists: every path handed in. A submission's first path carries its
-- accounting; per rule, how many of its rows (or the whole file) were quarantined and the
-- first reason given; its warnings (remarks of parsing, rules that kept their rows). A
-- repeat (the same bytes by the same party under another name) is listed with duplicate_of
-- and no rows, so nothing is counted twice; a rejected submission whose party handed in a
-- different file under the same name later is superseded_by that one.
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
),
paths AS (
  SELECT s.sha256, p.path, p.position
  FROM submissions s, unnest(s.paths) WITH ORDINALITY AS p(path, position)
),
fixed AS (  -- a later submission of the same party under a name the rejected one had
  SELECT r.sha256, arg_min(n.sha256, n.received_at) AS superseded_by
  FROM submissions r JOIN paths rp ON rp.sha256 = r.sha256
  JOIN paths np ON np.path = rp.path
  JOIN submissions n ON n.sha256 = np.sha256 AND n.party_code = r.party_code
   AND n.sha256 <> r.sha256 AND n.received_at >= r.received_at AND n.status <> 'rejected'
  WHERE r.status = 'rejected'
  GROUP BY r.sha256
)
SELECT s.file_sha256 AS sha256, s.party_code AS party, s.kind, p.path AS file_name,
       s.status,
       CASE WHEN p.position = 1 THEN s.rows_read ELSE 0 END AS rows_read,
       CASE WHEN p.position = 1 THEN s.rows_accepted ELSE 0 END AS rows_accepted,
       CASE WHEN p.position = 1 THEN s.rows_quarantined ELSE 0 END AS rows_quarantined,
       CASE WHEN p.position = 1 THEN coalesce(b.reasons, MAP {}) ELSE MAP {} END AS reasons,
       CASE WHEN p.position = 1 THEN coalesce(b.messages, MAP {}) ELSE MAP {} END AS messages,
       CASE WHEN p.position = 1
            THEN list_concat(from_json(s.notes, '["VARCHAR"]'), coalesce(b.kept, []))
            ELSE [] END AS warnings,
       CASE WHEN p.position > 1 THEN s.party_code || '/' || s.file_name END AS duplicate_of,
       f.superseded_by,
       s.copy_of,
       s.sha256 AS submission
FROM submissions s
JOIN paths p ON p.sha256 = s.sha256
LEFT JOIN by_submission b ON b.submission_sha = s.sha256
LEFT JOIN fixed f ON f.sha256 = s.sha256
ORDER BY s.party_code, p.path, s.received_at
