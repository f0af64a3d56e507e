-- The same bytes handed in by two parties are two submissions; the one landed later (at the
-- same time: the one whose party code sorts later) is a copy of the other (contract §1), and
-- a copy is never independent corroboration: its rows are quarantined (rule
-- copy_of_other_party). A view, owned by the submissions asset.
CREATE OR REPLACE VIEW submission_copies AS
SELECT l.sha256, o.sha256 AS original_sha, o.party_code || '/' || o.file_name AS copy_of
FROM landed_submissions l
JOIN landed_submissions o
  ON o.file_sha256 = l.file_sha256 AND o.party_code IS DISTINCT FROM l.party_code
 AND (o.received_at, o.party_code) < (l.received_at, l.party_code)
QUALIFY row_number() OVER (PARTITION BY l.sha256 ORDER BY o.received_at, o.party_code) = 1;
