-- Long operations started from the API (poll now, push, reconcile, reload): the web request writes a row and
-- answers 202 with its id; the worker runs it (jobs/api_jobs.py) and stores the result here. A job whose worker
-- died holds a lapsed lease and is run again by the backstop.
CREATE TABLE forcebridge.api_jobs (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('poll', 'push', 'reconcile', 'reload')),
    mapping_id   integer NOT NULL,
    params       jsonb NOT NULL DEFAULT '{}'::jsonb,
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    result       jsonb,
    error        text,
    requested_by text NOT NULL DEFAULT 'api',
    attempts     integer NOT NULL DEFAULT 0,
    runner       text,                      -- the claim of the run that holds it (a lapsed one cannot finish it)
    lease_until  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX api_jobs_unfinished ON forcebridge.api_jobs (id) WHERE state IN ('queued', 'running');
CREATE INDEX api_jobs_mapping ON forcebridge.api_jobs (mapping_id, id);
