-- name: add_api_usage
-- One statement per flush: (hour, kind, object) counts of calls made, calls saved, calls spent splitting.
INSERT INTO forcebridge.api_usage_hourly AS u (hour, kind, object_name, calls, saved, split_calls)
SELECT h, k, o, c, s, x
FROM unnest(%(hours)s::timestamptz[], %(kinds)s::text[], %(objects)s::text[], %(calls)s::bigint[],
            %(saved)s::bigint[], %(splits)s::bigint[]) AS t(h, k, o, c, s, x)
ON CONFLICT (hour, kind, object_name) DO UPDATE SET calls = u.calls + EXCLUDED.calls,
                                                    saved = u.saved + EXCLUDED.saved,
                                                    split_calls = u.split_calls + EXCLUDED.split_calls;

-- name: put_api_limit
INSERT INTO forcebridge.api_limits (name, max, remaining, observed_at)
VALUES (%(name)s, %(max)s, %(remaining)s, now())
ON CONFLICT (name) DO UPDATE SET max = EXCLUDED.max, remaining = EXCLUDED.remaining, observed_at = now();

-- name: api_limits
SELECT name, max, remaining, observed_at FROM forcebridge.api_limits ORDER BY name;

-- name: api_usage_last_24h
-- Our calls in each of the last 24 hours (the current one included), oldest first, zeros where none.
WITH hours AS (
    SELECT generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()),
                           interval '1 hour') AS hour
)
SELECT h.hour, coalesce(sum(u.calls), 0)::bigint AS calls, coalesce(sum(u.saved), 0)::bigint AS saved
FROM hours h LEFT JOIN forcebridge.api_usage_hourly u ON u.hour = h.hour
GROUP BY h.hour ORDER BY h.hour;

-- name: api_usage_by_kind
-- Our calls of the last 24 hours by kind of work.
SELECT kind, sum(calls)::bigint AS calls, sum(saved)::bigint AS saved, sum(split_calls)::bigint AS split_calls
FROM forcebridge.api_usage_hourly WHERE hour > now() - interval '24 hours'
GROUP BY kind ORDER BY kind;

-- name: api_usage_by_object
-- Per object: calls in the last 24 hours and in the last hour (the forecast's current rate).
SELECT object_name, sum(calls)::bigint AS calls_24h,
       coalesce(sum(calls) FILTER (WHERE hour >= date_trunc('hour', now()) - interval '1 hour'), 0)::bigint
           AS calls_recent,
       sum(saved)::bigint AS saved_24h
FROM forcebridge.api_usage_hourly
WHERE hour > now() - interval '24 hours' AND object_name <> ''
GROUP BY object_name ORDER BY object_name;

-- name: get_document
SELECT value FROM forcebridge.documents WHERE key = %(key)s;

-- name: put_document
INSERT INTO forcebridge.documents (key, value, updated_at) VALUES (%(key)s, %(value)s, now())
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

-- name: budget_polls_due
-- Polls the budget may space out or pause: those due now, with when they last ran.
SELECT p.mapping_id, p.last_polled_at, p.next_poll_at FROM forcebridge.poll_state p
JOIN forcebridge.mappings m ON m.id = p.mapping_id
WHERE m.active AND m.direction IN ('sf_to_pg', 'bidirectional')
  AND (p.next_poll_at IS NULL OR p.next_poll_at <= now());

-- name: put_off_poll
UPDATE forcebridge.poll_state SET next_poll_at = %(at)s WHERE mapping_id = %(mapping_id)s;
