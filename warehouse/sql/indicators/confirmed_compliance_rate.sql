SELECT subject, NULL AS counterpart, period, 'confirmed_compliance_rate' AS indicator,
       count(*) FILTER (WHERE verdict = 'honoured_confirmed') AS numerator,
       count(*) AS denominator,
       numerator / denominator AS value,
       bool_and(status = 'definitive') AS inputs_definitive,
       NULL AS escalation_level
FROM compliance_verdicts GROUP BY ALL
