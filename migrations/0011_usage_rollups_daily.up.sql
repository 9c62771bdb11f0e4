-- Daily usage rollups, narrow per dimension, and a covering index for one
-- user's raw events (owner: accounting).
--
-- A 30-day org summary or daily series read the org's hourly rollup rows:
-- ~10,000 per org at 10 M events a month, since a user's ~100 requests a month
-- rarely share an hour (bench/README.md "Usage queries"), and their p99 sat
-- above the 100 ms target. One daily table keyed like the hourly one (org,
-- day, user, key, model) would barely be smaller: the same ~100 requests
-- rarely share a day and a model. So the daily sums are kept per dimension,
-- with only that dimension in the key:
--
--   usage_rollups_daily_model     (org, day, model)      group_by none and model
--   usage_rollups_daily_user_key  (org, day, user, key)  group_by user and key,
--                                                         and user_id filters
--
-- An API key belongs to one user, so adding the user to the key's rows adds
-- no rows: the second table is as small as a per-key table would be, and one
-- table (one upsert per batch) serves both the user and the key groupings. A
-- user's rows of a day are as many as the keys they used that day.
--
-- Analytics read these for the whole UTC days of a range and the hourly
-- rollups for the partial days at its ends (services/accounting/analytics.c);
-- the sums are the same. The consumer upserts them in the same transaction as
-- the raw events, the hourly rollups and the month totals
-- (services/accounting/consumer.c), so a redelivered event, which changes
-- nothing there, changes nothing here either.
--
-- As in 0009, each unique key carries the summed columns (INCLUDE): it is
-- both the upsert's arbiter and the covering index of the analytics reads,
-- index-only scans of one org's range of days (a few adjacent leaf pages; an
-- org's rows of different days lie on different heap pages, ~110 of them for
-- 30 days x 4 models, each a read when cold). User and key are NULL for events
-- without one, hence NULLS NOT DISTINCT. The BRIN indexes on day serve the
-- system-wide reads (no org); rows arrive in day order.

CREATE TABLE usage_rollups_daily_model (
    org_id            uuid           NOT NULL,
    day               date           NOT NULL,
    model             text           NOT NULL CHECK (length(model) BETWEEN 1 AND 256),
    requests          bigint         NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors            bigint         NOT NULL DEFAULT 0 CHECK (errors >= 0),
    prompt_tokens     bigint         NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens bigint         NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost              numeric(24,10) NOT NULL DEFAULT 0 CHECK (cost >= 0),
    updated_at        timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT usage_rollups_daily_model_key PRIMARY KEY (org_id, day, model)
        INCLUDE (requests, errors, prompt_tokens, completion_tokens, cost)
);
CREATE INDEX usage_rollups_daily_model_day_idx ON usage_rollups_daily_model USING brin (day);
COMMENT ON TABLE usage_rollups_daily_model IS
    'Usage summed per UTC day, org and model; upserted in the same transaction as the raw events and hourly rollups. Analytics read it for whole days (group_by none and model).';
COMMENT ON COLUMN usage_rollups_daily_model.org_id IS 'Org.';
COMMENT ON COLUMN usage_rollups_daily_model.day IS 'The UTC day.';
COMMENT ON COLUMN usage_rollups_daily_model.model IS 'Model name.';
COMMENT ON COLUMN usage_rollups_daily_model.requests IS 'Number of requests.';
COMMENT ON COLUMN usage_rollups_daily_model.errors IS 'Requests that ended with status >= 400 or were aborted.';
COMMENT ON COLUMN usage_rollups_daily_model.prompt_tokens IS 'Sum of prompt tokens.';
COMMENT ON COLUMN usage_rollups_daily_model.completion_tokens IS 'Sum of completion tokens.';
COMMENT ON COLUMN usage_rollups_daily_model.cost IS 'Sum of cost.';
COMMENT ON COLUMN usage_rollups_daily_model.updated_at IS 'Last time events were added to this row.';
COMMENT ON INDEX usage_rollups_daily_model_key IS
    'One row per org, day and model (the upsert''s arbiter); also the covering index of the analytics reads: index-only scans.';
COMMENT ON INDEX usage_rollups_daily_model_day_idx IS
    'Day ranges over all orgs (system-wide summaries); BRIN, since rows arrive in day order.';

CREATE TABLE usage_rollups_daily_user_key (
    org_id            uuid           NOT NULL,
    day               date           NOT NULL,
    user_id           uuid,
    api_key_id        uuid,
    requests          bigint         NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors            bigint         NOT NULL DEFAULT 0 CHECK (errors >= 0),
    prompt_tokens     bigint         NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens bigint         NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost              numeric(24,10) NOT NULL DEFAULT 0 CHECK (cost >= 0),
    updated_at        timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT usage_rollups_daily_user_key_key
        UNIQUE NULLS NOT DISTINCT (org_id, day, user_id, api_key_id)
        INCLUDE (requests, errors, prompt_tokens, completion_tokens, cost)
);
CREATE INDEX usage_rollups_daily_user_key_day_idx ON usage_rollups_daily_user_key USING brin (day);
COMMENT ON TABLE usage_rollups_daily_user_key IS
    'Usage summed per UTC day, org, user and API key (a key belongs to one user: as many rows as keys used); upserted in the same transaction as the raw events and hourly rollups. Analytics read it for whole days (group_by user and key, user_id filters).';
COMMENT ON COLUMN usage_rollups_daily_user_key.org_id IS 'Org.';
COMMENT ON COLUMN usage_rollups_daily_user_key.day IS 'The UTC day.';
COMMENT ON COLUMN usage_rollups_daily_user_key.user_id IS 'User (NULL when the events had none).';
COMMENT ON COLUMN usage_rollups_daily_user_key.api_key_id IS 'API key (NULL when the events had none).';
COMMENT ON COLUMN usage_rollups_daily_user_key.requests IS 'Number of requests.';
COMMENT ON COLUMN usage_rollups_daily_user_key.errors IS 'Requests that ended with status >= 400 or were aborted.';
COMMENT ON COLUMN usage_rollups_daily_user_key.prompt_tokens IS 'Sum of prompt tokens.';
COMMENT ON COLUMN usage_rollups_daily_user_key.completion_tokens IS 'Sum of completion tokens.';
COMMENT ON COLUMN usage_rollups_daily_user_key.cost IS 'Sum of cost.';
COMMENT ON COLUMN usage_rollups_daily_user_key.updated_at IS 'Last time events were added to this row.';
COMMENT ON INDEX usage_rollups_daily_user_key_key IS
    'One row per org, day, user and key (the upsert''s arbiter); also the covering index of the analytics reads: index-only scans.';
COMMENT ON INDEX usage_rollups_daily_user_key_day_idx IS
    'Day ranges over all orgs (system-wide summaries); BRIN, since rows arrive in day order.';

-- ---------------------------------------------------------------- one user's events
-- GET /api/v1/usage/events?user_id= (newest first, keyset on created_at,
-- event_id) read 0004's (org_id, user_id, created_at) index and then one heap
-- page per event: a user's ~100 events of a month lie on ~100 pages spread over
-- the whole partition, interleaved with every other user's. Those pages are
-- cold unless that very user was read lately: EXPLAIN (ANALYZE, BUFFERS) on
-- the 10 M-row bench database, ~105 buffers read per request, 20-50 ms with
-- the partition out of the OS cache (against ~2 ms warm), which made the
-- request's p99 585 ms against a p50 of 17 ms (bench/README.md "Usage
-- queries"). This index carries every column the request returns, so it is an
-- index-only scan of ~10 adjacent pages (1.4-2 ms cold), and with event_id in
-- the key it also gives the request's order (no sort) and turns the cursor of
-- later pages into an index condition. It replaces the old index (one index
-- write per event either way: ~1 % more instructions per ingest batch,
-- callgrind) at the price of space: about as large as the partition's heap.
DROP INDEX usage_events_org_user_time_idx;
CREATE INDEX usage_events_org_user_cover_idx ON usage_events (org_id, user_id, created_at, event_id)
    INCLUDE (received_at, request_id, api_key_id, model, backend, status, prompt_tokens,
             completion_tokens, cost, ttft_ms, duration_ms, stream, aborted);
COMMENT ON INDEX usage_events_org_user_cover_idx IS
    'One user''s events newest first (the events API with user_id): every column it returns, so an index-only scan.';

-- ---------------------------------------------------------------- backfill
-- Backfill from the hourly rollups (hours are whole UTC hours, so each lies in
-- one UTC day), in day order as the consumer writes them. Run it with the
-- accounting consumers stopped: the SHARE lock keeps a batch from committing
-- between the read and the end of this migration, and accounting must run the
-- new code afterwards (an older consumer would not add to these tables, and
-- the analytics would then miss its events for whole days).
LOCK TABLE usage_rollups_hourly IN SHARE MODE;
INSERT INTO usage_rollups_daily_model (org_id, day, model, requests, errors, prompt_tokens,
                                       completion_tokens, cost)
SELECT org_id, (hour AT TIME ZONE 'UTC')::date, model, sum(requests), sum(errors),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
FROM usage_rollups_hourly GROUP BY 1, 2, 3 ORDER BY 2;
INSERT INTO usage_rollups_daily_user_key (org_id, day, user_id, api_key_id, requests, errors,
                                          prompt_tokens, completion_tokens, cost)
SELECT org_id, (hour AT TIME ZONE 'UTC')::date, user_id, api_key_id, sum(requests), sum(errors),
       sum(prompt_tokens), sum(completion_tokens), sum(cost)
FROM usage_rollups_hourly GROUP BY 1, 2, 3, 4 ORDER BY 2;
ANALYZE usage_rollups_daily_model, usage_rollups_daily_user_key;
