-- Disclosure control (contract §5, docs/disclosure.md) over indicator_values, then public labels.
-- Primary: count cells below k (and above 0), and rates of counts whose denominator is below k.
-- Indicators of disclosure 'published' (recomputable from the events or compliance product)
-- and 'none' are never suppressed.
-- Secondary: within one subject x period, a lone suppressed category count could be recovered
-- from the published total; suppress the next smallest category count too (or the total).
WITH base AS (
  SELECT *,
    (disclosure = 'count' AND value > 0 AND value < $k)
    OR (disclosure = 'rate_of_counts' AND denominator < $k) AS primary_suppressed,
    disclosure = 'count' AND indicator <> 'definitive_incidents.total' AS is_category_cell
  FROM indicator_values
),
groups AS (
  SELECT subject, period,
         count(*) FILTER (WHERE primary_suppressed AND is_category_cell) AS n_suppressed,
         count(*) FILTER (WHERE NOT primary_suppressed AND is_category_cell) AS n_open
  FROM base WHERE disclosure = 'count' GROUP BY ALL
),
secondary AS (
  SELECT b.subject, b.period, b.indicator
  FROM base b JOIN groups g USING (subject, period)
  WHERE g.n_suppressed = 1 AND b.is_category_cell AND NOT b.primary_suppressed
  QUALIFY row_number() OVER (PARTITION BY b.subject, b.period ORDER BY b.value, b.indicator) = 1
),
marked AS (
  SELECT b.*,
    coalesce(b.primary_suppressed
      OR s.indicator IS NOT NULL
      OR (b.indicator = 'definitive_incidents.total' AND g.n_suppressed = 1 AND g.n_open = 0),
      false) AS suppressed
  FROM base b
  LEFT JOIN secondary s USING (subject, period, indicator)
  LEFT JOIN groups g USING (subject, period)
)
SELECT $release_id AS release_id, m.period,
       coalesce(p.public_label, p.pseudonym, m.subject) AS subject,
       m.counterpart, m.indicator,
       CASE WHEN m.suppressed THEN NULL ELSE m.value END AS value,
       CASE WHEN m.suppressed THEN NULL ELSE m.numerator END AS numerator,
       CASE WHEN m.suppressed THEN NULL ELSE m.denominator END AS denominator,
       m.status, m.suppressed,
       CASE WHEN m.primary_suppressed THEN 'primary'
            WHEN m.suppressed THEN 'secondary' END AS suppression,
       m.escalation_level,
       $method_version AS method_version
FROM marked m LEFT JOIN party_directory p ON p.code = m.subject
ORDER BY period, subject, counterpart NULLS FIRST, indicator
