/* The server skeleton: one event loop per worker thread, each with its own
 * SO_REUSEPORT listener (and, optionally, a unix socket shared by all);
 * limits; dispatch (routing, built-ins); per-request metrics and access logs;
 * signals and graceful drain. Connections and the HTTP/1.1 protocol are in
 * http_conn.c. */
#include "http_internal.h"

#include "ias/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    DEFAULT_MAX_HEADER = 16 * 1024,
    DEFAULT_MAX_BODY = 1024 * 1024,
    DEFAULT_READ_TIMEOUT_MS = 30000,
    DEFAULT_DRAIN_TIMEOUT_MS = 25000,
    LISTEN_BACKLOG = 1024,
    DRAIN_TICK_US = 10000,
    SIGNAL_POLL_MS = 100,
};

static const char *const HELP_REQUESTS = "HTTP requests answered, by route pattern and status";
static const char *const HELP_DURATION = "HTTP request duration in seconds, by route pattern";
static const char *const HELP_INFLIGHT = "HTTP requests in flight";

static const char *const builtin_paths[IAS_SLOT_EXTRA] = {"/health", "/ready", "/metrics",
                                                          "unmatched"};

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static int evthread_rc;

/* Worker bases take no locks (EVENT_BASE_FLAG_NOLOCK, see worker_setup); the
 * pthreads hooks stay for any other base a service creates (their locks and
 * cross-thread wakeups work as before). */
static void evthread_init_once(void)
{
    evthread_rc = evthread_use_pthreads();
}

/* Label values may not carry raw quotes, backslashes or newlines. */
static char *label_escape(const char *s)
{
    size_t n = strlen(s);
    char *out = ias_xmalloc(n * 2 + 1), *o = out;

    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            *o++ = '\\';
            *o++ = *s;
        } else if (*s == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

static size_t nslots(const ias_server *srv)
{
    return srv->opts.nroutes + IAS_SLOT_EXTRA;
}

static const char *slot_name(const ias_server *srv, int slot)
{
    if ((size_t)slot < srv->opts.nroutes)
        return srv->opts.routes[slot].pattern;
    return builtin_paths[(size_t)slot - srv->opts.nroutes];
}

ias_server *ias_server_new(const ias_server_opts *opts)
{
    ias_server *srv;
    char err[256];
    char *labels;

    if (ias_route_validate(opts->routes, opts->nroutes, err, sizeof(err)) != IAS_OK) {
        ias_error(NULL, "invalid route table: %s", err);
        return NULL;
    }
    srv = ias_xcalloc(1, sizeof(*srv));
    srv->opts = *opts;
    srv->service = ias_xstrdup(opts->service ? opts->service : "ias");
    srv->bind_addr = ias_xstrdup(opts->bind_addr ? opts->bind_addr : "127.0.0.1");
    srv->openai_prefix = opts->openai_path_prefix && *opts->openai_path_prefix
                             ? ias_xstrdup(opts->openai_path_prefix)
                             : NULL;
    srv->opts.service = srv->service;
    srv->opts.bind_addr = srv->bind_addr;
    srv->opts.openai_path_prefix = srv->openai_prefix;
    srv->unix_path = opts->unix_path && *opts->unix_path ? ias_xstrdup(opts->unix_path) : NULL;
    srv->opts.unix_path = srv->unix_path;
    srv->unix_fd = -1;
    if (srv->opts.max_header_bytes == 0)
        srv->opts.max_header_bytes = DEFAULT_MAX_HEADER;
    if (srv->opts.max_body_bytes == 0)
        srv->opts.max_body_bytes = DEFAULT_MAX_BODY;
    if (srv->opts.read_timeout_ms <= 0)
        srv->opts.read_timeout_ms = DEFAULT_READ_TIMEOUT_MS;
    if (srv->opts.drain_timeout_ms <= 0)
        srv->opts.drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
    srv->nworkers = opts->workers > 0 ? opts->workers : ias_config_default_workers();
    srv->workers = ias_xcalloc((size_t)srv->nworkers, sizeof(*srv->workers));
    for (int i = 0; i < srv->nworkers; i++) {
        srv->workers[i].srv = srv;
        srv->workers[i].index = i;
        srv->workers[i].listen_fd = -1;
        srv->workers[i].wake_fd = -1;
    }
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);

    /* Series known up front are looked up once here; the per-status request
     * counters are cached per worker on first use (no registry lock after). */
    srv->service_label = label_escape(srv->service);
    srv->route_label = ias_xcalloc(nslots(srv), sizeof(*srv->route_label));
    srv->hist = ias_xcalloc(nslots(srv), sizeof(*srv->hist));
    for (size_t i = 0; i < nslots(srv); i++) {
        srv->route_label[i] = label_escape(slot_name(srv, (int)i));
        labels =
            ias_xasprintf("service=\"%s\",route=\"%s\"", srv->service_label, srv->route_label[i]);
        srv->hist[i] = ias_metrics_histogram("ias_http_request_duration_seconds", HELP_DURATION,
                                             labels, NULL, 0);
        free(labels);
    }
    labels = ias_xasprintf("service=\"%s\"", srv->service_label);
    srv->g_inflight = ias_metrics_gauge("ias_http_inflight", HELP_INFLIGHT, labels);
    free(labels);
    return srv;
}

/* ---- metrics and access log ---- */

static ias_counter *counter_lookup(ias_server *srv, int slot, const char *method, int status)
{
    char *labels = ias_xasprintf("service=\"%s\",route=\"%s\",method=\"%s\",status=\"%d\"",
                                 srv->service_label, srv->route_label[slot], method, status);
    ias_counter *c = ias_metrics_counter("ias_http_requests_total", HELP_REQUESTS, labels);

    free(labels);
    return c;
}

static ias_counter *counter_for(ias_worker *w, int slot, int midx, const char *method, int status)
{
    /* status < 1024 (10 bits), method index < 8 (3 bits) */
    uint32_t key = (((uint32_t)slot << 13) | ((uint32_t)midx << 10) | (uint32_t)status) + 1;
    size_t h = (size_t)((key * 2654435761u) >> 24) & (IAS_METRIC_CACHE - 1);

    for (size_t i = 0; i < IAS_METRIC_CACHE; i++) {
        ias_metric_entry *e = &w->cache[(h + i) & (IAS_METRIC_CACHE - 1)];

        if (e->key == key)
            return e->counter;
        if (e->key == 0) {
            ias_counter *c = counter_lookup(w->srv, slot, method, status);

            /* keep a quarter free so probes stay short; beyond that, look up */
            if (w->cache_used < IAS_METRIC_CACHE * 3 / 4) {
                e->key = key;
                e->counter = c;
                w->cache_used++;
            }
            return c;
        }
    }
    return counter_lookup(w->srv, slot, method, status);
}

void ias_hs_observe(ias_req *r, bool closed)
{
    ias_server *srv = r->srv;
    int status = r->status ? r->status : 499; /* nginx: client closed before any reply */
    double ms = (double)(ias_now_us() - r->start_us) / 1000.0;
    bool builtin = (size_t)r->slot >= srv->opts.nroutes &&
                   (size_t)r->slot < srv->opts.nroutes + IAS_SLOT_UNMATCHED;

    ias_counter_inc(counter_for(r->w, r->slot, r->method_idx, r->method, status));
    ias_histogram_observe(srv->hist[r->slot], ms / 1000.0);
    /* probes and scrapes arrive every few seconds: keep them out of info logs */
    ias_log(builtin ? IAS_LOG_DEBUG : IAS_LOG_INFO, &r->log,
            "http method=%s route=%s path=%s status=%d duration_ms=%.3f bytes=%" PRIu64 "%s",
            r->method, slot_name(srv, r->slot), r->path, status, ms, r->bytes,
            closed ? " client_closed=true" : "");
}

/* ---- built-in endpoints ---- */

static void reply_status_json(ias_req *r, int status, const char *state, const char *reason)
{
    cJSON *o = cJSON_CreateObject();

    if (!o || !cJSON_AddStringToObject(o, "status", state) ||
        (reason && !cJSON_AddStringToObject(o, "reason", reason)))
        ias_die("fatal: out of memory building JSON");
    (void)ias_reply_header(r, "Cache-Control", "no-store");
    (void)ias_reply_json(r, status, o);
    cJSON_Delete(o);
}

static void builtin_ready(ias_req *r)
{
    ias_server *srv = r->srv;
    char why[256] = "";

    if (atomic_load(&srv->draining)) {
        reply_status_json(r, 503, "unavailable", "draining");
        return;
    }
    if (srv->opts.ready && srv->opts.ready(srv->opts.ctx, r->w, why, sizeof(why)) != IAS_OK) {
        why[sizeof(why) - 1] = '\0';
        reply_status_json(r, 503, "unavailable", why[0] ? why : "not ready");
        return;
    }
    reply_status_json(r, 200, "ok", NULL);
}

static void builtin_metrics(ias_req *r)
{
    size_t len = 0;
    char *text = ias_metrics_render(&len);

    if (!text) {
        (void)ias_reply_error(r, 500, NULL, "cannot render metrics");
        return;
    }
    (void)ias_reply_header(r, "Cache-Control", "no-store");
    (void)ias_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static bool builtin_dispatch(ias_req *r)
{
    ias_server *srv = r->srv;
    int k;

    for (k = 0; k < IAS_SLOT_UNMATCHED; k++) {
        if (strcmp(r->raw_path, builtin_paths[k]) == 0)
            break;
    }
    if (k == IAS_SLOT_UNMATCHED)
        return false;
    r->slot = (int)srv->opts.nroutes + k;
    if (r->method_idx > 1) { /* neither GET nor HEAD */
        (void)ias_reply_header(r, "Allow", "GET, HEAD");
        (void)ias_reply_error(r, 405, NULL, "method %s is not allowed on %s", r->method, r->path);
        return true;
    }
    switch (k) {
    case IAS_SLOT_HEALTH:
        reply_status_json(r, 200, "ok", NULL);
        break;
    case IAS_SLOT_READY:
        builtin_ready(r);
        break;
    default:
        builtin_metrics(r);
        break;
    }
    return true;
}

/* ---- dispatch ---- */

void ias_hs_dispatch(ias_req *r)
{
    ias_server *srv = r->srv;
    int idx;

    if (r->bad_path) {
        (void)ias_reply_error(r, 400, NULL, "malformed percent-encoding in the path");
        return;
    }
    if (builtin_dispatch(r))
        return;
    idx = ias_route_find(srv->opts.routes, srv->opts.nroutes, r->method, r->raw_path, &r->match);
    if (idx == -1) {
        (void)ias_reply_error(r, 404, NULL, "no route for %s %s", r->method, r->path);
    } else if (idx == -2) {
        char allow[128];

        if (ias_route_allow(srv->opts.routes, srv->opts.nroutes, r->raw_path, allow,
                            sizeof(allow)) == IAS_OK)
            (void)ias_reply_header(r, "Allow", allow);
        (void)ias_reply_error(r, 405, NULL, "method %s is not allowed on %s", r->method, r->path);
    } else {
        r->slot = idx;
        srv->opts.routes[idx].handler(r, srv->opts.ctx);
    }
    /* r is still allocated here even if it was answered and released:
     * requests are only freed by the reaper, from the loop */
}

/* ---- listeners ---- */

static int resolve(const ias_server *srv, struct sockaddr_storage *ss, socklen_t *sslen)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", srv->opts.port);
    rc = getaddrinfo(srv->bind_addr, port, &hints, &res);
    if (rc != 0 || !res) {
        ias_error(NULL, "cannot resolve bind address %s: %s", srv->bind_addr, gai_strerror(rc));
        return IAS_ERR;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return IAS_OK;
}

static int open_listener(const ias_server *srv, const struct sockaddr_storage *ss, socklen_t len)
{
    int one = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        ias_error(NULL, "socket: %s", strerror(errno));
        return -1;
    }
    /* one listener per worker on the same port; the kernel spreads connections */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        ias_error(NULL, "setsockopt SO_REUSEADDR/SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    /* Accepted sockets inherit it (Linux). Without it, a reply larger than
     * bufferevent's 16 KiB single write, or a stream's next small chunk, waits
     * behind Nagle for the client's delayed ACK (~40 ms) on keep-alive
     * connections. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
        ias_error(NULL, "setsockopt TCP_NODELAY: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
        ias_error(NULL, "bind %s:%d: %s", srv->bind_addr, atomic_load(&srv->port), strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, LISTEN_BACKLOG) != 0) {
        ias_error(NULL, "listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* A unix socket next to the TCP port (co-located hops): created mode 0660; a
 * socket file left by an earlier run is replaced, anything else is an error. */
static int open_unix_listener(ias_server *srv)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(srv->unix_path) >= sizeof(sa.sun_path)) {
        ias_error(NULL, "unix socket path too long: %s", srv->unix_path);
        return IAS_ERR;
    }
    memcpy(sa.sun_path, srv->unix_path, strlen(srv->unix_path) + 1);
    if (lstat(srv->unix_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            ias_error(NULL, "%s exists and is not a socket", srv->unix_path);
            return IAS_ERR;
        }
        if (unlink(srv->unix_path) != 0) {
            ias_error(NULL, "cannot replace %s: %s", srv->unix_path, strerror(errno));
            return IAS_ERR;
        }
    } else if (errno != ENOENT) {
        ias_error(NULL, "%s: %s", srv->unix_path, strerror(errno));
        return IAS_ERR;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ias_error(NULL, "socket(AF_UNIX): %s", strerror(errno));
        return IAS_ERR;
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        ias_error(NULL, "bind %s: %s", srv->unix_path, strerror(errno));
        close(fd);
        return IAS_ERR;
    }
    if (chmod(srv->unix_path, 0660) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        ias_error(NULL, "unix socket %s: %s", srv->unix_path, strerror(errno));
        close(fd);
        (void)unlink(srv->unix_path);
        return IAS_ERR;
    }
    srv->unix_fd = fd;
    return IAS_OK;
}

static void close_unix_listener(ias_server *srv)
{
    if (srv->unix_fd < 0)
        return;
    close(srv->unix_fd);
    srv->unix_fd = -1;
    if (unlink(srv->unix_path) != 0 && errno != ENOENT)
        ias_warn(NULL, "cannot remove %s: %s", srv->unix_path, strerror(errno));
}

/* Stops accepting on this worker; the last worker to stop closes the shared
 * unix socket (no other loop has it registered by then). */
static void stop_listening(ias_worker *w)
{
    ias_server *srv = w->srv;

    w->listening = false;
    if (w->accept_pause)
        event_del(w->accept_pause);
    if (w->listen_ev) {
        event_free(w->listen_ev);
        w->listen_ev = NULL;
    }
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    if (w->unix_ev) {
        event_free(w->unix_ev);
        w->unix_ev = NULL;
        if (atomic_fetch_sub(&srv->unix_refs, 1) == 1)
            close_unix_listener(srv);
    }
}

/* ---- drain ---- */

static void drain_tick(ias_worker *w)
{
    ias_server *srv = w->srv;

    if (w->inflight == 0 || (long long)ias_now_ms() >= atomic_load(&srv->deadline_ms))
        event_base_loopexit(w->base, NULL);
}

static void drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    drain_tick(arg);
}

/* On the worker's thread: stop accepting, then wait for in-flight requests.
 * Idle keep-alive connections stay until the loop ends (a request already on
 * its way is answered, with Connection: close). */
static void drain_start_cb(evutil_socket_t fd, short what, void *arg)
{
    ias_worker *w = arg;
    struct timeval tv = {0, DRAIN_TICK_US};
    uint64_t n;

    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        ias_warn(NULL, "worker %d: reading the drain wakeup: %s", w->index, strerror(errno));
    if (w->drain_started)
        return;
    w->drain_started = true;
    event_del(w->drain_ev);
    stop_listening(w);
    if (event_add(w->drain_timer, &tv) != 0)
        ias_error(NULL, "worker %d: cannot arm the drain timer", w->index);
    drain_tick(w);
}

void ias_server_stop(ias_server *srv)
{
    if (atomic_exchange(&srv->draining, true))
        return;
    atomic_store(&srv->deadline_ms, (long long)ias_now_ms() + srv->opts.drain_timeout_ms);
    ias_info(NULL, "draining: %ld requests in flight, deadline %d ms", atomic_load(&srv->inflight),
             srv->opts.drain_timeout_ms);
    for (int i = 0; i < srv->nworkers; i++) {
        uint64_t one = 1;

        /* the only call from another thread: an eventfd write, so the worker
         * bases need no locks (EVENT_BASE_FLAG_NOLOCK) */
        if (srv->workers[i].wake_fd >= 0 &&
            write(srv->workers[i].wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
            ias_error(NULL, "worker %d: cannot wake it for the drain: %s", i, strerror(errno));
    }
}

bool ias_server_draining(const ias_server *srv)
{
    return atomic_load(&srv->draining);
}

/* ---- workers ---- */

static int worker_setup(ias_worker *w, struct sockaddr_storage *ss, socklen_t sslen)
{
    ias_server *srv = w->srv;
    int fd;

    struct event_config *ec = event_config_new();

    /* EPOLL_USE_CHANGELIST: a request may add and remove write interest more
     * than once per loop iteration; the changelist turns that into at most
     * one epoll_ctl per fd per iteration. Our fds are never dup()ed.
     * NOLOCK: a worker base is only ever touched from its own thread (the
     * drain is signalled through wake_fd), so each event operation skips the
     * evthread mutex pair. */
    if (ec && event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) != 0)
        ias_warn(NULL, "worker %d: epoll changelist unavailable", w->index);
    if (ec && event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK) != 0)
        ias_warn(NULL, "worker %d: lock-free event base unavailable", w->index);
    w->base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec)
        event_config_free(ec);
    if (!w->base) {
        ias_error(NULL, "worker %d: cannot create the event loop", w->index);
        return IAS_ERR;
    }
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0) {
        ias_error(NULL, "worker %d: eventfd: %s", w->index, strerror(errno));
        return IAS_ERR;
    }
    w->drain_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, drain_start_cb, w);
    if (w->drain_ev && event_add(w->drain_ev, NULL) != 0)
        return IAS_ERR;
    w->drain_timer = event_new(w->base, -1, EV_PERSIST, drain_timer_cb, w);
    if (!w->drain_ev || !w->drain_timer)
        return IAS_ERR;

    if ((fd = open_listener(srv, ss, sslen)) < 0)
        return IAS_ERR;
    w->listen_fd = fd;
    if (atomic_load(&srv->port) == 0) {
        int port = bound_port(fd);

        if (port <= 0)
            return IAS_ERR;
        /* port 0: the first worker picked it; the others join it */
        atomic_store(&srv->port, port);
        set_port(ss, port);
    }
    w->listen_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, ias_hs_accept_cb, w);
    if (!w->listen_ev || event_add(w->listen_ev, NULL) != 0) {
        ias_error(NULL, "worker %d: cannot accept on the listening socket", w->index);
        return IAS_ERR;
    }
    if (srv->unix_fd >= 0) {
        w->unix_ev = event_new(w->base, srv->unix_fd, EV_READ | EV_PERSIST, ias_hs_accept_cb, w);
        if (!w->unix_ev || event_add(w->unix_ev, NULL) != 0) {
            ias_error(NULL, "worker %d: cannot accept on the unix socket", w->index);
            return IAS_ERR;
        }
        atomic_fetch_add(&srv->unix_refs, 1);
    }
    w->listening = true;
    return IAS_OK;
}

static void worker_teardown(ias_worker *w)
{
    stop_listening(w);
    ias_hs_conns_close_all(w);
    ias_hs_reap(w);
    ias_hs_req_pool_free(w);
    ias_hs_conn_pool_free(w);
    if (w->drain_ev)
        event_free(w->drain_ev);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    w->wake_fd = -1;
    if (w->drain_timer)
        event_free(w->drain_timer);
    if (w->reap_ev)
        event_free(w->reap_ev);
    if (w->accept_pause)
        event_free(w->accept_pause);
    w->drain_ev = w->drain_timer = w->reap_ev = w->accept_pause = NULL;
    if (w->base)
        event_base_free(w->base);
    w->base = NULL;
}

/* On the worker's thread once its loop ended: cut what is left, then fini. */
static void worker_stop(ias_worker *w)
{
    ias_server *srv = w->srv;

    if (w->inflight > 0)
        ias_warn(NULL, "worker %d: drain deadline passed, cutting %d requests", w->index,
                 w->inflight);
    stop_listening(w);
    /* closes every connection: on_close fires for requests still open */
    ias_hs_conns_close_all(w);
    /* let what those on_close callbacks scheduled run once (and the reaper) */
    if (event_base_loop(w->base, EVLOOP_NONBLOCK) < 0)
        ias_warn(NULL, "worker %d: final loop pass failed", w->index);
    ias_hs_reap(w);
    if (w->inited && srv->opts.worker_fini)
        srv->opts.worker_fini(w, srv->opts.ctx);
    ias_hs_reap(w);
}

static void *worker_main(void *arg)
{
    ias_worker *w = arg;
    ias_server *srv = w->srv;
    int rc = IAS_OK;
    bool go;

    if (srv->opts.worker_init)
        rc = srv->opts.worker_init(w, srv->opts.ctx);
    w->inited = rc == IAS_OK;
    pthread_mutex_lock(&srv->mu);
    srv->nready++;
    if (rc != IAS_OK)
        srv->init_failed = true;
    pthread_cond_broadcast(&srv->cv);
    while (!srv->go && !srv->abort_start)
        pthread_cond_wait(&srv->cv, &srv->mu);
    go = srv->go;
    pthread_mutex_unlock(&srv->mu);

    if (go && event_base_dispatch(w->base) < 0)
        ias_error(NULL, "worker %d: event loop failed", w->index);
    worker_stop(w);
    return NULL;
}

static void *signal_main(void *arg)
{
    ias_server *srv = arg;
    sigset_t set;
    struct timespec ts = {0, SIGNAL_POLL_MS * 1000000L};

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    while (!atomic_load(&srv->sig_quit)) {
        int sig = sigtimedwait(&set, NULL, &ts);

        if (sig < 0)
            continue; /* EAGAIN (poll tick) or EINTR */
        if (!atomic_load(&srv->draining)) {
            ias_info(NULL, "%s received: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            ias_server_stop(srv);
        } else {
            ias_warn(NULL, "second signal: cutting the drain short");
            atomic_store(&srv->deadline_ms, 0);
        }
    }
    return NULL;
}

static void join_workers(ias_server *srv)
{
    for (int i = 0; i < srv->nworkers; i++) {
        if (srv->workers[i].thread_started) {
            pthread_join(srv->workers[i].thread, NULL);
            srv->workers[i].thread_started = false;
        }
    }
}

static void stop_signals(ias_server *srv)
{
    if (srv->sig_started) {
        atomic_store(&srv->sig_quit, true);
        pthread_join(srv->sig_thread, NULL);
        srv->sig_started = false;
    }
    if (srv->mask_saved && pthread_equal(srv->starter, pthread_self())) {
        pthread_sigmask(SIG_SETMASK, &srv->old_mask, NULL);
        srv->mask_saved = false;
    }
}

int ias_server_start(ias_server *srv)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    sigset_t sigs, old;
    struct sigaction sa;
    int nstarted = 0;

    if (srv->started || atomic_load(&srv->draining))
        return IAS_ERR;
    pthread_once(&evthread_once, evthread_init_once);
    if (evthread_rc != 0) {
        ias_error(NULL, "evthread_use_pthreads failed");
        return IAS_ERR;
    }
    /* a peer that vanished must be a write error, not the end of the process */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        ias_warn(NULL, "cannot ignore SIGPIPE: %s", strerror(errno));

    if (resolve(srv, &ss, &sslen) != IAS_OK)
        return IAS_ERR;
    atomic_store(&srv->port, srv->opts.port);
    if (srv->unix_path && open_unix_listener(srv) != IAS_OK)
        return IAS_ERR;
    for (int i = 0; i < srv->nworkers; i++) {
        if (worker_setup(&srv->workers[i], &ss, sslen) != IAS_OK)
            goto fail;
    }

    /* Workers never see SIGINT/SIGTERM: they inherit this mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    srv->nready = 0;
    srv->go = srv->abort_start = srv->init_failed = false;
    for (int i = 0; i < srv->nworkers; i++) {
        ias_worker *w = &srv->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);

        if (rc != 0) {
            ias_error(NULL, "pthread_create: %s", strerror(rc));
            break;
        }
        w->thread_started = true;
        nstarted++;
    }
    if (srv->opts.handle_signals && nstarted == srv->nworkers) {
        int rc = pthread_create(&srv->sig_thread, NULL, signal_main, srv);

        if (rc != 0)
            ias_error(NULL, "pthread_create (signals): %s", strerror(rc));
        else
            srv->sig_started = true;
    }
    if (!srv->opts.handle_signals) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    } else {
        /* delivered to the signal thread only, until ias_server_wait */
        srv->starter = pthread_self();
        srv->old_mask = old;
        srv->mask_saved = true;
    }

    pthread_mutex_lock(&srv->mu);
    while (srv->nready < nstarted)
        pthread_cond_wait(&srv->cv, &srv->mu);
    if (nstarted < srv->nworkers || srv->init_failed ||
        (srv->opts.handle_signals && !srv->sig_started)) {
        srv->abort_start = true;
        pthread_cond_broadcast(&srv->cv);
        pthread_mutex_unlock(&srv->mu);
        if (srv->init_failed)
            ias_error(NULL, "worker_init failed");
        join_workers(srv);
        stop_signals(srv);
        goto fail;
    }
    srv->go = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    srv->started = true;
    ias_info(NULL, "%s listening on %s:%d%s%s with %d workers", srv->service, srv->bind_addr,
             atomic_load(&srv->port), srv->unix_path ? " and " : "",
             srv->unix_path ? srv->unix_path : "", srv->nworkers);
    return IAS_OK;

fail:
    for (int i = 0; i < srv->nworkers; i++)
        worker_teardown(&srv->workers[i]);
    close_unix_listener(srv);
    return IAS_ERR;
}

void ias_server_wait(ias_server *srv)
{
    if (!srv->started || srv->joined)
        return;
    join_workers(srv);
    stop_signals(srv);
    srv->joined = true;
    ias_info(NULL, "%s stopped", srv->service);
}

int ias_server_run(ias_server *srv)
{
    if (ias_server_start(srv) != IAS_OK)
        return IAS_ERR;
    ias_server_wait(srv);
    return IAS_OK;
}

int ias_server_port(const ias_server *srv)
{
    return atomic_load(&srv->port);
}

void ias_server_free(ias_server *srv)
{
    if (!srv)
        return;
    if (srv->started && !srv->joined) {
        ias_server_stop(srv);
        ias_server_wait(srv);
    }
    for (int i = 0; i < srv->nworkers; i++)
        worker_teardown(&srv->workers[i]);
    close_unix_listener(srv);
    for (size_t i = 0; i < nslots(srv); i++)
        free(srv->route_label[i]);
    free(srv->route_label);
    free(srv->hist);
    free(srv->service_label);
    free(srv->workers);
    free(srv->service);
    free(srv->bind_addr);
    free(srv->openai_prefix);
    free(srv->unix_path);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
}

/* ---- worker accessors ---- */

struct event_base *ias_worker_base(ias_worker *w)
{
    return w->base;
}

int ias_worker_index(const ias_worker *w)
{
    return w->index;
}

void *ias_worker_data(ias_worker *w)
{
    return w->data;
}

void ias_worker_set_data(ias_worker *w, void *data)
{
    w->data = data;
}

ias_server *ias_worker_server(ias_worker *w)
{
    return w->srv;
}
