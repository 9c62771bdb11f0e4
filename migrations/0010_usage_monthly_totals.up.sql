-- Month totals of usage per org and per (org, user) (owner: accounting).
--
-- The budget drift check (every IAS_DRIFT_CHECK_INTERVAL, and the counter
-- rebuild at start) and the budget-alert step need a month's totals. Summed
-- from usage_rollups_hourly that is a read of every rollup row of the month
-- (7.5 M rows, 9-12 s and a 420 MB sort on disk at 10 M events,
-- bench/README.md "Usage queries"). The consumer now keeps these sums itself,
-- in the same transaction as the rollups, so they read one row per counter.
--
-- One row per org and month with user_id NULL (the org total: every event of
-- the org, with or without a user), and one per (org, user, month) for events
-- that have a user (events without one have no per-user counter to check).
-- NULLS NOT DISTINCT makes the org row unique.
--
-- Only the summed columns change on update and none is indexed, so updates are
-- HOT (no index writes) when the page has room: hence the fillfactor.
CREATE TABLE usage_month_totals (
    org_id            uuid           NOT NULL,
    month             date           NOT NULL
        CONSTRAINT usage_month_totals_first_of_month CHECK (extract(day FROM month) = 1),
    user_id           uuid,
    requests          bigint         NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors            bigint         NOT NULL DEFAULT 0 CHECK (errors >= 0),
    prompt_tokens     bigint         NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens bigint         NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    cost              numeric(24,10) NOT NULL DEFAULT 0 CHECK (cost >= 0),
    updated_at        timestamptz    NOT NULL DEFAULT now(),
    CONSTRAINT usage_month_totals_key UNIQUE NULLS NOT DISTINCT (org_id, month, user_id)
) WITH (fillfactor = 70);
-- The drift check reads one month over all orgs.
CREATE INDEX usage_month_totals_month_idx ON usage_month_totals (month);
COMMENT ON TABLE usage_month_totals IS
    'Usage summed per UTC month and org (user_id NULL) and per month, org and user; upserted in the same transaction as the raw events and rollups. Budget drift checks and budget alerts read this.';
COMMENT ON COLUMN usage_month_totals.org_id IS 'Org.';
COMMENT ON COLUMN usage_month_totals.month IS 'The UTC month, as its first day.';
COMMENT ON COLUMN usage_month_totals.user_id IS 'User; NULL for the org total (all the org''s events, with or without a user).';
COMMENT ON COLUMN usage_month_totals.requests IS 'Number of requests.';
COMMENT ON COLUMN usage_month_totals.errors IS 'Requests that ended with status >= 400 or were aborted.';
COMMENT ON COLUMN usage_month_totals.prompt_tokens IS 'Sum of prompt tokens.';
COMMENT ON COLUMN usage_month_totals.completion_tokens IS 'Sum of completion tokens.';
COMMENT ON COLUMN usage_month_totals.cost IS 'Sum of cost.';
COMMENT ON COLUMN usage_month_totals.updated_at IS 'Last time events were added to this row.';
COMMENT ON INDEX usage_month_totals_key IS
    'One row per org, month and user (NULL: the org total); the upsert''s arbiter and the budget-alert lookup.';
COMMENT ON INDEX usage_month_totals_month_idx IS
    'One month over all orgs (budget drift check).';

-- Backfill from the rollups (hours are whole UTC hours, so each lies in one
-- UTC month). The SHARE lock keeps a batch from committing between the read
-- and the end of this migration; accounting must run the new code afterwards
-- (an older consumer would not add to these totals).
LOCK TABLE usage_rollups_hourly IN SHARE MODE;
INSERT INTO usage_month_totals (org_id, month, user_id, requests, errors, prompt_tokens,
                                completion_tokens, cost)
SELECT org_id, month, user_id, sum(requests), sum(errors), sum(prompt_tokens),
       sum(completion_tokens), sum(cost)
FROM (SELECT org_id, user_id, requests, errors, prompt_tokens, completion_tokens, cost,
             (date_trunc('month', hour, 'UTC') AT TIME ZONE 'UTC')::date AS month
      FROM usage_rollups_hourly) r
GROUP BY GROUPING SETS ((org_id, month), (org_id, month, user_id))
HAVING grouping(user_id) = 1 OR user_id IS NOT NULL;
ANALYZE usage_month_totals;
