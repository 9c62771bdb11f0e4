/* GET /api/v1/audit: the ledger, newest first, filtered and paginated.
 *
 * Who sees what: system admins every entry (optionally one org); org admins
 * only their org's entries (asking for another org is 403); org users get
 * 403 -- an org's audit trail shows what every colleague did, which is an
 * administrator's view. Cursor: the seq of the last entry of the previous page
 * (opaque to clients), entries with a smaller seq follow. */
#include "audit.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ias/log.h"
#include "ias/query.h"

#define MAX_PARAMS 12

void audit_problem(ias_req *r, int status, const char *slug, const char *fmt, ...)
{
    char type[128], detail[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    snprintf(type, sizeof(type), AUDIT_PROBLEM_BASE "%s", slug);
    ias_reply_problem_typed(r, status, type, "%s", detail);
}

int audit_require_system_admin(ias_req *r, const audit_ctx *ctx, ias_principal *p)
{
    if (ias_principal_require(r, ctx->jwt_secret, ctx->jwt_secret_len, p) != IAS_OK)
        return IAS_ERR;
    if (!ias_principal_is_system_admin(p)) {
        audit_problem(r, 403, "forbidden", "this needs the system_admin role");
        return IAS_ERR;
    }
    return IAS_OK;
}

int audit_query_seq(ias_req *r, const char *name, long long *out)
{
    ias_query_rc rc = ias_query_get_ll(ias_req_query(r), name, 1, 9007199254740992LL, out);

    if (rc == IAS_QUERY_MALFORMED || rc == IAS_QUERY_TOOLONG) {
        audit_problem(r, 400, "invalid-parameter", "%s must be an integer in [1, 2^53]", name);
        return IAS_ERR;
    }
    return IAS_OK;
}

typedef struct filter {
    char sql[1024];
    size_t len;
    const char *params[MAX_PARAMS];
    int n;
} filter;

/* Appends " AND <column> <op> $n<cast>" and the value as parameter n. */
static void add_cond(filter *f, const char *column, const char *op, const char *cast,
                     const char *value)
{
    f->params[f->n++] = value;
    f->len += (size_t)snprintf(f->sql + f->len, sizeof(f->sql) - f->len, " AND %s %s $%d%s", column,
                               op, f->n, cast);
}

/* Reads one optional text filter; 400 answered when it is malformed or long. */
static int text_param(ias_req *r, const char *name, char *buf, size_t len, bool *present)
{
    ias_query_rc rc = ias_query_get(ias_req_query(r), name, buf, len);

    *present = rc == IAS_QUERY_FOUND && buf[0] != '\0';
    if (rc == IAS_QUERY_MALFORMED || rc == IAS_QUERY_TOOLONG) {
        audit_problem(r, 400, "invalid-parameter", "%s is malformed or longer than %zu bytes", name,
                      len - 1);
        return IAS_ERR;
    }
    return IAS_OK;
}

static bool looks_like_date(const char *s)
{
    static const char shape[] = "dddd-dd-dd";

    for (size_t i = 0; i < 10; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    return true;
}

void audit_h_list(ias_req *r, void *arg)
{
    audit_ctx *ctx = arg;
    ias_principal p;
    char org[IAS_JWT_ID_BUFSZ + 8], actor[260], action[80], rtype[80], rid[260], service[40],
        outcome[16];
    char from[64], to[64], lim[24], cur[24];
    bool has_org, has_actor, has_action, has_rtype, has_rid, has_service, has_outcome, has_from,
        has_to;
    long long limit = 100, cursor = 0;
    filter f = {.len = 0, .n = 0};
    PGresult *res = NULL;
    cJSON *out, *data;
    char sql[2048];
    int n;

    if (ias_principal_require(r, ctx->jwt_secret, ctx->jwt_secret_len, &p) != IAS_OK)
        return;
    if (!ias_principal_is_system_admin(&p) && strcmp(p.role, IAS_ROLE_ORG_ADMIN) != 0) {
        audit_problem(r, 403, "forbidden", "the audit log is for org and system admins");
        return;
    }
    if (text_param(r, "org_id", org, sizeof(org), &has_org) != IAS_OK ||
        text_param(r, "actor_id", actor, sizeof(actor), &has_actor) != IAS_OK ||
        text_param(r, "action", action, sizeof(action), &has_action) != IAS_OK ||
        text_param(r, "resource_type", rtype, sizeof(rtype), &has_rtype) != IAS_OK ||
        text_param(r, "resource_id", rid, sizeof(rid), &has_rid) != IAS_OK ||
        text_param(r, "service", service, sizeof(service), &has_service) != IAS_OK ||
        text_param(r, "outcome", outcome, sizeof(outcome), &has_outcome) != IAS_OK ||
        text_param(r, "from", from, sizeof(from), &has_from) != IAS_OK ||
        text_param(r, "to", to, sizeof(to), &has_to) != IAS_OK)
        return;
    if (ias_query_get_ll(ias_req_query(r), "limit", 1, 500, &limit) == IAS_QUERY_MALFORMED) {
        audit_problem(r, 400, "invalid-parameter", "limit must be an integer in [1, 500]");
        return;
    }
    if (audit_query_seq(r, "cursor", &cursor) != IAS_OK)
        return;
    /* from/to: ISO 8601 dates or times; PostgreSQL parses the rest, but its
     * special words ('yesterday', 'epoch') are not part of the API. */
    if ((has_from && !looks_like_date(from)) || (has_to && !looks_like_date(to))) {
        audit_problem(r, 400, "invalid-parameter", "from/to must be ISO 8601 times");
        return;
    }
    if (has_org && !ias_uuid_valid(org)) {
        audit_problem(r, 400, "invalid-parameter", "org_id must be a UUID");
        return;
    }
    if (!ias_principal_is_system_admin(&p)) {
        /* Tenant scope: an org admin's query is always pinned to their org. */
        if (has_org && strcasecmp(org, p.org_id) != 0) {
            audit_problem(r, 403, "forbidden", "org admins see only their own org's entries");
            return;
        }
        if (p.org_id[0] == '\0') {
            audit_problem(r, 403, "forbidden", "the token carries no org");
            return;
        }
        snprintf(org, sizeof(org), "%s", p.org_id);
        has_org = true;
    }
    if (has_org)
        add_cond(&f, "org_id", "=", "::uuid", org);
    if (has_actor)
        add_cond(&f, "actor_id", "=", "", actor);
    if (has_action)
        add_cond(&f, "action", "=", "", action);
    if (has_rtype)
        add_cond(&f, "resource_type", "=", "", rtype);
    if (has_rid)
        add_cond(&f, "resource_id", "=", "", rid);
    if (has_service)
        add_cond(&f, "service", "=", "", service);
    if (has_outcome)
        add_cond(&f, "outcome", "=", "", outcome);
    if (has_from)
        add_cond(&f, "occurred_at", ">=", "::timestamptz", from);
    if (has_to)
        add_cond(&f, "occurred_at", "<", "::timestamptz", to);
    snprintf(cur, sizeof(cur), "%lld", cursor);
    if (cursor > 0)
        add_cond(&f, "seq", "<", "::bigint", cur);
    snprintf(lim, sizeof(lim), "%lld", limit + 1);
    f.params[f.n++] = lim;
    snprintf(sql, sizeof(sql),
             "SELECT " AUDIT_ENTRY_COLS " FROM audit_ledger WHERE true%s ORDER BY seq DESC "
             "LIMIT $%d",
             f.sql, f.n);
    if (ias_pg_exec(audit_pg(r), sql, f.n, f.params, &res) != IAS_OK) {
        /* 22xxx: a from/to PostgreSQL cannot read as a time. */
        if (strncmp(ias_pg_last_sqlstate(audit_pg(r)), "22", 2) == 0)
            audit_problem(r, 400, "invalid-parameter", "from/to must be ISO 8601 times");
        else
            audit_problem(r, 503, "database-unavailable", "the ledger database is unavailable");
        return;
    }
    out = cJSON_CreateObject();
    data = cJSON_AddArrayToObject(out, "data");
    n = ias_pg_nrows(res);
    for (int i = 0; i < n && i < limit; i++) {
        audit_entry e;

        if (audit_entry_from_row(res, i, &e) != IAS_OK)
            continue;
        cJSON_AddItemToArray(data, audit_entry_json(&e, true));
        audit_entry_clear(&e);
    }
    if (n > limit) {
        long long last = 0;
        char next[24];
        if (ias_pg_value_ll(res, (int)limit - 1, 0, &last) == IAS_OK) {
            snprintf(next, sizeof(next), "%lld", last);
            cJSON_AddStringToObject(out, "next_cursor", next);
        }
    } else {
        cJSON_AddNullToObject(out, "next_cursor");
    }
    ias_pg_clear(res);
    ias_reply_json(r, 200, out);
    cJSON_Delete(out);
}
