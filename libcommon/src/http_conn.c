/* Client connections: accepting, reading and parsing requests, writing
 * replies, keep-alive and pipelining, timeouts, lingering close.
 *
 * Raw non-blocking sockets with three libevent events each (readable,
 * writable/kick, timer) and two flat buffers per connection. Input: one
 * buffer holds the request being parsed or handled (its head parsed in place,
 * its body decoded in place) and whatever the client pipelined after it; it
 * never moves while a request is with its handler (header strings point into
 * it), and grows to at most max_header_bytes + max_body_bytes + slack.
 * Output: one buffer the reply head and body are copied into, written with
 * send(2) from the loop.
 *
 * Every state change goes through conn_step, which runs only from this
 * connection's own event callbacks: services' calls (ias_reply_*) change the
 * request and kick the connection, so nothing here runs inside a service
 * callback, and a connection is closed and freed only at the end of its own
 * callback. */
#include "http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    RBUF_INITIAL = 4096,
    WBUF_INITIAL = 4096,
    RBUF_SLACK = 16 * 1024,      /* pipelined bytes beyond one maximal request */
    POOL_BUF_MAX = 64 * 1024,    /* larger buffers are not kept in the pool */
    ACCEPT_BATCH = 64,           /* accepts per wakeup */
    ACCEPT_PAUSE_MS = 100,       /* out of descriptors */
    LINGER_MAX_MS = 5000,        /* reading and dropping after an error answer */
    MAX_PIPELINED_PER_STEP = 32, /* then yield to the loop */
    DRAIN_FIRES_PER_STEP = 1,
};

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_step(ias_conn *c);

static size_t pending(const ias_conn *c)
{
    return c->wlen - c->wpos;
}

static void timer_arm(ias_conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    if (event_add(&c->tev, &tv) != 0)
        ias_warn(NULL, "cannot arm a connection timer");
}

static void rev_set(ias_conn *c, bool on)
{
    if (on == c->rev_on)
        return;
    if (on ? event_add(&c->rev, NULL) != 0 : event_del(&c->rev) != 0)
        ias_warn(NULL, "cannot %s reading on a connection", on ? "start" : "stop");
    else
        c->rev_on = on;
}

static void wev_set(ias_conn *c, bool on)
{
    if (on == c->wev_on)
        return;
    if (on ? event_add(&c->wev, NULL) != 0 : event_del(&c->wev) != 0)
        ias_warn(NULL, "cannot %s writing on a connection", on ? "start" : "stop");
    else
        c->wev_on = on;
}

void ias_hs_conn_kick(ias_conn *c)
{
    if (!c->in_step)
        event_active(&c->wev, EV_WRITE, 1);
}

char *ias_hs_conn_reserve(ias_conn *c, size_t n)
{
    if (c->wcap - c->wlen < n) {
        size_t p = pending(c);

        if (c->wpos > 0) {
            /* move what waits to the front before growing */
            memmove(c->wbuf, c->wbuf + c->wpos, p);
            c->wpos = 0;
            c->wlen = p;
        }
        if (c->wcap - c->wlen < n) {
            size_t cap = c->wcap ? c->wcap : WBUF_INITIAL;

            while (cap - c->wlen < n)
                cap *= 2;
            c->wbuf = ias_xrealloc(c->wbuf, cap);
            c->wcap = cap;
        }
    }
    return c->wbuf + c->wlen;
}

/* ---- lifetime ---- */

static size_t rbuf_limit(const ias_server *srv)
{
    return srv->opts.max_header_bytes + srv->opts.max_body_bytes + RBUF_SLACK;
}

static void conn_free_mem(ias_conn *c)
{
    free(c->rbuf);
    free(c->wbuf);
    free(c->fields);
    free(c);
}

/* Closes the socket and releases the connection; c is gone afterwards. */
static void conn_close(ias_conn *c)
{
    ias_worker *w = c->w;

    event_del(&c->rev);
    event_del(&c->wev);
    event_del(&c->tev);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (w->nfree_conns >= IAS_CONN_FREELIST_MAX || c->rcap > POOL_BUF_MAX ||
        c->wcap > POOL_BUF_MAX) {
        conn_free_mem(c);
        return;
    }
    /* pooled: header strings a handler kept past its request stay poisoned */
    if (c->rbuf)
        IAS_POISON(c->rbuf, c->rcap);
    c->next = w->free_conns;
    w->free_conns = c;
    w->nfree_conns++;
}

/* The connection failed or the client left: the request it carries ends as
 * closed (on_close if the handler still owed the reply), then it is closed. */
static void conn_abort(ias_conn *c)
{
    ias_req *r = c->req;

    c->req = NULL;
    if (r) {
        r->conn = NULL;
        if (r->state == IAS_REQ_OPEN || r->state == IAS_REQ_STREAMING ||
            r->state == IAS_REQ_REPLIED) {
            r->state = IAS_REQ_CLOSED;
            ias_hs_req_end(r, true);
        }
    }
    conn_close(c);
}

void ias_hs_conns_close_all(ias_worker *w)
{
    while (w->conns)
        conn_abort(w->conns);
}

void ias_hs_conn_pool_free(ias_worker *w)
{
    while (w->free_conns) {
        ias_conn *c = w->free_conns;

        w->free_conns = c->next;
        if (c->rbuf)
            IAS_UNPOISON(c->rbuf, c->rcap);
        conn_free_mem(c);
    }
    w->nfree_conns = 0;
}

/* ---- output ---- */

/* Writes what waits; false when the connection failed. */
static bool conn_flush(ias_conn *c)
{
    bool progress = false;

    while (pending(c) > 0) {
        ssize_t n = send(c->fd, c->wbuf + c->wpos, pending(c), MSG_NOSIGNAL);

        if (n > 0) {
            c->wpos += (size_t)n;
            progress = true;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return false;
    }
    if (pending(c) == 0) {
        c->wpos = c->wlen = 0;
        wev_set(c, false);
        return true;
    }
    /* the socket is full: wait for it, and cut a client that stops reading */
    wev_set(c, true);
    if (progress || !evtimer_pending(&c->tev, NULL)) {
        c->t_mark = ias_now_ms();
        if (!evtimer_pending(&c->tev, NULL))
            timer_arm(c, (uint64_t)c->w->srv->opts.read_timeout_ms);
    }
    return true;
}

int ias_hs_conn_cut(ias_conn *c)
{
    /* what is queued goes out first if the socket takes it now */
    (void)conn_flush(c);
    if (shutdown(c->fd, SHUT_WR) != 0)
        return IAS_ERR;
    c->cut = true;
    c->keep_alive = false;
    c->wpos = c->wlen = 0;
    ias_hs_conn_kick(c);
    return IAS_OK;
}

/* ---- requests ---- */

static void enter_head(ias_conn *c)
{
    c->st = IAS_CONN_HEAD;
    c->scan = 0;
    c->t_mark = ias_now_ms();
    /* armed lazily: a timer set earlier fires sooner and re-arms for what is
     * left of the deadline, so a keep-alive request costs no timer update */
    if (!evtimer_pending(&c->tev, NULL))
        timer_arm(c, (uint64_t)c->w->srv->opts.read_timeout_ms);
    if (c->rlen < c->rcap)
        rev_set(c, true);
}

/* The reply was written: the request ends and the connection moves on. */
static bool request_done(ias_conn *c)
{
    ias_req *r = c->req;

    c->req = NULL;
    r->conn = NULL;
    r->state = IAS_REQ_DONE;
    ias_hs_req_end(r, false);
    if (!c->keep_alive || c->cut || atomic_load(&c->w->srv->draining) || c->eof)
        return false;
    /* the pipelined rest moves to the front; nothing points into it yet */
    if (c->next_req < c->rlen)
        memmove(c->rbuf, c->rbuf + c->next_req, c->rlen - c->next_req);
    c->rlen -= c->next_req;
    c->next_req = 0;
    /* an idle keep-alive connection does not keep what one large request or
     * reply needed */
    if (c->rcap > POOL_BUF_MAX && c->rlen <= RBUF_INITIAL) {
        c->rbuf = ias_xrealloc(c->rbuf, RBUF_INITIAL);
        c->rcap = RBUF_INITIAL;
    }
    if (c->wcap > POOL_BUF_MAX && pending(c) == 0) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = c->wpos = c->wlen = 0;
    }
    enter_head(c);
    return true;
}

/* An answer the server gives itself to a request it will not take (limits,
 * malformed framing): JSON in the request's shape, then a lingering close. */
static void answer_error(ias_conn *c)
{
    ias_req *r = ias_hs_req_new(c->w, c);

    c->keep_alive = false;
    c->st = IAS_CONN_LINGER;
    c->req = r;
    (void)ias_reply_error(r, c->head.error, NULL, "%s", c->head.why ? c->head.why : "bad request");
}

static void dispatch(ias_conn *c)
{
    ias_req *r = ias_hs_req_new(c->w, c);

    c->st = IAS_CONN_HANDLER;
    c->req = r;
    c->t_mark = ias_now_ms();
    /* more input (pipelined) is read into the room left, never moving the buffer */
    rev_set(c, c->rlen < c->rcap);
    ias_hs_dispatch(r);
}

/* Body framing after the head: returns false if the request is answered with an error. */
static void start_body(ias_conn *c)
{
    const ias_server_opts *o = &c->w->srv->opts;
    ias_hs_head *h = &c->head;

    c->body_end = h->head_len;
    c->raw_pos = h->head_len;
    if (h->content_length > 0 && (uint64_t)h->content_length > o->max_body_bytes) {
        h->error = 413;
        h->why = "request body too large";
        return;
    }
    if (h->chunked)
        ias_hs_chunked_init(&c->chunk);
    if (h->expect_continue && (h->chunked || h->content_length > 0) && c->rlen == h->head_len) {
        char *p = ias_hs_conn_reserve(c, sizeof(CONTINUE_100) - 1);

        memcpy(p, CONTINUE_100, sizeof(CONTINUE_100) - 1);
        c->wlen += sizeof(CONTINUE_100) - 1;
    }
    c->st = IAS_CONN_BODY;
    c->t_mark = ias_now_ms();
}

/* Parses what was read. True if a request went to its handler or an error
 * answer was queued (the state moved on); false: need more input. */
static bool conn_parse(ias_conn *c)
{
    const ias_server_opts *o = &c->w->srv->opts;
    ias_hs_head *h = &c->head;

    if (c->st == IAS_CONN_HEAD) {
        if (!c->fields)
            c->fields = ias_xmalloc(IAS_HS_MAX_FIELDS * sizeof(*c->fields));
        if (ias_hs_head_parse(c->rbuf, c->rlen, &c->scan, o->max_header_bytes, c->fields,
                              IAS_HS_MAX_FIELDS, h) == 0) {
            if (h->error) {
                answer_error(c);
                return true;
            }
            return false;
        }
        if (h->error) {
            answer_error(c);
            return true;
        }
        start_body(c);
        if (h->error) {
            answer_error(c);
            return true;
        }
    }
    if (c->st != IAS_CONN_BODY)
        return false;
    if (h->chunked) {
        int rc = ias_hs_chunked_run(&c->chunk, c->rbuf, &c->raw_pos, c->rlen, &c->body_end,
                                    o->max_body_bytes, o->max_header_bytes);

        if (rc == IAS_HS_CHUNK_MORE)
            return false;
        if (rc != IAS_HS_CHUNK_DONE) {
            h->error = rc == IAS_HS_CHUNK_LARGE ? 413 : 400;
            h->why = rc == IAS_HS_CHUNK_LARGE ? "request body too large"
                                              : "malformed chunked request body";
            answer_error(c);
            return true;
        }
        c->next_req = c->raw_pos;
    } else {
        size_t need = h->head_len + (size_t)(h->content_length > 0 ? h->content_length : 0);

        if (c->rlen < need)
            return false;
        c->body_end = need;
        c->next_req = need;
    }
    c->keep_alive = h->keep_alive;
    dispatch(c);
    return true;
}

/* Drives the connection until it waits for the network or the handler. */
static void conn_step(ias_conn *c)
{
    int requests = 0, drains = 0;

    c->in_step = true;
    for (;;) {
        ias_req *r = c->req;

        if (c->cut)
            c->wpos = c->wlen = 0;
        if (pending(c) > 0) {
            if (!conn_flush(c)) {
                conn_abort(c);
                return;
            }
        } else {
            wev_set(c, false); /* back from a yield, or the kick of an empty write */
        }
        if (r && r->state == IAS_REQ_REPLIED && pending(c) == 0) {
            bool linger = c->st == IAS_CONN_LINGER;

            if (!request_done(c)) {
                if (!linger || c->cut || c->eof) {
                    conn_close(c);
                    return;
                }
                /* lingering close: the client may still be sending what we
                 * refused; reading it avoids a reset that would eat our answer */
                if (shutdown(c->fd, SHUT_WR) != 0) {
                    conn_close(c);
                    return;
                }
                c->shut = true;
                c->rlen = 0;
                rev_set(c, true);
                timer_arm(c, (uint64_t)(c->w->srv->opts.read_timeout_ms < LINGER_MAX_MS
                                            ? c->w->srv->opts.read_timeout_ms
                                            : LINGER_MAX_MS));
                break;
            }
            if (++requests >= MAX_PIPELINED_PER_STEP) {
                wev_set(c, true); /* writable: back here on the next loop pass */
                break;
            }
            continue;
        }
        if (r) {
            if (r->state == IAS_REQ_STREAMING && r->drain_cb && pending(c) <= r->low_water) {
                if (drains++ >= DRAIN_FIRES_PER_STEP) {
                    wev_set(c, true); /* yield to the loop; writable brings us back */
                    break;
                }
                ias_req_cb cb = r->drain_cb;

                r->drain_cb = NULL;
                cb(r, r->drain_arg);
                if (c->req != r)
                    break; /* cannot happen: the request ends only here */
                continue;
            }
            break; /* with the handler */
        }
        if (c->st == IAS_CONN_LINGER || c->shut)
            break;
        if (!conn_parse(c)) {
            if (c->eof) {
                conn_close(c);
                return;
            }
            /* a 100 Continue may wait */
            if (pending(c) > 0 && !conn_flush(c)) {
                conn_abort(c);
                return;
            }
            rev_set(c, c->rlen < c->rcap || c->rcap < rbuf_limit(c->w->srv));
            break;
        }
    }
    c->in_step = false;
}

/* ---- events ---- */

static void conn_read(ias_conn *c)
{
    ias_server *srv = c->w->srv;
    ssize_t n;

    if (c->shut) {
        /* lingering: drop whatever comes until the client closes */
        char sink[16384];

        n = recv(c->fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_close(c);
        return;
    }
    if (c->rlen == c->rcap) {
        size_t limit = rbuf_limit(srv);

        if (c->st == IAS_CONN_HANDLER || c->rcap >= limit) {
            /* full while a request is out (or at the cap): stop reading */
            rev_set(c, false);
            return;
        }
        c->rcap = c->rcap ? c->rcap * 2 : RBUF_INITIAL;
        if (c->rcap > limit)
            c->rcap = limit;
        c->rbuf = ias_xrealloc(c->rbuf, c->rcap);
    }
    n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_abort(c);
        return;
    }
    if (n == 0) {
        c->eof = true;
        rev_set(c, false);
        if (c->req && c->req->state != IAS_REQ_REPLIED) {
            /* the client left while its handler waits or streams */
            conn_abort(c);
            return;
        }
        if (c->st == IAS_CONN_HEAD || c->st == IAS_CONN_BODY) {
            if (c->st == IAS_CONN_BODY || c->rlen > 0) {
                conn_close(c); /* mid-request: nothing to answer */
                return;
            }
            conn_close(c);
            return;
        }
    } else {
        if ((c->st == IAS_CONN_HEAD && c->rlen == 0) || c->st == IAS_CONN_BODY)
            c->t_mark = ias_now_ms(); /* a new request's first bytes, or body progress */
        c->rlen += (size_t)n;
        if (c->st == IAS_CONN_HANDLER) {
            if (c->rlen == c->rcap)
                rev_set(c, false);
            return; /* pipelined: parsed once the current request is done */
        }
    }
    conn_step(c);
}

static void rev_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_read(arg);
}

static void wev_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_step(arg);
}

static void tev_cb(evutil_socket_t fd, short what, void *arg)
{
    ias_conn *c = arg;
    uint64_t to = (uint64_t)c->w->srv->opts.read_timeout_ms, now, dt;

    if (c->shut) {
        conn_close(c);
        return;
    }
    now = ias_now_ms();
    dt = now - c->t_mark;
    switch (c->st) {
    case IAS_CONN_HEAD:
    case IAS_CONN_BODY:
        break;
    case IAS_CONN_HANDLER:
    case IAS_CONN_LINGER:
        if (pending(c) == 0)
            return; /* waiting for the handler: no timeout */
        break;
    }
    if (dt < to) {
        timer_arm(c, to - dt);
        return;
    }
    if (c->req)
        ias_warn(&c->req->log, "client stopped reading for %d ms: connection cut",
                 c->w->srv->opts.read_timeout_ms);
    conn_abort(c); /* no reply for a request that never finished */
}

/* ---- accepting ---- */

static void conn_open(ias_worker *w, int fd, const struct sockaddr_storage *ss, bool unix_peer)
{
    ias_conn *c = w->free_conns;

    if (c) {
        char *rbuf = c->rbuf, *wbuf = c->wbuf;
        size_t rcap = c->rcap, wcap = c->wcap;
        ias_hs_field *fields = c->fields;

        w->free_conns = c->next;
        w->nfree_conns--;
        if (rbuf)
            IAS_UNPOISON(rbuf, rcap);
        memset(c, 0, sizeof(*c));
        c->rbuf = rbuf;
        c->rcap = rcap;
        c->wbuf = wbuf;
        c->wcap = wcap;
        c->fields = fields;
    } else {
        c = ias_xcalloc(1, sizeof(*c));
    }
    c->w = w;
    c->fd = fd;
    c->unix_peer = unix_peer;
    if (unix_peer) {
        memcpy(c->peer, "unix", 5);
    } else if (ss->ss_family == AF_INET) {
        if (!inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->peer,
                       sizeof(c->peer)))
            c->peer[0] = '\0';
    } else if (ss->ss_family == AF_INET6) {
        if (!inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->peer,
                       sizeof(c->peer)))
            c->peer[0] = '\0';
    }
    if (event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, rev_cb, c) != 0 ||
        event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, wev_cb, c) != 0 ||
        event_assign(&c->tev, w->base, -1, 0, tev_cb, c) != 0) {
        ias_error(NULL, "worker %d: cannot set up a connection's events", w->index);
        close(fd);
        conn_free_mem(c);
        return;
    }
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    enter_head(c);
    if (!c->rev_on) {
        /* an empty pooled buffer: reading needs room */
        rev_set(c, true);
    }
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    ias_worker *w = arg;

    if (!w->listening)
        return;
    if (w->listen_ev && event_add(w->listen_ev, NULL) != 0)
        ias_warn(NULL, "worker %d: cannot resume accepting", w->index);
    if (w->unix_ev && event_add(w->unix_ev, NULL) != 0)
        ias_warn(NULL, "worker %d: cannot resume accepting (unix)", w->index);
}

void ias_hs_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    ias_worker *w = arg;
    bool unix_peer = w->unix_ev && lfd == event_get_fd(w->unix_ev);

    for (int i = 0; i < ACCEPT_BATCH && w->listening; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0) {
            conn_open(w, fd, &ss, unix_peer);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return; /* another worker took it (shared unix socket), or none left */
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};

            ias_warn(NULL, "worker %d: accept: %s; pausing %d ms", w->index, strerror(errno),
                     ACCEPT_PAUSE_MS);
            if (w->listen_ev)
                event_del(w->listen_ev);
            if (w->unix_ev)
                event_del(w->unix_ev);
            if (!w->accept_pause)
                w->accept_pause = evtimer_new(w->base, accept_resume, w);
            if (w->accept_pause)
                evtimer_add(w->accept_pause, &tv);
            return;
        }
        ias_warn(NULL, "worker %d: accept: %s", w->index, strerror(errno));
        return;
    }
}
