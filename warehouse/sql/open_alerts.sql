-- The alerts nobody acknowledged, newest first, with the subject's public label: what the
-- alerts asset delivers (cbm.alerts.Alert, field by field) and lists; unacknowledged is
-- defined here, once.
CREATE OR REPLACE TEMP MACRO open_alerts() AS TABLE
SELECT a.alert_id, coalesce(p.public_label, p.pseudonym, a.subject) AS subject, a.counterpart,
       a.level, a.previous_level, a.status, a.reason, a.evidence, a.tlp_rank, a.as_of
FROM alerts a LEFT JOIN party_directory p ON p.code = a.subject
WHERE a.alert_id NOT IN (SELECT alert_id FROM alert_acks)
ORDER BY a.as_of DESC, a.level DESC, a.alert_id;
