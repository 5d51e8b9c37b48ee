-- The connection block of the last imported configuration (Heroku Connect's `connection`: name, features,
-- api_version ...), kept so an export gives it back and re-importing it changes nothing.
CREATE TABLE forcebridge.connection_config (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    connection  jsonb NOT NULL,
    version     integer NOT NULL DEFAULT 1,
    imported_at timestamptz NOT NULL DEFAULT now()
);
