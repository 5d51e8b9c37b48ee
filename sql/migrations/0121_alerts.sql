-- Alerts (issue 16): each condition's state, so an open alert is neither sent again too soon nor lost by
-- a restart, and its recovery is sent once. Channels and thresholds live in forcebridge.documents ('alerts').
CREATE TABLE forcebridge.alert_state (
    condition    text PRIMARY KEY,
    open         boolean NOT NULL DEFAULT false,
    since        timestamptz,          -- when the condition began
    count        bigint NOT NULL DEFAULT 0,
    detail       text NOT NULL DEFAULT '',
    watermark    bigint NOT NULL DEFAULT 0,   -- failures: the newest one an alert was sent about
    last_sent_at timestamptz,
    cleared_at   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
