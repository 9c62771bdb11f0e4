DROP INDEX usage_rollups_hourly_hour_idx;
CREATE INDEX usage_rollups_hourly_hour_idx ON usage_rollups_hourly (hour);
CREATE INDEX usage_rollups_hourly_org_hour_cover_idx ON usage_rollups_hourly (org_id, hour)
    INCLUDE (user_id, api_key_id, model, requests, errors, prompt_tokens, completion_tokens, cost);
COMMENT ON INDEX usage_rollups_hourly_org_hour_cover_idx IS
    'Covering index for the usage analytics queries (org and hour range): index-only scans.';
ALTER TABLE usage_rollups_hourly DROP CONSTRAINT usage_rollups_hourly_key;
ALTER TABLE usage_rollups_hourly ADD CONSTRAINT usage_rollups_hourly_key
    UNIQUE NULLS NOT DISTINCT (org_id, hour, user_id, api_key_id, model);
