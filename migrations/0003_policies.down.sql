-- Reverts 0003_policies.up.sql: drops exactly what it created.
DROP TABLE guardrail_profiles;
DROP TABLE policies;
DROP FUNCTION ias_versioned_row_immutable();
