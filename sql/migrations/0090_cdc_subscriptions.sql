-- Change Data Capture (issue 13): where each Pub/Sub API subscription stands. The replay id is written in
-- the same transaction as what its events brought, so a restart resumes exactly after the last event
-- applied. One row per topic (one org per deployment).
CREATE TABLE forcebridge.cdc_subscriptions (
    topic          text PRIMARY KEY,                 -- /data/ChangeEvents or /data/<Object>ChangeEvent
    replay_id      bytea,                            -- opaque; NULL: start from the preset (LATEST)
    state          text NOT NULL DEFAULT 'new',      -- new | connected | reconnecting | replay_refused | stopped
    error          text,
    subscriber     text,                             -- host:pid of the elected subscriber
    events         bigint NOT NULL DEFAULT 0,        -- events brought in, ever
    last_event_at  timestamptz,                      -- when the last event came in (our clock)
    last_commit_at timestamptz,                      -- Salesforce's commit time of the last event
    refused_at     timestamptz,                      -- the last time Salesforce refused the stored replay id
    updated_at     timestamptz NOT NULL DEFAULT now()
);
