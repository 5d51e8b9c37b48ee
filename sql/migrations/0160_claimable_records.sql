-- The records a drain may claim now (whole records: none of their open entries leased by a live drain or
-- waiting for a retry), with what the send window (core/send_window.py) decides from: when the record's
-- first open change was logged and whether it is being tried again. claim_changes and pending_by_mapping
-- read the same set.
CREATE VIEW forcebridge.claimable_records AS
SELECT mapping_id, record_id, min(id) AS first_id, min(created_at) AS first_at, bool_or(attempts > 0) AS retry
FROM forcebridge.change_log
WHERE state IN ('NEW', 'PENDING', 'REQUEUED')
GROUP BY mapping_id, record_id
HAVING NOT bool_or(state = 'PENDING' AND lease_until > now())
   AND NOT bool_or(state = 'REQUEUED' AND next_attempt_at > now());
