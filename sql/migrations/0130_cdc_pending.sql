-- Change Data Capture wired into the inbound seam (issue 13): what an event batch could not apply from the
-- event alone, stored in the transaction that stored the batch and its replay id, done after it commits:
-- 'fetch' = read this record whole through REST (a gap event, an update of a row Postgres lacks, a diff
-- field); 'poll' = poll the mapping (GAP_OVERFLOW, a refused replay id) from `since`.
CREATE TABLE forcebridge.cdc_pending (
    id          bigserial PRIMARY KEY,
    mapping_id  integer NOT NULL REFERENCES forcebridge.mappings (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('fetch', 'poll')),
    record_id   text,
    since       timestamptz,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cdc_pending_mapping ON forcebridge.cdc_pending (mapping_id, kind);
