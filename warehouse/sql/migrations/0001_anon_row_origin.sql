-- Where each anonymised row came from (row_origin: the party's own row, or a report unrolled
-- from a STIX bundle); warehouses made before it had no such column. Its values come with the
-- next ingestion of each submission.
ALTER TABLE anon_incidents ADD COLUMN IF NOT EXISTS row_origin VARCHAR;
ALTER TABLE anon_compliance ADD COLUMN IF NOT EXISTS row_origin VARCHAR;
ALTER TABLE anon_attestations ADD COLUMN IF NOT EXISTS row_origin VARCHAR;
