-- The CDC source on the inbound seam (jobs/cdc_source.py).

-- name: cdc_pending_add
INSERT INTO forcebridge.cdc_pending (mapping_id, kind, record_id, since, reason)
SELECT unnest(%(mapping_ids)s::int[]), unnest(%(kinds)s::text[]), unnest(%(record_ids)s::text[]),
       unnest(%(sinces)s::timestamptz[]), unnest(%(reasons)s::text[]);

-- name: cdc_pending_list
SELECT * FROM forcebridge.cdc_pending ORDER BY id LIMIT %(limit)s;

-- name: cdc_pending_done
DELETE FROM forcebridge.cdc_pending WHERE id = ANY(%(ids)s::bigint[]);

-- name: cdc_pending_count
SELECT count(*) AS n FROM forcebridge.cdc_pending;

-- name: cdc_poll_from
-- A poll that must cover what CDC may have missed starts no later than `since` (the last applied event).
UPDATE forcebridge.poll_state SET watermark = least(watermark, %(since)s), next_poll_at = now()
WHERE mapping_id = %(mapping_id)s;

-- name: cdc_subscription_state
SELECT * FROM forcebridge.cdc_subscriptions WHERE topic = %(topic)s;

-- name: cdc_events_last_hour
-- The current hour's bucket: the number Trends' CDC series shows for this hour.
SELECT coalesce(sum(count), 0)::bigint AS n FROM forcebridge.stats_hourly
WHERE direction = 'sf_to_pg' AND outcome = 'cdc_events' AND hour = date_trunc('hour', now());

-- name: cdc_subscriber_alive
-- Some worker holds the subscriber lock (jobs/cdc.py cdc_try_elect) in this database: the subscription's
-- recorded state is current. Nobody holds it when every worker is gone.
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND classid = 1128547139
                 AND objid = hashtext(%(topic)s)::oid AND objsubid = 2
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS held;

-- name: cdc_forget_deletes
-- An undelete reverses the delete: its tombstone no longer stands between the record and Postgres.
DELETE FROM forcebridge.salesforce_deletes WHERE mapping_id = %(mapping_id)s AND sfid = ANY(%(sfids)s::text[]);

-- name: cdc_keep_failed
-- Changes Postgres refused, kept as failed notifications are (the Errors page lists and retries the inbox).
INSERT INTO forcebridge.inbox (notification_id, object_name, sfid, fields, fields_bytes, organization_id, action_id,
                               state, error, attempts)
SELECT n.id, n.object_name, n.sfid, n.fields, pg_column_size(n.fields), '', 'cdc', 'failed', n.error, 1
FROM jsonb_to_recordset(%(changes)s::jsonb) AS n(id text, object_name text, sfid text, fields jsonb, error text)
ON CONFLICT (notification_id) DO NOTHING;
