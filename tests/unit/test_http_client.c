/* Tests for the async HTTP client against real local servers on ephemeral
 * ports, running on the same event loop: evhttp for well-behaved responses,
 * and a scripted raw-socket server for failure modes. */
#include "testlib.h"

#include "ias/http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

/* ------------------------------------------------------------------ */
/* Scripted raw server                                                 */

typedef struct tsrv tsrv;
typedef struct tconn tconn;
/* Called once per complete request (head includes the blank line). */
typedef void (*tsrv_fn)(tconn *tc, const char *head, const char *body, size_t blen);

struct tconn {
    tsrv *s;
    struct bufferevent *bev;
    int id;
    int nreq;
    bool close_after_write;
    bool closed;
    bool peer_closed;
    /* Streaming helpers. */
    uint64_t stream_total, stream_off;
    struct event *timer;
    int ticks;
};

enum { MAX_TCONN = 64 };

struct tsrv {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    int accepts;
    int requests;
    int peer_closes;
    tsrv_fn fn;
    tconn *conns[MAX_TCONN];
    char last_head[4096];
    char last_body[4096];
    size_t last_body_len;
};

static void tconn_close(tconn *tc)
{
    if (tc->closed)
        return;
    tc->closed = true;
    if (tc->timer)
        event_del(tc->timer);
    bufferevent_free(tc->bev);
    tc->bev = NULL;
}

static void tconn_write(tconn *tc, const void *d, size_t n)
{
    if (!tc->closed)
        assert_int_equal(bufferevent_write(tc->bev, d, n), 0);
}

static void tconn_str(tconn *tc, const char *s)
{
    tconn_write(tc, s, strlen(s));
}

static void tsrv_read_cb(struct bufferevent *bev, void *arg)
{
    tconn *tc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (!tc->closed) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return;
        size_t hlen = (size_t)end.pos + 4;
        char head[4096];
        assert_true(hlen < sizeof(head));
        assert_int_equal(evbuffer_copyout(in, head, hlen), (ev_ssize_t)hlen);
        head[hlen] = '\0';
        size_t blen = 0;
        const char *cl = strcasestr(head, "\r\nContent-Length:");
        if (cl)
            blen = strtoul(cl + 17, NULL, 10);
        if (evbuffer_get_length(in) < hlen + blen)
            return;
        evbuffer_drain(in, hlen);
        char body[4096];
        assert_true(blen < sizeof(body));
        assert_int_equal(evbuffer_remove(in, body, blen), (int)blen);
        body[blen] = '\0';
        tsrv *s = tc->s;
        memcpy(s->last_head, head, hlen + 1);
        memcpy(s->last_body, body, blen + 1);
        s->last_body_len = blen;
        s->requests++;
        tc->nreq++;
        s->fn(tc, head, body, blen);
    }
}

static void tsrv_write_cb(struct bufferevent *bev, void *arg)
{
    tconn *tc = arg;
    if (tc->close_after_write && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        tconn_close(tc);
}

static void tsrv_event_cb(struct bufferevent *bev, short what, void *arg)
{
    tconn *tc = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        tc->peer_closed = true;
        tc->s->peer_closes++;
        tconn_close(tc);
    }
}

static void tsrv_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int salen, void *arg)
{
    tsrv *s = arg;
    assert_true(s->accepts < MAX_TCONN);
    tconn *tc = calloc(1, sizeof(*tc));
    assert_non_null(tc);
    tc->s = s;
    tc->id = s->accepts;
    tc->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(tc->bev);
    bufferevent_setcb(tc->bev, tsrv_read_cb, tsrv_write_cb, tsrv_event_cb, tc);
    bufferevent_enable(tc->bev, EV_READ | EV_WRITE);
    s->conns[s->accepts++] = tc;
}

static tsrv *tsrv_new(struct event_base *base, tsrv_fn fn)
{
    tsrv *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->base = base;
    s->fn = fn;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->lis =
        evconnlistener_new_bind(base, tsrv_accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                64, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(s->lis);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
    return s;
}

static void tsrv_free(tsrv *s)
{
    for (int i = 0; i < s->accepts; i++) {
        tconn_close(s->conns[i]);
        if (s->conns[i]->timer)
            event_free(s->conns[i]->timer);
        free(s->conns[i]);
    }
    evconnlistener_free(s->lis);
    free(s);
}

/* ------------------------------------------------------------------ */
/* Client side recorder                                                */

typedef struct rec {
    struct event_base *base;
    ias_http_client *client;
    ias_http_call *call;
    int ndone;
    ias_http_result result;
    bool started;
    bool retried;
    bool reused;
    int status;
    int nresponse;
    char head[2048];
    char *body;
    size_t body_len, body_cap;
    size_t nbody;
    char error[256];
    /* knobs */
    bool cancel_in_body;
    bool keep_body; /* store the body (else only count) */
    int server_chunks_at_first_body;
    int *server_chunks;
} rec;

static void rec_on_response(ias_http_call *call, const ias_http_response *resp, void *arg)
{
    rec *r = arg;
    r->nresponse++;
    r->status = resp->status;
    size_t off = 0;
    for (size_t i = 0; i < resp->nheaders && off < sizeof(r->head); i++)
        off += (size_t)snprintf(r->head + off, sizeof(r->head) - off, "%s: %s\n",
                                resp->headers[i].name, resp->headers[i].value);
}

static void rec_on_body(ias_http_call *call, const char *data, size_t len, void *arg)
{
    rec *r = arg;
    if (r->nbody == 0 && r->server_chunks)
        r->server_chunks_at_first_body = *r->server_chunks;
    r->nbody++;
    if (r->keep_body) {
        if (r->body_len + len + 1 > r->body_cap) {
            r->body_cap = (r->body_len + len + 1) * 2;
            r->body = realloc(r->body, r->body_cap);
            assert_non_null(r->body);
        }
        memcpy(r->body + r->body_len, data, len);
        r->body[r->body_len + len] = '\0';
    }
    r->body_len += len;
    if (r->cancel_in_body) {
        ias_http_call_cancel(call);
        r->call = NULL;
        event_base_loopbreak(r->base);
    }
}

static void rec_on_done(ias_http_call *call, ias_http_result result, void *arg)
{
    rec *r = arg;
    r->ndone++;
    r->result = result;
    r->started = ias_http_call_response_started(call);
    r->retried = ias_http_call_retried(call);
    r->reused = ias_http_call_reused(call);
    snprintf(r->error, sizeof(r->error), "%s", ias_http_call_error(call));
    assert_int_equal(r->status, ias_http_call_status(call));
    assert_int_equal(r->body_len, ias_http_call_body_bytes(call));
    r->call = NULL;
    event_base_loopbreak(r->base);
}

static const ias_http_callbacks rec_cbs = {
    .on_response = rec_on_response,
    .on_body = rec_on_body,
    .on_done = rec_on_done,
};

static void rec_reset(rec *r)
{
    free(r->body);
    struct event_base *b = r->base;
    ias_http_client *c = r->client;
    memset(r, 0, sizeof(*r));
    r->base = b;
    r->client = c;
    r->keep_body = true;
}

/* Runs the loop until cond() or the deadline (then fails). */
static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

static void run_until(struct event_base *base, bool (*cond)(void *), void *arg, int ms)
{
    bool expired = false;
    struct event *wd = evtimer_new(base, watchdog_cb, &expired);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(wd, &tv);
    while (!cond(arg) && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(wd);
    if (!cond(arg))
        fail_msg("timed out after %d ms", ms);
}

/* Runs the loop for ms regardless. */
static void run_for(struct event_base *base, int ms)
{
    bool expired = false;
    struct event *wd = evtimer_new(base, watchdog_cb, &expired);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(wd, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(wd);
}

static bool rec_done(void *arg)
{
    return ((rec *)arg)->ndone > 0;
}

static ias_http_call *start(rec *r, const char *method, const char *url,
                            const ias_http_request *tmpl)
{
    ias_http_request req = {0};
    if (tmpl)
        req = *tmpl;
    req.method = method;
    req.url = url;
    r->call = ias_http_client_request(r->client, &req, &rec_cbs, r);
    assert_non_null(r->call);
    return r->call;
}

static void do_call(rec *r, const char *method, const char *url, const ias_http_request *tmpl)
{
    start(r, method, url, tmpl);
    run_until(r->base, rec_done, r, 10000);
    assert_int_equal(r->ndone, 1);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

typedef struct fx {
    struct event_base *base;
    ias_http_client *client;
    rec r;
    tsrv *srv;
    struct evhttp *http;
    int http_port;
    /* evhttp state */
    int peer_ports[64];
    int npeer_ports;
    int chunks_sent;
    int chunks_total;
    struct evhttp_request *stream_req;
    struct event *stream_timer;
    char url[256];
} fx;

static fx *fx_new(const ias_http_client_opts *o)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->client = ias_http_client_new(f->base, o);
    assert_non_null(f->client);
    f->r.base = f->base;
    f->r.client = f->client;
    f->r.keep_body = true;
    return f;
}

static void fx_free(fx *f)
{
    ias_http_client_free(f->client);
    if (f->srv)
        tsrv_free(f->srv);
    if (f->stream_timer)
        event_free(f->stream_timer);
    if (f->http)
        evhttp_free(f->http);
    /* Let deferred frees and closes run before the base goes. */
    for (int i = 0; i < 3; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    event_base_free(f->base);
    free(f->r.body);
    free(f);
}

static const char *srv_url(fx *f, const char *path)
{
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d%s", f->srv->port, path);
    return f->url;
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    *state = NULL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* evhttp server                                                       */

static void note_peer(fx *f, struct evhttp_request *req)
{
    char *addr;
    ev_uint16_t port;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    for (int i = 0; i < f->npeer_ports; i++)
        if (f->peer_ports[i] == port)
            return;
    assert_true(f->npeer_ports < 64);
    f->peer_ports[f->npeer_ports++] = port;
}

static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
    fx *f = arg;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "data: {\"n\":%d}\n\n", f->chunks_sent);
    evhttp_send_reply_chunk(f->stream_req, b);
    evbuffer_free(b);
    f->chunks_sent++;
    if (f->chunks_sent < f->chunks_total) {
        struct timeval tv = {0, 20000};
        evtimer_add(f->stream_timer, &tv);
    } else {
        evhttp_send_reply_end(f->stream_req);
        f->stream_req = NULL;
    }
}

static void http_cb(struct evhttp_request *req, void *arg)
{
    fx *f = arg;
    note_peer(f, req);
    const char *uri = evhttp_request_get_uri(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evbuffer *b = evbuffer_new();
    if (strncmp(uri, "/cl", 3) == 0) {
        evhttp_add_header(out, "Content-Type", "text/plain");
        evbuffer_add_printf(b, "hello %s", uri);
        if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
            /* evhttp would write the body after a HEAD response: the client
             * must then refuse to reuse the connection, so send none. */
            char cl[32];
            snprintf(cl, sizeof(cl), "%zu", evbuffer_get_length(b));
            evhttp_add_header(out, "Content-Length", cl);
            evbuffer_drain(b, evbuffer_get_length(b));
        }
        evhttp_send_reply(req, 200, "OK", b);
    } else if (strcmp(uri, "/echo") == 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        const char *host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
        const char *x = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Test");
        evbuffer_add_printf(b, "%d|%s|%s|", (int)evhttp_request_get_command(req), host ? host : "-",
                            x ? x : "-");
        evbuffer_add_buffer(b, in);
        evhttp_send_reply(req, 201, "Created", b);
    } else if (strcmp(uri, "/chunked") == 0) {
        evhttp_add_header(out, "Content-Type", "text/event-stream");
        evhttp_send_reply_start(req, 200, "OK");
        f->stream_req = req;
        f->chunks_sent = 0;
        if (!f->stream_timer)
            f->stream_timer = evtimer_new(f->base, stream_tick, f);
        stream_tick(-1, 0, f);
    } else {
        evhttp_send_reply(req, 404, "Not Found", b);
    }
    evbuffer_free(b);
}

static void fx_http(fx *f)
{
    f->http = evhttp_new(f->base);
    assert_non_null(f->http);
    evhttp_set_gencb(f->http, http_cb, f);
    struct evhttp_bound_socket *h = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    assert_non_null(h);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(h), (struct sockaddr *)&sin, &len), 0);
    f->http_port = ntohs(sin.sin_port);
}

static const char *http_url(fx *f, const char *path)
{
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d%s", f->http_port, path);
    return f->url;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_content_length_and_keepalive(void **state)
{
    fx *f = fx_new(NULL);
    fx_http(f);
    for (int i = 0; i < 5; i++) {
        rec_reset(&f->r);
        char path[32];
        snprintf(path, sizeof(path), "/cl%d", i);
        do_call(&f->r, "GET", http_url(f, path), NULL);
        assert_int_equal(f->r.result, IAS_HTTP_OK);
        assert_int_equal(f->r.status, 200);
        assert_true(f->r.started);
        char want[64];
        snprintf(want, sizeof(want), "hello %s", path);
        assert_string_equal(f->r.body, want);
        assert_non_null(strstr(f->r.head, "Content-Type: text/plain"));
        assert_int_equal(f->r.reused, i > 0);
    }
    /* One connection served all five. */
    assert_int_equal(f->npeer_ports, 1);
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.reuses, 4);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.active, 0);
    fx_free(f);
}

static void test_chunked_streaming_incremental(void **state)
{
    fx *f = fx_new(NULL);
    fx_http(f);
    f->chunks_total = 5;
    f->r.server_chunks = &f->chunks_sent;
    do_call(&f->r, "GET", http_url(f, "/chunked"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_int_equal(f->r.status, 200);
    /* on_body ran while the server still had chunks to send. */
    assert_true(f->r.server_chunks_at_first_body < f->chunks_total);
    assert_true(f->r.nbody >= 5);
    assert_string_equal(f->r.body, "data: {\"n\":0}\n\ndata: {\"n\":1}\n\ndata: {\"n\":2}\n\n"
                                   "data: {\"n\":3}\n\ndata: {\"n\":4}\n\n");
    /* Chunked and complete: the connection went back to the pool. */
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.idle, 1);
    fx_free(f);
}

static void test_post_body_and_headers(void **state)
{
    fx *f = fx_new(NULL);
    fx_http(f);
    ias_http_header hdrs[] = {{"X-Test", "yes"}, {"Content-Type", "application/json"}};
    ias_http_request req = {.headers = hdrs, .nheaders = 2, .body = "{\"a\":1}", .body_len = 7};
    do_call(&f->r, "POST", http_url(f, "/echo"), &req);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_int_equal(f->r.status, 201);
    char want[128];
    snprintf(want, sizeof(want), "%d|127.0.0.1:%d|yes|{\"a\":1}", EVHTTP_REQ_POST, f->http_port);
    assert_string_equal(f->r.body, want);
    /* A caller-supplied Host wins. */
    rec_reset(&f->r);
    ias_http_header host[] = {{"Host", "models.internal"}};
    ias_http_request req2 = {.headers = host, .nheaders = 1};
    do_call(&f->r, "PUT", http_url(f, "/echo"), &req2);
    snprintf(want, sizeof(want), "%d|models.internal|-|", EVHTTP_REQ_PUT);
    assert_string_equal(f->r.body, want);
    fx_free(f);
}

static void test_invalid_requests(void **state)
{
    fx *f = fx_new(NULL);
    ias_http_request req = {.url = "https://example.com/"};
    assert_null(ias_http_client_request(f->client, &req, &rec_cbs, &f->r));
    req.url = "http://example.com/";
    ias_http_header crlf[] = {{"X-Bad", "a\r\nInjected: 1"}};
    req.headers = crlf;
    req.nheaders = 1;
    assert_null(ias_http_client_request(f->client, &req, &rec_cbs, &f->r));
    ias_http_header te[] = {{"Transfer-Encoding", "chunked"}};
    req.headers = te;
    assert_null(ias_http_client_request(f->client, &req, &rec_cbs, &f->r));
    ias_http_header badname[] = {{"X Bad", "v"}};
    req.headers = badname;
    assert_null(ias_http_client_request(f->client, &req, &rec_cbs, &f->r));
    req.headers = NULL;
    req.nheaders = 0;
    req.method = "GE T";
    assert_null(ias_http_client_request(f->client, &req, &rec_cbs, &f->r));
    req.method = NULL;
    ias_http_callbacks nodone = {.on_body = rec_on_body};
    assert_null(ias_http_client_request(f->client, &req, &nodone, &f->r));
    req.body_len = 5; /* length without a body */
    assert_null(ias_http_client_request(f->client, &req, &rec_cbs, &f->r));
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.active, 0);
    assert_int_equal(f->r.ndone, 0);
    fx_free(f);
}

/* Raw server behaviours. */

static void srv_ok(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

static void srv_close_header(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    tc->close_after_write = true;
}

static void test_connection_close_honoured(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_close_header);
    for (int i = 0; i < 3; i++) {
        rec_reset(&f->r);
        do_call(&f->r, "GET", srv_url(f, "/"), NULL);
        assert_int_equal(f->r.result, IAS_HTTP_OK);
        assert_string_equal(f->r.body, "ok");
        assert_false(f->r.reused);
    }
    assert_int_equal(f->srv->accepts, 3);
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.connects, 3);
    fx_free(f);
}

static void test_keepalive_disabled(void **state)
{
    ias_http_client_opts o = {.disable_keepalive = true};
    fx *f = fx_new(&o);
    f->srv = tsrv_new(f->base, srv_ok);
    for (int i = 0; i < 2; i++) {
        rec_reset(&f->r);
        do_call(&f->r, "GET", srv_url(f, "/"), NULL);
        assert_int_equal(f->r.result, IAS_HTTP_OK);
        assert_non_null(strstr(f->srv->last_head, "\r\nConnection: close\r\n"));
    }
    assert_int_equal(f->srv->accepts, 2);
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.reuses, 0);
    fx_free(f);
}

static void srv_until_close(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                  "data: x\n\ndata: [DONE]\n\n");
    tc->close_after_write = true;
}

static void test_read_until_close_not_reused(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_until_close);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_string_equal(f->r.body, "data: x\n\ndata: [DONE]\n\n");
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.idle, 0);
    fx_free(f);
}

static void srv_trailing_garbage(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA");
}

static void test_extra_bytes_not_reused(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_trailing_garbage);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_string_equal(f->r.body, "ok");
    rec_reset(&f->r);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_false(f->r.reused);
    assert_int_equal(f->srv->accepts, 2);
    fx_free(f);
}

static void test_head_request(void **state)
{
    fx *f = fx_new(NULL);
    fx_http(f);
    do_call(&f->r, "HEAD", http_url(f, "/cl"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_int_equal(f->r.status, 200);
    assert_int_equal(f->r.body_len, 0);
    assert_non_null(strstr(f->r.head, "Content-Length: 9"));
    rec_reset(&f->r);
    do_call(&f->r, "GET", http_url(f, "/cl"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_true(f->r.reused);
    assert_string_equal(f->r.body, "hello /cl");
    fx_free(f);
}

static void test_connect_refused(void **state)
{
    /* A port that was free a moment ago. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
    close(s);
    fx *f = fx_new(NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    do_call(&f->r, "GET", url, NULL);
    assert_int_equal(f->r.result, IAS_HTTP_CONNECT_FAILED);
    assert_false(f->r.started);
    assert_true(strlen(f->r.error) > 0);
    fx_free(f);
}

static void test_connect_timeout(void **state)
{
    /* A listener that never accepts, its backlog filled: further SYNs are
     * dropped and connect() hangs. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(l, 0), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
    int fillers[2];
    for (int i = 0; i < 2; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fillers[i] >= 0);
        int rc = connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
        assert_true(rc == 0 || errno == EINPROGRESS);
    }
    usleep(50000);
    fx *f = fx_new(NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    ias_http_request req = {.connect_ms = 200};
    uint64_t t0 = ias_now_ms();
    do_call(&f->r, "GET", url, &req);
    uint64_t took = ias_now_ms() - t0;
    assert_int_equal(f->r.result, IAS_HTTP_CONNECT_TIMEOUT);
    assert_false(f->r.started);
    assert_true(took >= 190 && took < 2000);
    fx_free(f);
    close(fillers[0]);
    close(fillers[1]);
    close(l);
}

static void srv_silent(tconn *tc, const char *head, const char *body, size_t blen) {}

static void test_first_byte_timeout(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_silent);
    ias_http_request req = {.first_byte_ms = 150};
    uint64_t t0 = ias_now_ms();
    do_call(&f->r, "GET", srv_url(f, "/"), &req);
    uint64_t took = ias_now_ms() - t0;
    assert_int_equal(f->r.result, IAS_HTTP_FIRST_BYTE_TIMEOUT);
    assert_false(f->r.started);
    assert_true(took >= 140 && took < 2000);
    assert_int_equal(f->srv->requests, 1);
    /* The connection was closed, not pooled. */
    run_for(f->base, 20);
    assert_int_equal(f->srv->peer_closes, 1);
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.idle, 0);
    fx_free(f);
}

static void srv_partial_then_stall(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
}

static void test_idle_timeout_mid_body(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_partial_then_stall);
    ias_http_request req = {.idle_ms = 150};
    do_call(&f->r, "GET", srv_url(f, "/"), &req);
    assert_int_equal(f->r.result, IAS_HTTP_IDLE_TIMEOUT);
    assert_true(f->r.started);
    assert_int_equal(f->r.status, 200);
    assert_int_equal(f->r.body_len, 10);
    fx_free(f);
}

/* Trickles a byte every 30 ms forever: the idle timer never fires, total does. */
static void trickle_cb(evutil_socket_t fd, short what, void *arg)
{
    tconn *tc = arg;
    if (tc->closed)
        return;
    char chunk[] = "1\r\nx\r\n";
    tconn_write(tc, chunk, 6);
    struct timeval tv = {0, 30000};
    evtimer_add(tc->timer, &tv);
}

static void srv_trickle(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    tc->timer = evtimer_new(tc->s->base, trickle_cb, tc);
    trickle_cb(-1, 0, tc);
}

static void test_total_timeout(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_trickle);
    ias_http_request req = {.idle_ms = 200, .total_ms = 400};
    uint64_t t0 = ias_now_ms();
    do_call(&f->r, "GET", srv_url(f, "/"), &req);
    uint64_t took = ias_now_ms() - t0;
    assert_int_equal(f->r.result, IAS_HTTP_TOTAL_TIMEOUT);
    assert_true(f->r.body_len >= 5);
    assert_true(took >= 390 && took < 3000);
    fx_free(f);
}

static void srv_die_mid_stream(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "f\r\ndata: {\"a\":1}\n\n\r\n");
    tc->close_after_write = true;
}

static void test_server_dies_mid_stream(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_die_mid_stream);
    do_call(&f->r, "POST", srv_url(f, "/v1/chat/completions"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_RESET);
    assert_true(f->r.started);
    assert_int_equal(f->r.body_len, 15);
    assert_string_equal(f->r.body, "data: {\"a\":1}\n\n");
    assert_false(f->r.retried);
    fx_free(f);
}

static void srv_close_immediately(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_close(tc);
}

static void test_fresh_connection_closed_no_retry(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_close_immediately);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_RESET);
    assert_false(f->r.started);
    assert_false(f->r.retried);
    assert_int_equal(f->srv->accepts, 1);
    fx_free(f);
}

/* Answers the first request on a connection; on the second it closes without
 * a byte, as a server whose keep-alive timer fired just as the request came. */
static void srv_stale(tconn *tc, const char *head, const char *body, size_t blen)
{
    if (tc->nreq >= 2) {
        tconn_close(tc);
        return;
    }
    tconn_str(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

static void test_stale_keepalive_retry(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_stale);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    rec_reset(&f->r);
    ias_http_request req = {.body = "{}", .body_len = 2};
    do_call(&f->r, "POST", srv_url(f, "/"), &req);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_string_equal(f->r.body, "ok");
    assert_true(f->r.retried);
    assert_false(f->r.reused); /* answered on the fresh connection */
    assert_int_equal(f->srv->accepts, 2);
    assert_int_equal(f->srv->requests, 3);
    assert_string_equal(f->srv->last_body, "{}");
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.stale_retries, 1);
    assert_int_equal(st.connects, 2);
    fx_free(f);
}

/* Retried at most once: every connection dies on its second request, and the
 * retry's fresh connection serves... the first request it sees. Make the
 * retry fail too by closing every request after the first overall. */
static int stale_all_count;
static void srv_stale_all(tconn *tc, const char *head, const char *body, size_t blen)
{
    if (stale_all_count++ >= 1) {
        tconn_close(tc);
        return;
    }
    tconn_str(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

static void test_stale_retry_only_once(void **state)
{
    stale_all_count = 0;
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_stale_all);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    rec_reset(&f->r);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_RESET);
    assert_true(f->r.retried);
    assert_false(f->r.started);
    assert_int_equal(f->srv->accepts, 2);
    fx_free(f);
}

/* Streams chunks forever every 10 ms. */
static void forever_cb(evutil_socket_t fd, short what, void *arg)
{
    tconn *tc = arg;
    if (tc->closed)
        return;
    tconn_str(tc, "8\r\ndata: x\n\r\n");
    tc->ticks++;
    struct timeval tv = {0, 10000};
    evtimer_add(tc->timer, &tv);
}

static void srv_forever(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    tc->timer = evtimer_new(tc->s->base, forever_cb, tc);
    forever_cb(-1, 0, tc);
}

static bool first_conn_peer_closed(void *arg)
{
    tsrv *s = arg;
    return s->accepts > 0 && s->conns[0]->peer_closed;
}

static void test_cancel_inside_on_body(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_forever);
    f->r.cancel_in_body = true;
    start(&f->r, "GET", srv_url(f, "/"), NULL);
    run_until(f->base, first_conn_peer_closed, f->srv, 5000);
    run_for(f->base, 50);
    assert_int_equal(f->r.ndone, 0); /* explicit cancel: no on_done */
    assert_int_equal(f->r.nbody, 1);
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.idle, 0);
    fx_free(f);
}

static void cancel_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    rec *r = arg;
    ias_http_call_cancel(r->call);
    ias_http_call_cancel(NULL); /* tolerated */
    r->call = NULL;
}

static void test_cancel_from_outside(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_silent);
    start(&f->r, "GET", srv_url(f, "/"), NULL);
    struct event *t = evtimer_new(f->base, cancel_timer_cb, &f->r);
    struct timeval tv = {0, 50000};
    evtimer_add(t, &tv);
    run_until(f->base, first_conn_peer_closed, f->srv, 5000);
    assert_int_equal(f->r.ndone, 0);
    event_free(t);
    /* Cancel right after starting, before any I/O. */
    ias_http_call *c = start(&f->r, "GET", srv_url(f, "/"), NULL);
    ias_http_call_cancel(c);
    run_for(f->base, 30);
    assert_int_equal(f->r.ndone, 0);
    fx_free(f);
}

static void test_client_free_cancels(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_silent);
    start(&f->r, "GET", srv_url(f, "/"), NULL);
    run_for(f->base, 30);
    assert_int_equal(f->r.ndone, 0);
    ias_http_client_free(f->client);
    assert_int_equal(f->r.ndone, 1);
    assert_int_equal(f->r.result, IAS_HTTP_CANCELLED);
    f->client = NULL;
    fx_free(f);
}

/* 20 MB as fast as the socket takes it. */
enum { BIG_TOTAL = 20 * 1024 * 1024, HWM = 64 * 1024 };

static unsigned char big_byte(uint64_t i)
{
    return (unsigned char)((i * 7 + 3) % 251);
}

static void big_fill(tconn *tc)
{
    struct evbuffer *out = bufferevent_get_output(tc->bev);
    unsigned char buf[65536];
    while (tc->stream_off < tc->stream_total && evbuffer_get_length(out) < 256 * 1024) {
        size_t n = sizeof(buf);
        if (tc->stream_total - tc->stream_off < n)
            n = (size_t)(tc->stream_total - tc->stream_off);
        for (size_t i = 0; i < n; i++)
            buf[i] = big_byte(tc->stream_off + i);
        tconn_write(tc, buf, n);
        tc->stream_off += n;
    }
}

static void big_write_cb(struct bufferevent *bev, void *arg)
{
    tconn *tc = arg;
    big_fill(tc);
}

static void srv_big(tconn *tc, const char *head, const char *body, size_t blen)
{
    char h[128];
    snprintf(h, sizeof(h), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_TOTAL);
    tconn_str(tc, h);
    tc->stream_total = BIG_TOTAL;
    bufferevent_setcb(tc->bev, tsrv_read_cb, big_write_cb, tsrv_event_cb, tc);
    bufferevent_setwatermark(tc->bev, EV_WRITE, 128 * 1024, 0);
    big_fill(tc);
}

typedef struct bigrec {
    fx *f;
    ias_http_call *call;
    uint64_t got;
    size_t max_buffered;
    bool bad_byte;
    int pauses;
    bool paused;
    bool delivered_while_paused;
    uint64_t next_pause;
    size_t max_buffered_in_pause;
    size_t buffered_at_pause;
    bool read_while_paused;
    uint64_t server_sent_first_pause; /* bytes the server handed to its kernel */
    struct event *resume_timer;
    int ndone;
    ias_http_result result;
} bigrec;

static void big_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    bigrec *b = arg;
    size_t buffered = ias_http_call_buffered(b->call);
    if (buffered > b->max_buffered_in_pause)
        b->max_buffered_in_pause = buffered;
    if (buffered != b->buffered_at_pause)
        b->read_while_paused = true;
    if (b->pauses == 1) {
        tconn *tc = b->f->srv->conns[0];
        b->server_sent_first_pause =
            tc->stream_off - evbuffer_get_length(bufferevent_get_output(tc->bev));
    }
    b->paused = false;
    ias_http_call_resume(b->call);
    ias_http_call_resume(b->call); /* idempotent */
}

static void big_on_body(ias_http_call *call, const char *data, size_t len, void *arg)
{
    bigrec *b = arg;
    if (b->paused)
        b->delivered_while_paused = true;
    size_t buffered = ias_http_call_buffered(call);
    if (buffered > b->max_buffered)
        b->max_buffered = buffered;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] != big_byte(b->got + i)) {
            b->bad_byte = true;
            break;
        }
    b->got += len;
    if (b->got >= b->next_pause && b->pauses < 3) {
        /* Pause longer than idle_ms: the idle timer must not fire. */
        ias_http_call_pause(call);
        ias_http_call_pause(call); /* idempotent */
        /* What stays buffered once this piece is consumed. */
        b->buffered_at_pause = ias_http_call_buffered(call) - len;
        b->pauses++;
        b->paused = true;
        b->next_pause += 6 * 1024 * 1024;
        struct timeval tv = {0, 300000};
        evtimer_add(b->resume_timer, &tv);
    }
}

static void big_on_done(ias_http_call *call, ias_http_result result, void *arg)
{
    bigrec *b = arg;
    b->ndone++;
    b->result = result;
}

static bool big_done(void *arg)
{
    return ((bigrec *)arg)->ndone > 0;
}

static void test_pause_resume_bounded(void **state)
{
    ias_http_client_opts o = {.read_high_watermark = HWM};
    fx *f = fx_new(&o);
    f->srv = tsrv_new(f->base, srv_big);
    bigrec b = {.f = f, .next_pause = 1024 * 1024};
    b.resume_timer = evtimer_new(f->base, big_resume_cb, &b);
    ias_http_callbacks cbs = {.on_body = big_on_body, .on_done = big_on_done};
    ias_http_request req = {.url = srv_url(f, "/big"), .idle_ms = 100};
    b.call = ias_http_client_request(f->client, &req, &cbs, &b);
    assert_non_null(b.call);
    run_until(f->base, big_done, &b, 60000);
    assert_int_equal(b.result, IAS_HTTP_OK);
    assert_int_equal(b.got, BIG_TOTAL);
    assert_false(b.bad_byte);
    assert_int_equal(b.pauses, 3);
    /* Nothing was delivered while paused, and the client never held more than
     * the watermark plus one read. */
    assert_false(b.delivered_while_paused);
    assert_true(b.max_buffered <= HWM + 16384);
    assert_false(b.read_while_paused); /* nothing was read from the socket while paused */
    assert_true(b.max_buffered_in_pause <= HWM + 16384);
    /* The server could not push everything while the client was paused:
     * TCP flow control held it back. */
    assert_true(b.server_sent_first_pause < BIG_TOTAL);
    event_free(b.resume_timer);
    fx_free(f);
}

static void srv_huge_header(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nX-Big: ");
    char big[4096];
    memset(big, 'a', sizeof(big));
    tconn_write(tc, big, sizeof(big));
    tconn_str(tc, "\r\nContent-Length: 0\r\n\r\n");
}

static void srv_garbage(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n");
}

static void srv_not_http(tconn *tc, const char *head, const char *body, size_t blen)
{
    tconn_str(tc, "SSH-2.0-OpenSSH\r\n");
}

static void test_limits_and_protocol_errors(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_huge_header);
    ias_http_request req = {.max_response_header_bytes = 1024};
    do_call(&f->r, "GET", srv_url(f, "/"), &req);
    assert_int_equal(f->r.result, IAS_HTTP_TOO_LARGE);
    assert_true(f->r.started);
    assert_int_equal(f->r.nresponse, 0);
    /* The default limit (16 KiB) lets it through. */
    rec_reset(&f->r);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);

    f->srv->fn = srv_garbage;
    rec_reset(&f->r);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_PROTOCOL_ERROR);
    assert_non_null(strstr(f->r.error, "Content-Length"));

    f->srv->fn = srv_not_http;
    rec_reset(&f->r);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_PROTOCOL_ERROR);

    /* Streaming body cap. */
    f->srv->fn = srv_forever;
    rec_reset(&f->r);
    ias_http_request capped = {.max_body_bytes = 50};
    do_call(&f->r, "GET", srv_url(f, "/"), &capped);
    assert_int_equal(f->r.result, IAS_HTTP_TOO_LARGE);
    assert_true(f->r.body_len <= 50);
    fx_free(f);
}

/* fetch */

typedef struct fetchrec {
    struct event_base *base;
    int n;
    ias_http_result result;
    int status;
    char body[256];
    size_t body_len;
    char ctype[64];
    bool started;
} fetchrec;

static void fetch_cb(const ias_http_fetch_result *res, void *arg)
{
    fetchrec *fr = arg;
    fr->n++;
    fr->result = res->result;
    fr->status = res->status;
    fr->started = res->response_started;
    fr->body_len = res->body_len;
    assert_int_equal(res->body[res->body_len], '\0');
    snprintf(fr->body, sizeof(fr->body), "%s", res->body);
    const char *ct = ias_http_header_get(res->headers, res->nheaders, "content-type");
    snprintf(fr->ctype, sizeof(fr->ctype), "%s", ct ? ct : "");
    event_base_loopbreak(fr->base);
}

static bool fetch_done(void *arg)
{
    return ((fetchrec *)arg)->n > 0;
}

static void test_fetch(void **state)
{
    fx *f = fx_new(NULL);
    fx_http(f);
    fetchrec fr = {.base = f->base};
    ias_http_request req = {.url = http_url(f, "/cl-fetch")};
    assert_non_null(ias_http_client_fetch(f->client, &req, fetch_cb, &fr));
    run_until(f->base, fetch_done, &fr, 5000);
    assert_int_equal(fr.result, IAS_HTTP_OK);
    assert_int_equal(fr.status, 200);
    assert_string_equal(fr.body, "hello /cl-fetch");
    assert_string_equal(fr.ctype, "text/plain");

    /* Chunked body over the cap. */
    memset(&fr, 0, sizeof(fr));
    fr.base = f->base;
    f->chunks_total = 5;
    ias_http_request capped = {.url = http_url(f, "/chunked"), .max_body_bytes = 20};
    assert_non_null(ias_http_client_fetch(f->client, &capped, fetch_cb, &fr));
    run_until(f->base, fetch_done, &fr, 5000);
    assert_int_equal(fr.result, IAS_HTTP_TOO_LARGE);
    assert_true(fr.started);
    run_for(f->base, 150); /* let the evhttp stream notice */

    /* Content-Length over the cap fails before the body. */
    memset(&fr, 0, sizeof(fr));
    fr.base = f->base;
    ias_http_request capped2 = {.url = http_url(f, "/cl-long-path"), .max_body_bytes = 5};
    assert_non_null(ias_http_client_fetch(f->client, &capped2, fetch_cb, &fr));
    run_until(f->base, fetch_done, &fr, 5000);
    assert_int_equal(fr.result, IAS_HTTP_TOO_LARGE);
    assert_int_equal(fr.body_len, 0);

    /* Cancelled fetch: no callback, nothing leaks. */
    memset(&fr, 0, sizeof(fr));
    fr.base = f->base;
    ias_http_request req3 = {.url = http_url(f, "/cl")};
    ias_http_call *c = ias_http_client_fetch(f->client, &req3, fetch_cb, &fr);
    assert_non_null(c);
    ias_http_call_cancel(c);
    run_for(f->base, 50);
    assert_int_equal(fr.n, 0);
    fx_free(f);
}

static void test_names_resolve(void **state)
{
    char path[] = "/tmp/ias-http-hosts-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *hosts = "127.0.0.1 backend.ias.test\n";
    assert_int_equal(write(fd, hosts, strlen(hosts)), (ssize_t)strlen(hosts));
    close(fd);
    ias_http_client_opts o = {.hosts_file = path};
    fx *f = fx_new(&o);
    f->srv = tsrv_new(f->base, srv_ok);
    char url[128];
    snprintf(url, sizeof(url), "http://backend.ias.test:%d/x", f->srv->port);
    do_call(&f->r, "GET", url, NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_string_equal(f->r.body, "ok");
    assert_non_null(strstr(f->srv->last_head, "Host: backend.ias.test:"));
    rec_reset(&f->r);
    snprintf(url, sizeof(url), "http://localhost:%d/y", f->srv->port);
    do_call(&f->r, "GET", url, NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_false(f->r.reused); /* a different pool key */
    fx_free(f);
    unlink(path);
}

/* A name nobody answers for (the resolver is a UDP socket that never
 * replies): the connect timeout covers the lookup, and abandoned lookups - by
 * timeout or by freeing the client - release everything (LSan checks). */
static void test_name_lookup_abandoned(void **state)
{
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(udp >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(udp, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(udp, (struct sockaddr *)&sin, &len), 0);
    char path[] = "/tmp/ias-http-resolv-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char conf[64];
    int n = snprintf(conf, sizeof(conf), "nameserver 127.0.0.1:%d\n", ntohs(sin.sin_port));
    assert_int_equal(write(fd, conf, (size_t)n), n);
    close(fd);

    ias_http_client_opts o = {.resolv_conf = path};
    fx *f = fx_new(&o);
    ias_http_request req = {.connect_ms = 150};
    uint64_t t0 = ias_now_ms();
    do_call(&f->r, "GET", "http://no-such-host.ias.test:8000/", &req);
    assert_int_equal(f->r.result, IAS_HTTP_CONNECT_TIMEOUT);
    assert_true(ias_now_ms() - t0 < 2000);
    assert_false(f->r.started);
    /* Free the client with a lookup in flight. */
    rec_reset(&f->r);
    start(&f->r, "GET", "http://other-host.ias.test:8000/", &req);
    run_for(f->base, 20);
    assert_int_equal(f->r.ndone, 0);
    ias_http_client_free(f->client);
    f->client = NULL;
    assert_int_equal(f->r.ndone, 1);
    assert_int_equal(f->r.result, IAS_HTTP_CANCELLED);
    fx_free(f); /* runs the loop: the resolver goes once its lookups are gone */
    unlink(path);
    close(udp);
}

static void test_pool_limits_and_expiry(void **state)
{
    ias_http_client_opts o = {.max_idle_per_host = 2, .idle_expiry_ms = 150};
    fx *f = fx_new(&o);
    f->srv = tsrv_new(f->base, srv_ok);
    /* Four concurrent calls: four connections, two kept. */
    rec rs[4];
    for (int i = 0; i < 4; i++) {
        memset(&rs[i], 0, sizeof(rs[i]));
        rs[i].base = f->base;
        rs[i].client = f->client;
        rs[i].keep_body = true;
        start(&rs[i], "GET", srv_url(f, "/"), NULL);
    }
    for (int i = 0; i < 4; i++) {
        run_until(f->base, rec_done, &rs[i], 5000);
        assert_int_equal(rs[i].result, IAS_HTTP_OK);
        free(rs[i].body);
    }
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.connects, 4);
    assert_int_equal(st.idle, 2);
    run_for(f->base, 300);
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.idle, 0);
    assert_int_equal(f->srv->peer_closes, 4);
    fx_free(f);
}

static void test_idle_connection_closed_by_server(void **state)
{
    fx *f = fx_new(NULL);
    f->srv = tsrv_new(f->base, srv_ok);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    tconn_close(f->srv->conns[0]);
    run_for(f->base, 30);
    ias_http_client_stats st;
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.idle, 0); /* noticed while idle */
    rec_reset(&f->r);
    do_call(&f->r, "GET", srv_url(f, "/"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_false(f->r.retried);
    fx_free(f);
}

/* The fixture's evhttp also on a unix socket; the path goes into f->url's buffer. */
static void fx_http_unix(fx *f, char *path, size_t pathlen)
{
    char dir[] = "/tmp/ias-test-hc-XXXXXX";
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    assert_non_null(mkdtemp(dir));
    snprintf(path, pathlen, "%s/s.sock", dir);
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_non_null(evhttp_accept_socket_with_handle(f->http, fd));
}

static void fx_unix_cleanup(const char *path)
{
    char dir[128];
    assert_int_equal(unlink(path), 0);
    (void)snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(rmdir(dir), 0);
}

/* unix: URLs: same pooling and keep-alive (one pool per socket path, both URL
 * forms share it, TCP to the same server has its own), Host "localhost",
 * streaming, and a clear error for a missing socket. */
static void test_unix_socket(void **state)
{
    fx *f = fx_new(NULL);
    char path[128], url[512];
    ias_http_client_stats st;

    fx_http(f);
    fx_http_unix(f, path, sizeof(path));
    for (int i = 0; i < 3; i++) {
        rec_reset(&f->r);
        snprintf(url, sizeof(url), "unix:%s:/cl%d", path, i);
        do_call(&f->r, "GET", url, NULL);
        assert_int_equal(f->r.result, IAS_HTTP_OK);
        char want[32];
        snprintf(want, sizeof(want), "hello /cl%d", i);
        assert_string_equal(f->r.body, want);
        assert_int_equal(f->r.reused, i > 0);
    }
    rec_reset(&f->r);
    ias_http_request req = {.body = "abc", .body_len = 3};
    snprintf(url, sizeof(url), "unix:%s:/echo", path);
    do_call(&f->r, "POST", url, &req);
    assert_int_equal(f->r.status, 201);
    assert_string_equal(f->r.body, "2|localhost|-|abc");
    assert_true(f->r.reused);

    /* http+unix:// with the path percent-encoded: the same pool */
    rec_reset(&f->r);
    char enc[256] = "";
    size_t el = 0;
    for (const char *p = path; *p; p++) {
        assert_true(el + 4 < sizeof(enc));
        if (*p == '/') {
            memcpy(enc + el, "%2F", 3);
            el += 3;
        } else {
            enc[el++] = *p;
        }
    }
    enc[el] = '\0';
    snprintf(url, sizeof(url), "http+unix://%s/chunked", enc);
    f->chunks_total = 3;
    do_call(&f->r, "GET", url, NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_string_equal(f->r.body, "data: {\"n\":0}\n\ndata: {\"n\":1}\n\ndata: {\"n\":2}\n\n");
    assert_true(f->r.reused);
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.reuses, 4);

    rec_reset(&f->r);
    do_call(&f->r, "GET", http_url(f, "/cl9"), NULL);
    assert_int_equal(f->r.result, IAS_HTTP_OK);
    assert_false(f->r.reused);
    ias_http_client_stats_get(f->client, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.idle, 2);

    rec_reset(&f->r);
    snprintf(url, sizeof(url), "unix:%s.missing:/cl", path);
    do_call(&f->r, "GET", url, NULL);
    assert_int_equal(f->r.result, IAS_HTTP_CONNECT_FAILED);
    assert_non_null(strstr(f->r.error, ".missing"));
    fx_free(f);
    fx_unix_cleanup(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length_and_keepalive),
        cmocka_unit_test(test_chunked_streaming_incremental),
        cmocka_unit_test(test_post_body_and_headers),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_connection_close_honoured),
        cmocka_unit_test(test_keepalive_disabled),
        cmocka_unit_test(test_read_until_close_not_reused),
        cmocka_unit_test(test_extra_bytes_not_reused),
        cmocka_unit_test(test_head_request),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_first_byte_timeout),
        cmocka_unit_test(test_idle_timeout_mid_body),
        cmocka_unit_test(test_total_timeout),
        cmocka_unit_test(test_server_dies_mid_stream),
        cmocka_unit_test(test_fresh_connection_closed_no_retry),
        cmocka_unit_test(test_stale_keepalive_retry),
        cmocka_unit_test(test_stale_retry_only_once),
        cmocka_unit_test(test_cancel_inside_on_body),
        cmocka_unit_test(test_cancel_from_outside),
        cmocka_unit_test(test_client_free_cancels),
        cmocka_unit_test(test_pause_resume_bounded),
        cmocka_unit_test(test_limits_and_protocol_errors),
        cmocka_unit_test(test_fetch),
        cmocka_unit_test(test_names_resolve),
        cmocka_unit_test(test_name_lookup_abandoned),
        cmocka_unit_test(test_pool_limits_and_expiry),
        cmocka_unit_test(test_idle_connection_closed_by_server),
        cmocka_unit_test(test_unix_socket),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
