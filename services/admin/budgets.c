/* budgets get|set|delete: an org's monthly token budget and alert
 * thresholds (per-user limits: users set-limit). */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const admin_col budget_cols[] = {
    {"ORG", "org_id"},
    {"MONTHLY TOKENS", "monthly_token_limit"},
    {"ALERTS %", "alert_thresholds"},
    {"UPDATED", "updated_at"},
};

static char *budget_path(admin_ctx *ctx, const char *ref)
{
    char id[64];
    if (admin_resolve_org(ctx, ref, id, sizeof(id)) != IAS_OK)
        return NULL;
    return ias_xasprintf("/api/v1/orgs/%s/budget", id);
}

static int cmd_get(admin_ctx *ctx, const admin_parsed *a)
{
    char *path = budget_path(ctx, a->pos[0]);
    if (!path)
        return ADMIN_EXIT_API;
    int rc = admin_do_record(ctx, "GET", path, NULL, budget_cols, IAS_ARRAY_LEN(budget_cols));
    free(path);
    return rc;
}

static int cmd_set(admin_ctx *ctx, const admin_parsed *a)
{
    static const admin_field fields[] = {
        {"monthly-tokens", "monthly_token_limit", 'i'},
        {"alert-thresholds", "alert_thresholds", 'n'},
    };
    cJSON *body = cJSON_CreateObject();
    if (admin_body_fields(a, fields, IAS_ARRAY_LEN(fields), body) != IAS_OK) {
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    char *path = budget_path(ctx, a->pos[0]);
    int rc = ADMIN_EXIT_API;
    if (path)
        rc = admin_do_record(ctx, "PUT", path, body, budget_cols, IAS_ARRAY_LEN(budget_cols));
    free(path);
    cJSON_Delete(body);
    return rc;
}

static int cmd_delete(admin_ctx *ctx, const admin_parsed *a)
{
    char *path = budget_path(ctx, a->pos[0]);
    if (!path)
        return ADMIN_EXIT_API;
    admin_resp r;
    int rc = admin_call(ctx, "DELETE", path, NULL, &r) == IAS_OK ? ADMIN_EXIT_OK : ADMIN_EXIT_API;
    free(path);
    if (rc == ADMIN_EXIT_OK) {
        admin_show_done(ctx, &r, "budget of %s removed (no org limit)", a->pos[0]);
        admin_resp_free(&r);
    }
    return rc;
}

static const admin_flag set_flags[] = {
    {"monthly-tokens", 0, true, true, "N", "tokens per UTC calendar month"},
    {"alert-thresholds", 0, true, false, "P1,P2", "alert at these percentages (default 80,90)"},
};

static const admin_cmd cmds[] = {
    {"get", "show an org's monthly token budget", "ORG", 1, 1, NULL, 0, cmd_get},
    {"set", "set an org's monthly token budget", "ORG", 1, 1, set_flags, IAS_ARRAY_LEN(set_flags),
     cmd_set},
    {"delete", "remove an org's budget (no limit)", "ORG", 1, 1, NULL, 0, cmd_delete},
};

const admin_group admin_group_budgets = {"budgets", "org monthly token budgets", cmds,
                                         IAS_ARRAY_LEN(cmds)};
