-- Retrying a change CDC brought and Postgres refused reads the record whole by Id instead of replaying the
-- event (an update event carries only the changed fields: replayed later it could be refused by the
-- never-backwards rule yet be marked applied, or insert a row of those fields alone). The inbox row waits in
-- state 'refetching' while forcebridge.cdc_pending holds the read (`notification_id`); jobs/cdc_source.py
-- drain_pending then marks it applied or failed.
ALTER TABLE forcebridge.cdc_pending ADD COLUMN notification_id text;

ALTER TABLE forcebridge.inbox DROP CONSTRAINT inbox_state_check;
ALTER TABLE forcebridge.inbox ADD CONSTRAINT inbox_state_check
    CHECK (state IN ('pending', 'applied', 'failed', 'unmapped', 'ignored', 'refetching'));
