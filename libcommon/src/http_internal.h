/* Private to http_server.c, http_request.c and http_reply.c: the structures
 * behind ias_server, ias_worker and ias_req, and the hooks between the files. */
#ifndef IAS_HTTP_INTERNAL_H
#define IAS_HTTP_INTERNAL_H

#include "ias/http_server.h"
#include "ias/metrics.h"

#include "http_reqparse.h"

#include <event2/event_struct.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

typedef struct ias_conn ias_conn;

/* Metric slots: the service routes first, then the built-ins and "unmatched". */
enum {
    IAS_SLOT_HEALTH = 0, /* offsets after nroutes */
    IAS_SLOT_READY,
    IAS_SLOT_METRICS,
    IAS_SLOT_UNMATCHED,
    IAS_SLOT_EXTRA,
};

enum {
    IAS_METRIC_CACHE = 256, /* per-worker (slot, method, status) -> counter entries */
    IAS_REQ_ID_MAX = 64,
    IAS_TRACEPARENT_LEN = 55,
    IAS_REQ_FREELIST_MAX = 64,  /* released requests a worker keeps for reuse */
    IAS_CONN_FREELIST_MAX = 64, /* closed connections a worker keeps for reuse */
    IAS_REQ_INLINE_STRS = 384,  /* target and path copies without a malloc */
    IAS_REQ_INLINE_HDRS = 512,  /* response headers set by the handler */
    IAS_HS_MAX_FIELDS = 256,    /* request header fields (max_header_bytes bounds them too) */
};

typedef enum {
    IAS_REQ_OPEN,      /* handler may reply */
    IAS_REQ_STREAMING, /* headers sent, chunks flowing */
    IAS_REQ_REPLIED,   /* whole reply or stream end queued, waiting for the socket */
    IAS_REQ_DONE,      /* reply written */
    IAS_REQ_CLOSED,    /* the connection went away first */
} ias_req_state;

typedef void (*ias_req_cb)(ias_req *r, void *arg);

struct ias_req {
    ias_worker *w;
    ias_server *srv;
    ias_conn *conn; /* NULL once done or closed */
    ias_req_state state;
    int refs;
    int slot;       /* metric slot */
    int method_idx; /* for the metric cache */
    const char *method;
    char *target;    /* raw request target */
    char *raw_path;  /* as received, for routing */
    char *path;      /* decoded */
    char *query;     /* raw, NULL if none */
    char *strs_heap; /* the four above when they do not fit strs */
    bool bad_path;
    bool is_head;
    bool http10; /* HTTP/1.0: no chunked replies */
    bool openai_errors;
    bool user_ct;   /* the handler set a Content-Type of its own */
    int status;     /* sent, 0 while nothing was sent */
    uint64_t bytes; /* body bytes queued */
    uint64_t start_us;
    char id[IAS_REQ_ID_MAX + 1];
    char traceparent[IAS_TRACEPARENT_LEN + 1];
    char peer[64];
    ias_log_ctx log;
    ias_route_match match;
    char *body;
    size_t body_len;
    bool body_read;
    cJSON *json;
    ias_req_cb close_cb;
    void *close_arg;
    ias_req_cb drain_cb;
    void *drain_arg;
    size_t low_water;
    /* response headers from ias_reply_header, "Name: value\r\n" each */
    char *xh;
    size_t xh_len, xh_cap;
    char *xh_heap;
    char xh_inline[IAS_REQ_INLINE_HDRS];
    char strs[IAS_REQ_INLINE_STRS];
    ias_req *next_reap;
};

typedef enum {
    IAS_CONN_HEAD,    /* waiting for (the rest of) a request head */
    IAS_CONN_BODY,    /* reading a request body */
    IAS_CONN_HANDLER, /* a request is with its handler or being answered */
    IAS_CONN_LINGER,  /* error answered; reading and dropping until the client closes */
} ias_conn_state;

/* One client connection, owned by its worker. Freed (or pooled) only from its
 * own event callbacks or the worker's teardown, never inside a callback of a
 * service: every ias_req_* / ias_reply_* call only changes state and kicks the
 * connection (event_active), and the loop does the I/O. */
struct ias_conn {
    ias_worker *w;
    int fd;
    ias_conn_state st;
    struct event rev; /* readable, persistent */
    struct event wev; /* writable while output waits for the socket; also the kick */
    struct event tev; /* read timeout, write stall, linger */
    bool rev_on, wev_on;
    bool unix_peer;
    bool eof;        /* the client shut its side */
    bool keep_alive; /* of the current request (and the server's will) */
    bool cut;        /* ias_req_cut: output dropped, closed after the request */
    bool shut;       /* write side shut (lingering close) */
    bool in_step;
    uint64_t t_mark; /* ms: head start, last body read, last write progress */
    /* input: rbuf[0..rlen); a request starts at 0 */
    char *rbuf;
    size_t rlen, rcap;
    size_t scan; /* head scan position */
    ias_hs_head head;
    ias_hs_field *fields;
    size_t body_end; /* IAS_CONN_BODY: decoded body is rbuf[head_len..body_end) */
    size_t raw_pos;  /* chunked: raw bytes consumed up to here */
    size_t next_req; /* the request after this one starts here */
    ias_hs_chunked chunk;
    /* output: wbuf[wpos..wlen) waits for the socket */
    char *wbuf;
    size_t wpos, wlen, wcap;
    ias_req *req; /* the request being handled, NULL between requests */
    char peer[64];
    ias_conn *prev, *next; /* the worker's connections */
};

typedef struct {
    uint32_t key; /* 0 = empty */
    ias_counter *counter;
} ias_metric_entry;

struct ias_worker {
    ias_server *srv;
    int index;
    pthread_t thread;
    bool thread_started;
    bool inited; /* worker_init succeeded: worker_fini is owed */
    struct event_base *base;
    int listen_fd;              /* this worker's SO_REUSEPORT socket, -1 none */
    struct event *listen_ev;    /* accepting on it */
    struct event *unix_ev;      /* accepting on the server's shared unix socket */
    struct event *accept_pause; /* out of descriptors: accepting resumes later */
    bool listening;
    int wake_fd;            /* eventfd: ias_server_stop (any thread) begins the drain */
    struct event *drain_ev; /* reads wake_fd */
    bool drain_started;
    struct event *drain_timer; /* polls in-flight count and deadline while draining */
    struct event *reap_ev;     /* frees released requests outside callbacks */
    ias_req *reap;
    ias_req *free_reqs; /* released requests kept for reuse (linked by next_reap) */
    int nfree_reqs;
    ias_conn *conns;      /* open connections */
    ias_conn *free_conns; /* closed ones kept for reuse (linked by next) */
    int nfree_conns;
    int inflight;
    time_t date_sec; /* Date header cache */
    char date[40];
    size_t date_len;
    void *data;
    ias_metric_entry cache[IAS_METRIC_CACHE];
    size_t cache_used;
};

struct ias_server {
    ias_server_opts opts; /* strings below are our copies */
    char *service;
    char *bind_addr;
    char *openai_prefix;
    char *unix_path;      /* NULL: none */
    int unix_fd;          /* shared by the workers, -1 none */
    atomic_int unix_refs; /* workers still accepting on it; the last one closes it */
    int nworkers;
    ias_worker *workers;
    atomic_int port;
    atomic_bool draining;
    atomic_llong deadline_ms; /* monotonic; valid while draining */
    atomic_long inflight;
    ias_gauge *g_inflight;
    ias_histogram **hist; /* per slot */
    char **route_label;   /* per slot, escaped for a label value */
    char *service_label;
    /* start/stop */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int nready;
    bool go, abort_start, init_failed;
    bool started, joined;
    pthread_t sig_thread;
    bool sig_started;
    pthread_t starter; /* the thread that called start: its signal mask is restored in wait */
    sigset_t old_mask;
    bool mask_saved;
    atomic_bool sig_quit;
};

/* http_request.c */
/* A request from the parsed head in c (error != 0: an answer the server owes
 * itself for a request it could not take; method/target may be unknown). */
ias_req *ias_hs_req_new(ias_worker *w, ias_conn *c);
void ias_hs_req_free(ias_req *r);
/* The request ends (reply written, or closed first): metrics, log, on_close
 * (closed only), and the server's reference dropped. */
void ias_hs_req_end(ias_req *r, bool closed);
/* The reaper: frees every released request of the worker. */
void ias_hs_reap(ias_worker *w);
/* Frees the worker's pool of released requests (teardown). */
void ias_hs_req_pool_free(ias_worker *w);
bool ias_hs_valid_request_id(const char *s);
int ias_hs_parse_traceparent(const char *in, char trace_id[33], char flags[3]);

/* http_server.c */
void ias_hs_observe(ias_req *r, bool closed); /* metrics and access log, once per request */
/* Routes a complete request to the built-ins or the table (the handler runs). */
void ias_hs_dispatch(ias_req *r);

/* http_conn.c */
/* Accept callback for listening sockets (arg: the worker). */
void ias_hs_accept_cb(evutil_socket_t fd, short what, void *arg);
/* Asks the loop to run the connection's state machine (output queued, drain). */
void ias_hs_conn_kick(ias_conn *c);
/* Room for n more output bytes; returns where to write them (commit with wlen). */
char *ias_hs_conn_reserve(ias_conn *c, size_t n);
/* Closes every connection of the worker (end of drain / teardown): requests
 * still open are cut (on_close). */
void ias_hs_conns_close_all(ias_worker *w);
/* Frees the worker's pool of closed connections. */
void ias_hs_conn_pool_free(ias_worker *w);
/* ias_req_cut */
int ias_hs_conn_cut(ias_conn *c);

/* http_reply.c */
/* The Date header value of now ("Sun, 06 Nov 1994 08:49:37 GMT"), cached per second. */
const char *ias_hs_date(ias_worker *w, size_t *len);

#endif
