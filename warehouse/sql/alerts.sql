-- New alerts: a dyad whose level rose above the level last seen (table dyad_levels), or whose
-- tentative level was confirmed (same level, now definitive). Recorded once: the id is derived
-- from the dyad, the level, its status and the as-of time, and an id already recorded is not
-- added again. Input: new_dyad_levels (dyad_levels.sql at this as-of time); $raised_at.
INSERT INTO alerts BY NAME
SELECT * FROM (
  SELECT 'A-' || substr(md5(concat_ws('|', n.subject, n.counterpart, n.level, n.status, CAST(n.as_of AS VARCHAR))), 1, 16) AS alert_id,
         n.subject, n.counterpart, n.level,
         coalesce(o.level, 0) AS previous_level, n.status, o.status AS previous_status,
         CASE WHEN n.level > coalesce(o.level, 0) THEN 'rise' ELSE 'confirmed' END AS reason,
         n.evidence, n.tlp_rank, n.as_of, CAST($raised_at AS TIMESTAMPTZ) AS raised_at
  FROM new_dyad_levels n LEFT JOIN dyad_levels o USING (subject, counterpart)
  WHERE n.level > coalesce(o.level, 0)
     OR (n.level = o.level AND n.status = 'definitive' AND o.status = 'tentative')
) a
WHERE a.alert_id NOT IN (SELECT alert_id FROM alerts)
ORDER BY a.subject, a.counterpart;
