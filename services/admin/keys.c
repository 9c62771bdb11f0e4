/* keys list|create|revoke. The full key is printed once, on creation; the
 * server keeps only its prefix and hash. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const admin_col key_cols[] = {
    {"ID", "id"},         {"PREFIX", "prefix"},      {"NAME", "name"},          {"USER", "user_id"},
    {"STATUS", "status"}, {"EXPIRES", "expires_at"}, {"CREATED", "created_at"},
};

static int cmd_list(admin_ctx *ctx, const admin_parsed *a)
{
    char id[64];
    const char *org = admin_flag_value(a, "org");
    const char *org_id = NULL;
    if (org) {
        if (admin_resolve_org(ctx, org, id, sizeof(id)) != IAS_OK)
            return ADMIN_EXIT_API;
        org_id = id;
    }
    const char *q[] = {"org_id", org_id, "user_id", admin_flag_value(a, "user"), NULL};
    return admin_do_list(ctx, "/api/v1/keys", q, key_cols, IAS_ARRAY_LEN(key_cols));
}

static int cmd_create(admin_ctx *ctx, const admin_parsed *a)
{
    static const admin_field fields[] = {
        {"name", "name", 's'},
        {"expires-at", "expires_at", 's'},
    };
    cJSON *body = cJSON_CreateObject();
    admin_resp r;

    if (admin_body_fields(a, fields, IAS_ARRAY_LEN(fields), body) != IAS_OK) {
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    int rc = admin_call(ctx, "POST", "/api/v1/keys", body, &r);
    cJSON_Delete(body);
    if (rc != IAS_OK)
        return ADMIN_EXIT_API;
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(r.json, "key");
    if (!cJSON_IsString(key)) {
        fprintf(stderr, "ias-admin: the answer carries no key\n");
        admin_resp_free(&r);
        return ADMIN_EXIT_API;
    }
    /* The one secret this tool prints, exactly once; the warning goes to
     * stderr so `KEY=$(ias-admin keys create -o json | jq -r .key)` stays clean. */
    if (ctx->output == ADMIN_OUT_JSON) {
        admin_json(stdout, r.json);
    } else {
        static const admin_col cols[] = {
            {"ID", "id"}, {"PREFIX", "prefix"}, {"NAME", "name"}, {"EXPIRES", "expires_at"}};
        for (size_t i = 0; i < IAS_ARRAY_LEN(cols); i++) {
            char *v = admin_cell(r.json, cols[i].field);
            printf("%-8s %s\n", cols[i].header, v);
            free(v);
        }
        printf("%-8s %s\n", "KEY", key->valuestring);
    }
    fprintf(stderr, "warning: store this API key now; it will not be shown again.\n");
    for (volatile char *p = key->valuestring; *p; p++)
        *p = '\0';
    if (r.body) {
        for (volatile char *p = r.body; *p; p++)
            *p = '\0';
    }
    admin_resp_free(&r);
    return ADMIN_EXIT_OK;
}

static int cmd_get(admin_ctx *ctx, const admin_parsed *a)
{
    if (!admin_is_uuid(a->pos[0])) {
        fprintf(stderr, "ias-admin: KEY must be a key id\n");
        return ADMIN_EXIT_USAGE;
    }
    char *path = ias_xasprintf("/api/v1/keys/%s", a->pos[0]);
    int rc = admin_do_record(ctx, "GET", path, NULL, key_cols, IAS_ARRAY_LEN(key_cols));
    free(path);
    return rc;
}

static int cmd_revoke(admin_ctx *ctx, const admin_parsed *a)
{
    admin_resp r;
    if (!admin_is_uuid(a->pos[0])) {
        fprintf(stderr, "ias-admin: KEY must be a key id (see ias-admin keys list)\n");
        return ADMIN_EXIT_USAGE;
    }
    char *path = ias_xasprintf("/api/v1/keys/%s", a->pos[0]);
    int rc = admin_call(ctx, "DELETE", path, NULL, &r) == IAS_OK ? ADMIN_EXIT_OK : ADMIN_EXIT_API;
    free(path);
    if (rc == ADMIN_EXIT_OK) {
        admin_show_done(ctx, &r, "key %s revoked", a->pos[0]);
        admin_resp_free(&r);
    }
    return rc;
}

static const admin_flag list_flags[] = {
    {"org", 0, true, false, "ORG", "only this org's keys (id or name)"},
    {"user", 0, true, false, "USER", "only this user's keys"},
};

static const admin_flag create_flags[] = {
    {"name", 0, true, false, "NAME", "a name to recognise the key by"},
    {"expires-at", 0, true, false, "TIME", "expiry, ISO 8601 UTC (2027-01-01T00:00:00Z)"},
};

static const admin_cmd cmds[] = {
    {"list", "list API keys (your own; all of the org for admins)", NULL, 0, 0, list_flags,
     IAS_ARRAY_LEN(list_flags), cmd_list},
    {"create", "create an API key; prints it once", NULL, 0, 0, create_flags,
     IAS_ARRAY_LEN(create_flags), cmd_create},
    {"get", "show an API key (never the secret)", "KEY", 1, 1, NULL, 0, cmd_get},
    {"revoke", "revoke an API key (effective within a second)", "KEY", 1, 1, NULL, 0, cmd_revoke},
};

const admin_group admin_group_keys = {"keys", "manage API keys", cmds, IAS_ARRAY_LEN(cmds)};
