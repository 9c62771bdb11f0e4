-- Reverts 0012_usage_daily_watermark.up.sql. The daily rollups of the days not
-- yet summarised are rebuilt from usage_rollups_hourly first, since 0011's
-- consumer expects them complete. Run it with the consumers stopped.
LOCK TABLE usage_rollups_hourly IN SHARE MODE;
DELETE FROM usage_rollups_daily_model
WHERE day >= (SELECT day FROM usage_rollups_daily_watermark);
DELETE FROM usage_rollups_daily_user_key
WHERE day >= (SELECT day FROM usage_rollups_daily_watermark);
INSERT INTO usage_rollups_daily_model (org_id, day, model, requests, errors, prompt_tokens,
                                       completion_tokens, cost)
SELECT org_id, (hour AT TIME ZONE 'UTC')::date, model, sum(requests), sum(errors),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
FROM usage_rollups_hourly
WHERE hour >= (SELECT day::timestamp AT TIME ZONE 'UTC' FROM usage_rollups_daily_watermark)
GROUP BY 1, 2, 3 ORDER BY 2;
INSERT INTO usage_rollups_daily_user_key (org_id, day, user_id, api_key_id, requests, errors,
                                          prompt_tokens, completion_tokens, cost)
SELECT org_id, (hour AT TIME ZONE 'UTC')::date, user_id, api_key_id, sum(requests), sum(errors),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
FROM usage_rollups_hourly
WHERE hour >= (SELECT day::timestamp AT TIME ZONE 'UTC' FROM usage_rollups_daily_watermark)
GROUP BY 1, 2, 3, 4 ORDER BY 2;
DROP TABLE usage_rollups_daily_watermark;
