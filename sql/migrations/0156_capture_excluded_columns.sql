-- hc_capture_insert_from_row's `excluded_cols` (Heroku Connect's contract: an excluded column is not sent)
-- was ignored: the insert sent every mapped field. An insert now carries the mapped columns it must not
-- send (`excluded`, kept through the change log; core/changes.py leaves them out of the create or upsert
-- until a later update of the record changes them). Salesforce-owned columns are never sent anyway.
ALTER TABLE forcebridge.change_capture ADD COLUMN excluded text[];
ALTER TABLE forcebridge.change_log ADD COLUMN excluded text[];

CREATE OR REPLACE FUNCTION forcebridge.capture_row(p_schema text, p_table text, p_op text, p_row jsonb,
                                                   p_columns text[]) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    m forcebridge.mappings;
    cols text[];
    skipped text[];
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
    ELSIF p_columns IS NOT NULL AND cardinality(p_columns) > 0 THEN
        -- an insert's excluded_cols: the mapped columns it names are not sent (compared in lower case)
        SELECT array_agg(lower(e->>'name')) INTO skipped
        FROM jsonb_array_elements(m.fields) e
        WHERE lower(e->>'name') IN (SELECT lower(x) FROM unnest(p_columns) AS x);
    END IF;
    INSERT INTO forcebridge.change_capture (mapping_id, op, record_id, sfid, external_id, fields, excluded)
    VALUES (m.id, p_op, (p_row->>'id')::bigint, nullif(p_row->>'sfid', ''),
            CASE WHEN m.upsert_field IS NOT NULL THEN p_row->>lower(m.upsert_field) END, cols, skipped);
    PERFORM pg_notify('forcebridge_changes', m.id::text);
    RETURN 1;
END
$fn$;
