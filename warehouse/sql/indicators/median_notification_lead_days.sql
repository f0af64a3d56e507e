SELECT subject, NULL AS counterpart, period, 'median_notification_lead_days' AS indicator,
       NULL AS numerator, count(lead_days) AS denominator,
       median(lead_days) AS value,
       bool_and(status = 'definitive') AS inputs_definitive,
       NULL AS escalation_level
FROM compliance_verdicts WHERE commitment_type = 'advance_notification' AND lead_days IS NOT NULL
GROUP BY ALL
