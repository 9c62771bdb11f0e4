/* Starts real servers in-process on port 0 and talks to them over sockets. */
#include "testlib.h"

#include "ias/crypto.h"
#include "ias/http_server.h"
#include "ias/metrics.h"
#include "ias/query.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- client */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
    size_t max_read; /* per read(2); small = a slow reader */
    int read_delay_us;
} conn;

typedef struct {
    int status;
    char head[32768];
    char *body;
    size_t body_len;
    bool chunked;
} resp;

static int connect_port(int port, int rcvbuf)
{
    struct sockaddr_in sa;
    struct timeval tv = {20, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -errno;
    if (rcvbuf > 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static conn *conn_open_rcvbuf(int port, int rcvbuf)
{
    conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fd = connect_port(port, rcvbuf);
    assert_true(c->fd >= 0);
    c->cap = 65536;
    c->buf = malloc(c->cap);
    assert_non_null(c->buf);
    c->max_read = 65536;
    return c;
}

static conn *conn_open(int port)
{
    return conn_open_rcvbuf(port, 0);
}

static void conn_close(conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

static void conn_send(conn *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        data += n;
        len -= (size_t)n;
    }
}

static void conn_sends(conn *c, const char *s)
{
    conn_send(c, s, strlen(s));
}

/* Reads more bytes; 0 on EOF, -1 on error/timeout. */
static ssize_t conn_fill(conn *c)
{
    ssize_t n;
    size_t want = c->max_read;

    if (c->cap - c->len < want) {
        while (c->cap - c->len < want)
            c->cap *= 2;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    if (c->read_delay_us)
        usleep((useconds_t)c->read_delay_us);
    n = recv(c->fd, c->buf + c->len, want, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n < 0 ? -1 : n;
}

static void conn_consume(conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static bool head_value(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");

    while (p && p[2]) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e;
            while (*v == ' ')
                v++;
            e = strstr(v, "\r\n");
            if (!e)
                e = v + strlen(v);
            snprintf(out, outlen, "%.*s", (int)(e - v), v);
            return true;
        }
        p = strstr(p, "\r\n");
    }
    return false;
}

static const char *hdr(const resp *r, const char *name)
{
    static __thread char v[1024];
    return head_value(r->head, name, v, sizeof(v)) ? v : NULL;
}

static void resp_free(resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One response; 0 ok, -1 if the connection ended before a full response. */
static int read_response(conn *c, resp *r, bool head_request)
{
    char *end;
    char v[64];
    size_t hlen;

    memset(r, 0, sizeof(*r));
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        if (conn_fill(c) <= 0)
            return -1;
    }
    hlen = (size_t)(end - c->buf) + 4;
    assert_true(hlen < sizeof(r->head));
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    conn_consume(c, hlen);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    r->body = malloc(1);
    assert_non_null(r->body);
    if (head_request || r->status == 204 || r->status == 304) {
        r->body[0] = '\0';
        return 0;
    }
    if (head_value(r->head, "Transfer-Encoding", v, sizeof(v)) && strcasecmp(v, "chunked") == 0) {
        size_t body_cap = 1;

        r->chunked = true;
        for (;;) {
            char *eol;
            unsigned long sz;

            while (!(eol = memmem(c->buf, c->len, "\r\n", 2))) {
                if (conn_fill(c) <= 0)
                    return -1;
            }
            sz = strtoul(c->buf, NULL, 16);
            conn_consume(c, (size_t)(eol - c->buf) + 2);
            while (c->len < sz + 2) {
                if (conn_fill(c) <= 0)
                    return -1;
            }
            if (sz == 0) {
                conn_consume(c, 2);
                break;
            }
            if (r->body_len + sz + 1 > body_cap) {
                /* geometric growth: ASan's realloc always copies */
                while (r->body_len + sz + 1 > body_cap)
                    body_cap *= 2;
                r->body = realloc(r->body, body_cap);
                assert_non_null(r->body);
            }
            memcpy(r->body + r->body_len, c->buf, sz);
            r->body_len += sz;
            conn_consume(c, sz + 2);
        }
    } else if (head_value(r->head, "Content-Length", v, sizeof(v))) {
        size_t n = strtoul(v, NULL, 10);

        while (c->len < n) {
            if (conn_fill(c) <= 0)
                return -1;
        }
        r->body = realloc(r->body, n + 1);
        assert_non_null(r->body);
        memcpy(r->body, c->buf, n);
        r->body_len = n;
        conn_consume(c, n);
    } else {
        ssize_t n;
        while ((n = conn_fill(c)) > 0) {
        }
        r->body = realloc(r->body, c->len + 1);
        memcpy(r->body, c->buf, c->len);
        r->body_len = c->len;
        conn_consume(c, c->len);
    }
    r->body[r->body_len] = '\0';
    return 0;
}

/* Whole exchange on a fresh connection. */
static int request(int port, const char *raw, resp *r)
{
    conn *c = conn_open(port);
    int rc;

    conn_sends(c, raw);
    rc = read_response(c, r, strncmp(raw, "HEAD ", 5) == 0);
    conn_close(c);
    return rc;
}

static int get(int port, const char *path, resp *r)
{
    char raw[2048];

    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    return request(port, raw, r);
}

/* True once the connection is closed by the peer (EOF or reset) within ms. */
static bool peer_closed(conn *c, int ms)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    char b[4096];

    for (int waited = 0; waited < ms; waited += 10) {
        if (poll(&p, 1, 10) == 1) {
            ssize_t n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                return true;
        }
    }
    return false;
}

static void sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}

static bool wait_for(atomic_int *v, int want, int ms)
{
    for (int i = 0; i < ms; i++) {
        if (atomic_load(v) >= want)
            return true;
        sleep_ms(1);
    }
    return atomic_load(v) >= want;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static cJSON *body_json(const resp *r)
{
    cJSON *j = cJSON_Parse(r->body);
    assert_non_null(j);
    return j;
}

static const char *jstr(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* ---------------------------------------------------------------- server side */

/* Handlers run on worker threads, where a cmocka assertion cannot unwind. */
#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #x);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum {
    STREAM_CHUNK = 16 * 1024,
    STREAM_HIGH = 256 * 1024,
    STREAM_LOW = 64 * 1024,
    BIG_TOTAL = 50 * 1024 * 1024,
};

typedef struct {
    atomic_int ready_ok;
    atomic_int slow_started;
    atomic_int hang_started;
    atomic_int closes;  /* on_close calls, any handler */
    atomic_int late_rc; /* ias_reply result after close, + 100 */
    atomic_int late_done;
    atomic_int stream_started;
    atomic_int drains;
    atomic_long max_pending;
    atomic_int stream_done;
    atomic_int fini_calls;
    atomic_int init_calls;
    atomic_int fail_init;
} tctx;

static void h_echo(ias_req *r, void *ctx)
{
    cJSON *o = cJSON_CreateObject();
    char x[64];
    const char *id = ias_req_param(r, "id");

    cJSON_AddStringToObject(o, "id", id ? id : "");
    cJSON_AddStringToObject(o, "path", ias_req_path(r));
    cJSON_AddStringToObject(o, "method", ias_req_method(r));
    if (ias_query_get(ias_req_query(r), "x", x, sizeof(x)) == IAS_QUERY_FOUND)
        cJSON_AddStringToObject(o, "x", x);
    cJSON_AddStringToObject(o, "rid", ias_req_id(r));
    cJSON_AddStringToObject(o, "tp", ias_req_traceparent(r));
    cJSON_AddNumberToObject(o, "worker", ias_worker_index(ias_req_worker(r)));
    cJSON_AddStringToObject(o, "peer", ias_req_peer(r));
    cJSON_AddStringToObject(o, "target", ias_req_target(r));
    (void)ias_reply_json(r, 200, o);
    cJSON_Delete(o);
}

/* the request's header fields as "name=value;" in order */
static void h_headers(ias_req *r, void *ctx)
{
    char out[1024] = "";
    size_t n = ias_req_header_count(r), len = 0;
    const char *name, *value;

    for (size_t i = 0; i < n; i++) {
        CHECK(ias_req_header_at(r, i, &name, &value));
        len += (size_t)snprintf(out + len, sizeof(out) - len, "%s=%s;", name, value);
        CHECK(len < sizeof(out));
    }
    CHECK(!ias_req_header_at(r, n, &name, &value));
    (void)ias_reply(r, 200, "text/plain", out, len);
}

/* a stream cut after its first chunk (mockllm's cut-after fault) */
static void h_cut(ias_req *r, void *ctx)
{
    CHECK(ias_reply_stream_start(r, 200, "text/plain") == IAS_OK);
    CHECK(ias_reply_stream_chunk(r, "partial", 7) == IAS_OK);
    CHECK(ias_req_cut(r) == IAS_OK);
    CHECK(ias_reply_stream_end(r) == IAS_OK);
    CHECK(ias_req_cut(r) == IAS_ERR); /* the request ended */
}

static void h_rest(ias_req *r, void *ctx)
{
    const char *rest = ias_req_param(r, "rest");
    (void)ias_reply(r, 200, "text/plain", rest, strlen(rest));
}

static void h_json(ias_req *r, void *ctx)
{
    cJSON *j = ias_req_json(r);
    char out[64];

    if (!j)
        return; /* 400 already sent */
    snprintf(out, sizeof(out), "{\"keys\":%d}", cJSON_GetArraySize(j));
    (void)ias_reply_json_str(r, 200, out);
}

static void h_body(ias_req *r, void *ctx)
{
    size_t len = 0;
    const char *b = ias_req_body(r, &len);
    char out[64];

    CHECK(b[len] == '\0');
    snprintf(out, sizeof(out), "{\"len\":%zu}", len);
    (void)ias_reply_json_str(r, 200, out);
}

static void h_errors(ias_req *r, void *ctx)
{
    char which[32];

    if (ias_query_get(ias_req_query(r), "k", which, sizeof(which)) != IAS_QUERY_FOUND)
        strcpy(which, "");
    if (strcmp(which, "openai") == 0) {
        (void)ias_reply_openai_error(r, 404, "invalid_request_error", "model_not_found", "model",
                                     "model \"%s\" does not exist\n", "g\\pt");
    } else if (strcmp(which, "retry") == 0) {
        CHECK(ias_reply_retry_after(r, 7) == IAS_OK);
        (void)ias_reply_openai_error(r, 429, "requests", "rate_limit_exceeded", NULL, "slow down");
    } else if (strcmp(which, "badheader") == 0) {
        int rc = ias_reply_header(r, "X-Bad", "a\r\nInjected: yes");
        (void)ias_reply_json_str(r, rc == IAS_ERR ? 200 : 500, "{}");
    } else if (strcmp(which, "twice") == 0) {
        int a = ias_reply_json_str(r, 200, "{\"first\":true}");
        int b = ias_reply_json_str(r, 500, "{\"second\":true}");
        int c = ias_reply_header(r, "X-Late", "1");
        CHECK(a == IAS_OK && b == IAS_ERR && c == IAS_ERR);
    } else {
        (void)ias_reply_problem(r, 409, "org \"%s\" already exists", "acme");
    }
}

/* async: reply after 300 ms from a timer; the timer dies with the request */
typedef struct {
    struct event *ev;
    ias_req *r;
    tctx *t;
} slow_state;

static void slow_fire(evutil_socket_t fd, short what, void *arg)
{
    slow_state *s = arg;

    (void)ias_reply(s->r, 200, "text/plain", "slow done", 9);
    event_free(s->ev);
    free(s);
}

static void slow_close(ias_req *r, void *arg)
{
    slow_state *s = arg;

    atomic_fetch_add(&s->t->closes, 1);
    event_free(s->ev);
    free(s);
}

static void h_slow(ias_req *r, void *ctx)
{
    tctx *t = ctx;
    slow_state *s = calloc(1, sizeof(*s));
    long long ms = 300;
    struct timeval tv;

    CHECK(s);
    (void)ias_query_get_ll(ias_req_query(r), "ms", 1, 10000, &ms);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    s->r = r;
    s->t = t;
    s->ev = event_new(ias_req_base(r), -1, 0, slow_fire, s);
    CHECK(s->ev);
    event_add(s->ev, &tv);
    ias_req_on_close(r, slow_close, s);
    atomic_fetch_add(&t->slow_started, 1);
}

/* async with its own reference: the timer outlives a client close */
static void late_close(ias_req *r, void *arg)
{
    atomic_fetch_add(&((tctx *)arg)->closes, 1);
}

static void late_fire(evutil_socket_t fd, short what, void *arg)
{
    slow_state *s = arg;
    int rc = ias_reply(s->r, 200, "text/plain", "late", 4);

    atomic_store(&s->t->late_rc, rc + 100);
    CHECK(ias_req_closed(s->r));
    CHECK(ias_req_header_count(s->r) == 0);
    CHECK(ias_reply_stream_start(s->r, 200, "text/plain") == IAS_ERR);
    ias_req_release(s->r);
    event_free(s->ev);
    atomic_fetch_add(&s->t->late_done, 1);
    free(s);
}

static void h_late(ias_req *r, void *ctx)
{
    tctx *t = ctx;
    slow_state *s = calloc(1, sizeof(*s));
    struct timeval tv = {0, 400000};

    CHECK(s);
    s->r = r;
    s->t = t;
    ias_req_retain(r);
    s->ev = event_new(ias_req_base(r), -1, 0, late_fire, s);
    event_add(s->ev, &tv);
    ias_req_on_close(r, late_close, t);
    atomic_fetch_add(&t->hang_started, 1);
}

static void hang_close(ias_req *r, void *arg)
{
    atomic_fetch_add(&((tctx *)arg)->closes, 1);
}

static void h_hang(ias_req *r, void *ctx)
{
    tctx *t = ctx;

    ias_req_on_close(r, hang_close, t);
    atomic_fetch_add(&t->hang_started, 1);
}

/* streaming with backpressure */
typedef struct {
    tctx *t;
    size_t sent, total; /* total 0 = forever */
    unsigned char chunk[STREAM_CHUNK];
} stream_state;

static void note_pending(tctx *t, size_t p)
{
    long cur = atomic_load(&t->max_pending);
    while ((long)p > cur && !atomic_compare_exchange_weak(&t->max_pending, &cur, (long)p)) {
    }
}

static void stream_pump(ias_req *r, void *arg)
{
    stream_state *s = arg;

    while (s->total == 0 || s->sent < s->total) {
        size_t p = ias_reply_stream_pending(r);
        size_t n = STREAM_CHUNK;

        note_pending(s->t, p);
        if (p >= STREAM_HIGH) {
            atomic_fetch_add(&s->t->drains, 1);
            ias_reply_stream_on_drain(r, STREAM_LOW, stream_pump, s);
            return;
        }
        if (s->total && s->total - s->sent < n)
            n = s->total - s->sent;
        for (size_t i = 0; i < n; i++)
            s->chunk[i] = (unsigned char)((s->sent + i) % 251);
        if (ias_reply_stream_chunk(r, s->chunk, n) != IAS_OK)
            abort();
        s->sent += n;
        note_pending(s->t, ias_reply_stream_pending(r));
    }
    if (ias_reply_stream_end(r) != IAS_OK)
        abort();
    atomic_fetch_add(&s->t->stream_done, 1);
    free(s); /* on_close cannot fire after stream_end */
}

static void stream_close(ias_req *r, void *arg)
{
    stream_state *s = arg;

    atomic_fetch_add(&s->t->closes, 1);
    free(s);
}

static void h_stream(ias_req *r, void *ctx)
{
    tctx *t = ctx;
    stream_state *s = calloc(1, sizeof(*s));
    char q[32];

    CHECK(s);
    s->t = t;
    s->total = BIG_TOTAL;
    if (ias_query_get(ias_req_query(r), "forever", q, sizeof(q)) == IAS_QUERY_FOUND)
        s->total = 0;
    ias_req_on_close(r, stream_close, s);
    if (ias_reply_stream_start(r, 200, "application/octet-stream") != IAS_OK)
        abort();
    atomic_fetch_add(&t->stream_started, 1);
    stream_pump(r, s);
}

static int t_ready(void *ctx, ias_worker *w, char *why, size_t whylen)
{
    tctx *t = ctx;

    if (atomic_load(&t->ready_ok))
        return IAS_OK;
    snprintf(why, whylen, "database \"main\" unreachable");
    return IAS_ERR;
}

static int t_init(ias_worker *w, void *ctx)
{
    tctx *t = ctx;
    int *data = malloc(sizeof(int));

    CHECK(data);
    *data = ias_worker_index(w);
    ias_worker_set_data(w, data);
    CHECK(ias_worker_base(w));
    atomic_fetch_add(&t->init_calls, 1);
    if (atomic_load(&t->fail_init) && ias_worker_index(w) == 1) {
        free(data); /* no worker_fini after a failed init */
        ias_worker_set_data(w, NULL);
        return IAS_ERR;
    }
    return IAS_OK;
}

static void t_fini(ias_worker *w, void *ctx)
{
    tctx *t = ctx;

    free(ias_worker_data(w));
    ias_worker_set_data(w, NULL);
    atomic_fetch_add(&t->fini_calls, 1);
}

static void t_fini_only(ias_worker *w, void *ctx)
{
    atomic_fetch_add(&((tctx *)ctx)->fini_calls, 1);
}

static const ias_route routes[] = {
    {"GET", "/echo/{id}", h_echo},
    {"POST", "/echo/{id}", h_echo},
    {"GET", "/files/{*rest}", h_rest},
    {"POST", "/json", h_json},
    {"POST", "/body", h_body},
    {"GET", "/errors", h_errors},
    {"GET", "/slow", h_slow},
    {"GET", "/late", h_late},
    {"GET", "/hang", h_hang},
    {"GET", "/stream", h_stream},
    {"GET", "/v1/models/{id}", h_echo},
    {"GET", "/headers", h_headers},
    {"GET", "/cut", h_cut},
};

static tctx T;

static ias_server_opts base_opts(const char *service)
{
    ias_server_opts o;

    memset(&o, 0, sizeof(o));
    o.service = service;
    o.port = 0;
    o.workers = 1;
    o.routes = routes;
    o.nroutes = sizeof(routes) / sizeof(routes[0]);
    o.ctx = &T;
    o.worker_fini = t_fini_only;
    return o;
}

static ias_server *start(const ias_server_opts *o)
{
    ias_server *srv = ias_server_new(o);

    assert_non_null(srv);
    assert_int_equal(ias_server_start(srv), IAS_OK);
    assert_true(ias_server_port(srv) > 0);
    return srv;
}

static void finish(ias_server *srv)
{
    ias_server_stop(srv);
    ias_server_wait(srv);
    ias_server_free(srv);
}

static int setup(void **state)
{
    memset(&T, 0, sizeof(T));
    atomic_store(&T.ready_ok, 1);
    return 0;
}

/* ---------------------------------------------------------------- tests */

static void test_routing(void **state)
{
    ias_server_opts o = base_opts("t_routing");
    ias_server *srv = start(&o);
    resp r;
    cJSON *j;
    int port;

    port = ias_server_port(srv);

    assert_int_equal(get(port, "/echo/abc?x=hello+w%21&y=2", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    j = body_json(&r);
    assert_string_equal(jstr(j, "id"), "abc");
    assert_string_equal(jstr(j, "x"), "hello w!");
    assert_string_equal(jstr(j, "path"), "/echo/abc");
    assert_string_equal(jstr(j, "peer"), "127.0.0.1");
    cJSON_Delete(j);
    resp_free(&r);

    /* percent-decoded parameter, encoded slash kept inside */
    assert_int_equal(get(port, "/echo/a%20b%2Fc", &r), 0);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "id"), "a b/c");
    assert_string_equal(jstr(j, "path"), "/echo/a b/c");
    cJSON_Delete(j);
    resp_free(&r);

    /* trailing {*rest} */
    assert_int_equal(get(port, "/files/dir/sub/f.txt", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "dir/sub/f.txt");
    resp_free(&r);
    assert_int_equal(get(port, "/files", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");
    resp_free(&r);

    /* 404 in RFC 7807 shape */
    assert_int_equal(get(port, "/nope", &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(hdr(&r, "Content-Type"), "application/problem+json");
    j = body_json(&r);
    assert_string_equal(jstr(j, "type"), "about:blank");
    assert_string_equal(jstr(j, "title"), "Not Found");
    assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 404);
    assert_string_equal(jstr(j, "instance"), "/nope");
    assert_string_equal(jstr(j, "request_id"), hdr(&r, "X-Request-Id"));
    assert_non_null(strstr(jstr(j, "detail"), "/nope"));
    cJSON_Delete(j);
    resp_free(&r);

    /* 405 with Allow */
    assert_int_equal(request(port, "DELETE /echo/1 HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD, POST");
    resp_free(&r);
    assert_int_equal(request(port, "POST /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(hdr(&r, "Allow"), "GET, HEAD");
    resp_free(&r);

    /* HEAD answered by the GET route: length, no body */
    assert_int_equal(request(port, "HEAD /echo/1 HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(atoi(hdr(&r, "Content-Length")) > 10);
    resp_free(&r);

    /* malformed escape in the path: 400 */
    assert_int_equal(get(port, "/echo/%zz", &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);

    /* methods the server does not serve: 501 in the JSON shape */
    assert_int_equal(request(port, "TRACE /echo/1 HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 501);
    assert_string_equal(hdr(&r, "Content-Type"), "application/problem+json");
    j = body_json(&r);
    assert_string_equal(jstr(j, "title"), "Not Implemented");
    assert_string_equal(jstr(j, "instance"), "/echo/1");
    cJSON_Delete(j);
    resp_free(&r);
    finish(srv);
    assert_int_equal(atomic_load(&T.fini_calls), 1);
}

static void test_openai_shape(void **state)
{
    ias_server_opts o = base_opts("t_openai");
    ias_server *srv;
    resp r;
    cJSON *j, *e;
    int port;

    o.openai_path_prefix = "/v1/";
    srv = start(&o);
    port = ias_server_port(srv);

    /* under the prefix: OpenAI shape */
    assert_int_equal(get(port, "/v1/nothing", &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    j = body_json(&r);
    e = cJSON_GetObjectItem(j, "error");
    assert_non_null(e);
    assert_string_equal(jstr(e, "type"), "invalid_request_error");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "param")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(e, "code")));
    cJSON_Delete(j);
    resp_free(&r);
    /* elsewhere: problem+json */
    assert_int_equal(get(port, "/api/nothing", &r), 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(hdr(&r, "Content-Type"), "application/problem+json");
    resp_free(&r);

    /* explicit helpers, with escaping */
    assert_int_equal(get(port, "/errors?k=openai", &r), 0);
    assert_int_equal(r.status, 404);
    j = body_json(&r);
    e = cJSON_GetObjectItem(j, "error");
    assert_string_equal(jstr(e, "message"), "model \"g\\pt\" does not exist\n");
    assert_string_equal(jstr(e, "code"), "model_not_found");
    assert_string_equal(jstr(e, "param"), "model");
    cJSON_Delete(j);
    resp_free(&r);

    assert_int_equal(get(port, "/errors?k=retry", &r), 0);
    assert_int_equal(r.status, 429);
    assert_string_equal(hdr(&r, "Retry-After"), "7");
    resp_free(&r);

    assert_int_equal(get(port, "/errors?k=problem", &r), 0);
    assert_int_equal(r.status, 409);
    j = body_json(&r);
    assert_string_equal(jstr(j, "title"), "Conflict");
    assert_string_equal(jstr(j, "detail"), "org \"acme\" already exists");
    assert_string_equal(jstr(j, "instance"), "/errors");
    cJSON_Delete(j);
    resp_free(&r);

    assert_int_equal(get(port, "/errors?k=badheader", &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(hdr(&r, "Injected"));
    resp_free(&r);

    assert_int_equal(get(port, "/errors?k=twice", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"first\":true}");
    assert_null(hdr(&r, "X-Late"));
    resp_free(&r);
    finish(srv);

    /* openai_errors for the whole server */
    o = base_opts("t_openai2");
    o.openai_errors = true;
    srv = start(&o);
    assert_int_equal(get(ias_server_port(srv), "/api/nothing", &r), 0);
    assert_int_equal(r.status, 404);
    j = body_json(&r);
    assert_non_null(cJSON_GetObjectItem(j, "error"));
    cJSON_Delete(j);
    resp_free(&r);
    finish(srv);
}

static void test_json_and_body(void **state)
{
    ias_server_opts o = base_opts("t_json");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv);
    resp r;
    cJSON *j;

    assert_int_equal(request(port,
                             "POST /json HTTP/1.1\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 14\r\n\r\n{\"a\":1,\"b\":[]}",
                             &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"keys\":2}");
    resp_free(&r);

    assert_int_equal(
        request(port, "POST /json HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"a\":1,]}", &r), 0);
    assert_int_equal(r.status, 400);
    j = body_json(&r);
    assert_non_null(
        strstr(jstr(j, "detail"), "invalid JSON at byte 8")); /* cJSON: where it stopped */
    cJSON_Delete(j);
    resp_free(&r);

    assert_int_equal(request(port, "POST /json HTTP/1.1\r\nContent-Length: 7\r\n\r\n[1,2,3]", &r),
                     0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "JSON object"));
    resp_free(&r);

    assert_int_equal(
        request(port, "POST /json HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\":1} xx", &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);

    assert_int_equal(request(port, "POST /json HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "invalid JSON"));
    resp_free(&r);

    /* a chunked request body arrives whole */
    assert_int_equal(request(port,
                             "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
                             &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"len\":7}");
    resp_free(&r);
    finish(srv);
}

static void test_limits(void **state)
{
    ias_server_opts o = base_opts("t_limits");
    ias_server *srv;
    int port;
    resp r;
    cJSON *j;
    conn *c;
    char *big;
    size_t n;

    o.max_header_bytes = 4096;
    o.max_body_bytes = 64 * 1024;
    srv = start(&o);
    port = ias_server_port(srv);

    /* body over the limit (Content-Length): 413, then the server still works */
    n = 100 * 1024;
    big = malloc(n + 256);
    assert_non_null(big);
    c = conn_open(port);
    snprintf(big, 256, "POST /body HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    conn_sends(c, big);
    memset(big, 'x', n);
    conn_send(c, big, n);
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    conn_close(c);

    /* announced but refused before sending (Expect: 100-continue) */
    c = conn_open(port);
    conn_sends(c, "POST /body HTTP/1.1\r\nContent-Length: 200000\r\nExpect: 100-continue\r\n\r\n");
    conn_send(c, big, 100 * 1024);
    conn_send(c, big, 200000 - 100 * 1024);
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    conn_close(c);

    /* chunked body over the limit */
    c = conn_open(port);
    conn_sends(c, "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    conn_close(c);

    /* just under the limit is fine */
    c = conn_open(port);
    snprintf(big, 256, "POST /body HTTP/1.1\r\nContent-Length: %d\r\n\r\n", 64 * 1024);
    conn_sends(c, big);
    memset(big, 'y', 64 * 1024);
    conn_send(c, big, 64 * 1024);
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"len\":65536}");
    resp_free(&r);
    conn_close(c);

    /* headers over the limit: 431 in the JSON shape, then the connection closes */
    c = conn_open(port);
    conn_sends(c, "GET /echo/1 HTTP/1.1\r\nX-Big: ");
    memset(big, 'h', 8192);
    conn_send(c, big, 8192);
    conn_sends(c, "\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 431);
    assert_string_equal(hdr(&r, "Content-Type"), "application/problem+json");
    assert_string_equal(hdr(&r, "Connection"), "close");
    j = body_json(&r);
    assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 431);
    assert_string_equal(jstr(j, "instance"), "/echo/1");
    cJSON_Delete(j);
    resp_free(&r);
    assert_true(peer_closed(c, 2000));
    conn_close(c);

    free(big);
    assert_int_equal(get(port, "/echo/still-alive", &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    finish(srv);
}

static void test_keepalive_and_pipelining(void **state)
{
    ias_server_opts o = base_opts("t_keepalive");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv);
    conn *c = conn_open(port);
    resp r;
    char ids[3][80];

    for (int i = 0; i < 3; i++) {
        conn_sends(c, "GET /echo/k HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_int_equal(read_response(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_null(hdr(&r, "Connection"));
        snprintf(ids[i], sizeof(ids[i]), "%s", hdr(&r, "X-Request-Id"));
        resp_free(&r);
    }
    assert_string_not_equal(ids[0], ids[1]);
    assert_string_not_equal(ids[1], ids[2]);

    /* two requests in one write, the first one async */
    conn_sends(c, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /files/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "slow done");
    resp_free(&r);
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "x");
    resp_free(&r);

    /* Connection: close is honoured */
    conn_sends(c, "GET /echo/k HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Connection"), "close");
    resp_free(&r);
    assert_true(peer_closed(c, 2000));
    conn_close(c);
    finish(srv);
}

/* Every server socket on the port, listening and accepted, has Nagle off: a
 * reply's tail (past bufferevent's 16 KiB single write, or a stream's next
 * small chunk) must not wait for the client's delayed ACK. The server runs in
 * this process, so its sockets are among our own descriptors. */
static void test_nodelay(void **state)
{
    ias_server_opts o = base_opts("t_nodelay");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv), listening = 0, accepted = 0;
    conn *c = conn_open(port);
    resp r;
    DIR *d;
    struct dirent *e;

    (void)state;
    conn_sends(c, "GET /echo/k HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0); /* the server has accepted */
    resp_free(&r);
    d = opendir("/proc/self/fd");
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name), on = 0, acc = 0;
        struct stat st;
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa), ilen = sizeof(int);

        if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            continue;
        if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 || sa.sin_family != AF_INET ||
            ntohs(sa.sin_port) != port)
            continue; /* not the server's (our client's local port differs) */
        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &ilen), 0);
        ilen = sizeof(int);
        assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ilen), 0);
        assert_true(on != 0);
        if (acc)
            listening++;
        else
            accepted++;
    }
    closedir(d);
    assert_true(listening >= 1);
    assert_true(accepted >= 1);
    conn_close(c);
    finish(srv);
}

static void test_workers(void **state)
{
    ias_server_opts o = base_opts("t_workers");
    ias_server *srv;
    int port;
    bool seen[2] = {false, false};

    o.workers = 2;
    o.worker_init = t_init;
    o.worker_fini = t_fini;
    srv = start(&o);
    assert_int_equal(atomic_load(&T.init_calls), 2);
    port = ias_server_port(srv);
    for (int i = 0; i < 64 && !(seen[0] && seen[1]); i++) {
        resp r;
        cJSON *j;
        int w;

        assert_int_equal(get(port, "/echo/w", &r), 0);
        assert_int_equal(r.status, 200);
        j = body_json(&r);
        w = cJSON_GetObjectItem(j, "worker")->valueint;
        assert_true(w == 0 || w == 1);
        seen[w] = true;
        cJSON_Delete(j);
        resp_free(&r);
    }
    assert_true(seen[0] && seen[1]);
    finish(srv);
    assert_int_equal(atomic_load(&T.fini_calls), 2);
}

static void test_worker_init_failure(void **state)
{
    ias_server_opts o = base_opts("t_initfail");
    ias_server *srv;

    o.workers = 2;
    o.worker_init = t_init;
    o.worker_fini = t_fini;
    atomic_store(&T.fail_init, 1);
    srv = ias_server_new(&o);
    assert_non_null(srv);
    assert_int_equal(ias_server_start(srv), IAS_ERR);
    /* the worker whose init succeeded was finalised; the failed one was not */
    assert_int_equal(atomic_load(&T.init_calls), 2);
    assert_int_equal(atomic_load(&T.fini_calls), 1);
    ias_server_free(srv);

    /* an invalid route table is refused up front */
    {
        static const ias_route bad[] = {{"GET", "/a/{*rest}/b", h_echo}};
        o.routes = bad;
        o.nroutes = 1;
        assert_null(ias_server_new(&o));
    }
}

static void test_request_id_and_traceparent(void **state)
{
    ias_server_opts o = base_opts("t_ids");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv);
    const char *in_tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    char raw[1024];
    resp r;
    cJSON *j;
    const char *tp;

    snprintf(raw, sizeof(raw),
             "GET /echo/1 HTTP/1.1\r\nX-Request-Id: abc.DEF_123-x\r\ntraceparent: %s\r\n\r\n",
             in_tp);
    assert_int_equal(request(port, raw, &r), 0);
    assert_string_equal(hdr(&r, "X-Request-Id"), "abc.DEF_123-x");
    j = body_json(&r);
    assert_string_equal(jstr(j, "rid"), "abc.DEF_123-x");
    tp = jstr(j, "tp");
    assert_int_equal(strlen(tp), 55);
    /* same trace, new span, same flags */
    assert_memory_equal(tp, in_tp, 36);
    assert_memory_not_equal(tp + 36, in_tp + 36, 16);
    assert_string_equal(tp + 52, "-01");
    cJSON_Delete(j);
    resp_free(&r);

    /* invalid ids and traceparents are replaced */
    const char *bad_ids[] = {"has space", "semi;colon", "",
                             "0123456789012345678901234567890123456789012345678901234567890123x"};
    const char *bad_tps[] = {"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                             "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                             "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                             "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "garbage"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(raw, sizeof(raw),
                 "GET /echo/1 HTTP/1.1\r\nX-Request-Id: %s\r\ntraceparent: %s\r\n\r\n", bad_ids[i],
                 bad_tps[i]);
        assert_int_equal(request(port, raw, &r), 0);
        assert_int_equal(r.status, 200);
        assert_true(ias_uuid_valid(hdr(&r, "X-Request-Id")));
        j = body_json(&r);
        tp = jstr(j, "tp");
        assert_int_equal(strlen(tp), 55);
        assert_memory_equal(tp, "00-", 3);
        assert_memory_not_equal(tp + 3, bad_tps[0] + 3, 32);
        assert_memory_not_equal(tp + 3, in_tp + 3, 32);
        cJSON_Delete(j);
        resp_free(&r);
    }
    /* the 64-character maximum is kept */
    snprintf(raw, sizeof(raw), "GET /echo/1 HTTP/1.1\r\nX-Request-Id: %.64s\r\n\r\n", bad_ids[3]);
    assert_int_equal(request(port, raw, &r), 0);
    assert_int_equal(strlen(hdr(&r, "X-Request-Id")), 64);
    resp_free(&r);
    /* errors answered by the server carry it too */
    assert_int_equal(request(port, "GET /nope HTTP/1.1\r\nX-Request-Id: rid-404\r\n\r\n", &r), 0);
    assert_string_equal(hdr(&r, "X-Request-Id"), "rid-404");
    resp_free(&r);
    finish(srv);
}

static void test_access_log(void **state)
{
    ias_server_opts o = base_opts("t_log");
    ias_server *srv = start(&o);
    char path[] = "/tmp/ias-http-log-XXXXXX";
    int fd = mkstemp(path);
    char buf[8192];
    ssize_t n;
    resp r;

    assert_true(fd >= 0);
    unlink(path);
    ias_log_init("test_http_server", IAS_LOG_INFO);
    ias_log_set_fd(fd);
    assert_int_equal(request(ias_server_port(srv),
                             "GET /echo/7 HTTP/1.1\r\nX-Request-Id: log-rid-1\r\n"
                             "Authorization: Bearer sk-supersecret-value\r\n\r\n",
                             &r),
                     0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    finish(srv); /* the line is written when the reply completes: after this for sure */
    ias_log_set_fd(-1);
    ias_log_init("test_http_server", IAS_LOG_WARN);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    close(fd);
    assert_non_null(strstr(buf, "route=/echo/{id}"));
    assert_non_null(strstr(buf, "method=GET"));
    assert_non_null(strstr(buf, "status=200"));
    assert_non_null(strstr(buf, "duration_ms="));
    assert_non_null(strstr(buf, "\"request_id\":\"log-rid-1\""));
    assert_non_null(strstr(buf, "\"traceparent\":\"00-"));
    assert_null(strstr(buf, "supersecret"));
}

static void test_builtins(void **state)
{
    ias_server_opts o = base_opts("t_builtins");
    ias_server *srv;
    int port;
    resp r;
    cJSON *j;

    o.ready = t_ready;
    srv = start(&o);
    port = ias_server_port(srv);

    assert_int_equal(get(port, "/health", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    resp_free(&r);

    assert_int_equal(get(port, "/ready", &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    atomic_store(&T.ready_ok, 0);
    assert_int_equal(get(port, "/ready", &r), 0);
    assert_int_equal(r.status, 503);
    j = body_json(&r);
    assert_string_equal(jstr(j, "reason"), "database \"main\" unreachable");
    cJSON_Delete(j);
    resp_free(&r);
    atomic_store(&T.ready_ok, 1);

    assert_int_equal(get(port, "/echo/m", &r), 0);
    resp_free(&r);
    assert_int_equal(get(port, "/nowhere/at/all", &r), 0);
    resp_free(&r);
    assert_int_equal(get(port, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "ias_http_requests_total{service=\"t_builtins\",route=\"/echo/"
                                   "{id}\",method=\"GET\",status=\"200\"} 1\n"));
    assert_non_null(strstr(r.body, "route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"));
    assert_non_null(strstr(r.body, "route=\"/ready\",method=\"GET\",status=\"503\"} 1\n"));
    assert_non_null(strstr(r.body, "ias_http_request_duration_seconds_count{service=\"t_builtins\","
                                   "route=\"/echo/{id}\"} 1\n"));
    /* this very request is in flight while the page renders */
    assert_non_null(strstr(r.body, "ias_http_inflight{service=\"t_builtins\"} 1\n"));
    resp_free(&r);
    finish(srv);
}

static void test_async_close_detected(void **state)
{
    ias_server_opts o = base_opts("t_asyncclose");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv);
    conn *c;
    resp r;

    /* a handler waiting async notices the client leaving */
    c = conn_open(port);
    conn_sends(c, "GET /hang HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&T.hang_started, 1, 2000));
    conn_close(c);
    assert_true(wait_for(&T.closes, 1, 2000));

    /* with its own reference, a late reply is a harmless no-op */
    c = conn_open(port);
    conn_sends(c, "GET /late HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&T.hang_started, 2, 2000));
    conn_close(c);
    assert_true(wait_for(&T.closes, 2, 2000));
    assert_true(wait_for(&T.late_done, 1, 2000));
    assert_int_equal(atomic_load(&T.late_rc), IAS_ERR + 100);

    /* a slow handler whose client stays gets its reply; its client leaving frees the timer */
    assert_int_equal(get(port, "/slow", &r), 0);
    assert_string_equal(r.body, "slow done");
    resp_free(&r);
    c = conn_open(port);
    conn_sends(c, "GET /slow HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&T.slow_started, 2, 2000));
    conn_close(c);
    assert_true(wait_for(&T.closes, 3, 2000));
    sleep_ms(400); /* past the timer: it must not fire */
    assert_int_equal(atomic_load(&T.closes), 3);

    assert_int_equal(get(port, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "ias_http_inflight{service=\"t_asyncclose\"} 1\n"));
    assert_non_null(strstr(r.body, "route=\"/hang\",method=\"GET\",status=\"499\"} 1\n"));
    resp_free(&r);
    finish(srv);
}

static void test_stream_backpressure(void **state)
{
    ias_server_opts o = base_opts("t_stream");
    ias_server *srv = start(&o);
    conn *c = conn_open_rcvbuf(ias_server_port(srv), 32 * 1024);
    resp r;
    long maxp;

    conn_sends(c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(wait_for(&T.stream_started, 1, 2000));
    sleep_ms(300); /* let the server hit its high-water mark */
    c->max_read = 16 * 1024;
    c->read_delay_us = 50;
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_int_equal(r.body_len, BIG_TOTAL);
    for (size_t i = 0; i < r.body_len; i += 4093)
        assert_int_equal((unsigned char)r.body[i], i % 251);
    resp_free(&r);
    assert_true(wait_for(&T.stream_done, 1, 2000));
    maxp = atomic_load(&T.max_pending);
    fprintf(stderr, "stream: max pending %ld bytes, %d drain waits\n", maxp,
            atomic_load(&T.drains));
    assert_true(atomic_load(&T.drains) > 10);
    /* high-water + one chunk + chunk framing */
    assert_true(maxp <= STREAM_HIGH + STREAM_CHUNK + 16);
    assert_true(maxp >= STREAM_HIGH);
    assert_int_equal(atomic_load(&T.closes), 0);

    /* the connection is reusable after the stream */
    c->read_delay_us = 0;
    c->max_read = 65536;
    conn_sends(c, "GET /echo/after HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    conn_close(c);
    finish(srv);
}

static void test_stream_client_disconnect(void **state)
{
    ias_server_opts o = base_opts("t_streamclose");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv);
    conn *c = conn_open(port);
    resp r;
    size_t got = 0;

    conn_sends(c, "GET /stream?forever=1 HTTP/1.1\r\n\r\n");
    while (got < 2 * 1024 * 1024) {
        ssize_t n = conn_fill(c);
        assert_true(n > 0);
        got += (size_t)n;
        c->len = 0;
    }
    conn_close(c);
    assert_true(wait_for(&T.closes, 1, 3000));
    sleep_ms(200);
    assert_int_equal(atomic_load(&T.closes), 1);
    assert_int_equal(atomic_load(&T.stream_done), 0);

    assert_int_equal(get(port, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "ias_http_inflight{service=\"t_streamclose\"} 1\n"));
    assert_non_null(strstr(r.body, "route=\"/stream\",method=\"GET\",status=\"200\"} 1\n"));
    resp_free(&r);
    finish(srv);
}

static void test_drain_graceful(void **state)
{
    ias_server_opts o = base_opts("t_drain");
    ias_server *srv;
    int port, fd = 0;
    conn *idle, *slow;
    resp r;
    uint64_t t0;

    o.drain_timeout_ms = 5000;
    srv = start(&o);
    port = ias_server_port(srv);

    idle = conn_open(port);
    conn_sends(idle, "GET /health HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(idle, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    slow = conn_open(port);
    conn_sends(slow, "GET /slow?ms=1000 HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&T.slow_started, 1, 2000));

    t0 = mono_ms();
    ias_server_stop(srv);
    assert_true(ias_server_draining(srv));
    /* new connections are refused once the listener is closed */
    for (int i = 0; i < 200; i++) {
        fd = connect_port(port, 0);
        if (fd < 0)
            break;
        close(fd);
        sleep_ms(5);
    }
    /* refused, or reset when the SYN raced the listener's close */
    assert_true(fd == -ECONNREFUSED || fd == -ECONNRESET);

    /* an existing keep-alive connection sees /ready fail and is told to close */
    conn_sends(idle, "GET /ready HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(idle, &r, false), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "draining"));
    assert_string_equal(hdr(&r, "Connection"), "close");
    resp_free(&r);
    assert_true(peer_closed(idle, 2000));

    /* the in-flight request completes normally */
    assert_int_equal(read_response(slow, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "slow done");
    assert_string_equal(hdr(&r, "Connection"), "close");
    resp_free(&r);

    ias_server_wait(srv);
    assert_true(mono_ms() - t0 >= 900);
    assert_true(mono_ms() - t0 < 3000);
    assert_int_equal(atomic_load(&T.closes), 0);
    assert_int_equal(atomic_load(&T.fini_calls), 1);
    ias_server_free(srv);
    conn_close(idle);
    conn_close(slow);
}

static void test_drain_deadline(void **state)
{
    ias_server_opts o = base_opts("t_deadline");
    ias_server *srv;
    conn *c, *s;
    resp r;
    uint64_t t0, dt;

    o.drain_timeout_ms = 300;
    o.workers = 2;
    srv = start(&o);
    c = conn_open(ias_server_port(srv));
    conn_sends(c, "GET /hang HTTP/1.1\r\n\r\n");
    s = conn_open(ias_server_port(srv));
    conn_sends(s, "GET /stream?forever=1 HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&T.hang_started, 1, 2000));
    assert_true(wait_for(&T.stream_started, 1, 2000));
    t0 = mono_ms();
    ias_server_stop(srv);
    ias_server_wait(srv);
    dt = mono_ms() - t0;
    assert_true(dt >= 280);
    assert_true(dt < 3000);
    /* both were cut: on_close once each, no reply for the hanging one */
    assert_int_equal(atomic_load(&T.closes), 2);
    assert_int_equal(read_response(c, &r, false), -1);
    ias_server_free(srv);
    conn_close(c);
    conn_close(s);
}

static void test_sigterm(void **state)
{
    ias_server_opts o = base_opts("t_sigterm");
    ias_server *srv;
    uint64_t t0;

    o.handle_signals = true;
    o.workers = 2;
    srv = start(&o);
    t0 = mono_ms();
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    ias_server_wait(srv);
    assert_true(ias_server_draining(srv));
    assert_true(mono_ms() - t0 < 3000);
    assert_int_equal(atomic_load(&T.fini_calls), 2);
    ias_server_free(srv);
}

static void test_timeouts(void **state)
{
    ias_server_opts o = base_opts("t_timeouts");
    ias_server *srv;
    int port;
    conn *c;
    resp r;

    o.read_timeout_ms = 300;
    srv = start(&o);
    port = ias_server_port(srv);

    /* an async handler may take longer than the read timeout */
    c = conn_open(port);
    conn_sends(c, "GET /slow?ms=900 HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* ... and the connection's idle timeout is back afterwards */
    assert_true(peer_closed(c, 2000));
    conn_close(c);

    /* a client that never finishes its request is dropped without a reply */
    c = conn_open(port);
    conn_sends(c, "GET /echo/1 HTTP/1.1\r\nX-Partial: ");
    assert_true(peer_closed(c, 2000));
    conn_close(c);
    finish(srv);
}

/* ---------------------------------------------------------------- protocol */

static void test_protocol_framing(void **state)
{
    ias_server_opts o = base_opts("t_framing");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv);
    conn *c;
    resp r;
    cJSON *j;
    char line[64];

    /* bare LF line ends */
    assert_int_equal(request(port, "GET /echo/lf?x=1 HTTP/1.1\nHost: t\n\n", &r), 0);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(jstr(j, "id"), "lf");
    assert_string_equal(jstr(j, "target"), "/echo/lf?x=1");
    cJSON_Delete(j);
    resp_free(&r);

    /* header fields in order, names as sent, values trimmed */
    assert_int_equal(
        request(port, "GET /headers HTTP/1.1\r\nHost: t\r\nX-One:  a b \r\nx-two:\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Host=t;X-One=a b;x-two=;");
    resp_free(&r);

    /* a chunked body in pieces, with an extension and a trailer */
    c = conn_open(port);
    conn_sends(c, "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel");
    sleep_ms(20);
    conn_sends(c, "lo\r\n0");
    sleep_ms(20);
    conn_sends(c, "\r\nX-Trailer: yes\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"len\":5}");
    resp_free(&r);
    /* the connection is reused after a chunked body */
    conn_sends(c, "GET /echo/next HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    conn_close(c);

    /* Expect: 100-continue: the 100 comes before the body is sent */
    c = conn_open(port);
    conn_sends(c, "POST /body HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    while (c->len < 25)
        assert_true(conn_fill(c) > 0);
    assert_memory_equal(c->buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    conn_consume(c, 25);
    conn_sends(c, "abcd");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"len\":4}");
    resp_free(&r);
    conn_close(c);
    /* any other expectation: 417 */
    assert_int_equal(
        request(port, "POST /body HTTP/1.1\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx", &r), 0);
    assert_int_equal(r.status, 417);
    resp_free(&r);

    /* pipelining: many requests in one write (bodies too), answered in order */
    {
        char buf[16384];
        size_t len = 0;

        for (int i = 0; i < 40; i++)
            len +=
                (size_t)snprintf(buf + len, sizeof(buf) - len,
                                 i % 2 ? "GET /echo/p%d HTTP/1.1\r\n\r\n"
                                       : "POST /echo/p%d HTTP/1.1\r\nContent-Length: 2\r\n\r\nxy",
                                 i);
        c = conn_open(port);
        conn_send(c, buf, len);
        for (int i = 0; i < 40; i++) {
            assert_int_equal(read_response(c, &r, false), 0);
            assert_int_equal(r.status, 200);
            j = body_json(&r);
            snprintf(line, sizeof(line), "p%d", i);
            assert_string_equal(jstr(j, "id"), line);
            cJSON_Delete(j);
            resp_free(&r);
        }
        conn_close(c);
    }

    /* HTTP/1.0: closed after the reply unless it asks for keep-alive */
    c = conn_open(port);
    conn_sends(c, "GET /echo/old HTTP/1.0\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Connection"), "close");
    resp_free(&r);
    assert_true(peer_closed(c, 2000));
    conn_close(c);
    c = conn_open(port);
    for (int i = 0; i < 2; i++) {
        conn_sends(c, "GET /echo/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_int_equal(read_response(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(hdr(&r, "Connection"), "keep-alive");
        resp_free(&r);
    }
    conn_close(c);

    /* malformed requests: 400 in the JSON shape, connection closed */
    {
        static const char *const bad[] = {
            "GET /echo/1 HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", /* obs-fold */
            "GET /echo/1 HTTP/1.1\r\nX-A : 1\r\n\r\n",           /* space before ':' */
            "GET /echo/1 HTTP/1.1\r\nX-A: a\rb\r\n\r\n",         /* bare CR */
            "GET /echo/1 HTTP/1.1\r\nX-A: a\x01\r\n\r\n",        /* control byte */
            "GET echo HTTP/1.1\r\n\r\n",                         /* not origin-form */
            "GET /echo/1 HTTP/1.1 extra\r\n\r\n",                /* request line */
            "POST /body HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
            "POST /body HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "POST /body HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            c = conn_open(port);
            conn_sends(c, bad[i]);
            assert_int_equal(read_response(c, &r, false), 0);
            if (r.status != 400)
                fprintf(stderr, "case %zu: %d\n", i, r.status);
            assert_int_equal(r.status, 400);
            assert_string_equal(hdr(&r, "Content-Type"), "application/problem+json");
            resp_free(&r);
            assert_true(peer_closed(c, 2000));
            conn_close(c);
        }
    }
    /* agreeing repeated lengths are one length */
    assert_int_equal(
        request(port, "POST /body HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
                &r),
        0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"len\":2}");
    resp_free(&r);
    /* unknown coding, HTTP/2 request line */
    assert_int_equal(
        request(port, "POST /body HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 501);
    resp_free(&r);
    assert_int_equal(request(port, "GET /echo/1 HTTP/2.0\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 505);
    resp_free(&r);

    /* the server's own answers are counted on "unmatched" */
    assert_int_equal(get(port, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "route=\"unmatched\",method=\"GET\",status=\"400\"}"));
    assert_non_null(strstr(r.body, "route=\"unmatched\",method=\"POST\",status=\"501\"}"));
    resp_free(&r);
    finish(srv);
}

static void test_protocol_limits(void **state)
{
    ias_server_opts o = base_opts("t_plimits");
    ias_server *srv;
    int port;
    conn *c;
    resp r;
    cJSON *j;
    char buf[256];

    o.max_header_bytes = 2048;
    o.max_body_bytes = 1000;
    o.openai_path_prefix = "/v1/";
    srv = start(&o);
    port = ias_server_port(srv);

    /* a chunked body that grows past the limit in small chunks: 413 */
    c = conn_open(port);
    conn_sends(c, "POST /body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    memset(buf, 'z', 200);
    for (int i = 0; i < 6; i++) {
        conn_sends(c, "c8\r\n");
        conn_send(c, buf, 200);
        conn_sends(c, "\r\n");
    }
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(hdr(&r, "Content-Type"), "application/problem+json");
    resp_free(&r);
    assert_true(peer_closed(c, 2000));
    conn_close(c);

    /* under the OpenAI prefix the limits answer in the OpenAI shape */
    c = conn_open(port);
    conn_sends(c, "GET /v1/models/x HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 12; i++)
        conn_send(c, buf, 200);
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 431);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    j = body_json(&r);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "type"), "invalid_request_error");
    cJSON_Delete(j);
    resp_free(&r);
    conn_close(c);
    assert_int_equal(
        request(port, "POST /v1/models/x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", &r), 0);
    assert_int_equal(r.status, 413);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    resp_free(&r);

    assert_int_equal(get(port, "/echo/still-alive", &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    finish(srv);
}

static void test_half_close(void **state)
{
    ias_server_opts o = base_opts("t_halfclose");
    ias_server *srv = start(&o);
    int port = ias_server_port(srv);
    conn *c;
    resp r;

    /* shutting the write side while the handler waits: the client is gone */
    c = conn_open(port);
    conn_sends(c, "GET /hang HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&T.hang_started, 1, 2000));
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    assert_true(wait_for(&T.closes, 1, 2000));
    assert_true(peer_closed(c, 2000));
    conn_close(c);

    /* a synchronous answer to a request sent with the half-close still arrives */
    c = conn_open(port);
    conn_sends(c, "GET /echo/hc HTTP/1.1\r\n\r\n");
    assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
    assert_int_equal(read_response(c, &r, false), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_true(peer_closed(c, 2000));
    conn_close(c);
    assert_int_equal(atomic_load(&T.closes), 1);

    /* ias_req_cut: the client gets what was written, then EOF mid-body */
    c = conn_open(port);
    conn_sends(c, "GET /cut HTTP/1.1\r\n\r\n");
    assert_int_equal(read_response(c, &r, false), -1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 7);
    assert_memory_equal(r.body, "partial", 7);
    resp_free(&r);
    conn_close(c);
    assert_int_equal(get(port, "/echo/after-cut", &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(atomic_load(&T.closes), 1);
    finish(srv);
}

static void test_slow_loris(void **state)
{
    ias_server_opts o = base_opts("t_slowloris");
    ias_server *srv;
    conn *c;
    bool cut = false;
    static const char req[] =
        "GET /echo/1 HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

    o.read_timeout_ms = 300;
    srv = start(&o);
    /* one byte every 50 ms keeps the connection busy but never completes the
     * head within the timeout: the server cuts it (the deadline is per head,
     * not per read) */
    c = conn_open(ias_server_port(srv));
    for (size_t i = 0; i < sizeof(req) - 1 && !cut; i++) {
        if (send(c->fd, req + i, 1, MSG_NOSIGNAL) != 1)
            cut = true;
        else
            cut = peer_closed(c, 50);
    }
    assert_true(cut);
    conn_close(c);
    finish(srv);
}

static int connect_unix(const char *path)
{
    struct sockaddr_un sa;
    struct timeval tv = {20, 0};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void test_unix_socket(void **state)
{
    ias_server_opts o = base_opts("t_unix");
    ias_server *srv;
    char path[64];
    struct stat st;
    struct sockaddr_un sa;
    int fd;
    conn *c;
    resp r;
    cJSON *j;

    snprintf(path, sizeof(path), "/tmp/ias-test-%d.sock", (int)getpid());
    /* a socket file left behind by an earlier run is replaced */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    (void)unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    o.unix_path = path;
    o.workers = 2;
    srv = start(&o);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    for (int i = 0; i < 4; i++) {
        c = conn_open(ias_server_port(srv));
        close(c->fd);
        c->fd = connect_unix(path);
        conn_sends(c, "GET /echo/u HTTP/1.1\r\n\r\n");
        assert_int_equal(read_response(c, &r, false), 0);
        assert_int_equal(r.status, 200);
        j = body_json(&r);
        assert_string_equal(jstr(j, "peer"), "unix");
        cJSON_Delete(j);
        resp_free(&r);
        conn_close(c);
    }
    /* TCP still works */
    assert_int_equal(get(ias_server_port(srv), "/echo/tcp", &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    finish(srv);
    /* removed at stop */
    assert_int_equal(stat(path, &st), -1);

    /* anything else at the path is not replaced */
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    srv = ias_server_new(&o);
    assert_non_null(srv);
    assert_int_equal(ias_server_start(srv), IAS_ERR);
    ias_server_free(srv);
    assert_int_equal(unlink(path), 0);
}

static void test_stop_before_start(void **state)
{
    ias_server_opts o = base_opts("t_early");
    ias_server *srv = ias_server_new(&o);

    assert_non_null(srv);
    ias_server_stop(srv);
    assert_int_equal(ias_server_start(srv), IAS_ERR);
    ias_server_free(srv);
    /* free without stop drains on its own */
    srv = start(&o);
    ias_server_free(srv);
}

/* opts.unix_path: a stale socket file is replaced, the mode is 0660, every
 * worker serves it (peer "unix") next to TCP, and stop removes the file;
 * anything but a socket at the path fails the start and stays. */
static void test_unix_socket_workers(void **state)
{
    ias_server_opts o = base_opts("t_unix");
    char dir[] = "/tmp/ias-test-unix-XXXXXX", path[128];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    bool seen[2] = {false, false};
    ias_server *srv;
    resp r;
    cJSON *j;
    int fd;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    (void)ias_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    fd = socket(AF_UNIX, SOCK_STREAM, 0); /* a killed run's leftover */
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);

    o.workers = 2;
    o.unix_path = path;
    srv = start(&o);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    for (int i = 0; i < 64 && !(seen[0] && seen[1]); i++) {
        conn *c = calloc(1, sizeof(*c));

        assert_non_null(c);
        c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        c->cap = c->max_read = 65536;
        assert_non_null(c->buf = malloc(c->cap));
        for (int k = 0; k < 2; k++) { /* keep-alive on the unix connection */
            conn_sends(c, "GET /echo/u HTTP/1.1\r\nHost: localhost\r\n\r\n");
            assert_int_equal(read_response(c, &r, false), 0);
            assert_int_equal(r.status, 200);
            j = body_json(&r);
            assert_string_equal(jstr(j, "peer"), "unix");
            seen[cJSON_GetObjectItem(j, "worker")->valueint] = true;
            cJSON_Delete(j);
            resp_free(&r);
        }
        conn_close(c);
    }
    assert_true(seen[0] && seen[1]);
    assert_int_equal(get(ias_server_port(srv), "/echo/t", &r), 0);
    j = body_json(&r);
    assert_string_equal(jstr(j, "peer"), "127.0.0.1");
    cJSON_Delete(j);
    resp_free(&r);
    finish(srv);
    assert_int_equal(lstat(path, &st), -1);

    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    srv = ias_server_new(&o);
    assert_non_null(srv);
    assert_int_equal(ias_server_start(srv), IAS_ERR);
    ias_server_free(srv);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_routing, setup),
        cmocka_unit_test_setup(test_openai_shape, setup),
        cmocka_unit_test_setup(test_json_and_body, setup),
        cmocka_unit_test_setup(test_limits, setup),
        cmocka_unit_test_setup(test_keepalive_and_pipelining, setup),
        cmocka_unit_test_setup(test_nodelay, setup),
        cmocka_unit_test_setup(test_workers, setup),
        cmocka_unit_test_setup(test_worker_init_failure, setup),
        cmocka_unit_test_setup(test_request_id_and_traceparent, setup),
        cmocka_unit_test_setup(test_access_log, setup),
        cmocka_unit_test_setup(test_builtins, setup),
        cmocka_unit_test_setup(test_async_close_detected, setup),
        cmocka_unit_test_setup(test_stream_backpressure, setup),
        cmocka_unit_test_setup(test_stream_client_disconnect, setup),
        cmocka_unit_test_setup(test_drain_graceful, setup),
        cmocka_unit_test_setup(test_drain_deadline, setup),
        cmocka_unit_test_setup(test_timeouts, setup),
        cmocka_unit_test_setup(test_protocol_framing, setup),
        cmocka_unit_test_setup(test_protocol_limits, setup),
        cmocka_unit_test_setup(test_half_close, setup),
        cmocka_unit_test_setup(test_slow_loris, setup),
        cmocka_unit_test_setup(test_unix_socket, setup),
        cmocka_unit_test_setup(test_stop_before_start, setup),
        cmocka_unit_test_setup(test_sigterm, setup),
        cmocka_unit_test_setup(test_unix_socket_workers, setup),
    };

    ias_log_init("test_http_server", IAS_LOG_WARN);
    if (getenv("IAS_TEST_FILTER"))
        cmocka_set_test_filter(getenv("IAS_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
