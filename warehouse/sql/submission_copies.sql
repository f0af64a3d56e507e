-- The same bytes handed in by two parties are two submissions (contract §1). Only a signature
-- proves authorship: a file whose detached signature verifies for its party is its own and
-- never a copy; every other file with the same bytes is a copy of it, even one landed
-- earlier (its rows quarantined from then on, the change listed in the next release). Among
-- unsigned files, the one landed later (at the same time: the one whose party code sorts
-- later) is a copy of the other. A submission rejected whole (at landing or parsing) is never
-- anyone's original. A copy is never independent corroboration: its rows are quarantined (rule
-- copy_of_other_party). A view, owned by the submissions asset.
CREATE OR REPLACE VIEW submission_copies AS
WITH originals AS (
  SELECT l.sha256, l.file_sha256, l.party_code, l.file_name, l.received_at,
         l.signature = 'valid' AS signed
  FROM landed_submissions l
  LEFT JOIN staged_submissions s USING (sha256)
  WHERE l.rule IS NULL AND s.rule IS NULL
)
SELECT l.sha256, o.sha256 AS original_sha, o.party_code || '/' || o.file_name AS copy_of,
       o.signed AS original_signed
FROM landed_submissions l
JOIN originals o
  ON o.file_sha256 = l.file_sha256 AND o.party_code IS DISTINCT FROM l.party_code
 AND l.signature IS DISTINCT FROM 'valid'
 AND (o.signed OR (o.received_at, o.party_code) < (l.received_at, l.party_code))
QUALIFY row_number() OVER (
  PARTITION BY l.sha256 ORDER BY o.signed DESC, o.received_at, o.party_code) = 1;
