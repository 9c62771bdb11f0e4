/* bootstrap create-super-admin, login, logout, whoami. Passwords come from a
 * flag, stdin or a prompt without echo; nothing here prints a token. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void wipe(char *buf, size_t len)
{
    for (volatile char *p = buf; len > 0; len--)
        *p++ = '\0';
}

/* The password of a command: --password, else stdin/prompt. */
static int get_password(const admin_parsed *a, bool confirm, char *buf, size_t len)
{
    const char *pw = admin_flag_value(a, "password");
    if (pw) {
        if (ias_strlcpy(buf, pw, len) != IAS_OK) {
            fprintf(stderr, "ias-admin: password too long\n");
            return IAS_ERR;
        }
        return IAS_OK;
    }
    return admin_read_secret("Password: ", admin_flag_set(a, "password-stdin"), confirm, buf, len);
}

/* A JSON string member holding a secret: wiped before the object is freed. */
static void wipe_member(cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsString(v))
        wipe(v->valuestring, strlen(v->valuestring));
}

static int cmd_bootstrap(admin_ctx *ctx, const admin_parsed *a)
{
    char pw[ADMIN_SECRET_MAX];
    char *hdr = NULL;
    const char *tok = admin_flag_value(a, "bootstrap-token");
    const char *dn = admin_flag_value(a, "display-name");
    admin_resp r;
    int rc;

    if (!tok)
        tok = getenv("IAS_BOOTSTRAP_TOKEN");
    if (get_password(a, true, pw, sizeof(pw)) != IAS_OK)
        return ADMIN_EXIT_USAGE;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "email", admin_flag_value(a, "email"));
    cJSON_AddStringToObject(body, "password", pw);
    wipe(pw, sizeof(pw));
    if (dn)
        cJSON_AddStringToObject(body, "display_name", dn);
    if (tok && tok[0]) {
        hdr = ias_xasprintf("X-Bootstrap-Token: %s", tok);
        ctx->extra_header = hdr;
    }
    rc = admin_http(ctx, "POST", "/api/v1/bootstrap/super-admin", body, false, &r);
    ctx->extra_header = NULL;
    if (hdr) {
        wipe(hdr, strlen(hdr));
        free(hdr);
    }
    wipe_member(body, "password");
    cJSON_Delete(body);
    if (rc != IAS_OK)
        return ADMIN_EXIT_API;
    if (r.status < 200 || r.status >= 300) {
        admin_print_problem(stderr, r.status, r.body, r.len);
        admin_resp_free(&r);
        return ADMIN_EXIT_API;
    }
    static const admin_col cols[] = {
        {"ID", "id"}, {"EMAIL", "email"}, {"ROLE", "role"}, {"CREATED", "created_at"}};
    rc = admin_show_record(ctx, &r, cols, IAS_ARRAY_LEN(cols));
    admin_resp_free(&r);
    return rc;
}

static int cmd_login(admin_ctx *ctx, const admin_parsed *a)
{
    char pw[ADMIN_SECRET_MAX];
    const char *email = admin_flag_value(a, "email");
    admin_resp r;
    int rc;

    if (!email)
        email = getenv("IAS_ADMIN_EMAIL");
    if (!email || !email[0]) {
        fprintf(stderr, "ias-admin: missing required flag --email (or IAS_ADMIN_EMAIL)\n"
                        "Usage: ias-admin login --email EMAIL [--password-stdin] [flags]\n");
        return ADMIN_EXIT_USAGE;
    }
    if (get_password(a, false, pw, sizeof(pw)) != IAS_OK)
        return ADMIN_EXIT_USAGE;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "email", email);
    cJSON_AddStringToObject(body, "password", pw);
    wipe(pw, sizeof(pw));
    rc = admin_http(ctx, "POST", "/api/v1/auth/login", body, false, &r);
    wipe_member(body, "password");
    cJSON_Delete(body);
    if (rc != IAS_OK)
        return ADMIN_EXIT_API;
    if (r.status != 200 || !r.json) {
        admin_print_problem(stderr, r.status, r.body, r.len);
        admin_resp_free(&r);
        return ADMIN_EXIT_API;
    }
    rc = admin_store_login(ctx, email, r.json);
    wipe_member(r.json, "access_token");
    wipe_member(r.json, "refresh_token");
    if (r.body)
        wipe(r.body, r.len);
    admin_resp_free(&r);
    if (rc != IAS_OK)
        return ADMIN_EXIT_API;
    if (ctx->output == ADMIN_OUT_JSON) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "base_url", ctx->base_url);
        cJSON_AddStringToObject(o, "email", email);
        cJSON_AddStringToObject(o, "credentials", ctx->creds_path);
        admin_json(stdout, o);
        cJSON_Delete(o);
    } else {
        printf("Logged in to %s as %s (credentials in %s)\n", ctx->base_url, email,
               ctx->creds_path);
    }
    return ADMIN_EXIT_OK;
}

static int cmd_logout(admin_ctx *ctx, const admin_parsed *a)
{
    IAS_UNUSED(a);
    if (!ctx->have_creds) {
        printf("Not logged in to %s\n", ctx->base_url);
        return ADMIN_EXIT_OK;
    }
    if (ctx->creds.refresh_token) {
        admin_resp r;
        cJSON *body = cJSON_CreateObject();
        cJSON_AddStringToObject(body, "refresh_token", ctx->creds.refresh_token);
        /* Best effort: forgetting the local copy matters more than the answer.
         * No bearer token: an expired one would trigger a refresh, rotating
         * the very refresh token this body carries. */
        if (admin_http(ctx, "POST", "/api/v1/auth/logout", body, false, &r) == IAS_OK) {
            if (r.status >= 300 && r.status != 401)
                admin_print_problem(stderr, r.status, r.body, r.len);
            admin_resp_free(&r);
        }
        wipe_member(body, "refresh_token");
        cJSON_Delete(body);
    }
    if (admin_creds_forget(ctx->creds_path, ctx->base_url) != IAS_OK)
        return ADMIN_EXIT_API;
    printf("Logged out of %s\n", ctx->base_url);
    return ADMIN_EXIT_OK;
}

static int cmd_whoami(admin_ctx *ctx, const admin_parsed *a)
{
    IAS_UNUSED(a);
    if (!ctx->have_creds) {
        fprintf(stderr, "ias-admin: not logged in to %s; run 'ias-admin login'\n", ctx->base_url);
        return ADMIN_EXIT_API;
    }
    char when[32] = "-";
    if (ctx->creds.expires_at > 0) {
        time_t t = (time_t)ctx->creds.expires_at;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "base_url", ctx->base_url);
    cJSON_AddStringToObject(o, "email", ctx->creds.email);
    cJSON_AddStringToObject(o, "access_token_expires_at", when);
    cJSON_AddBoolToObject(o, "can_refresh", ctx->creds.refresh_token != NULL);
    cJSON_AddStringToObject(o, "credentials", ctx->creds_path);
    if (ctx->output == ADMIN_OUT_JSON)
        admin_json(stdout, o);
    else
        admin_record(stdout, NULL, 0, o);
    cJSON_Delete(o);
    return ADMIN_EXIT_OK;
}

static const admin_flag bootstrap_flags[] = {
    {"email", 0, true, true, "EMAIL", "the super admin's email"},
    {"password", 0, true, false, "PASSWORD",
     "password (visible to other users in ps; prefer the prompt or --password-stdin)"},
    {"password-stdin", 0, false, false, NULL, "read the password from stdin"},
    {"display-name", 0, true, false, "NAME", "display name"},
    {"bootstrap-token", 0, true, false, "TOKEN",
     "the server's IAS_BOOTSTRAP_TOKEN (env IAS_BOOTSTRAP_TOKEN)"},
};

static const admin_cmd bootstrap_cmds[] = {
    {"create-super-admin", "create the first system admin (only while none exists)", NULL, 0, 0,
     bootstrap_flags, IAS_ARRAY_LEN(bootstrap_flags), cmd_bootstrap},
};

const admin_group admin_group_bootstrap = {"bootstrap", "first-time setup of an empty gateway",
                                           bootstrap_cmds, IAS_ARRAY_LEN(bootstrap_cmds)};

static const admin_flag login_flags[] = {
    {"email", 0, true, false, "EMAIL", "account email (env IAS_ADMIN_EMAIL)"},
    {"password", 0, true, false, "PASSWORD",
     "password (visible to other users in ps; prefer the prompt or --password-stdin)"},
    {"password-stdin", 0, false, false, NULL, "read the password from stdin"},
};

static const admin_cmd auth_cmds[] = {
    {"login", "log in; stores access and refresh tokens in the credentials file (0600)", NULL, 0, 0,
     login_flags, IAS_ARRAY_LEN(login_flags), cmd_login},
    {"logout", "revoke the refresh token and forget the stored credentials", NULL, 0, 0, NULL, 0,
     cmd_logout},
    {"whoami", "show the stored login for the current base URL", NULL, 0, 0, NULL, 0, cmd_whoami},
};

const admin_group admin_group_auth = {"auth", "log in and out", auth_cmds,
                                      IAS_ARRAY_LEN(auth_cmds)};
