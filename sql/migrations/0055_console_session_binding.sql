-- A console session belongs to the password it was opened with: each row carries a digest of
-- ADMIN_PASSWORD (webapp/auth.py: PBKDF2 salted with SECRET_KEY), and a session whose digest differs from
-- the running one is dead. Sessions from before this migration carry none, so they end: sign in again.
ALTER TABLE forcebridge.console_sessions ADD COLUMN password_binding text;
DELETE FROM forcebridge.console_sessions;
