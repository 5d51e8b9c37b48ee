-- Formula and roll-up freshness (issue 17): per mapping, when its calculated fields were last refreshed and
-- what that found (jobs/formula_refresh.py). No row: never refreshed (due now).
CREATE TABLE forcebridge.formula_refresh (
    mapping_id  integer PRIMARY KEY REFERENCES forcebridge.mappings (id) ON DELETE CASCADE,
    last_run_at timestamptz,
    next_run_at timestamptz,            -- NULL: refreshing is off (formula_refresh_minutes = 0)
    fields      text[] NOT NULL DEFAULT '{}',
    checked     bigint NOT NULL DEFAULT 0,
    updated     bigint NOT NULL DEFAULT 0,
    api_calls   integer NOT NULL DEFAULT 0,
    error       text
);
