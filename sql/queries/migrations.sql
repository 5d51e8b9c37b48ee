-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS forcebridge;
CREATE TABLE IF NOT EXISTS forcebridge.schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM forcebridge.schema_migrations;

-- name: record_migration
INSERT INTO forcebridge.schema_migrations (version) VALUES (%s);
