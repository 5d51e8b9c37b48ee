-- Outbound Message rules, queue and counters (the emulator's own SQLite file, outbound.sqlite3).

-- name: schema
CREATE TABLE IF NOT EXISTS outbound_rule (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbound_notification (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    rule_id TEXT NOT NULL,
    sobject TEXT NOT NULL,
    record_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbound_notification_due ON outbound_notification (due_at);
CREATE TABLE IF NOT EXISTS outbound_counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbound_setting (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- name: rules
SELECT body FROM outbound_rule ORDER BY id;

-- name: put_rule
INSERT INTO outbound_rule (id, body) VALUES (:id, :body)
ON CONFLICT (id) DO UPDATE SET body = excluded.body;

-- name: delete_rule
DELETE FROM outbound_rule WHERE id = :id;

-- name: enqueue
INSERT INTO outbound_notification (id, rule_id, sobject, record_id, created_at, due_at)
VALUES (:id, :rule_id, :sobject, :record_id, :created_at, :created_at);

-- name: due
SELECT id, rule_id, sobject, record_id, created_at, due_at, attempts
FROM outbound_notification WHERE due_at <= :now ORDER BY seq LIMIT :limit;

-- name: next_due
SELECT min(due_at) FROM outbound_notification;

-- name: queued
SELECT id, rule_id, sobject, record_id, created_at, due_at, attempts, last_error
FROM outbound_notification ORDER BY seq LIMIT :limit;

-- name: queued_count
SELECT count(*) FROM outbound_notification;

-- name: forget
DELETE FROM outbound_notification WHERE id = :id;

-- name: reschedule
UPDATE outbound_notification SET attempts = :attempts, due_at = :due_at, last_error = :last_error
WHERE id = :id;

-- name: bump_counter
INSERT INTO outbound_counter (name, value) VALUES (:name, :by)
ON CONFLICT (name) DO UPDATE SET value = value + excluded.value;

-- name: counters
SELECT name, value FROM outbound_counter;

-- name: put_setting
INSERT INTO outbound_setting (name, value) VALUES (:name, :value)
ON CONFLICT (name) DO UPDATE SET value = excluded.value;

-- name: settings
SELECT name, value FROM outbound_setting;
