/* usage show|events|alerts: the accounting service's analytics. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int org_id(admin_ctx *ctx, const admin_parsed *a, char *id, size_t len, bool *has)
{
    const char *org = admin_flag_value(a, "org");
    *has = org != NULL;
    if (!org)
        return IAS_OK;
    return admin_resolve_org(ctx, org, id, len);
}

static int cmd_show(admin_ctx *ctx, const admin_parsed *a)
{
    char id[64];
    bool has;
    admin_resp r;

    if (org_id(ctx, a, id, sizeof(id), &has) != IAS_OK)
        return ADMIN_EXIT_API;
    const char *q[] = {"org_id",   has ? id : NULL,
                       "user_id",  admin_flag_value(a, "user"),
                       "from",     admin_flag_value(a, "from"),
                       "to",       admin_flag_value(a, "to"),
                       "group_by", admin_flag_value(a, "group-by"),
                       NULL};
    char *path = admin_path_query("/api/v1/usage/summary", q);
    int rc = admin_call(ctx, "GET", path, NULL, &r);
    free(path);
    if (rc != IAS_OK)
        return ADMIN_EXIT_API;
    if (ctx->output == ADMIN_OUT_JSON || !cJSON_IsObject(r.json)) {
        if (r.json)
            admin_json(stdout, r.json);
        admin_resp_free(&r);
        return ADMIN_EXIT_OK;
    }
    static const admin_col sums[] = {
        {"REQUESTS", "requests"},    {"ERRORS", "errors"},
        {"PROMPT", "prompt_tokens"}, {"COMPLETION", "completion_tokens"},
        {"TOTAL", "total_tokens"},   {"COST", "cost"},
    };
    char *from = admin_cell(r.json, "from"), *to = admin_cell(r.json, "to");
    char *org = admin_cell(r.json, "org_id");
    printf("Usage from %s to %s (org %s)\n\n", from, to, org);
    free(from);
    free(to);
    free(org);
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(r.json, "groups");
    if (cJSON_IsArray(groups) && cJSON_GetArraySize(groups) > 0) {
        admin_col cols[IAS_ARRAY_LEN(sums) + 1];
        cols[0].header = "GROUP";
        cols[0].field = "key";
        memcpy(cols + 1, sums, sizeof(sums));
        admin_table(stdout, cols, IAS_ARRAY_LEN(cols), groups);
        printf("\n");
    }
    const cJSON *totals = cJSON_GetObjectItemCaseSensitive(r.json, "totals");
    if (cJSON_IsObject(totals)) {
        cJSON *one = cJSON_CreateArray();
        cJSON_AddItemToArray(one, cJSON_Duplicate(totals, true));
        admin_table(stdout, sums, IAS_ARRAY_LEN(sums), one);
        cJSON_Delete(one);
    }
    admin_resp_free(&r);
    return ADMIN_EXIT_OK;
}

static int cmd_events(admin_ctx *ctx, const admin_parsed *a)
{
    char id[64];
    bool has;
    if (org_id(ctx, a, id, sizeof(id), &has) != IAS_OK)
        return ADMIN_EXIT_API;
    const char *q[] = {"org_id",  has ? id : NULL,
                       "user_id", admin_flag_value(a, "user"),
                       "from",    admin_flag_value(a, "from"),
                       "to",      admin_flag_value(a, "to"),
                       NULL};
    static const admin_col cols[] = {
        {"TIME", "created_at"},
        {"MODEL", "model"},
        {"USER", "user_id"},
        {"PROMPT", "prompt_tokens"},
        {"COMPLETION", "completion_tokens"},
        {"COST", "cost"},
        {"STATUS", "status"},
    };
    return admin_do_list(ctx, "/api/v1/usage/events", q, cols, IAS_ARRAY_LEN(cols));
}

static int cmd_alerts(admin_ctx *ctx, const admin_parsed *a)
{
    char id[64];
    bool has;
    if (org_id(ctx, a, id, sizeof(id), &has) != IAS_OK)
        return ADMIN_EXIT_API;
    const char *q[] = {"org_id",  has ? id : NULL,
                       "user_id", admin_flag_value(a, "user"),
                       "month",   admin_flag_value(a, "month"),
                       NULL};
    static const admin_col cols[] = {
        {"TIME", "created_at"},       {"ORG", "org_id"},
        {"USER", "user_id"},          {"MONTH", "month"},
        {"THRESHOLD %", "threshold"}, {"USED", "used_tokens"},
        {"LIMIT", "limit_tokens"},
    };
    return admin_do_list(ctx, "/api/v1/usage/alerts", q, cols, IAS_ARRAY_LEN(cols));
}

static const admin_flag alerts_flags[] = {
    {"org", 0, true, false, "ORG", "org id or name"},
    {"user", 0, true, false, "USER", "only this user's limit alerts (id or 'me')"},
    {"month", 0, true, false, "YYYY-MM", "only this UTC month"},
};

static const admin_flag show_flags[] = {
    {"org", 0, true, false, "ORG", "org id or name (system admins; default: all or your own)"},
    {"user", 0, true, false, "USER", "only this user (id or 'me')"},
    {"from", 0, true, false, "TIME", "start, ISO 8601 UTC or a date (default: 30 days ago)"},
    {"to", 0, true, false, "TIME", "end, exclusive (default: now)"},
    {"group-by", 0, true, false, "KIND", "none, model, user or key"},
};

static const admin_flag events_flags[] = {
    {"org", 0, true, false, "ORG", "org id or name"},
    {"user", 0, true, false, "USER", "only this user (id or 'me')"},
    {"from", 0, true, false, "TIME", "start, ISO 8601 UTC or a date"},
    {"to", 0, true, false, "TIME", "end, exclusive"},
};

static const admin_cmd cmds[] = {
    {"show", "token and cost totals, optionally grouped", NULL, 0, 0, show_flags,
     IAS_ARRAY_LEN(show_flags), cmd_show},
    {"events", "individual requests with their tokens and cost", NULL, 0, 0, events_flags,
     IAS_ARRAY_LEN(events_flags), cmd_events},
    {"alerts", "budget alerts (thresholds crossed), newest first", NULL, 0, 0, alerts_flags,
     IAS_ARRAY_LEN(alerts_flags), cmd_alerts},
};

const admin_group admin_group_usage = {"usage", "usage and cost (accounting)", cmds,
                                       IAS_ARRAY_LEN(cmds)};
