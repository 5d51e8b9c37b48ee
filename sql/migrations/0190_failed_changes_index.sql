-- A record whose local change failed keeps its row when the record leaves the row filter (row_filters.sql
-- delete_left_filter): the failed entries of a record, looked up beside change_log_open. Few entries fail.
CREATE INDEX change_log_failed ON forcebridge.change_log (mapping_id, record_id) WHERE state = 'FAILED';
