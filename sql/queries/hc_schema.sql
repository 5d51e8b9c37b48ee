-- Heroku Connect's objects in a mapped schema (gateway/hc_schema.py). {schema} is a psycopg.sql.Identifier,
-- {schema_name} a Literal, {hstore} the extension's schema; never strings.

-- name: lock_hc_upgrade
-- One transaction at a time creates Heroku Connect's objects (mapping saves, the worker's upgrade at start).
SELECT pg_advisory_xact_lock(1178758729);

-- name: create_hstore
CREATE EXTENSION IF NOT EXISTS hstore;

-- name: hstore_schema
SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'hstore';

-- name: relation_kind
SELECT c.relkind AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s;

-- name: function_result
-- The result type of a function of that name and number of arguments, if there is one.
SELECT format_type(p.prorettype, NULL) AS result FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND p.proname = %(name)s AND p.pronargs = %(args)s;

-- name: create_hcmeta
CREATE TABLE IF NOT EXISTS {schema}._hcmeta (
    id      serial PRIMARY KEY,
    hcver   integer,
    org_id  varchar(50),
    details text
);

-- name: create_sf_event_log
CREATE TABLE IF NOT EXISTS {schema}._sf_event_log (
    id           serial PRIMARY KEY,
    table_name   varchar(128),
    action       varchar(7),
    synced_at    timestamptz DEFAULT now(),
    sf_timestamp timestamptz,
    sfid         varchar(20),
    record       text,
    processed    boolean
);

-- name: create_get_xmlbinary
-- App triggers call it to tell the connector's writes (hex) from the app's own (base64).
CREATE OR REPLACE FUNCTION {schema}.get_xmlbinary() RETURNS varchar
LANGUAGE sql STABLE AS $fn$ SELECT current_setting('xmlbinary')::varchar $fn$;

-- name: create_trigger_log_view
-- The ledger (forcebridge.change_capture + change_log) seen as Heroku Connect's _trigger_log, for this
-- schema's mappings. A view cannot disagree with the ledger: nothing is kept in step, nothing can be lost.
CREATE OR REPLACE VIEW {schema}._trigger_log AS
SELECT c.id, c.txid, c.created_at, coalesce(c.finished_at, c.created_at) AS updated_at,
       c.finished_at AS processed_at, NULL::bigint AS processed_tx, c.state::varchar(8) AS state,
       upper(c.op)::varchar(7) AS action, m.table_name::varchar(128) AS table_name,
       c.record_id::integer AS record_id, c.sfid, NULL::text AS old, forcebridge.hstore_text(c.sent) AS "values",
       NULL::integer AS sf_result, forcebridge.hc_error_text(c.error) AS sf_message
FROM forcebridge.change_log c JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE m.table_schema = {schema_name}
UNION ALL
SELECT c.id, c.txid, c.created_at, c.created_at, NULL::timestamptz, NULL::bigint, 'NEW'::varchar(8),
       upper(c.op)::varchar(7), m.table_name::varchar(128), c.record_id::integer, c.sfid, NULL::text, NULL::text,
       NULL::integer, NULL::text
FROM forcebridge.change_capture c JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE m.table_schema = {schema_name};

-- name: create_trigger_log_archive_view
CREATE OR REPLACE VIEW {schema}._trigger_log_archive AS
SELECT c.id, c.txid, c.created_at, coalesce(c.finished_at, c.archived_at) AS updated_at,
       c.finished_at AS processed_at, NULL::bigint AS processed_tx, c.state::varchar(8) AS state,
       upper(c.op)::varchar(7) AS action, m.table_name::varchar(128) AS table_name,
       c.record_id::integer AS record_id, c.sfid, NULL::text AS old, forcebridge.hstore_text(c.sent) AS "values",
       NULL::integer AS sf_result, forcebridge.hc_error_text(c.error) AS sf_message
FROM forcebridge.change_log_archive c JOIN forcebridge.mappings m ON m.id = c.mapping_id
WHERE m.table_schema = {schema_name};

-- name: drop_trigger_log_update_trigger
DROP TRIGGER IF EXISTS fb_trigger_log_update ON {schema}._trigger_log;

-- name: create_trigger_log_update_trigger
-- Retry (FAILED -> NEW) and ignore, as apps do them on Heroku Connect's table (migration 0060).
CREATE TRIGGER fb_trigger_log_update INSTEAD OF UPDATE ON {schema}._trigger_log
FOR EACH ROW EXECUTE FUNCTION forcebridge.trigger_log_update();

-- name: drop_capture_from_row
DROP FUNCTION IF EXISTS {function}({hstore}, varchar, text[]);

-- name: create_capture_insert_from_row
CREATE OR REPLACE FUNCTION {schema}.hc_capture_insert_from_row(
    source_row {hstore}, table_name varchar, excluded_cols text[] DEFAULT ARRAY[]::text[]) RETURNS integer
LANGUAGE sql AS $fn$
    SELECT forcebridge.capture_row({schema_name}, table_name, 'insert', {hstore_to_jsonb}(source_row), excluded_cols)
$fn$;

-- name: create_capture_update_from_row
CREATE OR REPLACE FUNCTION {schema}.hc_capture_update_from_row(
    source_row {hstore}, table_name varchar, columns_to_include text[] DEFAULT ARRAY[]::text[]) RETURNS integer
LANGUAGE sql AS $fn$
    SELECT forcebridge.capture_row({schema_name}, table_name, 'update', {hstore_to_jsonb}(source_row),
                                   columns_to_include)
$fn$;
