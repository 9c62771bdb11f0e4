/* ias_req: allocation, lifetime (complete / close / references / reaper),
 * request ids, W3C traceparent, accessors, body and JSON. */
#include "http_internal.h"

#include "ias/crypto.h"
#include "ias/query.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *method_name(enum evhttp_cmd_type t, int *idx)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        *idx = 0;
        return "GET";
    case EVHTTP_REQ_HEAD:
        *idx = 1;
        return "HEAD";
    case EVHTTP_REQ_POST:
        *idx = 2;
        return "POST";
    case EVHTTP_REQ_PUT:
        *idx = 3;
        return "PUT";
    case EVHTTP_REQ_PATCH:
        *idx = 4;
        return "PATCH";
    case EVHTTP_REQ_DELETE:
        *idx = 5;
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        *idx = 6;
        return "OPTIONS";
    default:
        *idx = 7;
        return "OTHER"; /* evhttp_set_allowed_methods keeps these out */
    }
}

bool ias_hs_valid_request_id(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++) {
        char c = s[n];
        if (n >= IAS_REQ_ID_MAX)
            return false;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

static bool lower_hex(const char *s, size_t n, bool *all_zero)
{
    *all_zero = true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        if (c != '0')
            *all_zero = false;
    }
    return true;
}

/* "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", lowercase, ids not all zero. */
int ias_hs_parse_traceparent(const char *in, char trace_id[33], char flags[3])
{
    bool zero;

    if (strlen(in) != IAS_TRACEPARENT_LEN || in[0] != '0' || in[1] != '0' || in[2] != '-' ||
        in[35] != '-' || in[52] != '-')
        return IAS_ERR;
    if (!lower_hex(in + 3, 32, &zero) || zero)
        return IAS_ERR;
    if (!lower_hex(in + 36, 16, &zero) || zero)
        return IAS_ERR;
    if (!lower_hex(in + 53, 2, &zero))
        return IAS_ERR;
    memcpy(trace_id, in + 3, 32);
    trace_id[32] = '\0';
    memcpy(flags, in + 53, 2);
    flags[2] = '\0';
    return IAS_OK;
}

static void random_hex(char *out, size_t nbytes)
{
    uint8_t b[16];

    /* never all zero: the W3C spec makes such ids invalid */
    /* correlation ids guard nothing: the per-thread fast generator */
    do {
        ias_fast_random(b, nbytes);
    } while (nbytes > 0 && b[0] == 0 && memcmp(b, b + 1, nbytes - 1) == 0);
    if (ias_hex_encode(b, nbytes, out, nbytes * 2 + 1) < 0)
        ias_die("fatal: hex encoding a trace id");
}

static void make_traceparent(ias_req *r, const char *incoming)
{
    char trace_id[33], flags[3], span[17];

    if (!incoming || ias_hs_parse_traceparent(incoming, trace_id, flags) != IAS_OK) {
        random_hex(trace_id, 16);
        memcpy(flags, "01", 3);
    }
    random_hex(span, 8);
    snprintf(r->traceparent, sizeof(r->traceparent), "00-%s-%s-%s", trace_id, span, flags);
}

/* ---- lifetime ---- */

static void conn_untune(ias_req *r)
{
    struct bufferevent *bev;
    struct timeval tv;

    if (!r->conn_tuned || !r->evcon)
        return;
    bev = evhttp_connection_get_bufferevent(r->evcon);
    tv.tv_sec = r->srv->opts.read_timeout_ms / 1000;
    tv.tv_usec = (r->srv->opts.read_timeout_ms % 1000) * 1000;
    /* back to evhttp's own settings for the next request on this connection */
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    r->conn_tuned = false;
}

void ias_hs_conn_tune(ias_req *r)
{
    struct bufferevent *bev;
    struct timeval tv;
    const ias_server_opts *o = &r->srv->opts;

    if (r->conn_tuned || !r->evcon)
        return;
    bev = evhttp_connection_get_bufferevent(r->evcon);
    tv.tv_sec = o->read_timeout_ms / 1000;
    tv.tv_usec = (o->read_timeout_ms % 1000) * 1000;
    /* evhttp keeps EV_READ on while a reply is written (to see closes) with its
     * read timeout armed, which would cut a long stream or a long wait from a
     * client that has nothing more to say. A stalled reader is still cut by the
     * write timeout. The input buffer is capped so a client cannot pile up
     * pipelined bytes meanwhile (cap >= one full request, or evhttp stalls). */
    bufferevent_set_timeouts(bev, NULL, &tv);
    bufferevent_setwatermark(bev, EV_READ, 0, o->max_header_bytes + o->max_body_bytes + 65536);
    r->conn_tuned = true;
}

static void req_end(ias_req *r, bool closed)
{
    ias_worker *w = r->w;
    ias_server *srv = r->srv;

    w->inflight--;
    atomic_fetch_sub(&srv->inflight, 1);
    ias_gauge_add(srv->g_inflight, -1);
    r->drain_cb = NULL;
    if (r->drain_ev)
        event_del(r->drain_ev);
    ias_hs_observe(r, closed);
    if (closed && r->close_cb) {
        ias_req_cb cb = r->close_cb;

        r->close_cb = NULL;
        cb(r, r->close_arg);
    }
    ias_req_release(r); /* the server's reference */
}

/* evhttp: the reply has been written. The connection lives on (keep-alive) or
 * is freed right after this returns. */
static void on_complete(struct evhttp_request *evreq, void *arg)
{
    ias_req *r = arg;

    if (r->evreq != evreq)
        return;
    conn_untune(r);
    evhttp_connection_set_closecb(r->evcon, NULL, NULL);
    r->evreq = NULL;
    r->evcon = NULL;
    r->state = IAS_REQ_DONE;
    req_end(r, false);
}

/* evhttp: the connection is being freed while our request is current (client
 * gone, write error, timeout, or evhttp_free at the end of a drain). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    ias_req *r = arg;

    evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (!r->evreq)
        return;
    /* On EOF/timeout before the reply was finished, libevent detaches the
     * request from the connection and leaves it to the user; otherwise it
     * frees it itself right after this callback. */
    if (evhttp_request_get_connection(r->evreq) == NULL)
        r->orphan = r->evreq;
    r->evreq = NULL;
    r->evcon = NULL;
    r->conn_tuned = false; /* the bufferevent goes with the connection */
    r->state = IAS_REQ_CLOSED;
    req_end(r, true);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    ias_hs_reap(arg);
}

void ias_hs_reap(ias_worker *w)
{
    while (w->reap) {
        ias_req *r = w->reap;

        w->reap = r->next_reap;
        ias_hs_req_free(r);
    }
}

void ias_req_retain(ias_req *r)
{
    r->refs++;
}

void ias_req_release(ias_req *r)
{
    ias_worker *w = r->w;

    if (r->refs <= 0) {
        ias_error(&r->log, "ias_req_release: reference count underflow");
        return;
    }
    if (--r->refs > 0)
        return;
    /* never free here: a callback of the owner may still be on the stack */
    r->next_reap = w->reap;
    w->reap = r;
    if (!w->reap_ev)
        w->reap_ev = event_new(w->base, -1, 0, reap_cb, w);
    if (!w->reap_ev)
        ias_die("fatal: event_new for the request reaper");
    event_active(w->reap_ev, EV_TIMEOUT, 0);
}

void ias_hs_req_free(ias_req *r)
{
    if (r->orphan)
        evhttp_request_free(r->orphan);
    if (r->drain_ev)
        event_free(r->drain_ev);
    if (r->chunk_buf)
        evbuffer_free(r->chunk_buf);
    cJSON_Delete(r->json);
    free(r->body);
    free(r->path);
    free(r->raw_path);
    free(r->query);
    /* kept for the next request of this worker: ias_req is ~2.5 KiB (the route
     * parameter buffers), a size glibc serves from its slow large-bin path */
    if (r->w && r->w->nfree_reqs < IAS_REQ_FREELIST_MAX) {
        ias_worker *w = r->w;
        r->next_reap = w->free_reqs;
        w->free_reqs = r;
        w->nfree_reqs++;
        /* under ASan a pooled request stays poisoned, use-after-free is still caught */
        IAS_POISON((char *)r + sizeof(r->w), offsetof(ias_req, next_reap) - sizeof(r->w));
        return;
    }
    free(r);
}

static ias_req *req_alloc(ias_worker *w)
{
    ias_req *r = w->free_reqs;

    if (!r)
        return ias_xcalloc(1, sizeof(*r));
    IAS_UNPOISON(r, sizeof(*r));
    w->free_reqs = r->next_reap;
    w->nfree_reqs--;
    memset(r, 0, sizeof(*r));
    return r;
}

void ias_hs_req_pool_free(ias_worker *w)
{
    while (w->free_reqs) {
        ias_req *r = w->free_reqs;
        IAS_UNPOISON(r, sizeof(*r));
        w->free_reqs = r->next_reap;
        free(r);
    }
    w->nfree_reqs = 0;
}

bool ias_req_closed(const ias_req *r)
{
    return r->state == IAS_REQ_CLOSED;
}

ias_req *ias_hs_req_new(ias_worker *w, struct evhttp_request *evreq)
{
    ias_server *srv = w->srv;
    ias_req *r = req_alloc(w);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(evreq);
    const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq *in = evhttp_request_get_input_headers(evreq);
    const char *hid = evhttp_find_header(in, "X-Request-Id");
    size_t n;

    r->w = w;
    r->srv = srv;
    r->evreq = evreq;
    r->evcon = evhttp_request_get_connection(evreq);
    r->refs = 1;
    r->state = IAS_REQ_OPEN;
    r->start_us = ias_now_us();
    r->slot = (int)srv->opts.nroutes + IAS_SLOT_UNMATCHED;
    r->method = method_name(evhttp_request_get_command(evreq), &r->method_idx);
    r->is_head = r->method_idx == 1;
    r->match.route = -1;

    if (!raw || !*raw)
        raw = "/";
    r->raw_path = ias_xstrdup(raw);
    n = strlen(raw);
    r->path = ias_xmalloc(n + 1);
    if (ias_url_decode(raw, n, false, r->path, n + 1) < 0) {
        r->bad_path = true;
        memcpy(r->path, raw, n + 1);
    }
    if (query)
        r->query = ias_xstrdup(query);

    if (hid && ias_hs_valid_request_id(hid))
        (void)ias_strlcpy(r->id, hid, sizeof(r->id));
    else
        ias_uuid_v4_fast(r->id);
    make_traceparent(r, evhttp_find_header(in, "traceparent"));
    r->log.request_id = r->id;
    r->log.traceparent = r->traceparent;

    r->openai_errors = srv->opts.openai_errors;
    if (srv->openai_prefix && strncmp(r->path, srv->openai_prefix, strlen(srv->openai_prefix)) == 0)
        r->openai_errors = true;

    if (evhttp_add_header(evhttp_request_get_output_headers(evreq), "X-Request-Id", r->id) != 0)
        ias_warn(&r->log, "cannot add X-Request-Id");
    if (r->evcon) {
        char *addr = NULL;
        ev_uint16_t port = 0;

        evhttp_connection_get_peer(r->evcon, &addr, &port);
        if (addr)
            (void)ias_strlcpy(r->peer, addr, sizeof(r->peer));
        /* a keep-alive connection carries many requests: the close callback
         * always names the current one and is cleared when it completes */
        evhttp_connection_set_closecb(r->evcon, on_conn_close, r);
    }
    evhttp_request_set_on_complete_cb(evreq, on_complete, r);

    w->inflight++;
    atomic_fetch_add(&srv->inflight, 1);
    ias_gauge_add(srv->g_inflight, 1);
    return r;
}

void ias_hs_after_handler(ias_req *r)
{
    struct bufferevent *bev;
    bufferevent_data_cb wcb = NULL;
    bufferevent_event_cb ecb = NULL;
    void *cbarg = NULL;

    if (r->state != IAS_REQ_OPEN || !r->evcon)
        return;
    /* The handler went async. evhttp stopped reading after the request, so a
     * client that leaves would go unnoticed until we write. Read for close
     * detection the way evhttp does while writing: no read callback (the
     * connection is mid-request; evhttp's reader would abort on it), its
     * event callback turns EOF into a connection failure and on_conn_close. */
    bev = evhttp_connection_get_bufferevent(r->evcon);
    bufferevent_getcb(bev, NULL, &wcb, &ecb, &cbarg);
    ias_hs_conn_tune(r);
    bufferevent_setcb(bev, NULL, wcb, ecb, cbarg);
    if (bufferevent_enable(bev, EV_READ) != 0)
        ias_warn(&r->log, "cannot watch the connection for a close");
}

/* ---- accessors ---- */

const char *ias_req_method(const ias_req *r)
{
    return r->method;
}

const char *ias_req_path(const ias_req *r)
{
    return r->path;
}

const char *ias_req_query(const ias_req *r)
{
    return r->query;
}

const char *ias_req_param(const ias_req *r, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < r->match.nparams; i++) {
        if (r->match.params[i].name_len == n && memcmp(r->match.params[i].name, name, n) == 0)
            return r->match.params[i].value;
    }
    return NULL;
}

const char *ias_req_header(const ias_req *r, const char *name)
{
    if (!r->evreq)
        return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(r->evreq), name);
}

const char *ias_req_peer(const ias_req *r)
{
    return r->peer;
}

const char *ias_req_id(const ias_req *r)
{
    return r->id;
}

const char *ias_req_traceparent(const ias_req *r)
{
    return r->traceparent;
}

const ias_log_ctx *ias_req_log(const ias_req *r)
{
    return &r->log;
}

const char *ias_req_body(const ias_req *cr, size_t *len)
{
    /* the copy is cached in the request: a mutable cache behind a const view */
    ias_req *r = (ias_req *)cr;

    if (!r->body_read && r->evreq) {
        struct evbuffer *b = evhttp_request_get_input_buffer(r->evreq);
        size_t n = evbuffer_get_length(b);

        r->body = ias_xmalloc(n + 1);
        if (n > 0 && evbuffer_copyout(b, r->body, n) != (ev_ssize_t)n)
            n = 0;
        r->body[n] = '\0';
        r->body_len = n;
        r->body_read = true;
    }
    if (len)
        *len = r->body_read ? r->body_len : 0;
    return r->body_read ? r->body : "";
}

cJSON *ias_req_json(ias_req *r)
{
    const char *body, *end = NULL;
    size_t len;
    cJSON *j;

    if (r->json)
        return r->json;
    body = ias_req_body(r, &len);
    if (len == 0) {
        (void)ias_reply_error(r, 400, NULL, "invalid JSON: the request body is empty");
        return NULL;
    }
    /* A NUL inside the body would end parsing early and hide what follows. */
    end = memchr(body, '\0', len);
    if (end) {
        (void)ias_reply_error(r, 400, NULL, "invalid JSON at byte %zu", (size_t)(end - body));
        return NULL;
    }
    /* require_null_terminated: nothing but whitespace may follow the value; cJSON
     * wants the terminating NUL inside the length for that check */
    j = cJSON_ParseWithLengthOpts(body, len + 1, &end, true);
    if (!j) {
        size_t pos = (end && end >= body && end <= body + len) ? (size_t)(end - body) : 0;

        (void)ias_reply_error(r, 400, NULL, "invalid JSON at byte %zu", pos);
        return NULL;
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        (void)ias_reply_error(r, 400, NULL, "the request body must be a JSON object");
        return NULL;
    }
    r->json = j;
    return j;
}

ias_worker *ias_req_worker(ias_req *r)
{
    return r->w;
}

struct event_base *ias_req_base(ias_req *r)
{
    return r->w->base;
}

struct evhttp_request *ias_req_evreq(ias_req *r)
{
    return r->evreq;
}

void *ias_req_ctx(ias_req *r)
{
    return r->srv->opts.ctx;
}

void ias_req_on_close(ias_req *r, void (*cb)(ias_req *r, void *arg), void *arg)
{
    r->close_cb = cb;
    r->close_arg = arg;
}
