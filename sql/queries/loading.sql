-- Initial loads, polls and drift checks. Templates ({table}, {staging}, ...) are filled with psycopg.sql.

-- name: request_load
-- A mapping has at most one unfinished load: asking again returns it.
INSERT INTO forcebridge.loads (mapping_id, requested_by)
VALUES (%(mapping_id)s, %(requested_by)s)
ON CONFLICT (mapping_id) WHERE state IN ('queued', 'running', 'merging') DO NOTHING
RETURNING *;

-- name: open_load
SELECT * FROM forcebridge.loads
WHERE mapping_id = %(mapping_id)s AND state IN ('queued', 'running', 'merging');

-- name: get_load
SELECT * FROM forcebridge.loads WHERE id = %(id)s;

-- name: claim_load
-- Queued, or running with a lapsed lease (its runner died): this runner continues from the last page.
UPDATE forcebridge.loads
SET state = CASE WHEN state = 'queued' THEN 'running' ELSE state END, runner = %(runner)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s),
    started_at = coalesce(started_at, now()), updated_at = now()
WHERE id = %(id)s
  AND (state = 'queued' OR (state IN ('running', 'merging') AND (lease_until IS NULL OR lease_until < now())))
RETURNING *;

-- name: loads_to_run
SELECT id FROM forcebridge.loads
WHERE state = 'queued' OR (state IN ('running', 'merging') AND (lease_until IS NULL OR lease_until < now()))
ORDER BY id;

-- name: start_load_query
UPDATE forcebridge.loads
SET method = %(method)s, sf_job_id = %(sf_job_id)s, total = %(total)s, snapshot_at = %(snapshot_at)s,
    locator = NULL, pages = 0, loaded = 0, error = NULL, updated_at = now()
WHERE id = %(id)s;

-- name: set_load_total
UPDATE forcebridge.loads SET total = %(total)s, updated_at = now() WHERE id = %(id)s;

-- name: record_load_page
-- In the same transaction as the page's COPY: the staging rows and the locator move together.
UPDATE forcebridge.loads
SET locator = %(locator)s, pages = pages + 1, loaded = loaded + %(rows)s,
    total = coalesce(%(total)s, total), snapshot_at = coalesce(%(snapshot_at)s, snapshot_at),
    lease_until = now() + make_interval(secs => %(lease_seconds)s), updated_at = clock_timestamp()
WHERE id = %(id)s AND runner = %(runner)s   -- still ours: no other runner took the load over
RETURNING *;

-- name: set_load_state
UPDATE forcebridge.loads
SET state = %(state)s, error = %(error)s, updated_at = clock_timestamp(),
    merged = coalesce(%(merged)s, merged),
    finished_at = CASE WHEN %(state)s IN ('done', 'failed', 'cancelled') THEN clock_timestamp() END,
    lease_until = CASE WHEN %(state)s IN ('done', 'failed', 'cancelled') THEN NULL ELSE lease_until END
WHERE id = %(id)s AND (%(runner)s::text IS NULL OR runner = %(runner)s)
RETURNING *;

-- name: renew_load_lease
UPDATE forcebridge.loads SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = %(id)s AND runner = %(runner)s AND state IN ('running', 'merging')
RETURNING id;

-- name: release_load
-- The runner stops (interrupted, or Salesforce is away for now); the backstop picks the load up again.
UPDATE forcebridge.loads SET lease_until = NULL, error = %(error)s, updated_at = now()
WHERE id = %(id)s AND state IN ('running', 'merging') AND runner IS NOT DISTINCT FROM %(runner)s;

-- name: list_loads
-- What the console shows: the latest loads, newest first, with the mapping they belong to.
SELECT l.*, m.object_name,
       extract(epoch FROM (coalesce(l.finished_at, l.updated_at) - l.started_at)) AS seconds
FROM forcebridge.loads l JOIN forcebridge.mappings m ON m.id = l.mapping_id
WHERE (%(mapping_id)s::integer IS NULL OR l.mapping_id = %(mapping_id)s)
ORDER BY l.id DESC
LIMIT %(limit)s;

-- name: init_poll_state
-- After a load: polls start from the load's snapshot unless they already run from an earlier point.
INSERT INTO forcebridge.poll_state (mapping_id, watermark, deleted_since, next_poll_at)
VALUES (%(mapping_id)s, %(watermark)s, %(watermark)s, now())
ON CONFLICT (mapping_id) DO UPDATE
SET watermark = coalesce(forcebridge.poll_state.watermark, EXCLUDED.watermark),
    deleted_since = coalesce(forcebridge.poll_state.deleted_since, EXCLUDED.deleted_since);

-- name: get_poll_state
SELECT * FROM forcebridge.poll_state WHERE mapping_id = %(mapping_id)s;

-- name: polls_due
SELECT p.mapping_id FROM forcebridge.poll_state p
JOIN forcebridge.mappings m ON m.id = p.mapping_id
WHERE m.active AND m.direction IN ('sf_to_pg', 'bidirectional')
  AND (p.next_poll_at IS NULL OR p.next_poll_at <= now())
ORDER BY p.next_poll_at NULLS FIRST;

-- name: lock_poll
-- One poll per mapping at a time, across workers (transaction-scoped advisory lock).
SELECT pg_try_advisory_xact_lock(1178758728, %(mapping_id)s) AS locked;

-- name: advance_poll
-- Never backwards. Nor forwards when the watermark was moved back below `read_from` (where this poll's query
-- started) while the poll ran (cdc_poll_from: a CDC cover poll): the poll queued with that reads from there.
UPDATE forcebridge.poll_state
SET watermark = CASE WHEN watermark < %(read_from)s THEN watermark
                     ELSE coalesce(greatest(watermark, %(watermark)s), %(watermark)s, watermark) END,
    deleted_since = coalesce(%(deleted_since)s, deleted_since)
WHERE mapping_id = %(mapping_id)s;

-- name: finish_poll
-- last_covered_seconds: from the poll before (the old last_polled_at) to this one.
UPDATE forcebridge.poll_state
SET last_polled_at = now(), next_poll_at = now() + make_interval(secs => %(interval)s),
    last_covered_seconds = extract(epoch FROM now() - last_polled_at),
    last_changed = %(changed)s, last_deleted = %(deleted)s, last_api_calls = %(calls)s,
    api_calls_total = api_calls_total + %(calls)s, api_used = coalesce(%(api_used)s, api_used),
    api_limit = coalesce(%(api_limit)s, api_limit), last_error = %(error)s
WHERE mapping_id = %(mapping_id)s;

-- name: list_poll_state
SELECT p.*, m.object_name FROM forcebridge.poll_state p
JOIN forcebridge.mappings m ON m.id = p.mapping_id ORDER BY m.object_name;

-- name: insert_drift_report
INSERT INTO forcebridge.drift_reports (mapping_id, sf_count, pg_count, missing, extra, stale, unsynced, samples)
VALUES (%(mapping_id)s, %(sf_count)s, %(pg_count)s, %(missing)s, %(extra)s, %(stale)s, %(unsynced)s,
        %(samples)s)
RETURNING *;

-- name: set_drift_repaired
UPDATE forcebridge.drift_reports SET repaired = %(repaired)s WHERE id = %(id)s RETURNING *;

-- name: list_drift_reports
SELECT d.*, m.object_name FROM forcebridge.drift_reports d
JOIN forcebridge.mappings m ON m.id = d.mapping_id
WHERE (%(mapping_id)s::integer IS NULL OR d.mapping_id = %(mapping_id)s)
ORDER BY d.id DESC LIMIT %(limit)s;

-- name: create_staging
CREATE UNLOGGED TABLE IF NOT EXISTS {staging} ({columns});

-- name: drop_staging
DROP TABLE IF EXISTS {staging};

-- name: truncate_staging
TRUNCATE {staging};

-- name: count_staging
SELECT count(*) AS n FROM {staging};

-- name: copy_csv_into_staging
-- Bulk API 2.0 pages: every value quoted, a header line on each page, "" meaning null.
COPY {staging} ({columns}) FROM STDIN (FORMAT csv, HEADER true, FORCE_NULL ({columns}));

-- name: copy_rows_into_staging
COPY {staging} ({columns}) FROM STDIN;

-- name: link_staging_by_external_id
-- A row inserted in Postgres whose sfid never came back is the same record: link it, don't duplicate it.
UPDATE {table} AS t SET sfid = s.sfid
FROM {staging} s
WHERE t.sfid IS NULL AND t.{ext} IS NOT NULL AND t.{ext}::text = s.{ext}::text
  AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.sfid = s.sfid);

-- name: merge_staging
-- Never backwards (forcebridge.not_backwards, migration 0100): a row changes only for a state at least as new
-- as its own, rows still waiting to go to Salesforce keep their local values, identical rows are not rewritten,
-- records deleted in Salesforce at or after the staged state are not brought back (their tombstones).
-- Staged SystemModstamps are instants (timestamptz); mapped tables hold UTC wall time (AT TIME ZONE 'UTC'
-- here and below: right whatever the session's TimeZone).
INSERT INTO {table} AS t (sfid, systemmodstamp, isdeleted, _hc_lastop, _hc_err{columns})
SELECT s.sfid, (s.systemmodstamp AT TIME ZONE 'UTC'), coalesce(s.isdeleted, false), 'SYNCED', NULL{s_columns}
FROM {staging} s
WHERE NOT EXISTS (SELECT 1 FROM forcebridge.salesforce_deletes d
                  WHERE d.mapping_id = {mapping_id} AND d.sfid = s.sfid
                    AND forcebridge.removal_holds(s.systemmodstamp, d.deleted_at, d.left_filter))
ON CONFLICT (sfid) DO UPDATE
SET systemmodstamp = EXCLUDED.systemmodstamp, isdeleted = EXCLUDED.isdeleted,
    -- our own write coming back with the values the row holds keeps its INSERTED/UPDATED mark (apps wait
    -- for it); anything else Salesforce brings is SYNCED
    _hc_lastop = CASE WHEN t._hc_lastop IN ('INSERTED', 'UPDATED') AND NOT (false{differs}) THEN t._hc_lastop
                      ELSE 'SYNCED' END,
    _hc_err = NULL{set_columns}
WHERE forcebridge.not_backwards(t.systemmodstamp, EXCLUDED.systemmodstamp)
  AND (t.systemmodstamp IS DISTINCT FROM EXCLUDED.systemmodstamp OR t.isdeleted IS DISTINCT FROM EXCLUDED.isdeleted
       OR t._hc_err IS NOT NULL{differs})
  AND NOT EXISTS (SELECT 1 FROM forcebridge.change_log c
                  WHERE c.mapping_id = {mapping_id} AND c.record_id = t.id
                    AND c.state IN ('NEW', 'PENDING', 'REQUEUED'))
  -- a state from before an app change we since wrote to Salesforce would undo that write (docs/architecture.md,
  -- "Never backwards after our own write"; the row waits for a newer read, as a row with local changes does)
  AND NOT EXISTS (SELECT 1 FROM forcebridge.change_log c
                  WHERE c.mapping_id = {mapping_id} AND c.sfid = t.sfid AND c.state = 'SUCCESS' AND c.op = 'update'
                    AND c.sent IS NOT NULL
                    AND EXCLUDED.systemmodstamp < date_trunc('second', c.created_at AT TIME ZONE 'UTC'))

-- name: lock_for_merge
-- Writers wait for the merge (inbound applies, app writes); readers do not.
LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE;

-- name: mapped_table_is_empty
SELECT NOT EXISTS (SELECT 1 FROM {table}) AS empty;

-- name: insert_staging_into_empty
-- The first load into an empty table (locked by lock_for_merge): nothing to guard against, a plain INSERT.
INSERT INTO {table} (sfid, systemmodstamp, isdeleted, _hc_lastop, _hc_err{columns})
SELECT s.sfid, (s.systemmodstamp AT TIME ZONE 'UTC'), coalesce(s.isdeleted, false), 'SYNCED', NULL{s_columns}
FROM {staging} s
WHERE NOT EXISTS (SELECT 1 FROM forcebridge.salesforce_deletes d
                  WHERE d.mapping_id = {mapping_id} AND d.sfid = s.sfid
                    AND forcebridge.removal_holds(s.systemmodstamp, d.deleted_at, d.left_filter));

-- name: max_staging_modstamp
SELECT max(systemmodstamp) AS newest FROM {staging};

-- name: delete_from_salesforce
-- Deletes found by a poll: gone in Postgres too, unless the row changed again after the delete.
DELETE FROM {table} AS t
USING unnest(%(sfids)s::text[], %(stamps)s::timestamptz[]) AS d(sfid, stamp)
WHERE t.sfid = d.sfid AND forcebridge.not_backwards(t.systemmodstamp, d.stamp AT TIME ZONE 'UTC');

-- name: mark_deleted_from_salesforce
UPDATE {table} AS t
SET isdeleted = true, systemmodstamp = coalesce(d.stamp AT TIME ZONE 'UTC', t.systemmodstamp), _hc_lastop = 'SYNCED',
    _hc_err = NULL
FROM unnest(%(sfids)s::text[], %(stamps)s::timestamptz[]) AS d(sfid, stamp)
WHERE t.sfid = d.sfid AND forcebridge.not_backwards(t.systemmodstamp, d.stamp AT TIME ZONE 'UTC');

-- name: drift_counts
SELECT (SELECT count(*) FROM {staging}) AS sf_count,
       (SELECT count(*) FROM {table} WHERE sfid IS NOT NULL AND NOT coalesce(isdeleted, false)) AS pg_count,
       (SELECT count(*) FROM {staging} s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.sfid = s.sfid)) AS missing,
       (SELECT count(*) FROM {table} t WHERE t.sfid IS NOT NULL AND NOT coalesce(t.isdeleted, false)
          AND NOT EXISTS (SELECT 1 FROM {staging} s WHERE s.sfid = t.sfid)) AS extra,
       (SELECT count(*) FROM {staging} s JOIN {table} t ON t.sfid = s.sfid
          WHERE t.systemmodstamp IS NULL OR t.systemmodstamp < (s.systemmodstamp AT TIME ZONE 'UTC')) AS stale,
       (SELECT count(*) FROM {table} WHERE sfid IS NULL) AS unsynced;

-- name: drift_missing
SELECT s.sfid FROM {staging} s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.sfid = s.sfid)
ORDER BY s.sfid LIMIT %(limit)s;

-- name: drift_extra
SELECT t.sfid FROM {table} t WHERE t.sfid IS NOT NULL AND NOT coalesce(t.isdeleted, false)
  AND NOT EXISTS (SELECT 1 FROM {staging} s WHERE s.sfid = t.sfid)
ORDER BY t.sfid LIMIT %(limit)s;

-- name: drift_stale
SELECT s.sfid FROM {staging} s JOIN {table} t ON t.sfid = s.sfid
WHERE t.systemmodstamp IS NULL OR t.systemmodstamp < (s.systemmodstamp AT TIME ZONE 'UTC')
ORDER BY s.sfid LIMIT %(limit)s;

-- name: rows_without_sfid
SELECT count(*) AS n FROM {table} WHERE sfid IS NULL;

-- name: enqueue_initial_push
-- Rows that never reached Salesforce and have no open change: logged as inserts, like the capture
-- trigger would have, so the write path sends them (and retries, and records every outcome).
INSERT INTO forcebridge.change_log (mapping_id, op, record_id, sfid, external_id)
SELECT {mapping_id}, 'insert', t.id, NULL, {ext}
FROM {table} t
WHERE t.sfid IS NULL
  AND NOT EXISTS (SELECT 1 FROM forcebridge.change_log c
                  WHERE c.mapping_id = {mapping_id} AND c.record_id = t.id
                    AND c.state IN ('NEW', 'PENDING', 'REQUEUED'))

-- name: claim_initial_push
-- The open inserts of one mapping for a Bulk ingest job: leased like the drain's claims. An insert that
-- excludes columns (hc_capture_insert_from_row's excluded_cols) is left to the drain: one job's CSV has one
-- set of columns for every record.
WITH locked AS (
    SELECT c.id FROM forcebridge.change_log c
    WHERE c.mapping_id = %(mapping_id)s AND c.state IN ('NEW', 'REQUEUED') AND c.sfid IS NULL
      AND c.op = 'insert' AND c.excluded IS NULL AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= now())
      AND NOT EXISTS (SELECT 1 FROM forcebridge.change_log o
                      WHERE o.mapping_id = c.mapping_id AND o.record_id = c.record_id AND o.id <> c.id
                        AND o.state IN ('NEW', 'PENDING', 'REQUEUED'))
    ORDER BY c.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE forcebridge.change_log c
SET state = 'PENDING', attempts = c.attempts + 1, claim = %(claim)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s)
FROM locked
WHERE c.id = locked.id
RETURNING c.id, c.mapping_id, c.op, c.record_id, c.sfid, c.external_id, c.fields, c.created_at,
          c.attempts - 1 AS prior_attempts;

-- name: known_rows
SELECT * FROM {table} WHERE sfid = ANY(%(sfids)s);

-- name: delete_staged_deletes
-- A poll through Bulk: records the job lists as deleted leave the mapped table (unless changed since).
DELETE FROM {table} AS t USING {staging} s
WHERE s.isdeleted AND t.sfid = s.sfid AND forcebridge.not_backwards(t.systemmodstamp, s.systemmodstamp AT TIME ZONE 'UTC');

-- name: mark_staged_deletes
UPDATE {table} AS t
SET isdeleted = true, systemmodstamp = (s.systemmodstamp AT TIME ZONE 'UTC'), _hc_lastop = 'SYNCED', _hc_err = NULL
FROM {staging} s
WHERE s.isdeleted AND t.sfid = s.sfid AND forcebridge.not_backwards(t.systemmodstamp, s.systemmodstamp AT TIME ZONE 'UTC');

-- name: drop_staged_deletes
DELETE FROM {staging} WHERE isdeleted;
