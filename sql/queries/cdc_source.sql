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
SELECT coalesce(sum(count), 0)::bigint AS n FROM forcebridge.stats_hourly
WHERE direction = 'sf_to_pg' AND outcome = 'cdc_events' AND hour > now() - interval '1 hour';

-- name: cdc_forget_deletes
-- An undelete reverses the delete: its tombstone no longer stands between the record and Postgres.
DELETE FROM forcebridge.salesforce_deletes WHERE mapping_id = %(mapping_id)s AND sfid = ANY(%(sfids)s::text[]);
