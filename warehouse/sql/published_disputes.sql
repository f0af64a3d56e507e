-- Disputes of the release (contract §4 disputes/): those on a published event or verdict, from
-- CLEAR/GREEN reports and attestations only. No party that disputed or ruled is named; the
-- subject is the event's alleged party or the claim's subject, as events and compliance name it.
SELECT $release_id AS release_id,
       coalesce(c.period, d.claim_period) AS period,
       d.dispute_id, d.object, d.event_id, d.commitment_id,
       CASE WHEN d.object = 'event' THEN
              CASE WHEN c.alleged_party = 'unknown' THEN 'unknown'
                   ELSE coalesce(pa.public_label, pa.pseudonym, 'unknown') END
            ELSE coalesce(ps.public_label, ps.pseudonym) END AS subject,
       d.status,
       CAST(d.opened_at AS DATE) AS opened_on,
       CAST(d.closed_at AS DATE) AS closed_on,
       CAST(d.age_days AS INTEGER) AS age_days,
       $method_version AS method_version
FROM disputes d
LEFT JOIN incident_clusters c ON d.object = 'event' AND c.event_id = d.event_id
LEFT JOIN compliance_verdicts v
  ON d.object = 'compliance' AND v.commitment_id = d.commitment_id AND v.subject = d.subject
 AND v.period = d.claim_period
LEFT JOIN party_directory pa ON pa.code = c.alleged_party
LEFT JOIN party_directory ps ON ps.code = d.subject
WHERE tlp_publishable(d.tlp_rank)
  AND tlp_publishable(CASE WHEN d.object = 'event' THEN c.tlp_rank ELSE v.tlp_rank END)
ORDER BY period, d.dispute_id
