-- Initial loads, the polling backstop and drift checks (issue 6).

-- One row per load of a mapping: enough to continue after a crash from the last page committed.
CREATE TABLE forcebridge.loads (
    id            bigserial PRIMARY KEY,
    mapping_id    integer NOT NULL REFERENCES forcebridge.mappings (id) ON DELETE CASCADE,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'merging', 'done', 'failed', 'cancelled')),
    method        text CHECK (method IN ('bulk', 'rest')),
    sf_job_id     text,                 -- Bulk API 2.0 query job
    locator       text,                 -- next page: Sforce-Locator (bulk) or nextRecordsUrl (rest); NULL = first
    pages         integer NOT NULL DEFAULT 0,
    loaded        bigint NOT NULL DEFAULT 0,   -- rows in the staging table
    total         bigint,                      -- records Salesforce reported
    merged        bigint,                      -- rows the merge inserted or moved forward
    snapshot_at   timestamptz,                 -- Salesforce's time when the query began (the poll's watermark)
    lease_until   timestamptz,                 -- a runner owns the load until then (renewed per page)
    error         text,
    requested_by  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
-- At most one unfinished load per mapping.
CREATE UNIQUE INDEX loads_open ON forcebridge.loads (mapping_id) WHERE state IN ('queued', 'running', 'merging');
CREATE INDEX loads_mapping ON forcebridge.loads (mapping_id, id DESC);

-- Where each mapping's poll stands. Settings live in the mapping's config (sf_polling_seconds, ...).
CREATE TABLE forcebridge.poll_state (
    mapping_id      integer PRIMARY KEY REFERENCES forcebridge.mappings (id) ON DELETE CASCADE,
    watermark       timestamptz,         -- records with a newer SystemModstamp are fetched by the next poll
    deleted_since   timestamptz,         -- getDeleted: start of the next window (latestDateCovered)
    last_polled_at  timestamptz,
    next_poll_at    timestamptz,
    last_changed    integer NOT NULL DEFAULT 0,
    last_deleted    integer NOT NULL DEFAULT 0,
    last_api_calls  integer NOT NULL DEFAULT 0,
    api_calls_total bigint NOT NULL DEFAULT 0,
    api_used        integer,             -- Sforce-Limit-Info after the last poll
    api_limit       integer,
    last_error      text,
    polling         boolean NOT NULL DEFAULT false   -- a poll is running (for the console)
);

-- Drift checks: what differed between Salesforce and Postgres, and what was repaired.
CREATE TABLE forcebridge.drift_reports (
    id            bigserial PRIMARY KEY,
    mapping_id    integer NOT NULL REFERENCES forcebridge.mappings (id) ON DELETE CASCADE,
    checked_at    timestamptz NOT NULL DEFAULT now(),
    sf_count      bigint NOT NULL,
    pg_count      bigint NOT NULL,
    missing       bigint NOT NULL,     -- in Salesforce, not in Postgres
    extra         bigint NOT NULL,     -- in Postgres with an sfid Salesforce no longer has
    stale         bigint NOT NULL,     -- Postgres holds an older SystemModstamp
    unsynced      bigint NOT NULL,     -- Postgres rows without sfid (waiting for the write path)
    samples       jsonb NOT NULL,      -- {"missing": [sfid...], "extra": [...], "stale": [...]} (first 100 each)
    repaired      jsonb                -- {"fetched": n, "deleted": n} when a repair ran
);
CREATE INDEX drift_reports_mapping ON forcebridge.drift_reports (mapping_id, id DESC);
