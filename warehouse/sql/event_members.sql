-- Second association pass (DESIGN.md): a report joins an *earlier* event of its category when
-- its occurred_at lies within that event's window of the event origin and it either shares a
-- keyed technical key with a member of that event, or lies within the policy radius of the
-- origin's lat/lon. Anchored on the origin and computed from the region pass only, so there
-- is no chaining. Input: region_members (the rows with their region event), association_windows.
-- Output: event_members, one row per report (without lat, lon and technical keys).
CREATE OR REPLACE TABLE event_members AS
WITH origins AS (
  SELECT m.event_id, m.category, m.occurred_at AS origin_at, m.lat AS o_lat, m.lon AS o_lon,
         m.occurred_at + to_hours(w.hours) AS window_end
  FROM region_members m JOIN association_windows w USING (category) WHERE m.is_origin
),
own AS (SELECT m.source, m.report_id, m.category, m.occurred_at, m.lat, m.lon, o.origin_at AS own_origin
        FROM region_members m JOIN origins o USING (event_id)),
member_keys AS (  -- with each report's own event's origin, which a candidate must precede
  SELECT m.event_id, m.source, m.report_id, m.category, m.occurred_at, o.origin_at AS own_origin,
         epoch_ms(m.occurred_at) // 86400000 AS day, unnest(string_split(m.technical_keys, ';')) AS tkey
  FROM region_members m JOIN origins o USING (event_id)
  WHERE m.technical_keys IS NOT NULL AND m.technical_keys <> ''
),
-- Key candidates the same way: each event's keys, once per day its window touches, joined
-- on (key, day) with the keys of every report (a key shared by hundreds of reports would
-- otherwise pair every one of them with every other).
event_key_days AS (
  SELECT k.*, unnest(range(epoch_ms(origin_at) // 86400000, epoch_ms(window_end) // 86400000 + 1)) AS day
  FROM (SELECT DISTINCT mk.event_id, mk.tkey, o.category, o.origin_at, o.window_end
        FROM member_keys mk JOIN origins o USING (event_id)) k
),
by_key AS (
  SELECT rk.source, rk.report_id, ek.event_id AS target, ek.origin_at
  FROM member_keys rk
  JOIN event_key_days ek ON ek.tkey = rk.tkey AND ek.day = rk.day AND ek.category = rk.category
  WHERE ek.event_id <> rk.event_id AND rk.occurred_at >= ek.origin_at AND rk.occurred_at <= ek.window_end
    AND ek.origin_at < rk.own_origin
),
-- Distance candidates are found through day buckets (epoch days; an origin's window spans a
-- few of them): an equality join on (category, day) instead of a range join of every
-- located report with every origin of its category. The exact window test follows.
origin_days AS (
  SELECT o.*, unnest(range(epoch_ms(o.origin_at) // 86400000, epoch_ms(o.window_end) // 86400000 + 1)) AS day
  FROM origins o WHERE o.o_lat IS NOT NULL
),
by_distance AS (
  SELECT r.source, r.report_id, o.event_id AS target, o.origin_at
  FROM (SELECT *, epoch_ms(occurred_at) // 86400000 AS day FROM own WHERE lat IS NOT NULL) r
  JOIN origin_days o ON o.category = r.category AND o.day = r.day
  WHERE r.occurred_at >= o.origin_at AND r.occurred_at <= o.window_end AND o.origin_at < r.own_origin
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
),
firsts AS (  -- each event's origin after the moves: its earliest member (an aggregate, no sort)
  SELECT event_id, arg_min((source, report_id), (occurred_at, source, report_id)) AS first
  FROM moved GROUP BY event_id
)
-- No ORDER BY: the table is read through queries that order or aggregate (sorting a million
-- members cost a tenth of this statement); published files order their own rows.
SELECT m.* EXCLUDE (lat, lon, technical_keys) REPLACE ((m.source, m.report_id) = f.first AS is_origin)
FROM moved m JOIN firsts f USING (event_id);
