-- Adopting a schema Heroku Connect managed (gateway/adopt.py): its log moves into ours, its triggers go.
-- {schema}, {table} are filled with psycopg.sql.Identifier.

-- name: adopt_as_connector
-- Heroku Connect's mark of its own sessions (app triggers testing get_xmlbinary() skip what follows).
SELECT set_config('xmlbinary', 'hex', true);

-- name: adopt_schema_objects
-- What Heroku Connect left in the schema: its log tables (r = a table, v = a view: adopted already).
SELECT c.relname AS name, c.relkind AS kind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname IN ('_trigger_log', '_trigger_log_archive', '_hcmeta', '_sf_event_log');

-- name: adopt_hc_triggers
-- Connect's triggers on the schema's tables (hc_<table>_logtrigger, hc_<table>_status_trigger) and the
-- functions they run.
SELECT t.tgname AS trigger, c.relname AS table_name, fn.nspname AS function_schema, p.proname AS function
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_namespace fn ON fn.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND NOT t.tgisinternal AND left(t.tgname, 3) = 'hc_'
  AND c.relname NOT IN ('_trigger_log', '_trigger_log_archive')
ORDER BY c.relname, t.tgname;

-- name: adopt_log_functions
-- Connect's functions that write its log table (loggers, hc_capture_*_from_row, the NOTIFY trigger): they
-- stop working when the table goes, so they go with it. get_xmlbinary() stays.
SELECT p.proname AS function, pg_get_function_identity_arguments(p.oid) AS arguments
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s AND p.prosrc LIKE '%%\_trigger\_log%%';

-- name: adopt_drop_trigger
DROP TRIGGER IF EXISTS {trigger} ON {table};

-- name: adopt_drop_function
DROP FUNCTION IF EXISTS {function}({arguments});

-- name: adopt_copy_log
-- Both of Connect's log tables, oldest first, kept for the move after they are dropped.
CREATE TEMP TABLE adopt_hc_log ON COMMIT DROP AS
SELECT false AS archived, id, txid, created_at, updated_at, processed_at, state, action, table_name,
       record_id, sfid, old, "values", sf_result, sf_message
FROM {schema}._trigger_log
UNION ALL
SELECT true, id, txid, created_at, updated_at, processed_at, state, action, table_name,
       record_id, sfid, old, "values", sf_result, sf_message
FROM {schema}._trigger_log_archive;

-- name: adopt_drop_log_tables
DROP TABLE IF EXISTS {schema}._trigger_log, {schema}._trigger_log_archive;

-- name: adopt_move_open
-- What Connect had not sent (NEW, PENDING, REQUEUE, REQUEUED) becomes NEW in our log, in Connect's order, so
-- the drain sends it; Connect's FAILED entries stay FAILED (shown, retryable). UPDATE entries carry the
-- mapped columns Connect logged as changed; the external id comes from the logged values.
-- %(mappings)s: [{"table_name", "mapping_id", "ext", "columns"}]
WITH m AS (
    SELECT * FROM jsonb_to_recordset(%(mappings)s::jsonb) AS x(table_name text, mapping_id int, ext text, columns text[])
)
INSERT INTO forcebridge.change_log (mapping_id, op, record_id, sfid, external_id, fields, txid, created_at,
                                    state, error, finished_at)
SELECT m.mapping_id, lower(h.action), coalesce(h.record_id, 0), h.sfid,
       CASE WHEN m.ext IS NOT NULL
            THEN coalesce(coalesce(h."values", '')::hstore -> m.ext, coalesce(h.old, '')::hstore -> m.ext) END,
       CASE WHEN upper(h.action) = 'UPDATE'
            THEN ARRAY(SELECT k FROM unnest(akeys(coalesce(h."values", '')::hstore)) AS k
                       WHERE k = ANY (m.columns) ORDER BY k) END,
       coalesce(h.txid, 0), coalesce(h.created_at, now()),
       CASE WHEN upper(h.state) = 'FAILED' THEN 'FAILED' ELSE 'NEW' END,
       CASE WHEN h.sf_message IS NOT NULL
            THEN jsonb_build_array(jsonb_build_object('statusCode', 'HEROKU_CONNECT', 'message', h.sf_message)) END,
       CASE WHEN upper(h.state) = 'FAILED' THEN coalesce(h.processed_at, h.updated_at) END
FROM adopt_hc_log h JOIN m ON m.table_name = h.table_name
WHERE NOT h.archived AND upper(h.state) IN ('NEW', 'PENDING', 'REQUEUE', 'REQUEUED', 'FAILED')
  AND upper(h.action) IN ('INSERT', 'UPDATE', 'DELETE')
ORDER BY h.id
RETURNING state;

-- name: adopt_move_history
-- Everything else is history: finished entries in the archive (READONLY, a change never sent from a
-- read-only mapping, is kept as IGNORED; our log has no such state). A table no mapping names keeps its
-- history under mapping 0.
WITH m AS (
    SELECT * FROM jsonb_to_recordset(%(mappings)s::jsonb) AS x(table_name text, mapping_id int, ext text, columns text[])
)
INSERT INTO forcebridge.change_log_archive (id, mapping_id, op, record_id, sfid, external_id, fields, txid,
                                            created_at, state, attempts, error, finished_at)
SELECT nextval('forcebridge.change_log_id_seq'), coalesce(m.mapping_id, 0),
       CASE WHEN upper(h.action) IN ('INSERT', 'UPDATE', 'DELETE') THEN lower(h.action) ELSE 'update' END,
       coalesce(h.record_id, 0), h.sfid,
       CASE WHEN m.ext IS NOT NULL
            THEN coalesce(coalesce(h."values", '')::hstore -> m.ext, coalesce(h.old, '')::hstore -> m.ext) END,
       CASE WHEN upper(h.action) = 'UPDATE'
            THEN ARRAY(SELECT k FROM unnest(akeys(coalesce(h."values", '')::hstore)) AS k ORDER BY k) END,
       coalesce(h.txid, 0), coalesce(h.created_at, now()),
       CASE upper(h.state) WHEN 'SUCCESS' THEN 'SUCCESS' WHEN 'MERGED' THEN 'MERGED' WHEN 'FAILED' THEN 'FAILED'
                           ELSE 'IGNORED' END,
       CASE WHEN upper(h.state) IN ('SUCCESS', 'FAILED', 'MERGED') THEN 1 ELSE 0 END,
       CASE WHEN h.sf_message IS NOT NULL
            THEN jsonb_build_array(jsonb_build_object('statusCode', 'HEROKU_CONNECT', 'message', h.sf_message)) END,
       coalesce(h.processed_at, h.updated_at, h.created_at, now())
FROM adopt_hc_log h LEFT JOIN m ON m.table_name = h.table_name
WHERE h.archived OR m.mapping_id IS NULL
   OR upper(h.state) NOT IN ('NEW', 'PENDING', 'REQUEUE', 'REQUEUED', 'FAILED')
   OR upper(h.action) NOT IN ('INSERT', 'UPDATE', 'DELETE')
ORDER BY h.id;

-- name: adopt_unmapped_open
-- Entries Connect had not sent for tables no mapping names: adoption would lose them, so it stops.
SELECT h.table_name, count(*) AS n FROM adopt_hc_log h
WHERE NOT h.archived AND upper(h.state) IN ('NEW', 'PENDING', 'REQUEUE', 'REQUEUED')
  AND NOT h.table_name = ANY (%(tables)s::text[])
GROUP BY h.table_name ORDER BY h.table_name;

-- name: adopt_newest_modstamp
SELECT max(systemmodstamp) AS newest, count(*) AS n FROM {table};

-- name: adopt_poll_state
-- Salesforce -> Postgres resumes from the newest SystemModstamp the table holds: no reload.
INSERT INTO forcebridge.poll_state (mapping_id, watermark, deleted_since, next_poll_at)
VALUES (%(mapping_id)s, %(watermark)s, %(watermark)s, now())
ON CONFLICT (mapping_id) DO UPDATE
SET watermark = greatest(forcebridge.poll_state.watermark, EXCLUDED.watermark),
    deleted_since = greatest(forcebridge.poll_state.deleted_since, EXCLUDED.deleted_since),
    next_poll_at = now();

-- name: adopt_cancel_loads
-- A load queued before the adoption (an earlier import) is not needed: the rows are here already.
UPDATE forcebridge.loads SET state = 'cancelled', finished_at = now(), updated_at = now(),
    error = 'not needed: the table was adopted from Heroku Connect with its rows'
WHERE mapping_id = %(mapping_id)s AND state = 'queued';

-- name: record_adoption
INSERT INTO forcebridge.adoptions (table_schema, mappings, moved_open, moved_failed, moved_history,
                                   dropped_triggers, watermarks)
VALUES (%(schema)s, %(mappings)s, %(moved_open)s, %(moved_failed)s, %(moved_history)s, %(dropped_triggers)s,
        %(watermarks)s)
RETURNING *;

-- name: adoption_of_schema
SELECT * FROM forcebridge.adoptions WHERE table_schema = %(schema)s ORDER BY id DESC LIMIT 1;

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s) AS present;

-- name: list_adoptions
SELECT * FROM forcebridge.adoptions ORDER BY id DESC LIMIT 20;

-- name: hc_schema_pending_adoption
-- A schema whose _trigger_log is still Connect's table: importing into it would capture every change twice.
SELECT n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = '_trigger_log' AND c.relkind = 'r' AND n.nspname = ANY (%(schemas)s::text[]);
