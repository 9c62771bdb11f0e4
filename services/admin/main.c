/* ias-admin: "<group> <command> [args]" dispatch, global flags, and the
 * helpers every command group shares (list paging, output, org lookup). */
#include "admin.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_PAGE 200
#define ADMIN_LIST_MAX 100000 /* items merged by admin_list_all */

static const admin_group *const groups[] = {
    &admin_group_auth,  &admin_group_bootstrap, &admin_group_orgs,    &admin_group_users,
    &admin_group_keys,  &admin_group_models,    &admin_group_budgets, &admin_group_policies,
    &admin_group_usage, &admin_group_audit,
};

int admin_show_list(admin_ctx *ctx, const admin_resp *r, const admin_col *cols, size_t ncols)
{
    const cJSON *items = admin_list_items(r->json);
    if (ctx->output == ADMIN_OUT_JSON) {
        admin_json(stdout, r->json);
        return ADMIN_EXIT_OK;
    }
    if (!items) {
        fprintf(stderr, "ias-admin: the server answered something that is not a list\n");
        return ADMIN_EXIT_API;
    }
    admin_table(stdout, cols, ncols, items);
    return ADMIN_EXIT_OK;
}

int admin_show_record(admin_ctx *ctx, const admin_resp *r, const admin_col *cols, size_t ncols)
{
    if (ctx->output == ADMIN_OUT_JSON || !cJSON_IsObject(r->json)) {
        if (r->json)
            admin_json(stdout, r->json);
        return ADMIN_EXIT_OK;
    }
    admin_record(stdout, cols, ncols, r->json);
    return ADMIN_EXIT_OK;
}

cJSON *admin_list_all(admin_ctx *ctx, const char *path, const char *const *query)
{
    cJSON *all = cJSON_CreateArray();
    char *cursor = NULL;
    char limit[16];

    snprintf(limit, sizeof(limit), "%d", ADMIN_PAGE);
    for (;;) {
        char *base = admin_path_query(path, query);
        const char *kv[] = {"limit", limit, "cursor", cursor, NULL};
        char *p = admin_path_query(base, kv);
        admin_resp r;
        int rc = admin_call(ctx, "GET", p, NULL, &r);
        free(p);
        free(base);
        free(cursor);
        cursor = NULL;
        if (rc != IAS_OK) {
            cJSON_Delete(all);
            return NULL;
        }
        const cJSON *items = admin_list_items(r.json);
        if (!items) {
            fprintf(stderr, "ias-admin: GET %s did not answer a list\n", path);
            admin_resp_free(&r);
            cJSON_Delete(all);
            return NULL;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, items)
        {
            if (cJSON_GetArraySize(all) < ADMIN_LIST_MAX)
                cJSON_AddItemToArray(all, cJSON_Duplicate(it, true));
        }
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(r.json, "next_cursor");
        if (cJSON_IsString(next) && next->valuestring[0] &&
            cJSON_GetArraySize(all) < ADMIN_LIST_MAX)
            cursor = ias_xstrdup(next->valuestring);
        admin_resp_free(&r);
        if (!cursor)
            break;
    }
    return all;
}

int admin_resolve_org(admin_ctx *ctx, const char *ref, char *buf, size_t len)
{
    if (admin_is_uuid(ref))
        return ias_strlcpy(buf, ref, len);
    cJSON *orgs = admin_list_all(ctx, "/api/v1/orgs", NULL);
    const cJSON *o;
    int rc = IAS_ERR;
    if (!orgs)
        return IAS_ERR;
    cJSON_ArrayForEach(o, orgs)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
        if (cJSON_IsString(name) && cJSON_IsString(id) && strcmp(name->valuestring, ref) == 0) {
            rc = ias_strlcpy(buf, id->valuestring, len);
            break;
        }
    }
    cJSON_Delete(orgs);
    if (rc != IAS_OK)
        fprintf(stderr, "error: no org named '%s'\n", ref);
    return rc;
}

static int usage_error(const char *msg, const admin_group *g, const admin_cmd *c)
{
    fprintf(stderr, "ias-admin: %s\n", msg);
    if (g && c) {
        bool top = strcmp(g->name, "auth") == 0;
        fprintf(stderr, "Usage: ias-admin %s%s%s%s%s [flags]\n", top ? "" : g->name, top ? "" : " ",
                c->name, c->pos_usage ? " " : "", c->pos_usage ? c->pos_usage : "");
        fprintf(stderr, "Run 'ias-admin %s%s%s --help' for the flags.\n", top ? "" : g->name,
                top ? "" : " ", c->name);
    } else if (g) {
        fprintf(stderr, "Usage: ias-admin %s <subcommand> [flags]\nSubcommands:", g->name);
        for (size_t i = 0; i < g->ncmds; i++)
            fprintf(stderr, " %s", g->cmds[i].name);
        fprintf(stderr, "\n");
    } else {
        fprintf(stderr, "Usage: ias-admin [flags] <command> [subcommand] [args]\n"
                        "Run 'ias-admin --help' for the commands.\n");
    }
    return ADMIN_EXIT_USAGE;
}

/* "help [group [command]]" */
static int run_help(int argc, char **argv)
{
    const admin_group *g;
    if (argc == 0) {
        admin_usage_root(stdout, groups, IAS_ARRAY_LEN(groups));
        return ADMIN_EXIT_OK;
    }
    g = admin_group_find(groups, IAS_ARRAY_LEN(groups), argv[0]);
    const admin_cmd *c = NULL;
    if (!g && (c = admin_cmd_find(&admin_group_auth, argv[0])) != NULL)
        g = &admin_group_auth;
    if (!g)
        return usage_error("unknown help topic", NULL, NULL);
    if (!c && argc > 1) {
        c = admin_cmd_find(g, argv[1]);
        if (!c)
            return usage_error("unknown subcommand", g, NULL);
    }
    if (c)
        admin_usage_cmd(stdout, g, c);
    else
        admin_usage_group(stdout, g);
    return ADMIN_EXIT_OK;
}

/* Hidden "__complete WORDS...": prints the candidates for the next word, one
 * per line, from the same tables the parser uses (so the bash completion in
 * scripts/completion/ can never drift). WORDS are the words typed so far
 * after the program name, without the one being completed. */
static int run_complete(int argc, char **argv)
{
    const admin_group *g = NULL;
    const admin_cmd *c = NULL;
    static const char *const globals[] = {"--output", "--base-url", "--help"};

    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        if (w[0] == '-')
            continue;
        if (i > 0 && (strcmp(argv[i - 1], "--output") == 0 || strcmp(argv[i - 1], "-o") == 0 ||
                      strcmp(argv[i - 1], "--base-url") == 0))
            continue; /* a global flag's value */
        if (!g && !c) {
            g = admin_group_find(groups, IAS_ARRAY_LEN(groups), w);
            if (!g && (c = admin_cmd_find(&admin_group_auth, w)) != NULL)
                g = &admin_group_auth;
        } else if (g && !c) {
            c = admin_cmd_find(g, w);
        }
    }
    if (argc > 0 &&
        (strcmp(argv[argc - 1], "--output") == 0 || strcmp(argv[argc - 1], "-o") == 0)) {
        printf("table\njson\n");
        return ADMIN_EXIT_OK;
    }
    if (!g) {
        for (size_t i = 0; i < IAS_ARRAY_LEN(groups); i++) {
            if (groups[i] == &admin_group_auth)
                continue;
            printf("%s\n", groups[i]->name);
        }
        for (size_t i = 0; i < admin_group_auth.ncmds; i++)
            printf("%s\n", admin_group_auth.cmds[i].name);
        printf("help\nversion\n");
    } else if (!c) {
        for (size_t i = 0; i < g->ncmds; i++)
            printf("%s\n", g->cmds[i].name);
    } else {
        for (size_t k = 0; k < c->nflags; k++)
            printf("--%s\n", c->flags[k].name);
    }
    for (size_t i = 0; i < IAS_ARRAY_LEN(globals); i++)
        printf("%s\n", globals[i]);
    return ADMIN_EXIT_OK;
}

/* Copies url without trailing slashes into buf; IAS_ERR unless http(s). */
static int normalize_url(const char *url, char *buf, size_t len)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n == 0 || n >= len ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        fprintf(stderr, "ias-admin: the base URL must start with http:// or https://\n");
        return IAS_ERR;
    }
    memcpy(buf, url, n);
    buf[n] = '\0';
    return IAS_OK;
}

/* Base URL, output format and credentials for the run. */
static int setup(admin_ctx *ctx, const admin_parsed *a)
{
    const char *out = a->output ? a->output : getenv("IAS_OUTPUT");
    const char *url = a->base_url ? a->base_url : getenv("IAS_BASE_URL");
    bool explicit_url = url && url[0];

    if (!out || strcmp(out, "table") == 0) {
        ctx->output = ADMIN_OUT_TABLE;
    } else if (strcmp(out, "json") == 0) {
        ctx->output = ADMIN_OUT_JSON;
    } else {
        fprintf(stderr, "ias-admin: --output must be table or json\n");
        return ADMIN_EXIT_USAGE;
    }
    if (admin_creds_path(ctx->creds_path, sizeof(ctx->creds_path)) != IAS_OK) {
        fprintf(stderr, "ias-admin: cannot find a config directory (set HOME or "
                        "IAS_CONFIG_DIR)\n");
        return ADMIN_EXIT_USAGE;
    }
    if (explicit_url && normalize_url(url, ctx->base_url, sizeof(ctx->base_url)) != IAS_OK)
        return ADMIN_EXIT_USAGE;
    /* Without an explicit URL, use the server of the last login. */
    int rc = admin_creds_load(ctx->creds_path, explicit_url ? ctx->base_url : NULL, &ctx->creds);
    if (rc == IAS_ERR)
        return ADMIN_EXIT_API;
    if (!explicit_url && normalize_url(rc == IAS_OK ? ctx->creds.base_url : ADMIN_DEFAULT_BASE_URL,
                                       ctx->base_url, sizeof(ctx->base_url)) != IAS_OK)
        return ADMIN_EXIT_USAGE;
    ctx->have_creds = rc == IAS_OK && strcmp(ctx->creds.base_url, ctx->base_url) == 0;
    if (rc == IAS_OK && !ctx->have_creds)
        admin_creds_clear(&ctx->creds);
    return ADMIN_EXIT_OK;
}

static int dispatch(admin_ctx *ctx, int argc, char **argv)
{
    admin_parsed a;
    char err[256];
    int i = 1;

    memset(&a, 0, sizeof(a));
    if (admin_parse_globals(argc, argv, &i, &a, err, sizeof(err)) != IAS_OK)
        return usage_error(err, NULL, NULL);
    if (i >= argc) {
        if (a.help) {
            admin_usage_root(stdout, groups, IAS_ARRAY_LEN(groups));
            return ADMIN_EXIT_OK;
        }
        return usage_error("missing command", NULL, NULL);
    }
    const char *word = argv[i++];
    if (strcmp(word, "help") == 0)
        return run_help(argc - i, argv + i);
    if (strcmp(word, "__complete") == 0)
        return run_complete(argc - i, argv + i);
    if (strcmp(word, "version") == 0) {
        printf("ias-admin 1 (libcurl %s)\n", curl_version_info(CURLVERSION_NOW)->version);
        return ADMIN_EXIT_OK;
    }
    const admin_group *g = admin_group_find(groups, IAS_ARRAY_LEN(groups), word);
    const admin_cmd *c = NULL;
    if (!g && (c = admin_cmd_find(&admin_group_auth, word)) != NULL) {
        g = &admin_group_auth; /* login, logout, whoami are top-level */
    } else if (!g) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown command '%.64s'", word);
        return usage_error(msg, NULL, NULL);
    } else {
        if (admin_parse_globals(argc, argv, &i, &a, err, sizeof(err)) != IAS_OK)
            return usage_error(err, g, NULL);
        if (i >= argc) {
            if (a.help) {
                admin_usage_group(stdout, g);
                return ADMIN_EXIT_OK;
            }
            return usage_error("missing subcommand", g, NULL);
        }
        c = admin_cmd_find(g, argv[i]);
        if (!c) {
            char msg[160];
            snprintf(msg, sizeof(msg), "unknown subcommand '%.64s' for '%s'", argv[i], g->name);
            return usage_error(msg, g, NULL);
        }
        i++;
    }
    if (admin_parse(c, argc - i, argv + i, &a, err, sizeof(err)) != IAS_OK)
        return usage_error(err, g, c);
    if (a.help) {
        admin_usage_cmd(stdout, g, c);
        return ADMIN_EXIT_OK;
    }
    int rc = setup(ctx, &a);
    if (rc != ADMIN_EXIT_OK)
        return rc;
    return c->run(ctx, &a);
}

int main(int argc, char **argv)
{
    admin_ctx ctx;
    int rc;

    memset(&ctx, 0, sizeof(ctx));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ias-admin: cannot initialise libcurl\n");
        return ADMIN_EXIT_API;
    }
    rc = dispatch(&ctx, argc, argv);
    if (ctx.curl)
        curl_easy_cleanup(ctx.curl);
    admin_creds_clear(&ctx.creds);
    curl_global_cleanup();
    fflush(stdout);
    return rc;
}

static int add_list(cJSON *body, const char *json, const char *v, bool ints)
{
    cJSON *arr = cJSON_CreateArray();
    const char *p = v;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char *item = ias_xstrndup(p, n);
        if (ints) {
            uint64_t u;
            if (admin_parse_u64(item, &u) != IAS_OK) {
                free(item);
                cJSON_Delete(arr);
                return IAS_ERR;
            }
            cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)u));
        } else if (n > 0) {
            cJSON_AddItemToArray(arr, cJSON_CreateString(item));
        }
        free(item);
        p = comma ? comma + 1 : p + n;
    }
    cJSON_AddItemToObject(body, json, arr);
    return IAS_OK;
}

static bool is_decimal(const char *s)
{
    bool dot = false, digit = false;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9')
            digit = true;
        else if (*s == '.' && !dot)
            dot = true;
        else
            return false;
    }
    return digit;
}

int admin_body_fields(const admin_parsed *a, const admin_field *f, size_t n, cJSON *body)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = admin_flag_value(a, f[i].flag);
        uint64_t u;
        bool ok = true;
        if (!v)
            continue;
        switch (f[i].type) {
        case 's':
            cJSON_AddStringToObject(body, f[i].json, v);
            break;
        case 'i':
            if (strcmp(v, "none") == 0)
                cJSON_AddNullToObject(body, f[i].json);
            else if ((ok = admin_parse_u64(v, &u) == IAS_OK && u <= 9007199254740991ull))
                cJSON_AddNumberToObject(body, f[i].json, (double)u);
            break;
        case 'b':
            ok = strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
            if (ok)
                cJSON_AddBoolToObject(body, f[i].json, strcmp(v, "true") == 0);
            break;
        case 'l':
        case 'n':
            ok = add_list(body, f[i].json, v, f[i].type == 'n') == IAS_OK;
            break;
        case 'd':
            ok = is_decimal(v);
            if (ok)
                cJSON_AddStringToObject(body, f[i].json, v);
            break;
        default:
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "ias-admin: bad value for --%s: '%s'\n", f[i].flag, v);
            return IAS_ERR;
        }
    }
    return IAS_OK;
}

int admin_do_record(admin_ctx *ctx, const char *method, const char *path, const cJSON *body,
                    const admin_col *cols, size_t ncols)
{
    admin_resp r;
    if (admin_call(ctx, method, path, body, &r) != IAS_OK)
        return ADMIN_EXIT_API;
    int rc = ADMIN_EXIT_OK;
    if (r.json)
        rc = admin_show_record(ctx, &r, cols, ncols);
    else
        admin_show_done(ctx, &r, "%s", "ok");
    admin_resp_free(&r);
    return rc;
}

void admin_show_done(admin_ctx *ctx, const admin_resp *r, const char *fmt, ...)
{
    if (ctx->output == ADMIN_OUT_JSON) {
        /* Scripts parse stdout: a body-less 204 still yields JSON. */
        if (r->json)
            admin_json(stdout, r->json);
        else
            printf("{\n\t\"ok\":\ttrue\n}\n");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

int admin_do_list(admin_ctx *ctx, const char *path, const char *const *query, const admin_col *cols,
                  size_t ncols)
{
    cJSON *all = admin_list_all(ctx, path, query);
    if (!all)
        return ADMIN_EXIT_API;
    if (ctx->output == ADMIN_OUT_JSON) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "data", all);
        admin_json(stdout, o);
        cJSON_Delete(o);
    } else {
        admin_table(stdout, cols, ncols, all);
        cJSON_Delete(all);
    }
    return ADMIN_EXIT_OK;
}
