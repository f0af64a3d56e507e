-- The security calendar (contract §4 calendar/): the activities parties notified in advance
-- (their own advance_notification reports with an activity_start) and every milestone of the
-- registry (commitments with schedule milestone:...), each with its verdict when one is due.
-- status: upcoming (no verdict yet), else the verdict's tentative or definitive.
-- Inputs: verification_compliance, registry_commitments, registry_obligations, party_directory,
-- compliance_verdicts.
CREATE OR REPLACE TABLE calendar_entries AS
WITH activities AS (
  SELECT 'N-' || substr(md5(concat_ws('|', r.source, r.report_id)), 1, 16) AS entry_id,
         'notified_activity' AS entry_type, r.subject_party AS subject, r.commitment_id, r.period,
         r.activity_start AS starts_at, coalesce(r.activity_end, r.activity_start) AS ends_at,
         false AS all_day, r.notified_at,
         round(date_diff('second', r.notified_at, r.activity_start) / 86400.0, 1) AS lead_days,
         c.lead_time_days AS required_lead_days,
         tlp_rank(r.tlp) AS tlp_rank
  FROM verification_compliance r
  JOIN registry_commitments c USING (commitment_id)
  JOIN party_directory pd ON pd.code = r.subject_party AND pd.pseudonym = r.source
  WHERE c.type = 'advance_notification' AND r.activity_start IS NOT NULL
),
milestone_dates AS (
  SELECT *, CAST(unnest(string_split(substr(schedule, 11), ',')) AS DATE) AS due_date
  FROM registry_commitments WHERE schedule LIKE 'milestone:%'
),
milestones AS (
  SELECT 'M-' || substr(md5(concat_ws('|', c.commitment_id, o.party_code, CAST(c.due_date AS VARCHAR))), 1, 16) AS entry_id,
         'milestone' AS entry_type, o.party_code AS subject, c.commitment_id,
         strftime(c.due_date, '%Y-%m') AS period,
         CAST(strftime(c.due_date, '%Y-%m-%d') || ' 00:00:00+00' AS TIMESTAMPTZ) AS starts_at,
         CAST(strftime(c.due_date + to_days(c.grace_days + 1), '%Y-%m-%d') || ' 00:00:00+00' AS TIMESTAMPTZ) AS ends_at,
         true AS all_day, CAST(NULL AS TIMESTAMPTZ) AS notified_at,
         CAST(NULL AS DOUBLE) AS lead_days, CAST(NULL AS INTEGER) AS required_lead_days, 0 AS tlp_rank
  FROM milestone_dates c JOIN registry_obligations o USING (commitment_id)
  WHERE c.due_date >= c.valid_from AND (c.valid_to IS NULL OR c.due_date <= c.valid_to)
)
SELECT e.entry_id, e.entry_type, e.subject, e.commitment_id, e.period, e.starts_at, e.ends_at,
       e.all_day, e.notified_at, e.lead_days, e.required_lead_days,
       CASE WHEN e.required_lead_days IS NULL OR e.lead_days IS NULL THEN NULL
            ELSE e.lead_days >= e.required_lead_days END AS lead_time_met,
       v.verdict, coalesce(v.status, 'upcoming') AS status,
       greatest(e.tlp_rank, coalesce(v.tlp_rank, 0)) AS tlp_rank
FROM (SELECT * FROM activities UNION ALL BY NAME SELECT * FROM milestones) e
LEFT JOIN compliance_verdicts v USING (commitment_id, subject, period)
ORDER BY e.starts_at, e.entry_id;
