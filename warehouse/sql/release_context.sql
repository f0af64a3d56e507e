-- The release's "now", method and inputs (asset release_context; contract §4): $as_of when
-- given, otherwise the latest timestamp among the rows verification reads (verification_*:
-- current, TLP:RED left out). Every later asset of a run measures review windows and expiry
-- from this one instant. `inputs` are the submissions whose rows verification reads: a file
-- that was rejected, or held only TLP:RED rows, changes no released byte. `registry_digest`:
-- the registry tables' rows, which the release id covers.
CREATE OR REPLACE TABLE release_context AS
SELECT coalesce(CAST($as_of AS TIMESTAMPTZ), greatest(
         (SELECT max(reported_at) FROM verification_incidents),
         (SELECT max(greatest(responded_at, activity_start, notified_at, requested_at)) FROM verification_compliance),
         (SELECT max(observed_at) FROM verification_attestations))) AS as_of,
       CAST($method_version AS VARCHAR) AS method_version,
       (SELECT coalesce(list_sort(list(DISTINCT submission_sha)), []::VARCHAR[]) FROM (
          SELECT submission_sha FROM verification_incidents
          UNION ALL SELECT submission_sha FROM verification_compliance
          UNION ALL SELECT submission_sha FROM verification_attestations)) AS inputs,
       CAST($key_version AS VARCHAR) AS pseudonym_key_version,
       CAST($key_fingerprint AS VARCHAR) AS pseudonym_key_fingerprint,
       -- the registry as verification reads it (every row of the three registry tables): the
       -- release id covers it, so a registry edit never publishes under an existing id
       (SELECT sha256(coalesce(string_agg(line, chr(10) ORDER BY line), '')) FROM (
          SELECT 'party ' || CAST(p AS VARCHAR) AS line FROM party_directory p
          UNION ALL SELECT 'commitment ' || CAST(c AS VARCHAR) FROM registry_commitments c
          UNION ALL SELECT 'obligation ' || CAST(o AS VARCHAR) FROM registry_obligations o))
         AS registry_digest;
