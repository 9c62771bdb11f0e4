/* Analytics API under /api/v1/usage: totals and time series (from the daily
 * rollups for whole UTC days already summarised, the hourly ones for the
 * rest), raw events and budget alerts with cursor pagination, JSON or CSV.
 *
 * Scope: a system admin sees everything (org_id optional); an org admin or org
 * user sees their own org only -- asking for another org answers 404, as if it
 * did not exist. Anyone may narrow to one user (user_id=me for oneself). */
#include "accounting.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/log.h"
#include "ias/pg.h"
#include "ias/principal.h"
#include "ias/query.h"

#define DAY_MS (24LL * 3600 * 1000)
#define DEFAULT_RANGE_MS (30 * DAY_MS)
#define MAX_RANGE_MS (366 * DAY_MS)
#define MAX_POINTS 10000
#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_LIMIT_MAX 1000
#define CSV_LIMIT_MAX 10000

typedef struct scope {
    ias_principal who;
    char org[ACCT_UUID_LEN + 1];  /* "" = every org (system admin only) */
    char user[ACCT_UUID_LEN + 1]; /* "" = every user */
    char from[32], to[32];        /* normalised ISO times */
    int64_t from_ms, to_ms;
    bool csv;
} scope;

/* ---- small helpers ---------------------------------------------------- */

static void bad_param(ias_req *r, const char *fmt, ...) IAS_PRINTF(2, 3);
static void bad_param(ias_req *r, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)ias_reply_problem_typed(r, 400, ACCT_PROBLEM_BASE "invalid-parameter", "%s", msg);
}

static void db_error(ias_req *r, ias_pg *pg)
{
    ias_warn(ias_req_log(r), "usage query failed: %s", ias_pg_last_message(pg));
    (void)ias_reply_problem_typed(r, 503, ACCT_PROBLEM_BASE "unavailable",
                                  "usage data is unavailable, try again");
}

/* A query parameter into buf; false (answered 400) when malformed or too long. */
static bool param(ias_req *r, const char *name, char *buf, size_t len, bool *present)
{
    ias_query_rc rc = ias_query_get(ias_req_query(r), name, buf, len);

    *present = rc == IAS_QUERY_FOUND;
    if (rc == IAS_QUERY_MISSING)
        buf[0] = '\0';
    if (rc == IAS_QUERY_MALFORMED || rc == IAS_QUERY_TOOLONG) {
        bad_param(r, "query parameter %s is malformed or too long", name);
        return false;
    }
    return true;
}

/* Common parameters: auth, org_id, user_id, from, to, format. */
static int scope_parse(ias_req *r, acct_ctx *ctx, scope *sc)
{
    char org[64], user[64], from[40], to[40], fmt[16];
    bool has_org, has_user, has_from, has_to, has_fmt;
    int64_t from_ms, to_ms;

    memset(sc, 0, sizeof(*sc));
    if (ias_principal_require(r, ctx->jwt_secret, ctx->jwt_secret_len, &sc->who) != IAS_OK)
        return IAS_ERR;
    if (!param(r, "org_id", org, sizeof(org), &has_org) ||
        !param(r, "user_id", user, sizeof(user), &has_user) ||
        !param(r, "from", from, sizeof(from), &has_from) ||
        !param(r, "to", to, sizeof(to), &has_to) || !param(r, "format", fmt, sizeof(fmt), &has_fmt))
        return IAS_ERR;
    if (has_org && !acct_is_uuid(org)) {
        bad_param(r, "org_id must be a lower-case UUID");
        return IAS_ERR;
    }
    if (has_user && strcmp(user, "me") == 0)
        (void)ias_strlcpy(user, sc->who.user_id, sizeof(user));
    if (has_user && !acct_is_uuid(user)) {
        bad_param(r, "user_id must be a lower-case UUID or \"me\"");
        return IAS_ERR;
    }
    if (ias_principal_is_system_admin(&sc->who)) {
        if (has_org)
            (void)ias_strlcpy(sc->org, org, sizeof(sc->org));
    } else if (strcmp(sc->who.role, IAS_ROLE_ORG_ADMIN) == 0 ||
               strcmp(sc->who.role, IAS_ROLE_ORG_USER) == 0) {
        if (!acct_is_uuid(sc->who.org_id)) {
            (void)ias_reply_problem_typed(r, 403, ACCT_PROBLEM_BASE "forbidden",
                                          "the token carries no organisation");
            return IAS_ERR;
        }
        /* Another tenant's data does not exist for this caller. */
        if (has_org && strcmp(org, sc->who.org_id) != 0) {
            (void)ias_reply_problem_typed(r, 404, ACCT_PROBLEM_BASE "not-found",
                                          "organisation not found");
            return IAS_ERR;
        }
        (void)ias_strlcpy(sc->org, sc->who.org_id, sizeof(sc->org));
    } else {
        (void)ias_reply_problem_typed(r, 403, ACCT_PROBLEM_BASE "forbidden",
                                      "role %s may not read usage", sc->who.role);
        return IAS_ERR;
    }
    if (has_user)
        (void)ias_strlcpy(sc->user, user, sizeof(sc->user));

    to_ms = acct_now_ms(ctx);
    if (has_to && acct_parse_iso(to, &to_ms) != IAS_OK) {
        bad_param(r, "to must be an ISO 8601 UTC time (2026-11-22T10:00:00Z) or a date");
        return IAS_ERR;
    }
    from_ms = to_ms - DEFAULT_RANGE_MS;
    if (has_from && acct_parse_iso(from, &from_ms) != IAS_OK) {
        bad_param(r, "from must be an ISO 8601 UTC time (2026-11-22T10:00:00Z) or a date");
        return IAS_ERR;
    }
    if (from_ms >= to_ms || to_ms - from_ms > MAX_RANGE_MS) {
        bad_param(r, "from must be before to, at most 366 days apart");
        return IAS_ERR;
    }
    sc->from_ms = from_ms;
    sc->to_ms = to_ms;
    ias_iso8601_ms(from_ms, sc->from, sizeof(sc->from));
    ias_iso8601_ms(to_ms, sc->to, sizeof(sc->to));
    if (has_fmt && strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) {
        bad_param(r, "format must be json or csv");
        return IAS_ERR;
    }
    sc->csv = has_fmt && strcmp(fmt, "csv") == 0;
    return IAS_OK;
}

typedef enum group { GROUP_NONE, GROUP_MODEL, GROUP_USER, GROUP_KEY } group;

static const char *const GROUP_NAME[] = {"none", "model", "user", "key"};
/* The rollup column of each group (whitelisted SQL). Groups are formed on the
 * column itself and turned into text once per group, not once per row. */
static const char *const GROUP_COL[] = {"NULL::text", "model", "user_id", "api_key_id"};

/* group_by: none (default), model, user, key. */
static int group_parse(ias_req *r, group *g)
{
    char v[16];
    bool has;

    if (!param(r, "group_by", v, sizeof(v), &has))
        return IAS_ERR;
    for (size_t i = 0; i < IAS_ARRAY_LEN(GROUP_NAME); i++) {
        if (strcmp(has ? v : "none", GROUP_NAME[i]) == 0) {
            *g = (group)i;
            return IAS_OK;
        }
    }
    bad_param(r, "group_by must be none, model, user or key");
    return IAS_ERR;
}

static const char *nz(const char *s)
{
    return (s && s[0]) ? s : NULL;
}

/* ---- output ----------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = ias_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* One CSV field (RFC 4180: quoted when it holds a comma, quote or newline). */
static void csv_field(sbuf *b, const char *v, bool last)
{
    if (v == NULL)
        v = "";
    if (strpbrk(v, ",\"\r\n") != NULL) {
        sb_put(b, "\"", 1);
        for (const char *p = v; *p; p++) {
            if (*p == '"')
                sb_put(b, "\"", 1);
            sb_put(b, p, 1);
        }
        sb_put(b, "\"", 1);
    } else {
        sb_put(b, v, strlen(v));
    }
    sb_put(b, last ? "\r\n" : ",", last ? 2 : 1);
}

/* A result as CSV with the given header (one column per result column). */
static void reply_csv(ias_req *r, const PGresult *res, int nrows, const char *const *cols,
                      int ncols, const char *filename)
{
    sbuf b = {0};
    char cd[128];

    for (int c = 0; c < ncols; c++)
        csv_field(&b, cols[c], c == ncols - 1);
    for (int i = 0; i < nrows; i++)
        for (int c = 0; c < ncols; c++)
            csv_field(&b, ias_pg_value(res, i, c), c == ncols - 1);
    snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", filename);
    (void)ias_reply_header(r, "Content-Disposition", cd);
    (void)ias_reply(r, 200, "text/csv; charset=utf-8", b.p ? b.p : "", b.len);
    free(b.p);
}

/* Adds column c of row i to o as: raw number (integers), string, or null. */
static void add_num(cJSON *o, const char *name, const PGresult *res, int i, int c)
{
    const char *v = ias_pg_value(res, i, c);
    cJSON_AddItemToObject(o, name, v ? cJSON_CreateRaw(v) : cJSON_CreateNull());
}

static void add_str(cJSON *o, const char *name, const char *v)
{
    cJSON_AddItemToObject(o, name, v ? cJSON_CreateString(v) : cJSON_CreateNull());
}

static void add_bool(cJSON *o, const char *name, const PGresult *res, int i, int c)
{
    const char *v = ias_pg_value(res, i, c);
    cJSON_AddItemToObject(o, name, v ? cJSON_CreateBool(v[0] == 't') : cJSON_CreateNull());
}

static cJSON *scope_json(const scope *sc)
{
    cJSON *o = cJSON_CreateObject();

    add_str(o, "org_id", nz(sc->org));
    add_str(o, "user_id", nz(sc->user));
    add_str(o, "from", sc->from);
    add_str(o, "to", sc->to);
    return o;
}

/* Sums in columns first.. first+5: requests, errors, prompt, completion, total, cost. */
static void add_sums(cJSON *o, const PGresult *res, int i, int first)
{
    add_num(o, "requests", res, i, first);
    add_num(o, "errors", res, i, first + 1);
    add_num(o, "prompt_tokens", res, i, first + 2);
    add_num(o, "completion_tokens", res, i, first + 3);
    add_num(o, "total_tokens", res, i, first + 4);
    add_str(o, "cost", ias_pg_value(res, i, first + 5));
}

#define SUMS_SQL                                                                                   \
    "coalesce(sum(requests), 0), coalesce(sum(errors), 0), coalesce(sum(prompt_tokens), 0),"       \
    " coalesce(sum(completion_tokens), 0),"                                                        \
    " coalesce(sum(prompt_tokens + completion_tokens), 0), coalesce(sum(cost), 0)::text"
/* SUMS_SQL with column names, for use inside a subquery. */
#define SUMS_SQL_AS                                                                                \
    "coalesce(sum(requests), 0) AS s1, coalesce(sum(errors), 0) AS s2,"                            \
    " coalesce(sum(prompt_tokens), 0) AS s3, coalesce(sum(completion_tokens), 0) AS s4,"           \
    " coalesce(sum(prompt_tokens + completion_tokens), 0) AS s5,"                                  \
    " coalesce(sum(cost), 0)::text AS s6"
#define ROLLUP_COLS " requests, errors, prompt_tokens, completion_tokens, cost"
/* $3 org, $4 user (NULL = any). */
#define ORG_SQL " AND ($3::uuid IS NULL OR org_id = $3::uuid)"
#define USER_SQL " AND ($4::uuid IS NULL OR user_id = $4::uuid)"

/* ---- which rollups a range reads --------------------------------------- */

#define HOUR_MS (3600LL * 1000)

/* a / b rounded down (b > 0), also for times before 1970. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The daily rollup (migration 0011) that holds the sums a request groups by,
 * or NULL. The user and key table has the user too, so it also serves
 * user_id filters, except by model: those read the hourly rollups. */
static const char *daily_table(const scope *sc, group g)
{
    if (g == GROUP_USER || g == GROUP_KEY || (g == GROUP_NONE && sc->user[0]))
        return "usage_rollups_daily_user_key";
    return sc->user[0] ? NULL : "usage_rollups_daily_model";
}

/* The rollup rows of a summary or a time series, as a subquery with the
 * columns [t,] gk, requests, errors, prompt_tokens, completion_tokens, cost:
 * t the start of the interval ("hour" or "day"; none if interval is NULL),
 * gk the group's column.
 *
 * The range is the hours that start inside [date_trunc('hour', from), to):
 * lo <= hour < hi with lo = from rounded down and hi = to rounded up to a whole
 * hour. For summaries and daily series the whole UTC days inside it, dlo <=
 * day < dhi (lo rounded up, hi rounded down to a day), come from the group's
 * daily rollup, one row per day where the hourly rollups have one per hour;
 * the partial days at the ends, lo <= hour < dlo and dhi <= hour < to, from
 * the hourly rollups. The sums are the same. Then $5 and $6 are dlo and dhi
 * (written into dlo and dhi) and *nparams is 6, else 4.
 *
 * Only the days before the watermark (migration 0012: the first day the
 * daily job has not summarised yet, daily.c) are complete in the daily
 * rollups, so the daily part ends at split = max(dlo, min(dhi, watermark))
 * and the hourly rollups answer from split on: today's hours, normally. The
 * watermark is read in the same statement, so with the same snapshot as the
 * rows: a job committing meanwhile changes neither. */
#define SPLIT_SQL                                                                                  \
    "greatest($5::timestamptz, least($6::timestamptz,"                                             \
    " (SELECT w.day::timestamp AT TIME ZONE 'UTC' FROM usage_rollups_daily_watermark w)))"
static char *rollup_rows(const scope *sc, group g, const char *interval, char *dlo, char *dhi,
                         size_t len, int *nparams)
{
#define HOURLY_SQL                                                                                 \
    "SELECT %s %s AS gk," ROLLUP_COLS                                                              \
    " FROM usage_rollups_hourly WHERE hour >= %s AND hour < %s" ORG_SQL USER_SQL
    static const char FROM_HOUR[] = "date_trunc('hour', $1::timestamptz, 'UTC')";
    bool by_day = interval == NULL || strcmp(interval, "day") == 0;
    const char *daily = by_day ? daily_table(sc, g) : NULL;
    const char *gcol = GROUP_COL[g];
    const char *ht = interval == NULL          ? ""
                     : strcmp(interval, "day") ? "date_trunc('hour', hour, 'UTC') AS t,"
                                               : "date_trunc('day', hour, 'UTC') AS t,";
    int64_t lo = floor_div(sc->from_ms, HOUR_MS) * HOUR_MS;
    int64_t hi = floor_div(sc->to_ms + HOUR_MS - 1, HOUR_MS) * HOUR_MS;
    int64_t dlo_ms = floor_div(lo + DAY_MS - 1, DAY_MS) * DAY_MS;
    int64_t dhi_ms = floor_div(hi, DAY_MS) * DAY_MS;
    char *head, *tail, *sql;

    if (daily == NULL || dlo_ms >= dhi_ms) {
        *nparams = 4;
        return ias_xasprintf(HOURLY_SQL, ht, gcol, FROM_HOUR, "$2::timestamptz");
    }
    *nparams = 6;
    ias_iso8601_ms(dlo_ms, dlo, len);
    ias_iso8601_ms(dhi_ms, dhi, len);
    head = ias_xasprintf(HOURLY_SQL, ht, gcol, FROM_HOUR, "$5::timestamptz");
    tail = ias_xasprintf(HOURLY_SQL, ht, gcol, SPLIT_SQL, "$2::timestamptz");
    sql = ias_xasprintf(
        "%s UNION ALL SELECT %s %s AS gk," ROLLUP_COLS " FROM %s"
        " WHERE day >= ($5::timestamptz AT TIME ZONE 'UTC')::date"
        " AND day < (" SPLIT_SQL " AT TIME ZONE 'UTC')::date" ORG_SQL "%s UNION ALL %s",
        head, interval ? "(day::timestamp AT TIME ZONE 'UTC') AS t," : "", gcol, daily,
        strcmp(daily, "usage_rollups_daily_user_key") == 0 ? USER_SQL : "", tail);
    free(head);
    free(tail);
    return sql;
#undef HOURLY_SQL
}

/* ---- GET /api/v1/usage/summary ----------------------------------------- */

void acct_handle_summary(ias_req *r, void *vctx)
{
    acct_ctx *ctx = vctx;
    ias_pg *pg = acct_worker_pg(r);
    const char *params[6];
    char dlo[32] = "", dhi[32] = "";
    group g;
    scope sc;
    PGresult *res = NULL;
    char *rows, *sql;
    cJSON *out, *groups;
    int rc, ngroups, nparams;

    if (scope_parse(r, ctx, &sc) != IAS_OK || group_parse(r, &g) != IAS_OK)
        return;
    params[0] = sc.from;
    params[1] = sc.to;
    params[2] = nz(sc.org);
    params[3] = nz(sc.user);
    params[4] = dlo;
    params[5] = dhi;
    rows = rollup_rows(&sc, g, NULL, dlo, dhi, sizeof(dlo), &nparams);
    /* One scan for the groups and the totals: the empty grouping set is the
     * totals row (grouping flag 1), sorted after every group; it is there
     * even when no row matches. */
    sql = ias_xasprintf("SELECT gk::text, " SUMS_SQL ", GROUPING(gk) AS t FROM (%s) r"
                        " GROUP BY GROUPING SETS ((gk), ()) ORDER BY t, 1 NULLS FIRST LIMIT %d",
                        rows, MAX_POINTS + 2);
    free(rows);
    rc = ias_pg_exec(pg, sql, nparams, params, &res);
    free(sql);
    if (rc != IAS_OK) {
        db_error(r, pg);
        return;
    }
    ngroups = ias_pg_nrows(res) - 1;
    if (ngroups < 0 || strcmp(ias_pg_value(res, ngroups, 7), "1") != 0 || ngroups > MAX_POINTS) {
        bad_param(r, "more than %d groups: narrow the range or the scope", MAX_POINTS);
    } else if (sc.csv) {
        static const char *const cols[] = {"group",         "requests",          "errors",
                                           "prompt_tokens", "completion_tokens", "total_tokens",
                                           "cost"};
        reply_csv(r, res, ngroups, cols, IAS_ARRAY_LEN(cols), "usage-summary.csv");
    } else {
        out = scope_json(&sc);
        add_str(out, "group_by", GROUP_NAME[g]);
        {
            cJSON *t = cJSON_AddObjectToObject(out, "totals");
            add_sums(t, res, ngroups, 1);
        }
        groups = cJSON_AddArrayToObject(out, "groups");
        for (int i = 0; g != GROUP_NONE && i < ngroups; i++) {
            cJSON *o = cJSON_CreateObject();
            add_str(o, "key", ias_pg_value(res, i, 0));
            add_sums(o, res, i, 1);
            cJSON_AddItemToArray(groups, o);
        }
        (void)ias_reply_json(r, 200, out);
        cJSON_Delete(out);
    }
    ias_pg_clear(res);
}

/* ---- GET /api/v1/usage/timeseries -------------------------------------- */

void acct_handle_timeseries(ias_req *r, void *vctx)
{
    acct_ctx *ctx = vctx;
    ias_pg *pg = acct_worker_pg(r);
    const char *params[6];
    char interval[8], dlo[32] = "", dhi[32] = "";
    bool has_interval;
    group g;
    scope sc;
    PGresult *res = NULL;
    char *rows, *sql;
    int rc, nparams;

    if (scope_parse(r, ctx, &sc) != IAS_OK || group_parse(r, &g) != IAS_OK ||
        !param(r, "interval", interval, sizeof(interval), &has_interval))
        return;
    if (!has_interval)
        (void)ias_strlcpy(interval, "day", sizeof(interval));
    if (strcmp(interval, "day") != 0 && strcmp(interval, "hour") != 0) {
        bad_param(r, "interval must be hour or day");
        return;
    }
    params[0] = sc.from;
    params[1] = sc.to;
    params[2] = nz(sc.org);
    params[3] = nz(sc.user);
    params[4] = dlo;
    params[5] = dhi;
    rows = rollup_rows(&sc, g, interval, dlo, dhi, sizeof(dlo), &nparams);
    /* Group on the interval's start and the group's column, and format only
     * the grouped rows: to_char (or a uuid's text) per input row cost more
     * than the aggregation itself. */
    sql = ias_xasprintf("SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
                        " gk::text, s1, s2, s3, s4, s5, s6 FROM (SELECT t, gk, " SUMS_SQL_AS
                        " FROM (%s) r GROUP BY 1, 2) b ORDER BY t, 2 NULLS FIRST LIMIT %d",
                        rows, MAX_POINTS + 1);
    free(rows);
    rc = ias_pg_exec(pg, sql, nparams, params, &res);
    free(sql);
    if (rc != IAS_OK) {
        db_error(r, pg);
        return;
    }
    if (ias_pg_nrows(res) > MAX_POINTS) {
        bad_param(r, "more than %d points: narrow the range, use interval=day or fewer groups",
                  MAX_POINTS);
    } else if (sc.csv) {
        static const char *const cols[] = {"time",         "group",         "requests",
                                           "errors",       "prompt_tokens", "completion_tokens",
                                           "total_tokens", "cost"};
        reply_csv(r, res, ias_pg_nrows(res), cols, IAS_ARRAY_LEN(cols), "usage-timeseries.csv");
    } else {
        cJSON *out = scope_json(&sc), *points;
        add_str(out, "interval", interval);
        add_str(out, "group_by", GROUP_NAME[g]);
        points = cJSON_AddArrayToObject(out, "points");
        for (int i = 0; i < ias_pg_nrows(res); i++) {
            cJSON *p = cJSON_CreateObject();
            add_str(p, "time", ias_pg_value(res, i, 0));
            if (g != GROUP_NONE)
                add_str(p, "key", ias_pg_value(res, i, 1));
            add_sums(p, res, i, 2);
            cJSON_AddItemToArray(points, p);
        }
        (void)ias_reply_json(r, 200, out);
        cJSON_Delete(out);
    }
    ias_pg_clear(res);
}

/* ---- cursors: "<microseconds since epoch>.<uuid>" ----------------------- */

static int cursor_parse(ias_req *r, char *us, size_t uslen, char *id, size_t idlen, bool *has)
{
    char cur[80];
    const char *dot;

    if (!param(r, "cursor", cur, sizeof(cur), has))
        return IAS_ERR;
    if (!*has)
        return IAS_OK;
    dot = strchr(cur, '.');
    if (dot == NULL || dot == cur || (size_t)(dot - cur) >= uslen || (dot - cur) > 19 ||
        !acct_is_uuid(dot + 1)) {
        bad_param(r, "cursor is not one this API returned");
        return IAS_ERR;
    }
    for (const char *p = cur; p < dot; p++) {
        if (*p < '0' || *p > '9') {
            bad_param(r, "cursor is not one this API returned");
            return IAS_ERR;
        }
    }
    memcpy(us, cur, (size_t)(dot - cur));
    us[dot - cur] = '\0';
    (void)ias_strlcpy(id, dot + 1, idlen);
    return IAS_OK;
}

static int limit_parse(ias_req *r, bool csv, long long *limit)
{
    long long max = csv ? CSV_LIMIT_MAX : EVENTS_LIMIT_MAX;
    ias_query_rc rc;

    *limit = EVENTS_LIMIT_DEFAULT;
    rc = ias_query_get_ll(ias_req_query(r), "limit", 1, max, limit);
    if (rc == IAS_QUERY_MALFORMED || rc == IAS_QUERY_TOOLONG) {
        bad_param(r, "limit must be an integer in 1..%lld", max);
        return IAS_ERR;
    }
    return IAS_OK;
}

/* ---- GET /api/v1/usage/events ------------------------------------------ */

/* Newest first, keyset on (created_at, event_id), partitions pruned by the
 * range. An org's page is a backward scan of (org_id, created_at, event_id);
 * a user's page an index-only backward scan of (org_id, user_id, created_at,
 * event_id) INCLUDE (every other column), migration 0011: without it each of
 * the user's events cost a heap page of its own, cold for most users. */

static const char EVENTS_SQL[] =
    "SELECT event_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), request_id,"
    " org_id, user_id, api_key_id, model, backend, status, prompt_tokens, completion_tokens,"
    " prompt_tokens + completion_tokens, cost::text, ttft_ms, duration_ms, stream, aborted,"
    " (extract(epoch FROM created_at) * 1000000)::bigint"
    " FROM usage_events"
    " WHERE created_at >= $1::timestamptz AND created_at < $2::timestamptz"
    " AND ($3::uuid IS NULL OR org_id = $3::uuid) AND ($4::uuid IS NULL OR user_id = $4::uuid)"
    " AND ($5::bigint IS NULL OR (created_at, event_id) <"
    "      ('epoch'::timestamptz + $5::bigint * interval '1 microsecond', $6::uuid))"
    " ORDER BY created_at DESC, event_id DESC LIMIT $7::integer";

void acct_handle_events(ias_req *r, void *vctx)
{
    acct_ctx *ctx = vctx;
    ias_pg *pg = acct_worker_pg(r);
    char us[24] = "", id[ACCT_UUID_LEN + 1] = "", lim[24], next[80] = "";
    const char *params[7];
    bool has_cursor;
    long long limit;
    scope sc;
    PGresult *res = NULL;
    int n;

    if (scope_parse(r, ctx, &sc) != IAS_OK ||
        cursor_parse(r, us, sizeof(us), id, sizeof(id), &has_cursor) != IAS_OK ||
        limit_parse(r, sc.csv, &limit) != IAS_OK)
        return;
    snprintf(lim, sizeof(lim), "%lld", limit + 1);
    params[0] = sc.from;
    params[1] = sc.to;
    params[2] = nz(sc.org);
    params[3] = nz(sc.user);
    params[4] = has_cursor ? us : NULL;
    params[5] = has_cursor ? id : NULL;
    params[6] = lim;
    if (ias_pg_exec(pg, EVENTS_SQL, 7, params, &res) != IAS_OK) {
        db_error(r, pg);
        return;
    }
    n = ias_pg_nrows(res);
    if (n > limit) {
        n = (int)limit;
        snprintf(next, sizeof(next), "%s.%s", ias_pg_value(res, n - 1, 18),
                 ias_pg_value(res, n - 1, 0));
    }
    if (sc.csv) {
        static const char *const cols[] = {"event_id",     "occurred_at",   "received_at",
                                           "request_id",   "org_id",        "user_id",
                                           "api_key_id",   "model",         "backend",
                                           "status",       "prompt_tokens", "completion_tokens",
                                           "total_tokens", "cost",          "ttft_ms",
                                           "duration_ms",  "stream",        "aborted"};
        if (next[0])
            (void)ias_reply_header(r, "X-Next-Cursor", next);
        reply_csv(r, res, n, cols, IAS_ARRAY_LEN(cols), "usage-events.csv");
    } else {
        cJSON *out = scope_json(&sc), *data = cJSON_AddArrayToObject(out, "data");
        for (int i = 0; i < n; i++) {
            cJSON *e = cJSON_CreateObject();
            add_str(e, "event_id", ias_pg_value(res, i, 0));
            add_str(e, "occurred_at", ias_pg_value(res, i, 1));
            add_str(e, "received_at", ias_pg_value(res, i, 2));
            add_str(e, "request_id", ias_pg_value(res, i, 3));
            add_str(e, "org_id", ias_pg_value(res, i, 4));
            add_str(e, "user_id", ias_pg_value(res, i, 5));
            add_str(e, "api_key_id", ias_pg_value(res, i, 6));
            add_str(e, "model", ias_pg_value(res, i, 7));
            add_str(e, "backend", ias_pg_value(res, i, 8));
            add_num(e, "status", res, i, 9);
            add_num(e, "prompt_tokens", res, i, 10);
            add_num(e, "completion_tokens", res, i, 11);
            add_num(e, "total_tokens", res, i, 12);
            add_str(e, "cost", ias_pg_value(res, i, 13));
            add_num(e, "ttft_ms", res, i, 14);
            add_num(e, "duration_ms", res, i, 15);
            add_bool(e, "stream", res, i, 16);
            add_bool(e, "aborted", res, i, 17);
            cJSON_AddItemToArray(data, e);
        }
        add_str(out, "next_cursor", nz(next));
        (void)ias_reply_json(r, 200, out);
        cJSON_Delete(out);
    }
    ias_pg_clear(res);
}

/* ---- GET /api/v1/usage/alerts ------------------------------------------ */

static const char ALERTS_SQL[] =
    "SELECT id, org_id, user_id, to_char(month, 'YYYY-MM'), threshold, limit_tokens, used_tokens,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " (extract(epoch FROM created_at) * 1000000)::bigint"
    " FROM budget_alerts"
    " WHERE ($1::uuid IS NULL OR org_id = $1::uuid) AND ($2::uuid IS NULL OR user_id = $2::uuid)"
    " AND ($3::date IS NULL OR month = $3::date)"
    " AND ($4::bigint IS NULL OR (created_at, id) <"
    "      ('epoch'::timestamptz + $4::bigint * interval '1 microsecond', $5::uuid))"
    " ORDER BY created_at DESC, id DESC LIMIT $6::integer";

void acct_handle_alerts(ias_req *r, void *vctx)
{
    acct_ctx *ctx = vctx;
    ias_pg *pg = acct_worker_pg(r);
    char us[24] = "", id[ACCT_UUID_LEN + 1] = "", lim[24], next[80] = "", month[16], day[16];
    const char *params[6];
    bool has_cursor, has_month;
    long long limit;
    scope sc;
    PGresult *res = NULL;
    cJSON *out, *data;
    int64_t ms;
    int n;

    if (scope_parse(r, ctx, &sc) != IAS_OK ||
        cursor_parse(r, us, sizeof(us), id, sizeof(id), &has_cursor) != IAS_OK ||
        limit_parse(r, false, &limit) != IAS_OK ||
        !param(r, "month", month, sizeof(month), &has_month))
        return;
    snprintf(day, sizeof(day), "%.7s-01", month);
    if (has_month && (strlen(month) != 7 || acct_parse_iso(day, &ms) != IAS_OK)) {
        bad_param(r, "month must be YYYY-MM");
        return;
    }
    snprintf(lim, sizeof(lim), "%lld", limit + 1);
    params[0] = nz(sc.org);
    params[1] = nz(sc.user);
    params[2] = has_month ? day : NULL;
    params[3] = has_cursor ? us : NULL;
    params[4] = has_cursor ? id : NULL;
    params[5] = lim;
    if (ias_pg_exec(pg, ALERTS_SQL, 6, params, &res) != IAS_OK) {
        db_error(r, pg);
        return;
    }
    n = ias_pg_nrows(res);
    if (n > limit) {
        n = (int)limit;
        snprintf(next, sizeof(next), "%s.%s", ias_pg_value(res, n - 1, 8),
                 ias_pg_value(res, n - 1, 0));
    }
    out = cJSON_CreateObject();
    data = cJSON_AddArrayToObject(out, "data");
    for (int i = 0; i < n; i++) {
        cJSON *a = cJSON_CreateObject();
        add_str(a, "id", ias_pg_value(res, i, 0));
        add_str(a, "org_id", ias_pg_value(res, i, 1));
        add_str(a, "user_id", ias_pg_value(res, i, 2));
        add_str(a, "scope", ias_pg_is_null(res, i, 2) ? "org" : "user");
        add_str(a, "month", ias_pg_value(res, i, 3));
        add_num(a, "threshold", res, i, 4);
        add_num(a, "limit_tokens", res, i, 5);
        add_num(a, "used_tokens", res, i, 6);
        add_str(a, "created_at", ias_pg_value(res, i, 7));
        cJSON_AddItemToArray(data, a);
    }
    add_str(out, "next_cursor", nz(next));
    (void)ias_reply_json(r, 200, out);
    cJSON_Delete(out);
    ias_pg_clear(res);
}
