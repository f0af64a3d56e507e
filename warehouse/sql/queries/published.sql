-- What the release asset reads and records beside the products (assets/published.py).

-- name: corrections
-- Reports that supersede an earlier version, per submission.
SELECT sha256, corrections FROM submissions WHERE corrections > 0

-- name: rotation_recorded
-- The key rotation is recorded by the first release after it.
UPDATE key_rotations SET release_id = ? WHERE release_id IS NULL

-- name: members_of_release
SELECT count(*) FROM published_event_members WHERE release_id = ?

-- name: forget_event_members
DELETE FROM published_event_members WHERE release_id = ?

-- name: record_event_members
-- The reports behind this release's events (member tier): what names an event's successor
-- in the next release.
INSERT INTO published_event_members
SELECT $release_id, event_id, source, report_id FROM event_members
WHERE event_id IN (SELECT unnest($events::VARCHAR[])) ORDER BY ALL

-- name: record_own_publications
-- What this deployment published: each token (its identity, the release, its events and
-- their STIX ids) once, whichever release first published it.
INSERT INTO own_publications BY NAME
SELECT DISTINCT * FROM (
  SELECT unnest($token::VARCHAR[]) AS token, unnest($what::VARCHAR[]) AS what,
         unnest($category::VARCHAR[]) AS category, unnest($region::VARCHAR[]) AS region,
         unnest($week::VARCHAR[]) AS week, unnest($severity_band::VARCHAR[]) AS severity_band)
WHERE token NOT IN (SELECT token FROM own_publications) ORDER BY ALL

-- name: record_bundled_submissions
-- The submissions whose rows this release's member bundle carries (verification_<kind>, as
-- warehouse/bundle.py writes them), once each: their rows handed back in by another party are
-- a copy of this deployment's own output, signed or not (rule restates_other_party).
INSERT INTO own_publications BY NAME
SELECT DISTINCT submission_sha AS token, 'bundled_submission' AS what FROM (
  SELECT submission_sha FROM verification_incidents
  UNION ALL SELECT submission_sha FROM verification_compliance
  UNION ALL SELECT submission_sha FROM verification_attestations)
WHERE submission_sha NOT IN (SELECT token FROM own_publications) ORDER BY ALL

-- name: pending_rotations
-- The key rotations no release has named yet, oldest first.
SELECT from_version, from_fingerprint, to_version, to_fingerprint FROM key_rotations
WHERE release_id IS NULL ORDER BY rowid
