-- name: insert_notifications
-- One statement per message; a notification Id seen before is left as it is. `state` is 'pending' for an
-- Outbound Message, 'failed' for a change CDC brought and Postgres refused (jobs/cdc_source.py keep_failed,
-- with its `error`); either is 'unmapped' when no active mapping reads the object.
INSERT INTO forcebridge.inbox (notification_id, object_name, sfid, fields, fields_bytes, organization_id, action_id,
                               state, error, attempts)
SELECT n.id, n.object_name, n.sfid, n.fields, pg_column_size(n.fields), %(org)s, %(action)s,
       CASE WHEN m.id IS NULL THEN 'unmapped' ELSE %(state)s END, n.error,
       CASE WHEN %(state)s = 'failed' THEN 1 ELSE 0 END
FROM jsonb_to_recordset(%(notifications)s::jsonb) AS n(id text, object_name text, sfid text, fields jsonb, error text)
LEFT JOIN forcebridge.mappings m
       ON lower(m.object_name) = lower(n.object_name) AND m.active
      AND m.direction IN ('sf_to_pg', 'bidirectional')
ON CONFLICT (notification_id) DO NOTHING
RETURNING notification_id, state;

-- name: claim_pending_notifications
-- Rows stay locked until the applying transaction ends; a dead worker's lock dies with its connection.
-- Sizes only: the job reads the fields of as many as fit its byte budget (notification_fields).
SELECT notification_id, coalesce(fields_bytes, pg_column_size(fields)) AS fields_bytes
FROM forcebridge.inbox
WHERE state = 'pending'
ORDER BY received_at, notification_id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: notification_fields
SELECT notification_id, object_name, sfid, fields
FROM forcebridge.inbox
WHERE notification_id = ANY(%(ids)s)
ORDER BY received_at, notification_id;

-- name: mark_notifications
UPDATE forcebridge.inbox
SET state = %(state)s, error = NULL, applied_at = now(), attempts = attempts + 1
WHERE notification_id = ANY(%(ids)s);

-- name: mark_notifications_failed
UPDATE forcebridge.inbox AS i
SET state = 'failed', error = f.error, attempts = attempts + 1
FROM unnest(%(ids)s::text[], %(errors)s::text[]) AS f(id, error)
WHERE i.notification_id = f.id;

-- name: count_pending_notifications
SELECT count(*) AS pending, min(received_at) AS oldest
FROM forcebridge.inbox WHERE state = 'pending';

-- name: requeue_notifications
-- Unmapped or failed notifications become pending again (after a mapping was created or a fix).
UPDATE forcebridge.inbox
SET state = 'pending', error = NULL
WHERE state = ANY(%(states)s) AND lower(object_name) = lower(%(object_name)s)
RETURNING notification_id;

-- name: retry_notification
UPDATE forcebridge.inbox SET state = 'pending', error = NULL
WHERE notification_id = %(id)s AND state IN ('failed', 'unmapped')
RETURNING notification_id;

-- name: list_notifications
SELECT notification_id, object_name, sfid, state, error, attempts, received_at, applied_at
FROM forcebridge.inbox
WHERE state = %(state)s
ORDER BY received_at DESC
LIMIT %(limit)s;

-- name: purge_applied_notifications
DELETE FROM forcebridge.inbox
WHERE state = 'applied' AND applied_at < now() - make_interval(days => %(days)s);
