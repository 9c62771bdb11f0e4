-- Row-level security on the users service's org-owned tables (owner: users).
-- The service sets ias.org_id per transaction (set_config(..., true)) to the
-- caller's org, or '*' for a system admin or a pre-authentication lookup
-- (login, refresh, /internal/keys). Without the setting no row is visible, so
-- a query that forgot its WHERE org_id = ... still cannot cross tenants.
-- FORCE: the ias role owns these tables, and owners bypass RLS otherwise.
-- Foreign-key checks are not subject to RLS.

CREATE FUNCTION ias_rls_org_visible(org uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('ias.org_id', true), '') = '*'
        OR (org IS NOT NULL AND org::text = current_setting('ias.org_id', true))
$$;
COMMENT ON FUNCTION ias_rls_org_visible(uuid) IS
    'Row-level security predicate: true when the transaction''s ias.org_id setting is ''*'' (every org) or equals org.';

ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY orgs_tenant ON orgs USING (ias_rls_org_visible(id)) WITH CHECK (ias_rls_org_visible(id));

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_tenant ON users USING (ias_rls_org_visible(org_id)) WITH CHECK (ias_rls_org_visible(org_id));

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY refresh_tokens_tenant ON refresh_tokens USING (ias_rls_org_visible(org_id)) WITH CHECK (ias_rls_org_visible(org_id));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY api_keys_tenant ON api_keys USING (ias_rls_org_visible(org_id)) WITH CHECK (ias_rls_org_visible(org_id));

ALTER TABLE org_budgets ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_budgets FORCE ROW LEVEL SECURITY;
CREATE POLICY org_budgets_tenant ON org_budgets USING (ias_rls_org_visible(org_id)) WITH CHECK (ias_rls_org_visible(org_id));

ALTER TABLE org_allowed_models ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_allowed_models FORCE ROW LEVEL SECURITY;
CREATE POLICY org_allowed_models_tenant ON org_allowed_models USING (ias_rls_org_visible(org_id)) WITH CHECK (ias_rls_org_visible(org_id));
