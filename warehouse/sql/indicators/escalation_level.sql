-- Dyad = alleged party x affected region. Rolling 30-day severity-weighted sum at each
-- month's end; definitive events count fully, tentative evidence alone caps at the policy level.
WITH months AS (
  SELECT DISTINCT period, last_day(CAST(period || '-01' AS DATE)) + INTERVAL 1 DAY AS month_end
  FROM incident_clusters
),
dyads AS (SELECT DISTINCT alleged_party AS subject, region AS counterpart FROM incident_clusters WHERE alleged_party <> 'unknown'),
sums AS (
  SELECT d.subject, d.counterpart, m.period,
         coalesce(sum(c.severity) FILTER (WHERE c.status = 'definitive'), 0) AS definitive_sum,
         coalesce(sum(c.severity) FILTER (WHERE c.status IN ('definitive', 'tentative')), 0) AS evidence_sum
  FROM dyads d CROSS JOIN months m
  LEFT JOIN incident_clusters c
    ON c.alleged_party = d.subject AND c.region = d.counterpart
   AND c.origin_at >= m.month_end - INTERVAL 30 DAY AND c.origin_at < m.month_end
  GROUP BY ALL
),
levels AS (
  SELECT *, escalation_of(definitive_sum, $thresholds) AS definitive_level,
            least(escalation_of(evidence_sum, $thresholds), $tentative_max) AS tentative_level
  FROM sums
)
SELECT subject, counterpart, period, 'escalation_level' AS indicator,
       NULL AS numerator, NULL AS denominator,
       greatest(definitive_level, tentative_level) AS value,
       definitive_level >= tentative_level AS inputs_definitive,
       CAST(greatest(definitive_level, tentative_level) AS INTEGER) AS escalation_level
FROM levels WHERE evidence_sum > 0 OR definitive_sum > 0
