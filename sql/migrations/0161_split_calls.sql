-- Calls spent splitting a Collections call Salesforce refused as a whole (gateway/salesforce.py split_records),
-- per hour, kind of work and object as the calls themselves: /metrics and the budget card show them.
ALTER TABLE forcebridge.api_usage_hourly ADD COLUMN split_calls bigint NOT NULL DEFAULT 0;
