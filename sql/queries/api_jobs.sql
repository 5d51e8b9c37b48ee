-- Long operations started from the API, run by the worker (jobs/api_jobs.py, migration 0105).

-- name: insert_api_job
INSERT INTO forcebridge.api_jobs (kind, mapping_id, params, requested_by)
VALUES (%(kind)s, %(mapping_id)s, %(params)s, %(requested_by)s)
RETURNING *;

-- name: get_api_job
SELECT * FROM forcebridge.api_jobs WHERE id = %(id)s;

-- name: list_api_jobs
SELECT * FROM forcebridge.api_jobs
WHERE %(mapping_id)s::integer IS NULL OR mapping_id = %(mapping_id)s::integer
ORDER BY id DESC
LIMIT %(limit)s;

-- name: claim_api_job
-- Queued, or running under a lease that lapsed (its worker died): one runner at a time.
UPDATE forcebridge.api_jobs
SET state = 'running', runner = %(runner)s, attempts = attempts + 1, started_at = now(), error = NULL,
    lease_until = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = %(id)s AND (state = 'queued' OR (state = 'running' AND lease_until < now()))
RETURNING *;

-- name: renew_api_job
UPDATE forcebridge.api_jobs
SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = %(id)s AND state = 'running' AND runner = %(runner)s;

-- name: finish_api_job
UPDATE forcebridge.api_jobs
SET state = %(state)s, result = %(result)s, error = %(error)s, finished_at = now(), lease_until = NULL
WHERE id = %(id)s AND state = 'running' AND runner = %(runner)s
RETURNING *;

-- name: api_jobs_waiting
-- For the backstop: jobs whose doorbell was lost (queued a while ago) or whose worker died.
SELECT id FROM forcebridge.api_jobs
WHERE (state = 'queued' AND created_at < now() - make_interval(secs => %(queued_seconds)s))
   OR (state = 'running' AND lease_until < now())
ORDER BY id;
