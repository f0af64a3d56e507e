-- Events of the previous release ($previous) whose id is gone: the current event that now
-- holds most of their reports (re-anchored or merged) is their successor. Reads
-- published_event_members (the reports behind each release's events, member tier) and
-- event_members (this run); only events published now ($published) can be successors.
WITH moved AS (
  SELECT p.event_id AS old_id, m.event_id AS new_id, count(*) AS n
  FROM published_event_members p
  JOIN event_members m USING (source, report_id)
  WHERE p.release_id = $previous
    AND p.event_id NOT IN (SELECT event_id FROM event_members)
    AND m.event_id IN (SELECT unnest($published::VARCHAR[]))
  GROUP BY ALL
)
SELECT old_id AS event_id, arg_max(new_id, (n, new_id)) AS successor
FROM moved GROUP BY old_id ORDER BY 1
