-- Tenancy and identity (owner: users service): organisations, users, roles as
-- permission sets, refresh tokens. Runs in one transaction (ias-migrate).

CREATE FUNCTION ias_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ias_touch_updated_at() IS
    'Trigger function: sets updated_at to the transaction time on every UPDATE.';

-- ---------------------------------------------------------------- orgs
CREATE TABLE orgs (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text        NOT NULL
        CONSTRAINT orgs_name_format CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    display_name   text        NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    description    text        NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    cost_center    text        CHECK (length(cost_center) <= 100),
    tags           text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 50),
    rate_limit_rps integer     CHECK (rate_limit_rps > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE UNIQUE INDEX orgs_name_live_key ON orgs (name) WHERE deleted_at IS NULL;
CREATE INDEX orgs_created_idx ON orgs (created_at, id);
CREATE TRIGGER orgs_touch BEFORE UPDATE ON orgs
    FOR EACH ROW EXECUTE FUNCTION ias_touch_updated_at();

COMMENT ON TABLE orgs IS
    'Organisations (tenants). Soft-deleted: a set deleted_at ends the org at once (its keys stop working) while its history stays.';
COMMENT ON COLUMN orgs.id IS 'Organisation id; the org_id of every tenant-owned row.';
COMMENT ON COLUMN orgs.name IS 'Stable slug (lowercase letters, digits, dashes), unique among live orgs, e.g. demo-team; the GitOps file name.';
COMMENT ON COLUMN orgs.display_name IS 'Human-readable name shown in the UI.';
COMMENT ON COLUMN orgs.description IS 'Free-text description.';
COMMENT ON COLUMN orgs.cost_center IS 'Optional cost center for chargeback reports.';
COMMENT ON COLUMN orgs.tags IS 'Free-form labels (metadata from GitOps or the API).';
COMMENT ON COLUMN orgs.rate_limit_rps IS 'Requests per second allowed for the whole org at ingress; NULL means the platform default.';
COMMENT ON COLUMN orgs.created_at IS 'When the org was created.';
COMMENT ON COLUMN orgs.updated_at IS 'Last change (maintained by trigger).';
COMMENT ON COLUMN orgs.deleted_at IS 'Soft-delete time; NULL while the org is live.';

-- ---------------------------------------------------------------- permissions and roles
CREATE TABLE permissions (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z_]+(:[a-z_]+)?$'),
    description text NOT NULL CHECK (description <> '')
);
COMMENT ON TABLE permissions IS
    'Catalogue of permission names checked by the services'' RBAC middleware (resource:action).';
COMMENT ON COLUMN permissions.name IS 'Permission name, e.g. keys:revoke_any.';
COMMENT ON COLUMN permissions.description IS 'What the permission allows.';

CREATE TABLE roles (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid        REFERENCES orgs (id) ON DELETE CASCADE,
    name        text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{1,62}$'),
    scope       text        NOT NULL CHECK (scope IN ('global', 'org')),
    description text        NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    builtin     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT roles_org_name_key UNIQUE NULLS NOT DISTINCT (org_id, name),
    CONSTRAINT roles_global_not_org CHECK (scope = 'org' OR org_id IS NULL)
);
COMMENT ON TABLE roles IS
    'Roles as named permission sets. V1 ships the three built-in roles; custom (org-owned) roles need no schema change.';
COMMENT ON COLUMN roles.id IS 'Role id; the built-in roles have fixed ids 00000000-0000-0000-0000-00000000000{1,2,3}.';
COMMENT ON COLUMN roles.org_id IS 'Owning org of a custom role; NULL for built-in roles available everywhere.';
COMMENT ON COLUMN roles.name IS 'Role name, unique per owner (system_admin, org_admin, org_user).';
COMMENT ON COLUMN roles.scope IS 'global: permissions apply to every org (holders have no org); org: permissions apply within the holder''s org.';
COMMENT ON COLUMN roles.description IS 'What the role is for.';
COMMENT ON COLUMN roles.builtin IS 'True for roles shipped by migrations; services refuse to change them.';
COMMENT ON COLUMN roles.created_at IS 'When the role was created.';

CREATE TABLE role_permissions (
    role_id    uuid NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission text NOT NULL REFERENCES permissions (name) ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (role_id, permission)
);
CREATE INDEX role_permissions_permission_idx ON role_permissions (permission);
COMMENT ON TABLE role_permissions IS 'The permission set of each role.';
COMMENT ON COLUMN role_permissions.role_id IS 'The role.';
COMMENT ON COLUMN role_permissions.permission IS 'A permission the role grants.';

-- ---------------------------------------------------------------- users
CREATE TABLE users (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id              uuid        REFERENCES orgs (id) ON DELETE CASCADE,
    email               text        NOT NULL
        CHECK (length(email) BETWEEN 3 AND 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    display_name        text        NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    password_hash       text        NOT NULL CHECK (password_hash <> ''),
    role_id             uuid        NOT NULL REFERENCES roles (id),
    monthly_token_limit bigint      CHECK (monthly_token_limit >= 0),
    disabled            boolean     NOT NULL DEFAULT false,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    -- Target of composite foreign keys that pin a row's org to its user's org.
    CONSTRAINT users_id_org_key UNIQUE (id, org_id)
);
CREATE UNIQUE INDEX users_email_live_key ON users (lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX users_org_idx ON users (org_id, created_at, id);
CREATE INDEX users_role_idx ON users (role_id);
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION ias_touch_updated_at();

-- A global role (system admin) has no org; an org role needs one; a custom
-- role only within its own org. CHECK cannot look at roles, so a trigger does.
CREATE FUNCTION ias_users_check_role() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r roles%ROWTYPE;
BEGIN
    SELECT * INTO r FROM roles WHERE id = NEW.role_id;
    IF NOT FOUND THEN
        RETURN NEW; -- the foreign key reports it
    END IF;
    IF (r.scope = 'global') <> (NEW.org_id IS NULL) THEN
        RAISE EXCEPTION 'role % (scope %) does not fit a user %', r.name, r.scope,
            CASE WHEN NEW.org_id IS NULL THEN 'without an org' ELSE 'in an org' END
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_role_scope';
    END IF;
    IF r.org_id IS NOT NULL AND r.org_id IS DISTINCT FROM NEW.org_id THEN
        RAISE EXCEPTION 'role % belongs to another org', r.name
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_role_scope';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ias_users_check_role() IS
    'Trigger function: a user''s role must fit the user (global roles without org, org roles with one, custom roles in their own org).';
CREATE TRIGGER users_role_scope BEFORE INSERT OR UPDATE OF role_id, org_id ON users
    FOR EACH ROW EXECUTE FUNCTION ias_users_check_role();

COMMENT ON TABLE users IS
    'People who log in to the management API. System admins have no org; everyone else belongs to exactly one.';
COMMENT ON COLUMN users.id IS 'User id (JWT subject).';
COMMENT ON COLUMN users.org_id IS 'The user''s org; NULL only for holders of a global role (system admins).';
COMMENT ON COLUMN users.email IS 'Login name; unique case-insensitively among live users.';
COMMENT ON COLUMN users.display_name IS 'Human-readable name.';
COMMENT ON COLUMN users.password_hash IS 'bcrypt hash (crypt(3) format, cost 12); never the password.';
COMMENT ON COLUMN users.role_id IS 'The user''s role, whose permissions the RBAC middleware checks.';
COMMENT ON COLUMN users.monthly_token_limit IS 'Per-user monthly token limit (prompt + completion); NULL means only the org budget applies.';
COMMENT ON COLUMN users.disabled IS 'True blocks login and the user''s API keys without deleting anything.';
COMMENT ON COLUMN users.password_changed_at IS 'Last password change; tokens issued before it can be rejected.';
COMMENT ON COLUMN users.last_login_at IS 'Last successful login.';
COMMENT ON COLUMN users.created_at IS 'When the user was created (invited).';
COMMENT ON COLUMN users.updated_at IS 'Last change (maintained by trigger).';
COMMENT ON COLUMN users.deleted_at IS 'Soft-delete time (removed from the org); NULL while live.';

-- ---------------------------------------------------------------- refresh tokens
CREATE TABLE refresh_tokens (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id      uuid,
    family_id   uuid        NOT NULL,
    token_hash  char(64)    NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    replaced_by uuid        REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    CONSTRAINT refresh_tokens_user_org_fkey FOREIGN KEY (user_id, org_id)
        REFERENCES users (id, org_id) ON DELETE CASCADE,
    CHECK (expires_at > created_at)
);
CREATE INDEX refresh_tokens_org_user_idx ON refresh_tokens (org_id, user_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
COMMENT ON TABLE refresh_tokens IS
    'Opaque refresh tokens, stored hashed and rotated on use. Presenting a token that was already replaced revokes its whole family.';
COMMENT ON COLUMN refresh_tokens.id IS 'Token id.';
COMMENT ON COLUMN refresh_tokens.user_id IS 'The user the token logs in.';
COMMENT ON COLUMN refresh_tokens.org_id IS 'The user''s org (NULL for system admins), kept for tenant scoping.';
COMMENT ON COLUMN refresh_tokens.family_id IS 'Rotation chain: every token issued from one login shares it.';
COMMENT ON COLUMN refresh_tokens.token_hash IS 'Lowercase hex SHA-256 of the token; the token itself is never stored.';
COMMENT ON COLUMN refresh_tokens.created_at IS 'When the token was issued.';
COMMENT ON COLUMN refresh_tokens.expires_at IS 'End of validity (7 days after issue by default).';
COMMENT ON COLUMN refresh_tokens.revoked_at IS 'When it was revoked (logout, rotation, reuse detection); NULL while usable.';
COMMENT ON COLUMN refresh_tokens.replaced_by IS 'The token that replaced this one on rotation.';

-- ---------------------------------------------------------------- seed: permissions and built-in roles
INSERT INTO permissions (name, description) VALUES
    ('orgs:read',             'Read organisations (own org; every org with a global role)'),
    ('orgs:write',            'Create, update and delete organisations'),
    ('users:read',            'List and read users'),
    ('users:write',           'Invite, update, disable and remove users; set roles and per-user limits'),
    ('users:reset_password',  'Reset another user''s password'),
    ('keys:read',             'List own API keys'),
    ('keys:write',            'Create and revoke own API keys'),
    ('keys:read_any',         'List every API key in scope'),
    ('keys:revoke_any',       'Revoke any API key in scope'),
    ('budgets:read',          'Read org budgets, per-user limits and budget alerts'),
    ('budgets:write',         'Set org budgets, alert thresholds and per-user limits'),
    ('models:read',           'List the models available in scope'),
    ('models:write',          'Add, update, disable and remove models and their backends'),
    ('models:allow',          'Choose which models an org may use'),
    ('usage:read',            'Read usage analytics for the whole scope'),
    ('usage:read_own',        'Read own usage'),
    ('audit:read',            'Query the audit ledger in scope'),
    ('audit:verify',          'Verify the audit chain and export signed checkpoints'),
    ('policies:read',         'Read ABAC policies in scope'),
    ('policies:write',        'Create and activate ABAC policy versions in scope'),
    ('guardrails:read',       'Read guardrail profiles in scope'),
    ('guardrails:write',      'Create and activate guardrail profile versions in scope'),
    ('inference',             'Call the OpenAI-compatible API with own API keys');

INSERT INTO roles (id, org_id, name, scope, description, builtin) VALUES
    ('00000000-0000-0000-0000-000000000001', NULL, 'system_admin', 'global',
     'Runs the platform: every org, users, models, usage and audit; creates no API keys', true),
    ('00000000-0000-0000-0000-000000000002', NULL, 'org_admin', 'org',
     'Manages one org: users, budgets, allowed models, all of its keys', true),
    ('00000000-0000-0000-0000-000000000003', NULL, 'org_user', 'org',
     'Developer in one org: own API keys, inference, usage', true);

INSERT INTO role_permissions (role_id, permission)
SELECT '00000000-0000-0000-0000-000000000001'::uuid, p FROM unnest(ARRAY[
    'orgs:read', 'orgs:write', 'users:read', 'users:write', 'users:reset_password',
    'keys:read_any', 'keys:revoke_any', 'budgets:read', 'budgets:write',
    'models:read', 'models:write', 'models:allow', 'usage:read', 'usage:read_own',
    'audit:read', 'audit:verify', 'policies:read', 'policies:write',
    'guardrails:read', 'guardrails:write']) AS p
UNION ALL
SELECT '00000000-0000-0000-0000-000000000002'::uuid, p FROM unnest(ARRAY[
    'orgs:read', 'users:read', 'users:write', 'keys:read', 'keys:write',
    'keys:read_any', 'keys:revoke_any', 'budgets:read', 'budgets:write',
    'models:read', 'models:allow', 'usage:read', 'usage:read_own', 'audit:read',
    'policies:read', 'policies:write', 'guardrails:read', 'guardrails:write',
    'inference']) AS p
UNION ALL
SELECT '00000000-0000-0000-0000-000000000003'::uuid, p FROM unnest(ARRAY[
    'orgs:read', 'keys:read', 'keys:write', 'budgets:read', 'models:read',
    'usage:read', 'usage:read_own', 'inference']) AS p;
