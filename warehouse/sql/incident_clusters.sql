-- Status ladder of every incident cluster (DESIGN.md, verification semantics).
-- Inputs: event_members (this run), disputes, verification_attestations, party_directory; $as_of,
-- policy values. An event is disputed while a dispute on a member is open or was upheld.
CREATE OR REPLACE TABLE incident_clusters AS
WITH m AS (
  SELECT em.*, pd.party_class, pd.bloc
  FROM event_members em JOIN party_directory pd ON pd.pseudonym = em.source
),
origin AS (
  SELECT event_id, category, region, occurred_at AS origin_at, source AS origin_source, bloc AS origin_bloc
  FROM m WHERE is_origin
),
alleged_counts AS (
  SELECT event_id, coalesce(alleged_party, 'unknown') AS alleged_party, count(*) AS n FROM m GROUP BY ALL
),
alleged AS (  -- the most named alleged party; a tie names none
  SELECT event_id, CASE WHEN count(*) = 1 THEN max(alleged_party) ELSE 'unknown' END AS alleged_party
  FROM (SELECT * FROM alleged_counts QUALIFY rank() OVER (PARTITION BY event_id ORDER BY n DESC) = 1)
  GROUP BY event_id
),
-- one row per event and source (a source's class and bloc come with it): the source-level
-- aggregates below read these instead of making DuckDB de-duplicate a million members per aggregate
member_sources AS (SELECT DISTINCT event_id, source, party_class, bloc FROM m),
att_rows AS (
  SELECT m.event_id, a.source, a.stance, ms.source IS NOT NULL AS by_member
  FROM m JOIN verification_attestations a
    ON a.subject_kind = 'incidents' AND a.subject_party = m.source AND a.subject_report_id = m.report_id
  LEFT JOIN member_sources ms ON ms.event_id = m.event_id AND ms.source = a.source
),
att AS (
  SELECT event_id,
         list_sort(list(DISTINCT source) FILTER (stance = 'corroborates' AND NOT by_member)) AS corroborators
  FROM att_rows GROUP BY event_id
),
disp AS (  -- rejected and withdrawn disputes no longer count
  SELECT event_id, bool_or(status = 'upheld') AS upheld,
         list_sort(list(DISTINCT opened_by)) AS contradictors
  FROM disputes WHERE object = 'event' AND status IN ('open', 'upheld') GROUP BY event_id
),
agg AS (
  SELECT s.event_id, s.n_sources, s.n_classes, r.n_reports, r.severity, r.last_reported_at,
         r.tlp_rank, s.sources, s.has_non_aligned
  FROM (
    SELECT ms.event_id,
           count(ms.source) AS n_sources,
           count(DISTINCT ms.party_class) AS n_classes,
           list_sort(list(ms.source)) AS sources,
           -- non-aligned: bloc null, or differing from the origin reporter's and the alleged party's
           bool_or(ms.bloc IS NULL OR (ms.bloc IS DISTINCT FROM o.origin_bloc AND ms.bloc IS DISTINCT FROM ap.bloc)) AS has_non_aligned
    FROM member_sources ms JOIN origin o USING (event_id) JOIN alleged al USING (event_id)
    LEFT JOIN party_directory ap ON ap.code = al.alleged_party
    GROUP BY ms.event_id
  ) s JOIN (
    SELECT event_id, count(*) AS n_reports, max(severity) AS severity,
           max(reported_at) AS last_reported_at, max(tlp_rank) AS tlp_rank
    FROM m GROUP BY event_id
  ) r USING (event_id)
)
SELECT
  o.event_id, o.category, o.region, o.origin_at,
  strftime(o.origin_at, '%Y-%m') AS period,
  strftime(o.origin_at, '%G-W%V') AS week,
  a.n_sources, a.n_classes, a.n_reports, a.severity,
  CASE WHEN a.severity <= 2 THEN 'low' WHEN a.severity = 3 THEN 'medium' ELSE 'high' END AS severity_band,
  al.alleged_party, a.last_reported_at, a.tlp_rank, a.sources,
  coalesce(t.corroborators, []) AS corroborators, coalesce(dp.contradictors, []) AS contradictors,
  CASE
    WHEN dp.event_id IS NOT NULL THEN 'disputed'
    WHEN a.n_sources >= 3 AND a.n_classes >= 2 AND a.has_non_aligned
         AND $as_of >= a.last_reported_at + to_days($review_days) THEN 'definitive'
    WHEN a.n_sources >= 2 OR len(coalesce(t.corroborators, [])) >= 1 THEN 'tentative'
    WHEN $as_of > a.last_reported_at + to_days($expiry_days) THEN 'expired'
    ELSE 'reported'
  END AS status,
  CASE
    WHEN dp.upheld THEN 'dispute upheld by the secretariat; contradicts attestation by ' || array_to_string(dp.contradictors, ',')
    WHEN dp.event_id IS NOT NULL THEN 'open dispute: contradicts attestation by ' || array_to_string(dp.contradictors, ',')
    WHEN a.n_sources >= 3 AND a.n_classes >= 2 AND a.has_non_aligned
         AND $as_of >= a.last_reported_at + to_days($review_days)
      THEN format('{} sources from {} classes incl. non-aligned; review window elapsed: {}', a.n_sources, a.n_classes, array_to_string(a.sources, ','))
    WHEN a.n_sources >= 3 AND a.n_classes >= 2 AND a.has_non_aligned
      THEN format('definitive criteria met; in review until {}', strftime(a.last_reported_at + to_days($review_days), '%Y-%m-%d'))
    WHEN a.n_sources >= 2 THEN format('{} independent sources: {}', a.n_sources, array_to_string(a.sources, ','))
    WHEN len(coalesce(t.corroborators, [])) >= 1 THEN 'one source corroborated by ' || array_to_string(t.corroborators, ',')
    WHEN $as_of > a.last_reported_at + to_days($expiry_days) THEN format('single source, older than {} days', $expiry_days)
    ELSE 'single source: ' || array_to_string(a.sources, ',')
  END AS status_reason
FROM origin o JOIN agg a USING (event_id) JOIN alleged al USING (event_id)
LEFT JOIN att t USING (event_id)
LEFT JOIN disp dp USING (event_id)
ORDER BY o.event_id;
