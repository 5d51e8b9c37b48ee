-- Change Data Capture subscriptions (jobs/cdc.py).

-- name: cdc_try_elect
-- Session-level lock held by the elected subscriber's own connection: it goes when that connection does.
SELECT pg_try_advisory_lock(1128547139, hashtext(%(topic)s)) AS elected;

-- name: cdc_position
INSERT INTO forcebridge.cdc_subscriptions (topic) VALUES (%(topic)s)
ON CONFLICT (topic) DO UPDATE SET topic = excluded.topic
RETURNING *;

-- name: cdc_advance
-- In the transaction that stored what the events brought.
UPDATE forcebridge.cdc_subscriptions
SET replay_id = %(replay_id)s, state = 'connected', error = NULL, subscriber = %(subscriber)s,
    events = events + %(events)s,
    last_event_at = CASE WHEN %(events)s > 0 THEN now() ELSE last_event_at END,
    last_commit_at = coalesce(%(last_commit_at)s, last_commit_at), updated_at = now()
WHERE topic = %(topic)s;

-- name: cdc_set_state
UPDATE forcebridge.cdc_subscriptions
SET state = %(state)s, error = %(error)s, subscriber = %(subscriber)s, updated_at = now()
WHERE topic = %(topic)s;

-- name: cdc_replay_refused
-- The stored replay id is no longer valid: start again from the preset (what was missed needs a poll).
UPDATE forcebridge.cdc_subscriptions
SET replay_id = NULL, state = 'replay_refused', error = %(error)s, refused_at = now(), updated_at = now()
WHERE topic = %(topic)s;
