-- The RLS predicate compared org::text with the setting, so no index on an
-- org_id column could serve it and every tenant query scanned the whole table.
-- Compare uuids instead: the setting is cast once (a stable expression), the
-- column stays bare. '' and '*' never reach the cast. The body stays a single
-- SQL expression so the planner inlines it into the policy.

CREATE OR REPLACE FUNCTION ias_rls_org_visible(org uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('ias.org_id', true), '') = '*'
        OR org = nullif(nullif(current_setting('ias.org_id', true), ''), '*')::uuid
$$;
COMMENT ON FUNCTION ias_rls_org_visible(uuid) IS
    'Row-level security predicate: true when the transaction''s ias.org_id setting is ''*'' (every org) or equals org (compared as uuid, so org_id indexes apply).';
