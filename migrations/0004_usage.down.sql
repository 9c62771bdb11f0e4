-- Reverts 0004_usage.up.sql: drops exactly what it created (the partitions of
-- usage_events go with it, including those made later by the function).
DROP TABLE budget_alerts;
DROP TABLE usage_rollups_hourly;
DROP TABLE processed_events;
DROP TABLE usage_events;
DROP FUNCTION ias_ensure_usage_partitions(date, integer);
