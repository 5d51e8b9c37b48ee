-- name: alert_states
SELECT * FROM forcebridge.alert_state ORDER BY condition;

-- name: put_alert_state
INSERT INTO forcebridge.alert_state AS a (condition, open, since, count, detail, watermark, last_sent_at,
                                          cleared_at, updated_at)
VALUES (%(condition)s, %(open)s, %(since)s, %(count)s, %(detail)s, %(watermark)s, %(last_sent_at)s,
        %(cleared_at)s, now())
ON CONFLICT (condition) DO UPDATE SET open = EXCLUDED.open, since = EXCLUDED.since, count = EXCLUDED.count,
    detail = EXCLUDED.detail, watermark = EXCLUDED.watermark, last_sent_at = EXCLUDED.last_sent_at,
    cleared_at = EXCLUDED.cleared_at, updated_at = now();

-- name: lock_alerts
-- One evaluator at a time across the worker and web processes (transaction-scoped).
SELECT pg_try_advisory_xact_lock(1178758729, 16) AS locked;

-- name: alert_failures
SELECT (SELECT count(*) FROM forcebridge.change_log WHERE state = 'FAILED') AS failed_writes,
       (SELECT coalesce(max(id), 0) FROM forcebridge.change_log WHERE state = 'FAILED') AS failed_writes_newest,
       (SELECT min(coalesce(finished_at, created_at)) FROM forcebridge.change_log WHERE state = 'FAILED')
           AS failed_writes_since,
       (SELECT count(*) FROM forcebridge.inbox WHERE state = 'failed') AS failed_notifications,
       (SELECT coalesce((extract(epoch FROM max(coalesce(applied_at, received_at))) * 1000000)::bigint, 0)
          FROM forcebridge.inbox WHERE state = 'failed') AS failed_notifications_newest,
       (SELECT min(received_at) FROM forcebridge.inbox WHERE state = 'failed') AS failed_notifications_since,
       (SELECT min(received_at) FROM forcebridge.inbox WHERE state = 'pending') AS oldest_pending_sf,
       (SELECT min(created_at) FROM forcebridge.open_changes) AS oldest_pending_pg;

-- name: alert_drift
-- The newest drift check of each mapping that found differences and was not repaired.
SELECT m.object_name, d.checked_at, d.missing + d.extra + d.stale AS differences
FROM (SELECT DISTINCT ON (mapping_id) * FROM forcebridge.drift_reports ORDER BY mapping_id, id DESC) d
JOIN forcebridge.mappings m ON m.id = d.mapping_id
WHERE d.missing + d.extra + d.stale > 0 AND d.repaired IS NULL
ORDER BY m.object_name;
