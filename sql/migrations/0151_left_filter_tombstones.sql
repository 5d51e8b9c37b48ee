-- Does a remembered removal keep a change of that record out? A Salesforce delete does when it is not older
-- than the change (forcebridge.not_backwards, migration 0100). A record that left the row filter (issue 17)
-- can come back: a change at the very stamp it left at (SystemModstamp has whole seconds; both moves may fall
-- in one) is let through, since a wrong arrival is undone by the poll's check of records leaving the filter,
-- while a wrong refusal would keep a matching record out until it changes again.
CREATE OR REPLACE FUNCTION forcebridge.removal_holds(incoming anycompatible, removed_at anycompatible,
                                                     left_filter boolean)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN left_filter THEN incoming IS NULL OR removed_at IS NULL OR removed_at > incoming
                  ELSE forcebridge.not_backwards(incoming, removed_at) END $$;
