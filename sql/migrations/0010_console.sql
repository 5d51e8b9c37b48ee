-- The console: signed-in sessions (server side, so logout really ends them) and ignoring notifications.

CREATE TABLE forcebridge.console_sessions (
    token_hash   text PRIMARY KEY,          -- sha256 of the cookie value; the cookie itself is never stored
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON forcebridge.console_sessions (expires_at);

-- "Ignore" on the Errors page keeps the notification (and why it failed) but stops showing it.
ALTER TABLE forcebridge.inbox DROP CONSTRAINT inbox_state_check;
ALTER TABLE forcebridge.inbox ADD CONSTRAINT inbox_state_check
    CHECK (state IN ('pending', 'applied', 'failed', 'unmapped', 'ignored'));
