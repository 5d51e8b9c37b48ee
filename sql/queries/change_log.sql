-- The change log: claiming, finishing, the errors API, archiving. Mapped-table statements are templates.

-- name: lock_claims
-- Claims are short and serialised, so two drains never hold entries of the same record at once.
SELECT pg_advisory_xact_lock(1178758727);

-- name: lock_absorb
-- One mover at a time: two movers would wait on each other's rows and one would stop early.
SELECT pg_advisory_xact_lock(1178758728);

-- name: absorb_captured_changes
-- Captured changes (migration 0004) move into the change log with the ids they were given at capture, a
-- slice at a time. Whatever reads or changes open entries runs after a move (change_log.absorb), so the
-- change log's indexed guards see every change committed before it.
-- A join on ctid, not ctid = ANY(ARRAY(..)): planned while the table was empty, the latter becomes a
-- sequential scan testing every row against the whole array (quadratic: 19 s for 50,000 rows).
-- mapping_id NULL: every mapping's rows; else that mapping's (a merge holding its table's writers back).
WITH moved AS (
    DELETE FROM forcebridge.change_capture c
    USING (SELECT ctid AS row_id FROM forcebridge.change_capture
           WHERE %(mapping_id)s::integer IS NULL OR mapping_id = %(mapping_id)s::integer
           LIMIT %(limit)s) slice
    WHERE c.ctid = slice.row_id
    RETURNING c.id, c.mapping_id, c.op, c.record_id, c.sfid, c.external_id, c.fields, c.txid, c.created_at,
              c.old_values, c.excluded
)
INSERT INTO forcebridge.change_log (id, mapping_id, op, record_id, sfid, external_id, fields, txid, created_at,
                                    old_values, excluded)
SELECT id, mapping_id, op, record_id, sfid, external_id, fields, txid, created_at, old_values, excluded FROM moved;

-- name: analyze_change_log
-- After a large move: the planner's idea of the change log's size and states is otherwise far off until
-- autovacuum comes by, and the drain's updates by id were planned as scans (seconds per claim).
ANALYZE forcebridge.change_log;

-- name: claim_changes
-- Whole records at a time: every open entry of a record whose entries are neither leased by a live drain
-- nor waiting for a retry. An expired lease (a killed worker) is claimed again. The send window may limit
-- a mapping to its oldest records (held/limits: mapping ids and records; core/send_window.py).
WITH open AS (
    SELECT r.mapping_id, r.record_id, r.first_id
    FROM (SELECT c.*, row_number() OVER (PARTITION BY c.mapping_id ORDER BY c.first_id) AS n
          FROM forcebridge.claimable_records c) r
    LEFT JOIN unnest(%(held)s::integer[], %(limits)s::integer[]) AS h(mapping_id, most)
        ON h.mapping_id = r.mapping_id
    WHERE h.most IS NULL OR r.n <= h.most
    ORDER BY r.first_id
    LIMIT %(records)s
), locked AS (
    SELECT c.id FROM forcebridge.change_log c
    JOIN open o ON o.mapping_id = c.mapping_id AND o.record_id = c.record_id
    WHERE c.state IN ('NEW', 'PENDING', 'REQUEUED')
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE forcebridge.change_log c
SET state = 'PENDING', attempts = c.attempts + 1, claim = %(claim)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s)
FROM locked
WHERE c.id = locked.id
RETURNING c.id, c.mapping_id, c.op, c.record_id, c.sfid, c.external_id, c.fields, c.created_at,
          c.attempts - 1 AS prior_attempts,
          -- An update of a record without sfid creates it when its insert is not claimed with it (it failed):
          -- the columns that insert excluded and no update changed since stay unsent (core/changes.py).
          CASE WHEN c.op <> 'update' OR c.sfid IS NOT NULL THEN c.excluded
               ELSE (SELECT array(SELECT x FROM unnest(i.excluded) AS x
                                  EXCEPT
                                  SELECT unnest(u.fields) FROM forcebridge.change_log u
                                  WHERE u.mapping_id = i.mapping_id AND u.record_id = i.record_id
                                    AND u.op = 'update' AND u.id > i.id AND u.id < c.id)
                     FROM forcebridge.change_log i
                     WHERE i.mapping_id = c.mapping_id AND i.record_id = c.record_id AND i.op = 'insert'
                       AND i.excluded IS NOT NULL AND i.id < c.id
                     ORDER BY i.id DESC LIMIT 1) END AS excluded;

-- name: renew_claims
-- A drain still working on its claims keeps them: calls with retries can outlast one lease.
UPDATE forcebridge.change_log
SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
WHERE state = 'PENDING' AND claim = %(claim)s;

-- name: held_claims
-- The carrier entries a drain still holds, locked until it has recorded their outcomes.
SELECT id FROM forcebridge.change_log
WHERE id = ANY(%(ids)s) AND state = 'PENDING' AND claim = %(claim)s
FOR UPDATE;

-- name: finish_changes
-- Stores what core/change_states.py `settle` decided. One JSON document for the whole batch: cheaper to send
-- than seven arrays of thousands of values. Only entries still claimed by this drain are touched: an entry
-- retried, ignored or taken over by another drain meanwhile keeps its new state.
UPDATE forcebridge.change_log c
SET state = u.state,
    sfid = coalesce(u.sfid, c.sfid),
    error = u.error,
    sent = u.sent,
    fields = coalesce(string_to_array(u.fields, ','), c.fields),
    next_attempt_at = CASE WHEN u.delay IS NOT NULL THEN now() + make_interval(secs => u.delay) END,
    lease_until = NULL,
    finished_at = CASE WHEN u.finished THEN now() END
FROM jsonb_to_recordset(%(entries)s::jsonb)
     AS u(id bigint, state text, sfid text, error jsonb, sent jsonb, fields text, delay float8, finished boolean)
WHERE c.id = u.id AND c.state = 'PENDING' AND c.claim = %(claim)s;

-- name: mark_sending
-- The body of a call about to go out, on its carrier entry: an echo may beat the call's result home.
UPDATE forcebridge.change_log c
SET sent = u.sent
FROM jsonb_to_recordset(%(entries)s::jsonb) AS u(id bigint, sent jsonb)
WHERE c.id = u.id AND c.state = 'PENDING' AND c.claim = %(claim)s;

-- name: pending_by_mapping
-- The send window's input: each mapping's claimable records, the oldest one's time, whether one is a retry.
SELECT mapping_id, count(*) AS records, min(first_at) AS oldest, bool_or(retry) AS retries
FROM forcebridge.claimable_records
GROUP BY mapping_id;

-- name: next_retry_in
SELECT extract(epoch FROM min(next_attempt_at) - now()) AS seconds
FROM forcebridge.change_log WHERE state = 'REQUEUED';

-- name: notify_changes
-- Wakes the drain's listener (jobs/listener.py) after changes were logged outside the capture triggers.
SELECT pg_notify('forcebridge_changes', %(mapping_id)s);

-- name: writing_mappings
SELECT * FROM forcebridge.mappings
WHERE active AND direction IN ('pg_to_sf', 'bidirectional');

-- name: list_change_errors
SELECT c.id, c.mapping_id, m.object_name, m.table_schema, m.table_name, c.op, c.record_id, c.sfid,
       c.external_id, c.fields, c.state, c.attempts, c.error, c.created_at, c.finished_at
FROM forcebridge.change_log c
LEFT JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE c.state = ANY(%(states)s)
ORDER BY c.id DESC
LIMIT %(limit)s;

-- name: get_change
SELECT * FROM forcebridge.change_log WHERE id = %(id)s;

-- name: retry_change
-- States from core/change_states.py (`requested`, `from_states`): a retry waits for the drain, due now.
UPDATE forcebridge.change_log
SET state = %(to_state)s, next_attempt_at = now(), error = NULL, finished_at = NULL, lease_until = NULL
WHERE id = %(id)s AND state = ANY(%(from_states)s)
RETURNING id, mapping_id, record_id, state;

-- name: ignore_change
UPDATE forcebridge.change_log
SET state = %(to_state)s, finished_at = now(), lease_until = NULL
WHERE id = %(id)s AND state = ANY(%(from_states)s)
RETURNING id, mapping_id, record_id, state;

-- name: archive_changes
-- FAILED entries stay in the live table until retried or ignored: a failure stays visible.
WITH moved AS (
    DELETE FROM forcebridge.change_log
    WHERE state = ANY(%(states)s)     -- core/change_states.py FINISHED
      AND finished_at < now() - make_interval(secs => %(after_seconds)s)
    RETURNING *
)
-- Columns named: the live table has a claim column (0003) that the archive does not keep.
INSERT INTO forcebridge.change_log_archive
    (id, mapping_id, op, record_id, sfid, external_id, fields, txid, created_at, state, attempts,
     next_attempt_at, lease_until, error, sent, finished_at, archived_at)
SELECT id, mapping_id, op, record_id, sfid, external_id, fields, txid, created_at, state, attempts,
       next_attempt_at, lease_until, error, sent, finished_at, now()
FROM moved;

-- name: purge_archive
DELETE FROM forcebridge.change_log_archive
WHERE archived_at < now() - make_interval(secs => %(after_seconds)s);

-- name: purge_conflicts
DELETE FROM forcebridge.conflicts
WHERE detected_at < now() - make_interval(secs => %(after_seconds)s);

-- name: last_sent_values
-- What we last wrote to each record, and what a call in flight is writing (its echo may come back before
-- the call's result does; an insert's entry has no sfid yet, so in-flight entries are found by record).
(SELECT DISTINCT ON (sfid) sfid, sent
 FROM forcebridge.change_log
 WHERE mapping_id = %(mapping_id)s AND sfid = ANY(%(sfids)s) AND state = 'SUCCESS' AND sent IS NOT NULL
 ORDER BY sfid, id DESC)
UNION ALL
(SELECT DISTINCT ON (u.sfid) u.sfid, c.sent
 FROM unnest(%(sfids)s::text[], %(record_ids)s::bigint[]) AS u(sfid, record_id)
 JOIN forcebridge.change_log c ON c.mapping_id = %(mapping_id)s AND c.record_id = u.record_id
 WHERE c.state = 'PENDING' AND c.sent IS NOT NULL
 ORDER BY u.sfid, c.id DESC);

-- name: written_after
-- Stale fields (jobs/conflicts.py `_without_stale_fields`): what our successful writes of each record sent, for
-- writes the app made after the incoming state's SystemModstamp. Updates only: Salesforce holds no state of a
-- record older than our create of it (an upsert that matched an existing record is not covered). Whole
-- seconds: a stamp is truncated, so a Salesforce change made after our write in the second the app changed
-- the row still counts as newer.
SELECT u.sfid, c.sent
FROM unnest(%(sfids)s::text[], %(stamps)s::timestamptz[]) AS u(sfid, stamp)
JOIN forcebridge.change_log c ON c.mapping_id = %(mapping_id)s AND c.sfid = u.sfid
WHERE c.state = 'SUCCESS' AND c.op = 'update' AND c.sent IS NOT NULL
  AND u.stamp < date_trunc('second', c.created_at)
ORDER BY c.id;

-- name: insert_conflicts
-- Field lists travel as comma-joined text (unnest cannot take an array of arrays of different lengths).
INSERT INTO forcebridge.conflicts
    (mapping_id, record_id, sfid, rule, winner, pg_values, sf_values, pg_changed_at, sf_changed_at,
     fields, sf_fields, pg_fields)
SELECT %(mapping_id)s, u.record_id, u.sfid, %(rule)s, u.winner, u.pg_values, u.sf_values, u.pg_at, u.sf_at,
       string_to_array(u.both_fields, ','), string_to_array(u.sf_fields, ','), string_to_array(u.pg_fields, ',')
FROM unnest(%(record_ids)s::bigint[], %(sfids)s::text[], %(winners)s::text[], %(pg_values)s::jsonb[],
            %(sf_values)s::jsonb[], %(pg_at)s::timestamptz[], %(sf_at)s::timestamptz[], %(both)s::text[],
            %(sf_fields)s::text[], %(pg_fields)s::text[])
     AS u(record_id, sfid, winner, pg_values, sf_values, pg_at, sf_at, both_fields, sf_fields, pg_fields);

-- name: open_change_bases
-- Each record's open local changes, oldest first: what they changed and the values those columns held before.
SELECT record_id, op, fields, old_values
FROM forcebridge.change_log
WHERE mapping_id = %(mapping_id)s AND record_id = ANY(%(record_ids)s) AND state IN ('NEW', 'PENDING', 'REQUEUED')
ORDER BY record_id, id;

-- name: drop_open_changes
-- Salesforce won: the local changes it overrode are not sent (entries in flight finish on their own).
-- States from core/change_states.py (OVERRIDDEN_BY_SALESFORCE -> IGNORED).
UPDATE forcebridge.change_log
SET state = %(to_state)s, finished_at = now(),
    error = '{"reason": "conflict: Salesforce won"}'::jsonb
WHERE mapping_id = %(mapping_id)s AND record_id = ANY(%(record_ids)s) AND state = ANY(%(from_states)s)
  AND state IN ('NEW', 'PENDING', 'REQUEUED');   -- change_log_open's predicate: a generic plan still uses it

-- name: resend_over_in_flight
-- Salesforce won over a record whose local change is in flight (PENDING): that write will still land, so
-- the winning values (the row holds them once the batch is applied) are logged to be sent after it.
INSERT INTO forcebridge.change_log (mapping_id, op, record_id, sfid, fields)
SELECT DISTINCT ON (c.record_id) c.mapping_id, 'update', c.record_id, c.sfid, %(fields)s::text[]
FROM forcebridge.change_log c
WHERE c.mapping_id = %(mapping_id)s AND c.record_id = ANY(%(record_ids)s) AND c.state = 'PENDING'
ORDER BY c.record_id, c.id DESC;

-- name: list_conflicts
SELECT * FROM forcebridge.conflicts ORDER BY id DESC LIMIT %(limit)s;

-- name: read_mapped_rows
SELECT * FROM {table} WHERE id = ANY(%(ids)s);

-- name: generate_external_ids
-- Before the first upsert, so that a retried insert finds the record it created instead of a twin. Joined to
-- the ids (the primary key finds each row): `id = ANY(ids)` was tested against every row without sfid when
-- the planner expected few of them (0.5-1.2 s per claim of 3,200 after a bulk insert).
UPDATE {table} AS t SET {ext} = replace(gen_random_uuid()::text, '-', '')
FROM unnest(%(ids)s::bigint[]) AS u(id)
WHERE t.id = u.id AND t.sfid IS NULL AND (t.{ext} IS NULL OR t.{ext} = '');

-- name: lock_created_rows
-- The write-back of created records (merge_inbound_copies, then write_back_results) against the inbound paths
-- that insert rows (lock_inbound_rows): an inbound copy of a record we just created is either committed before
-- the merge looks for it or inserted after the sfid is written back (and then finds the row). Per mapping.
SELECT pg_advisory_xact_lock(1178758741, %(mapping_id)s);

-- name: lock_inbound_rows
-- Taken shared by the apply path before it writes a writing mapping's rows: inbound applies never wait on
-- each other, only on a write-back of creates (lock_created_rows), and it on them.
SELECT count(pg_advisory_xact_lock_shared(1178758741, m))
FROM (SELECT DISTINCT m FROM unnest(%(mapping_ids)s::integer[]) AS m ORDER BY m) s;

-- name: merge_inbound_copies
-- Runs under origin = salesforce, in the write-back's transaction, just before write_back_results. A record we
-- created that reached Postgres through an inbound path (a poll, an Outbound Message, a drift repair, a row
-- filter check) before its sfid was written back was inserted as a second row holding that sfid: the copy is
-- removed, and the app's row keeps its id and gets the sfid (write_back_results, next). Local changes the app
-- made to the copy meanwhile move to the row, with the values they wrote ({take_columns}). What Salesforce's
-- copy brought is not copied: the record is read again by Id (jobs/drain.py `_merge_inbound_copies`).
-- {is_copy}: a create made a new record, so any other row holding its sfid is a copy; an upsert may have matched
-- a record Postgres already held, so only a row without an external id of its own (or with the row's) is one.
WITH copies AS (
    SELECT t.id AS original, x.id AS copy, u.sfid,
           coalesce((SELECT array_agg(DISTINCT f) FROM forcebridge.change_log c, unnest(c.fields) AS f
                     WHERE c.mapping_id = %(mapping_id)s AND c.record_id = x.id
                       AND c.state IN ('NEW', 'PENDING', 'REQUEUED')), ARRAY[]::text[]) AS local
    FROM unnest(%(ids)s::bigint[], %(sfids)s::text[]) AS u(id, sfid)
    JOIN {table} t ON t.id = u.id AND t.sfid IS NULL
    JOIN {table} x ON x.sfid = u.sfid AND x.id <> t.id
    WHERE u.sfid IS NOT NULL AND {is_copy}
), moved AS (
    UPDATE forcebridge.change_log c SET record_id = w.original, sfid = w.sfid
    FROM copies w
    WHERE c.mapping_id = %(mapping_id)s AND c.record_id = w.copy AND c.state IN ('NEW', 'PENDING', 'REQUEUED')
), gone AS (
    DELETE FROM {table} x USING copies w WHERE x.id = w.copy
    RETURNING w.original, w.local, x.*
)
UPDATE {table} AS t SET {take_columns}
FROM gone g
WHERE t.id = g.original
RETURNING g.sfid;

-- name: write_back_results
-- Runs under origin = salesforce. Heroku Connect's marks: INSERTED / UPDATED after a write that reached
-- Salesforce (`lastop`), FAILED with its error text (migration 0060) in _hc_err. A row with a newer change
-- waiting keeps its PENDING mark.
UPDATE {table} AS t
SET sfid = CASE WHEN u.sfid IS NULL OR EXISTS (SELECT 1 FROM {table} x WHERE x.sfid = u.sfid AND x.id <> t.id)
                THEN t.sfid ELSE u.sfid END,
    _hc_err = forcebridge.hc_error_text(u.err::jsonb),
    _hc_lastop = CASE
        WHEN u.err IS NOT NULL THEN 'FAILED'
        WHEN EXISTS (SELECT 1 FROM forcebridge.change_log c
                     WHERE c.mapping_id = %(mapping_id)s AND c.record_id = t.id AND c.state IN ('NEW', 'REQUEUED'))
             THEN t._hc_lastop
        ELSE u.lastop END
FROM unnest(%(ids)s::bigint[], %(sfids)s::text[], %(errs)s::text[], %(lastops)s::text[]) AS u(id, sfid, err, lastop)
WHERE t.id = u.id;

-- name: pending_local_rows
-- Rows named by incoming notifications that carry local changes not yet in Salesforce.
SELECT t.*, o.changed_at AS fb_changed_at
FROM {table} t
JOIN LATERAL (
    SELECT max(c.created_at) AS changed_at FROM forcebridge.change_log c
    WHERE c.mapping_id = %(mapping_id)s AND c.record_id = t.id AND c.state IN ('NEW', 'PENDING', 'REQUEUED')
) o ON o.changed_at IS NOT NULL
WHERE t.sfid = ANY(%(sfids)s);

-- name: typed_bases
-- Base values (JSON, as the capture wrote them) typed by the mapped table's own columns.
SELECT u.record_id AS fb_record_id, p.*
FROM unnest(%(record_ids)s::bigint[], %(bases)s::jsonb[]) AS u(record_id, base)
CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, u.base) AS p;

-- name: link_rows_by_external_id
UPDATE {table} AS t SET sfid = u.sfid
FROM unnest(%(sfids)s::text[], %(exts)s::text[]) AS u(sfid, ext)
WHERE u.ext IS NOT NULL AND t.{ext}::text = u.ext AND t.sfid IS NULL
  AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.sfid = u.sfid);

-- name: resolve_failed_changes
-- A record that synced since its failure, carrying the failed fields, is no longer in error.
-- States from core/change_states.py (Resolution: FAILED -> MERGED).
UPDATE forcebridge.change_log c
SET state = %(to_state)s, finished_at = now(), error = c.error || jsonb_build_object('resolved_by', u.carrier)
FROM unnest(%(record_ids)s::bigint[], %(carriers)s::bigint[], %(fields)s::text[]) AS u(record_id, carrier, fields)
WHERE c.mapping_id = %(mapping_id)s AND c.record_id = u.record_id AND c.state = %(from_state)s AND c.id < u.carrier
  AND (c.fields IS NULL OR c.fields <@ string_to_array(u.fields, ','));
