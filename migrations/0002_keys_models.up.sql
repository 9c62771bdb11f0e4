-- API keys, budgets and the model registry (owner: users service).

-- ---------------------------------------------------------------- api keys
CREATE TABLE api_keys (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         uuid        NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id        uuid        NOT NULL,
    name           text        NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    prefix         text        NOT NULL UNIQUE CHECK (prefix ~ '^[a-z0-9]{8}$'),
    key_hash       char(64)    NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    rate_limit_rps integer     CHECK (rate_limit_rps > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    revoked_by     uuid        REFERENCES users (id) ON DELETE SET NULL,
    last_used_at   timestamptz,
    -- The key's org is its owner's org: a key can never cross tenants.
    CONSTRAINT api_keys_user_org_fkey FOREIGN KEY (user_id, org_id)
        REFERENCES users (id, org_id) ON DELETE CASCADE,
    CONSTRAINT api_keys_expiry_after_creation CHECK (expires_at IS NULL OR expires_at > created_at)
);
CREATE INDEX api_keys_org_user_idx ON api_keys (org_id, user_id, created_at, id);
CREATE INDEX api_keys_org_created_idx ON api_keys (org_id, created_at, id);
COMMENT ON TABLE api_keys IS
    'API keys for the OpenAI-compatible endpoint ("ias_<prefix>.<secret>"). Only the prefix and the SHA-256 of the whole key are stored; the key is shown once.';
COMMENT ON COLUMN api_keys.id IS 'Key id (shown in listings and usage).';
COMMENT ON COLUMN api_keys.org_id IS 'Org the key bills to; always its user''s org.';
COMMENT ON COLUMN api_keys.user_id IS 'User who owns the key.';
COMMENT ON COLUMN api_keys.name IS 'Owner-chosen label.';
COMMENT ON COLUMN api_keys.prefix IS 'The 8 random [a-z0-9] characters after "ias_"; identifies the key in listings, reveals nothing of the secret.';
COMMENT ON COLUMN api_keys.key_hash IS 'Lowercase hex SHA-256 of the whole key; what ingress looks keys up by.';
COMMENT ON COLUMN api_keys.rate_limit_rps IS 'Requests per second allowed for this key at ingress; NULL means the platform default.';
COMMENT ON COLUMN api_keys.created_at IS 'When the key was created.';
COMMENT ON COLUMN api_keys.expires_at IS 'Optional end of validity; NULL never expires.';
COMMENT ON COLUMN api_keys.revoked_at IS 'When the key was revoked; NULL while active.';
COMMENT ON COLUMN api_keys.revoked_by IS 'User who revoked the key.';
COMMENT ON COLUMN api_keys.last_used_at IS 'Approximate last use (updated lazily, not per request).';

-- ---------------------------------------------------------------- budgets
CREATE TABLE org_budgets (
    org_id              uuid        PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    monthly_token_limit bigint      NOT NULL CHECK (monthly_token_limit >= 0),
    alert_thresholds    integer[]   NOT NULL DEFAULT '{80,90}'
        CONSTRAINT org_budgets_thresholds_valid CHECK (
            cardinality(alert_thresholds) <= 10
            AND coalesce(array_ndims(alert_thresholds), 1) = 1
            AND array_position(alert_thresholds, NULL) IS NULL
            AND 1 <= ALL (alert_thresholds) AND 100 >= ALL (alert_thresholds)),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    updated_by          uuid        REFERENCES users (id) ON DELETE SET NULL
);
CREATE TRIGGER org_budgets_touch BEFORE UPDATE ON org_budgets
    FOR EACH ROW EXECUTE FUNCTION ias_touch_updated_at();
COMMENT ON TABLE org_budgets IS
    'Monthly token budget of an org (UTC calendar months). No row means no org budget; per-user limits live in users.monthly_token_limit.';
COMMENT ON COLUMN org_budgets.org_id IS 'The org.';
COMMENT ON COLUMN org_budgets.monthly_token_limit IS 'Tokens (prompt + completion) the org may use per month; requests beyond it get 429.';
COMMENT ON COLUMN org_budgets.alert_thresholds IS 'Percentages of the budget that raise one alert each when crossed (100 % is always alerted).';
COMMENT ON COLUMN org_budgets.updated_at IS 'Last change (maintained by trigger).';
COMMENT ON COLUMN org_budgets.updated_by IS 'User who last changed the budget.';

-- ---------------------------------------------------------------- models
CREATE TABLE models (
    id                 uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    name               text          NOT NULL UNIQUE
        CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$'),
    context_length     integer       NOT NULL CHECK (context_length > 0),
    input_rate_per_1k  numeric(12,6) NOT NULL DEFAULT 0 CHECK (input_rate_per_1k >= 0),
    output_rate_per_1k numeric(12,6) NOT NULL DEFAULT 0 CHECK (output_rate_per_1k >= 0),
    enabled            boolean       NOT NULL DEFAULT true,
    fallback_model     text          REFERENCES models (name) ON UPDATE CASCADE ON DELETE SET NULL,
    tags               text[]        NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 50),
    created_at         timestamptz   NOT NULL DEFAULT now(),
    updated_at         timestamptz   NOT NULL DEFAULT now(),
    CONSTRAINT models_no_self_fallback CHECK (fallback_model IS NULL OR fallback_model <> name)
);
CREATE TRIGGER models_touch BEFORE UPDATE ON models
    FOR EACH ROW EXECUTE FUNCTION ias_touch_updated_at();
COMMENT ON TABLE models IS
    'Model registry: the names clients put in "model", with rates and limits. The router caches it (GET /internal/models).';
COMMENT ON COLUMN models.id IS 'Model id.';
COMMENT ON COLUMN models.name IS 'Public model name, e.g. mock-gpt; unique.';
COMMENT ON COLUMN models.context_length IS 'Context window in tokens; max_tokens plus the prompt must fit in it.';
COMMENT ON COLUMN models.input_rate_per_1k IS 'Price per 1,000 prompt tokens in the billing currency.';
COMMENT ON COLUMN models.output_rate_per_1k IS 'Price per 1,000 completion tokens in the billing currency.';
COMMENT ON COLUMN models.enabled IS 'False hides the model from clients without deleting it.';
COMMENT ON COLUMN models.fallback_model IS 'Model to use when every backend of this one is down; NULL for none.';
COMMENT ON COLUMN models.tags IS 'Labels used by policies, e.g. data classification (pii-ok, internal).';
COMMENT ON COLUMN models.created_at IS 'When the model was registered.';
COMMENT ON COLUMN models.updated_at IS 'Last change (maintained by trigger).';

-- Rates at the time of use: accounting prices an event with the rates valid
-- when it happened, even if they changed since.
CREATE TABLE model_rate_history (
    model              text          NOT NULL,
    valid_from         timestamptz   NOT NULL,
    input_rate_per_1k  numeric(12,6) NOT NULL CHECK (input_rate_per_1k >= 0),
    output_rate_per_1k numeric(12,6) NOT NULL CHECK (output_rate_per_1k >= 0),
    PRIMARY KEY (model, valid_from)
);
COMMENT ON TABLE model_rate_history IS
    'Every rate a model name has had, written by trigger on models; kept after a model is removed so old usage can still be priced.';
COMMENT ON COLUMN model_rate_history.model IS 'Model name as used in usage events.';
COMMENT ON COLUMN model_rate_history.valid_from IS 'Start of validity; a rate is valid until the next row of the same model.';
COMMENT ON COLUMN model_rate_history.input_rate_per_1k IS 'Price per 1,000 prompt tokens from valid_from on.';
COMMENT ON COLUMN model_rate_history.output_rate_per_1k IS 'Price per 1,000 completion tokens from valid_from on.';

CREATE FUNCTION ias_models_record_rates() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.name = OLD.name
       AND NEW.input_rate_per_1k = OLD.input_rate_per_1k
       AND NEW.output_rate_per_1k = OLD.output_rate_per_1k THEN
        RETURN NULL;
    END IF;
    INSERT INTO model_rate_history (model, valid_from, input_rate_per_1k, output_rate_per_1k)
    VALUES (NEW.name, now(), NEW.input_rate_per_1k, NEW.output_rate_per_1k)
    ON CONFLICT (model, valid_from) DO UPDATE
        SET input_rate_per_1k = EXCLUDED.input_rate_per_1k,
            output_rate_per_1k = EXCLUDED.output_rate_per_1k;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ias_models_record_rates() IS
    'Trigger function: appends a model''s rates to model_rate_history when a model is added, renamed or repriced.';
CREATE TRIGGER models_record_rates AFTER INSERT OR UPDATE ON models
    FOR EACH ROW EXECUTE FUNCTION ias_models_record_rates();

CREATE TABLE model_backends (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    model_id       uuid        NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    url            text        NOT NULL
        CHECK (length(url) <= 2048 AND url ~ '^https?://[^[:space:]]+$'),
    upstream_model text        CHECK (length(upstream_model) BETWEEN 1 AND 256),
    weight         integer     NOT NULL DEFAULT 1 CHECK (weight BETWEEN 0 AND 1000),
    enabled        boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_backends_model_url_key UNIQUE (model_id, url)
);
CREATE TRIGGER model_backends_touch BEFORE UPDATE ON model_backends
    FOR EACH ROW EXECUTE FUNCTION ias_touch_updated_at();
COMMENT ON TABLE model_backends IS
    'OpenAI-compatible servers (vLLM, mockllm) that serve a model; the router balances across the enabled ones by weight.';
COMMENT ON COLUMN model_backends.id IS 'Backend id.';
COMMENT ON COLUMN model_backends.model_id IS 'The model served.';
COMMENT ON COLUMN model_backends.url IS 'Base URL of the server, e.g. http://10.0.0.5:8000 (the router appends /v1/...).';
COMMENT ON COLUMN model_backends.upstream_model IS 'Model name the server expects, when it differs from models.name; NULL means the same.';
COMMENT ON COLUMN model_backends.weight IS 'Relative share of traffic; 0 drains the backend.';
COMMENT ON COLUMN model_backends.enabled IS 'False takes the backend out of rotation.';
COMMENT ON COLUMN model_backends.created_at IS 'When the backend was added.';
COMMENT ON COLUMN model_backends.updated_at IS 'Last change (maintained by trigger).';

CREATE TABLE org_allowed_models (
    org_id     uuid        NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    model_id   uuid        NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by uuid        REFERENCES users (id) ON DELETE SET NULL,
    PRIMARY KEY (org_id, model_id)
);
CREATE INDEX org_allowed_models_model_idx ON org_allowed_models (model_id);
COMMENT ON TABLE org_allowed_models IS
    'Models an org may use. An org with no rows may use none (fail closed); the pdp enforces this as its default rule.';
COMMENT ON COLUMN org_allowed_models.org_id IS 'The org.';
COMMENT ON COLUMN org_allowed_models.model_id IS 'A model the org may call.';
COMMENT ON COLUMN org_allowed_models.created_at IS 'When the model was allowed.';
COMMENT ON COLUMN org_allowed_models.created_by IS 'User who allowed it.';
