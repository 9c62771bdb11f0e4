/* models list|add|update|disable|enable|remove: the model registry (system
 * admin). A model is named by id or by name. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const admin_col model_cols[] = {
    {"ID", "id"},
    {"NAME", "name"},
    {"ENABLED", "enabled"},
    {"CONTEXT", "context_length"},
    {"IN/1K", "input_rate_per_1k"},
    {"OUT/1K", "output_rate_per_1k"},
    {"BACKENDS", "backends"},
};

static const admin_field model_fields[] = {
    {"context-length", "context_length", 'i'},
    {"input-rate", "input_rate_per_1k", 'd'},
    {"output-rate", "output_rate_per_1k", 'd'},
    {"fallback", "fallback_model", 's'},
    {"tags", "tags", 'l'},
};

/* --backend URL[,URL...] with optional --weights W[,W...] in the same order. */
static int add_backends(const admin_parsed *a, cJSON *body)
{
    const char *urls = admin_flag_value(a, "backend");
    const char *weights = admin_flag_value(a, "weights");
    if (!urls) {
        if (weights) {
            fprintf(stderr, "ias-admin: --weights needs --backend\n");
            return IAS_ERR;
        }
        return IAS_OK;
    }
    cJSON *arr = cJSON_AddArrayToObject(body, "backends");
    const char *u = urls, *w = weights;
    while (*u) {
        const char *uc = strchr(u, ',');
        size_t un = uc ? (size_t)(uc - u) : strlen(u);
        cJSON *b = cJSON_CreateObject();
        char *url = ias_xstrndup(u, un);
        cJSON_AddStringToObject(b, "url", url);
        free(url);
        if (w && *w) {
            const char *wc = strchr(w, ',');
            size_t wn = wc ? (size_t)(wc - w) : strlen(w);
            char *ws = ias_xstrndup(w, wn);
            uint64_t n;
            int ok = admin_parse_u64(ws, &n) == IAS_OK && n <= 1000;
            free(ws);
            if (!ok) {
                cJSON_Delete(b);
                fprintf(stderr, "ias-admin: --weights: integers 0..1000, one per backend\n");
                return IAS_ERR;
            }
            cJSON_AddNumberToObject(b, "weight", (double)n);
            w = wc ? wc + 1 : w + wn;
        }
        cJSON_AddItemToArray(arr, b);
        u = uc ? uc + 1 : u + un;
    }
    return IAS_OK;
}

/* The API takes a model's id or its name in the path. */
static char *model_path(const char *ref)
{
    char *e = admin_escape(ref);
    char *path = ias_xasprintf("/api/v1/models/%s", e);
    free(e);
    return path;
}

static int cmd_list(admin_ctx *ctx, const admin_parsed *a)
{
    IAS_UNUSED(a);
    static const admin_col cols[] = {
        {"ID", "id"},
        {"NAME", "name"},
        {"ENABLED", "enabled"},
        {"CONTEXT", "context_length"},
        {"IN/1K", "input_rate_per_1k"},
        {"OUT/1K", "output_rate_per_1k"},
        {"FALLBACK", "fallback_model"},
    };
    return admin_do_list(ctx, "/api/v1/models", NULL, cols, IAS_ARRAY_LEN(cols));
}

static int cmd_add(admin_ctx *ctx, const admin_parsed *a)
{
    const char *name = a->npos > 0 ? a->pos[0] : admin_flag_value(a, "name");
    if (!name || (a->npos > 0 && admin_flag_set(a, "name"))) {
        fprintf(stderr, "ias-admin: give the model's name once, as NAME or --name\n"
                        "Usage: ias-admin models add NAME [flags]\n");
        return ADMIN_EXIT_USAGE;
    }
    if (!admin_flag_set(a, "context-length")) {
        fprintf(stderr, "ias-admin: missing required flag --context-length\n"
                        "Usage: ias-admin models add NAME --context-length N [flags]\n");
        return ADMIN_EXIT_USAGE;
    }
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "name", name);
    if (admin_body_fields(a, model_fields, IAS_ARRAY_LEN(model_fields), body) != IAS_OK ||
        add_backends(a, body) != IAS_OK) {
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    if (admin_flag_set(a, "disabled"))
        cJSON_AddFalseToObject(body, "enabled");
    int rc =
        admin_do_record(ctx, "POST", "/api/v1/models", body, model_cols, IAS_ARRAY_LEN(model_cols));
    cJSON_Delete(body);
    return rc;
}

static int patch_model(admin_ctx *ctx, const char *ref, cJSON *body)
{
    char *path = model_path(ref);
    int rc = admin_do_record(ctx, "PATCH", path, body, model_cols, IAS_ARRAY_LEN(model_cols));
    free(path);
    cJSON_Delete(body);
    return rc;
}

static int cmd_update(admin_ctx *ctx, const admin_parsed *a)
{
    cJSON *body = cJSON_CreateObject();
    if (admin_body_fields(a, model_fields, IAS_ARRAY_LEN(model_fields), body) != IAS_OK ||
        admin_body_fields(a, (const admin_field[]){{"enabled", "enabled", 'b'}}, 1, body) !=
            IAS_OK ||
        add_backends(a, body) != IAS_OK) {
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    if (cJSON_GetArraySize(body) == 0) {
        cJSON_Delete(body);
        fprintf(stderr, "ias-admin: nothing to update (see ias-admin models update --help)\n");
        return ADMIN_EXIT_USAGE;
    }
    return patch_model(ctx, a->pos[0], body);
}

static int cmd_disable(admin_ctx *ctx, const admin_parsed *a)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddFalseToObject(body, "enabled");
    return patch_model(ctx, a->pos[0], body);
}

static int cmd_enable(admin_ctx *ctx, const admin_parsed *a)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddTrueToObject(body, "enabled");
    return patch_model(ctx, a->pos[0], body);
}

static int cmd_get(admin_ctx *ctx, const admin_parsed *a)
{
    char *path = model_path(a->pos[0]);
    int rc = admin_do_record(ctx, "GET", path, NULL, model_cols, IAS_ARRAY_LEN(model_cols));
    free(path);
    return rc;
}

static int cmd_remove(admin_ctx *ctx, const admin_parsed *a)
{
    admin_resp r;
    char *path = model_path(a->pos[0]);
    int rc = admin_call(ctx, "DELETE", path, NULL, &r) == IAS_OK ? ADMIN_EXIT_OK : ADMIN_EXIT_API;
    free(path);
    if (rc == ADMIN_EXIT_OK) {
        admin_show_done(ctx, &r, "model %s removed", a->pos[0]);
        admin_resp_free(&r);
    }
    return rc;
}

#define MODEL_FLAGS                                                                                \
    {"backend", 0, true, false, "URL[,URL]", "OpenAI-compatible backend URLs"},                    \
        {"weights", 0, true, false, "W[,W]", "backend weights 0..1000, in --backend order"},       \
        {"context-length", 0, true, false, "N", "context length in tokens"},                       \
        {"input-rate", 0, true, false, "DEC", "price per 1k prompt tokens"},                       \
        {"output-rate", 0, true, false, "DEC", "price per 1k completion tokens"},                  \
        {"fallback", 0, true, false, "MODEL", "model to use when this one fails"},                 \
    {                                                                                              \
        "tags", 0, true, false, "A,B", "tags for policies"                                         \
    }

static const admin_flag add_flags[] = {
    {"name", 0, true, false, "NAME", "the model's name (or give it as NAME)"},
    MODEL_FLAGS,
    {"disabled", 0, false, false, NULL, "register it disabled"},
};

static const admin_flag update_flags[] = {
    MODEL_FLAGS,
    {"enabled", 0, true, false, "true|false", "enable or disable"},
};

static const admin_cmd cmds[] = {
    {"list", "list the model registry", NULL, 0, 0, NULL, 0, cmd_list},
    {"add", "register a model", "NAME", 0, 1, add_flags, IAS_ARRAY_LEN(add_flags), cmd_add},
    {"get", "show a model with its backends", "MODEL", 1, 1, NULL, 0, cmd_get},
    {"update", "change a model (--backend replaces the backends)", "MODEL", 1, 1, update_flags,
     IAS_ARRAY_LEN(update_flags), cmd_update},
    {"disable", "stop routing requests to a model", "MODEL", 1, 1, NULL, 0, cmd_disable},
    {"enable", "route requests to a model again", "MODEL", 1, 1, NULL, 0, cmd_enable},
    {"remove", "delete a model from the registry", "MODEL", 1, 1, NULL, 0, cmd_remove},
};

const admin_group admin_group_models = {"models", "manage the model registry", cmds,
                                        IAS_ARRAY_LEN(cmds)};
