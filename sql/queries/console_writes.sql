-- The console's view of the write path's tables (issue 4). Used only once those tables exist.

-- name: write_backlog
SELECT count(*) FILTER (WHERE state IN ('NEW', 'PENDING', 'REQUEUE')) AS pending,
       count(*) FILTER (WHERE state = 'FAILED') AS failed
FROM forcebridge.change_log;

-- name: write_backlog_per_mapping
SELECT mapping_id,
       count(*) FILTER (WHERE state IN ('NEW', 'PENDING', 'REQUEUE')) AS pending,
       count(*) FILTER (WHERE state = 'FAILED') AS failed
FROM forcebridge.change_log
GROUP BY mapping_id;

-- name: failed_writes
SELECT c.id, c.mapping_id, m.object_name, c.action, c.record_id, c.sfid, c.sf_message, c.values,
       c.updated_at
FROM forcebridge.change_log c
LEFT JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE c.state = 'FAILED' AND c.updated_at > now() - make_interval(days => %(days)s)
ORDER BY c.updated_at DESC
LIMIT %(limit)s;

-- name: retry_write
UPDATE forcebridge.change_log SET state = 'NEW', sf_message = NULL
WHERE id = %(id)s AND state = 'FAILED'
RETURNING id;

-- name: ignore_write
UPDATE forcebridge.change_log SET state = 'IGNORED'
WHERE id = %(id)s AND state = 'FAILED'
RETURNING id;

-- name: retry_failed_writes
UPDATE forcebridge.change_log SET state = 'NEW', sf_message = NULL
WHERE state = 'FAILED'
RETURNING id;

-- name: recent_conflicts
SELECT c.*, m.object_name
FROM forcebridge.conflicts c
LEFT JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE c.detected_at > now() - make_interval(days => %(days)s)
ORDER BY c.detected_at DESC
LIMIT %(limit)s;
