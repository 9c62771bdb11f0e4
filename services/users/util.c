/* Shared handler plumbing: body validation, RFC 7807 problems, scoped
 * transactions for row-level security, cursor pagination. */
#include "users.h"

#include "ias/crypto.h"
#include "ias/log.h"
#include "ias/query.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int users_problem(ias_req *r, int status, const char *slug, const char *fmt, ...)
{
    char detail[512], type[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    snprintf(type, sizeof(type), USERS_PROBLEM "%s", slug);
    return ias_reply_problem_typed(r, status, type, "%s", detail);
}

int users_reply_json(ias_req *r, int status, cJSON *json)
{
    int rc = ias_reply_json(r, status, json);
    cJSON_Delete(json);
    return rc;
}

int users_reply_raw(ias_req *r, int status, const char *json)
{
    return ias_reply_json_str(r, status, json);
}

static void save_err(users_worker *w)
{
    w->err_kind = ias_pg_last_error(w->pg);
    (void)ias_strlcpy(w->err_state, ias_pg_last_sqlstate(w->pg), sizeof(w->err_state));
    (void)ias_strlcpy(w->err_constraint, ias_pg_last_constraint(w->pg), sizeof(w->err_constraint));
    (void)ias_strlcpy(w->err_msg, ias_pg_last_message(w->pg), sizeof(w->err_msg));
}

int users_internal_error(ias_req *r, users_worker *w, const char *what)
{
    ias_error(ias_req_log(r), "%s: %s", what, w ? w->err_msg : "");
    return users_problem(r, 500, "internal", "internal error");
}

int users_db_error(ias_req *r, users_worker *w, const char *what)
{
    const char *state = w->err_state;

    switch (w->err_kind) {
    case IAS_PG_ERR_UNIQUE:
        return users_problem(r, 409, "conflict", "%s: already exists (%s)", what,
                             w->err_constraint);
    case IAS_PG_ERR_CONN:
        ias_warn(ias_req_log(r), "%s: %s", what, w->err_msg);
        return users_problem(r, 503, "unavailable", "database unavailable");
    default:
        break;
    }
    /* 23xxx: integrity (check, foreign key, not null); 22xxx: bad data. */
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0) {
        const char *c = w->err_constraint;
        return users_problem(r, 400, "validation", "%s: invalid value%s%s", what, c[0] ? ": " : "",
                             c);
    }
    return users_internal_error(r, w, what);
}

int users_q(users_worker *w, PGresult **out, const char *sql, int n, const char *const *vals)
{
    if (ias_pg_exec(w->pg, sql, n, vals, out) != IAS_OK) {
        save_err(w);
        return IAS_ERR;
    }
    return IAS_OK;
}

/* BEGIN, then one statement of set_config(..., true) calls, whose $1 is the scope. */
static int tx_begin_with(users_worker *w, const char *settings_sql, const char *org_scope)
{
    const char *v[1] = {org_scope};

    if (ias_pg_begin(w->pg) != IAS_OK) {
        save_err(w);
        return IAS_ERR;
    }
    if (ias_pg_exec(w->pg, settings_sql, 1, v, NULL) != IAS_OK) {
        save_err(w);
        ias_pg_rollback(w->pg);
        return IAS_ERR;
    }
    return IAS_OK;
}

int users_tx_begin(users_worker *w, const char *org_scope)
{
    /* Local to this transaction: the RLS policies compare org_id with it. */
    return tx_begin_with(w, "SELECT set_config('ias.org_id', $1, true)", org_scope);
}

int users_tx_begin_page(users_worker *w, const char *org_scope)
{
    /* A page of 50 keys from an org of thousands whose keys were created after
     * the last ANALYZE: the planner expects ~20 rows, prefers a bitmap scan of
     * every row of the org plus a top-N sort (O(org) per page, several ms),
     * over the ordered index scan that stops at the LIMIT. Without bitmap scans
     * the ordered index scan is always the cheapest plan for a keyset page on a
     * (..., created_at, id) index; where no index gives the order (a system
     * admin listing every org's keys) nothing changes. Same round trip. */
    return tx_begin_with(w,
                         "SELECT set_config('ias.org_id', $1, true), "
                         "set_config('enable_bitmapscan', 'off', true)",
                         org_scope);
}

int users_tx_commit(users_worker *w)
{
    if (ias_pg_commit(w->pg) != IAS_OK) {
        save_err(w);
        return IAS_ERR;
    }
    return IAS_OK;
}

void users_tx_rollback(users_worker *w)
{
    if (ias_pg_in_tx(w->pg))
        (void)ias_pg_rollback(w->pg);
}

const char *users_scope(const ias_principal *p)
{
    return ias_principal_is_system_admin(p) ? "*" : p->org_id;
}

bool users_valid_uuid(const char *s)
{
    return s && strlen(s) == IAS_UUID_STR_LEN && ias_uuid_valid(s);
}

const char *users_json_str(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static bool decimal_ok(const char *s)
{
    size_t digits = 0, frac = 0;
    bool dot = false;

    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s == '.' && !dot) {
            dot = true;
        } else if (*s >= '0' && *s <= '9') {
            if (dot)
                frac++;
            else
                digits++;
        } else {
            return false;
        }
    }
    return digits > 0 && digits <= 6 && frac <= 6;
}

static bool time_ok(const char *s)
{
    /* 2026-11-22T10:11:12[.frac]Z or with +hh:mm; PostgreSQL does the rest. */
    size_t n = strlen(s);
    return n >= 20 && n <= 40 && s[4] == '-' && s[7] == '-' && s[10] == 'T';
}

static const char *type_name(users_field_type t)
{
    switch (t) {
    case UF_STR:
        return "a string";
    case UF_INT:
        return "an integer";
    case UF_BOOL:
        return "a boolean";
    case UF_STR_ARRAY:
        return "an array of strings";
    case UF_INT_ARRAY:
        return "an array of integers";
    case UF_DECIMAL:
        return "a non-negative decimal string with at most 6 decimals";
    case UF_TIME:
        return "an ISO 8601 date-time string";
    case UF_OBJ_ARRAY:
        return "an array of objects";
    }
    return "?";
}

static bool field_ok(const cJSON *it, const users_field *f)
{
    size_t max = f->max_len;
    const cJSON *e;

    switch (f->type) {
    case UF_STR:
        return cJSON_IsString(it) && strlen(it->valuestring) <= (max ? max : 256);
    case UF_INT:
        /* cJSON keeps numbers as double: exact up to 2^53. */
        return cJSON_IsNumber(it) && it->valuedouble == (double)(long long)it->valuedouble &&
               it->valuedouble >= -9007199254740992.0 && it->valuedouble <= 9007199254740992.0;
    case UF_BOOL:
        return cJSON_IsBool(it);
    case UF_DECIMAL:
        if (cJSON_IsNumber(it))
            return it->valuedouble >= 0 && it->valuedouble < 1e6;
        return cJSON_IsString(it) && decimal_ok(it->valuestring);
    case UF_TIME:
        return cJSON_IsString(it) && time_ok(it->valuestring);
    case UF_STR_ARRAY:
    case UF_INT_ARRAY:
    case UF_OBJ_ARRAY:
        if (!cJSON_IsArray(it) || (size_t)cJSON_GetArraySize(it) > (max ? max : 100))
            return false;
        cJSON_ArrayForEach(e, it)
        {
            if (f->type == UF_STR_ARRAY && !(cJSON_IsString(e) && strlen(e->valuestring) <= 256))
                return false;
            if (f->type == UF_INT_ARRAY &&
                !(cJSON_IsNumber(e) && e->valuedouble == (double)(int)e->valuedouble))
                return false;
            if (f->type == UF_OBJ_ARRAY && !cJSON_IsObject(e))
                return false;
        }
        return true;
    }
    return false;
}

int users_check_obj(ias_req *r, const cJSON *body, const users_field *fields, size_t n,
                    const char *where)
{
    const cJSON *it;

    if (!cJSON_IsObject(body)) {
        users_problem(r, 400, "validation", "%s must be an object", where);
        return IAS_ERR;
    }
    cJSON_ArrayForEach(it, body)
    {
        size_t i;
        for (i = 0; i < n; i++)
            if (strcmp(it->string, fields[i].name) == 0)
                break;
        if (i == n) {
            users_problem(r, 400, "validation", "unknown field '%s%.64s'", where, it->string);
            return IAS_ERR;
        }
        if (cJSON_IsNull(it)) {
            if (!fields[i].nullable) {
                users_problem(r, 400, "validation", "field '%s%s' must be %s", where,
                              fields[i].name, type_name(fields[i].type));
                return IAS_ERR;
            }
            continue;
        }
        if (!field_ok(it, &fields[i])) {
            users_problem(r, 400, "validation", "field '%s%s' must be %s%s", where, fields[i].name,
                          type_name(fields[i].type),
                          fields[i].type == UF_STR || fields[i].type == UF_STR_ARRAY
                              ? " (within the length limit)"
                              : "");
            return IAS_ERR;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].required && cJSON_GetObjectItemCaseSensitive(body, fields[i].name) == NULL) {
            users_problem(r, 400, "validation", "field '%s%s' is required", where, fields[i].name);
            return IAS_ERR;
        }
    }
    return IAS_OK;
}

const char *users_org_access(ias_req *r, void *arg, const char *perm, ias_principal *p)
{
    const char *org;

    if (users_authenticate(r, p) != IAS_OK || (org = users_org_param(r)) == NULL ||
        users_authorize(arg, r, p, perm, org) != IAS_OK)
        return NULL;
    return org;
}

int users_lock_row(ias_req *r, users_worker *w, const ias_principal *p, const char *sql,
                   const char *what, PGresult **res)
{
    const char *id = users_org_param(r);
    const char *v[1];

    *res = NULL;
    if (id == NULL)
        return IAS_ERR;
    v[0] = id;
    if (users_tx_begin(w, users_scope(p)) != IAS_OK || users_q(w, res, sql, 1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, what);
        return IAS_ERR;
    }
    if (ias_pg_nrows(*res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(*res);
        *res = NULL;
        users_problem(r, 404, "not-found", "not found");
        return IAS_ERR;
    }
    return IAS_OK;
}

cJSON *users_body(ias_req *r, const users_field *fields, size_t n)
{
    cJSON *body = ias_req_json(r);

    if (body == NULL || users_check_obj(r, body, fields, n, "") != IAS_OK)
        return NULL;
    return body;
}

/* ---- parameter lists ---- */

void users_params_add(users_params *p, const char *v)
{
    if (p->n >= USERS_PARAMS_MAX)
        ias_die("users: too many query parameters");
    p->v[p->n++] = v;
}

void users_params_json(users_params *p, const cJSON *it)
{
    char *owned = NULL;

    if (it == NULL || cJSON_IsNull(it)) {
        users_params_add(p, NULL);
        return;
    }
    if (cJSON_IsString(it)) {
        users_params_add(p, it->valuestring);
        return;
    }
    if (cJSON_IsBool(it)) {
        users_params_add(p, cJSON_IsTrue(it) ? "true" : "false");
        return;
    }
    if (cJSON_IsNumber(it)) {
        char buf[40];
        if (it->valuedouble == (double)(long long)it->valuedouble)
            snprintf(buf, sizeof(buf), "%lld", (long long)it->valuedouble);
        else
            snprintf(buf, sizeof(buf), "%.6f", it->valuedouble);
        owned = ias_xstrdup(buf);
    } else {
        owned = cJSON_PrintUnformatted(it);
        if (owned == NULL)
            ias_die("out of memory");
    }
    p->owned[p->nowned++] = owned;
    users_params_add(p, owned);
}

void users_params_field(users_params *p, const cJSON *body, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(body, name);
    users_params_add(p, it ? "t" : "f");
    users_params_json(p, it);
}

void users_params_free(users_params *p)
{
    for (int i = 0; i < p->nowned; i++)
        free(p->owned[i]);
    p->nowned = 0;
    p->n = 0;
}

int users_page_parse(ias_req *r, users_page *pg)
{
    const char *q = ias_req_query(r);
    long long limit = USERS_PAGE_DEFAULT;
    char cur[IAS_CURSOR_MAX];
    ias_cursor c;

    memset(pg, 0, sizeof(*pg));
    /* Without a cursor: before everything, so one query shape serves both. */
    memcpy(pg->cursor_ts, "-infinity", sizeof("-infinity"));
    memcpy(pg->cursor_id, "00000000-0000-0000-0000-000000000000", IAS_UUID_STR_LEN + 1);
    if (ias_query_get_ll(q, "limit", 1, USERS_PAGE_MAX, &limit) == IAS_QUERY_MALFORMED) {
        users_problem(r, 400, "validation", "query 'limit' must be an integer in 1..%d",
                      USERS_PAGE_MAX);
        return IAS_ERR;
    }
    pg->limit = (int)limit;
    snprintf(pg->limit_s, sizeof(pg->limit_s), "%d", pg->limit + 1);
    switch (ias_query_get(q, "cursor", cur, sizeof(cur))) {
    case IAS_QUERY_MISSING:
        return IAS_OK;
    case IAS_QUERY_FOUND:
        break;
    default:
        goto bad;
    }
    if (ias_cursor_decode(cur, &c) != IAS_OK)
        goto bad;
    _Static_assert(sizeof(pg->cursor_ts) >= sizeof(c.ts) && sizeof(pg->cursor_id) >= sizeof(c.id),
                   "users_page holds an ias_cursor");
    memcpy(pg->cursor_ts, c.ts, sizeof(c.ts));
    memcpy(pg->cursor_id, c.id, sizeof(c.id));
    return IAS_OK;
bad:
    users_problem(r, 400, "validation", "query 'cursor' is not a cursor from this API");
    return IAS_ERR;
}

int users_reply_page(ias_req *r, const users_page *pg, PGresult *res)
{
    int rows = ias_pg_nrows(res), shown = rows > pg->limit ? pg->limit : rows;
    size_t cap = 64, len = 0;
    char *out;

    for (int i = 0; i < shown; i++)
        cap += strlen(ias_pg_value(res, i, 0)) + 1;
    cap += 200;
    out = ias_xmalloc(cap);
    len += (size_t)snprintf(out + len, cap - len, "{\"data\":[");
    for (int i = 0; i < shown; i++)
        len +=
            (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", ias_pg_value(res, i, 0));
    if (rows > pg->limit) {
        char enc[IAS_CURSOR_MAX];
        if (ias_cursor_encode(ias_pg_value(res, shown - 1, 1), ias_pg_value(res, shown - 1, 2), enc,
                              sizeof(enc)) != IAS_OK) {
            free(out);
            return users_problem(r, 500, "internal", "internal error");
        }
        len += (size_t)snprintf(out + len, cap - len, "],\"next_cursor\":\"%s\"}", enc);
    } else {
        len += (size_t)snprintf(out + len, cap - len, "],\"next_cursor\":null}");
    }
    int rc = users_reply_raw(r, 200, out);
    free(out);
    return rc;
}
