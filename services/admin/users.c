/* users list|invite|remove|set-role|set-limit|reset-password. Users belong to
 * an org; org admins manage their own org, system admins any. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const admin_col user_cols[] = {
    {"ID", "id"},
    {"EMAIL", "email"},
    {"ROLE", "role"},
    {"MONTHLY LIMIT", "monthly_token_limit"},
    {"DISABLED", "disabled"},
    {"CREATED", "created_at"},
};

static void wipe_str(cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsString(v)) {
        for (volatile char *p = v->valuestring; *p; p++)
            *p = '\0';
    }
}

static int user_path(const char *ref, const char *suffix, char **out)
{
    if (!admin_is_uuid(ref)) {
        fprintf(stderr, "ias-admin: USER must be a user id (see ias-admin users list ORG)\n");
        return ADMIN_EXIT_USAGE;
    }
    *out = ias_xasprintf("/api/v1/users/%s%s", ref, suffix ? suffix : "");
    return ADMIN_EXIT_OK;
}

static int cmd_list(admin_ctx *ctx, const admin_parsed *a)
{
    char id[64];
    if (admin_resolve_org(ctx, a->pos[0], id, sizeof(id)) != IAS_OK)
        return ADMIN_EXIT_API;
    char *path = ias_xasprintf("/api/v1/orgs/%s/users", id);
    int rc = admin_do_list(ctx, path, NULL, user_cols, IAS_ARRAY_LEN(user_cols));
    free(path);
    return rc;
}

static int cmd_invite(admin_ctx *ctx, const admin_parsed *a)
{
    static const admin_field fields[] = {
        {"email", "email", 's'},
        {"role", "role", 's'},
        {"display-name", "display_name", 's'},
        {"monthly-token-limit", "monthly_token_limit", 'i'},
    };
    char pw[ADMIN_SECRET_MAX];
    char id[64];
    const char *given = admin_flag_value(a, "password");

    cJSON *body = cJSON_CreateObject();
    if (admin_body_fields(a, fields, IAS_ARRAY_LEN(fields), body) != IAS_OK) {
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    if (given) {
        cJSON_AddStringToObject(body, "password", given);
    } else {
        if (admin_read_secret("Initial password: ", admin_flag_set(a, "password-stdin"), true, pw,
                              sizeof(pw)) != IAS_OK) {
            cJSON_Delete(body);
            return ADMIN_EXIT_USAGE;
        }
        cJSON_AddStringToObject(body, "password", pw);
        for (volatile char *p = pw; *p; p++)
            *p = '\0';
    }
    int rc = ADMIN_EXIT_API;
    if (admin_resolve_org(ctx, admin_flag_value(a, "org"), id, sizeof(id)) == IAS_OK) {
        char *path = ias_xasprintf("/api/v1/orgs/%s/users", id);
        rc = admin_do_record(ctx, "POST", path, body, user_cols, IAS_ARRAY_LEN(user_cols));
        free(path);
    }
    wipe_str(body, "password");
    cJSON_Delete(body);
    return rc;
}

static int cmd_get(admin_ctx *ctx, const admin_parsed *a)
{
    char *path = NULL;
    int rc = user_path(a->pos[0], NULL, &path);
    if (rc != ADMIN_EXIT_OK)
        return rc;
    rc = admin_do_record(ctx, "GET", path, NULL, user_cols, IAS_ARRAY_LEN(user_cols));
    free(path);
    return rc;
}

static int cmd_remove(admin_ctx *ctx, const admin_parsed *a)
{
    char *path = NULL;
    int rc = user_path(a->pos[0], NULL, &path);
    if (rc != ADMIN_EXIT_OK)
        return rc;
    admin_resp r;
    rc = admin_call(ctx, "DELETE", path, NULL, &r) == IAS_OK ? ADMIN_EXIT_OK : ADMIN_EXIT_API;
    free(path);
    if (rc == ADMIN_EXIT_OK) {
        admin_show_done(ctx, &r, "user %s removed (their keys stop working now)", a->pos[0]);
        admin_resp_free(&r);
    }
    return rc;
}

static int patch_user(admin_ctx *ctx, const char *user, cJSON *body)
{
    char *path = NULL;
    int rc = user_path(user, NULL, &path);
    if (rc == ADMIN_EXIT_OK)
        rc = admin_do_record(ctx, "PATCH", path, body, user_cols, IAS_ARRAY_LEN(user_cols));
    free(path);
    cJSON_Delete(body);
    return rc;
}

static int cmd_set_role(admin_ctx *ctx, const admin_parsed *a)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "role", a->pos[1]);
    return patch_user(ctx, a->pos[0], body);
}

static int cmd_set_limit(admin_ctx *ctx, const admin_parsed *a)
{
    uint64_t n;
    cJSON *body = cJSON_CreateObject();
    if (strcmp(a->pos[1], "none") == 0) {
        cJSON_AddNullToObject(body, "monthly_token_limit");
    } else if (admin_parse_u64(a->pos[1], &n) == IAS_OK && n <= 9007199254740991ull) {
        cJSON_AddNumberToObject(body, "monthly_token_limit", (double)n);
    } else {
        cJSON_Delete(body);
        fprintf(stderr, "ias-admin: LIMIT must be a number of tokens or 'none'\n");
        return ADMIN_EXIT_USAGE;
    }
    return patch_user(ctx, a->pos[0], body);
}

static int cmd_disable(admin_ctx *ctx, const admin_parsed *a, bool disabled)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddBoolToObject(body, "disabled", disabled);
    return patch_user(ctx, a->pos[0], body);
}

static int cmd_disable_on(admin_ctx *ctx, const admin_parsed *a)
{
    return cmd_disable(ctx, a, true);
}

static int cmd_disable_off(admin_ctx *ctx, const admin_parsed *a)
{
    return cmd_disable(ctx, a, false);
}

static int cmd_reset_password(admin_ctx *ctx, const admin_parsed *a)
{
    char pw[ADMIN_SECRET_MAX];
    const char *given = admin_flag_value(a, "password");
    char *path = NULL;
    int rc = user_path(a->pos[0], "/password", &path);
    if (rc != ADMIN_EXIT_OK)
        return rc;
    if (given) {
        if (ias_strlcpy(pw, given, sizeof(pw)) != IAS_OK) {
            free(path);
            fprintf(stderr, "ias-admin: password too long\n");
            return ADMIN_EXIT_USAGE;
        }
    } else if (admin_read_secret("New password: ", admin_flag_set(a, "password-stdin"), true, pw,
                                 sizeof(pw)) != IAS_OK) {
        free(path);
        return ADMIN_EXIT_USAGE;
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "password", pw);
    for (volatile char *p = pw; *p; p++)
        *p = '\0';
    admin_resp r;
    rc = admin_call(ctx, "POST", path, body, &r) == IAS_OK ? ADMIN_EXIT_OK : ADMIN_EXIT_API;
    wipe_str(body, "password");
    cJSON_Delete(body);
    free(path);
    if (rc == ADMIN_EXIT_OK) {
        admin_show_done(ctx, &r, "password of user %s reset (their sessions end)", a->pos[0]);
        admin_resp_free(&r);
    }
    return rc;
}

static const admin_flag invite_flags[] = {
    {"org", 0, true, true, "ORG", "org id or name"},
    {"email", 0, true, true, "EMAIL", "the user's email"},
    {"role", 0, true, false, "ROLE", "org_admin or org_user (default org_user)"},
    {"display-name", 0, true, false, "NAME", "display name"},
    {"monthly-token-limit", 0, true, false, "N", "per-user monthly token limit"},
    {"password", 0, true, false, "PASSWORD", "initial password (prefer the prompt or stdin)"},
    {"password-stdin", 0, false, false, NULL, "read the initial password from stdin"},
};

static const admin_flag pw_flags[] = {
    {"password", 0, true, false, "PASSWORD", "new password (prefer the prompt or stdin)"},
    {"password-stdin", 0, false, false, NULL, "read the new password from stdin"},
};

static const admin_cmd cmds[] = {
    {"list", "list the users of an org", "ORG", 1, 1, NULL, 0, cmd_list},
    {"invite", "create a user in an org", NULL, 0, 0, invite_flags, IAS_ARRAY_LEN(invite_flags),
     cmd_invite},
    {"get", "show a user", "USER", 1, 1, NULL, 0, cmd_get},
    {"remove", "remove a user (their keys stop working)", "USER", 1, 1, NULL, 0, cmd_remove},
    {"set-role", "change a user's role (org_admin, org_user)", "USER ROLE", 2, 2, NULL, 0,
     cmd_set_role},
    {"set-limit", "set a user's monthly token limit ('none' removes it)", "USER LIMIT", 2, 2, NULL,
     0, cmd_set_limit},
    {"disable", "disable a user's login and keys", "USER", 1, 1, NULL, 0, cmd_disable_on},
    {"enable", "enable a disabled user", "USER", 1, 1, NULL, 0, cmd_disable_off},
    {"reset-password", "set a new password for a user (system admin)", "USER", 1, 1, pw_flags,
     IAS_ARRAY_LEN(pw_flags), cmd_reset_password},
};

const admin_group admin_group_users = {"users", "manage the users of an org", cmds,
                                       IAS_ARRAY_LEN(cmds)};
