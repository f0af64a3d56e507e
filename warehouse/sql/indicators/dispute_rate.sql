SELECT subject, NULL AS counterpart, period, 'dispute_rate' AS indicator,
       count(*) FILTER (WHERE verdict = 'disputed') AS numerator,
       count(*) AS denominator,
       numerator / denominator AS value,
       bool_and(status = 'definitive' OR verdict = 'disputed') AS inputs_definitive,
       NULL AS escalation_level
FROM compliance_verdicts GROUP BY ALL
