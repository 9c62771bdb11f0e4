/* Model registry snapshot per worker (GET {users}/internal/models, refreshed
 * after IAS_MODELS_CACHE_TTL or a config.models.changed) and GET /v1/models. */
#include "ingress.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ingress_models_waiter {
    ingress_models_cb cb;
    void *arg;
    struct ingress_models_waiter *next;
} ingress_models_waiter;

static void models_clear(ingress_worker *w)
{
    for (size_t i = 0; i < w->nmodels; i++) {
        free(w->models[i].name);
        for (size_t t = 0; t < w->models[i].ntags; t++)
            free(w->models[i].tags[t]);
        free(w->models[i].tags);
    }
    free(w->models);
    w->models = NULL;
    w->nmodels = 0;
}

void ingress_models_free(ingress_worker *w)
{
    models_clear(w);
    while (w->models_waiters) {
        ingress_models_waiter *n = w->models_waiters->next;
        free(w->models_waiters);
        w->models_waiters = n;
    }
}

/* The users service caps a model at 50 tags (0002_keys_models); more, or a
 * non-string, is skipped rather than trusted. */
#define MODEL_TAGS_MAX 50

static void parse_tags(const cJSON *arr, ingress_model *m)
{
    const cJSON *t;
    int n = cJSON_GetArraySize(arr);

    if (!cJSON_IsArray(arr) || n == 0)
        return;
    m->tags = ias_xcalloc((size_t)(n < MODEL_TAGS_MAX ? n : MODEL_TAGS_MAX), sizeof(char *));
    cJSON_ArrayForEach(t, arr)
    {
        if (m->ntags == MODEL_TAGS_MAX)
            break;
        if (cJSON_IsString(t))
            m->tags[m->ntags++] = ias_xstrdup(t->valuestring);
    }
}

static int models_parse(ingress_worker *w, const char *body, size_t len)
{
    cJSON *o = cJSON_ParseWithLength(body, len);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "models"), *it;
    ingress_model *m;
    size_t n = 0;

    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(o);
        return IAS_ERR;
    }
    m = ias_xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*m));
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(it, "context_length");
        if (!cJSON_IsString(name))
            continue;
        m[n].name = ias_xstrdup(name->valuestring);
        m[n].context_length =
            cJSON_IsNumber(cl) && cl->valuedouble > 0 ? (int64_t)cl->valuedouble : 0;
        parse_tags(cJSON_GetObjectItemCaseSensitive(it, "tags"), &m[n]);
        n++;
    }
    cJSON_Delete(o);
    models_clear(w);
    w->models = m;
    w->nmodels = n;
    return IAS_OK;
}

static void on_models(const ias_http_fetch_result *res, void *arg)
{
    ingress_worker *w = arg;
    ingress_models_waiter *list;
    int status = IAS_OK;

    w->models_fetching = false;
    if (res->result == IAS_HTTP_OK && res->status == 200 &&
        models_parse(w, res->body, res->body_len) == IAS_OK) {
        w->models_fetched_ms = (int64_t)ias_now_ms();
    } else {
        ias_warn(NULL, "model registry fetch failed: %s status %d %s",
                 ias_http_result_str(res->result), res->status, res->error);
        /* A stale snapshot beats refusing every request while users is away. */
        if (w->models_fetched_ms == 0 && w->nmodels == 0)
            status = IAS_ERR;
    }
    list = w->models_waiters;
    w->models_waiters = NULL;
    while (list) {
        ingress_models_waiter *next = list->next;
        list->cb(status, list->arg);
        free(list);
        list = next;
    }
}

int ingress_models_ensure(ingress_worker *w, ingress_models_cb cb, void *arg)
{
    ingress_ctx *ctx = w->ctx;
    ingress_models_waiter *wt;

    if (w->models_fetched_ms != 0 &&
        (int64_t)ias_now_ms() - w->models_fetched_ms < ctx->models_cache_ttl_ms)
        return IAS_OK;
    wt = ias_xmalloc(sizeof(*wt));
    wt->cb = cb;
    wt->arg = arg;
    wt->next = w->models_waiters;
    w->models_waiters = wt;
    if (!w->models_fetching) {
        char url[INGRESS_URL_MAX + 32];
        ias_http_header hdr[1] = {{"X-Ias-Internal-Token", ctx->internal_token}};
        ias_http_request hr = {.method = "GET",
                               .url = url,
                               .headers = hdr,
                               .nheaders = ctx->internal_token[0] ? 1 : 0,
                               .total_ms = ctx->lookup_ms,
                               .max_body_bytes = 8 << 20};
        snprintf(url, sizeof(url), "%s/internal/models", ctx->users_url);
        w->models_fetching = true;
        if (!ias_http_client_fetch(w->http, &hr, on_models, w)) {
            /* Invalid URL: fail the waiters on the next callback path. */
            w->models_fetching = false;
            w->models_waiters = wt->next;
            free(wt);
            return IAS_ERR;
        }
    }
    return IAS_AGAIN;
}

const ingress_model *ingress_models_find(const ingress_worker *w, const char *name)
{
    for (size_t i = 0; i < w->nmodels; i++)
        if (strcmp(w->models[i].name, name) == 0)
            return &w->models[i];
    return NULL;
}

/* ---- GET /v1/models and GET /v1/models/{model} ---- */

/* One call of either route: want is the model asked for ("" = the list). */
typedef struct list_call {
    ias_req *req;
    ingress_key key;
    char want[IAS_OPENAI_MAX_MODEL_LEN + 1];
    bool one;
} list_call;

static void list_free(list_call *c)
{
    ias_req_release(c->req);
    ingress_key_free(&c->key);
    free(c);
}

static cJSON *model_object(const ingress_model *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->name);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", 0);
    cJSON_AddStringToObject(o, "owned_by", "ias");
    if (m->context_length > 0)
        cJSON_AddNumberToObject(o, "context_length", (double)m->context_length);
    return o;
}

/* A model the key's org may not use answers exactly as one that does not exist,
 * so the registry of other orgs cannot be probed. */
static void one_reply(list_call *c)
{
    ingress_worker *w = ingress_worker_of(c->req);
    const ingress_model *m = c->want[0] ? ingress_models_find(w, c->want) : NULL;
    cJSON *o;

    if (m == NULL || !ingress_key_allows(&c->key, m->name)) {
        (void)ias_reply_openai_error(c->req, 404, "invalid_request_error", "model_not_found",
                                     "model",
                                     "The model `%s` does not exist or you do not have "
                                     "access to it.",
                                     c->want);
        return;
    }
    o = model_object(m);
    (void)ias_reply_json(c->req, 200, o);
    cJSON_Delete(o);
}

static void list_reply(list_call *c)
{
    ingress_worker *w = ingress_worker_of(c->req);
    cJSON *o, *data;

    if (c->one) {
        one_reply(c);
        return;
    }
    o = cJSON_CreateObject();
    data = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToObject(o, "data", data);
    for (size_t i = 0; i < w->nmodels; i++) {
        if (ingress_key_allows(&c->key, w->models[i].name))
            cJSON_AddItemToArray(data, model_object(&w->models[i]));
    }
    (void)ias_reply_json(c->req, 200, o);
    cJSON_Delete(o);
}

static void on_list_models(int status, void *arg)
{
    list_call *c = arg;
    if (!ias_req_closed(c->req)) {
        if (status != IAS_OK) {
            (void)ias_reply_retry_after(c->req, 1);
            (void)ias_reply_openai_error(c->req, 503, "server_error", "registry_unavailable", NULL,
                                         "The model registry is unavailable; retry shortly.");
        } else {
            list_reply(c);
        }
    }
    list_free(c);
}

static void list_with_key(list_call *c)
{
    ingress_worker *w = ingress_worker_of(c->req);
    int rc;
    if (!ingress_key_usable(&c->key)) {
        ias_counter_inc(w->ctx->auth_fail);
        (void)ias_reply_openai_error(c->req, 401, "invalid_request_error", "invalid_api_key", NULL,
                                     "Incorrect API key provided.");
        list_free(c);
        return;
    }
    rc = ingress_models_ensure(w, on_list_models, c);
    if (rc == IAS_OK) {
        list_reply(c);
        list_free(c);
    } else if (rc == IAS_ERR) {
        on_list_models(IAS_ERR, c);
    }
}

static void on_list_key(int status, const ingress_key *k, void *arg)
{
    list_call *c = arg;
    if (ias_req_closed(c->req)) {
        list_free(c);
        return;
    }
    if (status != IAS_OK) {
        (void)ias_reply_retry_after(c->req, 1);
        (void)ias_reply_openai_error(c->req, 503, "server_error", "auth_unavailable", NULL,
                                     "API key verification is unavailable; retry shortly.");
        list_free(c);
        return;
    }
    ingress_key_copy(&c->key, k);
    list_with_key(c);
}

static void models_start(ias_req *req, const char *want)
{
    ingress_worker *w = ingress_worker_of(req);
    list_call *c = ias_xcalloc(1, sizeof(*c));

    ingress_inval_drain(w);
    c->req = req;
    c->one = want != NULL;
    if (want != NULL)
        snprintf(c->want, sizeof(c->want), "%s", want); /* longer names exist nowhere */
    ias_req_retain(req);
    if (ingress_key_lookup(w, ias_req_header(req, "Authorization"), &c->key, on_list_key, c) ==
        IAS_OK)
        list_with_key(c);
}

void ingress_handle_models(ias_req *req, void *ctxp)
{
    (void)ctxp;
    models_start(req, NULL);
}

/* {*model}: model names may hold '/' (vLLM serves "org/name"); the SDKs send it
 * percent-encoded as one segment, curl users often raw. */
void ingress_handle_model(ias_req *req, void *ctxp)
{
    const char *want = ias_req_param(req, "model");

    (void)ctxp;
    models_start(req, want != NULL ? want : "");
}
