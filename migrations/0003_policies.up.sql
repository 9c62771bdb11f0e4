-- ABAC policies and guardrail profiles, versioned (owner: pdp).
--
-- Every change is a new row (a new version); at most one version per scope
-- (per org and profile name for guardrails) is active. Version rows are
-- immutable apart from their active flag, so history can be trusted and a
-- rollback is "activate an older version".

CREATE FUNCTION ias_versioned_row_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(NEW) - 'active' - 'activated_at') IS DISTINCT FROM
       (to_jsonb(OLD) - 'active' - 'activated_at') THEN
        RAISE EXCEPTION '%: a version is immutable; create a new version instead', TG_TABLE_NAME
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ias_versioned_row_immutable() IS
    'Trigger function: refuses UPDATEs of a version row other than of active/activated_at.';

-- ---------------------------------------------------------------- policies
CREATE TABLE policies (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    scope        text        NOT NULL CHECK (scope IN ('global', 'org')),
    org_id       uuid        REFERENCES orgs (id) ON DELETE CASCADE,
    version      integer     NOT NULL CHECK (version > 0),
    document     jsonb       NOT NULL CHECK (jsonb_typeof(document) = 'object'),
    active       boolean     NOT NULL DEFAULT false,
    comment      text        NOT NULL DEFAULT '' CHECK (length(comment) <= 1000),
    created_by   uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    CONSTRAINT policies_scope_org CHECK ((scope = 'global') = (org_id IS NULL)),
    CONSTRAINT policies_org_version_key UNIQUE NULLS NOT DISTINCT (org_id, version)
);
CREATE UNIQUE INDEX policies_one_active_key ON policies (org_id) NULLS NOT DISTINCT WHERE active;
CREATE TRIGGER policies_immutable BEFORE UPDATE ON policies
    FOR EACH ROW EXECUTE FUNCTION ias_versioned_row_immutable();
COMMENT ON TABLE policies IS
    'Versions of the ABAC policy document of each scope: one global scope (system admins) and one per org (org admins, which can only narrow what global allows). Deny wins.';
COMMENT ON COLUMN policies.id IS 'Id of this version.';
COMMENT ON COLUMN policies.scope IS 'global or org.';
COMMENT ON COLUMN policies.org_id IS 'The org of an org-scope policy; NULL for the global scope.';
COMMENT ON COLUMN policies.version IS 'Version number within the scope, 1, 2, ...; part of every decision''s policy_version.';
COMMENT ON COLUMN policies.document IS 'The policy: rules matching subject, action, resource and environment attributes, with effect and obligations (format owned by pdp).';
COMMENT ON COLUMN policies.active IS 'True for the one version in force in its scope.';
COMMENT ON COLUMN policies.comment IS 'Author''s note on the change.';
COMMENT ON COLUMN policies.created_by IS 'User who created the version.';
COMMENT ON COLUMN policies.created_at IS 'When the version was created.';
COMMENT ON COLUMN policies.activated_at IS 'When the version was last made active.';

-- ---------------------------------------------------------------- guardrail profiles
CREATE TABLE guardrail_profiles (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    scope        text        NOT NULL CHECK (scope IN ('global', 'org')),
    org_id       uuid        REFERENCES orgs (id) ON DELETE CASCADE,
    name         text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    version      integer     NOT NULL CHECK (version > 0),
    document     jsonb       NOT NULL CHECK (jsonb_typeof(document) = 'object'),
    active       boolean     NOT NULL DEFAULT false,
    comment      text        NOT NULL DEFAULT '' CHECK (length(comment) <= 1000),
    created_by   uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    CONSTRAINT guardrail_profiles_scope_org CHECK ((scope = 'global') = (org_id IS NULL)),
    CONSTRAINT guardrail_profiles_version_key UNIQUE NULLS NOT DISTINCT (org_id, name, version)
);
CREATE UNIQUE INDEX guardrail_profiles_one_active_key
    ON guardrail_profiles (org_id, name) NULLS NOT DISTINCT WHERE active;
CREATE TRIGGER guardrail_profiles_immutable BEFORE UPDATE ON guardrail_profiles
    FOR EACH ROW EXECUTE FUNCTION ias_versioned_row_immutable();
COMMENT ON TABLE guardrail_profiles IS
    'Versions of named guardrail profiles (prompt- and output-side constraints) that policies attach to an allow as obligations.';
COMMENT ON COLUMN guardrail_profiles.id IS 'Id of this version.';
COMMENT ON COLUMN guardrail_profiles.scope IS 'global or org.';
COMMENT ON COLUMN guardrail_profiles.org_id IS 'The org of an org-scope profile; NULL for a global one.';
COMMENT ON COLUMN guardrail_profiles.name IS 'Profile name, referenced from policy obligations.';
COMMENT ON COLUMN guardrail_profiles.version IS 'Version number within (org, name).';
COMMENT ON COLUMN guardrail_profiles.document IS 'The constraints: deny patterns, PII redaction, output deny phrases and regexes, hold-back window (format owned by pdp).';
COMMENT ON COLUMN guardrail_profiles.active IS 'True for the one version in force for (org, name); no active version means the profile is withdrawn.';
COMMENT ON COLUMN guardrail_profiles.comment IS 'Author''s note on the change.';
COMMENT ON COLUMN guardrail_profiles.created_by IS 'User who created the version.';
COMMENT ON COLUMN guardrail_profiles.created_at IS 'When the version was created.';
COMMENT ON COLUMN guardrail_profiles.activated_at IS 'When the version was last made active.';
