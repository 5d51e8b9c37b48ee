-- Formula and roll-up freshness (jobs/formula_refresh.py). {table}, {staging} etc. filled with psycopg.sql.

-- name: formula_refresh_state
SELECT * FROM forcebridge.formula_refresh WHERE mapping_id = %(mapping_id)s;

-- name: lock_formula_refresh
SELECT pg_try_advisory_xact_lock(1178758740, %(mapping_id)s) AS locked;

-- name: finish_formula_refresh
-- `parents` NULL (the describe failed): the parents known from the last refresh stay.
INSERT INTO forcebridge.formula_refresh (mapping_id, last_run_at, next_run_at, fields, checked, updated,
                                         api_calls, error, parents)
VALUES (%(mapping_id)s, %(ran_at)s, %(next_run_at)s, %(fields)s, %(checked)s, %(updated)s, %(api_calls)s,
        %(error)s, coalesce(%(parents)s::jsonb, '[]'))
ON CONFLICT (mapping_id) DO UPDATE
SET last_run_at = EXCLUDED.last_run_at, next_run_at = EXCLUDED.next_run_at, fields = EXCLUDED.fields,
    checked = EXCLUDED.checked, updated = EXCLUDED.updated, api_calls = EXCLUDED.api_calls,
    error = EXCLUDED.error,
    parents = coalesce(%(parents)s::jsonb, forcebridge.formula_refresh.parents);

-- name: formula_refresh_due_now
-- A saved mapping (its fields may have changed) is looked at again at the next turn.
UPDATE forcebridge.formula_refresh SET next_run_at = now() WHERE mapping_id = %(mapping_id)s;

-- name: formula_parent_objects
-- The objects (lower case) some mapping's formulas read through a lookup: the apply path queues only theirs.
SELECT DISTINCT lower(p->>'object') AS object_key
FROM forcebridge.formula_refresh r CROSS JOIN LATERAL jsonb_array_elements(r.parents) p;

-- name: queue_formula_children
-- The apply path, in its transaction: these records of `object` changed; the mappings whose formulas read
-- that object through a lookup get their ids queued (queued again: queued_at moves, so a refresh running
-- now does not delete the entry it did not serve). {parent_ids}: the changed records' ids, a one-column
-- relation (formula_changed_ids or formula_changed_staged below). The entries are written in key order, so
-- two appliers queuing overlapping parents lock them in the same order and never wait on each other in a
-- cycle (a deadlock).
INSERT INTO forcebridge.formula_refresh_pending (mapping_id, lookup, parent_id)
SELECT DISTINCT r.mapping_id, p->>'lookup', u.id
FROM forcebridge.formula_refresh r
CROSS JOIN LATERAL jsonb_array_elements(r.parents) p
CROSS JOIN {parent_ids} AS u(id)
WHERE lower(p->>'object') = lower(%(object)s) AND u.id IS NOT NULL
ORDER BY 1, 2, 3
ON CONFLICT (mapping_id, lookup, parent_id) DO UPDATE SET queued_at = clock_timestamp();

-- name: formula_changed_ids
unnest(%(ids)s::text[])

-- name: formula_changed_staged
(SELECT sfid FROM {staging})

-- name: formula_children_pending
-- Changed parents waiting, per mapping and lookup: each mapping's oldest (at most `limit`: a turn's share).
SELECT mapping_id, lookup, array_agg(parent_id ORDER BY queued_at, parent_id) AS parent_ids,
       array_agg(queued_at ORDER BY queued_at, parent_id) AS queued
FROM (SELECT p.*, row_number() OVER (PARTITION BY mapping_id ORDER BY queued_at, parent_id) AS n
      FROM forcebridge.formula_refresh_pending p) oldest
WHERE n <= %(limit)s
GROUP BY mapping_id, lookup
ORDER BY mapping_id, lookup;

-- name: formula_children_served
-- Entries a refresh served; one queued again since it read them stays.
DELETE FROM forcebridge.formula_refresh_pending p
USING unnest(%(parent_ids)s::text[], %(queued)s::timestamptz[]) AS u(parent_id, queued_at)
WHERE p.mapping_id = %(mapping_id)s AND p.lookup = %(lookup)s AND p.parent_id = u.parent_id
  AND p.queued_at = u.queued_at;

-- name: forget_formula_children
-- A mapping refreshed whole: the parents queued before it read are served.
DELETE FROM forcebridge.formula_refresh_pending
WHERE mapping_id = %(mapping_id)s AND queued_at <= %(before)s;

-- name: finish_targeted_refresh
UPDATE forcebridge.formula_refresh
SET targeted_at = %(ran_at)s, targeted_checked = %(checked)s, targeted_updated = %(updated)s,
    targeted_error = %(error)s
WHERE mapping_id = %(mapping_id)s;

-- name: formula_refresh_overview
-- The console's view per reading mapping: the last refresh, the next one, the parents followed and how many
-- of their changes wait.
SELECT r.*, (SELECT count(*) FROM forcebridge.formula_refresh_pending p WHERE p.mapping_id = r.mapping_id)
       AS waiting
FROM forcebridge.formula_refresh r;

-- name: refresh_calculated_fields
-- Only the calculated columns of rows whose values differ; systemmodstamp and _hc_lastop stay as they are
-- (the caller's transaction has origin = salesforce, so no capture and no write back). A row that a poll or
-- message brought since the refresh read (a newer SystemModstamp) holds values newer than the staged ones.
UPDATE {table} AS t SET {set_columns}
FROM {staging} AS s
WHERE t.sfid = s.sfid AND forcebridge.not_backwards(t.systemmodstamp, s.systemmodstamp AT TIME ZONE 'UTC')
  AND ({differs});

-- name: formula_refresh_clock
-- Postgres's clock, which stamps formula_refresh_pending.queued_at: what a full refresh serves is what was
-- queued before it read.
SELECT clock_timestamp() AS now;
