/* The ias.usage consumer: validates usage.recorded.v1 events and applies a
 * whole batch of deliveries in one transaction (docs/architecture/accounting.md):
 *
 *   shared daily-rollup lock -> processed_events (ON CONFLICT DO NOTHING) ->
 *   only new ids go on to usage_events (priced at the rate of their time) ->
 *   usage_rollups_hourly upsert -> usage_rollups_daily_user_key and
 *   usage_rollups_daily_model upserts for late events only (days the daily
 *   job already summarised) -> usage_month_totals upsert -> budget_alerts for
 *   the months touched -> COMMIT -> ack.
 *
 * A redelivered event conflicts in processed_events and changes nothing. An
 * event that can never be stored (bad JSON, schema violation) is rejected to
 * the dead-letter queue with the reason; a database outage makes the batch
 * RETRY.
 *
 * The batch travels as one PostgreSQL array per event field ($1..$15, text
 * array literals unnested together), not as one JSON document: the server
 * parses a uuid[] or integer[] far faster than jsonb, and the alert steps take
 * only the org, user and time arrays instead of parsing the whole batch again. */
#include "accounting.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/amqp.h"
#include "ias/log.h"
#include "ias/pg.h"

/* The sums of a daily rollup row (alias d) plus the batch's (EXCLUDED). */
#define DAILY_SET                                                                                  \
    "    requests = d.requests + EXCLUDED.requests, errors = d.errors + EXCLUDED.errors,"          \
    "    prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,"                                \
    "    completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,"                    \
    "    cost = d.cost + EXCLUDED.cost, updated_at = now()"

/* Taken first in every batch transaction, in a statement of its own: see
 * daily.c. While it is held (shared) the daily job, which takes it exclusive,
 * cannot summarise a day; and APPLY_SQL, a later statement with a snapshot
 * taken after the lock was granted, sees the watermark of the last job that
 * committed. In the same statement as the read the snapshot could predate a
 * job that committed while this batch waited for the lock, and its events of
 * the day just summarised would reach neither the job nor the daily rows. */
static const char DAILY_LOCK_SQL[] = "SELECT pg_advisory_xact_lock_shared(" ACCT_DAILY_LOCK_KEY ")";

/* One statement per batch; $1..$15 are the event fields as parallel arrays
 * (enum col). The month totals (per org, and per org and user) are summed
 * from the same new rows as the hourly rollups, and so are the daily rollups
 * (migration 0011: per org and day, by user and key, and by model), but only
 * for the events of days before the watermark (migration 0012), which the
 * daily job has already summarised: late events, normally none, so those two
 * upserts cost next to nothing. Events of later days are summed into the
 * daily rows by the job when their day is over. Each pre-aggregated upsert
 * counts an event once, as the hourly one does. Every upsert sorts its
 * rows, and the final SELECT reads roll, uk, dm, then tot, so every batch
 * locks the rows of each table in key order and the tables in that order: two
 * concurrent batches cannot deadlock. The rows that nearly every batch shares
 * (an org's month; an org's day per model, for late events) come last, so a
 * batch holds them for the shortest time before COMMIT. The SELECT also
 * makes the limits of every org visible to the alert steps that follow in
 * this transaction: org_budgets and users are the users service's, under
 * row-level security (0006_users_rls), and accounting reads them for all orgs
 * at once, for this transaction only. */
static const char APPLY_SQL[] =
    "WITH ev AS ("
    "  SELECT DISTINCT ON (event_id) * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[],"
    "    $4::uuid[], $5::uuid[], $6::uuid[], $7::text[], $8::text[], $9::integer[],"
    "    $10::integer[], $11::integer[], $12::integer[], $13::integer[], $14::boolean[],"
    "    $15::boolean[]) AS x(event_id, occurred_at, request_id, org_id, user_id, api_key_id,"
    "    model, backend, status, prompt_tokens, completion_tokens, ttft_ms, duration_ms, stream,"
    "    aborted)"
    "  ORDER BY event_id),"
    " fresh AS ("
    "  INSERT INTO processed_events (event_id) SELECT event_id FROM ev"
    "  ON CONFLICT (event_id) DO NOTHING RETURNING event_id),"
    " priced AS ("
    "  SELECT ev.*, coalesce(r.input_rate_per_1k, 0) AS in_rate,"
    "         coalesce(r.output_rate_per_1k, 0) AS out_rate"
    "  FROM ev JOIN fresh USING (event_id)"
    "  LEFT JOIN LATERAL (SELECT h.input_rate_per_1k, h.output_rate_per_1k"
    "    FROM model_rate_history h WHERE h.model = ev.model AND h.valid_from <= ev.occurred_at"
    "    ORDER BY h.valid_from DESC LIMIT 1) r ON true),"
    " ins AS ("
    "  INSERT INTO usage_events (event_id, created_at, request_id, org_id, user_id, api_key_id,"
    "    model, backend, status, prompt_tokens, completion_tokens, input_rate_per_1k,"
    "    output_rate_per_1k, cost, ttft_ms, duration_ms, stream, aborted)"
    "  SELECT event_id, occurred_at, request_id, org_id, user_id, api_key_id, model, backend,"
    "    status, prompt_tokens, completion_tokens, in_rate, out_rate,"
    "    (prompt_tokens * in_rate + completion_tokens * out_rate) / 1000, ttft_ms, duration_ms,"
    "    stream, aborted FROM priced"
    "  RETURNING created_at, org_id, user_id, api_key_id, model, status, aborted, prompt_tokens,"
    "    completion_tokens, cost),"
    " late AS ("
    "  SELECT * FROM ins WHERE created_at < (SELECT day::timestamp AT TIME ZONE 'UTC'"
    "    FROM usage_rollups_daily_watermark)),"
    " roll AS ("
    "  INSERT INTO usage_rollups_hourly AS u (org_id, hour, user_id, api_key_id, model, requests,"
    "    errors, prompt_tokens, completion_tokens, cost)"
    "  SELECT org_id, date_trunc('hour', created_at, 'UTC'), user_id, api_key_id, model, count(*),"
    "    count(*) FILTER (WHERE status >= 400 OR aborted), sum(prompt_tokens),"
    "    sum(completion_tokens), sum(cost)"
    "  FROM ins GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
    "  ON CONFLICT ON CONSTRAINT usage_rollups_hourly_key DO UPDATE SET"
    "    requests = u.requests + EXCLUDED.requests, errors = u.errors + EXCLUDED.errors,"
    "    prompt_tokens = u.prompt_tokens + EXCLUDED.prompt_tokens,"
    "    completion_tokens = u.completion_tokens + EXCLUDED.completion_tokens,"
    "    cost = u.cost + EXCLUDED.cost, updated_at = now()"
    "  RETURNING 1),"
    " uk AS ("
    "  INSERT INTO usage_rollups_daily_user_key AS d (org_id, day, user_id, api_key_id, requests,"
    "    errors, prompt_tokens, completion_tokens, cost)"
    "  SELECT org_id, (created_at AT TIME ZONE 'UTC')::date, user_id, api_key_id, count(*),"
    "    count(*) FILTER (WHERE status >= 400 OR aborted), sum(prompt_tokens),"
    "    sum(completion_tokens), sum(cost)"
    "  FROM late GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    "  ON CONFLICT ON CONSTRAINT usage_rollups_daily_user_key_key DO UPDATE SET" DAILY_SET
    "  RETURNING 1),"
    " dm AS ("
    "  INSERT INTO usage_rollups_daily_model AS d (org_id, day, model, requests, errors,"
    "    prompt_tokens, completion_tokens, cost)"
    "  SELECT org_id, (created_at AT TIME ZONE 'UTC')::date, model, count(*),"
    "    count(*) FILTER (WHERE status >= 400 OR aborted), sum(prompt_tokens),"
    "    sum(completion_tokens), sum(cost)"
    "  FROM late GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    "  ON CONFLICT ON CONSTRAINT usage_rollups_daily_model_key DO UPDATE SET" DAILY_SET
    "  RETURNING 1),"
    " tot AS ("
    "  INSERT INTO usage_month_totals AS t (org_id, month, user_id, requests, errors,"
    "    prompt_tokens, completion_tokens, cost)"
    "  SELECT org_id, month, user_id, count(*), count(*) FILTER (WHERE status >= 400 OR aborted),"
    "    sum(prompt_tokens), sum(completion_tokens), sum(cost)"
    "  FROM (SELECT *, (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date AS month"
    "    FROM ins) i"
    "  GROUP BY GROUPING SETS ((org_id, month), (org_id, month, user_id))"
    "  HAVING grouping(user_id) = 1 OR user_id IS NOT NULL"
    "  ORDER BY 1, 2, 3 NULLS FIRST"
    "  ON CONFLICT ON CONSTRAINT usage_month_totals_key DO UPDATE SET"
    "    requests = t.requests + EXCLUDED.requests, errors = t.errors + EXCLUDED.errors,"
    "    prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,"
    "    completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,"
    "    cost = t.cost + EXCLUDED.cost, updated_at = now()"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM roll),"
    "  (SELECT coalesce(max(extract(epoch FROM now() - created_at) * 1000), 0)::bigint FROM ins),"
    "  set_config('ias.org_id', '*', true), (SELECT count(*) FROM uk), (SELECT count(*) FROM dm),"
    "  (SELECT count(*) FROM tot)";

/* Alerts for the org budgets and user limits of the months the batch touched,
 * from usage_month_totals (this transaction included): one indexed row per
 * org or user, where summing the month's rollups read every hour of it.
 * $1 org ids, $2 user ids, $3 times: the batch's arrays of APPLY_SQL. */
static const char ALERTS_SQL[] =
    "WITH ev AS ("
    "  SELECT DISTINCT org_id, user_id,"
    "    (date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC')::date AS month"
    "  FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS x(org_id, user_id, occurred_at)),"
    " orgs AS ("
    "  SELECT DISTINCT e.org_id, e.month, b.monthly_token_limit AS lim,"
    "    b.alert_thresholds || 100 AS th"
    "  FROM ev e JOIN org_budgets b ON b.org_id = e.org_id),"
    " users_l AS ("
    "  SELECT DISTINCT e.org_id, e.user_id, e.month, u.monthly_token_limit AS lim"
    "  FROM ev e JOIN users u ON u.id = e.user_id AND u.org_id = e.org_id"
    "  WHERE u.monthly_token_limit IS NOT NULL),"
    " org_used AS ("
    "  SELECT o.*, coalesce((SELECT t.prompt_tokens + t.completion_tokens"
    "    FROM usage_month_totals t WHERE t.org_id = o.org_id AND t.month = o.month"
    "    AND t.user_id IS NULL), 0) AS used"
    "  FROM orgs o),"
    " user_used AS ("
    "  SELECT l.*, coalesce((SELECT t.prompt_tokens + t.completion_tokens"
    "    FROM usage_month_totals t WHERE t.org_id = l.org_id AND t.month = l.month"
    "    AND t.user_id = l.user_id), 0) AS used"
    "  FROM users_l l),"
    " cand AS ("
    "  SELECT org_id, NULL::uuid AS user_id, month, t AS threshold, lim, used"
    "  FROM org_used, unnest(th) AS t WHERE used * 100 >= lim * t"
    "  UNION"
    "  SELECT org_id, user_id, month, t, lim, used"
    "  FROM user_used, unnest(ARRAY[80, 90, 100]) AS t WHERE used * 100 >= lim * t)"
    " INSERT INTO budget_alerts (org_id, user_id, month, threshold, limit_tokens, used_tokens)"
    " SELECT org_id, user_id, month, threshold, lim, used FROM cand"
    " ORDER BY org_id, user_id, month, threshold"
    " ON CONFLICT ON CONSTRAINT budget_alerts_once_key DO NOTHING"
    " RETURNING org_id, coalesce(user_id::text, ''), month, threshold, used_tokens, limit_tokens";

/* Consumer threads apply batches concurrently. Two batches of one org could
 * each miss a threshold that only their sum crosses (neither sees the other's
 * uncommitted rollups), so the alert step is serialised per org that has a
 * limit: a batch waits here, in key order, for the other batch's commit, and
 * ALERTS_SQL (a later statement, a fresh snapshot) then sees its rollups.
 * It returns how many orgs of the batch have a limit at all: none, and no
 * alert can be due, so ALERTS_SQL is skipped. $1: the batch's org ids. */
static const char ALERT_LOCK_SQL[] =
    "SELECT count(pg_advisory_xact_lock(1634952052, hashtext(org_id::text))) FROM ("
    "  SELECT DISTINCT x.org_id FROM unnest($1::uuid[]) AS x(org_id)"
    "  WHERE EXISTS (SELECT 1 FROM org_budgets b WHERE b.org_id = x.org_id)"
    "     OR EXISTS (SELECT 1 FROM users u WHERE u.org_id = x.org_id"
    "                AND u.monthly_token_limit IS NOT NULL)"
    "  ORDER BY 1) s";

static const char ENSURE_SQL[] =
    "SELECT coalesce(sum(ias_ensure_usage_partitions(d, 1)), 0) FROM ("
    "  SELECT DISTINCT (date_trunc('month', occurred_at, 'UTC') AT TIME ZONE 'UTC')::date AS d"
    "  FROM unnest($1::timestamptz[]) AS x(occurred_at)) s";

/* ---- validation (proto/events/usage.recorded.v1.schema.json) ------------ */

static bool is_int_in(const cJSON *v, double lo, double hi)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
           v->valuedouble == floor(v->valuedouble) && v->valuedouble >= lo && v->valuedouble <= hi;
}

static bool str_len_in(const cJSON *v, size_t lo, size_t hi)
{
    size_t n;

    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return false;
    n = strlen(v->valuestring);
    return n >= lo && n <= hi;
}

static bool request_id_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 128)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

/* Strict timestamp: the schema's pattern plus a real calendar time. */
static bool timestamp_ok(const char *s)
{
    size_t n = strlen(s);
    int64_t ms;

    if (n < 20 || s[10] != 'T' || s[n - 1] != 'Z')
        return false;
    return acct_parse_iso(s, &ms) == IAS_OK;
}

static const char *const KNOWN[] = {
    "event_id",   "occurred_at", "request_id",  "org_id",        "user_id",
    "api_key_id", "model",       "backend",     "prompt_tokens", "completion_tokens",
    "status",     "ttft_ms",     "duration_ms", "stream",        "aborted",
};

int acct_event_parse(const void *body, size_t len, cJSON *arr, char *why, size_t whylen)
{
    cJSON *o = cJSON_ParseWithLength(body, len), *v;
    const double imax = 2147483647.0; /* integer columns */

    if (o == NULL) {
        snprintf(why, whylen, "invalid JSON");
        return IAS_ERR;
    }
    if (!cJSON_IsObject(o)) {
        snprintf(why, whylen, "schema: not an object");
        goto fail;
    }
    for (v = o->child; v; v = v->next) {
        bool known = false;
        for (size_t i = 0; i < IAS_ARRAY_LEN(KNOWN) && !known; i++)
            known = v->string && strcmp(v->string, KNOWN[i]) == 0;
        if (!known) {
            snprintf(why, whylen, "schema: unknown property %.64s", v->string ? v->string : "?");
            goto fail;
        }
    }
#define REQUIRE(name, cond)                                                                        \
    do {                                                                                           \
        v = cJSON_GetObjectItemCaseSensitive(o, name);                                             \
        if (v == NULL || !(cond)) {                                                                \
            snprintf(why, whylen, "schema: %s %s", name, v == NULL ? "missing" : "invalid");       \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
    REQUIRE("event_id", cJSON_IsString(v) && acct_is_uuid(v->valuestring));
    REQUIRE("occurred_at", cJSON_IsString(v) && timestamp_ok(v->valuestring));
    REQUIRE("request_id", cJSON_IsString(v) && request_id_ok(v->valuestring));
    REQUIRE("org_id", cJSON_IsString(v) && acct_is_uuid(v->valuestring));
    REQUIRE("user_id", cJSON_IsNull(v) || (cJSON_IsString(v) && acct_is_uuid(v->valuestring)));
    REQUIRE("api_key_id", cJSON_IsNull(v) || (cJSON_IsString(v) && acct_is_uuid(v->valuestring)));
    REQUIRE("model", str_len_in(v, 1, 256));
    REQUIRE("backend", cJSON_IsNull(v) || str_len_in(v, 1, 256));
    REQUIRE("prompt_tokens", is_int_in(v, 0, imax));
    REQUIRE("completion_tokens", is_int_in(v, 0, imax));
    REQUIRE("status", is_int_in(v, 100, 599));
    REQUIRE("ttft_ms", cJSON_IsNull(v) || is_int_in(v, 0, imax));
    REQUIRE("duration_ms", is_int_in(v, 0, imax));
    REQUIRE("stream", cJSON_IsBool(v));
    REQUIRE("aborted", cJSON_IsBool(v));
#undef REQUIRE
    cJSON_AddItemToArray(arr, o);
    return IAS_OK;
fail:
    cJSON_Delete(o);
    return IAS_ERR;
}

/* ---- the batch as column arrays --------------------------------------- */

/* The event fields in APPLY_SQL's parameter order. */
enum col {
    COL_EVENT_ID,
    COL_OCCURRED_AT,
    COL_REQUEST_ID,
    COL_ORG_ID,
    COL_USER_ID,
    COL_API_KEY_ID,
    COL_MODEL,
    COL_BACKEND,
    COL_STATUS,
    COL_PROMPT_TOKENS,
    COL_COMPLETION_TOKENS,
    COL_TTFT_MS,
    COL_DURATION_MS,
    COL_STREAM,
    COL_ABORTED,
    NCOLS
};

static const char *const COL_FIELD[NCOLS] = {
    "event_id",          "occurred_at", "request_id",  "org_id", "user_id",
    "api_key_id",        "model",       "backend",     "status", "prompt_tokens",
    "completion_tokens", "ttft_ms",     "duration_ms", "stream", "aborted",
};

/* A growing text buffer (one array literal). */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    while (b->len + more + 1 > b->cap)
        b->cap = b->cap ? b->cap * 2 : 4096;
    b->p = ias_xrealloc(b->p, b->cap);
}

static void sb_putc(sbuf *b, char c)
{
    sb_reserve(b, 1);
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* One array element: NULL, a number, a boolean, or a double-quoted string with
 * " and \ escaped (array_in's rules; any other byte is taken as it is, and
 * the server still checks the encoding). */
static void sb_elem(sbuf *b, const cJSON *v)
{
    char num[32];
    int n;

    if (v == NULL || cJSON_IsNull(v)) {
        sb_puts(b, "NULL", 4);
    } else if (cJSON_IsBool(v)) {
        sb_putc(b, cJSON_IsTrue(v) ? 't' : 'f');
    } else if (cJSON_IsNumber(v)) {
        /* Validated integers within the integer columns' range. */
        n = snprintf(num, sizeof(num), "%lld", (long long)v->valuedouble);
        sb_puts(b, num, (size_t)n);
    } else {
        const char *s = v->valuestring ? v->valuestring : "";
        sb_putc(b, '"');
        for (; *s; s++) {
            if (*s == '"' || *s == '\\')
                sb_putc(b, '\\');
            sb_putc(b, *s);
        }
        sb_putc(b, '"');
    }
}

/* The batch's fields as array literals, one per column. */
typedef struct cols {
    sbuf c[NCOLS];
    const char *v[NCOLS]; /* parameter values: c[i].p */
} cols;

static void cols_reset(cols *cs)
{
    for (int i = 0; i < NCOLS; i++) {
        cs->c[i].len = 0;
        sb_putc(&cs->c[i], '{');
    }
}

static void cols_add(cols *cs, const cJSON *ev)
{
    for (int i = 0; i < NCOLS; i++) {
        sbuf *b = &cs->c[i];
        if (b->len > 1)
            sb_putc(b, ',');
        sb_elem(b, cJSON_GetObjectItemCaseSensitive(ev, COL_FIELD[i]));
    }
}

static void cols_finish(cols *cs)
{
    for (int i = 0; i < NCOLS; i++) {
        sb_putc(&cs->c[i], '}');
        cs->v[i] = cs->c[i].p;
    }
}

static void cols_free(cols *cs)
{
    for (int i = 0; i < NCOLS; i++)
        free(cs->c[i].p);
}

typedef struct consumer_state {
    acct_ctx *ctx;
    ias_pg *pg;
    cols cols; /* reused from batch to batch */
} consumer_state;

typedef struct apply_arg {
    const char *const *params; /* NCOLS array literals */
    long long inserted, lag_ms;
    PGresult *alerts;
} apply_arg;

/* ---- applying a batch ------------------------------------------------- */

static int apply_tx(ias_pg *pg, void *varg)
{
    apply_arg *a = varg;
    const char *alert_params[3] = {a->params[COL_ORG_ID], a->params[COL_USER_ID],
                                   a->params[COL_OCCURRED_AT]};
    PGresult *res = NULL;
    long long limited = 0;

    if (a->alerts) {
        ias_pg_clear(a->alerts);
        a->alerts = NULL;
    }
    if (ias_pg_exec(pg, DAILY_LOCK_SQL, 0, NULL, NULL) != IAS_OK ||
        ias_pg_exec(pg, APPLY_SQL, NCOLS, a->params, &res) != IAS_OK)
        return IAS_ERR;
    if (ias_pg_value_ll(res, 0, 0, &a->inserted) != IAS_OK ||
        ias_pg_value_ll(res, 0, 2, &a->lag_ms) != IAS_OK) {
        ias_pg_clear(res);
        return IAS_ERR;
    }
    ias_pg_clear(res);
    if (a->inserted == 0)
        return IAS_OK; /* all redeliveries: totals unchanged, no alert can be new */
    if (ias_pg_exec(pg, ALERT_LOCK_SQL, 1, alert_params, &res) != IAS_OK)
        return IAS_ERR;
    if (ias_pg_value_ll(res, 0, 0, &limited) != IAS_OK) {
        ias_pg_clear(res);
        return IAS_ERR;
    }
    ias_pg_clear(res);
    if (limited == 0)
        return IAS_OK; /* no org of the batch has a budget or a user limit */
    return ias_pg_exec(pg, ALERTS_SQL, 3, alert_params, &a->alerts);
}

static bool no_partition(const ias_pg *pg)
{
    return strcmp(ias_pg_last_sqlstate(pg), "23514") == 0 &&
           strstr(ias_pg_last_message(pg), "no partition") != NULL;
}

/* Applies the events in params; IAS_OK, or IAS_ERR with the failure kind in pg. */
static int apply(consumer_state *st, const char *const *params, size_t nevents)
{
    acct_ctx *ctx = st->ctx;
    apply_arg a = {.params = params};
    int rc = ias_pg_tx(st->pg, apply_tx, &a, 3);

    if (rc != IAS_OK && no_partition(st->pg)) {
        /* A very late (or far-future) event: make its month and try again. */
        const char *ensure[1] = {params[COL_OCCURRED_AT]};
        ias_warn(NULL, "usage batch outside the existing partitions: creating them");
        if (ias_pg_exec(st->pg, ENSURE_SQL, 1, ensure, NULL) == IAS_OK)
            rc = ias_pg_tx(st->pg, apply_tx, &a, 3);
    }
    if (rc != IAS_OK) {
        if (a.alerts)
            ias_pg_clear(a.alerts);
        return IAS_ERR;
    }
    ias_counter_add(ctx->m_events, (uint64_t)a.inserted);
    ias_counter_add(ctx->m_duplicates, (uint64_t)nevents - (uint64_t)a.inserted);
    ias_histogram_observe(ctx->m_batch, (double)nevents);
    if (a.inserted > 0)
        ias_gauge_set(ctx->m_lag_ms, a.lag_ms);
    for (int i = 0; a.alerts && i < ias_pg_nrows(a.alerts); i++) {
        const char *user = ias_pg_value(a.alerts, i, 1);
        ias_counter_inc(ctx->m_alerts);
        ias_info(NULL, "budget alert: org %s%s%s month %s crossed %s%% (%s of %s tokens)",
                 ias_pg_value(a.alerts, i, 0), user[0] ? " user " : "", user,
                 ias_pg_value(a.alerts, i, 2), ias_pg_value(a.alerts, i, 3),
                 ias_pg_value(a.alerts, i, 4), ias_pg_value(a.alerts, i, 5));
    }
    if (a.alerts)
        ias_pg_clear(a.alerts);
    return IAS_OK;
}

/* A failure that is a property of the data (SQLSTATE class 22 data exception,
 * 23 integrity violation) rather than of the database's state. */
static bool data_error(const ias_pg *pg)
{
    const char *st = ias_pg_last_sqlstate(pg);
    return ias_pg_last_error(pg) == IAS_PG_ERR_OTHER &&
           (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0);
}

static ias_consume_result failure_result(const ias_pg *pg, char *reason, size_t len)
{
    snprintf(reason, len, "postgres (%s %s): %.200s", ias_pg_errkind_name(ias_pg_last_error(pg)),
             ias_pg_last_sqlstate(pg), ias_pg_last_message(pg));
    /* Only an event the database refuses is dead-lettered; an outage, a
     * timeout or a broken schema is waited out (RETRY), never a loss. */
    return data_error(pg) ? IAS_CONSUME_REJECT : IAS_CONSUME_RETRY;
}

static void on_batch(const ias_amqp_msg *msgs, size_t n, ias_consume_result *results, void *varg)
{
    consumer_state *st = varg;
    cJSON *arr = cJSON_CreateArray();
    size_t *ok = ias_xcalloc(n, sizeof(*ok));
    size_t nok = 0;

    if (arr == NULL)
        ias_die("out of memory");
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].type[0] && strcmp(msgs[i].type, IAS_EVENT_USAGE_V1) != 0) {
            snprintf(msgs[i].reason, msgs[i].reason_len, "unexpected type %s", msgs[i].type);
            results[i] = IAS_CONSUME_REJECT;
        } else if (acct_event_parse(msgs[i].body, msgs[i].body_len, arr, msgs[i].reason,
                                    msgs[i].reason_len) != IAS_OK) {
            results[i] = IAS_CONSUME_REJECT;
        } else {
            ok[nok++] = i;
            continue;
        }
        ias_counter_inc(st->ctx->m_poison);
    }
    if (nok > 0) {
        const cJSON *ev;
        cols_reset(&st->cols);
        for (ev = arr->child; ev != NULL; ev = ev->next)
            cols_add(&st->cols, ev);
        cols_finish(&st->cols);
        if (apply(st, st->cols.v, nok) == IAS_OK) {
            for (size_t j = 0; j < nok; j++)
                results[ok[j]] = IAS_CONSUME_ACK;
        } else if (nok > 1 && data_error(st->pg)) {
            /* Something in the batch the schema check let through: apply one
             * by one so only the culprit is dead-lettered. */
            size_t j = 0;
            for (ev = arr->child; ev != NULL; ev = ev->next) {
                cols_reset(&st->cols);
                cols_add(&st->cols, ev);
                cols_finish(&st->cols);
                if (apply(st, st->cols.v, 1) == IAS_OK)
                    results[ok[j]] = IAS_CONSUME_ACK;
                else
                    results[ok[j]] =
                        failure_result(st->pg, msgs[ok[j]].reason, msgs[ok[j]].reason_len);
                j++;
            }
        } else {
            for (size_t j = 0; j < nok; j++)
                results[ok[j]] = failure_result(st->pg, msgs[ok[j]].reason, msgs[ok[j]].reason_len);
        }
    }
    cJSON_Delete(arr);
    free(ok);
}

static void *consumer_main(void *varg)
{
    acct_ctx *ctx = varg;
    consumer_state st = {.ctx = ctx, .pg = ias_pg_new(ctx->pg_dsn, 5000)};
    ias_consumer_opts o = {
        .url = ctx->amqp_url,
        .name = "accounting",
        .queue = ctx->queue,
        .prefetch = (uint16_t)ctx->prefetch,
        .batch_handler = on_batch,
        .batch_max = (size_t)ctx->batch_size,
        .batch_wait_ms = 20,
        /* A database outage must never dead-letter usage: retry (5 s apart at
         * most) for as long as any outage could last. */
        .max_attempts = 1000000,
        .arg = &st,
        .stop = &ctx->stop,
    };

    if (st.pg == NULL)
        ias_die("accounting consumer: cannot create the PostgreSQL handle");
    ias_pg_set_application_name(st.pg, "ias-accounting-consumer");
    if (ias_consumer_run(&o) != IAS_OK)
        ias_error(NULL, "accounting consumer: invalid options");
    ias_pg_free(st.pg);
    cols_free(&st.cols);
    return NULL;
}

/* Several threads, each with its own AMQP channel and PostgreSQL connection:
 * one receives while another commits. Batches may then run concurrently; a
 * redelivery is still applied once (processed_events), and the rollup and
 * alert inserts take their row locks in key order, so two batches cannot
 * deadlock (ias_pg_tx retries one if they ever do). */
int acct_consumer_start(acct_ctx *ctx)
{
    for (int i = 0; i < ctx->consumers; i++) {
        if (pthread_create(&ctx->consumer_threads[i], NULL, consumer_main, ctx) != 0)
            return IAS_ERR;
        ctx->consumers_started++;
    }
    return IAS_OK;
}
