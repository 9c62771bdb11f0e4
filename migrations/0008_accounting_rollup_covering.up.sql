-- Usage summaries and time series read one org's rollups over a range of
-- hours. Those rows arrive hour by hour interleaved with every other org's, so
-- through the unique key each one costs a heap page read (~10,000 pages for an
-- org and 30 days). This index carries every column the analytics queries read,
-- so they become index-only scans over a contiguous range of the index.
CREATE INDEX usage_rollups_hourly_org_hour_cover_idx ON usage_rollups_hourly (org_id, hour)
    INCLUDE (user_id, api_key_id, model, requests, errors, prompt_tokens, completion_tokens, cost);
COMMENT ON INDEX usage_rollups_hourly_org_hour_cover_idx IS
    'Covering index for the usage analytics queries (org and hour range): index-only scans.';
