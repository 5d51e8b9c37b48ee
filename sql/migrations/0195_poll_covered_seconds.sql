-- The time the last poll covered (since the poll before it): its count is scaled by this, not by the interval,
-- to expect the next poll's (core/budget.py poll_api). NULL: not known yet (the interval stands in).
ALTER TABLE forcebridge.poll_state ADD COLUMN last_covered_seconds double precision;
