/* HTTP server on libevent's evhttp.
 *
 * The library owns the skeleton (Postfix multi_server_main): listening with
 * SO_REUSEPORT on one evhttp per worker thread (IAS_WORKERS), limits, request
 * ids, routing with path parameters, /health, /ready, /metrics, access logs,
 * per-route metrics and graceful drain on SIGTERM/SIGINT. A service hands it a
 * route table, a context pointer and optional per-worker hooks.
 *
 * Threading: every handler runs on the worker thread that accepted the
 * connection; per-worker state (libpq connection, hiredis async context, HTTP
 * client pool) hangs off ias_worker via worker_init. */
#ifndef IAS_HTTP_SERVER_H
#define IAS_HTTP_SERVER_H

#include "ias/common.h"
#include "ias/log.h"

struct event_base;
struct evhttp_request;
struct evbuffer;
typedef struct cJSON cJSON;

typedef struct ias_server ias_server;
typedef struct ias_worker ias_worker;
typedef struct ias_req ias_req;

typedef void (*ias_handler)(ias_req *req, void *ctx);

enum {
    IAS_ROUTE_MAX_PARAMS = 8,
};

typedef struct ias_route {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* "/api/v1/orgs/{id}/users/{user_id}"; a trailing "/{*rest}" matches the tail */
    ias_handler handler;
} ias_route;

/* Answers whether the service's dependencies are reachable; on failure writes why.
 * Called from a worker thread for GET /ready; keep it short (cached checks are fine). */
typedef int (*ias_ready_fn)(void *ctx, ias_worker *w, char *why, size_t whylen);

typedef struct ias_server_opts {
    const char *service;        /* for logs and metrics */
    const char *bind_addr;      /* default "127.0.0.1" */
    int port;                   /* 0 picks a free port (tests; see ias_server_port) */
    int workers;                /* <= 0: one per core */
    size_t max_header_bytes;    /* default 16 KiB -> 431/400 */
    size_t max_body_bytes;      /* default 1 MiB -> 413 */
    int read_timeout_ms;        /* idle connection / slow request timeout, default 30 s */
    int drain_timeout_ms;       /* graceful drain deadline after SIGTERM, default 25 s */
    bool openai_errors;         /* true: limit errors in OpenAI shape (/v1), else RFC 7807 */
    const ias_route *routes;
    size_t nroutes;
    void *ctx;                  /* the service context, passed to every callback */
    ias_ready_fn ready;         /* NULL: always ready (until draining) */
    /* Per-worker hooks, run on the worker's thread before it serves / after it stops. */
    int (*worker_init)(ias_worker *w, void *ctx);
    void (*worker_fini)(ias_worker *w, void *ctx);
    bool handle_signals;        /* install SIGTERM/SIGINT drain and ignore SIGPIPE (default for services) */
} ias_server_opts;

ias_server *ias_server_new(const ias_server_opts *opts);
/* Binds, starts the workers and blocks until a drain completes. IAS_OK on clean stop. */
int ias_server_run(ias_server *srv) IAS_MUSTCHECK;
/* Starts workers without blocking (tests); ias_server_stop + ias_server_wait end it. */
int ias_server_start(ias_server *srv) IAS_MUSTCHECK;
/* Begins a graceful drain from any thread: /ready turns 503, listeners close,
 * in-flight requests and streams finish until the deadline, then loops exit. */
void ias_server_stop(ias_server *srv);
void ias_server_wait(ias_server *srv);
int ias_server_port(const ias_server *srv); /* the bound port */
void ias_server_free(ias_server *srv);
bool ias_server_draining(const ias_server *srv);

/* Worker accessors. */
struct event_base *ias_worker_base(ias_worker *w);
int ias_worker_index(const ias_worker *w);
void *ias_worker_data(ias_worker *w);
void ias_worker_set_data(ias_worker *w, void *data);
ias_server *ias_worker_server(ias_worker *w);

/* Request accessors. Strings live as long as the request. */
const char *ias_req_method(const ias_req *r);
const char *ias_req_path(const ias_req *r);      /* decoded path without query */
const char *ias_req_query(const ias_req *r);     /* raw query string or NULL */
const char *ias_req_param(const ias_req *r, const char *name); /* path parameter or NULL */
const char *ias_req_header(const ias_req *r, const char *name);
const char *ias_req_id(const ias_req *r);        /* X-Request-Id (sanitised) or generated UUID */
const char *ias_req_traceparent(const ias_req *r); /* incoming or generated W3C traceparent */
const ias_log_ctx *ias_req_log(const ias_req *r);
const char *ias_req_body(const ias_req *r, size_t *len); /* NUL-terminated copy, may be "" */
/* Parses the body as a JSON object; on failure answers 400 itself (shape per opts) and returns NULL. */
cJSON *ias_req_json(ias_req *r);
ias_worker *ias_req_worker(ias_req *r);
struct event_base *ias_req_base(ias_req *r);
struct evhttp_request *ias_req_evreq(ias_req *r);
void *ias_req_ctx(ias_req *r); /* the service context */

/* Response headers (before the reply starts). */
void ias_reply_header(ias_req *r, const char *name, const char *value);

/* Whole replies; each ends the request. */
void ias_reply(ias_req *r, int status, const char *content_type, const void *body, size_t len);
void ias_reply_json(ias_req *r, int status, const cJSON *json);
void ias_reply_json_str(ias_req *r, int status, const char *json);
/* OpenAI shape: {"error":{"message","type","param","code"}}; param/code may be NULL. */
void ias_reply_openai_error(ias_req *r, int status, const char *type, const char *code,
                            const char *param, const char *fmt, ...) IAS_PRINTF(6, 7);
/* RFC 7807 application/problem+json: type "about:blank" unless given, title from status. */
void ias_reply_problem(ias_req *r, int status, const char *detail_fmt, ...) IAS_PRINTF(3, 4);

/* Streaming (chunked). Backpressure: check ias_reply_stream_pending(); when it is
 * above your high-water mark stop producing and set on_drain, which fires once the
 * pending bytes fall below low-water (evhttp_send_reply_chunk_with_cb). */
int ias_reply_stream_start(ias_req *r, int status, const char *content_type) IAS_MUSTCHECK;
int ias_reply_stream_chunk(ias_req *r, const void *data, size_t len) IAS_MUSTCHECK;
size_t ias_reply_stream_pending(ias_req *r); /* bytes queued but not yet written to the socket */
void ias_reply_stream_on_drain(ias_req *r, size_t low_water, void (*cb)(ias_req *r, void *arg),
                               void *arg);
void ias_reply_stream_end(ias_req *r);

/* Called once if the client goes away before the reply completed; after it the
 * request must not be used except for ias_req_release by its owner (see below). */
void ias_req_on_close(ias_req *r, void (*cb)(ias_req *r, void *arg), void *arg);

/* Async handlers: a handler that returns without replying keeps the request open.
 * It must later reply (or have its on_close fire). The server frees the ias_req
 * after the reply completes or the connection closes, never inside a callback of yours. */

/* Pure route matcher, exposed for tests and fuzzing. */
typedef struct ias_route_match {
    int route; /* index into the table, -1 none; -2 path matched but not the method (405) */
    size_t nparams;
    struct {
        const char *name; /* points into the pattern */
        size_t name_len;
        char value[256];  /* percent-decoded */
    } params[IAS_ROUTE_MAX_PARAMS];
} ias_route_match;
int ias_route_find(const ias_route *routes, size_t nroutes, const char *method, const char *path,
                   ias_route_match *m);

#endif
