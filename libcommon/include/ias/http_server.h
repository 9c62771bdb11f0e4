/* HTTP/1.1 server on libevent's event loop (its own parser and connection
 * handling; see http_conn.c).
 *
 * The library owns the skeleton (Postfix multi_server_main): listening with
 * SO_REUSEPORT on one event loop per worker thread (IAS_WORKERS; TCP_NODELAY on
 * every socket, SIGPIPE ignored), optionally a unix socket, limits, request
 * ids, routing with path parameters, /health, /ready, /metrics, access logs,
 * per-route metrics and graceful drain on SIGTERM/SIGINT. A service hands it a
 * route table, a context pointer and optional per-worker hooks.
 *
 * Threading: every handler runs on the worker thread that accepted the
 * connection; per-worker state (libpq connection, hiredis async context, HTTP
 * client pool) hangs off ias_worker via worker_init. A worker's event base has
 * no locks: only its own thread may use it (ias_server_stop is the one call
 * made from elsewhere, and wakes workers through an eventfd).
 *
 * Protocol: HTTP/1.0 and 1.1 with origin-form targets; keep-alive (1.1 by
 * default, 1.0 with "Connection: keep-alive"); pipelined requests are read one
 * at a time, the next once the current reply is written; request bodies with
 * Content-Length or Transfer-Encoding: chunked; "Expect: 100-continue" gets
 * its 100 before the body is read. Bare LF line ends are accepted; obs-fold,
 * bare CR, control bytes and whitespace before ':' are 400.
 *
 * Limits: the server answers requests it will not take itself, before any
 * handler, in the configured JSON shape (OpenAI under openai_path_prefix or
 * with openai_errors, RFC 7807 otherwise), counted and logged on the
 * "unmatched" route: headers (request line included) over max_header_bytes
 * get 431, a body over max_body_bytes 413 (a chunked body as soon as its
 * chunk sizes add up past it; Content-Length before the body is read, and
 * without the 100 of an Expect: 100-continue), a method outside GET HEAD POST
 * PUT PATCH DELETE OPTIONS 501, a Transfer-Encoding other than chunked 501,
 * another Expect 417, malformed requests 400. The connection is then closed
 * (after reading and dropping what the client still sends, for up to
 * read_timeout_ms and at most 5 s, so the answer is not lost to a reset).
 * Everything else the server answers itself (404, 405, 400 for bad JSON or a
 * bad path escape, /ready) uses the same JSON shape.
 *
 * Request lifetime: the server allocates an ias_req per request and holds one
 * reference; it drops it when the reply has been written (complete) or when
 * the connection closed first (then on_close fires, once). Memory is released
 * once the count reaches zero, always from the event loop, never inside a
 * callback. A handler whose async work may outlive on_close takes its own
 * reference (ias_req_retain) and drops it when that work ends
 * (ias_req_release); every ias_reply_* on a request that is closed or already
 * answered does nothing and returns IAS_ERR. Without a reference of its own, a
 * handler must treat the pointer as dead once on_close returned, or once its
 * reply is queued. Every ias_req function runs on the request's worker thread. */
#ifndef IAS_HTTP_SERVER_H
#define IAS_HTTP_SERVER_H

#include "ias/common.h"
#include "ias/log.h"

struct event_base;
typedef struct cJSON cJSON;

typedef struct ias_server ias_server;
typedef struct ias_worker ias_worker;
typedef struct ias_req ias_req;

typedef void (*ias_handler)(ias_req *req, void *ctx);

enum {
    IAS_ROUTE_MAX_PARAMS = 8,
};

typedef struct ias_route {
    const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" (also "HEAD", "OPTIONS") */
    /* "/api/v1/orgs/{id}/users/{user_id}"; a trailing "/{*rest}" matches the tail */
    const char *pattern;
    ias_handler handler;
} ias_route;

/* Answers whether the service's dependencies are reachable; on failure writes why.
 * Called from a worker thread for GET /ready; keep it short (cached checks are fine). */
typedef int (*ias_ready_fn)(void *ctx, ias_worker *w, char *why, size_t whylen);

typedef struct ias_server_opts {
    const char *service;            /* for logs and metrics */
    const char *bind_addr;          /* default "127.0.0.1" */
    int port;                       /* 0 picks a free port (tests; see ias_server_port) */
    int workers;                    /* <= 0: one per core */
    size_t max_header_bytes;        /* default 16 KiB -> 431 (see "Limits" above) */
    size_t max_body_bytes;          /* default 1 MiB -> 413 */
    int read_timeout_ms;            /* default 30 s: an idle keep-alive connection, a request
                                       head (from its first byte: a slow-loris is cut), and
                                       between reads of a body; while a reply waits for the
                                       socket: the write stall timeout (none while a handler
                                       waits with nothing to write) */
    int drain_timeout_ms;           /* graceful drain deadline after SIGTERM, default 25 s */
    bool openai_errors;             /* true: server errors in OpenAI shape (/v1), else RFC 7807 */
    const char *openai_path_prefix; /* optional: paths under it use the OpenAI shape even when
                                       openai_errors is false (ingress: "/v1/") */
    const char *unix_path; /* also listen on this unix socket (created mode 0660, an existing
                              socket file replaced, removed at stop); NULL or "" none */
    const ias_route *routes;
    size_t nroutes;
    void *ctx;          /* the service context, passed to every callback */
    ias_ready_fn ready; /* NULL: always ready (until draining) */
    /* Per-worker hooks, run on the worker's thread before it serves / after it stops.
     * If any worker_init fails, ias_server_start fails (and the workers whose init
     * succeeded get worker_fini). References taken with ias_req_retain must be
     * released by the end of worker_fini. */
    int (*worker_init)(ias_worker *w, void *ctx);
    void (*worker_fini)(ias_worker *w, void *ctx);
    bool handle_signals; /* SIGTERM/SIGINT drain (a second one cuts the drain short). They
                            are blocked in the calling thread from start until wait returns
                            (call both from the same thread). SIGPIPE is ignored by
                            ias_server_start in any case. */
} ias_server_opts;

/* Copies opts (strings too; the route table and ctx are borrowed). NULL and an
 * error log when the route table is invalid (ias_route_validate). */
ias_server *ias_server_new(const ias_server_opts *opts);
/* Binds, starts the workers and blocks until a drain completes. IAS_OK on clean stop. */
int ias_server_run(ias_server *srv) IAS_MUSTCHECK;
/* Starts workers without blocking (tests); ias_server_stop + ias_server_wait end it. */
int ias_server_start(ias_server *srv) IAS_MUSTCHECK;
/* Begins a graceful drain from any thread: /ready turns 503, listeners close,
 * responses carry "Connection: close", in-flight requests and streams finish
 * until drain_timeout_ms, then loops exit and whatever is left is cut (on_close
 * fires). Then worker_fini runs on each worker thread. Idempotent. */
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

/* Request accessors. Strings live as long as the request (headers only until
 * the reply completed or the client left: they point into the connection's
 * buffer). Routing,
 * /health, /ready and /metrics use the raw path; HEAD is served by GET routes.
 * Built-ins are matched before the table: a service must not route those paths. */
const char *ias_req_method(const ias_req *r);
const char *ias_req_path(const ias_req *r);                    /* decoded path without query */
const char *ias_req_query(const ias_req *r);                   /* raw query string or NULL */
const char *ias_req_param(const ias_req *r, const char *name); /* path parameter or NULL */
const char *ias_req_target(const ias_req *r); /* raw request target as received ("/a%20b?x=1") */
const char *ias_req_header(const ias_req *r, const char *name); /* NULL once the request ended */
/* The request's header fields in arrival order (names as sent), 0 once the
 * request ended; header_at is false past the end. */
size_t ias_req_header_count(const ias_req *r);
bool ias_req_header_at(const ias_req *r, size_t i, const char **name, const char **value);
const char *ias_req_peer(const ias_req *r); /* client address ("127.0.0.1"), "unix", "" unknown */
const char *ias_req_id(const ias_req *r);   /* X-Request-Id (sanitised) or generated UUID */
const char *ias_req_traceparent(const ias_req *r); /* incoming or generated W3C traceparent */
const ias_log_ctx *ias_req_log(const ias_req *r);
/* NUL-terminated copy of the body (already bounded by max_body_bytes), may be "".
 * Call it first while the request is open (in the handler); len may be NULL. */
const char *ias_req_body(const ias_req *r, size_t *len);
/* Parses the body as a JSON object whatever the Content-Type (not enforced). On
 * failure answers 400 itself (shape per opts: "invalid JSON at byte N" or "request
 * body must be a JSON object") and returns NULL: the handler just returns. The
 * tree belongs to the request (do not cJSON_Delete it); repeated calls return it. */
cJSON *ias_req_json(ias_req *r);
ias_worker *ias_req_worker(ias_req *r);
struct event_base *ias_req_base(ias_req *r);
void *ias_req_ctx(ias_req *r); /* the service context */
/* Fault injection and hard stops: shuts the connection's write side now, after
 * one last attempt to write what is queued, so the client reads what it got
 * so far and then EOF (e.g. a chunked stream without its last chunk). Output
 * queued later is dropped and the connection closes when the request ends
 * (the handler still ends it: a reply or stream end, or on_close when the
 * client leaves). IAS_ERR unless the handler still owes the reply (open or
 * streaming), or if shutdown fails. */
int ias_req_cut(ias_req *r);

/* Lifetime (see the top of this file). */
void ias_req_retain(ias_req *r);
void ias_req_release(ias_req *r);
bool ias_req_closed(const ias_req *r); /* the client went away before the reply completed */

/* Response headers, before the reply starts ("Retry-After", "Location", ...).
 * IAS_ERR if the reply started, the request ended, or the value has CR/LF. */
int ias_reply_header(ias_req *r, const char *name, const char *value);
int ias_reply_retry_after(ias_req *r, unsigned seconds);

/* Whole replies; each ends the request. They return IAS_ERR (and send nothing)
 * when the request is closed or was already answered; ignoring that is fine. */
int ias_reply(ias_req *r, int status, const char *content_type, const void *body, size_t len);
int ias_reply_json(ias_req *r, int status, const cJSON *json);
int ias_reply_json_str(ias_req *r, int status, const char *json);
/* OpenAI shape: {"error":{"message","type","param","code"}}; param/code may be NULL (null). */
int ias_reply_openai_error(ias_req *r, int status, const char *type, const char *code,
                           const char *param, const char *fmt, ...) IAS_PRINTF(6, 7);
/* RFC 7807 application/problem+json {"type":"about:blank","title":<reason phrase>,
 * "status":N,"detail":...,"instance":<path>,"request_id":...}. */
int ias_reply_problem(ias_req *r, int status, const char *detail_fmt, ...) IAS_PRINTF(3, 4);
/* The same with a type URI of your own (NULL: about:blank). */
int ias_reply_problem_typed(ias_req *r, int status, const char *type, const char *detail_fmt, ...)
    IAS_PRINTF(4, 5);
/* Either shape, as the request's server/path asks: OpenAI type "invalid_request_error"
 * (4xx) or "server_error" (5xx) with code (may be NULL), else RFC 7807 with the
 * message as detail. */
int ias_reply_error(ias_req *r, int status, const char *code, const char *fmt, ...)
    IAS_PRINTF(4, 5);
/* Reason phrase for a status ("Not Found"), "Unknown" for unknown codes. */
const char *ias_http_reason(int status);

/* Streaming (chunked). Backpressure: check ias_reply_stream_pending(); when it is
 * above your high-water mark stop producing and set on_drain, which fires once
 * (from the loop, never inside the call) when the pending bytes are at or below
 * low_water; a new on_drain replaces the old.
 * While streaming, the connection's read timeout is off and its write timeout is
 * read_timeout_ms: a client that stops reading for that long is cut (on_close).
 * start/chunk return IAS_ERR when the request is closed or not streaming.
 * An HTTP/1.0 client gets the body without chunked coding, ended by closing
 * the connection; HEAD gets the head only. */
int ias_reply_stream_start(ias_req *r, int status, const char *content_type) IAS_MUSTCHECK;
int ias_reply_stream_chunk(ias_req *r, const void *data, size_t len) IAS_MUSTCHECK;
size_t ias_reply_stream_pending(ias_req *r); /* bytes queued but not yet written to the socket */
void ias_reply_stream_on_drain(ias_req *r, size_t low_water, void (*cb)(ias_req *r, void *arg),
                               void *arg);
int ias_reply_stream_end(ias_req *r);

/* Called once if the client goes away (or the drain deadline cuts the request)
 * while the handler still owes the reply: before a whole reply was queued or
 * before ias_reply_stream_end. It never fires after those, so per-request state
 * can be freed right after replying, and freed in on_close otherwise. After it
 * the request must not be used except through a reference of your own
 * (ias_req_retain), and then every reply is a no-op returning IAS_ERR. Client
 * disconnects are noticed while a handler waits asynchronously and while a
 * reply is being written (a client that half-closes its side counts as gone).
 * It runs from the event loop, never inside an ias_reply_* call of yours. */
void ias_req_on_close(ias_req *r, void (*cb)(ias_req *r, void *arg), void *arg);

/* Async handlers: a handler that returns without replying keeps the request open.
 * It must later reply (or have its on_close fire). The server frees the ias_req
 * after the reply completes or the connection closes and every reference is
 * released, never inside a callback of yours. */

/* Pure route matcher, exposed for tests and fuzzing. */
typedef struct ias_route_match {
    int route; /* index into the table, -1 none; -2 path matched but not the method (405) */
    size_t nparams;
    struct {
        const char *name; /* points into the pattern */
        size_t name_len;
        char value[256]; /* percent-decoded */
    } params[IAS_ROUTE_MAX_PARAMS];
} ias_route_match;
/* path is the raw (percent-encoded) path without the query. Literal segments are
 * compared after decoding; a parameter that is malformed (%zz, %00) or longer than
 * 255 bytes decoded does not match. First match in table order wins; HEAD uses a
 * GET route; "/x/{*rest}" matches "/x", "/x/" and "/x/a/b". Returns m->route. */
int ias_route_find(const ias_route *routes, size_t nroutes, const char *method, const char *path,
                   ias_route_match *m);
/* The Allow header value for a path: "GET, HEAD, POST" ("" when nothing matches). */
int ias_route_allow(const ias_route *routes, size_t nroutes, const char *path, char *buf,
                    size_t buflen) IAS_MUSTCHECK;
/* Checks a table (methods, handlers, pattern syntax, <= IAS_ROUTE_MAX_PARAMS unique
 * parameter names, {*rest} last); on error writes which route and why. */
int ias_route_validate(const ias_route *routes, size_t nroutes, char *err,
                       size_t errlen) IAS_MUSTCHECK;

#endif
