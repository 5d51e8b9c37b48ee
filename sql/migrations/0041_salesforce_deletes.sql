-- Records the polling backstop found deleted in Salesforce: an Outbound Message built before the delete and
-- delivered after it (retries, reordering) must not bring the row back. Purged with the archive.
CREATE TABLE forcebridge.salesforce_deletes (
    mapping_id  integer NOT NULL,
    sfid        varchar(18) NOT NULL,
    deleted_at  timestamptz,              -- Salesforce's time of the delete (deletedDate or SystemModstamp)
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping_id, sfid)
);
CREATE INDEX salesforce_deletes_recorded ON forcebridge.salesforce_deletes (recorded_at);
