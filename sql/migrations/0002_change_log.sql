-- Postgres -> Salesforce: the change log the capture triggers fill and the drain empties.
-- A row holds keys and the names of the changed columns only; values are read when the change is drained.

CREATE TABLE forcebridge.change_log (
    id              bigserial PRIMARY KEY,
    mapping_id      integer NOT NULL,
    op              text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    record_id       bigint NOT NULL,              -- the mapped table's id
    sfid            varchar(18),                  -- known at capture, or written back on success
    external_id     text,
    fields          text[],                       -- update: mapped columns that changed
    txid            bigint NOT NULL DEFAULT txid_current(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Heroku Connect's trigger log states
    state           text NOT NULL DEFAULT 'NEW'
                    CHECK (state IN ('NEW', 'PENDING', 'SUCCESS', 'FAILED', 'IGNORED', 'MERGED', 'REQUEUED')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,                  -- REQUEUED: not before this time
    lease_until     timestamptz,                  -- PENDING: claimed by a drain until then
    error           jsonb,                        -- Salesforce's error JSON for FAILED/REQUEUED
    sent            jsonb,                        -- the values written to Salesforce (echo recognition)
    finished_at     timestamptz
);
-- Open entries per record: claiming keeps one drain per record, the inbound path looks for local changes.
CREATE INDEX change_log_open ON forcebridge.change_log (mapping_id, record_id)
    WHERE state IN ('NEW', 'PENDING', 'REQUEUED');

CREATE TABLE forcebridge.change_log_archive (LIKE forcebridge.change_log);
ALTER TABLE forcebridge.change_log_archive ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX change_log_archive_finished ON forcebridge.change_log_archive (finished_at);

-- A record changed on both sides since the last sync, and how it was settled.
CREATE TABLE forcebridge.conflicts (
    id            bigserial PRIMARY KEY,
    mapping_id    integer NOT NULL,
    record_id     bigint,
    sfid          varchar(18) NOT NULL,
    rule          text NOT NULL,
    winner        text NOT NULL CHECK (winner IN ('salesforce', 'postgres')),
    pg_values     jsonb NOT NULL,
    sf_values     jsonb NOT NULL,
    pg_changed_at timestamptz,
    sf_changed_at timestamptz,
    detected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conflicts_detected ON forcebridge.conflicts (detected_at);

-- A user's UPDATE of mapped columns marks the row; the trigger's WHEN clause decides (no call otherwise).
CREATE FUNCTION forcebridge.mark_pending() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW._hc_lastop := 'PENDING';
    RETURN NEW;
END
$fn$;

-- What we last wrote to each Salesforce record: an Outbound Message carrying exactly that is our echo.
CREATE INDEX change_log_sent ON forcebridge.change_log (mapping_id, sfid)
    WHERE state = 'SUCCESS' AND sent IS NOT NULL;
