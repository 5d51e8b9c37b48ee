-- The one "never backwards" rule of Salesforce -> Postgres (docs/architecture.md, "The inbound seam"): a state
-- Salesforce stamped `incoming` may replace one stamped `stored` unless it is older; an unknown stamp on
-- either side does not block. Every apply (Outbound Messages, loads, polls, drift repairs, deletes and their
-- tombstones) calls this function instead of spelling the comparison out.
-- anycompatible: mapped tables hold UTC wall time (timestamp); a column kept as timestamptz by migration
-- 0060 compares as an instant (our sessions run in UTC). A one-expression SQL function: the planner inlines it.
CREATE OR REPLACE FUNCTION forcebridge.not_backwards(stored anycompatible, incoming anycompatible)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT stored IS NULL OR incoming IS NULL OR incoming >= stored $$;
