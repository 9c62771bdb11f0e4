/* ias_req: allocation, lifetime (complete / close / references / reaper),
 * request ids, W3C traceparent, accessors, body and JSON. */
#include "http_internal.h"

#include "ias/crypto.h"
#include "ias/query.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[IAS_HS_METHOD_OTHER + 1] = {
    "GET",   "HEAD",   "POST",    "PUT",
    "PATCH", "DELETE", "OPTIONS", "OTHER", /* never routed: answered 501 (or 400) by the server */
};

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
    /* "00-<trace id>-<span id>-<flags>", assembled without printf */
    memcpy(r->traceparent, "00-", 3);
    memcpy(r->traceparent + 3, trace_id, 32);
    r->traceparent[35] = '-';
    memcpy(r->traceparent + 36, span, 16);
    r->traceparent[52] = '-';
    memcpy(r->traceparent + 53, flags, 2);
    r->traceparent[IAS_TRACEPARENT_LEN] = '\0';
}

/* ---- lifetime ---- */

void ias_hs_req_end(ias_req *r, bool closed)
{
    ias_worker *w = r->w;
    ias_server *srv = r->srv;

    w->inflight--;
    atomic_fetch_sub(&srv->inflight, 1);
    ias_gauge_add(srv->g_inflight, -1);
    r->drain_cb = NULL;
    ias_hs_observe(r, closed);
    if (closed && r->close_cb) {
        ias_req_cb cb = r->close_cb;

        r->close_cb = NULL;
        cb(r, r->close_arg);
    }
    ias_req_release(r); /* the server's reference */
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
    cJSON_Delete(r->json);
    free(r->body);
    free(r->strs_heap);
    free(r->xh_heap);
    /* kept for the next request of this worker: ias_req is ~3.5 KiB (the route
     * parameter and inline buffers), a size glibc serves from its slow large-bin path */
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
    /* the inline buffers need no clearing */
    memset(r, 0, offsetof(ias_req, xh_inline));
    r->next_reap = NULL;
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

/* Copies the target into the request: target, then raw path and query (the
 * target again, split at '?'), then the decoded path. */
static void set_target(ias_req *r, const char *target, size_t n)
{
    size_t need = 3 * (n + 1);
    char *s = need <= sizeof(r->strs) ? r->strs : (r->strs_heap = ias_xmalloc(need));
    char *q;
    size_t plen;

    r->target = s;
    memcpy(s, target, n);
    s[n] = '\0';
    r->raw_path = s + n + 1;
    memcpy(r->raw_path, target, n + 1);
    q = memchr(r->raw_path, '?', n);
    if (q) {
        *q = '\0';
        r->query = q + 1;
    }
    plen = strlen(r->raw_path);
    r->path = r->raw_path + n + 1;
    if (ias_url_decode(r->raw_path, plen, false, r->path, plen + 1) < 0) {
        r->bad_path = true;
        memcpy(r->path, r->raw_path, plen + 1);
    }
}

ias_req *ias_hs_req_new(ias_worker *w, ias_conn *c)
{
    ias_server *srv = w->srv;
    ias_req *r = req_alloc(w);
    ias_hs_head *h = &c->head;
    const char *hid = NULL, *tp = NULL;

    r->w = w;
    r->srv = srv;
    r->conn = c;
    r->refs = 1;
    r->state = IAS_REQ_OPEN;
    r->start_us = ias_now_us();
    r->slot = (int)srv->opts.nroutes + IAS_SLOT_UNMATCHED;
    if (h->error && !h->has_target)
        (void)ias_hs_request_line(c->rbuf, c->rlen, h);
    r->method_idx = h->has_method ? h->method_idx : IAS_HS_METHOD_OTHER;
    r->method = method_names[r->method_idx];
    r->is_head = r->method_idx == 1;
    r->http10 = h->minor == 0 && !h->error;
    r->match.route = -1;
    memcpy(r->peer, c->peer, sizeof(r->peer));
    r->xh = r->xh_inline;
    r->xh_cap = sizeof(r->xh_inline);
    if (h->has_target)
        set_target(r, c->rbuf + h->target, h->target_len);
    else
        set_target(r, "/", 1);

    if (!h->error) {
        hid = ias_hs_field_get(c->rbuf, c->fields, h->nfields, "X-Request-Id");
        tp = ias_hs_field_get(c->rbuf, c->fields, h->nfields, "traceparent");
    }
    if (hid && ias_hs_valid_request_id(hid))
        (void)ias_strlcpy(r->id, hid, sizeof(r->id));
    else
        ias_uuid_v4_fast(r->id);
    make_traceparent(r, tp);
    r->log.request_id = r->id;
    r->log.traceparent = r->traceparent;

    r->openai_errors = srv->opts.openai_errors;
    if (srv->openai_prefix && strncmp(r->path, srv->openai_prefix, strlen(srv->openai_prefix)) == 0)
        r->openai_errors = true;

    w->inflight++;
    atomic_fetch_add(&srv->inflight, 1);
    ias_gauge_add(srv->g_inflight, 1);
    return r;
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

const char *ias_req_target(const ias_req *r)
{
    return r->target;
}

const char *ias_req_header(const ias_req *r, const char *name)
{
    const ias_conn *c = r->conn;

    if (!c || r->state == IAS_REQ_DONE || r->state == IAS_REQ_CLOSED)
        return NULL;
    return ias_hs_field_get(c->rbuf, c->fields, c->head.error ? 0 : c->head.nfields, name);
}

size_t ias_req_header_count(const ias_req *r)
{
    const ias_conn *c = r->conn;

    if (!c || c->head.error)
        return 0;
    return c->head.nfields;
}

bool ias_req_header_at(const ias_req *r, size_t i, const char **name, const char **value)
{
    const ias_conn *c = r->conn;

    if (i >= ias_req_header_count(r))
        return false;
    *name = c->rbuf + c->fields[i].name;
    *value = c->rbuf + c->fields[i].value;
    return true;
}

int ias_req_cut(ias_req *r)
{
    if (!r->conn || (r->state != IAS_REQ_OPEN && r->state != IAS_REQ_STREAMING))
        return IAS_ERR;
    return ias_hs_conn_cut(r->conn);
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

    if (!r->body_read && r->conn && !r->conn->head.error) {
        const ias_conn *c = r->conn;
        size_t n = c->body_end - c->head.head_len;

        r->body = ias_xmalloc(n + 1);
        memcpy(r->body, c->rbuf + c->head.head_len, n);
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

void *ias_req_ctx(ias_req *r)
{
    return r->srv->opts.ctx;
}

void ias_req_on_close(ias_req *r, void (*cb)(ias_req *r, void *arg), void *arg)
{
    r->close_cb = cb;
    r->close_arg = arg;
}
