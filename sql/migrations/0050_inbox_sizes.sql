-- The size of each stored notification's fields (bytes of jsonb), written once on arrival: the apply job
-- claims batches within a byte budget and the Errors page shows a payload's size without reading it.
-- Rows stored before this migration have NULL; readers fall back to pg_column_size(fields).
ALTER TABLE forcebridge.inbox ADD COLUMN fields_bytes integer;
