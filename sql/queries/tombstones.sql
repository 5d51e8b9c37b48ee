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
