-- Reverts 0011_usage_rollups_daily.up.sql (the daily rollups can be rebuilt
-- from usage_rollups_hourly by running the up migration again).
DROP TABLE usage_rollups_daily_user_key;
DROP TABLE usage_rollups_daily_model;
DROP INDEX usage_events_org_user_cover_idx;
CREATE INDEX usage_events_org_user_time_idx ON usage_events (org_id, user_id, created_at);
