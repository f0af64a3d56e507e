-- What `cbm status` lists: every submission with its accounting and, per rule, how many of
-- its rows (or the whole file) were quarantined.
SELECT s.sha256, s.party_code, s.kind, s.file_name, s.status, s.rows_read, s.rows_accepted,
       s.rows_quarantined,
       coalesce((SELECT map_from_entries(list({'k': rule, 'v': n} ORDER BY rule))
                 FROM (SELECT rule, count(*) AS n FROM quarantine q
                       WHERE q.submission_sha = s.sha256 AND q.severity = 'critical' GROUP BY rule)),
                MAP {}) AS reasons
FROM submissions s
ORDER BY s.party_code, s.file_name
