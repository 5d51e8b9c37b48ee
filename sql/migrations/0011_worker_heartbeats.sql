-- Each worker process says it is alive every few seconds; the console's overview and /metrics read it.
CREATE TABLE forcebridge.worker_heartbeats (
    worker     text PRIMARY KEY,              -- host:pid
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    stopped_at timestamptz                    -- a clean exit; a killed worker just stops beating
);
