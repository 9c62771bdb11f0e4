/* ias-router: model registry cache, backend choice, streaming proxy to model
 * servers, usage extraction, budget settle and usage events.
 *
 * Threads: the server's worker loops (requests), one loader thread (registry
 * fetch + active health checks, on its own event_base), one AMQP consumer thread
 * (config.models.changed hints) and the publisher thread (usage events). Workers
 * share only the registry snapshot (refcounted, swapped under a short lock) and
 * the per-backend state (atomics). */
#ifndef IAS_ROUTER_H
#define IAS_ROUTER_H

#include <pthread.h>
#include <stdatomic.h>

#include "ias/amqp.h"
#include "ias/common.h"
#include "ias/http_server.h"
#include "ias/metrics.h"
#include "ias/openai.h"

typedef struct ias_http_client ias_http_client;
typedef struct ias_redis_async ias_redis_async;
typedef struct ias_log_ctx ias_log_ctx;
typedef struct cJSON cJSON;
typedef struct router_gr_cache router_gr_cache;

/* ---- backend state: shared by every snapshot and worker ---- */

typedef struct router_backend_state {
    char *key;                  /* "<id>|<url>": a changed URL is a new backend */
    atomic_int outstanding;     /* requests in flight, all workers */
    atomic_int fails;           /* consecutive failures (passive) */
    atomic_llong open_until_ms; /* breaker: 0 closed; else open until (monotonic ms) */
    atomic_bool probing;        /* half-open: one probe request claimed */
    atomic_bool healthy;        /* last active health check (true until one fails) */
    struct router_backend_state *next;
} router_backend_state;

typedef struct router_backend {
    char *id;
    char *url; /* without trailing slash */
    char *upstream_model;
    int weight; /* 0 drains */
    router_backend_state *st;
} router_backend;

typedef struct router_model {
    char *name;
    long long context_length;
    char *fallback; /* NULL: none */
    router_backend *backends;
    size_t nbackends;
} router_model;

/* Immutable once published; freed when the last reference goes. */
typedef struct router_snapshot {
    atomic_int refs;
    char *version;
    router_model *models;
    size_t nmodels;
} router_snapshot;

/* ---- configuration and context ---- */

typedef struct router_cfg {
    const char *users_url;
    const char *redis_url;
    const char *amqp_url;
    const char *spool_dir;
    const char *internal_token; /* "" none */
    const char *registry_file;  /* "" none: the users service */
    const char *pdp_url;        /* "" none: requests with guardrails get 503 */
    long long pdp_timeout_ms;
    long long registry_ttl_ms;
    long long connect_ms, first_token_ms, idle_ms, total_ms;
    long long max_idle; /* idle upstream connections per backend and worker */
    long long health_interval_ms, health_timeout_ms;
    long long breaker_failures, breaker_cooldown_ms;
    long long max_attempts;
    long long high_water, low_water;
    long long max_response_bytes; /* non-streaming upstream body cap */
    long long retry_after_s;
} router_cfg;

typedef struct router_ctx {
    router_cfg cfg;
    ias_publisher *pub;

    /* registry */
    pthread_mutex_t snap_lock; /* guards snap pointer + its refcount increment */
    router_snapshot *snap;     /* NULL until the first load */
    pthread_mutex_t states_lock;
    router_backend_state *states;
    atomic_bool reload_requested;
    atomic_bool stop;
    pthread_t loader;
    bool loader_started;
    pthread_t consumer;
    bool consumer_started;
    atomic_bool consumer_stop;

    /* metrics */
    ias_counter *m_requests_ok, *m_requests_err, *m_retries, *m_aborted;
    ias_counter *m_usage_events, *m_usage_lost, *m_reloads, *m_reload_errors;
    ias_gauge *m_registry_models;
    ias_counter *m_gr_blocked, *m_gr_redacted, *m_gr_fetch_errors;
} router_ctx;

/* Per worker thread. */
typedef struct router_worker {
    ias_http_client *http;
    ias_redis_async *redis;
    router_gr_cache *grc; /* compiled guardrail profiles by version id */
    uint64_t rng;
    /* Released call records kept for reuse: a record is a few KiB, and
     * allocating one per request made glibc consolidate its fast bins. */
    struct rcall *spare_calls;
    unsigned nspare_calls;
} router_worker;

/* ---- registry.c ---- */
int router_registry_start(router_ctx *ctx) IAS_MUSTCHECK;
void router_registry_stop(router_ctx *ctx);
/* A reference to the current snapshot, or NULL before the first load. */
router_snapshot *router_registry_acquire(router_ctx *ctx);
void router_registry_release(router_snapshot *s);
const router_model *router_registry_find(const router_snapshot *s, const char *name);
/* Parses the /internal/models JSON into a snapshot (states from ctx). IAS_ERR and a
 * reason on bad input. */
int router_registry_parse(router_ctx *ctx, const char *json, size_t len, router_snapshot **out,
                          char *err, size_t errlen) IAS_MUSTCHECK;
void router_registry_free_states(router_ctx *ctx);

/* ---- balance.c ---- */
/* Picks a backend of m not in the tried mask (bit i = backend i), by weighted
 * power of two choices on outstanding/weight among available backends; claims
 * the half-open probe when the breaker's cool-down passed. -1 when none. */
int router_balance_pick(router_ctx *ctx, const router_model *m, uint64_t tried, uint64_t *rng);
/* Whether any backend of m could take a request now (for fallback). */
bool router_balance_any_available(const router_model *m, uint64_t now_ms);
void router_balance_success(router_backend_state *st);
void router_balance_failure(router_ctx *ctx, router_backend_state *st);

/* ---- guardrail.c: obligations from X-Ias-Guardrails ---- */
enum { ROUTER_GR_MAX_IDS = 8 };
typedef struct router_guard router_guard;
typedef enum {
    ROUTER_GR_PASS = 0, /* forward the event's raw bytes */
    ROUTER_GR_REWRITE,  /* send *out instead */
    ROUTER_GR_STOP,     /* send *out (released text, content_filter chunk, [DONE]), end */
} router_gr_verdict;
typedef void (*router_guard_ready_cb)(router_guard *g, int status, const char *why, void *arg);
typedef struct router_guard_who {
    const char *org_id, *user_id, *key_id, *request_id, *model;
} router_guard_who;

router_gr_cache *router_gr_cache_new(void);
void router_gr_cache_free(router_gr_cache *c);
/* NULL/blank header: *out = NULL. IAS_ERR + why when malformed. */
int router_guard_new(const char *header, router_guard **out, char *why,
                     size_t whylen) IAS_MUSTCHECK;
/* IAS_OK: every profile was cached; IAS_AGAIN: cb follows (once, unless freed
 * first); IAS_ERR: why. */
int router_guard_resolve(router_guard *g, router_ctx *ctx, router_worker *w, const ias_log_ctx *log,
                         router_guard_ready_cb cb, void *arg, char *why, size_t whylen);
/* Prompt side, in place on the request tree: chat messages' text, a
 * completion's "prompt" or an embedding's "input" strings. IAS_ERR: refused (msg). */
int router_guard_prompt(router_guard *g, cJSON *body, ias_openai_kind kind, char *msg,
                        size_t msglen);
bool router_guard_has_output(const router_guard *g);
/* Some profile has prompt rules (deny patterns or PII redaction). */
bool router_guard_has_prompt(const router_guard *g);
/* One upstream SSE event's data; *out valid until the next call. */
router_gr_verdict router_guard_event(router_guard *g, bool chat, const char *data, size_t len,
                                     const char **out, size_t *outlen);
/* Non-streaming body; *out (malloc'd) the rewritten body, NULL when unchanged. */
int router_guard_body(router_guard *g, bool chat, const char *body, size_t len, char **out);
/* One audit.router.guardrail_violation event per violation recorded so far. */
void router_guard_publish(router_guard *g, router_ctx *ctx, const router_guard_who *who);
void router_guard_cancel(router_guard *g); /* a pending fetch: cb will not come */
void router_guard_free(router_guard *g);   /* cancels a pending fetch */

/* ---- proxy.c ---- */
void router_handle_chat(ias_req *r, void *ctx);
void router_handle_completions(ias_req *r, void *ctx);
void router_handle_embeddings(ias_req *r, void *ctx);
/* Frees the worker's spare call records (at worker teardown). */
void router_proxy_worker_fini(router_worker *rw);

#endif
