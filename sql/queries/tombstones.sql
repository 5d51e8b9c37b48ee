-- Records the app deleted in Postgres (the delete sent to Salesforce, or on its way) whose row is gone:
-- a late, duplicated or reordered Outbound Message for one of them must not bring the row back.

-- name: deleted_from_postgres
SELECT DISTINCT c.sfid FROM forcebridge.change_log c
WHERE c.mapping_id = %(mapping_id)s AND c.op = 'delete' AND c.sfid = ANY(%(sfids)s)
  AND c.state IN ('NEW', 'PENDING', 'REQUEUED', 'SUCCESS')
  AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.sfid = c.sfid)
UNION
SELECT a.sfid FROM forcebridge.change_log_archive a
WHERE a.mapping_id = %(mapping_id)s AND a.op = 'delete' AND a.sfid = ANY(%(sfids)s) AND a.state = 'SUCCESS'
  AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.sfid = a.sfid);

-- name: record_salesforce_deletes
INSERT INTO forcebridge.salesforce_deletes (mapping_id, sfid, deleted_at)
SELECT %(mapping_id)s, d.sfid, d.stamp FROM unnest(%(sfids)s::text[], %(stamps)s::timestamptz[]) AS d(sfid, stamp)
ON CONFLICT (mapping_id, sfid) DO UPDATE
SET deleted_at = greatest(forcebridge.salesforce_deletes.deleted_at, excluded.deleted_at), recorded_at = now(),
    left_filter = false;   -- a delete, whatever the filter did before

-- name: deleted_in_salesforce
-- Of these notifications, the ones for records deleted in Salesforce at or after their SystemModstamp (or
-- carrying none: a record deleted before the message was built has only its Id).
SELECT u.notification_id
FROM unnest(%(sfids)s::text[], %(stamps)s::timestamptz[], %(ids)s::text[]) AS u(sfid, stamp, notification_id)
JOIN forcebridge.salesforce_deletes d ON d.mapping_id = %(mapping_id)s AND d.sfid = u.sfid
WHERE forcebridge.removal_holds(u.stamp, d.deleted_at, d.left_filter);   -- not older than the notification

-- name: purge_salesforce_deletes
DELETE FROM forcebridge.salesforce_deletes WHERE recorded_at < now() - make_interval(secs => %(after_seconds)s);

-- name: oldest_row_missing_from_staging
-- Rows a load's snapshot lacks (deleted in Salesforce before it, or created after it): the poll must start no
-- later than their SystemModstamp, or a delete that happened before the snapshot is never seen.
-- Stored as UTC wall time (a column still timestamptz, kept by migration 0060, reads as UTC in our sessions).
SELECT min(t.systemmodstamp)::timestamp AT TIME ZONE 'UTC' AS oldest FROM {table} t
WHERE t.sfid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {staging} s WHERE s.sfid = t.sfid);

-- name: record_staged_deletes
-- The deletes a staged Bulk read lists (a poll), remembered like the ones read page by page.
INSERT INTO forcebridge.salesforce_deletes (mapping_id, sfid, deleted_at)
SELECT {mapping_id}, s.sfid, max(s.systemmodstamp) FROM {staging} s WHERE s.isdeleted GROUP BY s.sfid
ON CONFLICT (mapping_id, sfid) DO UPDATE
SET deleted_at = greatest(forcebridge.salesforce_deletes.deleted_at, excluded.deleted_at), recorded_at = now(),
    left_filter = false;   -- a delete, whatever the filter did before
