-- Huey's queue, schedule and results in Postgres (jobs/pg_storage.py), for hosts whose disk does not
-- survive a restart. Every row carries the Huey instance's name so several deployments can share tables.

-- name: huey_create_tables
CREATE SCHEMA IF NOT EXISTS forcebridge;
CREATE TABLE IF NOT EXISTS forcebridge.huey_task (
    id        bigserial PRIMARY KEY,
    queue     text NOT NULL,
    data      bytea NOT NULL,
    priority  double precision NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS huey_task_next ON forcebridge.huey_task (queue, priority DESC, id);
CREATE TABLE IF NOT EXISTS forcebridge.huey_schedule (
    id        bigserial PRIMARY KEY,
    queue     text NOT NULL,
    data      bytea NOT NULL,
    run_at    double precision NOT NULL   -- the POSIX timestamp Huey asks for, as SqliteStorage keeps it
);
CREATE INDEX IF NOT EXISTS huey_schedule_due ON forcebridge.huey_schedule (queue, run_at);
CREATE TABLE IF NOT EXISTS forcebridge.huey_kv (
    queue     text NOT NULL,
    key       text NOT NULL,
    value     bytea NOT NULL,
    PRIMARY KEY (queue, key)
);
CREATE TABLE IF NOT EXISTS forcebridge.huey_counter (
    queue     text NOT NULL,
    key       text NOT NULL,
    value     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, key)
);

-- name: huey_enqueue
-- The NOTIFY is delivered at commit, so a waiting consumer never wakes before the row is visible.
WITH task AS (
    INSERT INTO forcebridge.huey_task (queue, data, priority) VALUES (%(queue)s, %(data)s, %(priority)s)
    RETURNING id
)
SELECT pg_notify('forcebridge_huey', %(queue)s) FROM task;

-- name: huey_dequeue
-- SKIP LOCKED: consumers on several machines each take a different task and never wait on each other.
DELETE FROM forcebridge.huey_task
WHERE id = (SELECT id FROM forcebridge.huey_task
            WHERE queue = %(queue)s
            ORDER BY priority DESC, id
            LIMIT 1
            FOR UPDATE SKIP LOCKED)
RETURNING data;

-- name: huey_queue_size
SELECT count(*) AS n FROM forcebridge.huey_task WHERE queue = %(queue)s;

-- name: huey_enqueued_items
SELECT data FROM forcebridge.huey_task WHERE queue = %(queue)s
ORDER BY priority DESC, id
LIMIT %(limit)s;

-- name: huey_flush_queue
DELETE FROM forcebridge.huey_task WHERE queue = %(queue)s;

-- name: huey_add_to_schedule
INSERT INTO forcebridge.huey_schedule (queue, data, run_at) VALUES (%(queue)s, %(data)s, %(run_at)s);

-- name: huey_read_schedule
-- Due tasks leave the schedule in the statement that reads them: two schedulers never both get one.
DELETE FROM forcebridge.huey_schedule
WHERE id IN (SELECT id FROM forcebridge.huey_schedule
             WHERE queue = %(queue)s AND run_at <= %(run_at)s
             FOR UPDATE SKIP LOCKED)
RETURNING data, run_at, id;

-- name: huey_schedule_size
SELECT count(*) AS n FROM forcebridge.huey_schedule WHERE queue = %(queue)s;

-- name: huey_scheduled_items
SELECT data FROM forcebridge.huey_schedule WHERE queue = %(queue)s
ORDER BY run_at, id
LIMIT %(limit)s;

-- name: huey_flush_schedule
DELETE FROM forcebridge.huey_schedule WHERE queue = %(queue)s;

-- name: huey_put_data
INSERT INTO forcebridge.huey_kv (queue, key, value) VALUES (%(queue)s, %(key)s, %(value)s)
ON CONFLICT (queue, key) DO UPDATE SET value = excluded.value;

-- name: huey_put_if_empty
INSERT INTO forcebridge.huey_kv (queue, key, value) VALUES (%(queue)s, %(key)s, %(value)s)
ON CONFLICT (queue, key) DO NOTHING
RETURNING key;

-- name: huey_peek_data
SELECT key, value FROM forcebridge.huey_kv WHERE queue = %(queue)s AND key = ANY(%(keys)s);

-- name: huey_pop_data
DELETE FROM forcebridge.huey_kv WHERE queue = %(queue)s AND key = %(key)s
RETURNING value;

-- name: huey_result_store_size
SELECT count(*) AS n FROM forcebridge.huey_kv WHERE queue = %(queue)s;

-- name: huey_result_items
SELECT key, value FROM forcebridge.huey_kv WHERE queue = %(queue)s;

-- name: huey_flush_results
DELETE FROM forcebridge.huey_kv WHERE queue = %(queue)s;

-- name: huey_incr
INSERT INTO forcebridge.huey_counter AS c (queue, key, value) VALUES (%(queue)s, %(key)s, %(amount)s)
ON CONFLICT (queue, key) DO UPDATE SET value = c.value + excluded.value
RETURNING value;

-- name: huey_delete_counter
DELETE FROM forcebridge.huey_counter WHERE queue = %(queue)s AND key = %(key)s;

-- name: huey_flush_counters
DELETE FROM forcebridge.huey_counter WHERE queue = %(queue)s;

-- name: huey_tables_exist
SELECT to_regclass('forcebridge.huey_counter') IS NOT NULL AS ready;

-- name: huey_ddl_lock
-- Two processes starting at once must not both create the tables (CREATE .. IF NOT EXISTS can still race).
SELECT pg_advisory_xact_lock(1178755693);

-- name: huey_listen
LISTEN forcebridge_huey;
