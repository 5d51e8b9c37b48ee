-- Heroku Connect's shape (issue 18): the status marks, the xmlbinary contract, the _trigger_log views' helpers,
-- and existing mapped tables converted to HC's column types and index names (docs/migrating-from-heroku-connect.md).

-- An app's UPDATE of mapped columns: PENDING, and the last error cleared (the app fixed the row). Only a session
-- at the default xmlbinary is the app's (triggers created before this migration lack that test in WHEN).
CREATE OR REPLACE FUNCTION forcebridge.mark_pending() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF current_setting('xmlbinary') = 'base64' THEN
        NEW._hc_lastop := 'PENDING';
        NEW._hc_err := NULL;
    END IF;
    RETURN NEW;
END
$fn$;

-- The text Heroku Connect shows for a failed write (_trigger_log.sf_message, the row's _hc_err): Salesforce's
-- message for each error, its status code after it, several joined by '; '. Our own reasons ({"reason": ..})
-- as they are.
CREATE OR REPLACE FUNCTION forcebridge.hc_error_text(errors jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT CASE
    WHEN errors IS NULL OR errors = 'null'::jsonb THEN NULL
    WHEN jsonb_typeof(errors) = 'array' THEN (
        SELECT string_agg(concat_ws(' ', coalesce(e->>'message', e->>'statusCode', e->>'errorCode', e::text),
                                    CASE WHEN e->>'message' IS NOT NULL AND coalesce(e->>'statusCode', e->>'errorCode') IS NOT NULL
                                         THEN '(' || coalesce(e->>'statusCode', e->>'errorCode') || ')' END), '; '
                          ORDER BY n)
        FROM jsonb_array_elements(errors) WITH ORDINALITY AS x(e, n))
    WHEN jsonb_typeof(errors) = 'object' THEN coalesce(errors->>'message', errors->>'reason', errors::text)
    ELSE errors #>> '{}'
END
$fn$;

-- hstore's text form ("key"=>"value", NULL unquoted) of the values a change sent, keys as column names:
-- _trigger_log.values without needing hstore in the connector's own schema.
CREATE OR REPLACE FUNCTION forcebridge.hstore_text(doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT string_agg(
    '"' || replace(replace(lower(k), '\', '\\'), '"', '\"') || '"=>' ||
    CASE WHEN v IS NULL THEN 'NULL' ELSE '"' || replace(replace(v, '\', '\\'), '"', '\"') || '"' END, ', '
    ORDER BY k)
FROM jsonb_each_text(CASE WHEN jsonb_typeof(doc) = 'object' THEN doc ELSE '{}'::jsonb END) AS x(k, v)
$fn$;

-- INSTEAD OF UPDATE on <schema>._trigger_log (gateway/hc_schema.py): what apps and scripts written for Heroku
-- Connect do to its log, done to ours. state FAILED/IGNORED -> NEW retries the change (the drain sends it
-- again, reading the row as it is now); NEW/REQUEUED/FAILED -> IGNORED drops it. Anything else is refused.
CREATE OR REPLACE FUNCTION forcebridge.trigger_log_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    mapping integer;
BEGIN
    IF (NEW.id, NEW.txid, NEW.created_at, NEW.action, NEW.table_name, NEW.record_id, NEW.sfid, NEW.old,
        NEW.values, NEW.sf_result, NEW.sf_message)
       IS DISTINCT FROM
       (OLD.id, OLD.txid, OLD.created_at, OLD.action, OLD.table_name, OLD.record_id, OLD.sfid, OLD.old,
        OLD.values, OLD.sf_result, OLD.sf_message) THEN
        RAISE EXCEPTION '_trigger_log entry %: only its state can be changed', OLD.id
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Set state = ''NEW'' on a FAILED entry to retry it, or ''IGNORED'' to drop it.';
    END IF;
    IF NEW.state IS NOT DISTINCT FROM OLD.state THEN
        RETURN NEW;
    END IF;
    IF NEW.state = 'NEW' AND OLD.state IN ('FAILED', 'IGNORED') THEN
        UPDATE forcebridge.change_log
        SET state = 'NEW', error = NULL, finished_at = NULL, next_attempt_at = NULL, lease_until = NULL,
            claim = NULL
        WHERE id = OLD.id AND state IN ('FAILED', 'IGNORED')
        RETURNING mapping_id INTO mapping;
    ELSIF NEW.state = 'IGNORED' AND OLD.state IN ('NEW', 'FAILED', 'REQUEUED') THEN
        UPDATE forcebridge.change_log
        SET state = 'IGNORED', finished_at = now(), lease_until = NULL
        WHERE id = OLD.id AND state IN ('NEW', 'FAILED', 'REQUEUED')
        RETURNING mapping_id INTO mapping;
        IF mapping IS NULL THEN   -- still in change_capture: moved into the log as IGNORED
            WITH moved AS (DELETE FROM forcebridge.change_capture WHERE id = OLD.id RETURNING *)
            INSERT INTO forcebridge.change_log (id, mapping_id, op, record_id, sfid, external_id, fields, txid,
                                                created_at, state, finished_at)
            SELECT id, mapping_id, op, record_id, sfid, external_id, fields, txid, created_at, 'IGNORED', now()
            FROM moved
            RETURNING mapping_id INTO mapping;
        END IF;
    ELSE
        RAISE EXCEPTION '_trigger_log entry %: state % cannot be set to %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'FAILED or IGNORED -> NEW retries an entry; NEW, FAILED or REQUEUED -> IGNORED drops it.';
    END IF;
    IF mapping IS NULL THEN
        RAISE EXCEPTION '_trigger_log entry % changed state meanwhile (it is being sent); read it again', OLD.id
            USING ERRCODE = 'serialization_failure';
    END IF;
    IF NEW.state = 'NEW' THEN
        PERFORM pg_notify('forcebridge_changes', mapping::text);   -- the drain's listener wakes up
    END IF;
    RETURN NEW;
END
$fn$;

-- Capture functions installed before this migration: the xmlbinary test joins the origin test (their text is
-- ours, sql/queries/capture.sql, as in migration 0004).
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'forcebridge' AND p.proname ~ '^capture_[0-9]+$'
    LOOP
        EXECUTE replace(pg_get_functiondef(f),
                        'IF coalesce(current_setting(''forcebridge.origin'', true), '''') <> '''' THEN',
                        'IF current_setting(''xmlbinary'') <> ''base64'' OR coalesce(current_setting(''forcebridge.origin'', true), '''') <> '''' THEN');
    END LOOP;
END
$$;

-- Existing mapped tables take Heroku Connect's types and index names. Every value is kept: timestamptz ->
-- timestamp without time zone AT TIME ZONE 'UTC' (the same instant as UTC wall time), numeric -> double
-- precision (currency: Salesforce keeps at most 18 digits). ALTER TYPE rewrites each table under an exclusive
-- lock: the upgrade's downtime grows with the tables' size. Triggers whose WHEN names a converted column
-- (fb_mark_pending) are dropped and re-created with the same definition around the change. A column an app's
-- own view or rule uses cannot change type: it keeps its type (a WARNING names it; the sync works with
-- either type, its sessions run in UTC) and the upgrade goes on.
DO $$
DECLARE
    m record;
    f record;
    tbl regclass;
    col text;
    trig record;
    saved text[];
    def text;
BEGIN
    FOR m IN SELECT * FROM forcebridge.mappings LOOP
        tbl := to_regclass(format('%I.%I', m.table_schema, m.table_name));
        CONTINUE WHEN tbl IS NULL;
        saved := ARRAY[]::text[];
        FOR trig IN SELECT t.oid, t.tgname FROM pg_trigger t WHERE t.tgrelid = tbl AND NOT t.tgisinternal
                    AND t.tgname = 'fb_mark_pending' LOOP
            saved := saved || pg_get_triggerdef(trig.oid);
            EXECUTE format('DROP TRIGGER %I ON %s', trig.tgname, tbl);
        END LOOP;
        FOR col IN
            SELECT 'systemmodstamp'
            UNION ALL
            SELECT lower(e->>'name') FROM jsonb_array_elements(m.fields) e WHERE lower(e->>'sf_type') = 'datetime'
        LOOP
            IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = col AND NOT attisdropped
                       AND atttypid = 'timestamptz'::regtype) THEN
                BEGIN
                    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE timestamp without time zone USING %I AT TIME ZONE ''UTC''',
                                   tbl, col, col);
                EXCEPTION WHEN feature_not_supported THEN   -- an app's view or rule uses the column
                    RAISE WARNING 'forcebridge: %.% kept as timestamptz (%); convert it by hand, see docs/migrating-from-heroku-connect.md',
                                  tbl, col, SQLERRM;
                END;
            END IF;
        END LOOP;
        FOR col IN
            SELECT lower(e->>'name') FROM jsonb_array_elements(m.fields) e
            WHERE lower(e->>'sf_type') IN ('currency', 'double', 'percent')
        LOOP
            IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = tbl AND attname = col AND NOT attisdropped
                       AND atttypid = 'numeric'::regtype) THEN
                BEGIN
                    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE double precision USING %I::double precision',
                                   tbl, col, col);
                EXCEPTION WHEN feature_not_supported THEN
                    RAISE WARNING 'forcebridge: %.% kept as numeric (%); convert it by hand, see docs/migrating-from-heroku-connect.md',
                                  tbl, col, SQLERRM;
                END;
            END IF;
        END LOOP;
        FOREACH def IN ARRAY saved LOOP
            EXECUTE def;
        END LOOP;
        -- sfid's unique constraint and the modstamp index get Heroku Connect's names (a rename: apps' foreign
        -- keys on sfid keep working)
        IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = tbl AND conname = left(m.table_name || '_sfid_key', 63))
           AND NOT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = m.table_schema::regnamespace
                           AND relname = left('hcu_idx_' || m.table_name || '_sfid', 63)) THEN
            EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', tbl, left(m.table_name || '_sfid_key', 63),
                           left('hcu_idx_' || m.table_name || '_sfid', 63));
        END IF;
        IF to_regclass(format('%I.%I', m.table_schema, left(m.table_name || '_systemmodstamp_idx', 63))) IS NOT NULL
           AND to_regclass(format('%I.%I', m.table_schema, left('hc_idx_' || m.table_name || '_systemmodstamp', 63))) IS NULL THEN
            EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', m.table_schema, left(m.table_name || '_systemmodstamp_idx', 63),
                           left('hc_idx_' || m.table_name || '_systemmodstamp', 63));
        END IF;
    END LOOP;
END
$$;

-- hc_capture_insert_from_row / hc_capture_update_from_row (Heroku Connect's names, created in each mapped
-- schema by gateway/hc_schema.py as thin wrappers over this): queue a row written while capture was off, as a
-- NEW entry in the ledger. `p_row` is the row (hstore_to_jsonb of the app's hstore(t.*)); for an update,
-- `p_columns` names the columns to send (NULL or empty: every mapped column). An insert sends every mapped
-- field as the row holds it when the drain reads it.
CREATE OR REPLACE FUNCTION forcebridge.capture_row(p_schema text, p_table text, p_op text, p_row jsonb,
                                                   p_columns text[]) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    m forcebridge.mappings;
    cols text[];
BEGIN
    SELECT * INTO m FROM forcebridge.mappings WHERE table_schema = p_schema AND table_name = lower(p_table);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no mapping for table %.%', p_schema, p_table USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT (m.active AND m.direction IN ('pg_to_sf', 'bidirectional')) THEN
        RAISE EXCEPTION 'the mapping of %.% does not write to Salesforce (read-only or inactive)', p_schema, p_table
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF p_row IS NULL OR nullif(p_row->>'id', '') IS NULL THEN
        RAISE EXCEPTION 'source_row must carry the row''s id (pass hstore(t.*))' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_op = 'update' THEN
        SELECT coalesce(array_agg(lower(e->>'name')), ARRAY[]::text[]) INTO cols
        FROM jsonb_array_elements(m.fields) e
        WHERE p_columns IS NULL OR cardinality(p_columns) = 0 OR lower(e->>'name') = ANY(p_columns);
    END IF;
    INSERT INTO forcebridge.change_capture (mapping_id, op, record_id, sfid, external_id, fields)
    VALUES (m.id, p_op, (p_row->>'id')::bigint, nullif(p_row->>'sfid', ''),
            CASE WHEN m.upsert_field IS NOT NULL THEN p_row->>lower(m.upsert_field) END, cols);
    PERFORM pg_notify('forcebridge_changes', m.id::text);
    RETURN 1;
END
$fn$;
