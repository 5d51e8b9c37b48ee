-- Templates for mapped tables: {table} etc. are filled with psycopg.sql.Identifier, never with strings.

-- name: create_mapped_table
-- Heroku Connect's shape: systemmodstamp holds UTC without a zone; sfid's uniqueness is the index
-- hcu_idx_<table>_sfid (create_table_index), not a constraint.
CREATE TABLE IF NOT EXISTS {table} (
    id             serial PRIMARY KEY,
    sfid           varchar(18),
    systemmodstamp timestamp without time zone,
    isdeleted      boolean,
    _hc_lastop     varchar(32),
    _hc_err        text
);

-- name: create_table_index
CREATE INDEX IF NOT EXISTS {index} ON {table} ({column});

-- name: create_unique_table_index
CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} ({column});

-- name: table_index_names
SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text));

-- name: unique_index_on_column
-- A unique index (or constraint) on exactly this one column, whatever its name: tables made before
-- migration 0060 or adopted from Heroku Connect may carry theirs under another name.
SELECT EXISTS (
    SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text))
      AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = %(column)s
) AS present;

-- name: add_mapped_column
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type};

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: drop_mapped_table
DROP TABLE IF EXISTS {table};

-- name: upsert_from_salesforce
-- Never backwards (forcebridge.not_backwards): a stored row changes only for a state at least as new as its own.
-- SystemModstamp comes as an instant and is stored as UTC wall time, whatever the session's TimeZone.
-- Arrays go in binary: ids, stamps and flags are each of one Python type (mapped_tables.upsert_batch).
INSERT INTO {table} AS t (sfid, systemmodstamp, isdeleted, _hc_lastop, _hc_err{columns})
SELECT u.sfid, u.systemmodstamp AT TIME ZONE 'UTC', u.isdeleted, 'SYNCED', NULL{u_columns}
FROM unnest(%b::text[], %b::timestamptz[], %b::boolean[]{arrays}) AS u(sfid, systemmodstamp, isdeleted{u_names})
ON CONFLICT (sfid) DO UPDATE
SET systemmodstamp = EXCLUDED.systemmodstamp, isdeleted = EXCLUDED.isdeleted,
    -- the echo of our own write (the values the row holds) keeps its INSERTED/UPDATED mark: apps wait for it
    _hc_lastop = CASE WHEN t._hc_lastop IN ('INSERTED', 'UPDATED') AND NOT (false{differs}) THEN t._hc_lastop
                      ELSE 'SYNCED' END,
    _hc_err = NULL{set_columns}
WHERE forcebridge.not_backwards(t.systemmodstamp, EXCLUDED.systemmodstamp);

-- name: count_mapped_rows
SELECT count(*) AS n FROM {table};
