-- The escalation level of every dyad (alleged party x affected region) at the as-of time: the
-- severity-weighted sum of the events that began in the 30 days up to it, against the agreed
-- thresholds, as escalation_level.sql computes it at each month's end. Definitive events count
-- fully; tentative evidence alone reaches at most $tentative_max. Publishable events only
-- (CLEAR/GREEN-derived): the level is what alerts tell people. Dyads at level 0 are left out.
-- Into new_dyad_levels: the alerts asset compares it with dyad_levels (the levels last seen),
-- then replaces them with it.
CREATE OR REPLACE TEMP TABLE new_dyad_levels AS
WITH recent AS (
  SELECT * FROM incident_clusters
  WHERE tlp_publishable(tlp_rank) AND alleged_party <> 'unknown'
    AND status IN ('definitive', 'tentative')
    AND origin_at > CAST($as_of AS TIMESTAMPTZ) - INTERVAL 30 DAY AND origin_at <= $as_of
),
sums AS (
  SELECT alleged_party AS subject, region AS counterpart,
         coalesce(sum(severity) FILTER (WHERE status = 'definitive'), 0) AS definitive_sum,
         sum(severity) AS evidence_sum,
         list_sort(list(event_id) FILTER (WHERE status = 'definitive')) AS definitive_events,
         list_sort(list(event_id)) AS all_events,
         max(tlp_rank) AS tlp_rank
  FROM recent GROUP BY ALL
),
levels AS (
  SELECT *, escalation_of(definitive_sum, $thresholds) AS definitive_level,
         least(escalation_of(evidence_sum, $thresholds), $tentative_max) AS tentative_level
  FROM sums
)
SELECT subject, counterpart,
       CAST(greatest(definitive_level, tentative_level) AS INTEGER) AS level,
       CASE WHEN definitive_level >= tentative_level THEN 'definitive' ELSE 'tentative' END AS status,
       CAST(definitive_sum AS BIGINT) AS definitive_sum, CAST(evidence_sum AS BIGINT) AS evidence_sum,
       CASE WHEN definitive_level >= tentative_level THEN coalesce(definitive_events, [])
            ELSE all_events END AS evidence,
       CAST(tlp_rank AS INTEGER) AS tlp_rank, CAST($as_of AS TIMESTAMPTZ) AS as_of
FROM levels WHERE greatest(definitive_level, tentative_level) > 0
ORDER BY subject, counterpart
