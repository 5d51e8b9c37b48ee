-- Templates for mapped tables: {table} etc. are filled with psycopg.sql.Identifier, never with strings.

-- name: create_mapped_table
CREATE TABLE IF NOT EXISTS {table} (
    id             serial PRIMARY KEY,
    sfid           varchar(18) UNIQUE,
    systemmodstamp timestamptz,
    isdeleted      boolean,
    _hc_lastop     varchar(32),
    _hc_err        text
);

-- name: create_modstamp_index
CREATE INDEX IF NOT EXISTS {index} ON {table} (systemmodstamp);

-- name: add_mapped_column
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type};

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: drop_mapped_table
DROP TABLE IF EXISTS {table};

-- name: upsert_from_salesforce
-- Never backwards: a stored row changes only for a state at least as new as the one it holds.
INSERT INTO {table} AS t (sfid, systemmodstamp, isdeleted, _hc_lastop, _hc_err{columns})
SELECT u.sfid, u.systemmodstamp, u.isdeleted, 'SYNCED', NULL{u_columns}
FROM unnest(%s::text[], %s::timestamptz[], %s::boolean[]{arrays}) AS u(sfid, systemmodstamp, isdeleted{u_names})
ON CONFLICT (sfid) DO UPDATE
SET systemmodstamp = EXCLUDED.systemmodstamp, isdeleted = EXCLUDED.isdeleted,
    _hc_lastop = 'SYNCED', _hc_err = NULL{set_columns}
WHERE t.systemmodstamp IS NULL OR EXCLUDED.systemmodstamp IS NULL
   OR EXCLUDED.systemmodstamp >= t.systemmodstamp;

-- name: count_mapped_rows
SELECT count(*) AS n FROM {table};
