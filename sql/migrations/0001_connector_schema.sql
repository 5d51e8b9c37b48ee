-- The connector's own tables. Mapped tables live elsewhere (schema "salesforce" by default).

CREATE TABLE forcebridge.mappings (
    id             serial PRIMARY KEY,
    object_name    text NOT NULL,
    table_schema   text NOT NULL DEFAULT 'salesforce',
    table_name     text NOT NULL,
    direction      text NOT NULL CHECK (direction IN ('sf_to_pg', 'pg_to_sf', 'bidirectional')),
    fields         jsonb NOT NULL,          -- [{"name":..., "sf_type":..., "length":...}]
    upsert_field   text,
    conflict_rule  text NOT NULL DEFAULT 'last_writer_wins'
                   CHECK (conflict_rule IN ('last_writer_wins', 'salesforce_wins', 'postgres_wins')),
    active         boolean NOT NULL DEFAULT true,
    extra          jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX mappings_object_name ON forcebridge.mappings (lower(object_name));
CREATE UNIQUE INDEX mappings_table ON forcebridge.mappings (table_schema, table_name);

-- Every Outbound Message notification, committed before Salesforce gets its ACK.
CREATE TABLE forcebridge.inbox (
    notification_id text PRIMARY KEY,         -- Salesforce's notification Id: a redelivery is a no-op
    object_name     text NOT NULL,
    sfid            varchar(18) NOT NULL,
    fields          jsonb NOT NULL,           -- API name -> text as sent (null for xsi:nil)
    organization_id text NOT NULL,
    action_id       text,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'applied', 'failed', 'unmapped')),
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    received_at     timestamptz NOT NULL DEFAULT now(),
    applied_at      timestamptz
);
CREATE INDEX inbox_pending ON forcebridge.inbox (received_at) WHERE state = 'pending';
CREATE INDEX inbox_state ON forcebridge.inbox (state, object_name);

-- Hourly counts per mapping, direction and outcome: one upsert per batch, not a row per record.
CREATE TABLE forcebridge.stats_hourly (
    hour        timestamptz NOT NULL,
    mapping_id  integer NOT NULL DEFAULT 0,   -- 0: no mapping (unmapped notifications)
    direction   text NOT NULL CHECK (direction IN ('sf_to_pg', 'pg_to_sf')),
    outcome     text NOT NULL,
    count       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, mapping_id, direction, outcome)
);
