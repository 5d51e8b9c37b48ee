-- Per-field conflicts (issue 17). An update's capture keeps the values its changed columns had before it
-- (old_values: column -> value, JSON nulls left out), so a later Salesforce change can be told apart from the
-- state both sides started from. A conflict records which fields each side changed and which both did; a
-- record both sides changed on different fields only is merged (winner 'merged': no rule was needed).
ALTER TABLE forcebridge.change_capture ADD COLUMN old_values jsonb;
ALTER TABLE forcebridge.change_log ADD COLUMN old_values jsonb;
ALTER TABLE forcebridge.conflicts
    ADD COLUMN fields text[],          -- changed on both sides: the rule decided these
    ADD COLUMN sf_fields text[],       -- changed in Salesforce
    ADD COLUMN pg_fields text[],       -- changed in Postgres (NULL: every field, a local insert)
    DROP CONSTRAINT conflicts_winner_check,
    ADD CONSTRAINT conflicts_winner_check CHECK (winner IN ('salesforce', 'postgres', 'merged'));
