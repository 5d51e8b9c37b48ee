-- Capture triggers on mapped tables that write to Salesforce. {table}, {name} etc. are filled with
-- psycopg.sql (Identifier / Literal), never with strings.

-- name: create_capture_function
-- Statement-level capture, one function per mapping with its columns written in, so the plan is cached:
-- a COPY of 100,000 rows is one call with one INSERT .. SELECT over the transition table. It appends to
-- change_capture, which has no index; the drain moves the entries into the change log (migration 0004).
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    -- Heroku Connect's rule: only a session at the default xmlbinary (base64) writes for the app. The
    -- connector's own writes (inbound apply, sfid write-back) set it to hex and forcebridge.origin; an app
    -- sets it to hex for a change that stays local.
    IF current_setting('xmlbinary') <> 'base64' OR coalesce(current_setting('forcebridge.origin', true), '') <> '' THEN
        IF TG_OP = 'INSERT' AND coalesce(current_setting('forcebridge.origin', true), '') = '' THEN
            -- an app's local-only insert: nothing waits for Salesforce, whatever the column default said
            -- (Heroku Connect marks a write outside base64 SYNCED); only this rare path pays for the UPDATE
            EXECUTE format('UPDATE %I.%I t SET _hc_lastop = ''SYNCED'' FROM fb_new n '
                           'WHERE t.id = n.id AND t._hc_lastop = ''PENDING''', TG_TABLE_SCHEMA, TG_TABLE_NAME);
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO forcebridge.change_capture (mapping_id, op, record_id, sfid, external_id)
        SELECT {mapping_id}, 'insert', r.id, r.sfid, {ext} FROM fb_new r;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO forcebridge.change_capture (mapping_id, op, record_id, sfid, external_id)
        SELECT {mapping_id}, 'delete', r.id, r.sfid, {ext} FROM fb_old r;
    ELSE
        -- old_values: what the changed columns held before, the common base a per-field conflict compares with
        INSERT INTO forcebridge.change_capture (mapping_id, op, record_id, sfid, external_id, fields, old_values)
        SELECT {mapping_id}, 'update', r.id, r.sfid, {ext}, f.cols, jsonb_strip_nulls(jsonb_build_object({old}))
        FROM fb_new r JOIN fb_old o ON o.id = r.id
        CROSS JOIN LATERAL (SELECT array_remove(ARRAY[{changed}]::text[], NULL) AS cols) f
        WHERE cardinality(f.cols) > 0;
    END IF;
    IF FOUND THEN
        -- identical payloads fold into one notification per transaction
        PERFORM pg_notify('forcebridge_changes', {mapping_id}::text);
    END IF;
    RETURN NULL;
END
$fn$;

-- name: drop_capture_function
DROP FUNCTION IF EXISTS {function}();

-- name: create_capture_insert_trigger
CREATE TRIGGER {name} AFTER INSERT ON {table}
REFERENCING NEW TABLE AS fb_new
FOR EACH STATEMENT EXECUTE FUNCTION {function}();

-- name: create_capture_update_trigger
CREATE TRIGGER {name} AFTER UPDATE ON {table}
REFERENCING OLD TABLE AS fb_old NEW TABLE AS fb_new
FOR EACH STATEMENT EXECUTE FUNCTION {function}();

-- name: create_capture_delete_trigger
CREATE TRIGGER {name} AFTER DELETE ON {table}
REFERENCING OLD TABLE AS fb_old
FOR EACH STATEMENT EXECUTE FUNCTION {function}();

-- name: create_mark_pending_trigger
-- Only a user's change to a mapped column marks the row; _hc_lastop/_hc_err alone never do.
CREATE TRIGGER {name} BEFORE UPDATE ON {table}
FOR EACH ROW
WHEN (ROW({new_columns}) IS DISTINCT FROM ROW({old_columns})
      AND current_setting('xmlbinary') = 'base64'
      AND coalesce(current_setting('forcebridge.origin', true), '') = '')
EXECUTE FUNCTION forcebridge.mark_pending();

-- name: drop_trigger
DROP TRIGGER IF EXISTS {name} ON {table};

-- name: set_lastop_default
-- A new row written by an app is waiting for Salesforce until the drain says otherwise.
ALTER TABLE {table} ALTER COLUMN _hc_lastop SET DEFAULT 'PENDING';

-- name: drop_lastop_default
ALTER TABLE {table} ALTER COLUMN _hc_lastop DROP DEFAULT;

-- name: mapped_table_exists
SELECT to_regclass(format('%%I.%%I', %(schema)s::text, %(table)s::text)) IS NOT NULL AS present;
