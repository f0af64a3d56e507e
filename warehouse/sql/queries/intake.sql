-- Landing, parsing and anonymising submissions (assets/landing.py, staged.py, anonymised.py).
-- $shas / ?: the submissions (file hashes) of the run's partitions.

-- name: signatures_before
-- What landing said of these submissions before (their signature), where it accepted them.
SELECT sha256, signature FROM landed_submissions
WHERE rule IS NULL AND sha256 IN (SELECT unnest(?::VARCHAR[]))

-- name: forget_landed
DELETE FROM landed_submissions WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))

-- name: land
INSERT INTO landed_submissions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: landed_preview
SELECT left(sha256, 12) AS sha, party_code, kind, file_name, rule FROM landed_submissions
WHERE sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY party_code, file_name

-- name: to_parse
-- The landed submissions no file-level rule rejected: what the readers parse.
SELECT sha256, kind, format, party_code, file_name FROM landed_submissions
WHERE sha256 IN (SELECT unnest(?::VARCHAR[])) AND rule IS NULL ORDER BY sha256

-- name: forget_staged
DELETE FROM staged_submissions WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))

-- name: stage
INSERT INTO staged_submissions VALUES (?, ?, ?, ?, ?)

-- name: to_anonymise
-- The parsed submissions a reader could read: what anonymisation takes.
SELECT l.sha256, l.kind, l.party_code FROM landed_submissions l
JOIN staged_submissions s USING (sha256)
WHERE s.rule IS NULL AND l.sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY l.sha256

-- name: forget_anonymised
DELETE FROM anon_{kind} WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))

-- name: forget_anonymisation_failures
DELETE FROM anonymisation_failures WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))

-- name: anonymisation_failed
INSERT INTO anonymisation_failures VALUES (?, ?)

-- name: anonymised_preview
-- What a verifier may see of anonymised incidents (contract §5): publishable rows only, and
-- no free text or technical keys, whatever the scrubber left.
SELECT source, report_id, tlp, category, occurred_at, region, severity FROM anon_incidents
WHERE submission_sha IN (SELECT unnest(?::VARCHAR[]))
  AND tlp_publishable(tlp_rank(upper(trim(tlp))))
ORDER BY ALL
