-- Schemas taken over from Heroku Connect in place (flask --app webapp connect adopt): what was moved.
CREATE TABLE forcebridge.adoptions (
    id               serial PRIMARY KEY,
    table_schema     text NOT NULL,
    adopted_at       timestamptz NOT NULL DEFAULT now(),
    mappings         text[] NOT NULL,          -- objects whose tables were taken over
    moved_open       integer NOT NULL,         -- Connect's unsent entries, now NEW in the change log
    moved_failed     integer NOT NULL,         -- Connect's FAILED entries, now FAILED in the change log
    moved_history    integer NOT NULL,         -- finished entries, now in change_log_archive
    dropped_triggers text[] NOT NULL,
    watermarks       jsonb NOT NULL            -- object -> the poll's starting SystemModstamp (null: load queued)
);
