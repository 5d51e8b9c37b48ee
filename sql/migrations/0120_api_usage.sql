-- API budget (issue 16): our calls per hour, kind of work and object; what choosing Bulk API 2.0 saved;
-- Salesforce's own accounting (Sforce-Limit-Info and /limits) as last seen; settings the console changes.
CREATE TABLE forcebridge.api_usage_hourly (
    hour        timestamptz NOT NULL,
    kind        text NOT NULL,            -- writes, loads, polls, drift, gap_fetches, logins, other
    object_name text NOT NULL DEFAULT '', -- '' when a call names no object (logins, /limits)
    calls       bigint NOT NULL DEFAULT 0,
    saved       bigint NOT NULL DEFAULT 0, -- REST calls the same records would have cost, minus the Bulk job's
    PRIMARY KEY (hour, kind, object_name)
);

CREATE TABLE forcebridge.api_limits (
    name        text PRIMARY KEY,         -- DailyApiRequests, DailyBulkV2QueryJobs, DailyDeliveredPlatformEvents ...
    max         bigint,
    remaining   bigint,
    observed_at timestamptz NOT NULL DEFAULT now()
);

-- Small JSON documents: settings the console edits (budget, alerts; defaults in code) and the state of
-- Salesforce as a worker last saw it (reachable, refused ...).
CREATE TABLE forcebridge.documents (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
