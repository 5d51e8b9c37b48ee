-- name: create_console_session
INSERT INTO forcebridge.console_sessions (token_hash, csrf_token, expires_at, password_binding)
VALUES (%(token_hash)s, %(csrf_token)s, now() + make_interval(secs => LEAST(%(idle_seconds)s, %(max_seconds)s)),
        %(binding)s);

-- name: touch_console_session
-- Sliding expiry up to an absolute lifetime: a session in use stays alive until max_seconds after sign-in, an
-- idle one dies after idle_seconds; one opened with another password is dead at once.
UPDATE forcebridge.console_sessions
SET last_seen_at = now(),
    expires_at = LEAST(now() + make_interval(secs => %(idle_seconds)s),
                       created_at + make_interval(secs => %(max_seconds)s))
WHERE token_hash = %(token_hash)s AND expires_at > now() AND password_binding = %(binding)s
  AND created_at > now() - make_interval(secs => %(max_seconds)s)
RETURNING csrf_token;

-- name: delete_console_session
DELETE FROM forcebridge.console_sessions WHERE token_hash = %(token_hash)s;

-- name: purge_console_sessions
DELETE FROM forcebridge.console_sessions
WHERE expires_at < now() OR password_binding IS DISTINCT FROM %(binding)s
   OR created_at < now() - make_interval(secs => %(max_seconds)s);

-- name: notification_backlog
SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'unmapped') AS unmapped,
       min(received_at) FILTER (WHERE state = 'pending') AS oldest_pending,
       max(applied_at) FILTER (WHERE state = 'applied') AS last_applied
FROM forcebridge.inbox;

-- name: last_sync_per_direction
SELECT direction, max(hour) AS hour, sum(count) FILTER (WHERE hour > now() - interval '24 hours') AS last_24h
FROM forcebridge.stats_hourly
WHERE outcome IN ('synced', 'success')   -- inbound says synced, the write path success
GROUP BY direction;

-- name: inbound_problems_per_object
SELECT lower(object_name) AS object_key,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'pending') AS pending
FROM forcebridge.inbox
WHERE state IN ('failed', 'pending')
GROUP BY lower(object_name);

-- name: problem_notifications
-- The Errors page: newest first, within the history we keep, one page at a time. Payloads (up to
-- MAX_MESSAGE_BYTES each) and reasons come as bounded excerpts; the whole payload is notification_payload.
SELECT notification_id, object_name, sfid, state, left(error, %(excerpt)s) AS error, attempts, received_at,
       left(fields::text, %(excerpt)s) AS excerpt, coalesce(fields_bytes, pg_column_size(fields)) AS fields_bytes
FROM forcebridge.inbox
WHERE state = %(state)s AND received_at > now() - make_interval(days => %(days)s)
ORDER BY received_at DESC, notification_id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_problem_notifications
SELECT count(*) AS n
FROM forcebridge.inbox
WHERE state = %(state)s AND received_at > now() - make_interval(days => %(days)s);

-- name: notification_payload
-- One notification's fields as JSON text: the Errors page links here instead of rendering them.
SELECT notification_id, fields::text AS payload
FROM forcebridge.inbox
WHERE notification_id = %(id)s;

-- name: unmapped_objects
SELECT object_name, count(*) AS notifications, max(received_at) AS last_received
FROM forcebridge.inbox
WHERE state = 'unmapped'
GROUP BY object_name
ORDER BY object_name;

-- name: ignore_notification
UPDATE forcebridge.inbox SET state = 'ignored'
WHERE notification_id = %(id)s AND state IN ('failed', 'unmapped')
RETURNING notification_id;

-- name: retry_failed_notifications
UPDATE forcebridge.inbox SET state = 'pending', error = NULL
WHERE state = 'failed'
RETURNING notification_id;

-- name: delete_notification
DELETE FROM forcebridge.inbox WHERE notification_id = %(id)s RETURNING state;

-- name: notification_state
SELECT state, error FROM forcebridge.inbox WHERE notification_id = %(id)s;

-- name: table_row_estimate
-- Exact counts of big tables are slow; the planner's estimate is good enough above this size.
SELECT c.reltuples::bigint AS estimate
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s;

-- name: stats_totals
SELECT mapping_id, direction, outcome, sum(count) AS count
FROM forcebridge.stats_hourly
GROUP BY mapping_id, direction, outcome;

-- name: inbound_latency_buckets
-- Seconds from receipt to applied, over the notifications the inbox still holds.
SELECT count(*) FILTER (WHERE applied_at - received_at <= make_interval(secs => b)) AS le, b
FROM forcebridge.inbox, unnest(%(bounds)s::float8[]) AS b
WHERE state = 'applied' AND applied_at IS NOT NULL
GROUP BY b ORDER BY b;

-- name: inbound_latency_total
SELECT count(*) AS n, coalesce(sum(extract(epoch FROM applied_at - received_at)), 0) AS seconds
FROM forcebridge.inbox
WHERE state = 'applied' AND applied_at IS NOT NULL;

-- name: beat_worker
INSERT INTO forcebridge.worker_heartbeats (worker) VALUES (%(worker)s)
ON CONFLICT (worker) DO UPDATE SET seen_at = now(), stopped_at = NULL;

-- name: stop_worker
-- A clean exit says so at once; a killed worker's row simply stops being refreshed. Old rows go.
WITH gone AS (DELETE FROM forcebridge.worker_heartbeats WHERE seen_at < now() - interval '1 day')
UPDATE forcebridge.worker_heartbeats SET stopped_at = now(), seen_at = now() WHERE worker = %(worker)s;

-- name: live_workers
SELECT count(*) FILTER (WHERE stopped_at IS NULL AND seen_at > now() - make_interval(secs => %(seconds)s))
           AS alive,
       max(seen_at) AS last_seen
FROM forcebridge.worker_heartbeats;
