SELECT subject, NULL AS counterpart, period, 'hotline_p95_response_hours' AS indicator,
       NULL AS numerator, count(latency_hours) AS denominator,
       quantile_cont(latency_hours, 0.95) AS value,
       bool_and(status = 'definitive') AS inputs_definitive,
       NULL AS escalation_level
FROM compliance_verdicts WHERE commitment_type = 'hotline_test' AND latency_hours IS NOT NULL
GROUP BY ALL
