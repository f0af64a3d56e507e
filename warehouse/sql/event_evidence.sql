-- For any event: its member reports and every attestation on them (what a verifier inspects).
CREATE OR REPLACE VIEW event_evidence AS
SELECT m.event_id, 'report' AS item, m.source, m.report_id, m.occurred_at AS at, m.region,
       m.severity, m.tlp, m.joined_by, NULL AS stance, NULL AS method
FROM event_members m
UNION ALL
SELECT m.event_id, 'attestation', a.source, a.report_id, a.observed_at, NULL, NULL, a.tlp, NULL,
       a.stance, a.method
FROM event_members m JOIN current_attestations a
  ON a.subject_kind = 'incidents' AND a.subject_party = m.source AND a.subject_report_id = m.report_id;
