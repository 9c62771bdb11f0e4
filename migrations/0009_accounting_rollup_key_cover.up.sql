-- Fewer index writes per usage event (bench/README.md, "Accounting ingest").
-- Every batch upserts about one usage_rollups_hourly row per event, and each
-- insert or update writes an entry into every index of the table (updates are
-- never HOT: the summed columns are in an index). Three b-trees become one
-- b-tree and one BRIN:
--
-- - The unique key carries the summed columns itself (INCLUDE), so it is also
--   the covering index of the analytics queries: its leading columns are
--   (org_id, hour), as in 0008's usage_rollups_hourly_org_hour_cover_idx, and
--   the org summaries and series stay index-only scans. That index goes.
-- - The hour index only serves whole-range reads (a month's budget totals, the
--   system-wide summary). Rows arrive in hour order and are never deleted, so
--   a BRIN index finds a range of hours as well, at almost no cost per write.
ALTER TABLE usage_rollups_hourly DROP CONSTRAINT usage_rollups_hourly_key;
ALTER TABLE usage_rollups_hourly ADD CONSTRAINT usage_rollups_hourly_key
    UNIQUE NULLS NOT DISTINCT (org_id, hour, user_id, api_key_id, model)
    INCLUDE (requests, errors, prompt_tokens, completion_tokens, cost);
COMMENT ON INDEX usage_rollups_hourly_key IS
    'One row per org, hour, user, key and model (the upsert''s arbiter); also the covering index of the usage analytics queries (org and hour range): index-only scans.';
DROP INDEX usage_rollups_hourly_org_hour_cover_idx;
DROP INDEX usage_rollups_hourly_hour_idx;
CREATE INDEX usage_rollups_hourly_hour_idx ON usage_rollups_hourly USING brin (hour);
COMMENT ON INDEX usage_rollups_hourly_hour_idx IS
    'Hour ranges over all orgs (budget totals of a month, system-wide summaries); BRIN, since rows arrive in hour order.';
