-- Share of incidents alleged against the subject that more than one source reported.
SELECT alleged_party AS subject, NULL AS counterpart, period, 'corroboration_yield' AS indicator,
       count(*) FILTER (WHERE n_sources >= 2) AS numerator, count(*) AS denominator,
       numerator / denominator AS value,
       bool_and(status IN ('definitive', 'expired', 'disputed')) AS inputs_definitive,
       NULL AS escalation_level
FROM incident_clusters WHERE alleged_party <> 'unknown'
GROUP BY ALL
