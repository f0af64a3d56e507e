-- Definitive incidents alleged against the subject, per category and in total (counts:
-- disclosure control applies).
WITH d AS (
  SELECT alleged_party AS subject, period, category FROM incident_clusters
  WHERE status = 'definitive' AND alleged_party <> 'unknown'
)
SELECT subject, NULL AS counterpart, period, 'definitive_incidents.' || category AS indicator,
       count(*) AS numerator, NULL AS denominator, count(*) AS value,
       true AS inputs_definitive, NULL AS escalation_level
FROM d GROUP BY ALL
UNION ALL
SELECT subject, NULL, period, 'definitive_incidents.total', count(*), NULL, count(*), true, NULL
FROM d GROUP BY ALL
