-- Computing the indicator values of some months (assets/indicators.py). ?: the months.

-- name: one
-- One indicator of the catalogue (warehouse/sql/indicators/), in the common columns.
SELECT subject, CAST(counterpart AS VARCHAR) AS counterpart, period, indicator,
       CAST(value AS DOUBLE) AS value, CAST(numerator AS BIGINT) AS numerator,
       CAST(denominator AS BIGINT) AS denominator, inputs_definitive,
       CAST(escalation_level AS INTEGER) AS escalation_level,
       '{disclosure}' AS disclosure
FROM ({statement})

-- name: forget
DELETE FROM indicator_values WHERE period IN (SELECT unnest(?::VARCHAR[]))

-- name: compute
-- Every indicator of the catalogue (the union of "one" over it) for $periods,
-- definitive once its inputs are and the month's review window ($review_days) has passed.
-- Computed from what may be published only (contract §5): events and verdicts derived from
-- CLEAR/GREEN reports. These names shadow the tables for the catalogue's SQL, so nothing
-- above TLP:GREEN reaches a published figure, and a figure that another product also
-- answers (events, compliance) gives the same number.
INSERT INTO indicator_values BY NAME
WITH
  incident_clusters AS (SELECT * FROM main.incident_clusters WHERE tlp_publishable(tlp_rank)),
  event_members AS (SELECT m.* FROM main.event_members m SEMI JOIN incident_clusters c USING (event_id)),
  compliance_verdicts AS (SELECT * FROM main.compliance_verdicts WHERE tlp_publishable(tlp_rank)),
  disputes AS (SELECT * FROM main.disputes WHERE tlp_publishable(tlp_rank))
SELECT * EXCLUDE (inputs_definitive),
  CASE WHEN inputs_definitive AND CAST($as_of AS DATE) >=
            last_day(CAST(period || '-01' AS DATE)) + to_days($review_days + 1)
       THEN 'definitive' ELSE 'tentative' END AS status
FROM ({catalogue})
WHERE period IN (SELECT unnest($periods::VARCHAR[]))
ORDER BY period, subject, counterpart, indicator

-- name: computed
SELECT count(*) FROM indicator_values WHERE period IN (SELECT unnest(?::VARCHAR[]))

-- name: by_indicator
SELECT split_part(indicator, '.', 1) AS indicator, count(*) AS cells,
       count(*) FILTER (WHERE status = 'definitive') AS definitive,
       count(*) FILTER (WHERE status = 'tentative') AS tentative
FROM indicator_values WHERE period IN (SELECT unnest(?::VARCHAR[]))
GROUP BY ALL ORDER BY ALL

-- name: per_month
SELECT period, count(*), count(*) FILTER (WHERE status = 'definitive'),
       coalesce(max(escalation_level), 0)
FROM indicator_values WHERE period IN (SELECT unnest(?::VARCHAR[])) GROUP BY ALL

-- name: escalation
SELECT period, subject, counterpart, value, escalation_level, status
FROM indicator_values
WHERE indicator = 'escalation_level' AND period IN (SELECT unnest(?::VARCHAR[]))
ORDER BY value DESC, subject, counterpart, period LIMIT 25
