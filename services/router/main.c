/* ias-router: config table, context, per-worker state and routes. The proxy
 * (proxy.c), backend choice (balance.c), registry (registry.c) and usage
 * accounting (usage.c) do the work. */
#include "router.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/budget.h"
#include "ias/config.h"
#include "ias/crypto.h"
#include "ias/http_client.h"
#include "ias/log.h"
#include "ias/redis.h"
#include "ias/service.h"

static const ias_cfg_row config_rows[] = {
    IAS_SERVICE_CFG_ROWS("8081"),
    {"IAS_USERS_URL", IAS_CFG_URL, "http://127.0.0.1:8085", 0, 0,
     "users service (GET /internal/models)"},
    {"IAS_REDIS_URL", IAS_CFG_URL, NULL, 0, 0, "Redis for budget settle"},
    {"IAS_SETTLE_BATCH_WAIT", IAS_CFG_MS, "5ms", 0, IAS_BUDGET_SETTLE_WAIT_MAX_MS,
     "longest a budget settle waits for others to share its Redis script call (Redis's cost is "
     "per call); its reservation counts in full meanwhile; 0: sent at the end of the loop "
     "iteration"},
    {"IAS_AMQP_URL", IAS_CFG_URL, NULL, 0, 0, "RabbitMQ for usage events and config hints"},
    {"IAS_SPOOL_DIR", IAS_CFG_STR, "./.run/spool/router", 0, 0,
     "usage event spool while RabbitMQ is away"},
    {"IAS_EVENTS_PACK_MAX", IAS_CFG_INT, "256", 1, 1024,
     "most events (usage, guardrail audit) sent in one RabbitMQ message; 1: one message per "
     "event"},
    {"IAS_EVENTS_PACK_WAIT", IAS_CFG_MS, "50ms", 0, 1000,
     "longest an event waits for others to share its message (the broker's cost is per "
     "message)"},
    {"IAS_EVENTS_JOURNAL", IAS_CFG_BOOL, "true", 0, 0,
     "also write each event to a crash journal in IAS_SPOOL_DIR/journal (write() only, no "
     "fsync) until it is confirmed or spooled, so a crash of the router loses no event; "
     "duplicates after a crash are deduped by event id"},
    {"IAS_INTERNAL_TOKEN", IAS_CFG_SECRET, "", 0, 0,
     "when set, requests must carry X-Ias-Internal-Token"},
    {"IAS_REGISTRY_FILE", IAS_CFG_STR, "", 0, 0,
     "JSON file shaped like /internal/models, used instead of the users service"},
    {"IAS_PDP_URL", IAS_CFG_STR, "", 0, 0,
     "pdp for guardrail profiles (GET /internal/guardrails/{id}); empty: requests that carry "
     "X-Ias-Guardrails get 503"},
    {"IAS_PDP_TIMEOUT", IAS_CFG_MS, "2s", 10, 60000, "one guardrail profile fetch"},
    {"IAS_REGISTRY_TTL", IAS_CFG_MS, "30s", 1000, 86400000, "registry reload period at worst"},
    {"IAS_UPSTREAM_CONNECT_TIMEOUT", IAS_CFG_MS, "3s", 10, 600000, "backend TCP connect"},
    {"IAS_UPSTREAM_FIRST_TOKEN_TIMEOUT", IAS_CFG_MS, "60s", 10, 3600000,
     "stream: request sent to first event"},
    {"IAS_UPSTREAM_IDLE_TIMEOUT", IAS_CFG_MS, "60s", 10, 3600000,
     "stream: longest gap between events"},
    {"IAS_UPSTREAM_TOTAL_TIMEOUT", IAS_CFG_MS, "10m", 100, 86400000, "whole upstream call"},
    {"IAS_UPSTREAM_MAX_IDLE", IAS_CFG_INT, "256", 1, 65536,
     "idle keep-alive connections kept per backend and worker (more concurrent calls than "
     "this reconnect each time)"},
    {"IAS_HEALTH_INTERVAL", IAS_CFG_MS, "5s", 100, 3600000, "active backend health checks"},
    {"IAS_HEALTH_TIMEOUT", IAS_CFG_MS, "2s", 10, 60000, "one health check"},
    {"IAS_BREAKER_FAILURES", IAS_CFG_INT, "3", 1, 1000,
     "consecutive failures that open a backend's circuit"},
    {"IAS_BREAKER_COOLDOWN", IAS_CFG_MS, "10s", 10, 3600000,
     "open circuit time before one half-open probe"},
    {"IAS_UPSTREAM_MAX_ATTEMPTS", IAS_CFG_INT, "3", 1, 64,
     "backends tried per request before the first byte"},
    {"IAS_STREAM_HIGH_WATER", IAS_CFG_BYTES, "64k", 1024, 64 << 20,
     "client bytes queued before upstream reading pauses"},
    {"IAS_STREAM_LOW_WATER", IAS_CFG_BYTES, "16k", 0, 64 << 20, "resume upstream reading below"},
    {"IAS_UPSTREAM_MAX_RESPONSE_BYTES", IAS_CFG_BYTES, "8M", 1024, 1LL << 30,
     "largest non-streaming upstream answer"},
    {"IAS_RETRY_AFTER", IAS_CFG_INT, "5", 1, 3600, "Retry-After seconds on 503"},
    {"IAS_UNIX_SOCKET", IAS_CFG_STR, "", 0, 0,
     "also listen on this unix socket (mode 0660, a stale socket file is replaced) for an "
     "ingress in the same pod (its IAS_ROUTER_URL=unix:/that/path); empty: TCP only"},
};

/* IAS_SETTLE_BATCH_WAIT: config, set once in main() before the workers start. */
static unsigned settle_wait_ms;

static const ias_route routes[] = {
    {"POST", "/v1/chat/completions", router_handle_chat},
    {"POST", "/v1/completions", router_handle_completions},
    {"POST", "/v1/embeddings", router_handle_embeddings},
};

static void load_cfg(const ias_config *cfg, router_cfg *c)
{
    c->users_url = ias_config_str(cfg, "IAS_USERS_URL");
    c->redis_url = ias_config_str(cfg, "IAS_REDIS_URL");
    c->amqp_url = ias_config_str(cfg, "IAS_AMQP_URL");
    c->spool_dir = ias_config_str(cfg, "IAS_SPOOL_DIR");
    c->internal_token = ias_config_str(cfg, "IAS_INTERNAL_TOKEN");
    c->registry_file = ias_config_str(cfg, "IAS_REGISTRY_FILE");
    c->registry_ttl_ms = ias_config_ms(cfg, "IAS_REGISTRY_TTL");
    c->pdp_url = ias_config_str(cfg, "IAS_PDP_URL");
    c->pdp_timeout_ms = ias_config_ms(cfg, "IAS_PDP_TIMEOUT");
    c->connect_ms = ias_config_ms(cfg, "IAS_UPSTREAM_CONNECT_TIMEOUT");
    c->first_token_ms = ias_config_ms(cfg, "IAS_UPSTREAM_FIRST_TOKEN_TIMEOUT");
    c->idle_ms = ias_config_ms(cfg, "IAS_UPSTREAM_IDLE_TIMEOUT");
    c->max_idle = ias_config_int(cfg, "IAS_UPSTREAM_MAX_IDLE");
    c->total_ms = ias_config_ms(cfg, "IAS_UPSTREAM_TOTAL_TIMEOUT");
    c->health_interval_ms = ias_config_ms(cfg, "IAS_HEALTH_INTERVAL");
    c->health_timeout_ms = ias_config_ms(cfg, "IAS_HEALTH_TIMEOUT");
    c->breaker_failures = ias_config_int(cfg, "IAS_BREAKER_FAILURES");
    c->breaker_cooldown_ms = ias_config_ms(cfg, "IAS_BREAKER_COOLDOWN");
    c->max_attempts = ias_config_int(cfg, "IAS_UPSTREAM_MAX_ATTEMPTS");
    c->high_water = ias_config_bytes(cfg, "IAS_STREAM_HIGH_WATER");
    c->low_water = ias_config_bytes(cfg, "IAS_STREAM_LOW_WATER");
    c->max_response_bytes = ias_config_bytes(cfg, "IAS_UPSTREAM_MAX_RESPONSE_BYTES");
    c->retry_after_s = ias_config_int(cfg, "IAS_RETRY_AFTER");
    if (c->low_water > c->high_water)
        c->low_water = c->high_water / 2;
}

static int worker_init(ias_worker *w, void *arg)
{
    router_ctx *ctx = arg;
    router_worker *rw = ias_xcalloc(1, sizeof(*rw));
    ias_http_client_opts ho = {.connect_ms = (int)ctx->cfg.connect_ms,
                               .max_idle_per_host = (size_t)ctx->cfg.max_idle};

    if (ias_random_bytes(&rw->rng, sizeof(rw->rng)) != IAS_OK)
        rw->rng = ias_now_us() ^ (uint64_t)(uintptr_t)rw;
    rw->http = ias_http_client_new(ias_worker_base(w), &ho);
    rw->redis = ias_redis_async_new(ias_worker_base(w), ctx->cfg.redis_url);
    rw->grc = router_gr_cache_new();
    if (rw->http == NULL || rw->redis == NULL ||
        ias_budget_set_settle_wait(rw->redis, settle_wait_ms) != IAS_OK) {
        if (rw->http)
            ias_http_client_free(rw->http);
        if (rw->redis)
            ias_redis_async_free(rw->redis);
        router_gr_cache_free(rw->grc);
        free(rw);
        return IAS_ERR;
    }
    ias_worker_set_data(w, rw);
    return IAS_OK;
}

static void worker_fini(ias_worker *w, void *arg)
{
    router_worker *rw = ias_worker_data(w);

    if (rw == NULL)
        return;
    /* Settles still queued (IAS_SETTLE_BATCH_WAIT) or unanswered go out and are
     * answered before the client is freed: a drained router loses none. Each
     * batch ends within the client's command timeout; twice that is the bound. */
    if (ias_budget_drain(rw->redis, 2 * IAS_REDIS_ASYNC_TIMEOUT_MS) != IAS_OK)
        ias_warn(NULL, "budget settles still unanswered at exit (their reservations will expire)");
    ias_http_client_free(rw->http);
    ias_redis_async_free(rw->redis);
    (void)event_base_loop(ias_worker_base(w), EVLOOP_NONBLOCK); /* deferred frees */
    router_proxy_worker_fini(rw);
    router_gr_cache_free(rw->grc);
    free(rw);
    ias_worker_set_data(w, NULL);
}

static int ready(void *arg, ias_worker *w, char *why, size_t whylen)
{
    router_ctx *ctx = arg;
    router_worker *rw = ias_worker_data(w);
    router_snapshot *s = router_registry_acquire(ctx);

    router_registry_release(s);
    if (s == NULL) {
        snprintf(why, whylen, "model registry not loaded yet");
        return IAS_ERR;
    }
    if (rw == NULL || !ias_redis_async_connected(rw->redis)) {
        snprintf(why, whylen, "redis not connected");
        return IAS_ERR;
    }
    return IAS_OK;
}

static void metrics_init(router_ctx *ctx)
{
    ctx->m_requests_ok = ias_metrics_counter("router_requests_total", "Inference requests finished",
                                             "result=\"ok\"");
    ctx->m_requests_err = ias_metrics_counter("router_requests_total",
                                              "Inference requests finished", "result=\"error\"");
    ctx->m_retries = ias_metrics_counter("router_upstream_retries_total",
                                         "Attempts that failed before the first byte", NULL);
    ctx->m_aborted =
        ias_metrics_counter("router_aborted_total", "Requests cut by the client or upstream", NULL);
    ctx->m_usage_events = ias_metrics_counter("router_usage_events_total",
                                              "Usage events handed to the publisher", NULL);
    ctx->m_usage_lost = ias_metrics_counter("router_usage_events_lost_total",
                                            "Usage events the publisher refused", NULL);
    ctx->m_reloads =
        ias_metrics_counter("router_registry_reloads_total", "Registry snapshots swapped in", NULL);
    ctx->m_reload_errors =
        ias_metrics_counter("router_registry_errors_total", "Registry loads that failed", NULL);
    ctx->m_registry_models =
        ias_metrics_gauge("router_registry_models", "Models in the current registry", NULL);
    ctx->m_gr_blocked = ias_metrics_counter("router_guardrail_violations_total",
                                            "Guardrail rule matches", "action=\"deny\"");
    ctx->m_gr_redacted = ias_metrics_counter("router_guardrail_violations_total",
                                             "Guardrail rule matches", "action=\"redact\"");
    ctx->m_gr_fetch_errors =
        ias_metrics_counter("router_guardrail_fetch_errors_total",
                            "Guardrail profiles that could not be fetched or compiled", NULL);
}

int main(void)
{
    ias_config *cfg =
        ias_config_load_or_exit("ias-router", config_rows, IAS_ARRAY_LEN(config_rows));
    ias_server_opts opts = {0};
    ias_server *srv = NULL;
    router_ctx *ctx = ias_xcalloc(1, sizeof(*ctx));
    int rc = 1;

    if (ias_service_init(cfg, "router", &opts) != IAS_OK) {
        fprintf(stderr, "ias-router: invalid configuration (above)\n");
        ias_config_free(cfg);
        free(ctx);
        return 2;
    }
    load_cfg(cfg, &ctx->cfg);
    settle_wait_ms = (unsigned)ias_config_ms(cfg, "IAS_SETTLE_BATCH_WAIT");
    pthread_mutex_init(&ctx->snap_lock, NULL);
    pthread_mutex_init(&ctx->states_lock, NULL);
    metrics_init(ctx);

    /* Our threads (publisher, loader, consumer) must not take SIGTERM/SIGINT: the
     * server waits for them in its own thread; threads inherit this mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    ias_publisher_opts po = {.url = ctx->cfg.amqp_url,
                             .spool_dir = ctx->cfg.spool_dir,
                             .name = "router",
                             .pack_max = (size_t)ias_config_int(cfg, "IAS_EVENTS_PACK_MAX"),
                             .pack_wait_ms = (int)ias_config_ms(cfg, "IAS_EVENTS_PACK_WAIT"),
                             .journal = ias_config_bool(cfg, "IAS_EVENTS_JOURNAL")};
    ctx->pub = ias_publisher_new(&po);
    if (ctx->pub == NULL) {
        ias_error(NULL, "cannot start the usage publisher (spool %s)", ctx->cfg.spool_dir);
        goto out;
    }
    if (router_registry_start(ctx) != IAS_OK)
        goto out;

    opts.openai_errors = true;
    opts.routes = routes;
    opts.nroutes = IAS_ARRAY_LEN(routes);
    opts.ctx = ctx;
    opts.ready = ready;
    opts.worker_init = worker_init;
    opts.worker_fini = worker_fini;
    opts.unix_path = ias_config_str(cfg, "IAS_UNIX_SOCKET");
    srv = ias_server_new(&opts);
    if (srv == NULL) {
        ias_error(NULL, "cannot create the server");
        goto out;
    }
    ias_info(NULL, "router on %s:%d, registry from %s", opts.bind_addr, opts.port,
             ctx->cfg.registry_file[0] ? ctx->cfg.registry_file : ctx->cfg.users_url);
    rc = ias_server_run(srv) == IAS_OK ? 0 : 1;
out:
    ias_server_free(srv);
    router_registry_stop(ctx);
    ias_publisher_free(ctx->pub); /* after the workers: their last events are queued */
    router_registry_free_states(ctx);
    pthread_mutex_destroy(&ctx->snap_lock);
    pthread_mutex_destroy(&ctx->states_lock);
    free(ctx);
    ias_config_free(cfg);
    return rc;
}
