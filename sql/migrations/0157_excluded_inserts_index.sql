-- An insert's `excluded` columns (0156) hold for the record until an update changes them, even when the
-- insert failed and a later update is what creates the record (claim_changes looks the insert up then).
-- Few inserts name excluded columns, and a failed one is no longer in change_log_open: an index of its own.
CREATE INDEX change_log_excluded_inserts ON forcebridge.change_log (mapping_id, record_id, id)
    WHERE op = 'insert' AND excluded IS NOT NULL;
