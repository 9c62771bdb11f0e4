/* ias-ingress: config table, context, route table, per-worker state. */
#include "ingress.h"

#include "ias/log.h"
#include "ias/service.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const ias_cfg_row config_rows[] = {
    IAS_SERVICE_CFG_ROWS("8080"),
    {"IAS_REDIS_URL", IAS_CFG_URL, NULL, 0, 0, "Redis: key cache, budgets, rate limits"},
    {"IAS_AMQP_URL", IAS_CFG_STR, "", 0, 0, "RabbitMQ for config.keys.changed (empty: none)"},
    {"IAS_USERS_URL", IAS_CFG_URL, NULL, 0, 0, "users service (keys, models, management)"},
    {"IAS_ROUTER_URL", IAS_CFG_STR, NULL, 0, 0,
     "router for /v1 completions and embeddings: http://host:port, or unix:/path/router.sock for a "
     "router in "
     "the same pod (its IAS_UNIX_SOCKET)"},
    {"IAS_PDP_URL", IAS_CFG_STR, "", 0, 0, "policy decision point (empty: built-in decision)"},
    {"IAS_REGION", IAS_CFG_STR, "", 0, 0,
     "this ingress's region, sent to pdp as environment.region ([A-Za-z0-9._-], at most 63; "
     "empty: none)"},
    {"IAS_ACCOUNTING_URL", IAS_CFG_STR, "", 0, 0, "accounting service (/api/v1/usage*)"},
    {"IAS_AUDIT_URL", IAS_CFG_STR, "", 0, 0, "audit service (/api/v1/audit*)"},
    {"IAS_INTERNAL_TOKEN", IAS_CFG_SECRET, "", 0, 0, "X-Ias-Internal-Token for /internal calls"},
    {"IAS_KEY_CACHE_TTL", IAS_CFG_MS, "1s", 0, 60000, "per-worker API key cache lifetime"},
    {"IAS_MODELS_CACHE_TTL", IAS_CFG_MS, "5s", 100, 3600000, "model registry snapshot lifetime"},
    {"IAS_POLICY_CACHE_TTL", IAS_CFG_MS, "2s", 0, 600000, "longest a policy decision is reused"},
    {"IAS_DEFAULT_MAX_TOKENS", IAS_CFG_INT, "4096", 1, IAS_OPENAI_MAX_TOKENS_LIMIT,
     "completion tokens reserved per completion generated (n or best_of, x prompts) when the "
     "client sets no max_tokens"},
    {"IAS_RESERVATION_TTL", IAS_CFG_MS, "10m", 1000, 86400000,
     "an unsettled budget reservation stops counting after this"},
    {"IAS_ORG_RPS_DEFAULT", IAS_CFG_INT, "0", 0, 10000000, "requests/s per org (0: unlimited)"},
    {"IAS_KEY_RPS_DEFAULT", IAS_CFG_INT, "0", 0, 10000000, "requests/s per key (0: unlimited)"},
    {"IAS_UPSTREAM_CONNECT_TIMEOUT", IAS_CFG_MS, "3s", 1, 600000, "connect to router / services"},
    {"IAS_UPSTREAM_FIRST_BYTE_TIMEOUT", IAS_CFG_MS, "120s", 1, 3600000,
     "router response head (covers the model's time to first token)"},
    {"IAS_UPSTREAM_IDLE_TIMEOUT", IAS_CFG_MS, "120s", 1, 3600000, "gap between response bytes"},
    {"IAS_UPSTREAM_MAX_IDLE", IAS_CFG_INT, "256", 1, 65536,
     "idle keep-alive connections kept per upstream service and worker"},
    {"IAS_UPSTREAM_TOTAL_TIMEOUT", IAS_CFG_MS, "0", 0, 86400000, "whole call (0: none)"},
    {"IAS_LOOKUP_TIMEOUT", IAS_CFG_MS, "2s", 1, 60000, "users / pdp lookups on the request path"},
    {"IAS_STREAM_HIGH_WATER", IAS_CFG_BYTES, "64k", 1024, 64 << 20,
     "client bytes queued before the upstream is paused"},
    {"IAS_FORWARD_HEADER_PREFIX", IAS_CFG_STR, "", 0, 0,
     "client headers with this name prefix go on to the model server (e.g. X-Mock- for "
     "mockllm in tests and benchmarks; never X-Ias-*; empty: none)"},
};

static const ias_route routes[] = {
    {"POST", "/v1/chat/completions", ingress_handle_chat},
    {"POST", "/v1/completions", ingress_handle_completions},
    {"POST", "/v1/embeddings", ingress_handle_embeddings},
    {"GET", "/v1/models", ingress_handle_models},
    {"GET", "/v1/models/{*model}", ingress_handle_model},
    {"GET", "/api/v1/{*rest}", ingress_handle_mgmt},
    {"POST", "/api/v1/{*rest}", ingress_handle_mgmt},
    {"PUT", "/api/v1/{*rest}", ingress_handle_mgmt},
    {"PATCH", "/api/v1/{*rest}", ingress_handle_mgmt},
    {"DELETE", "/api/v1/{*rest}", ingress_handle_mgmt},
};

ingress_worker *ingress_worker_of(ias_req *req)
{
    return ias_worker_data(ias_req_worker(req));
}

static int worker_init(ias_worker *iw, void *arg)
{
    ingress_ctx *ctx = arg;
    ingress_worker *w = ias_xcalloc(1, sizeof(*w));
    ias_http_client_opts ho = {.connect_ms = ctx->connect_ms,
                               .first_byte_ms = ctx->first_byte_ms,
                               .idle_ms = ctx->idle_ms,
                               .max_idle_per_host = (size_t)ctx->max_idle};

    w->ctx = ctx;
    w->redis = ias_redis_async_new(ias_worker_base(iw), ctx->redis_url);
    w->http = ias_http_client_new(ias_worker_base(iw), &ho);
    w->keys = ingress_lru_new(INGRESS_LRU_SLOTS);
    w->policy = ingress_policy_cache_new();
    w->inval_seen = atomic_load(&ctx->inval.gen);
    if (!w->redis || !w->http) {
        if (w->redis)
            ias_redis_async_free(w->redis);
        if (w->http)
            ias_http_client_free(w->http);
        ingress_lru_free(w->keys);
        ingress_policy_cache_free(w->policy);
        free(w);
        return IAS_ERR;
    }
    ias_worker_set_data(iw, w);
    return IAS_OK;
}

static void worker_fini(ias_worker *iw, void *arg)
{
    ingress_worker *w = ias_worker_data(iw);
    (void)arg;
    if (!w)
        return;
    ias_http_client_free(w->http);
    ias_redis_async_free(w->redis);
    ingress_lru_free(w->keys);
    ingress_policy_cache_free(w->policy);
    ingress_models_free(w);
    free(w);
    ias_worker_set_data(iw, NULL);
}

static int ready(void *arg, ias_worker *iw, char *why, size_t whylen)
{
    ingress_worker *w = ias_worker_data(iw);
    (void)arg;
    if (!w || !ias_redis_async_connected(w->redis)) {
        snprintf(why, whylen, "redis not connected");
        return IAS_ERR;
    }
    return IAS_OK;
}

/* A base URL that a path is appended to: http://host[:port], or unix:<path>,
 * kept as "unix:<path>:" so that "<base>/v1/x" names the socket and the path
 * (ias_http_url_parse). */
static int copy_url(const ias_config *cfg, const char *name, char *dst, size_t len, bool required)
{
    const char *v = ias_config_str(cfg, name);
    size_t n = strlen(v);
    bool is_unix = strncmp(v, "unix:", 5) == 0;
    ias_http_url u;

    while (!is_unix && n > 0 && v[n - 1] == '/')
        n--; /* "http://x:1/" and "http://x:1" mean the same base */
    if (n + (is_unix ? 1 : 0) >= len || (required && n == 0) ||
        (n > 0 && !is_unix && strncmp(v, "http://", 7) != 0) ||
        (is_unix && (strchr(v + 5, ':') || ias_http_url_parse(v, &u) != IAS_OK))) {
        fprintf(stderr,
                "  %s: want an http:// base URL under %zu bytes, or unix:<socket path> (no ':', "
                "under %d bytes)\n",
                name, len, (int)IAS_HTTP_UNIX_PATH_MAX);
        return IAS_ERR;
    }
    memcpy(dst, v, n);
    if (is_unix)
        dst[n++] = ':';
    dst[n] = '\0';
    return IAS_OK;
}

static int load_ctx(const ias_config *cfg, ingress_ctx *ctx)
{
    int rc = IAS_OK;
    if (ias_strlcpy(ctx->redis_url, ias_config_str(cfg, "IAS_REDIS_URL"), sizeof(ctx->redis_url)) !=
            IAS_OK ||
        ias_strlcpy(ctx->amqp_url, ias_config_str(cfg, "IAS_AMQP_URL"), sizeof(ctx->amqp_url)) !=
            IAS_OK ||
        ias_strlcpy(ctx->internal_token, ias_config_str(cfg, "IAS_INTERNAL_TOKEN"),
                    sizeof(ctx->internal_token)) != IAS_OK) {
        fprintf(stderr, "  IAS_REDIS_URL / IAS_AMQP_URL / IAS_INTERNAL_TOKEN: too long\n");
        rc = IAS_ERR;
    }
    if (copy_url(cfg, "IAS_USERS_URL", ctx->users_url, sizeof(ctx->users_url), true) != IAS_OK)
        rc = IAS_ERR;
    if (copy_url(cfg, "IAS_ROUTER_URL", ctx->router_url, sizeof(ctx->router_url), true) != IAS_OK)
        rc = IAS_ERR;
    if (copy_url(cfg, "IAS_PDP_URL", ctx->pdp_url, sizeof(ctx->pdp_url), false) != IAS_OK)
        rc = IAS_ERR;
    if (copy_url(cfg, "IAS_ACCOUNTING_URL", ctx->accounting_url, sizeof(ctx->accounting_url),
                 false) != IAS_OK)
        rc = IAS_ERR;
    if (copy_url(cfg, "IAS_AUDIT_URL", ctx->audit_url, sizeof(ctx->audit_url), false) != IAS_OK)
        rc = IAS_ERR;
    if (ias_strlcpy(ctx->forward_prefix, ias_config_str(cfg, "IAS_FORWARD_HEADER_PREFIX"),
                    sizeof(ctx->forward_prefix)) != IAS_OK ||
        strncasecmp(ctx->forward_prefix, "x-ias", 5) == 0) {
        fprintf(stderr, "  IAS_FORWARD_HEADER_PREFIX: at most 63 bytes, not X-Ias*\n");
        rc = IAS_ERR;
    }
    if (ias_strlcpy(ctx->region, ias_config_str(cfg, "IAS_REGION"), sizeof(ctx->region)) !=
            IAS_OK ||
        ctx->region[strspn(ctx->region, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789._-")] != '\0') {
        fprintf(stderr, "  IAS_REGION: at most 63 of [A-Za-z0-9._-]\n");
        rc = IAS_ERR;
    }
    ctx->key_cache_ttl_ms = ias_config_ms(cfg, "IAS_KEY_CACHE_TTL");
    ctx->models_cache_ttl_ms = ias_config_ms(cfg, "IAS_MODELS_CACHE_TTL");
    ctx->policy_cache_ttl_ms = ias_config_ms(cfg, "IAS_POLICY_CACHE_TTL");
    ctx->default_max_tokens = ias_config_int(cfg, "IAS_DEFAULT_MAX_TOKENS");
    ctx->reservation_ttl_ms = ias_config_ms(cfg, "IAS_RESERVATION_TTL");
    ctx->org_rps_default = ias_config_int(cfg, "IAS_ORG_RPS_DEFAULT");
    ctx->key_rps_default = ias_config_int(cfg, "IAS_KEY_RPS_DEFAULT");
    ctx->connect_ms = (int)ias_config_ms(cfg, "IAS_UPSTREAM_CONNECT_TIMEOUT");
    ctx->first_byte_ms = (int)ias_config_ms(cfg, "IAS_UPSTREAM_FIRST_BYTE_TIMEOUT");
    ctx->idle_ms = (int)ias_config_ms(cfg, "IAS_UPSTREAM_IDLE_TIMEOUT");
    ctx->max_idle = ias_config_int(cfg, "IAS_UPSTREAM_MAX_IDLE");
    ctx->total_ms = (int)ias_config_ms(cfg, "IAS_UPSTREAM_TOTAL_TIMEOUT");
    if (ctx->total_ms == 0)
        ctx->total_ms = -1;
    ctx->lookup_ms = (int)ias_config_ms(cfg, "IAS_LOOKUP_TIMEOUT");
    ctx->stream_high_water = (size_t)ias_config_bytes(cfg, "IAS_STREAM_HIGH_WATER");
    ctx->max_body_bytes = (size_t)ias_config_bytes(cfg, "IAS_MAX_BODY_BYTES");
    return rc;
}

int main(void)
{
    ias_config *cfg =
        ias_config_load_or_exit("ias-ingress", config_rows, IAS_ARRAY_LEN(config_rows));
    ias_server_opts opts = {0};
    ias_server *srv;
    ingress_ctx *ctx = ias_xcalloc(1, sizeof(*ctx));
    int rc = 1;

    ingress_inval_init(&ctx->inval);
    if (load_ctx(cfg, ctx) != IAS_OK || ias_service_init(cfg, "ingress", &opts) != IAS_OK) {
        fprintf(stderr, "ias-ingress: invalid configuration (above)\n");
        ingress_inval_destroy(&ctx->inval);
        free(ctx);
        ias_config_free(cfg);
        return 2;
    }
    ctx->auth_fail =
        ias_metrics_counter("ingress_auth_failures_total", "Requests refused 401", NULL);
    ctx->rate_limited =
        ias_metrics_counter("ingress_rate_limited_total", "Requests refused 429 by rate", NULL);
    ctx->budget_refused =
        ias_metrics_counter("ingress_budget_refused_total", "Requests refused 429 by budget", NULL);
    ctx->upstream_errors =
        ias_metrics_counter("ingress_upstream_errors_total", "Upstream calls that failed", NULL);
    ctx->key_lookups_users = ias_metrics_counter(
        "ingress_key_lookups_users_total", "Key lookups that reached the users service", NULL);
    ctx->streams_active =
        ias_metrics_gauge("ingress_streams_active", "Upstream responses being relayed", NULL);

    opts.openai_errors = false;
    opts.openai_path_prefix = "/v1/";
    opts.routes = routes;
    opts.nroutes = IAS_ARRAY_LEN(routes);
    opts.ctx = ctx;
    opts.ready = ready;
    opts.worker_init = worker_init;
    opts.worker_fini = worker_fini;
    opts.handle_signals = true;

    if (ctx->amqp_url[0] && ingress_consumer_start(ctx) != IAS_OK) {
        ias_error(NULL, "cannot start the config.keys.changed consumer");
        goto out;
    }
    srv = ias_server_new(&opts);
    if (srv == NULL) {
        ias_error(NULL, "cannot create the server");
        goto out;
    }
    ias_info(NULL, "ingress on %s:%d -> router %s", opts.bind_addr, opts.port, ctx->router_url);
    rc = ias_server_run(srv) == IAS_OK ? 0 : 1;
    ias_server_free(srv);
out:
    ingress_consumer_stop(ctx);
    ingress_inval_destroy(&ctx->inval);
    free(ctx);
    ias_config_free(cfg);
    return rc;
}
