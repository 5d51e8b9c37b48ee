-- Finding a record's delete by sfid: the inbound path asks for every batch of notifications
-- (sql/queries/tombstones.sql), so it must not scan the change log.
CREATE INDEX change_log_deletes ON forcebridge.change_log (mapping_id, sfid) WHERE op = 'delete';
CREATE INDEX change_log_archive_deletes ON forcebridge.change_log_archive (mapping_id, sfid) WHERE op = 'delete';
