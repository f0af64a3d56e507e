-- Disputes (docs/verification.md, "Disputes"): one per report attested and party contradicting
-- it. A `contradicts` attestation opens it; it is
--   withdrawn  when the same party later attests the same report otherwise (a new attestation
--              with corroborates or cannot_assess, observed after the contradiction),
--   upheld     when the secretariat (the party of class secretariat) attests the report
--              `contradicts` at or after the opening: the report is found wrong,
--   rejected   when the secretariat attests it `corroborates`: the report stands,
-- whichever comes first; otherwise it is open. The secretariat's own `contradicts` on a report
-- nobody disputed opens a dispute that its ruling upholds at once.
-- Inputs: verification_attestations, party_directory, event_members, verification_compliance; $as_of.
CREATE OR REPLACE TABLE disputes AS
WITH att AS (
  SELECT a.source, a.subject_kind, a.subject_party, a.subject_report_id, a.stance, a.observed_at,
         tlp_rank(a.tlp) AS tlp_rank, pd.party_class = 'secretariat' AS is_ruling
  FROM verification_attestations a JOIN party_directory pd ON pd.pseudonym = a.source
),
rulings AS (
  SELECT subject_kind, subject_party, subject_report_id, observed_at AS ruled_at, tlp_rank,
         CASE stance WHEN 'contradicts' THEN 'upheld' ELSE 'rejected' END AS ruling
  FROM att WHERE is_ruling AND stance IN ('contradicts', 'corroborates')
),
opened AS (
  SELECT c.subject_kind, c.subject_party, c.subject_report_id, c.source AS opened_by,
         min(c.observed_at) AS opened_at, max(c.tlp_rank) AS tlp_rank
  FROM att c
  WHERE c.stance = 'contradicts'
    AND NOT (c.is_ruling AND EXISTS (
      SELECT 1 FROM att o
      WHERE o.stance = 'contradicts' AND NOT o.is_ruling AND o.subject_kind = c.subject_kind
        AND o.subject_party = c.subject_party AND o.subject_report_id = c.subject_report_id
        AND o.observed_at <= c.observed_at))
  GROUP BY ALL
),
withdrawn AS (
  SELECT o.subject_kind, o.subject_party, o.subject_report_id, o.opened_by,
         min(w.observed_at) AS withdrawn_at, max(w.tlp_rank) AS tlp_rank
  FROM opened o JOIN att w
    ON w.source = o.opened_by AND w.subject_kind = o.subject_kind AND w.subject_party = o.subject_party
   AND w.subject_report_id = o.subject_report_id AND w.stance <> 'contradicts'
   AND w.observed_at > o.opened_at AND NOT w.is_ruling
  GROUP BY ALL
),
ruled AS (
  SELECT o.subject_kind, o.subject_party, o.subject_report_id, o.opened_by,
         first(r.ruling ORDER BY r.ruled_at, r.ruling) AS ruling,
         min(r.ruled_at) AS ruled_at,
         first(r.tlp_rank ORDER BY r.ruled_at, r.ruling) AS tlp_rank
  FROM opened o JOIN rulings r USING (subject_kind, subject_party, subject_report_id)
  WHERE r.ruled_at >= o.opened_at
  GROUP BY ALL
),
decided AS (
  SELECT o.*,
         CASE WHEN w.withdrawn_at IS NOT NULL AND (r.ruled_at IS NULL OR w.withdrawn_at < r.ruled_at)
              THEN 'withdrawn' ELSE coalesce(r.ruling, 'open') END AS status,
         CASE WHEN w.withdrawn_at IS NOT NULL AND (r.ruled_at IS NULL OR w.withdrawn_at < r.ruled_at)
              THEN w.withdrawn_at ELSE r.ruled_at END AS closed_at,
         CASE WHEN w.withdrawn_at IS NOT NULL AND (r.ruled_at IS NULL OR w.withdrawn_at < r.ruled_at)
              THEN w.tlp_rank ELSE r.tlp_rank END AS closing_tlp_rank
  FROM opened o
  LEFT JOIN withdrawn w USING (subject_kind, subject_party, subject_report_id, opened_by)
  LEFT JOIN ruled r USING (subject_kind, subject_party, subject_report_id, opened_by)
)
SELECT 'D-' || substr(md5(concat_ws('|', d.subject_kind, d.subject_party, d.subject_report_id, d.opened_by)), 1, 16) AS dispute_id,
       CASE d.subject_kind WHEN 'incidents' THEN 'event' ELSE 'compliance' END AS object,
       em.event_id,
       c.commitment_id, c.subject_party AS subject, c.period AS claim_period,
       d.subject_kind, d.subject_party, d.subject_report_id, d.opened_by,
       d.opened_at, d.status, d.closed_at,
       greatest(0, date_diff('day', d.opened_at, coalesce(d.closed_at, $as_of))) AS age_days,
       greatest(d.tlp_rank, coalesce(d.closing_tlp_rank, 0), coalesce(em.tlp_rank, tlp_rank(c.tlp))) AS tlp_rank
FROM decided d
LEFT JOIN event_members em
  ON d.subject_kind = 'incidents' AND em.source = d.subject_party AND em.report_id = d.subject_report_id
LEFT JOIN verification_compliance c
  ON d.subject_kind = 'compliance' AND c.source = d.subject_party AND c.report_id = d.subject_report_id
WHERE em.event_id IS NOT NULL OR c.report_id IS NOT NULL
ORDER BY dispute_id;
