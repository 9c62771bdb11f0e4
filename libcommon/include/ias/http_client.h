/* Asynchronous HTTP/1.1 client on libevent bufferevents (http:// and unix
 * stream sockets; no TLS).
 *
 * One ias_http_client per event loop (worker thread); nothing here is
 * thread-safe. It keeps a keep-alive pool per (host, port) or unix socket, LIFO, with at most
 * max_idle_per_host idle connections, each closed after idle_expiry_ms unused.
 * There is no cap on concurrent connections per host: every call that finds no
 * idle connection opens one.
 *
 * Names: IP literals connect directly; "localhost" means 127.0.0.1; other names
 * are resolved asynchronously by an evdns_base the client creates on first use
 * (/etc/resolv.conf or opts.resolv_conf, /etc/hosts, plus opts.hosts_file, all
 * read then), so k8s service names work and the loop never blocks. The connect
 * timeout covers the lookup. When a name has both A and AAAA records, the first
 * IPv4 address is used (set family to AF_INET6 to force IPv6); there is no
 * fallback to a second address and no cache beyond the pool itself.
 *
 * Unix sockets: a URL "unix:/run/ias/router.sock:/v1/x" (or "http+unix://"
 * with the path percent-encoded as host, see ias_http_url_parse) connects to
 * that socket with the same pool (one per socket path), keep-alive, retry and
 * timeouts, and sends "Host: localhost". A co-located server (ingress and
 * router in one pod) is reached without the loopback TCP stack. A socket whose
 * listen backlog is full fails the connect at once (EAGAIN: CONNECT_FAILED)
 * instead of waiting as TCP would.
 *
 * Lifetime rules:
 * - on_done is called exactly once per call unless the call is cancelled with
 *   ias_http_call_cancel (then never). It is never called from inside
 *   ias_http_client_request. The call handle is valid until on_done returns or
 *   ias_http_call_cancel returns; nothing is freed while a callback is on the
 *   stack (frees are deferred to the next loop pass).
 * - Callbacks may call ias_http_call_pause/resume/cancel on any call and start
 *   new requests; they must not free the client.
 * - ias_http_client_free finishes every in-flight call with on_done(CANCELLED)
 *   and closes the idle connections. Call it with the loop not running a
 *   callback of this client. If a name lookup was abandoned (call cancelled or
 *   timed out while resolving), run the loop once more before event_base_free:
 *   the resolver is freed on the next loop pass.
 *
 * Reuse: a connection goes back to the pool only when the response was complete,
 * keep-alive was allowed (HTTP/1.1 default; "Connection: close" honoured; never
 * after a read-until-close body or ambiguous framing), the request was written
 * completely and no extra byte followed the response.
 *
 * Stale keep-alive race: a server may close an idle connection just as we send
 * on it. When a request sent on a reused connection gets the connection closed
 * (or reset) before a single response byte, it is retried once, transparently,
 * on a fresh connection - for any method, because the server cannot have begun
 * answering it. (A server that processed the request and then died without
 * answering could see it twice; that is the standard trade-off, same as
 * browsers and curl.)
 *
 * Backpressure: ias_http_call_pause disables reading from the upstream socket
 * (and stops the idle timer); the input buffer holds at most
 * read_high_watermark bytes (reading stops there anyway), and the kernel
 * socket buffer and TCP flow control do the rest. ias_http_call_resume
 * re-enables reading; buffered bytes are delivered on the next loop pass.
 *
 * SIGPIPE: writes use writev(2); the process must ignore SIGPIPE (ias services
 * do, via ias_server_opts.handle_signals). */
#ifndef IAS_HTTP_CLIENT_H
#define IAS_HTTP_CLIENT_H

#include "ias/common.h"
#include "ias/http_parse.h"

struct event_base;

typedef struct ias_http_client ias_http_client;
typedef struct ias_http_call ias_http_call;

typedef enum {
    IAS_HTTP_OK = 0,             /* complete response (any status) */
    IAS_HTTP_CONNECT_FAILED,     /* lookup failed, refused, unreachable */
    IAS_HTTP_CONNECT_TIMEOUT,    /* lookup + TCP connect over connect_ms */
    IAS_HTTP_FIRST_BYTE_TIMEOUT, /* response head not complete within first_byte_ms */
    IAS_HTTP_IDLE_TIMEOUT,       /* no body byte for idle_ms (not counted while paused) */
    IAS_HTTP_TOTAL_TIMEOUT,      /* whole call over total_ms */
    IAS_HTTP_PROTOCOL_ERROR,     /* malformed response */
    IAS_HTTP_RESET,              /* connection closed or reset before the response completed */
    IAS_HTTP_CANCELLED,          /* only from ias_http_client_free */
    IAS_HTTP_TOO_LARGE,          /* response head or body over the limits */
} ias_http_result;

const char *ias_http_result_str(ias_http_result r);

typedef struct ias_http_client_opts {
    /* Defaults for requests that leave a field 0. Timeouts in ms, < 0 disables. */
    int connect_ms;                   /* default 3000 */
    int first_byte_ms;                /* default 30000 */
    int idle_ms;                      /* default 30000 */
    int total_ms;                     /* default 0 = none */
    size_t max_response_header_bytes; /* default 16 KiB */
    size_t max_fetch_body_bytes;      /* ias_http_client_fetch default, 1 MiB */
    /* Pool. */
    size_t max_idle_per_host; /* default 16; 0 keeps the default, use
                               * disable_keepalive to never reuse */
    int idle_expiry_ms;       /* default 4000 (under uvicorn's 5 s keep-alive) */
    bool disable_keepalive;
    size_t read_high_watermark; /* bytes buffered from a socket at most, default 64 KiB */
    int family;                 /* AF_UNSPEC (default 0), AF_INET or AF_INET6 for names */
    const char *resolv_conf;    /* resolver config instead of /etc/resolv.conf, or NULL */
    const char *hosts_file;     /* extra hosts file for the resolver (tests), or NULL */
} ias_http_client_opts;

typedef struct ias_http_request {
    const char *method; /* NULL: "GET" */
    const char *url;    /* http://host[:port]/path?query or unix:/socket:/path?query */
    /* Extra headers. Host is added unless given here; Content-Length is always
     * computed (with a body, or for POST/PUT/PATCH); Content-Length,
     * Transfer-Encoding, Connection, Upgrade, TE, Trailer, Keep-Alive and
     * Proxy-Connection are refused (hop-by-hop or framing). */
    const ias_http_header *headers;
    size_t nheaders;
    const void *body; /* copied */
    size_t body_len;
    /* 0: client default; < 0: none. */
    int connect_ms;
    int first_byte_ms;                /* from connected (or reuse) to the complete response head */
    int idle_ms;                      /* max gap between body bytes */
    int total_ms;                     /* whole call, including retries */
    size_t max_response_header_bytes; /* 0: client default */
    /* Decoded body cap -> TOO_LARGE. 0: none for streaming calls, the client's
     * max_fetch_body_bytes for ias_http_client_fetch. */
    size_t max_body_bytes;
} ias_http_request;

typedef struct ias_http_callbacks {
    /* Final response head (interim 1xx are skipped). resp and its strings are
     * valid during this callback only. Optional. */
    void (*on_response)(ias_http_call *call, const ias_http_response *resp, void *arg);
    /* Each decoded body piece (chunked framing removed), in order. Optional. */
    void (*on_body)(ias_http_call *call, const char *data, size_t len, void *arg);
    /* Exactly once (see the lifetime rules above). Required. */
    void (*on_done)(ias_http_call *call, ias_http_result result, void *arg);
} ias_http_callbacks;

/* base must outlive the client. opts may be NULL. Returns NULL on failure. */
ias_http_client *ias_http_client_new(struct event_base *base, const ias_http_client_opts *opts);
void ias_http_client_free(ias_http_client *c);

/* Starts a call. Returns NULL (and calls nothing) for an invalid request: bad
 * or non-http URL, forbidden or malformed header, unknown method characters,
 * or a client being freed. */
ias_http_call *ias_http_client_request(ias_http_client *c, const ias_http_request *req,
                                       const ias_http_callbacks *cb, void *arg);

void ias_http_call_pause(ias_http_call *call);
void ias_http_call_resume(ias_http_call *call);
/* Stops the call and closes its connection (it cannot be reused mid-response);
 * on_done is not called. Safe inside any callback of this or another call; a
 * no-op once on_done has started. The handle is invalid afterwards. */
void ias_http_call_cancel(ias_http_call *call);

/* Accessors, valid while the handle is. */
bool ias_http_call_response_started(const ias_http_call *call); /* any response byte received */
int ias_http_call_status(const ias_http_call *call);            /* 0 before the head */
uint64_t ias_http_call_body_bytes(const ias_http_call *call);   /* decoded bytes delivered */
size_t ias_http_call_buffered(const ias_http_call *call); /* bytes waiting in the input buffer */
bool ias_http_call_reused(const ias_http_call *call);     /* the current connection served before */
bool ias_http_call_retried(const ias_http_call *call);    /* the stale keep-alive retry happened */
const char *ias_http_call_error(const ias_http_call *call); /* detail for on_done, "" if none */

/* Whole-body helper (ingress -> users lookups and the like). */
typedef struct ias_http_fetch_result {
    ias_http_result result;
    bool response_started;
    int status;                     /* 0 without a response head */
    const ias_http_header *headers; /* copies */
    size_t nheaders;
    const char *body; /* NUL-terminated, "" when empty */
    size_t body_len;
    const char *error; /* "" when none */
} ias_http_fetch_result;

/* Called exactly once unless cancelled; res lives during the callback only. */
typedef void (*ias_http_fetch_cb)(const ias_http_fetch_result *res, void *arg);

/* Same as ias_http_client_request but collects the body (bounded by
 * req->max_body_bytes, else the client's max_fetch_body_bytes -> TOO_LARGE).
 * The returned handle may be cancelled (then cb is never called). */
ias_http_call *ias_http_client_fetch(ias_http_client *c, const ias_http_request *req,
                                     ias_http_fetch_cb cb, void *arg);

/* Counters, for tests and metrics. */
typedef struct ias_http_client_stats {
    uint64_t connects;      /* connections opened */
    uint64_t reuses;        /* calls served by a pooled connection */
    uint64_t stale_retries; /* stale keep-alive retries */
    size_t idle;            /* connections in the pool now */
    size_t active;          /* calls in flight now */
} ias_http_client_stats;

void ias_http_client_stats_get(const ias_http_client *c, ias_http_client_stats *out);

#endif
