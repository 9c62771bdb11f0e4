/* ias-ingress: the public entry. /v1 (OpenAI API) with key auth, rate limits,
 * policy, budget reservation and a streaming pass-through to the router;
 * /api/v1 reverse-proxied by prefix to the owning service. */
#ifndef IAS_INGRESS_H
#define IAS_INGRESS_H

#include "ias/common.h"
#include "ias/config.h"
#include "ias/http_client.h"
#include "ias/http_server.h"
#include "ias/metrics.h"
#include "ias/openai.h"
#include "ias/redis.h"

#include <pthread.h>
#include <stdatomic.h>

#define INGRESS_ID_MAX 64      /* uuids and role names */
#define INGRESS_URL_MAX 512    /* peer base URLs */
#define INGRESS_LRU_SLOTS 4096 /* key cache entries per worker */
#define INGRESS_INVAL_LOG 1024 /* invalidations remembered for workers to drain */
#define INGRESS_MAX_ALLOWED 256

/* ---- invalidation (invalidate.c) ---- */

typedef struct ingress_inval_entry {
    uint64_t gen;
    char kind[16];               /* "keys", "models", "policies", "budgets" */
    char org_id[INGRESS_ID_MAX]; /* "" = every org */
    char id[INGRESS_ID_MAX];     /* key id / model name; "" = all of org (or everything) */
} ingress_inval_entry;

/* Written by the consumer thread, read by workers: a ring under a mutex plus an
 * atomic generation, so a worker pays one atomic load per request when nothing
 * changed and drains the new entries otherwise. */
typedef struct ingress_inval {
    pthread_mutex_t mu;
    _Atomic uint64_t gen; /* newest entry's generation */
    ingress_inval_entry ring[INGRESS_INVAL_LOG];
} ingress_inval;

/* ---- context ---- */

typedef struct ingress_ctx {
    char redis_url[INGRESS_URL_MAX];
    char amqp_url[INGRESS_URL_MAX];
    char users_url[INGRESS_URL_MAX];
    char router_url[INGRESS_URL_MAX];
    char pdp_url[INGRESS_URL_MAX]; /* "" = built-in decision */
    char accounting_url[INGRESS_URL_MAX];
    char audit_url[INGRESS_URL_MAX];
    char internal_token[256];
    char forward_prefix[64]; /* client header prefix passed to the router, "" none */
    char region[64];         /* environment.region for pdp, "" none */
    int64_t key_cache_ttl_ms;
    int64_t models_cache_ttl_ms;
    int64_t policy_cache_ttl_ms;
    int64_t default_max_tokens;
    int64_t reservation_ttl_ms;
    int64_t org_rps_default, key_rps_default; /* 0 = unlimited */
    int connect_ms, first_byte_ms, idle_ms, total_ms, lookup_ms;
    long long max_idle; /* idle upstream connections per host and worker */
    size_t stream_high_water;
    size_t max_body_bytes;
    ingress_inval inval;
    atomic_bool stop;
    pthread_t consumer;
    bool consumer_started;
    /* metrics */
    ias_counter *auth_fail, *rate_limited, *budget_refused, *upstream_errors, *key_lookups_users;
    ias_gauge *streams_active;
} ingress_ctx;

/* ---- key cache (auth.c) ---- */

enum {
    INGRESS_KEY_ACTIVE = 0,
    INGRESS_KEY_UNKNOWN, /* no such key (404 from users) */
    INGRESS_KEY_INACTIVE,
};

typedef struct ingress_key {
    char sha[65];
    int state;
    char key_id[INGRESS_ID_MAX], user_id[INGRESS_ID_MAX], org_id[INGRESS_ID_MAX];
    char role[INGRESS_ID_MAX];
    int64_t expires_ms;                              /* 0 = never */
    int64_t org_limit, user_limit, org_rps, key_rps; /* -1 = none */
    size_t nallowed;
    char **allowed; /* model names, one allocation (ingress_key_free) */
} ingress_key;

void ingress_key_free(ingress_key *k);
void ingress_key_copy(ingress_key *dst, const ingress_key *src);
bool ingress_key_allows(const ingress_key *k, const char *model);
/* Parses a /internal/keys JSON body. IAS_ERR when malformed. */
int ingress_key_parse(const char *json, size_t len, const char *sha, ingress_key *out);

typedef struct ingress_lru ingress_lru;

/* ---- per-worker state (main.c) ---- */

typedef struct ingress_model {
    char *name;
    int64_t context_length;
    char **tags; /* the registry's labels, sent to pdp as resource.tags */
    size_t ntags;
} ingress_model;

typedef struct ingress_policy_cache ingress_policy_cache;

typedef struct ingress_worker {
    ingress_ctx *ctx;
    ias_redis_async *redis;
    ias_http_client *http;
    ingress_lru *keys;
    uint64_t inval_seen;
    /* model registry snapshot (models.c) */
    ingress_model *models;
    size_t nmodels;
    int64_t models_fetched_ms; /* monotonic; 0 = never */
    bool models_fetching;
    struct ingress_models_waiter *models_waiters;
    ingress_policy_cache *policy;
} ingress_worker;

/* ---- auth.c ---- */

ingress_lru *ingress_lru_new(size_t slots);
void ingress_lru_free(ingress_lru *l);
/* Drops entries: of one key id, or every entry of org (key_id NULL), or all. */
void ingress_lru_evict(ingress_lru *l, const char *org_id, const char *key_id);

/* status: IAS_OK (key filled, any state), IAS_ERR (lookup chain unavailable). */
typedef void (*ingress_key_cb)(int status, const ingress_key *key, void *arg);
/* From the Authorization value to a key. IAS_OK: answered now (out filled, maybe
 * INGRESS_KEY_UNKNOWN for a malformed header); IAS_AGAIN: cb fires later. */
int ingress_key_lookup(ingress_worker *w, const char *authorization, ingress_key *out,
                       ingress_key_cb cb, void *arg) IAS_MUSTCHECK;
/* 401 with OpenAI's invalid_api_key when the key cannot be used now. */
bool ingress_key_usable(const ingress_key *k);

/* ---- invalidate.c ---- */

void ingress_inval_init(ingress_inval *iv);
void ingress_inval_destroy(ingress_inval *iv);
void ingress_inval_push(ingress_inval *iv, const char *kind, const char *org_id, const char *id);
/* At the start of every request: applies what changed since the last drain. */
void ingress_inval_drain(ingress_worker *w);
int ingress_consumer_start(ingress_ctx *ctx) IAS_MUSTCHECK;
void ingress_consumer_stop(ingress_ctx *ctx);

/* ---- ratelimit.c ---- */

typedef void (*ingress_rl_cb)(int status, unsigned retry_after_s, void *arg);
/* status IAS_OK allowed, IAS_AGAIN limited, IAS_ERR redis failed. */
void ingress_ratelimit_check(ingress_worker *w, const ingress_key *k, ingress_rl_cb cb, void *arg);

/* ---- models.c ---- */

typedef void (*ingress_models_cb)(int status, void *arg); /* IAS_OK: w->models usable */
/* IAS_OK: the snapshot is fresh now; IAS_AGAIN: cb fires once it was fetched. */
int ingress_models_ensure(ingress_worker *w, ingress_models_cb cb, void *arg) IAS_MUSTCHECK;
const ingress_model *ingress_models_find(const ingress_worker *w, const char *name);
void ingress_models_free(ingress_worker *w);
void ingress_handle_models(ias_req *req, void *ctx);
void ingress_handle_model(ias_req *req, void *ctx);

/* ---- policy.c ---- */

typedef struct ingress_decision {
    int status; /* IAS_OK decided, IAS_ERR pdp unreachable / bad answer */
    bool allow;
    bool builtin; /* decided without pdp: a refusal is 404 model_not_found */
    char reason[256];
    char guardrails[256]; /* comma-separated profile ids */
} ingress_decision;

typedef void (*ingress_policy_cb)(const ingress_decision *d, void *arg);
/* IAS_OK: decided now (out filled); IAS_AGAIN: cb fires later. */
/* request_id goes to pdp as X-Request-Id, so a denial's audit entry names the
 * client's request. */
int ingress_policy_decide(ingress_worker *w, const ingress_key *k, const char *model,
                          const char *source_ip, const char *request_id, ingress_decision *out,
                          ingress_policy_cb cb, void *arg) IAS_MUSTCHECK;
ingress_policy_cache *ingress_policy_cache_new(void);
void ingress_policy_cache_free(ingress_policy_cache *c);
void ingress_policy_cache_clear(ingress_policy_cache *c);

/* ---- pipe.c: stream an upstream response to the client ---- */

typedef struct ingress_pipe ingress_pipe;
/* Called once when the pipe ends (not after ingress_pipe_abort). started: the
 * upstream answered (its response head arrived). */
typedef void (*ingress_pipe_done)(ias_http_result res, bool started, void *arg);
/* openai: error replies in OpenAI shape, else problem+json. Returns NULL when
 * the request could not be started (nothing replied). */
ingress_pipe *ingress_pipe_start(ias_req *req, ingress_worker *w, const ias_http_request *hreq,
                                 bool openai, ingress_pipe_done done, void *arg);
/* The client left: cancels the upstream call (the router sees the disconnect). */
void ingress_pipe_abort(ingress_pipe *p);

/* ---- handlers ---- */

void ingress_handle_chat(ias_req *req, void *ctx);
void ingress_handle_completions(ias_req *req, void *ctx);
void ingress_handle_embeddings(ias_req *req, void *ctx);
void ingress_handle_mgmt(ias_req *req, void *ctx);

/* Shared by handlers: the worker state of a request. */
ingress_worker *ingress_worker_of(ias_req *req);

#endif
