-- Formula and roll-up freshness (jobs/formula_refresh.py). {table}, {staging} etc. filled with psycopg.sql.

-- name: formula_refresh_state
SELECT * FROM forcebridge.formula_refresh WHERE mapping_id = %(mapping_id)s;

-- name: lock_formula_refresh
SELECT pg_try_advisory_xact_lock(1178758740, %(mapping_id)s) AS locked;

-- name: finish_formula_refresh
INSERT INTO forcebridge.formula_refresh (mapping_id, last_run_at, next_run_at, fields, checked, updated,
                                         api_calls, error)
VALUES (%(mapping_id)s, %(ran_at)s, %(next_run_at)s, %(fields)s, %(checked)s, %(updated)s, %(api_calls)s,
        %(error)s)
ON CONFLICT (mapping_id) DO UPDATE
SET last_run_at = EXCLUDED.last_run_at, next_run_at = EXCLUDED.next_run_at, fields = EXCLUDED.fields,
    checked = EXCLUDED.checked, updated = EXCLUDED.updated, api_calls = EXCLUDED.api_calls,
    error = EXCLUDED.error;

-- name: refresh_calculated_fields
-- Only the calculated columns of rows whose values differ; systemmodstamp and _hc_lastop stay as they are
-- (the caller's transaction has origin = salesforce, so no capture and no write back).
UPDATE {table} AS t SET {set_columns}
FROM {staging} AS s
WHERE t.sfid = s.sfid AND ({differs});
