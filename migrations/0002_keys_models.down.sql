-- Reverts 0002_keys_models.up.sql: drops exactly what it created.
DROP TABLE org_allowed_models;
DROP TABLE model_backends;
DROP TABLE models;
DROP FUNCTION ias_models_record_rates();
DROP TABLE model_rate_history;
DROP TABLE org_budgets;
DROP TABLE api_keys;
