-- One row per commitment occurrence that is due (or reported) as of $as_of.
-- Occurrences come from the registry schedule (milestone: its dates, one occurrence each, in
-- the month of the date); on_event ones from the reports themselves. A claim with an open
-- dispute is disputed; one whose dispute the secretariat upheld is not_honoured (disputes.sql).
CREATE OR REPLACE TABLE compliance_verdicts AS
WITH months AS (
  SELECT CAST(d AS DATE) AS month_start, strftime(d, '%Y-%m') AS period
  FROM range(CAST($first_month AS TIMESTAMP), CAST(date_trunc('month', $as_of) AS TIMESTAMP) + INTERVAL 1 MONTH, INTERVAL 1 MONTH) t(d)
),
scheduled AS (
  SELECT c.commitment_id, o.party_code AS subject, m.period,
         CASE WHEN c.schedule LIKE 'annual:%'
              THEN make_date(year(m.month_start), month(m.month_start), CAST(right(c.schedule, 2) AS INTEGER))
              ELSE last_day(m.month_start) END AS due_date
  FROM registry_commitments c
  JOIN registry_obligations o USING (commitment_id)
  JOIN months m ON m.month_start >= date_trunc('month', c.valid_from)
               AND (c.valid_to IS NULL OR m.month_start <= c.valid_to)
  WHERE c.schedule = 'monthly'
     OR (c.schedule = 'quarterly' AND month(m.month_start) IN (3, 6, 9, 12))
     OR (c.schedule LIKE 'annual:%' AND month(m.month_start) = CAST(substr(c.schedule, 8, 2) AS INTEGER))
  UNION ALL
  SELECT c.commitment_id, o.party_code AS subject, strftime(c.due_date, '%Y-%m') AS period, c.due_date
  FROM (SELECT *, CAST(unnest(string_split(substr(schedule, 11), ',')) AS DATE) AS due_date
        FROM registry_commitments WHERE schedule LIKE 'milestone:%') c
  JOIN registry_obligations o USING (commitment_id)
  WHERE c.due_date >= c.valid_from AND (c.valid_to IS NULL OR c.due_date <= c.valid_to)
),
self_reports AS (  -- a party's own claims; others' reports about it do not make a claim
  SELECT r.*, c.type, c.lead_time_days, c.response_sla_hours, c.schedule,
         date_diff('second', r.notified_at, r.activity_start) / 86400.0 AS lead_days,
         date_diff('second', r.requested_at, r.responded_at) / 3600.0 AS latency_hours,
         tlp_rank(r.tlp) AS tlp_rank
  FROM verification_compliance r
  JOIN registry_commitments c USING (commitment_id)
  JOIN party_directory pd ON pd.code = r.subject_party AND pd.pseudonym = r.source
),
occurrences AS (
  SELECT commitment_id, subject, period, due_date FROM scheduled
  UNION
  SELECT commitment_id, subject_party, period, last_day(CAST(period || '-01' AS DATE))
  FROM self_reports WHERE schedule = 'on_event'
),
evidence AS (
  SELECT s.commitment_id, s.subject_party AS subject, s.period,
         count(*) AS n_reports,
         max(s.tlp_rank) AS tlp_rank,
         bool_or(s.claim IN ('not_honoured', 'partially_honoured')) AS admitted,
         bool_or(s.lead_time_days IS NOT NULL AND s.lead_days < s.lead_time_days) AS short_lead,
         bool_or(s.response_sla_hours IS NOT NULL AND s.latency_hours > s.response_sla_hours) AS slow_reply,
         min(s.lead_days) AS lead_days,
         max(s.latency_hours) AS latency_hours,
         bool_or(a.stance = 'corroborates' AND a.source <> s.source) AS corroborated
  FROM self_reports s
  LEFT JOIN verification_attestations a
    ON a.subject_kind = 'compliance' AND a.subject_party = s.source AND a.subject_report_id = s.report_id
  GROUP BY ALL
),
claim_disputes AS (
  SELECT s.commitment_id, s.subject_party AS subject, s.period,
         bool_or(d.status = 'open') AS contradicted, bool_or(d.status = 'upheld') AS upheld
  FROM self_reports s
  JOIN disputes d ON d.object = 'compliance' AND d.subject_party = s.source AND d.subject_report_id = s.report_id
  GROUP BY ALL
)
SELECT *, CASE WHEN verdict IN ('honoured_confirmed', 'missed', 'not_honoured', 'late')
                THEN 'definitive' ELSE 'tentative' END AS status
FROM (
SELECT o.commitment_id, c.type AS commitment_type, o.subject, o.period, o.due_date,
       o.due_date + to_days(c.grace_days) AS deadline,
       coalesce(e.n_reports, 0) AS n_reports, coalesce(e.tlp_rank, 0) AS tlp_rank,
       e.lead_days, e.latency_hours,
       CASE
         WHEN e.n_reports IS NULL THEN 'missed'
         WHEN cd.upheld THEN 'not_honoured'
         WHEN cd.contradicted THEN 'disputed'
         WHEN e.admitted THEN 'not_honoured'
         WHEN e.short_lead OR e.slow_reply THEN 'late'
         WHEN e.corroborated THEN 'honoured_confirmed'
         ELSE 'honoured_self_reported'
       END AS verdict,
       CASE
         WHEN e.n_reports IS NULL THEN format('no report by {} (due date + {} grace days)', strftime(o.due_date + to_days(c.grace_days), '%Y-%m-%d'), c.grace_days)
         WHEN cd.upheld THEN 'a dispute of the claim was upheld by the secretariat'
         WHEN cd.contradicted THEN 'a contradicting attestation is open'
         WHEN e.admitted THEN 'the party reports it did not (fully) honour the commitment'
         WHEN e.short_lead THEN format('notified {} days ahead; {} required', round(e.lead_days, 1), c.lead_time_days)
         WHEN e.slow_reply THEN format('replied after {} hours; {} allowed', round(e.latency_hours, 1), c.response_sla_hours)
         WHEN e.corroborated THEN 'claim corroborated by another party'
         ELSE 'claim not (yet) corroborated'
       END AS verdict_reason
FROM occurrences o
JOIN registry_commitments c USING (commitment_id)
LEFT JOIN evidence e USING (commitment_id, subject, period)
LEFT JOIN claim_disputes cd USING (commitment_id, subject, period)
WHERE e.n_reports IS NOT NULL OR o.due_date + to_days(c.grace_days) < CAST($as_of AS DATE)
)
ORDER BY commitment_id, subject, period;

