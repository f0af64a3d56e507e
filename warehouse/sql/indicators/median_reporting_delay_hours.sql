-- Delay between an incident and its reports, for incidents alleged against the subject.
SELECT c.alleged_party AS subject, NULL AS counterpart, c.period, 'median_reporting_delay_hours' AS indicator,
       NULL AS numerator, count(*) AS denominator,
       median(date_diff('second', m.occurred_at, m.reported_at) / 3600.0) AS value,
       bool_and(c.status IN ('definitive', 'expired')) AS inputs_definitive,
       NULL AS escalation_level
FROM incident_clusters c JOIN event_members m USING (event_id)
WHERE c.alleged_party <> 'unknown'
GROUP BY ALL
