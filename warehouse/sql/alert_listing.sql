-- Every alert, newest first, as `cbm alerts` lists it: the subject by its public label, the
-- deliveries tried and the acknowledgements kept (lists, empty when none).
SELECT a.alert_id, coalesce(p.public_label, p.pseudonym, a.subject) AS subject, a.counterpart,
       a.level, a.previous_level, a.status, a.reason, a.evidence,
       strftime(a.as_of, '%Y-%m-%dT%H:%M:%SZ') AS as_of,
       strftime(a.raised_at, '%Y-%m-%dT%H:%M:%SZ') AS raised_at,
       coalesce((SELECT list({'notifier': notifier, 'attempt': attempt, 'ok': ok, 'detail': detail,
                              'at': strftime(attempted_at, '%Y-%m-%dT%H:%M:%SZ')}
                             ORDER BY attempted_at, notifier, attempt)
                 FROM alert_deliveries d WHERE d.alert_id = a.alert_id), []) AS deliveries,
       coalesce((SELECT list({'by': by_party, 'at': strftime(acked_at, '%Y-%m-%dT%H:%M:%SZ'),
                              'note': note} ORDER BY acked_at)
                 FROM alert_acks k WHERE k.alert_id = a.alert_id), []) AS acks
FROM alerts a LEFT JOIN party_directory p ON p.code = a.subject
ORDER BY a.raised_at DESC, a.level DESC, a.alert_id
