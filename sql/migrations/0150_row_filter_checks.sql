-- Row filters on every Salesforce -> Postgres path (issue 17). Records touched by what did not come through a
-- query built with the mapping's filter (Outbound Messages, CDC events, our own writes to Salesforce) wait
-- here until Salesforce says whether they match (jobs/row_filters.py reads them whole through the filter).
CREATE TABLE forcebridge.filter_checks (
    mapping_id  integer NOT NULL REFERENCES forcebridge.mappings (id) ON DELETE CASCADE,
    sfid        text NOT NULL,
    source      text NOT NULL,                 -- who asked: outbound, cdc (core.sources) or write (jobs/drain.py)
    queued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mapping_id, sfid)
);
CREATE INDEX filter_checks_queued ON forcebridge.filter_checks (queued_at);

-- A row removed because its record left the filter is remembered like a delete (a change older than that
-- must not bring it back), but marked: a new filter forgets these, so a reload can bring the records back.
ALTER TABLE forcebridge.salesforce_deletes ADD COLUMN left_filter boolean NOT NULL DEFAULT false;
