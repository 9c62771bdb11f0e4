-- Reverts 0010_usage_monthly_totals.up.sql (the totals can be rebuilt from
-- usage_rollups_hourly by running the up migration again).
DROP TABLE usage_month_totals;
