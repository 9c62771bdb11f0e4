/* The streaming proxy: one rcall per request, from the handler to the settle.
 *
 *   handler -> attempt (pick backend, send) -> on_response/on_body -> on_done
 *           -> finish (settle the reservation, publish usage.recorded.v1) -> free
 *
 * Retry: a failure before the first byte reached the client (connect error,
 * timeout, reset, 5xx/429) tries another backend of the model, then its
 * fallback model, up to max_attempts. Once the client's stream started, an
 * upstream failure ends it with an SSE error event and no [DONE].
 * Streams are forwarded as the raw bytes of each SSE event (those of one
 * upstream read as one chunk); only the final usage chunk is dropped when the
 * client did not ask for it. */
#include "router.h"
#include "usage.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include "ias/budget.h"
#include "ias/config.h"
#include "ias/crypto.h"
#include "ias/http_client.h"
#include "ias/json_scan.h"
#include "ias/log.h"
#include "ias/openai.h"
#include "ias/sse.h"
#include "ias/strbuf.h"

enum {
    MAX_FWD_HEADERS = 24,
    MAX_EVENT_BYTES = 1024 * 1024, /* one SSE event from upstream */
    MAX_ERROR_BODY = 64 * 1024,    /* upstream error bodies we pass on */
    SPARE_CALLS_MAX = 64,          /* released call records kept per worker */
};

typedef enum { FAIL_NONE = 0, FAIL_CONNECT, FAIL_TIMEOUT, FAIL_UPSTREAM } fail_kind;

typedef ias_strbuf buf;

typedef struct rcall {
    struct rcall *next_spare; /* on the worker's spare list */
    router_ctx *ctx;
    router_worker *w;
    ias_req *r; /* NULL once the client left or the reply completed */
    ias_openai_kind kind;
    cJSON *body;           /* the request's tree (valid while r is open); NULL on the raw path */
    bool body_dirty;       /* the tree may differ from the raw bytes (prompt guardrails) */
    int plan_state;        /* 0: not scanned yet, 1: plan usable, -1: print the tree */
    router_body_plan plan; /* where the upstream body differs from the raw bytes */
    router_snapshot *snap;
    const router_model *model;
    bool on_fallback, stream, include_usage;
    long long prompt_estimate;
    /* From the validated tree (never on the raw path, which has no guardrails):
     * n, completions asked for (n x prompts), whether the prompt is token ids. */
    int n;
    size_t nchoices;
    bool prompt_token_ids;
    char model_name[IAS_OPENAI_MAX_MODEL_LEN + 1];
    char request_id[129], org[64], user[64], key[64], resv[IAS_BUDGET_ID_MAX + 1];
    char traceparent[64];
    ias_log_ctx log; /* points at request_id / traceparent above */
    ias_http_header fwd[MAX_FWD_HEADERS];
    size_t nfwd;

    /* upstream attempt */
    uint64_t tried;
    int attempts;
    int backend;              /* index in model, -1 none */
    router_backend_state *st; /* of the current attempt, NULL when none in flight */
    char backend_id[257];     /* last backend that answered (for the event) */
    ias_http_call *up;
    struct event *timer;   /* first token, then idle */
    uint64_t idle_from_ms; /* last upstream bytes of a started stream (arm_idle) */
    bool sse_fed;          /* the parser has read a whole event: a BOM is behind it */
    bool paused;
    int up_status;
    fail_kind fail;
    int fail_status;
    buf body_buf;           /* non-streaming or error body */
    buf pending;            /* raw SSE bytes not yet forming a whole event */
    bool sse_cr;            /* pending has held a CR: event ends need the CR-aware scan */
    size_t sendable;        /* pending[0, sendable): parsed events to forward as they came */
    struct event *flush_ev; /* sends them at the end of the loop iteration (on_flush) */
    bool flush_armed;
    ias_sse_parser *sse;
    bool ev_drop; /* set by the SSE callback for the current event */
    bool ev_bad;
    router_guard *guard;     /* guardrail obligations, NULL: none */
    router_gr_verdict ev_gr; /* the guard's verdict on the current event */
    const char *ev_gr_out;   /* what to send instead (ROUTER_GR_REWRITE / STOP) */
    size_t ev_gr_outlen;

    /* client side and accounting */
    bool client_started, finished;
    router_usage usage;
    uint64_t t0_ms;
    long long ttft_ms;
    int status;
    bool aborted;
} rcall;

static void attempt(rcall *c);
static void finish(rcall *c);

/* ---- small helpers ---- */

static void buf_add(buf *b, const void *data, size_t len)
{
    ias_strbuf_reserve(b, len, 4096);
    ias_strbuf_put(b, data, len);
}

static void copy_header(const char *v, char *dst, size_t len)
{
    dst[0] = '\0';
    if (v != NULL && ias_strlcpy(dst, v, len) != IAS_OK)
        dst[0] = '\0';
}

/* The X-Ias-* headers ingress sends, first occurrence of each (as
 * ias_req_header would find it), NULL when absent. */
typedef struct ias_headers {
    const char *internal_token, *org, *user, *key, *reservation, *include_usage, *guardrails;
    const char *stream, *prompt_tokens; /* ingress validated the body (see read_ingress_view) */
} ias_headers;

/* One pass over the request's fields instead of one ias_req_header scan per
 * name: these nine lookups would be ~60 strcasecmp calls per request. */
static void read_ias_headers(const ias_req *r, ias_headers *h)
{
    static const struct {
        const char *name; /* after "X-Ias-" */
        size_t len;
        size_t off;
    } names[] = {
        {"Internal-Token", 14, offsetof(ias_headers, internal_token)},
        {"Org-Id", 6, offsetof(ias_headers, org)},
        {"User-Id", 7, offsetof(ias_headers, user)},
        {"Key-Id", 6, offsetof(ias_headers, key)},
        {"Reservation", 11, offsetof(ias_headers, reservation)},
        {"Include-Usage", 13, offsetof(ias_headers, include_usage)},
        {"Guardrails", 10, offsetof(ias_headers, guardrails)},
        {"Stream", 6, offsetof(ias_headers, stream)},
        {"Prompt-Tokens", 13, offsetof(ias_headers, prompt_tokens)},
    };
    const char *name, *value;

    memset(h, 0, sizeof(*h));
    for (size_t i = 0; ias_req_header_at(r, i, &name, &value); i++) {
        if ((name[0] | 0x20) != 'x' || strncasecmp(name, "X-Ias-", 6) != 0)
            continue;
        size_t len = strlen(name + 6);
        for (size_t k = 0; k < IAS_ARRAY_LEN(names); k++) {
            const char **slot = (const char **)(void *)((char *)h + names[k].off);
            if (len == names[k].len && strcasecmp(name + 6, names[k].name) == 0) {
                if (*slot == NULL)
                    *slot = value;
                break;
            }
        }
    }
}

static router_worker *worker_of(ias_req *r)
{
    return ias_worker_data(ias_req_worker(r));
}

static void rcall_free(rcall *c)
{
    for (size_t i = 0; i < c->nfwd; i++) {
        free((char *)c->fwd[i].name);
        free((char *)c->fwd[i].value);
    }
    if (c->timer)
        event_free(c->timer);
    if (c->flush_ev)
        event_free(c->flush_ev);
    ias_sse_parser_free(c->sse);
    router_guard_free(c->guard);
    free(c->body_buf.p);
    free(c->pending.p);
    router_registry_release(c->snap);
    if (c->w->nspare_calls < SPARE_CALLS_MAX) {
        c->next_spare = c->w->spare_calls;
        c->w->spare_calls = c;
        c->w->nspare_calls++;
        IAS_POISON(c, sizeof(*c));
        return;
    }
    free(c);
}

static rcall *rcall_new(router_worker *w)
{
    rcall *c = w->spare_calls;

    if (c == NULL)
        return ias_xcalloc(1, sizeof(*c));
    IAS_UNPOISON(c, sizeof(*c));
    w->spare_calls = c->next_spare;
    w->nspare_calls--;
    memset(c, 0, sizeof(*c));
    return c;
}

void router_proxy_worker_fini(router_worker *rw)
{
    while (rw->spare_calls != NULL) {
        rcall *c = rw->spare_calls;

        IAS_UNPOISON(c, sizeof(*c));
        rw->spare_calls = c->next_spare;
        free(c);
    }
    rw->nspare_calls = 0;
}

/* ---- finishing: settle + usage event ---- */

static void on_settled(const ias_budget_result *res, void *arg)
{
    rcall *c = arg;

    if (res->status != IAS_BUDGET_OK)
        ias_error(&c->log, "budget settle of %s failed: %s (the reservation will expire)", c->resv,
                  res->error ? res->error : "?");
    rcall_free(c);
}

static void publish_usage(rcall *c, long long prompt, long long completion)
{
    char event_id[IAS_UUID_STR_LEN + 1];
    router_usage_event e = {0};
    char *json;

    ias_uuid_v7_fast(event_id);
    e.event_id = event_id;
    e.request_id = c->request_id;
    e.org_id = c->org;
    e.user_id = c->user;
    e.api_key_id = c->key;
    e.model = c->model_name[0] ? c->model_name : "unknown";
    e.backend = c->backend_id;
    e.occurred_wall_ms = ias_wall_ms();
    e.prompt_tokens = prompt;
    e.completion_tokens = completion;
    e.status = c->status;
    e.ttft_ms = c->ttft_ms;
    e.duration_ms = (long long)(ias_now_ms() - c->t0_ms);
    e.stream = c->stream;
    e.aborted = c->aborted;
    json = router_usage_event_json(&e);
    if (ias_publisher_publish(c->ctx->pub, IAS_AMQP_RK_USAGE, event_id, IAS_EVENT_USAGE_V1, json,
                              strlen(json)) != IAS_OK) {
        ias_counter_inc(c->ctx->m_usage_lost);
        ias_error(&c->log, "usage event %s of request %s lost: spool unwritable", event_id,
                  c->request_id);
    } else {
        ias_counter_inc(c->ctx->m_usage_events);
    }
    free(json);
}

/* Once per request, after the reply ended or the client left. Frees c (now or
 * after the settle answered). */
static void finish(rcall *c)
{
    bool complete = c->usage.done && !c->aborted;
    bool served = c->client_started || (c->status == 200);
    long long prompt = 0, completion = 0;

    if (c->finished)
        return;
    c->finished = true;
    if (c->timer)
        event_del(c->timer);
    if (served) {
        prompt = c->usage.have_usage ? c->usage.prompt : c->prompt_estimate;
        completion = router_usage_completion(&c->usage, complete);
    }
    if (c->aborted)
        ias_counter_inc(c->ctx->m_aborted);
    ias_counter_inc(c->status < 400 ? c->ctx->m_requests_ok : c->ctx->m_requests_err);
    if (c->org[0] != '\0') {
        router_guard_who who = {.org_id = c->org,
                                .user_id = c->user,
                                .key_id = c->key,
                                .request_id = c->request_id,
                                .model = c->model_name};
        publish_usage(c, prompt, completion);
        router_guard_publish(c->guard, c->ctx, &who);
    }
    if (c->resv[0] != '\0' && c->w->redis != NULL &&
        ias_budget_settle(c->w->redis, c->resv, prompt + completion, on_settled, c) == IAS_OK)
        return; /* freed in on_settled */
    if (c->resv[0] != '\0')
        ias_error(&c->log, "budget settle of %s not sent (the reservation will expire)", c->resv);
    rcall_free(c);
}

/* A reply we build ourselves, naming param (NULL: none), then finish. */
static void fail_reply_param(rcall *c, int status, const char *code, const char *param,
                             const char *fmt, ...) IAS_PRINTF(5, 6);
static void vfail_reply(rcall *c, int status, const char *code, const char *param, const char *fmt,
                        va_list ap) IAS_PRINTF(5, 0);
static void vfail_reply(rcall *c, int status, const char *code, const char *param, const char *fmt,
                        va_list ap)
{
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    char msg[512];

    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    c->status = status;
    if (c->r != NULL) {
        ias_req_on_close(c->r, NULL, NULL);
        if (status == 503)
            (void)ias_reply_retry_after(c->r, (unsigned)c->ctx->cfg.retry_after_s);
        (void)ias_reply_openai_error(c->r, status, type, code, param, "%s", msg);
        c->r = NULL;
    }
    finish(c);
}

static void fail_reply_param(rcall *c, int status, const char *code, const char *param,
                             const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail_reply(c, status, code, param, fmt, ap);
    va_end(ap);
}

/* A reply we build ourselves, then finish. */
static void fail_reply(rcall *c, int status, const char *code, const char *fmt, ...)
    IAS_PRINTF(4, 5);
static void fail_reply(rcall *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail_reply(c, status, code, NULL, fmt, ap);
    va_end(ap);
}

/* ---- timers ---- */

static void arm_timer(rcall *c, long long ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    if (ms <= 0)
        return;
    if (evtimer_add(c->timer, &tv) != 0)
        ias_die("router: evtimer_add failed");
}

/* The idle timer is armed lazily: each read only notes its time, and a timer
 * that fires before the stream was idle long enough re-arms for the rest (an
 * evtimer_add per upstream chunk was a tenth of the router's cost per chunk). */
static void arm_idle(rcall *c)
{
    c->idle_from_ms = ias_now_ms();
    if (!evtimer_pending(c->timer, NULL))
        arm_timer(c, c->ctx->cfg.idle_ms);
}

static void stop_upstream(rcall *c, bool failed)
{
    if (c->up != NULL) {
        ias_http_call_cancel(c->up);
        c->up = NULL;
    }
    if (c->st != NULL) {
        atomic_fetch_sub(&c->st->outstanding, 1);
        if (failed)
            router_balance_failure(c->ctx, c->st);
        else
            atomic_store(&c->st->probing, false); /* a probe that proved nothing */
        c->st = NULL;
    }
    event_del(c->timer);
    c->paused = false;
}

/* Hands the parsed events waiting in pending to the client as one chunk.
 * IAS_ERR: the client is gone (on_close follows). */
static int flush_events(rcall *c)
{
    size_t n = c->sendable;
    int rc = IAS_OK;

    if (n == 0)
        return IAS_OK;
    c->sendable = 0;
    if (c->r != NULL)
        rc = ias_reply_stream_chunk(c->r, c->pending.p, n);
    ias_strbuf_consume(&c->pending, n);
    return rc;
}

static void end_stream_with_error(rcall *c, const char *message)
{
    char ev[512];
    int n = snprintf(ev, sizeof(ev),
                     "data: {\"error\":{\"message\":\"%s\",\"type\":\"server_error\","
                     "\"param\":null,\"code\":\"upstream_error\"}}\n\n",
                     message);

    c->aborted = true;
    if (c->r != NULL && flush_events(c) != IAS_OK)
        ias_debug(&c->log, "request %s: client gone before the last events", c->request_id);
    if (c->r != NULL) {
        ias_req_on_close(c->r, NULL, NULL);
        if (n > 0 && (size_t)n < sizeof(ev) &&
            ias_reply_stream_chunk(c->r, ev, (size_t)n) != IAS_OK)
            ias_debug(&c->log, "request %s: client gone before the error event", c->request_id);
        (void)ias_reply_stream_end(c->r);
        c->r = NULL;
    }
    finish(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    rcall *c = arg;
    bool before_first = !c->client_started;

    if (!before_first) {
        uint64_t due = c->idle_from_ms + (uint64_t)c->ctx->cfg.idle_ms, now = ias_now_ms();
        if (now < due) {
            arm_timer(c, (long long)(due - now)); /* bytes came since it was armed */
            return;
        }
    }
    ias_warn(&c->log, "upstream %s timeout on backend %s", before_first ? "first-token" : "idle",
             c->backend_id);
    stop_upstream(c, true);
    if (before_first) {
        c->fail = FAIL_TIMEOUT;
        attempt(c);
    } else {
        end_stream_with_error(c, "upstream idle timeout");
    }
}

/* ---- upstream callbacks ---- */

static int on_sse_event(const ias_sse_event *ev, void *arg)
{
    rcall *c = arg;
    bool usage_only = false;

    if (router_usage_chunk(&c->usage, ev->data, ev->data_len, &usage_only) != IAS_OK)
        c->ev_bad = true;
    if (usage_only && !c->include_usage)
        c->ev_drop = true;
    if (c->guard != NULL)
        c->ev_gr = router_guard_event(c->guard, c->kind == IAS_OPENAI_CHAT, ev->data, ev->data_len,
                                      &c->ev_gr_out, &c->ev_gr_outlen);
    return IAS_OK;
}

static void on_drained(ias_req *r, void *arg)
{
    rcall *c = arg;

    if (!c->paused || c->up == NULL)
        return;
    c->paused = false;
    ias_http_call_resume(c->up);
    arm_idle(c);
}

static void on_client_close(ias_req *r, void *arg)
{
    rcall *c = arg;

    c->r = NULL;
    c->aborted = true;
    if (!c->client_started)
        c->status = 499; /* nginx's "client closed request" */
    router_guard_cancel(c->guard);
    ias_info(&c->log, "request %s: client left, upstream cancelled", c->request_id);
    stop_upstream(c, false);
    finish(c);
}

static void start_client_stream(rcall *c)
{
    event_del(c->timer);
    c->client_started = true;
    c->status = 200;
    c->ttft_ms = (long long)(ias_now_ms() - c->t0_ms);
    (void)ias_reply_header(c->r, "Cache-Control", "no-cache");
    if (ias_reply_stream_start(c->r, 200, "text/event-stream; charset=utf-8") != IAS_OK)
        return; /* closed: on_close follows */
}

/* An output deny rule matched: the client got the released text, a
 * content_filter chunk and [DONE]; stop generating and bill what was. */
static void guard_stop(rcall *c)
{
    ias_info(&c->log, "request %s: stream stopped by an output guardrail", c->request_id);
    stop_upstream(c, false);
    if (c->r != NULL && flush_events(c) != IAS_OK)
        ias_debug(&c->log, "request %s: client gone before the last events", c->request_id);
    if (c->r != NULL) {
        ias_req_on_close(c->r, NULL, NULL);
        (void)ias_reply_stream_end(c->r);
        c->r = NULL;
    }
    finish(c);
}

/* The event ev[0, n) (whole, LF line ends) is one "data:" line and the blank
 * line: its data, as the SSE parser would pass it, without copying it there.
 * Only once the parser has read an event (a leading BOM is behind it), and
 * never with guardrails (their reading stays on the parser's copy). */
static bool simple_event(const rcall *c, const char *ev, size_t n, ias_sse_event *out)
{
    const char *data = ev + 5, *nl;

    if (!c->sse_fed || c->sse_cr || c->guard != NULL || n < 7 || n > MAX_EVENT_BYTES ||
        memcmp(ev, "data:", 5) != 0)
        return false;
    nl = memchr(data, '\n', n - 5);
    if (nl != ev + n - 2)
        return false; /* more lines than one */
    if (*data == ' ')
        data++;
    *out = (ias_sse_event){.type = "message",
                           .type_len = 7,
                           .data = data,
                           .data_len = (size_t)(nl - data),
                           .id = "",
                           .retry_ms = -1};
    return true;
}

/* The end of the loop iteration in which upstream bytes came: the events
 * parsed from them go to the client as one chunk, then the backpressure check. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    rcall *c = arg;

    c->flush_armed = false;
    if (flush_events(c) != IAS_OK)
        return; /* client gone: on_close follows */
    if (c->r != NULL && c->up != NULL && !c->paused &&
        ias_reply_stream_pending(c->r) > (size_t)c->ctx->cfg.high_water) {
        /* slow reader: stop reading upstream until the client caught up */
        c->paused = true;
        event_del(c->timer);
        ias_http_call_pause(c->up);
        ias_reply_stream_on_drain(c->r, (size_t)c->ctx->cfg.low_water, on_drained, c);
    }
}

static void stream_body(rcall *c, const char *data, size_t len)
{
    /* Events are parsed one by one as they complete, but the ones forwarded
     * as they came wait in pending until the end of the loop iteration: the
     * HTTP client passes a backend's chunks one by one, and all of one read
     * then reach the client as one chunk (one framing here, one chunk for
     * ingress to parse and relay, instead of one per event). A dropped or
     * rewritten event sends what waits first, so the order never changes. */
    size_t off = c->sendable, n;
    ias_sse_event sev;

    if (!c->client_started)
        start_client_stream(c);
    buf_add(&c->pending, data, len);
    if (!c->sse_cr && memchr(data, '\r', len) != NULL)
        c->sse_cr = true; /* from here on, line ends may be CRLF or CR */
    for (;;) {
        const char *ev = c->pending.p + off;
        size_t left = c->pending.len - off;

        n = c->sse_cr ? router_sse_event_end(ev, left) : router_sse_event_end_lf(ev, left);
        if (n == 0)
            break;
        c->ev_drop = c->ev_bad = false;
        c->ev_gr = ROUTER_GR_PASS;
        if (simple_event(c, ev, n, &sev)) {
            (void)on_sse_event(&sev, c);
        } else if (ias_sse_parser_feed(c->sse, ev, n) != IAS_OK) {
            c->sendable = off;
            stop_upstream(c, true);
            end_stream_with_error(c, "upstream event too large"); /* sends what waits first */
            return;
        }
        c->sse_fed = true;
        off += n;
        if (!c->ev_drop && c->ev_gr == ROUTER_GR_PASS)
            continue; /* waits with the others */
        c->sendable = off - n;
        if (flush_events(c) != IAS_OK)
            return; /* client gone: on_close follows */
        off = 0;    /* the event is now at the front of pending */
        if (!c->ev_drop && c->ev_gr != ROUTER_GR_PASS && c->r != NULL && c->ev_gr_outlen > 0 &&
            ias_reply_stream_chunk(c->r, c->ev_gr_out, c->ev_gr_outlen) != IAS_OK)
            return;
        ias_strbuf_consume(&c->pending, n);
        if (c->ev_gr == ROUTER_GR_STOP) {
            guard_stop(c);
            return; /* c may be gone */
        }
    }
    c->sendable = off;
    if (c->pending.len - off > MAX_EVENT_BYTES) {
        stop_upstream(c, true);
        end_stream_with_error(c, "upstream event too large");
        return;
    }
    if (off > 0 && !c->flush_armed) {
        if (c->flush_ev == NULL &&
            (c->flush_ev = event_new(event_get_base(c->timer), -1, 0, on_flush, c)) == NULL)
            ias_die("router: out of memory");
        c->flush_armed = true;
        event_active(c->flush_ev, EV_TIMEOUT, 1);
    }
    arm_idle(c);
}

static void on_up_response(ias_http_call *call, const ias_http_response *resp, void *arg)
{
    rcall *c = arg;

    c->up_status = resp->status;
}

static void on_up_body(ias_http_call *call, const char *data, size_t len, void *arg)
{
    rcall *c = arg;

    if (c->up_status == 200 && c->stream) {
        stream_body(c, data, len);
        return;
    }
    /* bounded: errors are small, whole completions up to max_response_bytes */
    if (c->body_buf.len + len >
        (c->up_status == 200 ? (size_t)c->ctx->cfg.max_response_bytes : (size_t)MAX_ERROR_BODY)) {
        stop_upstream(c, true);
        c->fail = FAIL_UPSTREAM;
        c->fail_status = 502;
        attempt(c);
        return;
    }
    buf_add(&c->body_buf, data, len);
}

static void on_up_done(ias_http_call *call, ias_http_result result, void *arg)
{
    rcall *c = arg;
    router_backend_state *st = c->st;
    int status = c->up_status;

    c->up = NULL;
    c->st = NULL;
    event_del(c->timer);
    if (st != NULL)
        atomic_fetch_sub(&st->outstanding, 1);

    if (c->client_started) {
        /* the stream reached the client: no retry from here on */
        if (result == IAS_HTTP_OK && c->usage.done) {
            if (st)
                router_balance_success(st);
            if (c->r != NULL && flush_events(c) != IAS_OK)
                ias_debug(&c->log, "request %s: client gone before the last events", c->request_id);
            if (c->r != NULL) {
                ias_req_on_close(c->r, NULL, NULL);
                (void)ias_reply_stream_end(c->r);
                c->r = NULL;
            }
            finish(c);
            return;
        }
        if (st)
            router_balance_failure(c->ctx, st);
        ias_warn(&c->log, "request %s: upstream %s ended the stream early (%s)", c->request_id,
                 c->backend_id, ias_http_result_str(result));
        end_stream_with_error(c, "upstream ended the stream before completion");
        return;
    }
    if (result != IAS_HTTP_OK || (status == 200 && c->stream) || status >= 500 || status == 429) {
        /* nothing reached the client: try elsewhere */
        if (st)
            router_balance_failure(c->ctx, st);
        c->fail = result == IAS_HTTP_OK               ? FAIL_UPSTREAM
                  : result == IAS_HTTP_CONNECT_FAILED ? FAIL_CONNECT
                  : (result == IAS_HTTP_CONNECT_TIMEOUT || result == IAS_HTTP_TOTAL_TIMEOUT ||
                     result == IAS_HTTP_FIRST_BYTE_TIMEOUT || result == IAS_HTTP_IDLE_TIMEOUT)
                      ? FAIL_TIMEOUT
                      : FAIL_UPSTREAM;
        c->fail_status = status;
        ias_warn(&c->log, "request %s: backend %s failed before the first byte: %s, status %d",
                 c->request_id, c->backend_id, ias_http_result_str(result), status);
        c->body_buf.len = 0;
        ias_counter_inc(c->ctx->m_retries);
        attempt(c);
        return;
    }
    if (st)
        router_balance_success(st);
    c->status = status;
    if (status == 200 && (c->kind == IAS_OPENAI_EMBEDDING
                              ? router_usage_embedding(
                                    &c->usage, c->body_buf.p ? c->body_buf.p : "", c->body_buf.len)
                              : router_usage_body(&c->usage, c->body_buf.p ? c->body_buf.p : "",
                                                  c->body_buf.len)) != IAS_OK)
        ias_warn(&c->log, "request %s: upstream body is not JSON", c->request_id);
    if (c->r != NULL) {
        char *filtered = NULL;

        /* Output guardrails read generated text; vectors have none. */
        if (status == 200 && c->body_buf.p != NULL && c->kind != IAS_OPENAI_EMBEDDING &&
            router_guard_body(c->guard, c->kind == IAS_OPENAI_CHAT, c->body_buf.p, c->body_buf.len,
                              &filtered) != IAS_OK)
            filtered = NULL;
        c->ttft_ms = (long long)(ias_now_ms() - c->t0_ms);
        ias_req_on_close(c->r, NULL, NULL);
        if (filtered != NULL)
            (void)ias_reply(c->r, status, "application/json", filtered, strlen(filtered));
        else
            (void)ias_reply(c->r, status, "application/json", c->body_buf.p ? c->body_buf.p : "",
                            c->body_buf.len);
        free(filtered);
        c->r = NULL;
    }
    finish(c);
}

/* ---- attempts ---- */

/* ---- the upstream body: spliced from the client's bytes when possible ---- */

/* The body for backend b: the client's bytes with "model" and stream_options
 * edited (router_body_build), or the tree printed when prompt guardrails may
 * have rewritten it or the bytes are unusual (router_body_plan_scan). *owned
 * gets what the caller frees. */
static const char *upstream_body(rcall *c, const router_backend *b, size_t *outlen, char **owned)
{
    const char *name = b->upstream_model ? b->upstream_model : c->model->name;
    char client[IAS_OPENAI_MAX_MODEL_LEN + 1];
    cJSON *opts;
    char *out;

    *owned = NULL;
    if (!c->body_dirty && c->r != NULL) {
        size_t rawlen = 0;
        const char *raw = ias_req_body(c->r, &rawlen);

        if (c->plan_state == 0)
            c->plan_state =
                router_body_plan_scan(raw, rawlen, &c->plan, client, sizeof(client)) == IAS_OK ? 1
                                                                                               : -1;
        else if (c->plan_state > 0)
            (void)ias_json_scan_string(raw, c->plan.model, client, sizeof(client));
        if (c->plan_state > 0)
            return router_body_build(raw, rawlen, &c->plan, client, name, c->stream, outlen, owned);
    }
    if (c->body == NULL)
        ias_die("router: no request tree for an unusual body"); /* the raw path has a plan */

    cJSON_ReplaceItemInObjectCaseSensitive(c->body, "model", cJSON_CreateString(name));
    if (c->stream) {
        /* always ask for usage; the chunk is dropped later if the client did not */
        opts = cJSON_GetObjectItemCaseSensitive(c->body, "stream_options");
        if (!cJSON_IsObject(opts)) {
            cJSON_DeleteItemFromObjectCaseSensitive(c->body, "stream_options");
            opts = cJSON_AddObjectToObject(c->body, "stream_options");
        }
        cJSON_DeleteItemFromObjectCaseSensitive(opts, "include_usage");
        cJSON_AddBoolToObject(opts, "include_usage", 1);
    }
    out = cJSON_PrintUnformatted(c->body);
    if (out == NULL)
        ias_die("router: out of memory");
    *outlen = strlen(out);
    *owned = out;
    return out;
}

static void no_backend(rcall *c)
{
    switch (c->fail) {
    case FAIL_NONE:
        fail_reply(c, 503, "backend_unavailable",
                   "No backend of model `%s` is available right now.", c->model_name);
        break;
    case FAIL_TIMEOUT:
        fail_reply(c, 504, "upstream_timeout", "The model `%s` did not answer in time.",
                   c->model_name);
        break;
    default:
        fail_reply(c, 502, "upstream_error", "The backends of model `%s` failed to answer.",
                   c->model_name);
    }
}

static void attempt(rcall *c)
{
    router_ctx *ctx = c->ctx;
    const router_backend *b;
    ias_http_header h[MAX_FWD_HEADERS + 4];
    size_t nh = 0;
    char *url, *owned;
    const char *body;
    size_t body_len;
    int i;

    if (c->r == NULL) {
        finish(c);
        return;
    }
    for (;;) {
        if (c->attempts >= ctx->cfg.max_attempts) {
            no_backend(c);
            return;
        }
        i = router_balance_pick(ctx, c->model, c->tried, &c->w->rng);
        if (i >= 0)
            break;
        const router_model *fb = c->model->fallback && !c->on_fallback
                                     ? router_registry_find(c->snap, c->model->fallback)
                                     : NULL;
        if (fb == NULL) {
            no_backend(c);
            return;
        }
        ias_info(&c->log, "model %s unavailable: falling back to %s", c->model->name, fb->name);
        c->on_fallback = true;
        c->model = fb;
        c->tried = 0;
        (void)ias_strlcpy(c->model_name, fb->name, sizeof(c->model_name));
    }
    b = &c->model->backends[i];
    c->tried |= 1ULL << i;
    c->attempts++;
    c->backend = i;
    (void)ias_strlcpy(c->backend_id, b->id, sizeof(c->backend_id));
    c->up_status = 0;
    c->body_buf.len = 0;

    h[nh++] = (ias_http_header){"Content-Type", "application/json"};
    h[nh++] = (ias_http_header){"X-Request-Id", c->request_id};
    if (c->traceparent[0])
        h[nh++] = (ias_http_header){"traceparent", c->traceparent};
    for (size_t k = 0; k < c->nfwd; k++)
        h[nh++] = c->fwd[k];
    url = ias_xasprintf("%s%s", b->url, ias_openai_kind_path(c->kind));
    body = upstream_body(c, b, &body_len, &owned);
    ias_http_request req = {.method = "POST",
                            .url = url,
                            .headers = h,
                            .nheaders = nh,
                            .body = body,
                            .body_len = body_len,
                            .connect_ms = (int)ctx->cfg.connect_ms,
                            .first_byte_ms = -1, /* our timer: first token, then idle */
                            .idle_ms = -1,
                            .total_ms = (int)ctx->cfg.total_ms};
    ias_http_callbacks cb = {
        .on_response = on_up_response, .on_body = on_up_body, .on_done = on_up_done};

    c->st = b->st;
    atomic_fetch_add(&c->st->outstanding, 1);
    c->up = ias_http_client_request(c->w->http, &req, &cb, c);
    free(url);
    free(owned);
    if (c->up == NULL) {
        ias_error(&c->log, "backend %s: invalid upstream request", b->id);
        atomic_fetch_sub(&c->st->outstanding, 1);
        c->st = NULL;
        c->fail = FAIL_CONNECT;
        attempt(c); /* bounded by max_attempts */
        return;
    }
    /* non-streaming answers come whole: only the total timeout applies */
    arm_timer(c, c->stream ? ctx->cfg.first_token_ms : 0);
}

/* ---- handlers ---- */

/* End-to-end headers for the model server: x-* except ours (ingress already
 * dropped client X-Ias-*) and the ids we set ourselves. */
static void collect_forward_headers(rcall *c)
{
    size_t n = ias_req_header_count(c->r);
    const char *key, *value;

    for (size_t i = 0; i < n && ias_req_header_at(c->r, i, &key, &value); i++) {
        if (c->nfwd >= MAX_FWD_HEADERS)
            break;
        if (strncasecmp(key, "x-", 2) != 0 || strncasecmp(key, "x-ias-", 6) == 0 ||
            strcasecmp(key, "x-request-id") == 0 || strncasecmp(key, "x-forwarded-", 12) == 0)
            continue;
        c->fwd[c->nfwd].name = ias_xstrdup(key);
        c->fwd[c->nfwd].value = ias_xstrdup(value);
        c->nfwd++;
    }
}

static bool uuid_or_empty(const char *s)
{
    return s[0] == '\0' || ias_uuid_valid(s);
}

/* Every guardrail profile is compiled (or could not be): enforce the prompt
 * side, then go upstream. */
static void guard_ready(rcall *c, int status, const char *why)
{
    char msg[512];

    if (c->r == NULL) {
        finish(c);
        return;
    }
    if (status != IAS_OK) {
        ias_warn(&c->log, "request %s: guardrails not enforceable: %s", c->request_id, why);
        fail_reply(c, 503, "guardrails_unavailable",
                   "The guardrails this request is subject to cannot be enforced right now.");
        return;
    }
    /* The output matcher follows one stream of text; several choices (n > 1,
     * or several prompts) interleave in one response. An embedding generates
     * no text: output rules do not apply to it (nchoices is 0). */
    if (router_guard_has_output(c->guard) && c->nchoices > 1) {
        fail_reply_param(c, 400, "invalid_request_error", c->n > 1 ? "n" : "prompt",
                         "More than one choice (n > 1 or several prompts) is not supported "
                         "under output guardrails.");
        return;
    }
    /* Prompt rules read text: token ids would pass them unchecked. */
    if (c->prompt_token_ids && router_guard_has_prompt(c->guard)) {
        if (c->kind == IAS_OPENAI_EMBEDDING)
            fail_reply_param(c, 400, "invalid_request_error", "input",
                             "Token-id inputs are not supported under prompt guardrails: they "
                             "cannot be checked. Send the input as text.");
        else
            fail_reply_param(c, 400, "invalid_request_error", "prompt",
                             "Token-id prompts are not supported under prompt guardrails: they "
                             "cannot be checked. Send the prompt as text.");
        return;
    }
    /* redaction rewrites the tree: from now on the upstream body is printed from it */
    c->body_dirty = c->guard != NULL;
    if (router_guard_prompt(c->guard, c->body, c->kind, msg, sizeof(msg)) != IAS_OK) {
        fail_reply(c, 400, "content_policy_violation", "%s", msg);
        return;
    }
    attempt(c);
}

static void on_guard_ready(router_guard *g, int status, const char *why, void *arg)
{
    guard_ready(arg, status, why);
}

/* What ingress tells about a body it validated: X-Ias-Stream (0 or 1) and
 * X-Ias-Prompt-Tokens (its prompt estimate). Both present and well formed, and
 * no guardrails to enforce (they need the tree): the router works on the raw
 * bytes. A direct call without them gets the full validation. */
static bool read_ingress_view(const ias_headers *hs, bool *stream, long long *prompt_estimate)
{
    long long v;

    if (hs->stream == NULL || hs->prompt_tokens == NULL ||
        (strcmp(hs->stream, "0") != 0 && strcmp(hs->stream, "1") != 0))
        return false;
    if (ias_parse_ll(hs->prompt_tokens, &v) != IAS_OK || v < 0)
        return false;
    if (hs->guardrails != NULL && hs->guardrails[strspn(hs->guardrails, " \t")] != '\0')
        return false;
    *stream = hs->stream[0] == '1';
    *prompt_estimate = v;
    return true;
}

static void handle(ias_req *r, router_ctx *ctx, ias_openai_kind kind)
{
    ias_headers hs;
    const char *tok, *raw;
    char why[256], model[IAS_OPENAI_MAX_MODEL_LEN + 1];
    int rc;
    const cJSON *model_item;
    ias_openai_request oreq;
    ias_openai_error oerr;
    cJSON *body = NULL;
    router_body_plan plan;
    bool raw_path, stream = false;
    long long estimate = 0;
    size_t rawlen;
    rcall *c;

    read_ias_headers(r, &hs);
    tok = hs.internal_token;
    if (ctx->cfg.internal_token[0] != '\0' &&
        (tok == NULL || strlen(tok) != strlen(ctx->cfg.internal_token) ||
         !ias_ct_equal(tok, ctx->cfg.internal_token, strlen(tok)))) {
        (void)ias_reply_openai_error(r, 401, "invalid_request_error", "invalid_internal_token",
                                     NULL, "missing or wrong X-Ias-Internal-Token");
        return;
    }
    /* Through ingress, the body was validated there: one scan for "model" and
     * stream_options instead of a tree and a second validation. Bytes the scan
     * refuses (cJSON is more lenient than it) take the full path. */
    raw = ias_req_body(r, &rawlen);
    raw_path = read_ingress_view(&hs, &stream, &estimate) &&
               router_body_plan_scan(raw, rawlen, &plan, model, sizeof(model)) == IAS_OK;
    if (!raw_path && (body = ias_req_json(r)) == NULL)
        return; /* answered 400 */

    c = rcall_new(worker_of(r));
    c->ctx = ctx;
    c->w = worker_of(r);
    c->r = r;
    c->kind = kind;
    c->body = body;
    c->t0_ms = ias_now_ms();
    c->ttft_ms = -1;
    c->backend = -1;
    c->status = 0;
    (void)ias_strlcpy(c->request_id, ias_req_id(r), sizeof(c->request_id));
    (void)ias_strlcpy(c->traceparent, ias_req_traceparent(r), sizeof(c->traceparent));
    c->log.request_id = c->request_id;
    c->log.traceparent = c->traceparent;
    copy_header(hs.org, c->org, sizeof(c->org));
    copy_header(hs.user, c->user, sizeof(c->user));
    copy_header(hs.key, c->key, sizeof(c->key));
    copy_header(hs.reservation, c->resv, sizeof(c->resv));
    c->include_usage = hs.include_usage != NULL && strcmp(hs.include_usage, "1") == 0;
    if (raw_path) {
        c->plan = plan;
        c->plan_state = 1;
        memcpy(c->model_name, model, sizeof(c->model_name));
    } else {
        model_item = cJSON_GetObjectItemCaseSensitive(body, "model");
        if (cJSON_IsString(model_item))
            (void)ias_strlcpy(c->model_name, model_item->valuestring, sizeof(c->model_name));
    }
    c->timer = evtimer_new(ias_req_base(r), on_timer, c);
    c->sse = ias_sse_parser_new(MAX_EVENT_BYTES, on_sse_event, c);
    if (c->timer == NULL || c->sse == NULL)
        ias_die("router: out of memory");

    if (c->org[0] == '\0' || !ias_uuid_valid(c->org) || !uuid_or_empty(c->user) ||
        !uuid_or_empty(c->key)) {
        c->org[0] = '\0'; /* no event without a valid tenant */
        fail_reply(c, 400, "missing_caller",
                   "X-Ias-Org-Id (and X-Ias-User-Id / X-Ias-Key-Id when present) must be UUIDs");
        return;
    }
    if (raw_path) {
        c->stream = stream && kind != IAS_OPENAI_EMBEDDING; /* embeddings never stream */
        c->prompt_estimate = estimate;
    } else if ((kind == IAS_OPENAI_CHAT ? ias_openai_parse_chat(body, &oreq, &oerr)
                : kind == IAS_OPENAI_EMBEDDING
                    ? ias_openai_parse_embedding(body, &oreq, &oerr)
                    : ias_openai_parse_completion(body, &oreq, &oerr)) != IAS_OK) {
        c->status = 400;
        ias_req_on_close(r, NULL, NULL);
        (void)ias_reply_openai_error(r, 400, "invalid_request_error", NULL,
                                     oerr.param[0] ? oerr.param : NULL, "%s", oerr.message);
        c->r = NULL;
        finish(c);
        return;
    } else {
        c->stream = oreq.stream;
        if (hs.include_usage == NULL)
            c->include_usage = oreq.include_usage; /* called directly, not through ingress */
        c->prompt_estimate = (long long)ias_openai_estimate_prompt_tokens(&oreq);
        c->n = oreq.n;
        c->nchoices = oreq.nchoices;
        c->prompt_token_ids = oreq.prompt_token_ids;
    }

    c->snap = router_registry_acquire(ctx);
    if (c->snap == NULL) {
        fail_reply(c, 503, "registry_unavailable", "The model registry is not loaded yet.");
        return;
    }
    c->model = router_registry_find(c->snap, c->model_name);
    if (c->model == NULL) {
        c->status = 404;
        ias_req_on_close(r, NULL, NULL);
        (void)ias_reply_openai_error(
            r, 404, "invalid_request_error", "model_not_found", "model",
            "The model `%s` does not exist or you do not have access to it.", c->model_name);
        c->r = NULL;
        finish(c);
        return;
    }
    collect_forward_headers(c);
    if (router_guard_new(hs.guardrails, &c->guard, why, sizeof(why)) != IAS_OK) {
        fail_reply(c, 400, "invalid_guardrails", "%s", why);
        return;
    }
    ias_req_on_close(r, on_client_close, c);
    if (c->guard == NULL) {
        attempt(c);
        return;
    }
    rc = router_guard_resolve(c->guard, ctx, c->w, &c->log, on_guard_ready, c, why, sizeof(why));
    if (rc != IAS_AGAIN)
        guard_ready(c, rc, why);
}

void router_handle_chat(ias_req *r, void *ctx)
{
    handle(r, ctx, IAS_OPENAI_CHAT);
}

void router_handle_completions(ias_req *r, void *ctx)
{
    handle(r, ctx, IAS_OPENAI_COMPLETION);
}

void router_handle_embeddings(ias_req *r, void *ctx)
{
    handle(r, ctx, IAS_OPENAI_EMBEDDING);
}
