/* orgs list|create|get|update|delete (system admin). An org can be named by
 * id or by name everywhere. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const admin_col org_cols[] = {
    {"ID", "id"},
    {"NAME", "name"},
    {"DISPLAY NAME", "display_name"},
    {"RPS LIMIT", "rate_limit_rps"},
    {"CREATED", "created_at"},
};

static const admin_field org_fields[] = {
    {"display-name", "display_name", 's'}, {"description", "description", 's'},
    {"cost-center", "cost_center", 's'},   {"tags", "tags", 'l'},
    {"rps-limit", "rate_limit_rps", 'i'},
};

static char *org_path(admin_ctx *ctx, const char *ref, const char *suffix)
{
    char id[64];
    if (admin_resolve_org(ctx, ref, id, sizeof(id)) != IAS_OK)
        return NULL;
    return ias_xasprintf("/api/v1/orgs/%s%s", id, suffix ? suffix : "");
}

static int cmd_list(admin_ctx *ctx, const admin_parsed *a)
{
    IAS_UNUSED(a);
    return admin_do_list(ctx, "/api/v1/orgs", NULL, org_cols, IAS_ARRAY_LEN(org_cols));
}

static int cmd_create(admin_ctx *ctx, const admin_parsed *a)
{
    const char *name = a->npos > 0 ? a->pos[0] : admin_flag_value(a, "name");
    if (!name || (a->npos > 0 && admin_flag_set(a, "name"))) {
        fprintf(stderr, "ias-admin: give the org's name once, as NAME or --name\n"
                        "Usage: ias-admin orgs create NAME [flags]\n");
        return ADMIN_EXIT_USAGE;
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", name);
    if (admin_body_fields(a, org_fields, IAS_ARRAY_LEN(org_fields), body) != IAS_OK) {
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    int rc = admin_do_record(ctx, "POST", "/api/v1/orgs", body, org_cols, IAS_ARRAY_LEN(org_cols));
    cJSON_Delete(body);
    return rc;
}

static int cmd_get(admin_ctx *ctx, const admin_parsed *a)
{
    char *path = org_path(ctx, a->pos[0], NULL);
    if (!path)
        return ADMIN_EXIT_API;
    int rc = admin_do_record(ctx, "GET", path, NULL, org_cols, IAS_ARRAY_LEN(org_cols));
    free(path);
    return rc;
}

static int cmd_update(admin_ctx *ctx, const admin_parsed *a)
{
    cJSON *body = cJSON_CreateObject();
    if (admin_body_fields(a, org_fields, IAS_ARRAY_LEN(org_fields), body) != IAS_OK ||
        cJSON_GetArraySize(body) == 0) {
        if (cJSON_GetArraySize(body) == 0)
            fprintf(stderr, "ias-admin: nothing to update (see ias-admin orgs update --help)\n");
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    char *path = org_path(ctx, a->pos[0], NULL);
    int rc = ADMIN_EXIT_API;
    if (path)
        rc = admin_do_record(ctx, "PATCH", path, body, org_cols, IAS_ARRAY_LEN(org_cols));
    free(path);
    cJSON_Delete(body);
    return rc;
}

static int cmd_delete(admin_ctx *ctx, const admin_parsed *a)
{
    char *path = org_path(ctx, a->pos[0], NULL);
    if (!path)
        return ADMIN_EXIT_API;
    admin_resp r;
    int rc = admin_call(ctx, "DELETE", path, NULL, &r) == IAS_OK ? ADMIN_EXIT_OK : ADMIN_EXIT_API;
    free(path);
    if (rc == ADMIN_EXIT_OK) {
        admin_show_done(ctx, &r, "org %s deleted (its keys stop working now)", a->pos[0]);
        admin_resp_free(&r);
    }
    return rc;
}

static int show_allowed(admin_ctx *ctx, const char *path)
{
    static const admin_col cols[] = {{"MODEL ID", "model_id"},
                                     {"NAME", "name"},
                                     {"ENABLED", "enabled"},
                                     {"SINCE", "allowed_at"}};
    return admin_do_list(ctx, path, NULL, cols, IAS_ARRAY_LEN(cols));
}

static int cmd_models(admin_ctx *ctx, const admin_parsed *a)
{
    const char *set = admin_flag_value(a, "set");
    char *path = org_path(ctx, a->pos[0], "/models");
    if (!path)
        return ADMIN_EXIT_API;
    int rc;
    if (set) {
        cJSON *body = cJSON_CreateObject();
        if (admin_body_fields(a, (const admin_field[]){{"set", "models", 'l'}}, 1, body) !=
            IAS_OK) {
            cJSON_Delete(body);
            free(path);
            return ADMIN_EXIT_USAGE;
        }
        admin_resp r;
        rc = admin_call(ctx, "PUT", path, body, &r) == IAS_OK ? ADMIN_EXIT_OK : ADMIN_EXIT_API;
        cJSON_Delete(body);
        if (rc == ADMIN_EXIT_OK) {
            admin_resp_free(&r);
            /* Show the resulting list, the same as without --set. */
            rc = show_allowed(ctx, path);
        }
    } else {
        rc = show_allowed(ctx, path);
    }
    free(path);
    return rc;
}

static const admin_flag create_flags[] = {
    {"name", 0, true, false, "NAME", "the org's name (or give it as NAME)"},
    {"display-name", 0, true, false, "TEXT", "display name"},
    {"description", 0, true, false, "TEXT", "description"},
    {"cost-center", 0, true, false, "TEXT", "cost center"},
    {"tags", 0, true, false, "A,B", "comma-separated tags"},
    {"rps-limit", 0, true, false, "N|none", "requests per second for the whole org"},
};

static const admin_flag update_flags[] = {
    {"display-name", 0, true, false, "TEXT", "display name"},
    {"description", 0, true, false, "TEXT", "description"},
    {"cost-center", 0, true, false, "TEXT", "cost center"},
    {"tags", 0, true, false, "A,B", "comma-separated tags (replaces them)"},
    {"rps-limit", 0, true, false, "N|none", "requests per second for the whole org"},
};

static const admin_flag models_flags[] = {
    {"set", 0, true, false, "M1,M2", "replace the allowed models by this list (\"\" for none)"},
};

static const admin_cmd cmds[] = {
    {"list", "list orgs", NULL, 0, 0, NULL, 0, cmd_list},
    {"create", "create an org (NAME: lower-case slug)", "NAME", 0, 1, create_flags,
     IAS_ARRAY_LEN(create_flags), cmd_create},
    {"get", "show an org", "ORG", 1, 1, NULL, 0, cmd_get},
    {"update", "change an org", "ORG", 1, 1, update_flags, IAS_ARRAY_LEN(update_flags), cmd_update},
    {"delete", "delete an org (soft; its API keys stop working at once)", "ORG", 1, 1, NULL, 0,
     cmd_delete},
    {"models", "show or set (--set) the models an org may use", "ORG", 1, 1, models_flags,
     IAS_ARRAY_LEN(models_flags), cmd_models},
};

const admin_group admin_group_orgs = {"orgs", "manage organisations (tenants)", cmds,
                                      IAS_ARRAY_LEN(cmds)};
