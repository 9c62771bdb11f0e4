-- Usage of record, rollups and budget alerts (owner: accounting).
--
-- These tables hold facts as the events reported them. They carry org, user
-- and key ids without foreign keys, so history outlives deletions and the
-- ingest path never waits on another service's rows.

-- ---------------------------------------------------------------- raw usage events
CREATE TABLE usage_events (
    event_id           uuid          NOT NULL,
    created_at         timestamptz   NOT NULL,
    received_at        timestamptz   NOT NULL DEFAULT now(),
    request_id         text          NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
    org_id             uuid          NOT NULL,
    user_id            uuid,
    api_key_id         uuid,
    model              text          NOT NULL CHECK (length(model) BETWEEN 1 AND 256),
    backend            text          CHECK (length(backend) <= 2048),
    status             integer       NOT NULL CHECK (status BETWEEN 100 AND 599),
    prompt_tokens      integer       NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  integer       NOT NULL CHECK (completion_tokens >= 0),
    input_rate_per_1k  numeric(12,6) NOT NULL DEFAULT 0 CHECK (input_rate_per_1k >= 0),
    output_rate_per_1k numeric(12,6) NOT NULL DEFAULT 0 CHECK (output_rate_per_1k >= 0),
    cost               numeric(20,10) NOT NULL DEFAULT 0 CHECK (cost >= 0),
    ttft_ms            integer       CHECK (ttft_ms >= 0),
    duration_ms        integer       NOT NULL CHECK (duration_ms >= 0),
    stream             boolean       NOT NULL DEFAULT false,
    aborted            boolean       NOT NULL DEFAULT false,
    -- A unique constraint on a partitioned table must contain the partition
    -- key, so this cannot be event_id alone: processed_events dedupes.
    CONSTRAINT usage_events_event_key UNIQUE (event_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX usage_events_org_time_idx ON usage_events (org_id, created_at, event_id);
CREATE INDEX usage_events_org_user_time_idx ON usage_events (org_id, user_id, created_at);
COMMENT ON TABLE usage_events IS
    'One row per inference request (usage.recorded.v1), partitioned by month of created_at (UTC). Partitions are made ahead by ias_ensure_usage_partitions().';
COMMENT ON COLUMN usage_events.event_id IS 'Event id from the producer (router); deduplicated through processed_events.';
COMMENT ON COLUMN usage_events.created_at IS 'When the request ended: the event''s occurred_at; the partition key.';
COMMENT ON COLUMN usage_events.received_at IS 'When accounting stored the event; received_at - created_at is the pipeline lag.';
COMMENT ON COLUMN usage_events.request_id IS 'Request id, as in the logs and the X-Request-Id header.';
COMMENT ON COLUMN usage_events.org_id IS 'Org billed.';
COMMENT ON COLUMN usage_events.user_id IS 'Owner of the API key used.';
COMMENT ON COLUMN usage_events.api_key_id IS 'API key used.';
COMMENT ON COLUMN usage_events.model IS 'Model name the client asked for (after any fallback, the model that answered).';
COMMENT ON COLUMN usage_events.backend IS 'Backend that served the request, as the router names it; NULL if none was reached.';
COMMENT ON COLUMN usage_events.status IS 'HTTP status returned to the client.';
COMMENT ON COLUMN usage_events.prompt_tokens IS 'Prompt (input) tokens.';
COMMENT ON COLUMN usage_events.completion_tokens IS 'Completion (output) tokens delivered; on abort only those sent to the client.';
COMMENT ON COLUMN usage_events.input_rate_per_1k IS 'Input rate applied, from the model''s rates at the time of use.';
COMMENT ON COLUMN usage_events.output_rate_per_1k IS 'Output rate applied, from the model''s rates at the time of use.';
COMMENT ON COLUMN usage_events.cost IS '(prompt_tokens * input_rate + completion_tokens * output_rate) / 1000.';
COMMENT ON COLUMN usage_events.ttft_ms IS 'Time to first token in ms; NULL if no token was produced.';
COMMENT ON COLUMN usage_events.duration_ms IS 'Whole request duration in ms.';
COMMENT ON COLUMN usage_events.stream IS 'True for a streamed (SSE) request.';
COMMENT ON COLUMN usage_events.aborted IS 'True when the client left or the upstream died before the end.';

CREATE FUNCTION ias_ensure_usage_partitions(from_month date, months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    m       date;
    part    text;
    lo      timestamptz;
    hi      timestamptz;
    created integer := 0;
BEGIN
    IF from_month IS NULL OR months IS NULL OR months < 1 OR months > 120 THEN
        RAISE EXCEPTION 'ias_ensure_usage_partitions: want a month and 1..120 months, got % and %',
            from_month, months USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Several accounting instances may call this at once; CREATE TABLE IF
    -- NOT EXISTS alone still races on the catalog.
    PERFORM pg_advisory_xact_lock(hashtext('ias_ensure_usage_partitions'));
    m := make_date(extract(year FROM from_month)::integer, extract(month FROM from_month)::integer, 1);
    FOR i IN 1 .. months LOOP
        part := 'usage_events_' || to_char(m, 'YYYY_MM');
        IF to_regclass(part) IS NULL THEN
            -- Month boundaries are 00:00 UTC on the 1st whatever the session time zone.
            lo := m::timestamp AT TIME ZONE 'UTC';
            hi := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                           part, lo, hi);
            EXECUTE format('COMMENT ON TABLE %I IS %L', part,
                           'usage_events for ' || to_char(m, 'YYYY-MM') || ' (UTC); made by ias_ensure_usage_partitions().');
            created := created + 1;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION ias_ensure_usage_partitions(date, integer) IS
    'Creates the missing monthly partitions of usage_events (usage_events_YYYY_MM) for the month of from_month and the following ones; returns how many it made. Idempotent and safe to call concurrently.';

-- The current month and the next two; accounting keeps calling it ahead.
SELECT ias_ensure_usage_partitions((now() AT TIME ZONE 'UTC')::date, 3);

-- ---------------------------------------------------------------- idempotency
CREATE TABLE processed_events (
    event_id     uuid        PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);
COMMENT ON TABLE processed_events IS
    'Ids of usage events already applied, inserted in the same transaction as the effect; a redelivered event conflicts here and changes nothing. Exists because usage_events can only be unique on (event_id, created_at). Rows older than the longest redelivery window may be pruned.';
COMMENT ON COLUMN processed_events.event_id IS 'Event id of an applied usage event.';
COMMENT ON COLUMN processed_events.processed_at IS 'When it was applied (for pruning).';

-- ---------------------------------------------------------------- rollups
CREATE TABLE usage_rollups_hourly (
    org_id            uuid           NOT NULL,
    hour              timestamptz    NOT NULL
        CONSTRAINT usage_rollups_hourly_whole_hour CHECK (extract(epoch FROM hour) % 3600 = 0),
    user_id           uuid,
    api_key_id        uuid,
    model             text           NOT NULL CHECK (length(model) BETWEEN 1 AND 256),
    requests          bigint         NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors            bigint         NOT NULL DEFAULT 0 CHECK (errors >= 0),
    prompt_tokens     bigint         NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens bigint         NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost              numeric(24,10) NOT NULL DEFAULT 0 CHECK (cost >= 0),
    updated_at        timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT usage_rollups_hourly_key
        UNIQUE NULLS NOT DISTINCT (org_id, hour, user_id, api_key_id, model)
);
CREATE INDEX usage_rollups_hourly_hour_idx ON usage_rollups_hourly (hour);
COMMENT ON TABLE usage_rollups_hourly IS
    'Usage summed per UTC hour, org, user, key and model; upserted in the same transaction as the raw events. Analytics and budgets of record read this.';
COMMENT ON COLUMN usage_rollups_hourly.org_id IS 'Org.';
COMMENT ON COLUMN usage_rollups_hourly.hour IS 'Start of the hour (whole UTC hour).';
COMMENT ON COLUMN usage_rollups_hourly.user_id IS 'User (NULL when the events had none).';
COMMENT ON COLUMN usage_rollups_hourly.api_key_id IS 'API key (NULL when the events had none).';
COMMENT ON COLUMN usage_rollups_hourly.model IS 'Model name.';
COMMENT ON COLUMN usage_rollups_hourly.requests IS 'Number of requests.';
COMMENT ON COLUMN usage_rollups_hourly.errors IS 'Requests that ended with status >= 400 or were aborted.';
COMMENT ON COLUMN usage_rollups_hourly.prompt_tokens IS 'Sum of prompt tokens.';
COMMENT ON COLUMN usage_rollups_hourly.completion_tokens IS 'Sum of completion tokens.';
COMMENT ON COLUMN usage_rollups_hourly.cost IS 'Sum of cost.';
COMMENT ON COLUMN usage_rollups_hourly.updated_at IS 'Last time events were added to this row.';

-- ---------------------------------------------------------------- budget alerts
CREATE TABLE budget_alerts (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid        NOT NULL,
    user_id      uuid,
    month        date        NOT NULL CONSTRAINT budget_alerts_first_of_month CHECK (extract(day FROM month) = 1),
    threshold    integer     NOT NULL CHECK (threshold BETWEEN 1 AND 100),
    limit_tokens bigint      NOT NULL CHECK (limit_tokens >= 0),
    used_tokens  bigint      NOT NULL CHECK (used_tokens >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT budget_alerts_once_key UNIQUE NULLS NOT DISTINCT (org_id, user_id, month, threshold)
);
COMMENT ON TABLE budget_alerts IS
    'One row per budget threshold crossed per month: an org budget (user_id NULL) or a user''s limit. The unique key makes each alert happen once.';
COMMENT ON COLUMN budget_alerts.id IS 'Alert id.';
COMMENT ON COLUMN budget_alerts.org_id IS 'Org.';
COMMENT ON COLUMN budget_alerts.user_id IS 'User whose monthly limit was crossed; NULL for the org budget.';
COMMENT ON COLUMN budget_alerts.month IS 'The UTC month, as its first day.';
COMMENT ON COLUMN budget_alerts.threshold IS 'Percentage crossed (e.g. 80, 90, 100).';
COMMENT ON COLUMN budget_alerts.limit_tokens IS 'The budget or limit at the time.';
COMMENT ON COLUMN budget_alerts.used_tokens IS 'Tokens used when the threshold was crossed.';
COMMENT ON COLUMN budget_alerts.created_at IS 'When the alert was recorded.';
