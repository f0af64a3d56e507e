-- The security calendar of the release (contract §4 calendar/): notified activities and
-- milestones, CLEAR/GREEN-derived only; subjects by their public label.
SELECT $release_id AS release_id, e.period, e.entry_id, e.entry_type,
       coalesce(p.public_label, p.pseudonym) AS subject, e.commitment_id,
       e.starts_at, e.ends_at, e.all_day, e.notified_at,
       e.lead_days, e.required_lead_days, e.lead_time_met, e.verdict, e.status,
       $method_version AS method_version
FROM calendar_entries e JOIN party_directory p ON p.code = e.subject
WHERE tlp_publishable(e.tlp_rank)
ORDER BY e.starts_at, e.entry_id
