-- The CDC source on the inbound seam (jobs/cdc_source.py).

-- name: cdc_pending_add
INSERT INTO forcebridge.cdc_pending (mapping_id, kind, record_id, since, reason, notification_id)
SELECT unnest(%(mapping_ids)s::int[]), unnest(%(kinds)s::text[]), unnest(%(record_ids)s::text[]),
       unnest(%(sinces)s::timestamptz[]), unnest(%(reasons)s::text[]), unnest(%(notification_ids)s::text[]);

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

-- name: cdc_retry_refetching
-- Retried refused changes wait for their record to be read whole (cdc_pending rows naming them).
UPDATE forcebridge.inbox SET state = 'refetching', error = NULL, attempts = attempts + 1
WHERE notification_id = ANY(%(ids)s::text[]);

-- name: cdc_retry_done
-- The read is done: each retried change is applied, or failed again with Postgres' reason.
UPDATE forcebridge.inbox AS i
SET state = f.state, error = f.error, applied_at = CASE WHEN f.state = 'applied' THEN now() END
FROM unnest(%(ids)s::text[], %(states)s::text[], %(errors)s::text[]) AS f(id, state, error)
WHERE i.notification_id = f.id AND i.state = 'refetching';

-- name: cdc_poll_pending
-- A poll of this mapping is already queued (the allocation pause's later turns add no second one).
SELECT EXISTS (SELECT 1 FROM forcebridge.cdc_pending WHERE mapping_id = %(mapping_id)s AND kind = 'poll') AS queued;
