-- Capture appends, the drain indexes. The capture triggers write into change_capture, a heap with no index,
-- so an app's write pays for one unindexed row instead of a change-log row and its indexes. Whatever reads or
-- changes open entries (claims, inbound applies, merges, the initial push) first moves captured rows into the
-- change log (absorb_captured_changes in sql/queries/change_log.sql), whose indexed guards then see them.
-- Ids come from the change log's sequence at capture time, so the log order is the capture order.
CREATE TABLE forcebridge.change_capture (
    id          bigint NOT NULL DEFAULT nextval('forcebridge.change_log_id_seq'),
    mapping_id  integer NOT NULL,
    op          text NOT NULL,
    record_id   bigint NOT NULL,
    sfid        varchar(18),
    external_id text,
    fields      text[],
    txid        bigint NOT NULL DEFAULT txid_current(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- A queue: every row is deleted soon after it is written. Vacuumed after a fixed number of dead rows, not a
-- fraction of a size that was only ever momentary.
ALTER TABLE forcebridge.change_capture SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);

-- Open changes wherever they are, moved into the change log or not (console backlog, operators, tests).
CREATE VIEW forcebridge.open_changes AS
SELECT id, mapping_id, op, record_id, sfid, state, created_at
FROM forcebridge.change_log
WHERE state IN ('NEW', 'PENDING', 'REQUEUED')
UNION ALL
SELECT id, mapping_id, op, record_id, sfid, 'NEW', created_at
FROM forcebridge.change_capture;

-- Capture functions installed before this migration write into the change log directly (still correct, only
-- slower): point them at change_capture. Their text is ours (sql/queries/capture.sql).
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'forcebridge' AND p.proname ~ '^capture_[0-9]+$'
    LOOP
        EXECUTE replace(pg_get_functiondef(f), 'INSERT INTO forcebridge.change_log (',
                        'INSERT INTO forcebridge.change_capture (');
    END LOOP;
END
$$;
