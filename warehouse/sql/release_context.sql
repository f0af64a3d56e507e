-- The release's "now" and method (asset release_context; contract §4): $as_of when given,
-- otherwise the latest timestamp among the accepted current reports. Every later asset of a
-- run measures review windows and expiry from this one instant.
CREATE OR REPLACE TABLE release_context AS
SELECT coalesce(CAST($as_of AS TIMESTAMPTZ), greatest(
         (SELECT max(reported_at) FROM current_incidents),
         (SELECT max(greatest(responded_at, activity_start, notified_at, requested_at)) FROM current_compliance),
         (SELECT max(observed_at) FROM current_attestations))) AS as_of,
       CAST($method_version AS VARCHAR) AS method_version;
