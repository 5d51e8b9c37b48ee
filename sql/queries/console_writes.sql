-- The console's view of the write path's tables (migration 0002).

-- name: write_backlog
-- Pending: open entries, captured ones not yet moved into the change log included (migration 0004).
SELECT (SELECT count(*) FROM forcebridge.open_changes) AS pending,
       (SELECT count(*) FROM forcebridge.change_log WHERE state = 'FAILED') AS failed;

-- name: write_backlog_per_mapping
SELECT mapping_id,
       count(*) FILTER (WHERE state <> 'FAILED') AS pending,
       count(*) FILTER (WHERE state = 'FAILED') AS failed
FROM (SELECT mapping_id, state FROM forcebridge.open_changes
      UNION ALL
      SELECT mapping_id, state FROM forcebridge.change_log WHERE state = 'FAILED') c
GROUP BY mapping_id;

-- name: console_failed_writes
SELECT c.id, c.mapping_id, m.object_name, m.table_schema, m.table_name, c.op, c.record_id, c.sfid,
       c.external_id, c.fields, c.attempts, c.error, c.created_at, coalesce(c.finished_at, c.created_at) AS failed_at
FROM forcebridge.change_log c
LEFT JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE c.state = 'FAILED' AND c.created_at > now() - make_interval(days => %(days)s)
ORDER BY c.id DESC
LIMIT %(limit)s;

-- name: retry_failed_changes
-- States from core/change_states.py (a retry of each FAILED entry).
UPDATE forcebridge.change_log
SET state = %(to_state)s, next_attempt_at = now(), error = NULL, finished_at = NULL, lease_until = NULL
WHERE state = %(from_state)s
RETURNING id;

-- name: console_conflicts
-- Values as bounded excerpts of their JSON (a notification's values may be megabytes): conflict_values has them whole.
SELECT c.id, c.mapping_id, m.object_name, c.record_id, c.sfid, c.rule, c.winner,
       left(c.pg_values::text, %(excerpt)s) AS pg_excerpt, left(c.sf_values::text, %(excerpt)s) AS sf_excerpt,
       octet_length(c.pg_values::text) > %(excerpt)s OR octet_length(c.sf_values::text) > %(excerpt)s AS truncated,
       c.pg_changed_at, c.sf_changed_at, c.detected_at, c.fields, c.sf_fields, c.pg_fields
FROM forcebridge.conflicts c
LEFT JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE c.detected_at > now() - make_interval(days => %(days)s)
ORDER BY c.id DESC
LIMIT %(limit)s;

-- name: last_write_to_salesforce
-- Finished changes move to the archive after a while; the newest success is in one of the two tables.
SELECT greatest((SELECT max(finished_at) FROM forcebridge.change_log WHERE state = 'SUCCESS'),
                (SELECT max(finished_at) FROM forcebridge.change_log_archive WHERE state = 'SUCCESS')) AS at;

-- name: conflict_values
SELECT id, jsonb_build_object('salesforce', sf_values, 'postgres', pg_values)::text AS payload
FROM forcebridge.conflicts
WHERE id = %(id)s;
