-- Public-safe incident clusters: only events whose every report is CLEAR/GREEN; no sources.
SELECT $release_id AS release_id, c.period, c.event_id, c.category, c.region, c.week,
       c.severity_band, c.status,
       CASE WHEN c.n_sources = 1 THEN '1' WHEN c.n_sources = 2 THEN '2'
            WHEN c.n_sources <= 4 THEN '3-4' ELSE '5+' END AS n_sources_bucket,
       CASE WHEN c.alleged_party = 'unknown' THEN 'unknown'
            ELSE coalesce(p.public_label, p.pseudonym, 'unknown') END AS alleged,
       $method_version AS method_version
FROM incident_clusters c LEFT JOIN party_directory p ON p.code = c.alleged_party
WHERE tlp_publishable(c.tlp_rank)
ORDER BY c.period, c.event_id
