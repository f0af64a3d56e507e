-- Verdicts derived only from CLEAR/GREEN reports (or from no report: missed) are published.
SELECT $release_id AS release_id, v.period,
       coalesce(p.public_label, p.pseudonym) AS subject,
       v.commitment_id, v.verdict, v.status,
       $method_version AS method_version
FROM compliance_verdicts v JOIN party_directory p ON p.code = v.subject
WHERE tlp_publishable(v.tlp_rank)
ORDER BY v.period, subject, v.commitment_id
