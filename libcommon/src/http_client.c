/* Asynchronous HTTP/1.1 client: pool, connections, calls, timeouts. See http_client.h.
 *
 * Objects: a host_pool per (host, port) or unix socket path holding idle connections; a conn owns a
 * bufferevent and a response parser and serves one call at a time; a call owns
 * the serialized request (kept for the stale keep-alive retry), one timer for
 * all its deadlines and one "kick" event for work that must not run on the
 * caller's stack (failures detected inside ias_http_client_request, resume).
 * Finished calls and closed connections are put on dead lists and freed by the
 * reaper event on the next loop pass, never under a callback still running. */
#include "ias/http_client.h"
#include "ias/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

enum {
    DEF_CONNECT_MS = 3000,
    DEF_FIRST_BYTE_MS = 30000,
    DEF_IDLE_MS = 30000,
    DEF_MAX_HEADER_BYTES = 16 * 1024,
    DEF_MAX_FETCH_BODY = 1024 * 1024,
    DEF_MAX_IDLE_PER_HOST = 16,
    DEF_IDLE_EXPIRY_MS = 4000,
    DEF_READ_HWM = 64 * 1024,
    MIN_READ_HWM = 4096,
    MAX_METHOD_LEN = 32,
};

typedef struct conn conn;
typedef struct host_pool host_pool;
typedef struct dns_holder dns_holder;
typedef struct lookup lookup;
typedef struct fetch_state fetch_state;

enum phase { PH_CONNECT, PH_FIRST_BYTE, PH_BODY };

struct conn {
    ias_http_client *c;
    host_pool *pool;
    struct bufferevent *bev;
    ias_http_parser *parser;
    ias_http_call *call; /* NULL while idle */
    lookup *lookup;      /* name resolution in flight */
    bool connected;
    bool reused; /* has completed a response before */
    bool idle;
    bool eof; /* peer closed or read error; handled once the input is consumed */
    bool write_failed;
    bool closed;
    char eof_reason[96];
    conn *idle_prev, *idle_next; /* pool's idle list */
    conn *dead_next;
};

struct host_pool {
    char host[256];
    uint16_t port;
    char unix_path[IAS_HTTP_UNIX_PATH_MAX]; /* unix socket pool: "" for TCP */
    char name[300];                         /* "host:port" or "unix:/path", for errors */
    bool literal;                           /* sa holds the address: no lookup */
    struct sockaddr_storage sa;
    int salen;
    conn *idle_head, *idle_tail; /* most recently used first */
    size_t nidle;
    host_pool *next;
};

/* The resolver outlives the client while abandoned lookups drain (their
 * callbacks arrive on a later loop pass and touch the evdns_base). */
struct dns_holder {
    struct evdns_base *dns;
    struct event_base *base;
    size_t pending;
    bool orphaned;
};

struct lookup {
    dns_holder *h;
    conn *k; /* NULL once abandoned */
    struct evdns_getaddrinfo_request *req;
};

struct fetch_state {
    ias_http_fetch_cb cb;
    void *arg;
    char *body;
    size_t len, cap;
    char *hblob;
    ias_http_header *hdrs;
    size_t nhdrs;
};

struct ias_http_call {
    ias_http_client *c;
    host_pool *pool;
    conn *conn;
    ias_http_callbacks cb;
    void *arg;
    char *reqbuf;
    size_t reqlen;
    bool head_request;
    int connect_ms, first_byte_ms, idle_ms, total_ms; /* 0: none */
    size_t max_header_bytes;
    uint64_t max_body; /* 0: none */
    uint64_t total_deadline;
    uint64_t phase_deadline;
    uint64_t last_activity;
    enum phase phase;
    struct event *timer;
    struct event *kick;
    bool paused;
    bool finished;
    bool started;
    bool retried;
    bool reused;
    bool has_pending;
    ias_http_result pending_result;
    int status;
    uint64_t body_bytes;
    char error[192];
    fetch_state *fetch;
    ias_http_call *prev, *next; /* client's live calls */
    ias_http_call *dead_next;
};

struct ias_http_client {
    struct event_base *base;
    ias_http_client_opts o;
    char *hosts_file;
    char *resolv_conf;
    dns_holder *dnsh;
    bool closing;
    host_pool *pools;
    ias_http_call *calls; /* live calls */
    ias_http_call *dead_calls;
    ias_http_call *free_calls; /* reaped, kept for reuse (linked by dead_next) */
    size_t nfree_calls;
    conn *dead_conns;
    struct event *reaper;
    ias_http_client_stats st;
};

static void conn_process(conn *k);
static void conn_close(conn *k);
static void call_arm_timer(ias_http_call *call);

const char *ias_http_result_str(ias_http_result r)
{
    switch (r) {
    case IAS_HTTP_OK:
        return "ok";
    case IAS_HTTP_CONNECT_FAILED:
        return "connect_failed";
    case IAS_HTTP_CONNECT_TIMEOUT:
        return "connect_timeout";
    case IAS_HTTP_FIRST_BYTE_TIMEOUT:
        return "first_byte_timeout";
    case IAS_HTTP_IDLE_TIMEOUT:
        return "idle_timeout";
    case IAS_HTTP_TOTAL_TIMEOUT:
        return "total_timeout";
    case IAS_HTTP_PROTOCOL_ERROR:
        return "protocol_error";
    case IAS_HTTP_RESET:
        return "reset";
    case IAS_HTTP_CANCELLED:
        return "cancelled";
    case IAS_HTTP_TOO_LARGE:
        return "too_large";
    }
    return "unknown";
}

/* ---- deferred frees ---- */

static void fetch_state_free(fetch_state *f)
{
    if (!f)
        return;
    free(f->body);
    free(f->hblob);
    free(f->hdrs);
    free(f);
}

/* Reaped calls kept per client for the next requests: a call is a calloc
 * and two event_new/event_free pairs otherwise, on every upstream request. */
enum { CALL_FREELIST_MAX = 64 };

static void call_destroy(ias_http_call *call)
{
    event_free(call->timer);
    event_free(call->kick);
    free(call);
}

static void reap(ias_http_client *c)
{
    ias_http_call *call;
    while ((call = c->dead_calls)) {
        c->dead_calls = call->dead_next;
        fetch_state_free(call->fetch);
        free(call->reqbuf);
        if (c->closing || c->nfree_calls >= CALL_FREELIST_MAX) {
            call_destroy(call);
            continue;
        }
        /* the events keep pointing at this call, which is what a reused call
         * needs; nothing of them may fire before then */
        event_del(call->timer);
        event_del(call->kick);
        call->dead_next = c->free_calls;
        c->free_calls = call;
        c->nfree_calls++;
        /* under ASan a pooled call stays poisoned: use-after-free is still caught */
        IAS_POISON(call, sizeof(*call));
    }
    conn *k;
    while ((k = c->dead_conns)) {
        c->dead_conns = k->dead_next;
        if (k->bev)
            bufferevent_free(k->bev);
        ias_http_parser_free(k->parser);
        free(k);
    }
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    reap(arg);
}

static void schedule_reap(ias_http_client *c)
{
    event_active(c->reaper, EV_TIMEOUT, 0);
}

/* ---- resolver ---- */

static void dns_free_cb(evutil_socket_t fd, short what, void *arg)
{
    dns_holder *h = arg;
    evdns_base_free(h->dns, 0);
    free(h);
}

static dns_holder *client_dns(ias_http_client *c)
{
    if (c->dnsh)
        return c->dnsh;
    struct evdns_base *dns;
    if (c->resolv_conf) {
        dns = evdns_base_new(c->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (dns && evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, c->resolv_conf) != 0) {
            ias_warn(NULL, "http client: cannot use resolver config %s", c->resolv_conf);
            evdns_base_free(dns, 0);
            return NULL;
        }
    } else {
        dns = evdns_base_new(c->base,
                             EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    }
    if (!dns)
        return NULL;
    if (c->hosts_file && evdns_base_load_hosts(dns, c->hosts_file) != 0)
        ias_warn(NULL, "http client: cannot load hosts file %s", c->hosts_file);
    c->dnsh = ias_xcalloc(1, sizeof(*c->dnsh));
    c->dnsh->dns = dns;
    c->dnsh->base = c->base;
    return c->dnsh;
}

static void dns_release(dns_holder *h)
{
    if (!h)
        return;
    if (h->pending == 0) {
        evdns_base_free(h->dns, 0);
        free(h);
        return;
    }
    h->orphaned = true; /* the last lookup callback schedules the free */
}

/* ---- timers ---- */

static uint64_t resolve_ms(int req, int def)
{
    int v = req != 0 ? req : def;
    return v > 0 ? (uint64_t)v : 0;
}

static void call_set_phase(ias_http_call *call, enum phase ph)
{
    uint64_t now = ias_now_ms();
    call->phase = ph;
    if (ph == PH_CONNECT)
        call->phase_deadline = call->connect_ms ? now + (uint64_t)call->connect_ms : 0;
    else if (ph == PH_FIRST_BYTE)
        call->phase_deadline = call->first_byte_ms ? now + (uint64_t)call->first_byte_ms : 0;
    else
        call->last_activity = now;
    call_arm_timer(call);
}

/* One timer per call for the nearest deadline; the idle deadline moves with
 * every body byte, so the timer only checks it when it fires (no re-arm per read). */
static void call_arm_timer(ias_http_call *call)
{
    uint64_t dl = 0;
    if (call->phase != PH_BODY)
        dl = call->phase_deadline;
    else if (!call->paused && call->idle_ms)
        dl = call->last_activity + (uint64_t)call->idle_ms;
    if (call->total_deadline && (!dl || call->total_deadline < dl))
        dl = call->total_deadline;
    if (!dl) {
        event_del(call->timer);
        return;
    }
    uint64_t now = ias_now_ms();
    uint64_t ms = dl > now ? dl - now : 1;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(call->timer, &tv);
}

/* ---- call completion ---- */

static void call_detach(ias_http_call *call)
{
    conn *k = call->conn;
    if (k) {
        k->call = NULL;
        call->conn = NULL;
    }
}

/* Ends the call: closes its connection (if still attached), reports unless
 * cancelled explicitly, and queues the call for freeing. */
static void call_end(ias_http_call *call, ias_http_result result, bool notify)
{
    if (call->finished)
        return;
    ias_http_client *c = call->c;
    call->finished = true;
    event_del(call->timer);
    event_del(call->kick);
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    c->st.active--;
    conn *k = call->conn;
    if (k) {
        call_detach(call);
        conn_close(k);
    }
    if (notify)
        call->cb.on_done(call, result, call->arg);
    call->dead_next = c->dead_calls;
    c->dead_calls = call;
    schedule_reap(c);
}

IAS_PRINTF(3, 4)
static void call_fail(ias_http_call *call, ias_http_result result, const char *fmt, ...)
{
    if (call->finished)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, ap);
    va_end(ap);
    call_end(call, result, true);
}

/* Failure found where on_done must not run yet (inside ias_http_client_request,
 * or inside the resolver): the connection goes now, the report on the kick. */
IAS_PRINTF(3, 4)
static void call_fail_async(ias_http_call *call, ias_http_result result, const char *fmt, ...)
{
    if (call->finished || call->has_pending)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, ap);
    va_end(ap);
    call->has_pending = true;
    call->pending_result = result;
    conn *k = call->conn;
    if (k) {
        call_detach(call);
        conn_close(k);
    }
    event_del(call->timer);
    event_active(call->kick, EV_TIMEOUT, 0);
}

/* ---- connections ---- */

static void idle_remove(conn *k)
{
    host_pool *pool = k->pool;
    if (k->idle_prev)
        k->idle_prev->idle_next = k->idle_next;
    else
        pool->idle_head = k->idle_next;
    if (k->idle_next)
        k->idle_next->idle_prev = k->idle_prev;
    else
        pool->idle_tail = k->idle_prev;
    k->idle_prev = k->idle_next = NULL;
    pool->nidle--;
    k->c->st.idle--;
    k->idle = false;
}

static void conn_close(conn *k)
{
    if (k->closed)
        return;
    ias_http_client *c = k->c;
    k->closed = true;
    if (k->idle)
        idle_remove(k);
    if (k->lookup) {
        lookup *l = k->lookup;
        k->lookup = NULL;
        l->k = NULL; /* its callback frees it */
        if (l->req)
            evdns_getaddrinfo_cancel(l->req);
    }
    if (k->call)
        call_detach(k->call);
    if (k->bev) {
        bufferevent_setcb(k->bev, NULL, NULL, NULL, NULL);
        bufferevent_disable(k->bev, EV_READ | EV_WRITE);
    }
    k->dead_next = c->dead_conns;
    c->dead_conns = k;
    schedule_reap(c);
}

static void conn_park(conn *k)
{
    ias_http_client *c = k->c;
    host_pool *pool = k->pool;
    if (pool->nidle >= c->o.max_idle_per_host)
        conn_close(pool->idle_tail);
    k->idle_prev = NULL;
    k->idle_next = pool->idle_head;
    if (pool->idle_head)
        pool->idle_head->idle_prev = k;
    else
        pool->idle_tail = k;
    pool->idle_head = k;
    pool->nidle++;
    c->st.idle++;
    k->idle = true;
    struct timeval tv = {.tv_sec = c->o.idle_expiry_ms / 1000,
                         .tv_usec = (c->o.idle_expiry_ms % 1000) * 1000};
    bufferevent_set_timeouts(k->bev, &tv, NULL);
    bufferevent_enable(k->bev, EV_READ); /* notice the server closing it */
}

/* Cheap liveness check before reuse: the FIN may sit unread in the kernel. */
static bool conn_looks_alive(conn *k)
{
    if (evbuffer_get_length(bufferevent_get_input(k->bev)) > 0)
        return false;
    evutil_socket_t fd = bufferevent_getfd(k->bev);
    if (fd < 0)
        return false;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    conn *k = arg;
    if (k->closed)
        return;
    if (!k->call) {
        conn_close(k); /* bytes on an idle connection: unusable */
        return;
    }
    conn_process(k);
}

static void set_nodelay(conn *k)
{
    evutil_socket_t fd = bufferevent_getfd(k->bev);
    int one = 1;
    if (k->pool->unix_path[0])
        return; /* no Nagle on unix sockets */
    if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        ias_debug(NULL, "http client: TCP_NODELAY: %s", strerror(errno));
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    conn *k = arg;
    if (k->closed)
        return;
    ias_http_call *call = k->call;
    if (what & BEV_EVENT_CONNECTED) {
        k->connected = true;
        set_nodelay(k);
        if (call) {
            if (!call->paused)
                bufferevent_enable(k->bev, EV_READ);
            call_set_phase(call, PH_FIRST_BYTE);
        }
        return;
    }
    if (!call) {
        conn_close(k); /* idle: closed by the server, error or expiry */
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    if (!k->connected) {
        call_fail(call, IAS_HTTP_CONNECT_FAILED, "connect to %s failed: %s", k->pool->name,
                  err ? evutil_socket_error_to_string(err) : "connection refused");
        return;
    }
    if ((what & BEV_EVENT_ERROR) && (what & BEV_EVENT_WRITING)) {
        /* The server may already have answered (an early 413, say): keep
         * reading; the read side reports the close. Never reuse this one. */
        k->write_failed = true;
        return;
    }
    k->eof = true;
    if (what & BEV_EVENT_EOF)
        snprintf(k->eof_reason, sizeof(k->eof_reason), "closed by the server");
    else
        snprintf(k->eof_reason, sizeof(k->eof_reason), "%s",
                 err ? evutil_socket_error_to_string(err) : "read error");
    conn_process(k);
}

static int conn_connect_addr(conn *k, const struct sockaddr *sa, int salen)
{
    if (bufferevent_socket_connect(k->bev, sa, salen) != 0)
        return IAS_ERR;
    return IAS_OK;
}

static void lookup_cb(int result, struct evutil_addrinfo *ai, void *arg)
{
    lookup *l = arg;
    dns_holder *h = l->h;
    conn *k = l->k;
    h->pending--;
    if (k) {
        k->lookup = NULL;
        ias_http_call *call = k->call;
        if (result != 0 || !ai) {
            if (call)
                call_fail_async(call, IAS_HTTP_CONNECT_FAILED, "cannot resolve %s: %s",
                                k->pool->host,
                                evutil_gai_strerror(result ? result : EVUTIL_EAI_FAIL));
            else
                conn_close(k);
        } else {
            /* Prefer IPv4 when both came back: services listen on it everywhere. */
            struct evutil_addrinfo *pick = ai;
            for (struct evutil_addrinfo *a = ai; a; a = a->ai_next)
                if (a->ai_family == AF_INET) {
                    pick = a;
                    break;
                }
            if (conn_connect_addr(k, pick->ai_addr, (int)pick->ai_addrlen) != IAS_OK) {
                int err = EVUTIL_SOCKET_ERROR();
                if (call)
                    call_fail_async(call, IAS_HTTP_CONNECT_FAILED, "connect to %s failed: %s",
                                    k->pool->name, evutil_socket_error_to_string(err));
                else
                    conn_close(k);
            }
        }
    }
    if (ai)
        evutil_freeaddrinfo(ai);
    free(l);
    if (h->orphaned && h->pending == 0) {
        /* Not from inside the resolver's own callback: on the next pass. */
        struct timeval zero = {0, 0};
        if (event_base_once(h->base, -1, EV_TIMEOUT, dns_free_cb, h, &zero) != 0)
            ias_warn(NULL, "http client: cannot schedule resolver free");
    }
}

/* Opens a connection for call (attached). Failures are reported on the kick. */
static conn *conn_open(ias_http_call *call)
{
    ias_http_client *c = call->c;
    host_pool *pool = call->pool;
    conn *k = ias_xcalloc(1, sizeof(*k));
    k->c = c;
    k->pool = pool;
    k->parser = ias_http_parser_new();
    k->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!k->bev) {
        ias_http_parser_free(k->parser);
        free(k);
        return NULL;
    }
    bufferevent_setcb(k->bev, conn_read_cb, NULL, conn_event_cb, k);
    bufferevent_setwatermark(k->bev, EV_READ, 0, c->o.read_high_watermark);
    c->st.connects++;
    k->call = call;
    call->conn = k;
    call->reused = false;
    if (pool->literal) {
        if (conn_connect_addr(k, (const struct sockaddr *)&pool->sa, pool->salen) != IAS_OK) {
            int err = EVUTIL_SOCKET_ERROR();
            call_fail_async(call, IAS_HTTP_CONNECT_FAILED, "connect to %s failed: %s", pool->name,
                            evutil_socket_error_to_string(err));
        }
        return k;
    }
    dns_holder *h = client_dns(c);
    if (!h) {
        call_fail_async(call, IAS_HTTP_CONNECT_FAILED, "no resolver for %s", pool->host);
        return k;
    }
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = c->o.family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)pool->port);
    lookup *l = ias_xcalloc(1, sizeof(*l));
    l->h = h;
    l->k = k;
    k->lookup = l;
    h->pending++;
    /* Answered at once (hosts file, numeric, failure): the callback already ran,
     * freed l and NULL comes back. Otherwise a handle to cancel with. */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(h->dns, pool->host, port, &hints, lookup_cb, l);
    if (req)
        l->req = req;
    return k;
}

/* ---- calls on connections ---- */

static void call_attach(ias_http_call *call, conn *k)
{
    ias_http_parse_limits lim = {.max_header_bytes = call->max_header_bytes};
    ias_http_parser_begin(k->parser, &lim, call->head_request);
    k->call = call;
    call->conn = k;
    call->started = false;
    call->status = 0;
    call->body_bytes = 0;
    if (bufferevent_write(k->bev, call->reqbuf, call->reqlen) != 0) {
        call_fail_async(call, IAS_HTTP_CONNECT_FAILED, "cannot queue the request");
        return;
    }
    if (call->has_pending)
        return;
    call_set_phase(call, k->connected ? PH_FIRST_BYTE : PH_CONNECT);
}

static void call_start(ias_http_call *call, bool allow_pool)
{
    ias_http_client *c = call->c;
    host_pool *pool = call->pool;
    conn *k;
    while (allow_pool && (k = pool->idle_head)) {
        idle_remove(k);
        if (!conn_looks_alive(k)) {
            conn_close(k);
            continue;
        }
        bufferevent_set_timeouts(k->bev, NULL, NULL);
        c->st.reuses++;
        call->reused = true;
        call_attach(call, k);
        return;
    }
    k = conn_open(call);
    if (!k) {
        call_fail_async(call, IAS_HTTP_CONNECT_FAILED, "cannot create a socket");
        return;
    }
    if (call->has_pending)
        return;
    call_attach(call, k);
}

static void call_complete(ias_http_call *call)
{
    conn *k = call->conn;
    ias_http_client *c = call->c;
    bool keep = !c->o.disable_keepalive && !c->closing && ias_http_parser_keep_alive(k->parser) &&
                !k->eof && !k->write_failed &&
                evbuffer_get_length(bufferevent_get_input(k->bev)) == 0 &&
                evbuffer_get_length(bufferevent_get_output(k->bev)) == 0;
    call_detach(call);
    k->reused = true;
    if (keep)
        conn_park(k);
    else
        conn_close(k);
    call_end(call, IAS_HTTP_OK, true);
}

static void call_retry(ias_http_call *call)
{
    conn *k = call->conn;
    ias_debug(NULL, "http client: stale keep-alive connection to %s (%s), retrying",
              call->pool->name, k->eof_reason);
    call_detach(call);
    conn_close(k);
    call->retried = true;
    call->c->st.stale_retries++;
    call_start(call, false);
}

static void handle_eof(conn *k, ias_http_call *call)
{
    if (!call->started) {
        if (k->reused && !call->retried && !k->c->closing) {
            call_retry(call);
            return;
        }
        call_fail(call, IAS_HTTP_RESET, "connection to %s %s before any response byte",
                  k->pool->name, k->eof_reason);
        return;
    }
    if (ias_http_parser_eof(k->parser) == IAS_HTTP_EV_DONE) {
        call_complete(call);
        return;
    }
    call_fail(call, IAS_HTTP_RESET, "%s (%s)", ias_http_parser_errmsg(k->parser), k->eof_reason);
}

static bool on_headers(conn *k, ias_http_call *call)
{
    const ias_http_response *resp = ias_http_parser_response(k->parser);
    call->status = resp->status;
    if (call->max_body && resp->content_length > 0 &&
        (uint64_t)resp->content_length > call->max_body) {
        call_fail(call, IAS_HTTP_TOO_LARGE, "Content-Length %lld over the %llu byte limit",
                  (long long)resp->content_length, (unsigned long long)call->max_body);
        return false;
    }
    call_set_phase(call, PH_BODY);
    if (call->cb.on_response)
        call->cb.on_response(call, resp, call->arg);
    return true;
}

/* Feeds the buffered input to the parser and the callbacks until it is empty,
 * the call ends, or the call is paused. */
static void conn_process(conn *k)
{
    ias_http_call *call = k->call;
    if (!call)
        return;
    struct evbuffer *in = bufferevent_get_input(k->bev);
    while (k->call == call && !call->finished && !call->paused) {
        struct evbuffer_iovec v = {.iov_base = NULL, .iov_len = 0};
        size_t avail = evbuffer_get_length(in);
        if (avail > 0) {
            call->started = true;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                return;
        }
        size_t used = 0, blen = 0;
        const char *body = NULL;
        ias_http_ev ev = ias_http_parser_run(k->parser, v.iov_base, v.iov_len, &used, &body, &blen);
        switch (ev) {
        case IAS_HTTP_EV_NEED_MORE:
            evbuffer_drain(in, used);
            if (avail == 0) {
                if (k->eof)
                    handle_eof(k, call);
                return;
            }
            break;
        case IAS_HTTP_EV_HEADERS:
            evbuffer_drain(in, used);
            if (!on_headers(k, call))
                return;
            break;
        case IAS_HTTP_EV_BODY:
            if (call->max_body && call->body_bytes + blen > call->max_body) {
                call_fail(call, IAS_HTTP_TOO_LARGE, "response body over the %llu byte limit",
                          (unsigned long long)call->max_body);
                return;
            }
            call->body_bytes += blen;
            if (call->idle_ms)
                call->last_activity = ias_now_ms();
            if (call->cb.on_body)
                call->cb.on_body(call, body, blen, call->arg);
            if (k->call != call || call->finished)
                return; /* cancelled inside on_body: the connection is gone */
            evbuffer_drain(in, used);
            break;
        case IAS_HTTP_EV_DONE:
            evbuffer_drain(in, used);
            call_complete(call);
            return;
        case IAS_HTTP_EV_ERROR:
            call_fail(call,
                      ias_http_parser_error(k->parser) == IAS_HTTP_PERR_TOO_LARGE
                          ? IAS_HTTP_TOO_LARGE
                          : IAS_HTTP_PROTOCOL_ERROR,
                      "%s", ias_http_parser_errmsg(k->parser));
            return;
        }
    }
}

static void call_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    ias_http_call *call = arg;
    if (call->finished)
        return;
    uint64_t now = ias_now_ms();
    if (call->total_deadline && now >= call->total_deadline) {
        call_fail(call, IAS_HTTP_TOTAL_TIMEOUT, "no complete response within %d ms",
                  call->total_ms);
        return;
    }
    switch (call->phase) {
    case PH_CONNECT:
        if (call->phase_deadline && now >= call->phase_deadline) {
            call_fail(call, IAS_HTTP_CONNECT_TIMEOUT, "connect to %s took over %d ms",
                      call->pool->name, call->connect_ms);
            return;
        }
        break;
    case PH_FIRST_BYTE:
        if (call->phase_deadline && now >= call->phase_deadline) {
            call_fail(call, IAS_HTTP_FIRST_BYTE_TIMEOUT, "no response head within %d ms",
                      call->first_byte_ms);
            return;
        }
        break;
    case PH_BODY:
        if (!call->paused && call->idle_ms &&
            now >= call->last_activity + (uint64_t)call->idle_ms) {
            call_fail(call, IAS_HTTP_IDLE_TIMEOUT, "no body byte for %d ms", call->idle_ms);
            return;
        }
        break;
    }
    call_arm_timer(call);
}

static void call_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    ias_http_call *call = arg;
    if (call->finished)
        return;
    if (call->has_pending) {
        call->has_pending = false;
        call_end(call, call->pending_result, true);
        return;
    }
    conn *k = call->conn;
    if (!k || call->paused)
        return;
    conn_process(k); /* what was buffered while paused */
    if (k->call == call && !call->finished && !call->paused && k->connected)
        bufferevent_enable(k->bev, EV_READ);
}

/* ---- public API ---- */

ias_http_client *ias_http_client_new(struct event_base *base, const ias_http_client_opts *opts)
{
    if (!base)
        return NULL;
    ias_http_client *c = ias_xcalloc(1, sizeof(*c));
    c->base = base;
    if (opts)
        c->o = *opts;
    ias_http_client_opts *o = &c->o;
    if (!o->connect_ms)
        o->connect_ms = DEF_CONNECT_MS;
    if (!o->first_byte_ms)
        o->first_byte_ms = DEF_FIRST_BYTE_MS;
    if (!o->idle_ms)
        o->idle_ms = DEF_IDLE_MS;
    if (!o->max_response_header_bytes)
        o->max_response_header_bytes = DEF_MAX_HEADER_BYTES;
    if (!o->max_fetch_body_bytes)
        o->max_fetch_body_bytes = DEF_MAX_FETCH_BODY;
    if (!o->max_idle_per_host)
        o->max_idle_per_host = DEF_MAX_IDLE_PER_HOST;
    if (o->idle_expiry_ms <= 0)
        o->idle_expiry_ms = DEF_IDLE_EXPIRY_MS;
    if (!o->read_high_watermark)
        o->read_high_watermark = DEF_READ_HWM;
    if (o->read_high_watermark < MIN_READ_HWM)
        o->read_high_watermark = MIN_READ_HWM;
    if (o->family != AF_INET && o->family != AF_INET6)
        o->family = AF_UNSPEC;
    if (opts && opts->hosts_file)
        c->hosts_file = ias_xstrdup(opts->hosts_file);
    o->hosts_file = c->hosts_file;
    if (opts && opts->resolv_conf)
        c->resolv_conf = ias_xstrdup(opts->resolv_conf);
    o->resolv_conf = c->resolv_conf;
    c->reaper = event_new(base, -1, 0, reaper_cb, c);
    if (!c->reaper) {
        free(c->hosts_file);
        free(c->resolv_conf);
        free(c);
        return NULL;
    }
    return c;
}

void ias_http_client_free(ias_http_client *c)
{
    if (!c)
        return;
    c->closing = true;
    ias_http_call *call;
    while ((call = c->calls)) {
        snprintf(call->error, sizeof(call->error), "client shut down");
        call_end(call, IAS_HTTP_CANCELLED, true);
    }
    host_pool *pool = c->pools;
    while (pool) {
        conn *k;
        while ((k = pool->idle_head))
            conn_close(k);
        host_pool *next = pool->next;
        free(pool);
        pool = next;
    }
    reap(c);
    while ((call = c->free_calls)) {
        IAS_UNPOISON(call, sizeof(*call));
        c->free_calls = call->dead_next;
        call_destroy(call);
    }
    c->nfree_calls = 0;
    dns_release(c->dnsh);
    event_free(c->reaper);
    free(c->hosts_file);
    free(c->resolv_conf);
    free(c);
}

static host_pool *pool_get(ias_http_client *c, const ias_http_url *u)
{
    for (host_pool *p = c->pools; p; p = p->next)
        if (u->unix_path[0]
                ? strcmp(p->unix_path, u->unix_path) == 0
                : !p->unix_path[0] && p->port == u->port && strcasecmp(p->host, u->host) == 0)
            return p;
    host_pool *p = ias_xcalloc(1, sizeof(*p));
    (void)ias_strlcpy(p->host, u->host, sizeof(p->host)); /* fits: the URL parser bounds it */
    p->port = u->port;
    if (u->unix_path[0]) {
        struct sockaddr_un *su = (struct sockaddr_un *)&p->sa;
        size_t n = strlen(u->unix_path); /* < sizeof(sun_path): the URL parser bounds it */

        (void)ias_strlcpy(p->unix_path, u->unix_path, sizeof(p->unix_path));
        snprintf(p->name, sizeof(p->name), "unix:%s", p->unix_path);
        su->sun_family = AF_UNIX;
        memcpy(su->sun_path, u->unix_path, n + 1);
        p->salen = (int)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        p->literal = true;
        p->next = c->pools;
        c->pools = p;
        return p;
    }
    snprintf(p->name, sizeof(p->name), "%s%s%s:%u", u->host_is_ipv6 ? "[" : "", u->host,
             u->host_is_ipv6 ? "]" : "", (unsigned)u->port);
    const char *lit = strcasecmp(u->host, "localhost") == 0 ? "127.0.0.1" : u->host;
    struct sockaddr_in *sin = (struct sockaddr_in *)&p->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&p->sa;
    if (evutil_inet_pton(AF_INET, lit, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(u->port);
        p->salen = sizeof(*sin);
        p->literal = true;
    } else if (evutil_inet_pton(AF_INET6, lit, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(u->port);
        p->salen = sizeof(*sin6);
        p->literal = true;
    }
    p->next = c->pools;
    c->pools = p;
    return p;
}

/* Length of s if it is a token of at most max bytes, else 0. */
static size_t token_len(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || !ias_http_tchar[(unsigned char)s[n]])
            return 0;
    return n;
}

static bool value_byte_ok(unsigned char ch)
{
    return (ch >= 0x20 || ch == '\t') && ch != 0x7f;
}

/* Length of v, or SIZE_MAX when it holds a control byte. Eight bytes at a
 * time: per byte, (w - 0x20) & ~w has its top bit set when the byte is below
 * 0x20 (or, through a borrow, above such a byte) and (x - 1) & ~x when x =
 * byte ^ 0x7f is 0; only a flagged word is looked at byte by byte (a tab is
 * fine). */
static size_t header_value_len(const char *v)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    size_t n = strlen(v), i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w, x;
        memcpy(&w, v + i, sizeof(w));
        x = w ^ (ones * 0x7f);
        if ((((w - ones * 0x20) & ~w) | ((x - ones) & ~x)) & high)
            for (size_t k = i; k < i + 8; k++)
                if (!value_byte_ok((unsigned char)v[k]))
                    return SIZE_MAX;
    }
    for (; i < n; i++)
        if (!value_byte_ok((unsigned char)v[i]))
            return SIZE_MAX;
    return n;
}

/* The length is compared first, so most names cost no strcasecmp at all. */
static bool header_forbidden(const char *name, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
    } names[] = {{"Content-Length", 14},
                 {"Transfer-Encoding", 17},
                 {"Connection", 10},
                 {"Upgrade", 7},
                 {"TE", 2},
                 {"Trailer", 7},
                 {"Keep-Alive", 10},
                 {"Proxy-Connection", 16}};
    for (size_t i = 0; i < IAS_ARRAY_LEN(names); i++)
        if (len == names[i].len && strcasecmp(name, names[i].name) == 0)
            return true;
    return false;
}

typedef struct dbuf {
    char *p;
    size_t len, cap;
} dbuf;

/* Callers reserve the exact size first (dbuf_reserve); growing stays as a
 * safety net. The buffer is NUL-terminated once, at the end. */
static void dbuf_reserve(dbuf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = ias_xrealloc(b->p, cap);
        b->cap = cap;
    }
}

static void dbuf_add(dbuf *b, const void *d, size_t n)
{
    dbuf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

#define DBUF_LIT(b, lit) dbuf_add((b), (lit), sizeof(lit) - 1)

/* Decimal digits of v written backwards ending at end; returns the start. */
static char *fmt_u64(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* Header lengths of up to this many headers are kept on the stack between
 * the check and the copy; longer lists measure again. */
enum { HDR_LEN_CACHE = 64 };

/* Serializes the request; NULL when it is invalid. No printf: this runs per
 * upstream request. */
static char *build_request(ias_http_client *c, const ias_http_request *req, const ias_http_url *u,
                           const char *method, size_t method_len, size_t *len)
{
    bool has_host = false;
    size_t hlen[HDR_LEN_CACHE][2];
    size_t total = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const ias_http_header *h = &req->headers[i];
        if (!h->name || !h->value)
            return NULL;
        size_t nl = token_len(h->name, 256);
        size_t vl = header_value_len(h->value);
        if (nl == 0 || vl == SIZE_MAX || header_forbidden(h->name, nl))
            return NULL;
        if (nl == 4 && strcasecmp(h->name, "Host") == 0)
            has_host = true;
        if (i < HDR_LEN_CACHE) {
            hlen[i][0] = nl;
            hlen[i][1] = vl;
        }
        total += nl + vl + 4;
    }
    if (req->body_len > 0 && !req->body)
        return NULL;
    size_t host_len = strlen(u->host);
    /* request line, Host, Content-Length, Connection, blank line: 128 covers
     * the fixed parts (the numbers included) */
    total += method_len + u->path_len + host_len + req->body_len + 128;
    dbuf b = {0};
    dbuf_reserve(&b, total);
    dbuf_add(&b, method, method_len);
    DBUF_LIT(&b, " ");
    if (u->path_len == 0 || u->path[0] == '?')
        DBUF_LIT(&b, "/");
    dbuf_add(&b, u->path, u->path_len);
    DBUF_LIT(&b, " HTTP/1.1\r\n");
    if (!has_host) {
        char num[24], *ns;
        DBUF_LIT(&b, "Host: ");
        if (u->host_is_ipv6)
            DBUF_LIT(&b, "[");
        dbuf_add(&b, u->host, host_len);
        if (u->host_is_ipv6)
            DBUF_LIT(&b, "]");
        if (u->port != 80) {
            ns = fmt_u64(num + sizeof(num), u->port);
            DBUF_LIT(&b, ":");
            dbuf_add(&b, ns, (size_t)(num + sizeof(num) - ns));
        }
        DBUF_LIT(&b, "\r\n");
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        const ias_http_header *h = &req->headers[i];
        size_t nl = i < HDR_LEN_CACHE ? hlen[i][0] : strlen(h->name);
        size_t vl = i < HDR_LEN_CACHE ? hlen[i][1] : strlen(h->value);
        dbuf_add(&b, h->name, nl);
        DBUF_LIT(&b, ": ");
        dbuf_add(&b, h->value, vl);
        DBUF_LIT(&b, "\r\n");
    }
    if (req->body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        char num[24];
        char *ns = fmt_u64(num + sizeof(num), (uint64_t)req->body_len);
        DBUF_LIT(&b, "Content-Length: ");
        dbuf_add(&b, ns, (size_t)(num + sizeof(num) - ns));
        DBUF_LIT(&b, "\r\n");
    }
    if (c->o.disable_keepalive)
        DBUF_LIT(&b, "Connection: close\r\n");
    DBUF_LIT(&b, "\r\n");
    if (req->body_len > 0)
        dbuf_add(&b, req->body, req->body_len);
    dbuf_reserve(&b, 0);
    b.p[b.len] = '\0';
    *len = b.len;
    return b.p;
}

/* A zeroed call with its timer and kick events, from the client's free list
 * when it has one; NULL when libevent cannot make the events. */
static ias_http_call *call_alloc(ias_http_client *c)
{
    ias_http_call *call = c->free_calls;

    if (call) {
        IAS_UNPOISON(call, sizeof(*call));
        c->free_calls = call->dead_next;
        c->nfree_calls--;
        struct event *timer = call->timer, *kick = call->kick;
        memset(call, 0, sizeof(*call));
        call->timer = timer;
        call->kick = kick;
        return call;
    }
    call = ias_xcalloc(1, sizeof(*call));
    call->timer = event_new(c->base, -1, 0, call_timer_cb, call);
    call->kick = event_new(c->base, -1, 0, call_kick_cb, call);
    if (!call->timer || !call->kick) {
        if (call->timer)
            event_free(call->timer);
        if (call->kick)
            event_free(call->kick);
        free(call);
        return NULL;
    }
    return call;
}

static ias_http_call *request_start(ias_http_client *c, const ias_http_request *req,
                                    const ias_http_callbacks *cb, void *arg, uint64_t max_body)
{
    if (!c || !req || !cb || !cb->on_done || c->closing)
        return NULL;
    ias_http_url u;
    if (ias_http_url_parse(req->url, &u) != IAS_OK)
        return NULL;
    const char *method = req->method ? req->method : "GET";
    size_t method_len = token_len(method, MAX_METHOD_LEN);
    if (method_len == 0)
        return NULL;
    size_t reqlen = 0;
    char *reqbuf = build_request(c, req, &u, method, method_len, &reqlen);
    if (!reqbuf)
        return NULL;
    ias_http_call *call = call_alloc(c);
    if (!call) {
        free(reqbuf);
        return NULL;
    }
    call->c = c;
    call->cb = *cb;
    call->arg = arg;
    call->reqbuf = reqbuf;
    call->reqlen = reqlen;
    call->head_request = strcmp(method, "HEAD") == 0;
    call->connect_ms = (int)resolve_ms(req->connect_ms, c->o.connect_ms);
    call->first_byte_ms = (int)resolve_ms(req->first_byte_ms, c->o.first_byte_ms);
    call->idle_ms = (int)resolve_ms(req->idle_ms, c->o.idle_ms);
    call->total_ms = (int)resolve_ms(req->total_ms, c->o.total_ms);
    call->max_header_bytes = req->max_response_header_bytes ? req->max_response_header_bytes
                                                            : c->o.max_response_header_bytes;
    call->max_body = max_body;
    if (call->total_ms)
        call->total_deadline = ias_now_ms() + (uint64_t)call->total_ms;
    call->pool = pool_get(c, &u);
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    c->st.active++;
    call_start(call, !c->o.disable_keepalive);
    return call;
}

ias_http_call *ias_http_client_request(ias_http_client *c, const ias_http_request *req,
                                       const ias_http_callbacks *cb, void *arg)
{
    return request_start(c, req, cb, arg, req ? req->max_body_bytes : 0);
}

void ias_http_call_pause(ias_http_call *call)
{
    if (!call || call->finished || call->paused)
        return;
    call->paused = true;
    if (call->conn && call->conn->connected)
        bufferevent_disable(call->conn->bev, EV_READ);
    call_arm_timer(call);
}

void ias_http_call_resume(ias_http_call *call)
{
    if (!call || call->finished || !call->paused)
        return;
    call->paused = false;
    if (call->phase == PH_BODY)
        call->last_activity = ias_now_ms();
    call_arm_timer(call);
    event_active(call->kick, EV_TIMEOUT, 0);
}

void ias_http_call_cancel(ias_http_call *call)
{
    if (!call || call->finished)
        return;
    snprintf(call->error, sizeof(call->error), "cancelled");
    call_end(call, IAS_HTTP_CANCELLED, false);
}

bool ias_http_call_response_started(const ias_http_call *call)
{
    return call->started;
}

int ias_http_call_status(const ias_http_call *call)
{
    return call->status;
}

uint64_t ias_http_call_body_bytes(const ias_http_call *call)
{
    return call->body_bytes;
}

size_t ias_http_call_buffered(const ias_http_call *call)
{
    if (!call->conn || !call->conn->bev)
        return 0;
    return evbuffer_get_length(bufferevent_get_input(call->conn->bev));
}

bool ias_http_call_reused(const ias_http_call *call)
{
    return call->reused;
}

bool ias_http_call_retried(const ias_http_call *call)
{
    return call->retried;
}

const char *ias_http_call_error(const ias_http_call *call)
{
    return call->error;
}

void ias_http_client_stats_get(const ias_http_client *c, ias_http_client_stats *out)
{
    *out = c->st;
}

/* ---- fetch ---- */

static void fetch_on_response(ias_http_call *call, const ias_http_response *resp, void *arg)
{
    fetch_state *f = arg;
    size_t total = 0;
    for (size_t i = 0; i < resp->nheaders; i++)
        total += strlen(resp->headers[i].name) + strlen(resp->headers[i].value) + 2;
    free(f->hblob);
    free(f->hdrs);
    f->hblob = ias_xmalloc(total ? total : 1);
    f->hdrs = ias_xcalloc(resp->nheaders ? resp->nheaders : 1, sizeof(*f->hdrs));
    f->nhdrs = resp->nheaders;
    char *w = f->hblob;
    for (size_t i = 0; i < resp->nheaders; i++) {
        size_t nl = strlen(resp->headers[i].name) + 1, vl = strlen(resp->headers[i].value) + 1;
        memcpy(w, resp->headers[i].name, nl);
        f->hdrs[i].name = w;
        w += nl;
        memcpy(w, resp->headers[i].value, vl);
        f->hdrs[i].value = w;
        w += vl;
    }
}

static void fetch_on_body(ias_http_call *call, const char *data, size_t len, void *arg)
{
    fetch_state *f = arg;
    if (f->len + len + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < f->len + len + 1)
            cap *= 2;
        f->body = ias_xrealloc(f->body, cap);
        f->cap = cap;
    }
    memcpy(f->body + f->len, data, len);
    f->len += len;
    f->body[f->len] = '\0';
}

static void fetch_on_done(ias_http_call *call, ias_http_result result, void *arg)
{
    fetch_state *f = arg;
    ias_http_fetch_result r = {
        .result = result,
        .response_started = call->started,
        .status = call->status,
        .headers = f->hdrs,
        .nheaders = f->nhdrs,
        .body = f->body ? f->body : "",
        .body_len = f->len,
        .error = call->error,
    };
    f->cb(&r, f->arg);
}

ias_http_call *ias_http_client_fetch(ias_http_client *c, const ias_http_request *req,
                                     ias_http_fetch_cb cb, void *arg)
{
    if (!c || !req || !cb)
        return NULL;
    static const ias_http_callbacks fcb = {
        .on_response = fetch_on_response,
        .on_body = fetch_on_body,
        .on_done = fetch_on_done,
    };
    fetch_state *f = ias_xcalloc(1, sizeof(*f));
    f->cb = cb;
    f->arg = arg;
    uint64_t max = req->max_body_bytes ? req->max_body_bytes : c->o.max_fetch_body_bytes;
    ias_http_call *call = request_start(c, req, &fcb, f, max);
    if (!call) {
        fetch_state_free(f);
        return NULL;
    }
    call->fetch = f; /* freed with the call */
    return call;
}
