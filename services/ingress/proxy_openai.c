/* POST /v1/chat/completions, /v1/completions and /v1/embeddings:
 *   key -> validate -> rate limit -> model -> policy -> budget reserve -> router.
 * Each step may answer from memory or wait for Redis / users / pdp; the chain
 * continues from the step's callback. Whatever fails before the router got the
 * request releases the reservation; after that the router settles it. */
#include "ingress.h"

#include "ias/budget.h"
#include "ias/crypto.h"
#include "ias/log.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

enum { INGRESS_FWD_MAX = 8 };

typedef struct v1_call {
    ias_req *req;
    ingress_worker *w;
    ingress_ctx *ctx;
    ias_openai_kind kind;
    const char *raw; /* request body, owned by the request */
    size_t raw_len;
    cJSON *body; /* parsed copy we may rewrite */
    ias_openai_request oreq;
    ingress_key key;
    int64_t context_length;
    int64_t prompt_max; /* reserved for the prompt(s): see reserve() */
    char resv_id[IAS_UUID_STR_LEN + 1];
    int64_t reserved;
    bool rewrite; /* max_tokens was clamped: forward the re-serialised body */
    char guardrails[256];
    ingress_pipe *pipe;
    bool waiting; /* an async step is in flight */
    bool closed;  /* the client left */
} v1_call;

static void on_settled(const ias_budget_result *res, void *arg)
{
    (void)arg;
    if (res->status == IAS_BUDGET_ERROR)
        ias_warn(NULL, "releasing a reservation failed (it expires instead): %s", res->error);
}

/* The router never saw the request: the reservation is ours to give back. */
static void release_reservation(v1_call *c)
{
    if (!c->resv_id[0])
        return;
    if (ias_budget_settle(c->w->redis, c->resv_id, 0, on_settled, NULL) != IAS_OK)
        ias_warn(ias_req_log(c->req), "cannot release reservation %s", c->resv_id);
    c->resv_id[0] = '\0';
}

static void v1_end(v1_call *c)
{
    ias_req *req = c->req;
    cJSON_Delete(c->body);
    ingress_key_free(&c->key);
    free(c);
    ias_req_release(req);
}

/* Error reply in OpenAI's shape, then the end of the call. */
#define V1_FAIL(c, status, type, code, param, ...)                                                 \
    do {                                                                                           \
        release_reservation(c);                                                                    \
        (void)ias_reply_openai_error((c)->req, status, type, code, param, __VA_ARGS__);            \
        v1_end(c);                                                                                 \
    } while (0)

static void fail_unavailable(v1_call *c, const char *what)
{
    (void)ias_reply_retry_after(c->req, 1);
    V1_FAIL(c, 503, "server_error", "service_unavailable", NULL,
            "%s is unavailable; the request was not run. Retry shortly.", what);
}

/* Returns true when the step's callback must stop (client gone). */
static bool resumed(v1_call *c)
{
    c->waiting = false;
    if (c->closed) {
        release_reservation(c);
        v1_end(c);
        return true;
    }
    return false;
}

static void on_close(ias_req *req, void *arg)
{
    v1_call *c = arg;
    (void)req;
    c->closed = true;
    if (c->pipe) {
        /* The router sees the disconnect and bills what was delivered. */
        ingress_pipe_abort(c->pipe);
        c->pipe = NULL;
        v1_end(c);
    } else if (!c->waiting) {
        release_reservation(c);
        v1_end(c);
    }
}

/* ---- forward ---- */

static void on_pipe_done(ias_http_result res, bool started, void *arg)
{
    v1_call *c = arg;
    c->pipe = NULL;
    if (!started && (res == IAS_HTTP_CONNECT_FAILED || res == IAS_HTTP_CONNECT_TIMEOUT))
        release_reservation(c);
    v1_end(c);
}

/* Client headers named IAS_FORWARD_HEADER_PREFIX* (e.g. X-Mock- for mockllm),
 * at most max of them; the prefix can never be X-Ias- (checked at start). */
static size_t forward_client_headers(v1_call *c, ias_http_header *h, size_t max)
{
    size_t plen = strlen(c->ctx->forward_prefix), n = 0, count = ias_req_header_count(c->req);
    const char *key, *value;

    if (plen == 0)
        return 0;
    for (size_t i = 0; i < count && ias_req_header_at(c->req, i, &key, &value); i++) {
        if (n < max && strncasecmp(key, c->ctx->forward_prefix, plen) == 0 &&
            strncasecmp(key, "x-ias-", 6) != 0)
            h[n++] = (ias_http_header){key, value};
    }
    return n;
}

static void forward(v1_call *c)
{
    ingress_ctx *ctx = c->ctx;
    char url[INGRESS_URL_MAX + 32], reserved[IAS_I64_DEC_MAX], estimate[IAS_I64_DEC_MAX];
    ias_http_header h[16 + INGRESS_FWD_MAX];
    size_t n = 0;
    char *text = NULL;
    const void *body = c->raw;
    size_t body_len = c->raw_len;
    const char *accept = ias_req_header(c->req, "Accept");

    if (c->rewrite) {
        text = cJSON_PrintUnformatted(c->body);
        if (!text)
            ias_die("ingress: out of memory");
        body = text;
        body_len = strlen(text);
    }
    size_t url_len = 0;
    url[0] = '\0';
    ias_str_append_cut(url, sizeof(url), &url_len, ctx->router_url);
    ias_str_append_cut(url, sizeof(url), &url_len, ias_openai_kind_path(c->kind));
    /* Built from scratch: nothing the client sent as X-Ias-* can reach the router. */
    h[n++] = (ias_http_header){"Content-Type", "application/json"};
    if (accept)
        h[n++] = (ias_http_header){"Accept", accept};
    h[n++] = (ias_http_header){"X-Request-Id", ias_req_id(c->req)};
    h[n++] = (ias_http_header){"traceparent", ias_req_traceparent(c->req)};
    h[n++] = (ias_http_header){"X-Ias-Org-Id", c->key.org_id};
    h[n++] = (ias_http_header){"X-Ias-User-Id", c->key.user_id};
    h[n++] = (ias_http_header){"X-Ias-Key-Id", c->key.key_id};
    h[n++] = (ias_http_header){"X-Ias-Role", c->key.role};
    if (c->resv_id[0]) {
        (void)ias_fmt_i64(reserved, c->reserved);
        h[n++] = (ias_http_header){"X-Ias-Reservation", c->resv_id};
        h[n++] = (ias_http_header){"X-Ias-Reserved-Tokens", reserved};
    }
    if (c->oreq.include_usage)
        h[n++] = (ias_http_header){"X-Ias-Include-Usage", "1"};
    /* What the router would otherwise validate the body again for: with these
     * it reads only "model" and stream_options from the bytes. */
    (void)ias_fmt_i64(estimate, (int64_t)ias_openai_estimate_prompt_tokens(&c->oreq));
    h[n++] = (ias_http_header){"X-Ias-Stream", c->oreq.stream ? "1" : "0"};
    h[n++] = (ias_http_header){"X-Ias-Prompt-Tokens", estimate};
    if (c->guardrails[0])
        h[n++] = (ias_http_header){"X-Ias-Guardrails", c->guardrails};
    if (ctx->internal_token[0])
        h[n++] = (ias_http_header){"X-Ias-Internal-Token", ctx->internal_token};
    n += forward_client_headers(c, h + n, INGRESS_FWD_MAX);

    ias_http_request hr = {.method = "POST",
                           .url = url,
                           .headers = h,
                           .nheaders = n,
                           .body = body,
                           .body_len = body_len,
                           .total_ms = ctx->total_ms};
    c->pipe = ingress_pipe_start(c->req, c->w, &hr, true, on_pipe_done, c);
    free(text);
    if (!c->pipe) {
        ias_error(ias_req_log(c->req), "cannot start the router call (%s)", url);
        (void)ias_reply_retry_after(c->req, 1);
        V1_FAIL(c, 502, "server_error", "upstream_error", NULL, "The router could not be called.");
    }
}

/* ---- budget ---- */

/* a * b, or INT64_MAX when that overflows (operands are >= 0). */
static int64_t mul_sat(int64_t a, int64_t b)
{
    return a != 0 && b > INT64_MAX / a ? INT64_MAX : a * b;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return b > INT64_MAX - a ? INT64_MAX : a + b;
}

/* The completions the backend generates: best_of (n when absent) for every
 * prompt (completions) or best_of (chat). Each one runs up to max_tokens and
 * is billed, returned or not, so each is reserved. */
static int64_t completions(const v1_call *c)
{
    return c->oreq.ngenerated > 0 ? (int64_t)c->oreq.ngenerated : 1;
}

static void on_reserved(const ias_budget_result *res, void *arg)
{
    v1_call *c = arg;
    if (res->status == IAS_BUDGET_OK)
        c->reserved = res->granted;
    else
        c->resv_id[0] = '\0'; /* nothing recorded */
    if (resumed(c))
        return;
    if (res->status == IAS_BUDGET_ERROR) {
        ias_warn(ias_req_log(c->req), "budget reserve failed: %s", res->error);
        fail_unavailable(c, "Budget enforcement");
        return;
    }
    if (res->status == IAS_BUDGET_OVER) {
        ias_counter_inc(c->ctx->budget_refused);
        /* The OpenAI SDKs retry every 429 unless told not to; a spent budget
         * stays spent until a top-up or the next month. */
        (void)ias_reply_header(c->req, "X-Should-Retry", "false");
        V1_FAIL(c, 429, "insufficient_quota", "insufficient_quota", NULL,
                "You exceeded your current quota: the monthly token budget of your %s has "
                "%" PRId64 " tokens left.",
                res->org_remaining >= 0 &&
                        (res->user_remaining < 0 || res->org_remaining <= res->user_remaining)
                    ? "organization"
                    : "user",
                res->org_remaining >= 0 &&
                        (res->user_remaining < 0 || res->org_remaining <= res->user_remaining)
                    ? res->org_remaining
                    : res->user_remaining);
        return;
    }
    if (c->oreq.max_tokens == 0 && c->kind != IAS_OPENAI_EMBEDDING) {
        /* Clamp every completion to an equal share of what the reservation
         * covers beyond the prompt: k x max_tokens + prompt <= granted. The
         * prompt is at most prompt_max whatever the backend's tokenizer, so
         * the settle stays within the grant; min was prompt_max + k, so the
         * share is at least 1. */
        int64_t k = completions(c);
        int64_t mt = (res->granted - c->prompt_max) / k;
        cJSON_DeleteItemFromObjectCaseSensitive(c->body, "max_tokens");
        cJSON_AddNumberToObject(c->body, "max_tokens", (double)(mt > 0 ? mt : 1));
        c->rewrite = true;
    }
    forward(c);
}

/* Reserves the worst case the backend can bill: the prompt once plus k
 * completions of max_tokens, k = completions asked for. Reserving for one
 * completion while the backend generates k would let the settle book more than
 * was reserved, past the budget. The context caps each completion, so k x
 * context_length bounds the total (prompts included: for chat the prompt is
 * billed once and each choice is bounded by context - prompt; for m prompts,
 * sum(p_i) + n x sum(context - p_i) <= n x m x context).
 * The prompt part is an upper bound, not an estimate: the body's byte length
 * plus template allowances (ias_openai_prompt_tokens_max), which no byte-level
 * tokenizer exceeds, where bytes / 4 let CJK text or tool definitions bill
 * twice or more what was reserved. Each prompt is also at most a context long
 * (a backend refuses longer ones), which keeps a long English prompt, bounded
 * at about four times its tokens, from being refused for a budget it fits. */
static void reserve(v1_call *c)
{
    int64_t want, min, k = completions(c);
    int64_t cap = c->context_length > 0 ? mul_sat(k, c->context_length) : INT64_MAX;
    int64_t prompt_cap =
        c->context_length > 0 ? mul_sat((int64_t)c->oreq.nprompts, c->context_length) : INT64_MAX;
    uint64_t bound = ias_openai_prompt_tokens_max(&c->oreq, c->raw_len);
    ias_budget_reserve_req q;

    if (c->key.org_limit < 0 && c->key.user_limit < 0) {
        forward(c); /* no budget applies: nothing to meter against */
        return;
    }
    c->prompt_max = bound < (uint64_t)prompt_cap ? (int64_t)bound : prompt_cap;
    if (c->kind == IAS_OPENAI_EMBEDDING) {
        /* Nothing is generated: the inputs are the whole bill, each one at
         * most a context long. No clamp follows, so all or nothing. */
        want = c->prompt_max;
        min = want;
    } else if (c->oreq.max_tokens > 0) {
        want = add_sat(c->prompt_max, mul_sat(k, c->oreq.max_tokens));
        if (want > cap)
            want = cap; /* the prompt's bound is loose; the context is a hard cap */
        min = want;
    } else {
        /* No max_tokens: ask for the default per completion, accept as little
         * as one token each; on_reserved clamps max_tokens to the grant. */
        want = add_sat(c->prompt_max, mul_sat(k, c->ctx->default_max_tokens));
        min = add_sat(c->prompt_max, k);
        if (want > cap)
            want = cap;
        if (want < min)
            want = min;
    }
    ias_uuid_v4_fast(c->resv_id); /* internal, guards nothing: unique is enough */
    q = (ias_budget_reserve_req){.org_id = c->key.org_id,
                                 .user_id = c->key.user_id,
                                 .org_limit = c->key.org_limit,
                                 .user_limit = c->key.user_limit,
                                 .want = want,
                                 .min = min,
                                 .month = NULL,
                                 .reservation_id = c->resv_id,
                                 .ttl_ms = c->ctx->reservation_ttl_ms};
    c->waiting = true;
    if (ias_budget_reserve(c->w->redis, &q, on_reserved, c) != IAS_OK) {
        c->waiting = false;
        c->resv_id[0] = '\0';
        V1_FAIL(c, 500, "server_error", NULL, NULL, "The budget request could not be built.");
    }
}

/* ---- policy ---- */

static void decided(v1_call *c, const ingress_decision *d)
{
    if (d->status != IAS_OK) {
        fail_unavailable(c, "Policy evaluation");
        return;
    }
    if (!d->allow) {
        if (d->builtin)
            V1_FAIL(c, 404, "invalid_request_error", "model_not_found", "model",
                    "The model `%s` does not exist or you do not have access to it.",
                    c->oreq.model);
        else
            V1_FAIL(c, 403, "permission_error", "policy_denied", NULL, "Request denied: %s",
                    d->reason);
        return;
    }
    memcpy(c->guardrails, d->guardrails, sizeof(c->guardrails));
    reserve(c);
}

static void on_decision(const ingress_decision *d, void *arg)
{
    v1_call *c = arg;
    if (resumed(c))
        return;
    decided(c, d);
}

/* ---- model ---- */

static void with_models(v1_call *c)
{
    const ingress_model *m = ingress_models_find(c->w, c->oreq.model);
    ingress_decision d;
    int rc;

    if (!m) {
        V1_FAIL(c, 404, "invalid_request_error", "model_not_found", "model",
                "The model `%s` does not exist or you do not have access to it.", c->oreq.model);
        return;
    }
    c->context_length = m->context_length;
    if (m->context_length > 0 && c->oreq.max_tokens > m->context_length) {
        V1_FAIL(c, 400, "invalid_request_error", NULL,
                c->kind == IAS_OPENAI_CHAT &&
                        cJSON_GetObjectItemCaseSensitive(c->body, "max_completion_tokens")
                    ? "max_completion_tokens"
                    : "max_tokens",
                "max_tokens is too large: %ld. This model's maximum context length is %" PRId64
                " tokens.",
                c->oreq.max_tokens, m->context_length);
        return;
    }
    c->waiting = true;
    rc = ingress_policy_decide(c->w, &c->key, c->oreq.model, ias_req_peer(c->req),
                               ias_req_id(c->req), &d, on_decision, c);
    if (rc == IAS_OK) {
        c->waiting = false;
        decided(c, &d);
    }
}

static void on_models(int status, void *arg)
{
    v1_call *c = arg;
    if (resumed(c))
        return;
    if (status != IAS_OK) {
        fail_unavailable(c, "The model registry");
        return;
    }
    with_models(c);
}

/* ---- rate limit ---- */

static void on_rate(int status, unsigned retry_after, void *arg)
{
    v1_call *c = arg;
    int rc;
    if (resumed(c))
        return;
    if (status == IAS_ERR) {
        fail_unavailable(c, "Rate limiting");
        return;
    }
    if (status == IAS_AGAIN) {
        ias_counter_inc(c->ctx->rate_limited);
        (void)ias_reply_retry_after(c->req, retry_after ? retry_after : 1);
        V1_FAIL(c, 429, "requests", "rate_limit_exceeded", NULL,
                "Rate limit reached for requests per second; retry after %u s.",
                retry_after ? retry_after : 1);
        return;
    }
    c->waiting = true;
    rc = ingress_models_ensure(c->w, on_models, c);
    if (rc == IAS_OK) {
        c->waiting = false;
        with_models(c);
    } else if (rc == IAS_ERR) {
        c->waiting = false;
        fail_unavailable(c, "The model registry");
    }
}

/* ---- key, then validation ---- */

static void with_key(v1_call *c)
{
    ias_openai_error err;
    int rc;

    if (!ingress_key_usable(&c->key)) {
        ias_counter_inc(c->ctx->auth_fail);
        V1_FAIL(c, 401, "invalid_request_error", "invalid_api_key", NULL,
                "Incorrect API key provided.");
        return;
    }
    c->body = cJSON_ParseWithLength(c->raw, c->raw_len);
    if (!c->body) {
        V1_FAIL(c, 400, "invalid_request_error", NULL, NULL,
                "We could not parse the JSON body of your request.");
        return;
    }
    rc = c->kind == IAS_OPENAI_CHAT        ? ias_openai_parse_chat(c->body, &c->oreq, &err)
         : c->kind == IAS_OPENAI_EMBEDDING ? ias_openai_parse_embedding(c->body, &c->oreq, &err)
                                           : ias_openai_parse_completion(c->body, &c->oreq, &err);
    if (rc != IAS_OK) {
        V1_FAIL(c, 400, "invalid_request_error", NULL, err.param[0] ? err.param : NULL, "%s",
                err.message);
        return;
    }
    c->waiting = true;
    ingress_ratelimit_check(c->w, &c->key, on_rate, c);
}

static void on_key(int status, const ingress_key *k, void *arg)
{
    v1_call *c = arg;
    if (resumed(c))
        return;
    if (status != IAS_OK) {
        fail_unavailable(c, "API key verification");
        return;
    }
    ingress_key_copy(&c->key, k);
    with_key(c);
}

static void handle(ias_req *req, ias_openai_kind kind)
{
    ingress_worker *w = ingress_worker_of(req);
    v1_call *c = ias_xcalloc(1, sizeof(*c));

    ingress_inval_drain(w);
    c->req = req;
    c->w = w;
    c->ctx = w->ctx;
    c->kind = kind;
    c->raw = ias_req_body(req, &c->raw_len);
    ias_req_retain(req);
    ias_req_on_close(req, on_close, c);
    c->waiting = true;
    if (ingress_key_lookup(w, ias_req_header(req, "Authorization"), &c->key, on_key, c) == IAS_OK) {
        c->waiting = false;
        with_key(c);
    }
}

void ingress_handle_chat(ias_req *req, void *ctx)
{
    (void)ctx;
    handle(req, IAS_OPENAI_CHAT);
}

void ingress_handle_completions(ias_req *req, void *ctx)
{
    (void)ctx;
    handle(req, IAS_OPENAI_COMPLETION);
}

void ingress_handle_embeddings(ias_req *req, void *ctx)
{
    (void)ctx;
    handle(req, IAS_OPENAI_EMBEDDING);
}
