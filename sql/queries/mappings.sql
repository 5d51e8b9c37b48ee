-- name: list_mappings
SELECT * FROM forcebridge.mappings ORDER BY object_name;

-- name: get_mapping
SELECT * FROM forcebridge.mappings WHERE id = %(id)s;

-- name: lock_mapping
-- The mapping as it is now, for a transaction that acts on its settings (a load's merge and its row filter):
-- a save in flight commits first, one that comes later waits for this transaction. Taken before the mapped
-- table's lock, in the order a save takes them.
SELECT * FROM forcebridge.mappings WHERE id = %(id)s FOR SHARE;

-- name: get_mapping_by_object
SELECT * FROM forcebridge.mappings WHERE lower(object_name) = lower(%(object_name)s);

-- name: insert_mapping
INSERT INTO forcebridge.mappings
    (object_name, table_schema, table_name, direction, fields, upsert_field, conflict_rule, active, extra)
VALUES (%(object_name)s, %(table_schema)s, %(table_name)s, %(direction)s, %(fields)s, %(upsert_field)s,
        %(conflict_rule)s, %(active)s, %(extra)s)
RETURNING *;

-- name: update_mapping
UPDATE forcebridge.mappings
SET direction = %(direction)s, fields = %(fields)s, upsert_field = %(upsert_field)s,
    conflict_rule = %(conflict_rule)s, active = %(active)s, extra = %(extra)s, updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: delete_mapping
DELETE FROM forcebridge.mappings WHERE id = %(id)s RETURNING *;

-- name: active_reading_mappings
SELECT * FROM forcebridge.mappings
WHERE active AND direction IN ('sf_to_pg', 'bidirectional');

-- name: get_connection_config
SELECT connection, version, imported_at FROM forcebridge.connection_config;

-- name: save_connection_config
INSERT INTO forcebridge.connection_config (connection, version)
VALUES (%(connection)s, %(version)s)
ON CONFLICT (singleton) DO UPDATE SET connection = EXCLUDED.connection, version = EXCLUDED.version,
    imported_at = now()
WHERE connection_config.connection IS DISTINCT FROM EXCLUDED.connection
   OR connection_config.version IS DISTINCT FROM EXCLUDED.version;
