-- Everything that did not pass (asset quarantine), with the rule that failed:
-- row_number NULL = the whole submission (rejected at landing or parsing); version_conflict =
-- an accepted row set aside because its source handed in the same version with other content;
-- copy_of_other_party at stage validated with a row in copied_reports: an accepted row of a
-- file whose author's signed original arrived later.
CREATE OR REPLACE VIEW quarantine AS
SELECT sha256 AS submission_sha, CAST(NULL AS BIGINT) AS row_number, CAST(NULL AS VARCHAR) AS report_id,
       'landing' AS stage, rule, CAST(NULL AS VARCHAR) AS expectation,
       CAST(NULL AS VARCHAR) AS column_name, CAST(NULL AS VARCHAR) AS value, reason,
       'critical' AS severity
FROM landed_submissions WHERE rule IS NOT NULL
UNION ALL
SELECT sha256, NULL, NULL, 'staged', rule, NULL, NULL, NULL, reason, 'critical'
FROM staged_submissions WHERE rule IS NOT NULL
UNION ALL
SELECT sha256, NULL, NULL, 'anonymised', 'anonymisation_failed', NULL, NULL, NULL, reason, 'critical'
FROM anonymisation_failures
UNION ALL
SELECT submission_sha, row_number, report_id, 'validated', rule, expectation, column_name, value,
       reason, severity
FROM validation_findings
UNION ALL
SELECT submission_sha, row_number, report_id, 'validated', 'version_conflict', NULL, 'version',
       CAST(version AS VARCHAR),
       format('{} version {} was handed in by this source with {} different contents; every copy '
              'is quarantined and the previous version stays current until a higher version '
              'arrives', report_id, version, copies),
       'critical'
FROM version_conflicts
UNION ALL
SELECT submission_sha, row_number, report_id, 'validated', 'copy_of_other_party', NULL, 'report_id',
       report_id,
       format('the file is a byte-for-byte copy of {}, which its author signed: a copy is never '
              'independent corroboration, and its rows are set aside from the signed original''s '
              'arrival on', copy_of),
       'critical'
FROM copied_reports;
