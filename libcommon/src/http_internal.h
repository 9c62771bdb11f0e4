/* Private to http_server.c, http_request.c and http_reply.c: the structures
 * behind ias_server, ias_worker and ias_req, and the hooks between the files. */
#ifndef IAS_HTTP_INTERNAL_H
#define IAS_HTTP_INTERNAL_H

#include "ias/http_server.h"
#include "ias/metrics.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

struct event;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_connection;

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
    IAS_REQ_FREELIST_MAX = 64, /* released requests a worker keeps for reuse */
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
    struct evhttp_request *evreq;    /* NULL once done or closed */
    struct evhttp_connection *evcon; /* idem */
    struct evhttp_request *orphan;   /* left to us by libevent on close; freed by the reaper */
    ias_req_state state;
    int refs;
    int slot;       /* metric slot */
    int method_idx; /* for the metric cache */
    const char *method;
    char *raw_path; /* as received, for routing */
    char *path;     /* decoded */
    char *query;    /* raw, NULL if none */
    bool bad_path;
    bool is_head;
    bool openai_errors;
    bool conn_tuned; /* timeouts/watermarks changed for async waiting or streaming */
    int status;      /* sent, 0 while nothing was sent */
    uint64_t bytes;  /* body bytes queued */
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
    struct event *drain_ev;     /* fires on_drain from the loop when already drained */
    struct evbuffer *chunk_buf; /* reused for chunks */
    ias_req *next_reap;
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
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *drain_ev;    /* activated from any thread to begin the drain */
    struct event *drain_timer; /* polls in-flight count and deadline while draining */
    struct event *reap_ev;     /* frees released requests outside callbacks */
    ias_req *reap;
    ias_req *free_reqs; /* released requests kept for reuse (linked by next_reap) */
    int nfree_reqs;
    int inflight;
    void *data;
    ias_metric_entry cache[IAS_METRIC_CACHE];
    size_t cache_used;
};

struct ias_server {
    ias_server_opts opts; /* strings below are our copies */
    char *service;
    char *bind_addr;
    char *openai_prefix;
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
ias_req *ias_hs_req_new(ias_worker *w, struct evhttp_request *evreq);
void ias_hs_req_free(ias_req *r);
/* After the handler returned: watch for a client close while it waits. */
void ias_hs_after_handler(ias_req *r);
/* Sets the connection up for a long reply or wait: no read timeout, write
 * timeout = read_timeout_ms, bounded input buffer. Undone on completion. */
void ias_hs_conn_tune(ias_req *r);
/* The reaper: frees every released request of the worker. */
void ias_hs_reap(ias_worker *w);
/* Frees the worker's pool of released requests (teardown). */
void ias_hs_req_pool_free(ias_worker *w);
bool ias_hs_valid_request_id(const char *s);
int ias_hs_parse_traceparent(const char *in, char trace_id[33], char flags[3]);

/* http_server.c */
void ias_hs_observe(ias_req *r, bool closed); /* metrics and access log, once per request */

#endif
