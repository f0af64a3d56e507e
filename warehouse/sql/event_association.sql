-- Second association pass (DESIGN.md): a report joins an *earlier* event of its category when
-- its occurred_at lies within that event's window of the event origin and it either shares a
-- keyed technical key with a member of that event, or lies within the policy radius of the
-- origin's lat/lon. Anchored on the origin and computed from the region pass only, so there
-- is no chaining. Input: region_members (from the region pass), association_windows.
CREATE OR REPLACE TEMP TABLE associated_members AS
WITH origins AS (
  SELECT m.event_id, m.category, m.occurred_at AS origin_at, m.lat AS o_lat, m.lon AS o_lon,
         m.occurred_at + to_hours(w.hours) AS window_end
  FROM region_members m JOIN association_windows w USING (category) WHERE m.is_origin
),
own AS (SELECT m.source, m.report_id, m.category, m.occurred_at, m.lat, m.lon, o.origin_at AS own_origin
        FROM region_members m JOIN origins o USING (event_id)),
member_keys AS (
  SELECT event_id, source, report_id, unnest(string_split(technical_keys, ';')) AS tkey
  FROM region_members WHERE technical_keys IS NOT NULL AND technical_keys <> ''
),
by_key AS (
  SELECT r.source, r.report_id, o.event_id AS target, o.origin_at
  FROM member_keys rk
  JOIN member_keys ek ON ek.tkey = rk.tkey AND ek.event_id <> rk.event_id
  JOIN own r ON r.source = rk.source AND r.report_id = rk.report_id
  JOIN origins o ON o.event_id = ek.event_id AND o.category = r.category
  WHERE r.occurred_at >= o.origin_at AND r.occurred_at <= o.window_end AND o.origin_at < r.own_origin
),
by_distance AS (
  SELECT r.source, r.report_id, o.event_id AS target, o.origin_at
  FROM own r JOIN origins o
    ON o.category = r.category AND r.occurred_at >= o.origin_at AND r.occurred_at <= o.window_end
  WHERE r.lat IS NOT NULL AND o.o_lat IS NOT NULL AND o.origin_at < r.own_origin
    AND 2 * 6371.0 * asin(sqrt(
          pow(sin(radians(r.lat - o.o_lat) / 2), 2)
          + cos(radians(r.lat)) * cos(radians(o.o_lat)) * pow(sin(radians(r.lon - o.o_lon) / 2), 2)
        )) <= $radius_km
),
choice AS (  -- the earliest qualifying event wins; ties by id, so the result is stable
  SELECT source, report_id, arg_min(target, (origin_at, target)) AS target
  FROM (SELECT * FROM by_key UNION ALL SELECT * FROM by_distance) GROUP BY ALL
),
moved AS (
  SELECT m.* REPLACE (coalesce(c.target, m.event_id) AS event_id),
         CASE WHEN c.target IS NULL THEN 'region' ELSE 'key_or_distance' END AS joined_by
  FROM region_members m LEFT JOIN choice c USING (source, report_id)
)
SELECT * REPLACE (row_number() OVER (PARTITION BY event_id ORDER BY occurred_at, source, report_id) = 1 AS is_origin)
FROM moved;
