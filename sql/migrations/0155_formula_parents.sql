-- Cross-object formulas (issue 17): when a parent record changes, the formula fields of mapped children that
-- read it are refreshed. `parents`: which parents the mapping's formulas read, from the describe of its last
-- full refresh ([{object, lookup, fields}], core/formulas.py ParentReference). The apply path queues the
-- changed parents' ids in formula_refresh_pending, in the transaction that applied them; the refresh task
-- re-reads their children and deletes the entries it served (an entry queued again meanwhile stays: its
-- queued_at moved on).
ALTER TABLE forcebridge.formula_refresh
    ADD COLUMN parents jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN targeted_at timestamptz,                  -- the last refresh of changed parents' children
    ADD COLUMN targeted_checked bigint NOT NULL DEFAULT 0,
    ADD COLUMN targeted_updated bigint NOT NULL DEFAULT 0,
    ADD COLUMN targeted_error text;

CREATE TABLE forcebridge.formula_refresh_pending (
    mapping_id integer NOT NULL REFERENCES forcebridge.mappings (id) ON DELETE CASCADE,
    lookup     text NOT NULL,                            -- the child's lookup field naming the parent
    parent_id  text NOT NULL,
    queued_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (mapping_id, lookup, parent_id)
);
