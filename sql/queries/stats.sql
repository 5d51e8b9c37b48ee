-- name: add_hourly_stats
-- One statement per batch: counts for several (mapping, outcome) pairs at once.
INSERT INTO forcebridge.stats_hourly AS s (hour, mapping_id, direction, outcome, count)
SELECT date_trunc('hour', now()), m, %(direction)s, o, c
FROM unnest(%(mapping_ids)s::int[], %(outcomes)s::text[], %(counts)s::bigint[]) AS t(m, o, c)
ON CONFLICT (hour, mapping_id, direction, outcome) DO UPDATE SET count = s.count + EXCLUDED.count;

-- name: hourly_stats
-- Every hour of the range appears, with zeros where nothing happened.
WITH hours AS (
    SELECT generate_series(date_trunc('hour', now()) - make_interval(hours => %(hours)s - 1),
                           date_trunc('hour', now()), interval '1 hour') AS hour
)
SELECT h.hour, s.mapping_id, s.direction, s.outcome, coalesce(s.count, 0) AS count
FROM hours h
LEFT JOIN forcebridge.stats_hourly s
       ON s.hour = h.hour AND (%(mapping_id)s::int IS NULL OR s.mapping_id = %(mapping_id)s)
ORDER BY h.hour, s.mapping_id, s.direction, s.outcome;
