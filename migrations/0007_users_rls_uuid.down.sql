-- Restores the text comparison of 0006_users_rls.

CREATE OR REPLACE FUNCTION ias_rls_org_visible(org uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('ias.org_id', true), '') = '*'
        OR (org IS NOT NULL AND org::text = current_setting('ias.org_id', true))
$$;
COMMENT ON FUNCTION ias_rls_org_visible(uuid) IS
    'Row-level security predicate: true when the transaction''s ias.org_id setting is ''*'' (every org) or equals org.';
