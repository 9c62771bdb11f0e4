-- Reverts 0001_tenancy.up.sql: drops exactly what it created.
DROP TABLE refresh_tokens;
DROP TRIGGER users_role_scope ON users;
DROP FUNCTION ias_users_check_role();
DROP TABLE users;
DROP TABLE role_permissions;
DROP TABLE roles;
DROP TABLE permissions;
DROP TABLE orgs;
DROP FUNCTION ias_touch_updated_at();
