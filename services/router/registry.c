/* Model registry: loaded off the event loops by a loader thread (its own
 * event_base and HTTP client), parsed into an immutable snapshot and swapped in
 * under a short lock; workers hold a reference per request. The same thread runs
 * the active health checks. A consumer thread turns config.models.changed hints
 * into a reload request that the loader notices within its 100 ms tick. */
#include "router.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/http_client.h"
#include "ias/log.h"

enum {
    LOADER_TICK_MS = 100,
    REGISTRY_MAX_BYTES = 8 * 1024 * 1024,
    MAX_BACKENDS_PER_MODEL = 64, /* the retry mask is a uint64_t */
};

/* ---- snapshots ---- */

router_snapshot *router_registry_acquire(router_ctx *ctx)
{
    router_snapshot *s;

    pthread_mutex_lock(&ctx->snap_lock);
    s = ctx->snap;
    if (s != NULL)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&ctx->snap_lock);
    return s;
}

static void snapshot_free(router_snapshot *s)
{
    for (size_t i = 0; i < s->nmodels; i++) {
        router_model *m = &s->models[i];

        for (size_t j = 0; j < m->nbackends; j++) {
            free(m->backends[j].id);
            free(m->backends[j].url);
            free(m->backends[j].upstream_model);
        }
        free(m->backends);
        free(m->name);
        free(m->fallback);
    }
    free(s->models);
    free(s->version);
    free(s);
}

void router_registry_release(router_snapshot *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
        snapshot_free(s);
}

const router_model *router_registry_find(const router_snapshot *s, const char *name)
{
    for (size_t i = 0; s != NULL && i < s->nmodels; i++)
        if (strcmp(s->models[i].name, name) == 0)
            return &s->models[i];
    return NULL;
}

static void swap_in(router_ctx *ctx, router_snapshot *s)
{
    router_snapshot *old;

    pthread_mutex_lock(&ctx->snap_lock);
    old = ctx->snap;
    ctx->snap = s;
    pthread_mutex_unlock(&ctx->snap_lock);
    router_registry_release(old);
    ias_gauge_set(ctx->m_registry_models, (int64_t)s->nmodels);
}

/* Backend states outlive snapshots so counters and breakers survive reloads. */
static router_backend_state *state_get(router_ctx *ctx, const char *id, const char *url)
{
    char *key = ias_xasprintf("%s|%s", id, url);
    router_backend_state *st;

    pthread_mutex_lock(&ctx->states_lock);
    for (st = ctx->states; st != NULL; st = st->next)
        if (strcmp(st->key, key) == 0)
            break;
    if (st == NULL) {
        st = ias_xcalloc(1, sizeof(*st));
        st->key = key;
        key = NULL;
        atomic_init(&st->outstanding, 0);
        atomic_init(&st->fails, 0);
        atomic_init(&st->open_until_ms, 0);
        atomic_init(&st->probing, false);
        atomic_init(&st->healthy, true);
        st->next = ctx->states;
        ctx->states = st;
    }
    pthread_mutex_unlock(&ctx->states_lock);
    free(key);
    return st;
}

void router_registry_free_states(router_ctx *ctx)
{
    router_backend_state *st = ctx->states, *next;

    for (; st != NULL; st = next) {
        next = st->next;
        free(st->key);
        free(st);
    }
    ctx->states = NULL;
}

static char *opt_string(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) && v->valuestring[0] != '\0' ? ias_xstrdup(v->valuestring) : NULL;
}

static int parse_backend(router_ctx *ctx, const cJSON *b, router_backend *out, char *err,
                         size_t errlen)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "id");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(b, "url");
    const cJSON *weight = cJSON_GetObjectItemCaseSensitive(b, "weight");
    ias_http_url u;
    size_t n;

    if (!cJSON_IsString(id) || !cJSON_IsString(url) || id->valuestring[0] == '\0' ||
        ias_http_url_parse(url->valuestring, &u) != IAS_OK) {
        snprintf(err, errlen, "backend without a valid id and http:// url");
        return IAS_ERR;
    }
    if (weight != NULL &&
        (!cJSON_IsNumber(weight) || weight->valuedouble < 0 || weight->valuedouble > 1000000)) {
        snprintf(err, errlen, "backend %s: weight must be 0..1000000", id->valuestring);
        return IAS_ERR;
    }
    out->id = ias_xstrdup(id->valuestring);
    out->url = ias_xstrdup(url->valuestring);
    n = strlen(out->url);
    while (n > 0 && out->url[n - 1] == '/')
        out->url[--n] = '\0';
    out->weight = weight == NULL ? 1 : (int)weight->valuedouble;
    out->upstream_model = opt_string(b, "upstream_model");
    out->st = state_get(ctx, out->id, out->url);
    return IAS_OK;
}

int router_registry_parse(router_ctx *ctx, const char *json, size_t len, router_snapshot **out,
                          char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *models, *m;
    router_snapshot *s;
    size_t i = 0;

    *out = NULL;
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "registry is not a JSON object");
        cJSON_Delete(root);
        return IAS_ERR;
    }
    models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (!cJSON_IsArray(models)) {
        snprintf(err, errlen, "registry has no \"models\" array");
        cJSON_Delete(root);
        return IAS_ERR;
    }
    s = ias_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->version = opt_string(root, "version");
    if (s->version == NULL)
        s->version = ias_xstrdup("");
    s->models = ias_xcalloc((size_t)cJSON_GetArraySize(models) + 1, sizeof(router_model));
    cJSON_ArrayForEach(m, models)
    {
        router_model *rm = &s->models[i];
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        const cJSON *ctxlen = cJSON_GetObjectItemCaseSensitive(m, "context_length");
        const cJSON *backends = cJSON_GetObjectItemCaseSensitive(m, "backends");
        const cJSON *b;
        size_t nb;

        if (!cJSON_IsString(name) || name->valuestring[0] == '\0') {
            snprintf(err, errlen, "model without a name");
            goto fail;
        }
        nb = cJSON_IsArray(backends) ? (size_t)cJSON_GetArraySize(backends) : 0;
        if (nb > MAX_BACKENDS_PER_MODEL) {
            snprintf(err, errlen, "model %s: more than %d backends", name->valuestring,
                     MAX_BACKENDS_PER_MODEL);
            goto fail;
        }
        rm->name = ias_xstrdup(name->valuestring);
        rm->context_length = cJSON_IsNumber(ctxlen) ? (long long)ctxlen->valuedouble : 0;
        rm->fallback = opt_string(m, "fallback_model");
        rm->backends = ias_xcalloc(nb + 1, sizeof(router_backend));
        s->nmodels = ++i;
        cJSON_ArrayForEach(b, backends)
        {
            if (parse_backend(ctx, b, &rm->backends[rm->nbackends], err, errlen) != IAS_OK)
                goto fail;
            rm->nbackends++;
        }
    }
    cJSON_Delete(root);
    *out = s;
    return IAS_OK;
fail:
    cJSON_Delete(root);
    snapshot_free(s);
    return IAS_ERR;
}

/* ---- loader thread ---- */

typedef struct loader {
    router_ctx *ctx;
    struct event_base *base;
    ias_http_client *http;
    struct event *tick;
    uint64_t next_load_ms, next_health_ms;
    bool loading;
    int health_inflight;
} loader;

static void apply_json(loader *l, const char *body, size_t len, const char *from)
{
    router_snapshot *s, *cur;
    char err[256];

    if (router_registry_parse(l->ctx, body, len, &s, err, sizeof(err)) != IAS_OK) {
        ias_counter_inc(l->ctx->m_reload_errors);
        ias_error(NULL, "registry from %s rejected: %s", from, err);
        return;
    }
    cur = router_registry_acquire(l->ctx);
    if (cur != NULL && s->version[0] != '\0' && strcmp(cur->version, s->version) == 0) {
        router_registry_release(cur);
        router_registry_release(s); /* unchanged */
        return;
    }
    router_registry_release(cur);
    ias_counter_inc(l->ctx->m_reloads);
    ias_info(NULL, "registry loaded from %s: %zu models, version %s", from, s->nmodels,
             s->version[0] ? s->version : "(none)");
    swap_in(l->ctx, s);
}

static void load_file(loader *l)
{
    const char *path = l->ctx->cfg.registry_file;
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        ias_counter_inc(l->ctx->m_reload_errors);
        ias_error(NULL, "registry file %s: %s", path, strerror(errno));
        return;
    }
    buf = ias_xmalloc(REGISTRY_MAX_BYTES + 1);
    n = fread(buf, 1, REGISTRY_MAX_BYTES + 1, f);
    if (ferror(f) || n > REGISTRY_MAX_BYTES) {
        ias_counter_inc(l->ctx->m_reload_errors);
        ias_error(NULL, "registry file %s: unreadable or over %d bytes", path, REGISTRY_MAX_BYTES);
    } else {
        apply_json(l, buf, n, path);
    }
    free(buf);
    fclose(f);
}

static void on_models(const ias_http_fetch_result *res, void *arg)
{
    loader *l = arg;

    l->loading = false;
    if (res->result != IAS_HTTP_OK || res->status != 200) {
        ias_counter_inc(l->ctx->m_reload_errors);
        ias_error(NULL, "registry fetch from users failed: %s %d %s",
                  ias_http_result_str(res->result), res->status, res->error);
        l->next_load_ms = ias_now_ms() + 1000; /* retry soon, not at the TTL */
        return;
    }
    apply_json(l, res->body, res->body_len, "users");
}

static void load(loader *l)
{
    router_cfg *cfg = &l->ctx->cfg;

    if (cfg->registry_file[0] != '\0') {
        load_file(l);
        return;
    }
    if (l->loading)
        return;
    char *url = ias_xasprintf("%s/internal/models", cfg->users_url);
    ias_http_header h[1] = {{"X-Ias-Internal-Token", cfg->internal_token}};
    ias_http_request req = {.method = "GET",
                            .url = url,
                            .headers = h,
                            .nheaders = cfg->internal_token[0] ? 1 : 0,
                            .connect_ms = 2000,
                            .first_byte_ms = 5000,
                            .total_ms = 10000,
                            .max_body_bytes = REGISTRY_MAX_BYTES};
    l->loading = ias_http_client_fetch(l->http, &req, on_models, l) != NULL;
    if (!l->loading)
        ias_error(NULL, "registry fetch: invalid users URL %s", url);
    free(url);
}

typedef struct health_probe {
    loader *l;
    router_backend_state *st;
} health_probe;

static void on_health(const ias_http_fetch_result *res, void *arg)
{
    health_probe *p = arg;
    bool ok = res->result == IAS_HTTP_OK && res->status == 200;
    bool was = atomic_exchange(&p->st->healthy, ok);

    if (was != ok)
        ias_warn(NULL, "backend %s is %s (health check: %s %d)", p->st->key,
                 ok ? "healthy again" : "unhealthy", ias_http_result_str(res->result), res->status);
    p->l->health_inflight--;
    free(p);
}

static void health_round(loader *l)
{
    router_snapshot *s = router_registry_acquire(l->ctx);

    if (s == NULL || l->health_inflight > 0) {
        router_registry_release(s);
        return;
    }
    for (size_t i = 0; i < s->nmodels; i++) {
        for (size_t j = 0; j < s->models[i].nbackends; j++) {
            router_backend *b = &s->models[i].backends[j];
            char *url = ias_xasprintf("%s/health", b->url);
            int t = (int)l->ctx->cfg.health_timeout_ms;
            ias_http_request req = {.method = "GET",
                                    .url = url,
                                    .connect_ms = t,
                                    .first_byte_ms = t,
                                    .total_ms = t,
                                    .max_body_bytes = 4096};
            health_probe *p = ias_xcalloc(1, sizeof(*p));

            p->l = l;
            p->st = b->st; /* states live until the router stops */
            if (ias_http_client_fetch(l->http, &req, on_health, p) == NULL)
                free(p);
            else
                l->health_inflight++;
            free(url);
        }
    }
    router_registry_release(s);
}

static void arm_tick(loader *l)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = LOADER_TICK_MS * 1000};

    if (evtimer_add(l->tick, &tv) != 0)
        ias_die("router: evtimer_add failed");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    loader *l = arg;
    router_ctx *ctx = l->ctx;
    uint64_t now = ias_now_ms();

    if (atomic_load(&ctx->stop)) {
        event_base_loopexit(l->base, NULL);
        return;
    }
    if (atomic_exchange(&ctx->reload_requested, false) || now >= l->next_load_ms) {
        l->next_load_ms = now + (uint64_t)ctx->cfg.registry_ttl_ms;
        load(l);
    }
    if (now >= l->next_health_ms) {
        l->next_health_ms = now + (uint64_t)ctx->cfg.health_interval_ms;
        health_round(l);
    }
    arm_tick(l);
}

static void *loader_main(void *arg)
{
    loader *l = arg;

    l->next_health_ms = ias_now_ms() + (uint64_t)l->ctx->cfg.health_interval_ms;
    arm_tick(l);
    if (event_base_dispatch(l->base) < 0)
        ias_error(NULL, "registry loader loop failed");
    ias_http_client_free(l->http);
    event_free(l->tick);
    (void)event_base_loop(l->base, EVLOOP_NONBLOCK); /* lets the resolver go */
    event_base_free(l->base);
    free(l);
    return NULL;
}

/* ---- config.models.changed consumer ---- */

static ias_consume_result on_config(const ias_amqp_msg *msg, void *arg)
{
    router_ctx *ctx = arg;

    ias_debug(NULL, "config hint %s: registry reload", msg->routing_key);
    atomic_store(&ctx->reload_requested, true);
    return IAS_CONSUME_ACK;
}

static void on_config_ready(const char *queue, void *arg)
{
    router_ctx *ctx = arg;

    /* Hints may have been missed while disconnected: reload everything. */
    atomic_store(&ctx->reload_requested, true);
}

static void *consumer_main(void *arg)
{
    router_ctx *ctx = arg;
    static const char *const keys[] = {"config.models.changed"};
    ias_consumer_opts o = {.url = ctx->cfg.amqp_url,
                           .name = "router-config",
                           .queue = NULL,
                           .bind_keys = keys,
                           .nbind_keys = 1,
                           .handler = on_config,
                           .on_ready = on_config_ready,
                           .arg = ctx,
                           .stop = &ctx->consumer_stop};

    if (ias_consumer_run(&o) != IAS_OK)
        ias_error(NULL, "config consumer: invalid options");
    return NULL;
}

int router_registry_start(router_ctx *ctx)
{
    loader *l = ias_xcalloc(1, sizeof(*l));

    l->ctx = ctx;
    l->base = event_base_new();
    if (l->base == NULL)
        goto fail;
    l->http = ias_http_client_new(l->base, NULL);
    l->tick = evtimer_new(l->base, on_tick, l);
    if (l->http == NULL || l->tick == NULL)
        goto fail;
    atomic_store(&ctx->reload_requested, true);
    if (pthread_create(&ctx->loader, NULL, loader_main, l) != 0)
        goto fail;
    ctx->loader_started = true;
    if (ctx->cfg.amqp_url[0] != '\0') {
        if (pthread_create(&ctx->consumer, NULL, consumer_main, ctx) != 0) {
            ias_error(NULL, "cannot start the config consumer thread");
            return IAS_ERR;
        }
        ctx->consumer_started = true;
    }
    return IAS_OK;
fail:
    ias_error(NULL, "cannot start the registry loader");
    if (l->http)
        ias_http_client_free(l->http);
    if (l->tick)
        event_free(l->tick);
    if (l->base)
        event_base_free(l->base);
    free(l);
    return IAS_ERR;
}

void router_registry_stop(router_ctx *ctx)
{
    atomic_store(&ctx->stop, true);
    atomic_store(&ctx->consumer_stop, true);
    if (ctx->loader_started)
        pthread_join(ctx->loader, NULL);
    if (ctx->consumer_started)
        pthread_join(ctx->consumer, NULL);
    ctx->loader_started = ctx->consumer_started = false;
    pthread_mutex_lock(&ctx->snap_lock);
    router_snapshot *s = ctx->snap;
    ctx->snap = NULL;
    pthread_mutex_unlock(&ctx->snap_lock);
    router_registry_release(s);
}
