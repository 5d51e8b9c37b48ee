-- Row filters (issue 17): changes waiting for Salesforce to say whether their records match, and the rows
-- that left a mapping's filter (jobs/row_filters.py, gateway/staging.py).

-- name: filter_checks_add
-- A record queued again gets a new time: a check that read it before this change does not delete its row.
INSERT INTO forcebridge.filter_checks (mapping_id, sfid, source, queued_at)
SELECT %(mapping_id)s, u.sfid, u.source, clock_timestamp()
FROM unnest(%(sfids)s::text[], %(sources)s::text[]) AS u(sfid, source)
ON CONFLICT (mapping_id, sfid) DO UPDATE SET source = excluded.source, queued_at = excluded.queued_at;

-- name: filter_checks_list
SELECT mapping_id, sfid, source, queued_at FROM forcebridge.filter_checks ORDER BY queued_at, mapping_id, sfid
LIMIT %(limit)s;

-- name: filter_checks_done
-- Only the rows as they were listed (a record queued again meanwhile waits for the next check).
DELETE FROM forcebridge.filter_checks f
USING unnest(%(sfids)s::text[], %(queued)s::timestamptz[]) AS u(sfid, queued_at)
WHERE f.mapping_id = %(mapping_id)s AND f.sfid = u.sfid AND f.queued_at = u.queued_at;

-- name: filter_checks_count
SELECT count(*) AS n FROM forcebridge.filter_checks;

-- name: record_filter_leaves
-- Records that left the filter at `stamp` (their SystemModstamp outside it): remembered like deletes, marked.
INSERT INTO forcebridge.salesforce_deletes (mapping_id, sfid, deleted_at, left_filter)
SELECT %(mapping_id)s, d.sfid, d.stamp, true FROM unnest(%(sfids)s::text[], %(stamps)s::timestamptz[]) AS d(sfid, stamp)
ON CONFLICT (mapping_id, sfid) DO UPDATE
SET deleted_at = greatest(forcebridge.salesforce_deletes.deleted_at, excluded.deleted_at), recorded_at = now(),
    left_filter = forcebridge.salesforce_deletes.left_filter;

-- name: forget_filter_leaves
-- The filter changed: records that left the old one may be inside the new one (the reload brings them).
DELETE FROM forcebridge.salesforce_deletes WHERE mapping_id = %(mapping_id)s AND left_filter;

-- name: rows_outside_snapshot
-- Rows of records a filtered load's snapshot does not hold (outside the filter, or deleted), with none of
-- their local changes still waiting to go to Salesforce (those are sent first, then removed on a later sync).
SELECT t.sfid FROM {table} t
WHERE t.sfid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {staging} s WHERE s.sfid = t.sfid)
  AND NOT EXISTS (SELECT 1 FROM forcebridge.change_log c
                  WHERE c.mapping_id = {mapping_id} AND c.record_id = t.id
                    AND c.state IN ('NEW', 'PENDING', 'REQUEUED'));
