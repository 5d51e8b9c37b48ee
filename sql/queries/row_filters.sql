-- Row filters (issue 17): changes waiting for Salesforce to say whether their records match, and the rows
-- that left a mapping's filter (jobs/row_filters.py, gateway/staging.py).

-- name: filter_checks_add
-- A record queued again gets a new time: a check that read it before this change does not delete its row.
INSERT INTO forcebridge.filter_checks (mapping_id, sfid, source, queued_at)
SELECT %(mapping_id)s, u.sfid, u.source, clock_timestamp()
FROM unnest(%(sfids)s::text[], %(sources)s::text[]) AS u(sfid, source)
ON CONFLICT (mapping_id, sfid) DO UPDATE SET source = excluded.source, queued_at = excluded.queued_at;

-- name: lock_filter_checks
-- One check at a time across workers (the minute task, an inbound apply's, a CDC batch's): two would read the
-- same records twice. Transaction-scoped advisory lock, held for the check.
SELECT pg_try_advisory_xact_lock(1178758745) AS locked;

-- name: filter_checks_add_unread
-- Rows with an sfid that no read from Salesforce filled (written by the app and sent, not read back yet: no
-- SystemModstamp), when the mapping gets a filter: a load cannot tell whether they match (rows_outside_snapshot
-- leaves them), the check can.
INSERT INTO forcebridge.filter_checks (mapping_id, sfid, source, queued_at)
SELECT {mapping_id}, t.sfid, 'write', clock_timestamp() FROM {table} t
WHERE t.sfid IS NOT NULL AND t.systemmodstamp IS NULL
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

-- name: lock_left_filter_rows
-- The rows about to leave, locked before delete_left_filter (a statement of its own, so it sees every local
-- change committed before the lock): an app's write in flight commits first, one that comes after waits.
SELECT t.id FROM {table} t WHERE t.sfid = ANY(%(sfids)s::text[]) ORDER BY t.id FOR UPDATE;

-- name: delete_left_filter
-- Records that left the filter at `stamp` (their SystemModstamp outside it): their rows deleted unless they
-- changed after that stamp or hold a local change not yet in Salesforce: an open or a failed change-log entry
-- (two tests, each one partial index's predicate), or one still captured (`locked`: the ids the lock returned;
-- change_capture has no index, so one scan for them all); the drain's check after sending re-decides those.
-- The tombstone (remembered like a delete, marked left_filter) only for rows deleted and records Postgres lacks.
WITH d AS (SELECT * FROM unnest(%(sfids)s::text[], %(stamps)s::timestamptz[]) AS d(sfid, stamp)),
removed AS (
    DELETE FROM {table} AS t USING d
    WHERE t.sfid = d.sfid AND forcebridge.not_backwards(t.systemmodstamp, d.stamp AT TIME ZONE 'UTC')
      AND NOT EXISTS (SELECT 1 FROM forcebridge.change_log c
                      WHERE c.mapping_id = {mapping_id} AND c.record_id = t.id
                        AND c.state IN ('NEW', 'PENDING', 'REQUEUED'))
      AND NOT EXISTS (SELECT 1 FROM forcebridge.change_log c
                      WHERE c.mapping_id = {mapping_id} AND c.record_id = t.id AND c.state = 'FAILED')
      AND t.id NOT IN (SELECT c.record_id FROM forcebridge.change_capture c
                       WHERE c.mapping_id = {mapping_id} AND c.record_id = ANY(%(locked)s::bigint[]))
    RETURNING t.sfid
), remembered AS (
    INSERT INTO forcebridge.salesforce_deletes (mapping_id, sfid, deleted_at, left_filter)
    SELECT {mapping_id}, d.sfid, d.stamp, true FROM d
    WHERE d.sfid IN (SELECT sfid FROM removed) OR NOT EXISTS (SELECT 1 FROM {table} t WHERE t.sfid = d.sfid)
    ON CONFLICT (mapping_id, sfid) DO UPDATE
    SET deleted_at = greatest(forcebridge.salesforce_deletes.deleted_at, excluded.deleted_at), recorded_at = now(),
        left_filter = forcebridge.salesforce_deletes.left_filter
)
SELECT count(*) AS removed FROM removed;

-- name: forget_filter_leaves
-- The filter changed: records that left the old one may be inside the new one (the reload brings them).
DELETE FROM forcebridge.salesforce_deletes WHERE mapping_id = %(mapping_id)s AND left_filter;

-- name: rows_outside_snapshot
-- Rows of records a filtered load's snapshot (taken at `at`) does not hold: outside the filter, or deleted.
-- Only rows Salesforce's state was read into, not newer than the snapshot: a row the app created while the
-- load ran (its sfid written back, no SystemModstamp yet) or one changed since is left to the write's filter
-- check and the poll. Rows with local changes waiting are kept by delete_left_filter.
SELECT t.sfid FROM {table} t
WHERE t.sfid IS NOT NULL AND t.systemmodstamp IS NOT NULL AND t.systemmodstamp <= (%(at)s::timestamptz AT TIME ZONE 'UTC')
  AND NOT EXISTS (SELECT 1 FROM {staging} s WHERE s.sfid = t.sfid);
