/* The spooling publisher: the only way hot-path threads talk to RabbitMQ.
 *
 * Producers copy events into a bounded in-memory queue (mutex + condvar) and
 * return at once; when the queue is full the event goes to a second bounded
 * overflow list that the publisher thread spools in bulk, and only past that
 * the producer appends to the spool itself with write() and no fsync (the
 * thread fdatasyncs soon after). One thread owns the librabbitmq connection: it
 * publishes bursts with publisher confirms, keeping up to inflight_max events
 * unconfirmed (confirms are matched by delivery tag, "multiple" included, so
 * several bursts are pipelined), writes whatever was not confirmed to the
 * spool, reconnects with capped jittered backoff, and replays the spool (oldest
 * segment first, deleting a segment only once all its records were confirmed or
 * copied to a newer segment). With pack_max > 1, consecutive events of one
 * routing key and type share one message (a pack): one delivery tag, one
 * confirm for all of them, and if it is not confirmed every one of its events
 * is spooled on its own. With opts.journal, publish also appends each event
 * (write() only) to a crash journal, deleted segment by segment once its events
 * are confirmed or spooled; the next ias_publisher_new moves a journal left by
 * a crashed process into the spool. See docs/architecture/events.md. */
#include "ias/amqp.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>

#include "ias/log.h"
#include "ias/metrics.h"

/* Idle wake-up: how often the thread calls into librabbitmq when there is
 * nothing to publish, so heartbeats are serviced and a broker shutdown is
 * noticed promptly. */
#define IDLE_POLL_MS 200
/* Records and bytes per spool append while spilling the memory queue. */
#define SPILL_CHUNK 1024
#define SPILL_CHUNK_BYTES (8 * 1024 * 1024)
/* Longest wait for confirms while events may be arriving in the queue: the
 * thread cannot sleep on the socket and the condvar at once. */
#define PUMP_WAIT_MS 2
/* Default body cap of a pack, and the cap on its message ids: they travel in
 * the content header frame, which must fit in one frame (frame_max 128 KiB). */
#define PACK_BYTES_DEFAULT (256 * 1024)
#define PACK_IDS_BYTES (64 * 1024)
/* The crash journal lives in this subdirectory of the spool (the spool's own
 * scan only looks at seg-* files, so it never mistakes a journal segment for a
 * spool segment). A journal segment is sealed at this age even if not full, so
 * an idle publisher keeps no journal and a crash republishes (duplicates) at
 * most about this much of already confirmed events. */
#define JOURNAL_SUBDIR "journal"
#define JOURNAL_ROTATE_MS 1000

typedef struct pev {
    struct pev *next;
    size_t size;         /* bytes accounted against queue_max_bytes */
    uint64_t queued_ms;  /* when handed over (monotonic): a pack's wait */
    uint64_t sent_ms;    /* when published (pipelined path) */
    unsigned char state; /* PENDING, ACKED, NACKED (pipelined path) */
    size_t npack;        /* in the window: events of the message this one heads,
                            linked through next (1 unless packed) */
    uint64_t jseg;       /* crash journal segment holding a copy, 0: none */
    ias_spool_rec rec;   /* strings and body point into data */
    char data[];
} pev;

enum { PENDING = 0, ACKED, NACKED };

/* A crash journal segment and how many of its events are not yet resolved
 * (confirmed by the broker or written to the spool). */
typedef struct jseg {
    uint64_t id;
    size_t outstanding;
    uint64_t opened_ms; /* first append (monotonic) */
} jseg;

struct ias_publisher {
    /* immutable after new() */
    char *url;
    char *name;
    size_t cap, max_bytes, batch_max, inflight_max, ocap;
    size_t pack_max, pack_bytes; /* pack_max 1: no packs */
    int pack_wait_ms;            /* > 0: let a pack fill this long */
    int confirm_timeout_ms, drain_timeout_ms, heartbeat_s;
    int backoff_min_ms, backoff_max_ms;
    bool no_topology;
    ias_spool *spool;
    pthread_t thread;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* producer -> thread: work or stop */
    pev *head, *tail;  /* in-memory queue */
    size_t qlen, qbytes;
    pev *ohead, *otail; /* overflow: the queue was full; spooled by the thread */
    size_t olen, obytes;
    size_t inflight;
    atomic_bool unsynced; /* a producer appended to the spool without fsync */
    bool stopping;        /* ias_publisher_free called */
    bool closed;          /* the thread is gone: publish goes to the spool */

    /* crash journal (opts.journal), under jmu; NULL when off */
    ias_spool *journal;
    pthread_mutex_t jmu;
    jseg *jsegs;
    size_t njsegs, capjsegs;
    uint64_t jcur; /* segment appends go to, 0: sealed (the next starts one) */
    bool jfail_logged;

    /* statistics (relaxed atomics, read by stats_get) */
    _Atomic uint64_t n_published, n_confirmed, n_spooled, n_replayed, n_nacked, n_connects;
    _Atomic uint64_t n_messages;
    atomic_bool connected;

    /* metrics (process-global registry) */
    ias_counter *m_published, *m_confirmed, *m_spooled, *m_replayed, *m_nacked, *m_messages;
    ias_gauge *m_depth, *m_segments, *m_connected;

    /* thread-only */
    ias_amqp_conn *conn;
    uint64_t next_tag; /* delivery tag of the next publish on this channel */
    /* The pipelined window: ring[(ring_head + i) % inflight_max] heads the
     * message with delivery tag ring_first_tag + i; ring_events counts the
     * events of all ring_n messages (what inflight_max bounds). */
    pev **ring;
    size_t ring_head, ring_n, ring_events;
    uint64_t ring_first_tag;
    ias_spool_rec *scratch; /* batch_max records: a burst being packed */
    char *pack_buf;         /* pack_bytes: the body of the pack being sent */
    const char **pack_ids;  /* pack_max: its message ids */
    uint64_t rng;
    bool blocked_logged;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Full jitter in [backoff/2, backoff]: reconnecting publishers do not
 * stampede a broker that just came back. */
static uint64_t jitter(ias_publisher *p, int backoff_ms)
{
    uint64_t half = (uint64_t)backoff_ms / 2;
    return half + xorshift(&p->rng) % (half + 1);
}

static void deadline_ts(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void set_depth_locked(ias_publisher *p)
{
    ias_gauge_set(p->m_depth, (int64_t)(p->qlen + p->olen));
}

static pev *pev_new(const char *rk, const char *mid, const char *type, const void *body, size_t len)
{
    size_t rkl = strlen(rk), midl = strlen(mid), tyl = strlen(type);
    size_t size = sizeof(pev) + rkl + midl + tyl + 3 + len;
    pev *e = ias_xmalloc(size);
    char *d = e->data;

    e->next = NULL;
    e->size = size;
    memcpy(d, rk, rkl + 1);
    e->rec.routing_key = d;
    d += rkl + 1;
    memcpy(d, mid, midl + 1);
    e->rec.message_id = d;
    d += midl + 1;
    memcpy(d, type, tyl + 1);
    e->rec.type = d;
    d += tyl + 1;
    if (len)
        memcpy(d, body, len);
    e->rec.body = d;
    e->rec.body_len = len;
    e->rec.timestamp_ms = ias_wall_ms();
    e->queued_ms = ias_now_ms();
    return e;
}

static void pev_free_chain(pev *e)
{
    while (e) {
        pev *n = e->next;
        free(e);
        e = n;
    }
}

/* ---- crash journal -------------------------------------------------------- */

static jseg *jseg_find_locked(ias_publisher *p, uint64_t id)
{
    for (size_t i = p->njsegs; i > 0; i--)
        if (p->jsegs[i - 1].id == id)
            return &p->jsegs[i - 1];
    return NULL;
}

/* Copies a new event into the journal (write() only) before it is queued, so
 * a crash of the process before it is resolved cannot lose it. A failed write
 * (logged once) leaves the event unprotected rather than refusing it. */
static void journal_add(ias_publisher *p, pev *e)
{
    uint64_t id;
    jseg *j;

    e->jseg = 0;
    pthread_mutex_lock(&p->jmu);
    if (ias_spool_journal_append(p->journal, &e->rec, &id) != IAS_OK) {
        if (!p->jfail_logged)
            ias_error(NULL, "publisher %s: crash journal write failed; events are not journaled",
                      p->name);
        p->jfail_logged = true;
        pthread_mutex_unlock(&p->jmu);
        return;
    }
    p->jfail_logged = false;
    j = jseg_find_locked(p, id);
    if (!j) {
        /* A new segment (the spool rotated by size, or we sealed the last). */
        if (p->njsegs == p->capjsegs) {
            p->capjsegs = p->capjsegs ? 2 * p->capjsegs : 8;
            p->jsegs = ias_xrealloc(p->jsegs, p->capjsegs * sizeof(*p->jsegs));
        }
        j = &p->jsegs[p->njsegs++];
        j->id = id;
        j->outstanding = 0;
        j->opened_ms = ias_now_ms();
    }
    p->jcur = id;
    j->outstanding++;
    e->jseg = id;
    pthread_mutex_unlock(&p->jmu);
}

/* Events of a chain were resolved: their journal copies are no longer needed. */
static void journal_release(ias_publisher *p, const pev *chain)
{
    uint64_t last = 0;
    jseg *j = NULL;

    if (!p->journal)
        return;
    pthread_mutex_lock(&p->jmu);
    for (const pev *e = chain; e; e = e->next) {
        if (e->jseg == 0)
            continue;
        if (!j || e->jseg != last) {
            j = jseg_find_locked(p, e->jseg);
            last = e->jseg;
        }
        if (j && j->outstanding > 0)
            j->outstanding--;
    }
    pthread_mutex_unlock(&p->jmu);
}

/* Frees a chain of resolved events (confirmed or spooled). Events that are
 * dropped (spool failure at shutdown) are freed with pev_free_chain instead,
 * so their journal copies stay for the next start to recover. */
static void pev_release(ias_publisher *p, pev *chain)
{
    journal_release(p, chain);
    pev_free_chain(chain);
}

/* Publisher thread (and free): seals the segment being written once it is
 * JOURNAL_ROTATE_MS old (or always, when final) and deletes every sealed
 * segment whose events are all resolved. No fsync: a lost unlink only means
 * duplicates after a machine crash, which consumers dedupe. */
static void journal_sweep(ias_publisher *p, bool final)
{
    size_t k = 0;

    if (!p->journal)
        return;
    pthread_mutex_lock(&p->jmu);
    if (p->jcur != 0) {
        jseg *cur = jseg_find_locked(p, p->jcur);
        if (final || !cur || ias_now_ms() - cur->opened_ms >= JOURNAL_ROTATE_MS) {
            ias_spool_seal(p->journal);
            p->jcur = 0;
        }
    }
    for (size_t i = 0; i < p->njsegs; i++) {
        jseg *j = &p->jsegs[i];
        if (j->id != p->jcur && j->outstanding == 0 &&
            ias_spool_remove(p->journal, j->id) == IAS_OK)
            continue;
        p->jsegs[k++] = *j;
    }
    p->njsegs = k;
    pthread_mutex_unlock(&p->jmu);
}

/* Removes an emptied journal directory (its LOCK, then itself). Best effort:
 * an empty directory left behind is harmless. */
static void journal_rmdir(const char *dir)
{
    char lock[4200];
    int n = snprintf(lock, sizeof(lock), "%s/LOCK", dir);

    if (n < 0 || (size_t)n >= sizeof(lock))
        return;
    (void)unlink(lock);
    (void)rmdir(dir);
}

/* Journal segments left by an earlier process (it crashed, or could not spool
 * at shutdown) are copied into the spool, synced, then deleted, so the normal
 * replay publishes them. Events that had been confirmed before the crash go
 * out again: consumers dedupe by event id. A segment that cannot be read or
 * copied stays for the next start. Returns the open journal (kept when
 * `keep`) or NULL. */
static ias_spool *journal_recover(ias_publisher *p, const char *jdir, uint64_t max_bytes,
                                  size_t seg_bytes, bool keep)
{
    ias_spool *j;
    uint64_t *ids = NULL;
    size_t nids = 0, copied = 0, left = 0;
    struct stat st;
    ias_spool_rec recs[256];

    if (!keep && stat(jdir, &st) != 0)
        return NULL; /* no journal and none wanted */
    if (ias_spool_open(jdir, seg_bytes, max_bytes, &j) != IAS_OK)
        return NULL;
    ias_spool_set_journal(j);
    if (ias_spool_list(j, &ids, &nids) != IAS_OK)
        nids = 0;
    for (size_t i = 0; i < nids; i++) {
        ias_spool_reader *r;
        bool ok = true;

        if (ias_spool_reader_open(j, ids[i], &r) != IAS_OK) {
            left++;
            continue;
        }
        for (;;) {
            size_t n = 0;
            while (n < IAS_ARRAY_LEN(recs) && ias_spool_reader_next(r, &recs[n]) == IAS_OK)
                n++;
            if (n == 0)
                break;
            /* No fsync per chunk: the sync below (or sealing a full spool
             * segment) makes all of it durable before the journal goes. */
            if (ias_spool_append_nosync(p->spool, recs, n) != IAS_OK) {
                ok = false;
                break;
            }
            copied += n;
        }
        ias_spool_reader_free(r);
        if (!ok || ias_spool_sync(p->spool) != IAS_OK) {
            left++;
            break; /* the spool is failing: keep this and later segments */
        }
        if (ias_spool_remove(j, ids[i]) != IAS_OK)
            left++;
    }
    free(ids);
    if (copied > 0 || left > 0)
        ias_warn(NULL,
                 "publisher %s: recovered %zu event(s) from the crash journal into the spool "
                 "(some may already have been delivered); %zu segment(s) left in %s",
                 p->name, copied, left, jdir);
    if (keep)
        return j;
    ias_spool_free(j);
    if (left == 0)
        journal_rmdir(jdir);
    return NULL;
}

/* ias_publisher_free: with every event resolved, no journal is left behind.
 * Segments still holding dropped events stay for the next start. */
static void journal_close(ias_publisher *p)
{
    char dir[4200];
    size_t left;

    if (!p->journal) {
        pthread_mutex_destroy(&p->jmu);
        return;
    }
    journal_sweep(p, true);
    left = p->njsegs;
    snprintf(dir, sizeof(dir), "%s", ias_spool_dir(p->journal));
    if (left > 0)
        ias_warn(NULL, "publisher %s: %zu crash journal segment(s) kept in %s", p->name, left, dir);
    ias_spool_free(p->journal);
    p->journal = NULL;
    if (left == 0)
        journal_rmdir(dir);
    pthread_mutex_destroy(&p->jmu);
    free(p->jsegs);
}

/* Pops up to max events (a NULL-terminated chain), counting them in flight. */
static pev *pop_locked(ias_publisher *p, size_t max, size_t *n)
{
    pev *first = p->head, *last = NULL, *e = p->head;
    size_t k = 0;

    while (e && k < max) {
        p->qbytes -= e->size;
        last = e;
        e = e->next;
        k++;
    }
    if (k == 0) {
        *n = 0;
        return NULL;
    }
    p->head = e;
    if (!e)
        p->tail = NULL;
    last->next = NULL;
    p->qlen -= k;
    p->inflight = k;
    set_depth_locked(p);
    *n = k;
    return first;
}

/* Puts a chain back at the front (spool failed): order is kept. */
static void push_front_locked(ias_publisher *p, pev *chain)
{
    pev *last = chain;
    size_t k = 1;

    if (!chain)
        return;
    p->qbytes += last->size;
    while (last->next) {
        last = last->next;
        p->qbytes += last->size;
        k++;
    }
    last->next = p->head;
    p->head = chain;
    if (!p->tail)
        p->tail = last;
    p->qlen += k;
    set_depth_locked(p);
}

static void done_inflight(ias_publisher *p)
{
    pthread_mutex_lock(&p->mu);
    p->inflight = 0;
    pthread_mutex_unlock(&p->mu);
}

static int spill(ias_publisher *p, const ias_spool_rec *recs, size_t n)
{
    if (n == 0)
        return IAS_OK;
    if (ias_spool_append(p->spool, recs, n) != IAS_OK)
        return IAS_ERR;
    atomic_fetch_add_explicit(&p->n_spooled, n, memory_order_relaxed);
    ias_counter_add(p->m_spooled, n);
    ias_gauge_set(p->m_segments, (int64_t)ias_spool_segments(p->spool));
    return IAS_OK;
}

/* Writes a chain of events to the spool, freeing the ones written. On failure
 * the chain goes back to the front of the queue so nothing is dropped. */
static int spill_chain(ias_publisher *p, pev *chain)
{
    ias_spool_rec recs[SPILL_CHUNK];

    while (chain) {
        pev *e = chain, *rest;
        size_t n = 0, bytes = 0;
        pev *last = NULL;

        for (; e && n < SPILL_CHUNK && bytes < SPILL_CHUNK_BYTES; e = e->next) {
            recs[n++] = e->rec;
            bytes += e->size;
            last = e;
        }
        rest = last->next;
        last->next = NULL;
        if (spill(p, recs, n) != IAS_OK) {
            last->next = rest;
            pthread_mutex_lock(&p->mu);
            push_front_locked(p, chain);
            pthread_mutex_unlock(&p->mu);
            return IAS_ERR;
        }
        pev_release(p, chain);
        chain = rest;
    }
    return IAS_OK;
}

/* Spools the overflow list in bulk (one write + fdatasync per chunk) and makes
 * producers' unsynced spool appends durable. Runs on the publisher thread only. */
static void service_overflow(ias_publisher *p)
{
    pev *chain;

    pthread_mutex_lock(&p->mu);
    chain = p->ohead;
    p->ohead = p->otail = NULL;
    p->olen = p->obytes = 0;
    set_depth_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (chain && spill_chain(p, chain) != IAS_OK)
        ias_error(NULL, "publisher %s: cannot spool overflow events; kept in memory", p->name);
    if (atomic_exchange(&p->unsynced, false) && ias_spool_sync(p->spool) != IAS_OK)
        atomic_store(&p->unsynced, true);
}

/* ---- connection ---------------------------------------------------------- */

static void drop_conn(ias_publisher *p)
{
    if (!p->conn)
        return;
    ias_amqp_conn_free(p->conn);
    p->conn = NULL;
    atomic_store(&p->connected, false);
    ias_gauge_set(p->m_connected, 0);
}

static int try_connect(ias_publisher *p)
{
    ias_amqp_conn_opts co = {.url = p->url, .heartbeat_s = p->heartbeat_s};
    char err[300];

    if (ias_amqp_connect(&co, &p->conn, err, sizeof(err)) != IAS_OK) {
        ias_warn(NULL, "publisher %s: %s", p->name, err);
        return IAS_ERR;
    }
    amqp_confirm_select(ias_amqp_conn_state(p->conn), 1);
    if (ias_amqp_conn_check_rpc(p->conn, "confirm.select") != IAS_OK ||
        (!p->no_topology && ias_amqp_declare_topology(p->conn) != IAS_OK)) {
        drop_conn(p);
        return IAS_ERR;
    }
    p->next_tag = 1;
    p->blocked_logged = false;
    atomic_store(&p->connected, true);
    atomic_fetch_add_explicit(&p->n_connects, 1, memory_order_relaxed);
    ias_gauge_set(p->m_connected, 1);
    ias_info(NULL, "publisher %s: connected", p->name);
    return IAS_OK;
}

/* Handles one frame that is not a confirm; false if the connection is gone. */
static bool other_frame(ias_publisher *p, amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD)
        return true; /* content of a basic.return: we never set mandatory */
    if (ias_amqp_conn_on_close(p->conn, f->channel, &f->payload.method))
        return false;
    if (f->payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD && !p->blocked_logged) {
        /* Broker resource alarm: confirms stall and time out, events spool. */
        ias_warn(NULL, "publisher %s: broker blocked publishing (resource alarm)", p->name);
        p->blocked_logged = true;
    }
    return true;
}

/* Reads whatever the broker sent while we were idle (heartbeats are answered
 * inside the library call); frames may already sit in librabbitmq's buffer, so
 * drain until AMQP_STATUS_TIMEOUT rather than polling the socket. */
static void poll_conn(ias_publisher *p)
{
    struct timeval tv = {0, 0};
    amqp_frame_t f;

    while (p->conn && ias_amqp_conn_ok(p->conn)) {
        int rc = amqp_simple_wait_frame_noblock(ias_amqp_conn_state(p->conn), &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            break;
        if (ias_amqp_conn_check_status(p->conn, rc, "idle poll") != IAS_OK)
            break;
        if (!other_frame(p, &f))
            break;
    }
    if (p->conn && !ias_amqp_conn_ok(p->conn))
        drop_conn(p);
    else if (p->conn)
        amqp_maybe_release_buffers(ias_amqp_conn_state(p->conn));
}

/* ---- packs -------------------------------------------------------------- */

/* How many of recs[0..n) go out together as the next message: 1 unless
 * packing is on and the next events share recs[0]'s routing key and type, and
 * fit the caps. A body with a '\n' would break the framing, so it goes alone
 * (cJSON_PrintUnformatted never writes one, but the API takes any body). */
static size_t pack_span(const ias_publisher *p, const ias_spool_rec *recs, size_t n)
{
    size_t k = 1, bytes, ids;

    if (p->pack_max <= 1 || n < 2 || recs[0].body_len > p->pack_bytes ||
        memchr(recs[0].body, '\n', recs[0].body_len))
        return 1;
    bytes = recs[0].body_len;
    ids = strlen(recs[0].message_id) + 8;
    for (; k < n && k < p->pack_max; k++) {
        const ias_spool_rec *r = &recs[k];
        if (bytes + 1 + r->body_len > p->pack_bytes ||
            ids + strlen(r->message_id) + 8 > PACK_IDS_BYTES ||
            strcmp(r->routing_key, recs[0].routing_key) != 0 ||
            strcmp(r->type, recs[0].type) != 0 || memchr(r->body, '\n', r->body_len))
            break;
        bytes += 1 + r->body_len;
        ids += strlen(r->message_id) + 8;
    }
    return k;
}

/* Publishes recs[0..k) (from pack_span) as one message: alone, exactly as
 * without packing, or as a pack whose message_id and timestamp are those of
 * its first (oldest) event. */
static int publish_msg(ias_publisher *p, const ias_spool_rec *recs, size_t k)
{
    ias_amqp_props pr = {.message_id = recs[0].message_id,
                         .type = recs[0].type,
                         .timestamp_ms = recs[0].timestamp_ms};
    const void *body = recs[0].body;
    size_t len = recs[0].body_len;

    if (k > 1) {
        char *d = p->pack_buf;
        for (size_t i = 0; i < k; i++) {
            if (i > 0)
                *d++ = '\n';
            if (recs[i].body_len)
                memcpy(d, recs[i].body, recs[i].body_len);
            d += recs[i].body_len;
            p->pack_ids[i] = recs[i].message_id;
        }
        pr.pack_ids = p->pack_ids;
        pr.npack = k;
        body = p->pack_buf;
        len = (size_t)(d - p->pack_buf);
    }
    return ias_amqp_publish_raw(p->conn, 1, IAS_AMQP_EXCHANGE, recs[0].routing_key, &pr, body, len);
}

static void mark(unsigned char *state, size_t n, uint64_t first, uint64_t tag, bool multiple,
                 unsigned char v, size_t *pending)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t t = first + i;
        if ((multiple ? t <= tag : t == tag) && state[i] == PENDING) {
            state[i] = v;
            (*pending)--;
        }
    }
}

/* Publishes n records (packed as pack_max allows) and waits for their
 * confirms. state[i] becomes ACKED or NACKED (PENDING if unknown), the same
 * for every record of one message. IAS_OK only if every record was acked; on
 * any other outcome the connection has been dropped. */
static int publish_batch(ias_publisher *p, const ias_spool_rec *recs, size_t n,
                         unsigned char *state, int timeout_ms)
{
    amqp_connection_state_t st = ias_amqp_conn_state(p->conn);
    uint64_t first = p->next_tag, deadline;
    size_t *mfirst = ias_xmalloc((n + 1) * sizeof(*mfirst)); /* message j: records
                                                                 [mfirst[j], mfirst[j+1]) */
    unsigned char *mstate = ias_xmalloc(n);
    size_t nmsg = 0, sent = 0, pending;
    bool nacked = false;

    for (size_t i = 0; i < n; i += pack_span(p, &recs[i], n - i))
        mfirst[nmsg++] = i;
    mfirst[nmsg] = n;
    memset(mstate, PENDING, nmsg);
    for (; sent < nmsg; sent++) {
        if (publish_msg(p, &recs[mfirst[sent]], mfirst[sent + 1] - mfirst[sent]) != IAS_OK)
            break;
        p->next_tag++;
    }
    pending = sent;
    deadline = ias_now_ms() + (uint64_t)timeout_ms;
    while (pending > 0 && ias_amqp_conn_ok(p->conn)) {
        uint64_t now = ias_now_ms();
        struct timeval tv;
        amqp_frame_t f;
        int rc;

        if (now >= deadline) {
            ias_warn(NULL, "publisher %s: no confirm for %zu message(s) within %d ms", p->name,
                     pending, timeout_ms);
            break;
        }
        tv.tv_sec = (time_t)((deadline - now) / 1000);
        tv.tv_usec = (suseconds_t)((deadline - now) % 1000) * 1000;
        rc = amqp_simple_wait_frame_noblock(st, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            continue;
        if (ias_amqp_conn_check_status(p->conn, rc, "waiting for confirms") != IAS_OK)
            break;
        if (f.frame_type == AMQP_FRAME_METHOD && f.channel == 1 &&
            f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            mark(mstate, sent, first, a->delivery_tag, a->multiple, ACKED, &pending);
        } else if (f.frame_type == AMQP_FRAME_METHOD && f.channel == 1 &&
                   f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            const amqp_basic_nack_t *a = f.payload.method.decoded;
            mark(mstate, sent, first, a->delivery_tag, a->multiple, NACKED, &pending);
            nacked = true;
        } else if (!other_frame(p, &f)) {
            break;
        }
    }
    for (size_t j = 0; j < nmsg; j++)
        memset(&state[mfirst[j]], mstate[j], mfirst[j + 1] - mfirst[j]);
    for (size_t j = 0; j < sent; j++)
        if (mstate[j] == ACKED) {
            atomic_fetch_add_explicit(&p->n_messages, 1, memory_order_relaxed);
            ias_counter_inc(p->m_messages);
        }
    free(mfirst);
    free(mstate);
    if (nacked) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += state[i] == NACKED;
        atomic_fetch_add_explicit(&p->n_nacked, k, memory_order_relaxed);
        ias_counter_add(p->m_nacked, k);
        ias_warn(NULL, "publisher %s: broker nacked %zu event(s); spooling them", p->name, k);
    }
    if (pending == 0 && sent == nmsg && !nacked) {
        amqp_maybe_release_buffers(st);
        return IAS_OK;
    }
    /* Unknown or refused: back off and start over on a fresh connection, so a
     * late confirm can never be mistaken for a newer delivery tag. */
    drop_conn(p);
    return IAS_ERR;
}

static void count_confirmed(ias_publisher *p, size_t k, bool replay)
{
    atomic_fetch_add_explicit(&p->n_confirmed, k, memory_order_relaxed);
    ias_counter_add(p->m_confirmed, k);
    if (replay) {
        atomic_fetch_add_explicit(&p->n_replayed, k, memory_order_relaxed);
        ias_counter_add(p->m_replayed, k);
    }
}

/* Sends a chain from the memory queue; whatever is not confirmed is spooled. */
static int send_chain(ias_publisher *p, pev *chain, size_t n, int timeout_ms)
{
    ias_spool_rec *recs = ias_xmalloc(n * sizeof(*recs));
    unsigned char *state = ias_xmalloc(n);
    pev *e, *keep = NULL, **keep_tail = &keep;
    size_t i = 0, acked = 0;
    int rc;

    for (e = chain; e; e = e->next)
        recs[i++] = e->rec;
    rc = publish_batch(p, recs, n, state, timeout_ms);
    /* Split: confirmed events are freed, the rest are spooled. */
    i = 0;
    for (e = chain; e;) {
        pev *next = e->next;
        if (state[i++] == ACKED) {
            e->next = NULL;
            pev_release(p, e);
            acked++;
        } else {
            e->next = NULL;
            *keep_tail = e;
            keep_tail = &e->next;
        }
        e = next;
    }
    count_confirmed(p, acked, false);
    if (keep && spill_chain(p, keep) != IAS_OK)
        ias_error(NULL, "publisher %s: cannot spool unconfirmed events; kept in memory", p->name);
    done_inflight(p);
    free(recs);
    free(state);
    return rc;
}

/* Sends one batch from the memory queue without waiting; false if it was empty. */
static bool send_memory_batch(ias_publisher *p)
{
    size_t n;
    pev *chain;

    pthread_mutex_lock(&p->mu);
    chain = pop_locked(p, p->batch_max, &n);
    pthread_mutex_unlock(&p->mu);
    if (!chain)
        return false;
    (void)send_chain(p, chain, n, p->confirm_timeout_ms);
    return true;
}

/* ---- the pipelined memory path ------------------------------------------ */

static pev *ring_at(ias_publisher *p, size_t i)
{
    return p->ring[(p->ring_head + i) % p->inflight_max];
}

static void ring_set_inflight(ias_publisher *p)
{
    pthread_mutex_lock(&p->mu);
    p->inflight = p->ring_events;
    pthread_mutex_unlock(&p->mu);
}

/* Takes the message at the front of the window out of it. */
static pev *ring_pop(ias_publisher *p)
{
    pev *e = ring_at(p, 0);

    p->ring[p->ring_head] = NULL;
    p->ring_head = (p->ring_head + 1) % p->inflight_max;
    p->ring_n--;
    p->ring_events -= e->npack;
    return e;
}

/* Appends the events of message e (a chain of e->npack) to a list. */
static void chain_append(pev ***tail, pev *e)
{
    **tail = e;
    while (e->next)
        e = e->next;
    *tail = &e->next;
}

static void count_messages(ias_publisher *p, size_t k)
{
    atomic_fetch_add_explicit(&p->n_messages, k, memory_order_relaxed);
    ias_counter_add(p->m_messages, k);
}

/* Frees confirmed events at the front of the window and spools refused ones. */
static void ring_advance(ias_publisher *p)
{
    pev *nack = NULL, **ntail = &nack;
    size_t acked = 0, nacked = 0, msgs = 0;

    while (p->ring_n > 0) {
        pev *e = ring_at(p, 0);
        size_t k = e->npack;
        if (e->state == PENDING)
            break;
        (void)ring_pop(p);
        p->ring_first_tag++;
        if (e->state == ACKED) {
            pev_release(p, e);
            acked += k;
            msgs++;
        } else {
            chain_append(&ntail, e);
            nacked += k;
        }
    }
    count_confirmed(p, acked, false);
    count_messages(p, msgs);
    if (nack) {
        atomic_fetch_add_explicit(&p->n_nacked, nacked, memory_order_relaxed);
        ias_counter_add(p->m_nacked, nacked);
        ias_warn(NULL, "publisher %s: broker nacked %zu event(s); spooling them", p->name, nacked);
        if (spill_chain(p, nack) != IAS_OK)
            ias_error(NULL, "publisher %s: cannot spool nacked events; kept in memory", p->name);
    }
}

static void ring_mark(ias_publisher *p, uint64_t tag, bool multiple, unsigned char v)
{
    uint64_t first = p->ring_first_tag, end = first + p->ring_n; /* end exclusive */

    if (tag < first)
        return;
    if (!multiple) {
        if (tag < end && ring_at(p, (size_t)(tag - first))->state == PENDING)
            ring_at(p, (size_t)(tag - first))->state = v;
        return;
    }
    if (tag + 1 < end)
        end = tag + 1;
    for (uint64_t t = first; t < end; t++) {
        pev *e = ring_at(p, (size_t)(t - first));
        if (e->state == PENDING)
            e->state = v;
    }
}

/* Connection lost or a confirm overdue: everything not confirmed is spooled (it
 * may have reached the broker: at-least-once) and the connection is dropped, so
 * a late confirm can never be mistaken for a newer delivery tag. */
static void ring_fail(ias_publisher *p)
{
    pev *keep = NULL, **ktail = &keep;
    size_t acked = 0, msgs = 0;

    drop_conn(p);
    while (p->ring_n > 0) {
        pev *e = ring_pop(p);
        if (e->state == ACKED) {
            acked += e->npack;
            msgs++;
            pev_release(p, e);
        } else {
            /* A pack that was not confirmed: each of its events is spooled
             * and replayed on its own merits. */
            chain_append(&ktail, e);
        }
    }
    p->ring_head = 0;
    count_confirmed(p, acked, false);
    count_messages(p, msgs);
    if (keep && spill_chain(p, keep) != IAS_OK)
        ias_error(NULL, "publisher %s: cannot spool unconfirmed events; kept in memory", p->name);
    ring_set_inflight(p);
}

/* Reads confirms for at most wait_ms, then whatever else is already there. */
static void ring_collect(ias_publisher *p, int wait_ms)
{
    amqp_connection_state_t st = ias_amqp_conn_state(p->conn);
    struct timeval tv = {wait_ms / 1000, (suseconds_t)(wait_ms % 1000) * 1000};

    while (p->ring_n > 0 && ias_amqp_conn_ok(p->conn)) {
        amqp_frame_t f;
        int rc = amqp_simple_wait_frame_noblock(st, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            break;
        if (ias_amqp_conn_check_status(p->conn, rc, "waiting for confirms") != IAS_OK)
            break;
        tv.tv_sec = 0;
        tv.tv_usec = 0;
        if (f.frame_type == AMQP_FRAME_METHOD && f.channel == 1 &&
            f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            ring_mark(p, a->delivery_tag, a->multiple, ACKED);
        } else if (f.frame_type == AMQP_FRAME_METHOD && f.channel == 1 &&
                   f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            const amqp_basic_nack_t *a = f.payload.method.decoded;
            ring_mark(p, a->delivery_tag, a->multiple, NACKED);
        } else if (!other_frame(p, &f)) {
            break;
        }
    }
    ring_advance(p);
    if (!ias_amqp_conn_ok(p->conn)) {
        ring_fail(p);
        return;
    }
    if (p->ring_n > 0 && ias_now_ms() - ring_at(p, 0)->sent_ms >= (uint64_t)p->confirm_timeout_ms) {
        ias_warn(NULL, "publisher %s: no confirm for %zu event(s) within %d ms", p->name,
                 p->ring_events, p->confirm_timeout_ms);
        ring_fail(p);
        return;
    }
    if (p->ring_n == 0)
        amqp_maybe_release_buffers(st);
    ring_set_inflight(p);
}

/* One step of the memory path: publishes a burst if the window has room, then
 * collects confirms. False when nothing was queued or in flight. The window
 * counts events (inflight_max), whether they travel alone or packed. */
static bool pump(ias_publisher *p, bool send)
{
    size_t room = p->inflight_max - p->ring_events, n = 0, off = 0;
    pev *chain = NULL;
    bool more = false;
    uint64_t now = ias_now_ms();

    if (send && room > 0) {
        pthread_mutex_lock(&p->mu);
        chain = pop_locked(p, room < p->batch_max ? room : p->batch_max, &n);
        p->inflight = p->ring_events + n;
        more = p->qlen > 0;
        pthread_mutex_unlock(&p->mu);
    }
    if (p->ring_n == 0 && n == 0)
        return false;
    if (p->ring_n == 0) {
        p->ring_head = 0;
        p->ring_first_tag = p->next_tag;
    }
    for (pev *e = chain; e; e = e->next)
        p->scratch[off++] = e->rec;
    off = 0;
    /* Each message joins the window as the chain of its events, headed by the
     * first; the ring never holds more messages than events, so inflight_max
     * slots are enough. */
    for (pev *e = chain; e;) {
        pev *last = e, *next;
        size_t k = pack_span(p, &p->scratch[off], n - off);

        for (size_t j = 1; j < k; j++)
            last = last->next;
        next = last->next;
        last->next = NULL;
        e->npack = k;
        e->state = PENDING;
        e->sent_ms = now;
        p->ring[(p->ring_head + p->ring_n) % p->inflight_max] = e;
        p->ring_n++;
        p->ring_events += k;
        p->next_tag++;
        /* After a failure the rest only joins the window, to be spooled. */
        if (ias_amqp_conn_ok(p->conn) && publish_msg(p, &p->scratch[off], k) != IAS_OK)
            ias_warn(NULL, "publisher %s: publish failed: %s", p->name,
                     ias_amqp_conn_error(p->conn));
        off += k;
        e = next;
    }
    if (!ias_amqp_conn_ok(p->conn)) {
        ring_fail(p);
        return true;
    }
    /* More to send and room for it: only pick up the confirms already there. */
    ring_collect(p, more && p->ring_events < p->inflight_max ? 0 : PUMP_WAIT_MS);
    return true;
}

/* Waits for every confirm of the window (before a replay or at shutdown). */
static void ring_flush(ias_publisher *p)
{
    while (p->ring_n > 0 && p->conn)
        (void)pump(p, false);
    if (p->ring_n > 0)
        ring_fail(p);
}

/* ---- replay -------------------------------------------------------------- */

/* Replays one sealed segment. The segment is deleted once each of its records
 * was either confirmed or copied into a newer segment, so an interrupted replay
 * does not duplicate what was already confirmed. */
static int replay_segment(ias_publisher *p, uint64_t id)
{
    ias_spool_reader *r;
    ias_spool_rec *recs = ias_xmalloc(p->batch_max * sizeof(*recs));
    unsigned char *state = ias_xmalloc(p->batch_max);
    size_t total = 0;
    int rc = IAS_OK;

    if (ias_spool_reader_open(p->spool, id, &r) != IAS_OK) {
        /* Unreadable: move it aside rather than retry it forever. */
        ias_error(NULL, "publisher %s: spool segment %" PRIu64 " unreadable; quarantined", p->name,
                  id);
        if (ias_spool_quarantine(p->spool, id) != IAS_OK)
            ias_error(NULL, "publisher %s: cannot quarantine segment %" PRIu64, p->name, id);
        free(recs);
        free(state);
        return IAS_ERR;
    }
    for (;;) {
        size_t n = 0;
        while (n < p->batch_max && ias_spool_reader_next(r, &recs[n]) == IAS_OK)
            n++;
        if (n == 0)
            break;
        if (publish_batch(p, recs, n, state, p->confirm_timeout_ms) == IAS_OK) {
            count_confirmed(p, n, true);
            total += n;
            /* Keep the hot path's queue moving during a long replay. */
            service_overflow(p);
            if (p->conn)
                (void)send_memory_batch(p);
            if (!p->conn) {
                rc = IAS_ERR;
                goto respool_rest;
            }
            continue;
        }
        /* Copy the unconfirmed part of this batch and the unread rest of the
         * segment into a new segment, then the old one can go. */
        {
            size_t acked = 0, k = 0;
            for (size_t i = 0; i < n; i++) {
                if (state[i] == ACKED)
                    acked++;
                else
                    recs[k++] = recs[i];
            }
            count_confirmed(p, acked, true);
            if (spill(p, recs, k) != IAS_OK) {
                ias_warn(NULL,
                         "publisher %s: cannot re-spool; segment %" PRIu64
                         " stays and may be replayed with duplicates",
                         p->name, id);
                ias_spool_reader_free(r);
                free(recs);
                free(state);
                return IAS_ERR;
            }
        }
        rc = IAS_ERR;
        goto respool_rest;
    }
    goto done;

respool_rest:
    for (;;) {
        size_t n = 0;
        while (n < p->batch_max && ias_spool_reader_next(r, &recs[n]) == IAS_OK)
            n++;
        if (n == 0)
            break;
        if (spill(p, recs, n) != IAS_OK) {
            ias_warn(NULL,
                     "publisher %s: cannot re-spool; segment %" PRIu64
                     " stays and may be replayed with duplicates",
                     p->name, id);
            ias_spool_reader_free(r);
            free(recs);
            free(state);
            return IAS_ERR;
        }
    }
done:
    if (ias_spool_reader_skipped(r) > 0)
        ias_warn(NULL, "publisher %s: segment %" PRIu64 " had %zu damaged bytes (ignored)", p->name,
                 id, ias_spool_reader_skipped(r));
    ias_spool_reader_free(r);
    free(recs);
    free(state);
    if (ias_spool_remove(p->spool, id) != IAS_OK)
        return IAS_ERR;
    ias_gauge_set(p->m_segments, (int64_t)ias_spool_segments(p->spool));
    if (total > 0)
        ias_info(NULL, "publisher %s: replayed %zu event(s) from spool segment %" PRIu64, p->name,
                 total, id);
    return rc;
}

static bool stopping(ias_publisher *p)
{
    bool s;

    pthread_mutex_lock(&p->mu);
    s = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return s;
}

static int replay_all(ias_publisher *p)
{
    uint64_t *ids;
    size_t n;
    int rc = IAS_OK;

    if (ias_spool_list(p->spool, &ids, &n) != IAS_OK)
        return IAS_ERR;
    for (size_t i = 0; i < n && p->conn && !stopping(p); i++) {
        if (replay_segment(p, ids[i]) != IAS_OK) {
            rc = IAS_ERR;
            break;
        }
    }
    free(ids);
    return rc;
}

/* ---- the thread ---------------------------------------------------------- */

/* Everything queued goes to the spool (broker away or shutting down). */
static int spill_queue(ias_publisher *p)
{
    size_t n;
    pev *chain;
    int rc = IAS_OK;

    pthread_mutex_lock(&p->mu);
    chain = pop_locked(p, SIZE_MAX, &n);
    pthread_mutex_unlock(&p->mu);
    if (chain && spill_chain(p, chain) != IAS_OK) {
        ias_error(NULL, "publisher %s: spool write failed; %zu event(s) held in memory", p->name,
                  n);
        rc = IAS_ERR;
    }
    done_inflight(p);
    return rc;
}

/* Sleeps until ms pass, an event arrives (unless wait_anyway) or stop. */
static void wait_work(ias_publisher *p, uint64_t ms, bool wait_anyway)
{
    struct timespec ts;

    if (ms == 0)
        return;
    pthread_mutex_lock(&p->mu);
    if (!p->stopping && (wait_anyway || (p->qlen == 0 && p->olen == 0))) {
        deadline_ts(&ts, (int)(ms > 60000 ? 60000 : ms));
        (void)pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
}

/* With pack_wait_ms, how much longer the queue may fill before it is sent: 0
 * once it holds a full pack (pack_max events or pack_max_bytes), its oldest
 * event has waited pack_wait_ms, or the publisher is stopping. */
static uint64_t pack_hold_ms(ias_publisher *p)
{
    uint64_t hold = 0;

    if (p->pack_wait_ms <= 0)
        return 0;
    pthread_mutex_lock(&p->mu);
    if (p->head && !p->stopping && p->qlen < p->pack_max && p->qbytes < p->pack_bytes) {
        uint64_t age = ias_now_ms() - p->head->queued_ms;
        hold = age < (uint64_t)p->pack_wait_ms ? (uint64_t)p->pack_wait_ms - age : 0;
    }
    pthread_mutex_unlock(&p->mu);
    return hold;
}

/* Sleeps up to ms while a pack fills; producers signal when it is full. */
static void wait_pack(ias_publisher *p, uint64_t ms)
{
    struct timespec ts;

    pthread_mutex_lock(&p->mu);
    if (!p->stopping && p->qlen < p->pack_max) {
        deadline_ts(&ts, (int)ms);
        (void)pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
}

static void shutdown_drain(ias_publisher *p)
{
    uint64_t deadline = ias_now_ms() + (uint64_t)p->drain_timeout_ms;
    pev *chain;
    size_t n;

    ring_flush(p);
    while (p->conn && ias_now_ms() < deadline) {
        uint64_t left = deadline - ias_now_ms();
        pthread_mutex_lock(&p->mu);
        chain = pop_locked(p, p->batch_max, &n);
        pthread_mutex_unlock(&p->mu);
        if (!chain)
            break;
        (void)send_chain(
            p, chain, n,
            (int)(left < (uint64_t)p->confirm_timeout_ms ? left : (uint64_t)p->confirm_timeout_ms));
    }
    pthread_mutex_lock(&p->mu);
    p->closed = true; /* from now on publish() writes to the spool itself */
    chain = pop_locked(p, SIZE_MAX, &n);
    pthread_mutex_unlock(&p->mu);
    service_overflow(p);
    if (chain && spill_chain(p, chain) != IAS_OK) {
        pthread_mutex_lock(&p->mu);
        chain = pop_locked(p, SIZE_MAX, &n);
        pthread_mutex_unlock(&p->mu);
        ias_error(NULL, "publisher %s: spool write failed at shutdown: %zu event(s) lost", p->name,
                  n);
        pev_free_chain(chain);
    }
    done_inflight(p);
    drop_conn(p);
}

static void *publisher_main(void *arg)
{
    ias_publisher *p = arg;
    int backoff = p->backoff_min_ms;
    uint64_t next_try = 0, hold;

#define BACK_OFF()                                                                                 \
    do {                                                                                           \
        next_try = ias_now_ms() + jitter(p, backoff);                                              \
        backoff = backoff >= p->backoff_max_ms / 2 ? p->backoff_max_ms : backoff * 2;              \
    } while (0)

    for (;;) {
        if (stopping(p))
            break;
        service_overflow(p);
        journal_sweep(p, false);
        if (!p->conn) {
            uint64_t now = ias_now_ms();
            if (now >= next_try) {
                if (try_connect(p) == IAS_OK)
                    backoff = p->backoff_min_ms;
                else
                    BACK_OFF();
            }
            if (!p->conn) {
                /* Broker away: everything goes to the spool. */
                bool failed = spill_queue(p) != IAS_OK;
                now = ias_now_ms();
                wait_work(p, next_try > now ? next_try - now : 0, failed);
                continue;
            }
        }
        if (ias_spool_segments(p->spool) > 0) {
            if (p->ring_n > 0) {
                ring_flush(p);
                if (!p->conn)
                    BACK_OFF();
                continue;
            }
            if (replay_all(p) != IAS_OK) {
                if (!p->conn)
                    BACK_OFF();
                else
                    wait_work(p, 1000, true); /* local trouble: do not spin */
            }
            continue;
        }
        hold = pack_hold_ms(p);
        if (hold > 0) {
            /* Let the pack fill: only collect confirms meanwhile (at most
             * PUMP_WAIT_MS per pass), or sleep until it is full. */
            if (p->ring_n > 0)
                (void)pump(p, false);
            else
                wait_pack(p, hold);
            if (!p->conn)
                BACK_OFF();
            continue;
        }
        if (pump(p, true)) {
            if (!p->conn)
                BACK_OFF();
            continue;
        }
        wait_work(p, IDLE_POLL_MS, false);
        poll_conn(p);
    }
#undef BACK_OFF
    shutdown_drain(p);
    return NULL;
}

/* ---- public API ---------------------------------------------------------- */

static char *metric_label(const char *name)
{
    for (const char *s = name; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return ias_xasprintf("publisher=\"invalid\"");
    }
    return ias_xasprintf("publisher=\"%s\"", name);
}

ias_publisher *ias_publisher_new(const ias_publisher_opts *o)
{
    ias_publisher *p;
    pthread_condattr_t ca;
    char *label;

    if (!o || !o->url || !*o->url || !o->spool_dir || !*o->spool_dir) {
        ias_error(NULL, "publisher: url and spool_dir are required");
        return NULL;
    }
    if (o->confirm_timeout_ms < 0 || o->drain_timeout_ms < 0 || o->reconnect_min_ms < 0 ||
        o->reconnect_max_ms < 0 || (o->name && strlen(o->name) > 64)) {
        ias_error(NULL, "publisher: invalid options");
        return NULL;
    }
    p = ias_xcalloc(1, sizeof(*p));
    p->url = ias_xstrdup(o->url);
    p->name = ias_xstrdup(o->name ? o->name : "default");
    p->cap = o->queue_capacity ? o->queue_capacity : 4096;
    p->max_bytes = o->queue_max_bytes ? o->queue_max_bytes : 64 * 1024 * 1024;
    p->batch_max = o->batch_max ? o->batch_max : 256;
    if (p->batch_max > 4096)
        p->batch_max = 4096;
    p->inflight_max = o->inflight_max ? o->inflight_max : 4 * p->batch_max;
    if (p->inflight_max < p->batch_max)
        p->inflight_max = p->batch_max;
    p->ocap = o->overflow_capacity ? o->overflow_capacity : 4 * p->cap;
    p->ring = ias_xcalloc(p->inflight_max, sizeof(*p->ring));
    p->scratch = ias_xcalloc(p->batch_max, sizeof(*p->scratch));
    p->pack_max = o->pack_max > 1 ? o->pack_max : 1;
    if (p->pack_max > IAS_AMQP_PACK_MAX)
        p->pack_max = IAS_AMQP_PACK_MAX;
    p->pack_bytes = o->pack_max_bytes ? o->pack_max_bytes : PACK_BYTES_DEFAULT;
    if (p->pack_bytes > IAS_AMQP_BODY_MAX)
        p->pack_bytes = IAS_AMQP_BODY_MAX;
    p->pack_wait_ms = p->pack_max > 1 && o->pack_wait_ms > 0 ? o->pack_wait_ms : 0;
    if (p->pack_wait_ms > 1000)
        p->pack_wait_ms = 1000;
    if (p->pack_max > 1) {
        p->pack_buf = ias_xmalloc(p->pack_bytes);
        p->pack_ids = ias_xcalloc(p->pack_max, sizeof(*p->pack_ids));
    }
    p->confirm_timeout_ms = o->confirm_timeout_ms ? o->confirm_timeout_ms : 5000;
    p->drain_timeout_ms = o->drain_timeout_ms ? o->drain_timeout_ms : 3000;
    p->heartbeat_s = o->heartbeat_s;
    p->backoff_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : 200;
    p->backoff_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : 15000;
    if (p->backoff_max_ms < p->backoff_min_ms)
        p->backoff_max_ms = p->backoff_min_ms;
    p->no_topology = o->no_topology;
    p->rng = ias_now_us() ^ ((uint64_t)(uintptr_t)p << 16) ^ 0x9E3779B97F4A7C15ull;
    if (ias_spool_open(o->spool_dir, o->spool_segment_bytes, o->spool_max_bytes, &p->spool) !=
        IAS_OK) {
        free(p->pack_ids);
        free(p->pack_buf);
        free(p->scratch);
        free(p->ring);
        free(p->url);
        free(p->name);
        free(p);
        return NULL;
    }
    label = metric_label(p->name);
    p->m_published =
        ias_metrics_counter("ias_amqp_published_total", "Events accepted by the publisher.", label);
    p->m_confirmed =
        ias_metrics_counter("ias_amqp_confirmed_total", "Events confirmed by the broker.", label);
    p->m_spooled =
        ias_metrics_counter("ias_amqp_spooled_total", "Events written to the local spool.", label);
    p->m_replayed = ias_metrics_counter("ias_amqp_replayed_total",
                                        "Spooled events confirmed by the broker.", label);
    p->m_nacked =
        ias_metrics_counter("ias_amqp_nacked_total", "Events refused by the broker.", label);
    p->m_messages = ias_metrics_counter(
        "ias_amqp_messages_total",
        "AMQP messages confirmed by the broker (a pack carries several events).", label);
    p->m_depth =
        ias_metrics_gauge("ias_amqp_queue_depth", "Events in the publisher's memory queue.", label);
    p->m_segments =
        ias_metrics_gauge("ias_amqp_spool_segments", "Segment files in the spool.", label);
    p->m_connected =
        ias_metrics_gauge("ias_amqp_connected", "1 while connected to the broker.", label);
    free(label);
    {
        char jdir[4200];
        snprintf(jdir, sizeof(jdir), "%s/" JOURNAL_SUBDIR, o->spool_dir);
        p->journal =
            journal_recover(p, jdir, o->spool_max_bytes, o->spool_segment_bytes, o->journal);
        if (o->journal && !p->journal)
            ias_error(NULL, "publisher %s: cannot open the crash journal %s; running without it",
                      p->name, jdir);
        if (pthread_mutex_init(&p->jmu, NULL) != 0)
            ias_die("publisher: pthread init failed");
    }
    ias_gauge_set(p->m_segments, (int64_t)ias_spool_segments(p->spool));
    ias_gauge_set(p->m_depth, 0);
    ias_gauge_set(p->m_connected, 0);

    if (pthread_mutex_init(&p->mu, NULL) != 0 || pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&p->cv, &ca) != 0)
        ias_die("publisher: pthread init failed");
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->thread, NULL, publisher_main, p) != 0) {
        ias_error(NULL, "publisher: cannot start thread: %s", strerror(errno));
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        journal_close(p);
        ias_spool_free(p->spool);
        free(p->pack_ids);
        free(p->pack_buf);
        free(p->scratch);
        free(p->ring);
        free(p->url);
        free(p->name);
        free(p);
        return NULL;
    }
    (void)pthread_setname_np(p->thread, "ias-amqp-pub");
    return p;
}

int ias_publisher_publish(ias_publisher *p, const char *routing_key, const char *message_id,
                          const char *type, const void *body, size_t len)
{
    pev *e;
    int rc;

    if (!type)
        type = "";
    if (!routing_key || !*routing_key || strlen(routing_key) > IAS_AMQP_SHORTSTR_MAX ||
        !message_id || !*message_id || strlen(message_id) > IAS_AMQP_SHORTSTR_MAX ||
        strlen(type) > IAS_AMQP_SHORTSTR_MAX || (!body && len) || len > IAS_AMQP_BODY_MAX) {
        ias_error(NULL, "publisher %s: invalid event (missing or over-long field)", p->name);
        return IAS_ERR;
    }
    e = pev_new(routing_key, message_id, type, body, len);
    e->jseg = 0;
    if (p->journal)
        journal_add(p, e);
    pthread_mutex_lock(&p->mu);
    if (!p->closed && p->qlen < p->cap && p->qbytes + e->size <= p->max_bytes) {
        if (p->tail)
            p->tail->next = e;
        else
            p->head = e;
        p->tail = e;
        p->qlen++;
        p->qbytes += e->size;
        set_depth_locked(p);
        /* While a pack fills the thread waits for it to be full, not for
         * every event. */
        if (p->pack_wait_ms <= 0 || p->qlen == 1 || p->qlen >= p->pack_max ||
            p->qbytes >= p->pack_bytes)
            pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        atomic_fetch_add_explicit(&p->n_published, 1, memory_order_relaxed);
        ias_counter_inc(p->m_published);
        return IAS_OK;
    }
    /* Queue full: the overflow list, spooled in bulk by the thread. The queue's
     * byte cap applies to the overflow too. */
    if (!p->closed && p->olen < p->ocap && p->obytes + e->size <= p->max_bytes) {
        if (p->otail)
            p->otail->next = e;
        else
            p->ohead = e;
        p->otail = e;
        p->olen++;
        p->obytes += e->size;
        set_depth_locked(p);
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        atomic_fetch_add_explicit(&p->n_published, 1, memory_order_relaxed);
        ias_counter_inc(p->m_published);
        return IAS_OK;
    }
    pthread_mutex_unlock(&p->mu);
    /* Both full (or the thread is gone): write() only, never an fsync on the
     * caller's thread; the publisher thread (or ias_publisher_free) syncs it. */
    rc = ias_spool_append_nosync(p->spool, &e->rec, 1);
    if (rc == IAS_OK) {
        journal_release(p, e); /* the spool copy survives a process crash too */
        atomic_store(&p->unsynced, true);
        pthread_cond_signal(&p->cv); /* the thread syncs it on its next pass */
        atomic_fetch_add_explicit(&p->n_spooled, 1, memory_order_relaxed);
        ias_counter_inc(p->m_spooled);
    }
    free(e);
    if (rc != IAS_OK) {
        ias_error(NULL, "publisher %s: queue full and spool write failed: event %s dropped",
                  p->name, message_id);
        return IAS_ERR;
    }
    atomic_fetch_add_explicit(&p->n_published, 1, memory_order_relaxed);
    ias_counter_inc(p->m_published);
    return IAS_OK;
}

void ias_publisher_stats_get(ias_publisher *p, ias_publisher_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->published = atomic_load_explicit(&p->n_published, memory_order_relaxed);
    out->confirmed = atomic_load_explicit(&p->n_confirmed, memory_order_relaxed);
    out->spooled = atomic_load_explicit(&p->n_spooled, memory_order_relaxed);
    out->replayed = atomic_load_explicit(&p->n_replayed, memory_order_relaxed);
    out->nacked = atomic_load_explicit(&p->n_nacked, memory_order_relaxed);
    out->connects = atomic_load_explicit(&p->n_connects, memory_order_relaxed);
    out->messages = atomic_load_explicit(&p->n_messages, memory_order_relaxed);
    out->connected = atomic_load(&p->connected);
    pthread_mutex_lock(&p->mu);
    out->queue_depth = p->qlen + p->olen;
    out->inflight = p->inflight;
    pthread_mutex_unlock(&p->mu);
    out->spool_segments = ias_spool_segments(p->spool);
}

int ias_publisher_wait_idle(ias_publisher *p, int timeout_ms)
{
    uint64_t deadline = ias_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    struct timespec ts = {0, 10 * 1000 * 1000};

    for (;;) {
        ias_publisher_stats s;
        ias_publisher_stats_get(p, &s);
        if (s.queue_depth == 0 && s.inflight == 0 && s.spool_segments == 0)
            return IAS_OK;
        if (ias_now_ms() >= deadline)
            return IAS_AGAIN;
        nanosleep(&ts, NULL);
    }
}

void ias_publisher_free(ias_publisher *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pev_free_chain(p->ohead); /* only if the last overflow spool write failed */
    free(p->pack_ids);
    free(p->pack_buf);
    free(p->scratch);
    free(p->ring);
    ias_gauge_set(p->m_depth, 0);
    ias_gauge_set(p->m_connected, 0);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    journal_close(p);
    ias_spool_free(p->spool);
    free(p->url);
    free(p->name);
    free(p);
}
