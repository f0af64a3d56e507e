-- Open disputes about the subject: on events alleged against it and on its own claims, in the
-- period of the event or the claim (disputes.sql). A count of rows of the disputes product.
SELECT subject, NULL AS counterpart, period, 'open_disputes' AS indicator,
       count(*) FILTER (WHERE status = 'open') AS numerator,
       count(*) AS denominator,
       count(*) FILTER (WHERE status = 'open') AS value,
       true AS inputs_definitive,
       NULL AS escalation_level
FROM (
  SELECT c.alleged_party AS subject, c.period, d.status
  FROM disputes d JOIN incident_clusters c USING (event_id)
  WHERE d.object = 'event' AND c.alleged_party <> 'unknown'
  UNION ALL
  SELECT d.subject, d.claim_period, d.status
  FROM disputes d JOIN compliance_verdicts v
    ON v.commitment_id = d.commitment_id AND v.subject = d.subject AND v.period = d.claim_period
  WHERE d.object = 'compliance'
)
GROUP BY ALL
