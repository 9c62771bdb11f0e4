/* Consumer loop for a dedicated thread: manual acks after the handler's effect
 * is committed, RETRY by republishing with an attempt counter, dead-lettering
 * by reject(requeue=false), reconnect with backoff, and a stop flag.
 *
 * Channel 1 consumes; channel 2 is in tx mode and only used to republish a
 * RETRY copy to the queue: tx.commit-ok means the copy is enqueued (and on disk
 * for a durable queue), and only then is the original acked. tx.commit is a
 * synchronous RPC, during which librabbitmq queues deliveries arriving on
 * channel 1; amqp_consume_message returns those queued frames first.
 *
 * A pack delivery (content_type application/x-ndjson, one event per line, ids
 * in x-ias-message-ids) is unpacked: handlers see each event on its own. Its
 * events that were not ACKed leave it individually before the pack is acked:
 * on channel 2, in the same kind of transaction, RETRY ones as one copy to the
 * queue and dead ones each alone to ias.events.dlx. */
#include "ias/amqp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <amqp.h>

#include "ias/log.h"
#include "ias/metrics.h"

#define POLL_MS 250 /* stop flag latency and idle wake-up */
#define RETRY_CAP_MS 5000
#define MAX_HEADERS 64
/* Most events one pack may carry (its ids must fit in one 128 KiB frame). */
#define PACK_EVENTS_MAX 16384

typedef struct consumer {
    const ias_consumer_opts *o;
    const char *name;
    int prefetch, max_attempts, retry_delay_ms, backoff_min, backoff_max, batch_wait_ms;
    size_t max_body, batch_max;
    ias_amqp_conn *conn;
    char queue[IAS_AMQP_SHORTSTR_MAX + 1];
    ias_counter *m_ack, *m_retry, *m_reject;
    uint64_t rng;
} consumer;

static bool stop_requested(const consumer *c)
{
    return atomic_load(c->o->stop);
}

/* Sleeps up to ms in slices, returning early when asked to stop. */
static void sleep_stoppable(const consumer *c, int ms)
{
    while (ms > 0 && !stop_requested(c)) {
        int slice = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

static void copy_bytes(char *dst, size_t dstlen, amqp_bytes_t b)
{
    size_t n = b.len < dstlen - 1 ? b.len : dstlen - 1;
    if (n)
        memcpy(dst, b.bytes, n);
    dst[n] = '\0';
}

static const amqp_table_entry_t *find_header(const amqp_basic_properties_t *p, const char *key)
{
    size_t klen = strlen(key);

    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return NULL;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (e->key.len == klen && memcmp(e->key.bytes, key, klen) == 0)
            return e;
    }
    return NULL;
}

static int64_t field_int(const amqp_field_value_t *v)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        return v->value.i8;
    case AMQP_FIELD_KIND_U8:
        return v->value.u8;
    case AMQP_FIELD_KIND_I16:
        return v->value.i16;
    case AMQP_FIELD_KIND_U16:
        return v->value.u16;
    case AMQP_FIELD_KIND_I32:
        return v->value.i32;
    case AMQP_FIELD_KIND_U32:
        return v->value.u32;
    case AMQP_FIELD_KIND_I64:
        return v->value.i64;
    case AMQP_FIELD_KIND_U64:
        return v->value.u64 > INT32_MAX ? INT32_MAX : (int64_t)v->value.u64;
    default:
        return 0;
    }
}

static int ack(consumer *c, uint64_t tag)
{
    int rc = amqp_basic_ack(ias_amqp_conn_state(c->conn), 1, tag, 0);
    return ias_amqp_conn_check_status(c->conn, rc, "basic.ack");
}

/* reject(requeue=false): the queue's x-dead-letter-exchange takes it. */
static int dead_letter(consumer *c, uint64_t tag)
{
    int rc = amqp_basic_reject(ias_amqp_conn_state(c->conn), 1, tag, 0);
    ias_counter_inc(c->m_reject);
    return ias_amqp_conn_check_status(c->conn, rc, "basic.reject");
}

static bool bytes_is(amqp_bytes_t b, const char *s)
{
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.bytes, s, n) == 0);
}

/* Copies the headers of p into out (at most cap), leaving out those named in
 * skip: the ones the caller is about to set again. */
static int keep_headers(const amqp_basic_properties_t *p, amqp_table_entry_t *out, int cap,
                        const char *const *skip, size_t nskip)
{
    int n = 0;

    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return 0;
    for (int i = 0; i < p->headers.num_entries && n < cap; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        bool drop = false;
        for (size_t j = 0; j < nskip && !drop; j++)
            drop = bytes_is(e->key, skip[j]);
        if (!drop)
            out[n++] = *e;
    }
    return n;
}

static void set_header(amqp_table_entry_t *e, const char *key, const char *val)
{
    e->key = amqp_cstring_bytes(key);
    e->value.kind = AMQP_FIELD_KIND_UTF8;
    e->value.value.bytes = amqp_cstring_bytes(val);
}

static void set_attempts(amqp_table_entry_t *e, int attempt)
{
    e->key = amqp_cstring_bytes(IAS_AMQP_HDR_ATTEMPTS);
    e->value.kind = AMQP_FIELD_KIND_I32;
    e->value.value.i32 = attempt;
}

/* Republishes a copy with x-ias-attempts = attempt to this queue only (the
 * default exchange), commits, then acks the original. */
static int republish(consumer *c, const amqp_envelope_t *env, const ias_amqp_msg *m)
{
    static const char *const skip[] = {IAS_AMQP_HDR_ATTEMPTS, IAS_AMQP_HDR_ROUTING_KEY};
    amqp_connection_state_t st = ias_amqp_conn_state(c->conn);
    amqp_basic_properties_t props = env->message.properties;
    amqp_table_entry_t hdr[MAX_HEADERS + 2];
    int n, rc;

    n = keep_headers(&props, hdr, MAX_HEADERS, skip, IAS_ARRAY_LEN(skip));
    set_attempts(&hdr[n++], m->attempt);
    set_header(&hdr[n++], IAS_AMQP_HDR_ROUTING_KEY, m->routing_key);
    props._flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.headers.num_entries = n;
    props.headers.entries = hdr;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;

    rc = amqp_basic_publish(st, 2, amqp_empty_bytes, amqp_cstring_bytes(c->queue), 0, 0, &props,
                            env->message.body);
    if (ias_amqp_conn_check_status(c->conn, rc, "basic.publish (retry)") != IAS_OK)
        return IAS_ERR;
    amqp_tx_commit(st, 2);
    if (ias_amqp_conn_check_rpc(c->conn, "tx.commit (retry)") != IAS_OK)
        return IAS_ERR;
    ias_counter_inc(c->m_retry);
    return ack(c, env->delivery_tag);
}

/* ---- deliveries and the events they carry -------------------------------- */

/* One event as handed to a handler, with the buffers its strings point to. */
typedef struct sub {
    char mid[IAS_AMQP_SHORTSTR_MAX + 1], reason[256];
    ias_amqp_msg m;
    ias_consume_result res;
    bool handled; /* false: decided before any handler (body over max_body) */
} sub;

/* One delivery: a single event or a pack, its events subs[first, first + n). */
typedef struct dlv {
    const amqp_envelope_t *env;
    char rk[IAS_AMQP_SHORTSTR_MAX + 1], type[IAS_AMQP_SHORTSTR_MAX + 1];
    const amqp_array_t *ids; /* a pack's x-ias-message-ids; NULL: one event */
    const char *bad;         /* a malformed pack, dead-lettered whole: why */
    int attempt;
    size_t first, n;
} dlv;

/* A pack's id array, NULL if env is not a pack (content_type application/json
 * or none: one event, exactly as before packs existed). *malformed is set when
 * it claims to be a pack without a usable id array. */
static const amqp_array_t *pack_ids(const amqp_envelope_t *env, bool *malformed)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    const amqp_table_entry_t *h;

    *malformed = false;
    if (!(p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG) ||
        !bytes_is(p->content_type, IAS_AMQP_CONTENT_TYPE_PACK))
        return NULL;
    h = find_header(p, IAS_AMQP_HDR_MESSAGE_IDS);
    if (!h || h->value.kind != AMQP_FIELD_KIND_ARRAY || h->value.value.array.num_entries < 1 ||
        h->value.value.array.num_entries > PACK_EVENTS_MAX) {
        *malformed = true;
        return NULL;
    }
    return &h->value.value.array;
}

/* Events in a delivery, for batch sizing (a malformed pack counts as one). */
static size_t delivery_events(const amqp_envelope_t *env)
{
    bool malformed;
    const amqp_array_t *ids = pack_ids(env, &malformed);
    return ids ? (size_t)ids->num_entries : 1;
}

static void scan_delivery(const amqp_envelope_t *env, dlv *d)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    const amqp_table_entry_t *h;
    int64_t prev = 0;
    bool malformed;

    memset(d, 0, sizeof(*d));
    d->env = env;
    copy_bytes(d->rk, sizeof(d->rk), env->routing_key);
    if ((h = find_header(p, IAS_AMQP_HDR_ROUTING_KEY)) &&
        (h->value.kind == AMQP_FIELD_KIND_UTF8 || h->value.kind == AMQP_FIELD_KIND_BYTES))
        copy_bytes(d->rk, sizeof(d->rk), h->value.value.bytes);
    if (p->_flags & AMQP_BASIC_TYPE_FLAG)
        copy_bytes(d->type, sizeof(d->type), p->type);
    if ((h = find_header(p, IAS_AMQP_HDR_ATTEMPTS)))
        prev = field_int(&h->value);
    if (prev < 0 || prev > 1000000)
        prev = 0;
    d->attempt = (int)prev + 1;
    d->n = 1;
    d->ids = pack_ids(env, &malformed);
    if (malformed) {
        d->bad = "no valid " IAS_AMQP_HDR_MESSAGE_IDS " header";
        d->n = 0;
        return;
    }
    if (d->ids) {
        const char *b = env->message.body.bytes, *end = b + env->message.body.len;
        size_t lines = 1;
        for (int i = 0; i < d->ids->num_entries; i++) {
            int k = d->ids->entries[i].kind;
            if (k != AMQP_FIELD_KIND_UTF8 && k != AMQP_FIELD_KIND_BYTES) {
                d->bad = "a message id that is not a string";
                d->n = 0;
                return;
            }
        }
        while (b < end && (b = memchr(b, '\n', (size_t)(end - b))) != NULL) {
            lines++;
            b++;
        }
        if (lines != (size_t)d->ids->num_entries) {
            d->bad = "body lines and message ids do not match";
            d->n = 0;
            return;
        }
        d->n = lines;
    }
}

/* Fills subs[d->first, d->first + d->n): line i of a pack gets message id i. */
static void fill_subs(const consumer *c, const dlv *d, sub *subs)
{
    const amqp_envelope_t *env = d->env;
    const amqp_basic_properties_t *p = &env->message.properties;
    const char *b = env->message.body.bytes, *end = b + env->message.body.len;

    for (size_t i = 0; i < d->n; i++) {
        sub *s = &subs[d->first + i];
        const char *nl = NULL;
        size_t len;

        s->reason[0] = '\0';
        if (d->ids) {
            nl = b < end ? memchr(b, '\n', (size_t)(end - b)) : NULL;
            len = nl ? (size_t)(nl - b) : (size_t)(end - b);
            copy_bytes(s->mid, sizeof(s->mid), d->ids->entries[i].value.bytes);
        } else {
            len = env->message.body.len;
            s->mid[0] = '\0';
            if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
                copy_bytes(s->mid, sizeof(s->mid), p->message_id);
        }
        memset(&s->m, 0, sizeof(s->m));
        s->m.queue = c->queue;
        s->m.routing_key = d->rk;
        s->m.message_id = s->mid;
        s->m.type = d->type;
        s->m.body = b;
        s->m.body_len = len;
        s->m.timestamp_s = (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) ? (int64_t)p->timestamp : 0;
        s->m.attempt = d->attempt;
        s->m.redelivered = env->redelivered;
        s->m.reason = s->reason;
        s->m.reason_len = sizeof(s->reason);
        s->res = IAS_CONSUME_REJECT;
        s->handled = len <= c->max_body;
        if (!s->handled)
            snprintf(s->reason, sizeof(s->reason), "body of %zu bytes over %zu", len, c->max_body);
        if (d->ids && nl)
            b = nl + 1;
    }
}

/* The pause before republishing a RETRY of attempt. */
static int retry_pause_ms(const consumer *c, int attempt)
{
    int shift = attempt - 1 < 16 ? attempt - 1 : 16;
    int64_t d;

    if (c->retry_delay_ms <= 0)
        return 0;
    d = (int64_t)c->retry_delay_ms << shift;
    return (int)(d > RETRY_CAP_MS ? RETRY_CAP_MS : d);
}

static const char *reason_of(sub *s, const char *dflt)
{
    s->reason[sizeof(s->reason) - 1] = '\0';
    return s->reason[0] ? s->reason : dflt;
}

/* Acts on the verdict for a delivery that is one event (the pause before a
 * RETRY republish was already taken). */
static int dispose(consumer *c, const dlv *d, sub *s)
{
    const amqp_envelope_t *env = d->env;

    switch (s->res) {
    case IAS_CONSUME_ACK:
        ias_counter_inc(c->m_ack);
        return ack(c, env->delivery_tag);
    case IAS_CONSUME_RETRY:
        if (s->m.attempt >= c->max_attempts) {
            ias_warn(NULL, "consumer %s: message %s (%s) on %s dead-lettered after %d attempts: %s",
                     c->name, s->mid, d->rk, c->queue, s->m.attempt, reason_of(s, "retry"));
            return dead_letter(c, env->delivery_tag);
        }
        ias_info(NULL, "consumer %s: message %s (%s) on %s will be retried (attempt %d/%d): %s",
                 c->name, s->mid, d->rk, c->queue, s->m.attempt, c->max_attempts,
                 reason_of(s, "retry"));
        return republish(c, env, &s->m);
    case IAS_CONSUME_REJECT:
    default:
        ias_warn(NULL, "consumer %s: message %s (%s) on %s dead-lettered: %s", c->name, s->mid,
                 d->rk, c->queue, reason_of(s, "rejected by handler"));
        return dead_letter(c, env->delivery_tag);
    }
}

/* One event of a pack, alone, to the dead-letter exchange with its original
 * routing key (as the queue's own dead-lettering would route it), the pack's
 * properties and headers (x-ias-attempts and x-ias-routing-key included), its
 * own message id, and why: x-ias-dead-reason, x-ias-dead-queue. */
static int publish_dead(consumer *c, const dlv *d, const sub *s, const char *why)
{
    static const char *const skip[] = {IAS_AMQP_HDR_MESSAGE_IDS, IAS_AMQP_HDR_DEAD_REASON,
                                       IAS_AMQP_HDR_DEAD_QUEUE};
    amqp_basic_properties_t props = d->env->message.properties;
    amqp_table_entry_t hdr[MAX_HEADERS + 2];
    int n, rc;

    n = keep_headers(&props, hdr, MAX_HEADERS, skip, IAS_ARRAY_LEN(skip));
    set_header(&hdr[n++], IAS_AMQP_HDR_DEAD_REASON, why);
    set_header(&hdr[n++], IAS_AMQP_HDR_DEAD_QUEUE, c->queue);
    props._flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                    AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.headers.num_entries = n;
    props.headers.entries = hdr;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props.content_type = amqp_cstring_bytes(IAS_AMQP_CONTENT_TYPE_JSON);
    props.message_id = amqp_cstring_bytes(s->mid);
    rc = amqp_basic_publish(ias_amqp_conn_state(c->conn), 2, amqp_cstring_bytes(IAS_AMQP_DLX),
                            amqp_cstring_bytes(d->rk), 0, 0, &props,
                            (amqp_bytes_t){.len = s->m.body_len, .bytes = (void *)s->m.body});
    return ias_amqp_conn_check_status(c->conn, rc, "basic.publish (dead letter)");
}

/* The events of a pack to retry, as one copy to this queue (a pack again if
 * there are several) with x-ias-attempts = attempt, like republish(). */
static int publish_retry(consumer *c, const dlv *d, sub *const *r, size_t k)
{
    static const char *const skip[] = {IAS_AMQP_HDR_ATTEMPTS, IAS_AMQP_HDR_ROUTING_KEY,
                                       IAS_AMQP_HDR_MESSAGE_IDS};
    amqp_basic_properties_t props = d->env->message.properties;
    amqp_table_entry_t hdr[MAX_HEADERS + 3];
    amqp_field_value_t *ids = NULL;
    amqp_bytes_t body = {.len = r[0]->m.body_len, .bytes = (void *)r[0]->m.body};
    char *buf = NULL;
    int n, rc;

    n = keep_headers(&props, hdr, MAX_HEADERS, skip, IAS_ARRAY_LEN(skip));
    set_attempts(&hdr[n++], d->attempt);
    set_header(&hdr[n++], IAS_AMQP_HDR_ROUTING_KEY, d->rk);
    props.content_type = amqp_cstring_bytes(IAS_AMQP_CONTENT_TYPE_JSON);
    if (k > 1) {
        size_t len = k - 1;
        char *w;
        for (size_t i = 0; i < k; i++)
            len += r[i]->m.body_len;
        w = buf = ias_xmalloc(len);
        ids = ias_xmalloc(k * sizeof(*ids));
        for (size_t i = 0; i < k; i++) {
            if (i > 0)
                *w++ = '\n';
            if (r[i]->m.body_len)
                memcpy(w, r[i]->m.body, r[i]->m.body_len);
            w += r[i]->m.body_len;
            ids[i].kind = AMQP_FIELD_KIND_UTF8;
            ids[i].value.bytes = amqp_cstring_bytes(r[i]->mid);
        }
        body = (amqp_bytes_t){.len = len, .bytes = buf};
        hdr[n].key = amqp_cstring_bytes(IAS_AMQP_HDR_MESSAGE_IDS);
        hdr[n].value.kind = AMQP_FIELD_KIND_ARRAY;
        hdr[n].value.value.array.num_entries = (int)k;
        hdr[n].value.value.array.entries = ids;
        n++;
        props.content_type = amqp_cstring_bytes(IAS_AMQP_CONTENT_TYPE_PACK);
    }
    props._flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                    AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.headers.num_entries = n;
    props.headers.entries = hdr;
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props.message_id = amqp_cstring_bytes(r[0]->mid);
    rc = amqp_basic_publish(ias_amqp_conn_state(c->conn), 2, amqp_empty_bytes,
                            amqp_cstring_bytes(c->queue), 0, 0, &props, body);
    free(ids);
    free(buf);
    return ias_amqp_conn_check_status(c->conn, rc, "basic.publish (retry)");
}

/* Acts on the verdicts for the events of a pack. If all were ACKed the pack is
 * acked. Otherwise, in one transaction on channel 2, the events to RETRY go
 * back to the queue as one copy and each event to dead-letter (REJECT, too
 * big, or out of attempts) goes alone to ias.events.dlx; after tx.commit-ok
 * the pack is acked. A crash before the ack redelivers the whole pack: the
 * ACKed events then come again (consumers deduplicate by event id), never
 * less. */
static int dispose_pack(consumer *c, const dlv *d, sub *s)
{
    sub **retry = ias_xcalloc(d->n, sizeof(*retry));
    size_t nretry = 0, ndead = 0, nack = 0;
    int rc = IAS_OK;

    for (size_t i = 0; i < d->n && rc == IAS_OK; i++) {
        char why[320];
        if (s[i].res == IAS_CONSUME_ACK) {
            nack++;
            continue;
        }
        if (s[i].res == IAS_CONSUME_RETRY && s[i].m.attempt < c->max_attempts) {
            ias_info(NULL, "consumer %s: message %s (%s) on %s will be retried (attempt %d/%d): %s",
                     c->name, s[i].mid, d->rk, c->queue, s[i].m.attempt, c->max_attempts,
                     reason_of(&s[i], "retry"));
            retry[nretry++] = &s[i];
            continue;
        }
        if (s[i].res == IAS_CONSUME_RETRY) {
            snprintf(why, sizeof(why), "after %d attempts: %s", s[i].m.attempt,
                     reason_of(&s[i], "retry"));
            ias_warn(NULL, "consumer %s: message %s (%s) on %s dead-lettered after %d attempts: %s",
                     c->name, s[i].mid, d->rk, c->queue, s[i].m.attempt, reason_of(&s[i], "retry"));
        } else {
            snprintf(why, sizeof(why), "%s", reason_of(&s[i], "rejected by handler"));
            ias_warn(NULL, "consumer %s: message %s (%s) on %s dead-lettered: %s", c->name,
                     s[i].mid, d->rk, c->queue, why);
        }
        rc = publish_dead(c, d, &s[i], why);
        ndead++;
    }
    if (rc == IAS_OK && nretry > 0)
        rc = publish_retry(c, d, retry, nretry);
    if (rc == IAS_OK && nretry + ndead > 0) {
        amqp_tx_commit(ias_amqp_conn_state(c->conn), 2);
        rc = ias_amqp_conn_check_rpc(c->conn, "tx.commit (pack)");
    }
    if (rc == IAS_OK) {
        ias_counter_add(c->m_ack, nack);
        ias_counter_add(c->m_retry, nretry);
        ias_counter_add(c->m_reject, ndead);
        rc = ack(c, d->env->delivery_tag);
    }
    free(retry);
    return rc;
}

static int dispose_delivery(consumer *c, const dlv *d, sub *subs)
{
    if (d->bad) {
        const amqp_basic_properties_t *p = &d->env->message.properties;
        char mid[IAS_AMQP_SHORTSTR_MAX + 1] = "";
        if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
            copy_bytes(mid, sizeof(mid), p->message_id);
        ias_warn(NULL, "consumer %s: message %s (%s) on %s dead-lettered: malformed pack: %s",
                 c->name, mid, d->rk, c->queue, d->bad);
        return dead_letter(c, d->env->delivery_tag);
    }
    if (!d->ids)
        return dispose(c, d, &subs[d->first]);
    return dispose_pack(c, d, &subs[d->first]);
}

/* Handles envs[0..n): unpacks the packs, hands every event to the batch
 * handler at once (or to the handler one by one), takes one RETRY pause, then
 * acts on the verdicts delivery by delivery. */
static int process(consumer *c, const amqp_envelope_t *envs, size_t n)
{
    dlv *ds = ias_xcalloc(n, sizeof(*ds));
    sub *subs;
    ias_amqp_msg *msgs = NULL;
    ias_consume_result *res = NULL;
    size_t *idx = NULL, total = 0, k = 0;
    int pause = 0, rc = IAS_OK;
    bool all_ack = true;

    for (size_t i = 0; i < n; i++) {
        scan_delivery(&envs[i], &ds[i]);
        ds[i].first = total;
        total += ds[i].n;
        all_ack = all_ack && !ds[i].bad;
    }
    subs = ias_xcalloc(total ? total : 1, sizeof(*subs));
    for (size_t i = 0; i < n; i++)
        fill_subs(c, &ds[i], subs);
    if (c->o->batch_handler) {
        msgs = ias_xcalloc(total ? total : 1, sizeof(*msgs));
        res = ias_xcalloc(total ? total : 1, sizeof(*res));
        idx = ias_xcalloc(total ? total : 1, sizeof(*idx));
        for (size_t j = 0; j < total; j++) {
            if (!subs[j].handled)
                continue;
            msgs[k] = subs[j].m; /* reason still points into subs[j] */
            res[k] = IAS_CONSUME_REJECT;
            idx[k++] = j;
        }
        if (k > 0)
            c->o->batch_handler(msgs, k, res, c->o->arg);
        for (size_t j = 0; j < k; j++)
            subs[idx[j]].res = res[j];
    } else {
        for (size_t j = 0; j < total; j++)
            if (subs[j].handled)
                subs[j].res = c->o->handler(&subs[j].m, c->o->arg);
    }
    for (size_t j = 0; j < total; j++) {
        int a = subs[j].m.attempt;
        all_ack = all_ack && subs[j].res == IAS_CONSUME_ACK;
        if (subs[j].res == IAS_CONSUME_RETRY && a < c->max_attempts && retry_pause_ms(c, a) > pause)
            pause = retry_pause_ms(c, a);
    }
    if (pause > 0) {
        sleep_stoppable(c, pause);
        if (stop_requested(c))
            goto out; /* unacked: redelivered after we close */
    }
    if (all_ack) {
        /* Everything unacked on the channel is this batch: one frame acks it. */
        uint64_t last = envs[0].delivery_tag;
        for (size_t i = 1; i < n; i++)
            last = envs[i].delivery_tag > last ? envs[i].delivery_tag : last;
        ias_counter_add(c->m_ack, total);
        rc = ias_amqp_conn_check_status(
            c->conn, amqp_basic_ack(ias_amqp_conn_state(c->conn), 1, last, n > 1),
            n > 1 ? "basic.ack (multiple)" : "basic.ack");
        goto out;
    }
    for (size_t i = 0; i < n && rc == IAS_OK; i++)
        rc = dispose_delivery(c, &ds[i], subs);
out:
    free(idx);
    free(res);
    free(msgs);
    free(subs);
    free(ds);
    return rc;
}

/* Declares what is needed and subscribes. */
static int setup(consumer *c)
{
    const ias_consumer_opts *o = c->o;
    amqp_connection_state_t st = ias_amqp_conn_state(c->conn);

    if (!o->no_topology && ias_amqp_declare_topology(c->conn) != IAS_OK)
        return IAS_ERR;
    if (o->queue) {
        if (ias_strlcpy(c->queue, o->queue, sizeof(c->queue)) != IAS_OK)
            return IAS_ERR;
    } else if (ias_amqp_declare_instance_queue(c->conn, o->bind_keys, o->nbind_keys, c->queue,
                                               sizeof(c->queue)) != IAS_OK) {
        return IAS_ERR;
    }
    amqp_basic_qos(st, 1, 0, (uint16_t)c->prefetch, 0);
    if (ias_amqp_conn_check_rpc(c->conn, "basic.qos") != IAS_OK)
        return IAS_ERR;
    amqp_channel_open(st, 2);
    if (ias_amqp_conn_check_rpc(c->conn, "channel.open 2") != IAS_OK)
        return IAS_ERR;
    amqp_tx_select(st, 2);
    if (ias_amqp_conn_check_rpc(c->conn, "tx.select") != IAS_OK)
        return IAS_ERR;
    amqp_basic_consume(st, 1, amqp_cstring_bytes(c->queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (ias_amqp_conn_check_rpc(c->conn, "basic.consume") != IAS_OK)
        return IAS_ERR;
    return IAS_OK;
}

/* Handles a frame that is not a delivery; IAS_ERR ends the session. */
static int other_frame(consumer *c)
{
    struct timeval tv = {0, 0};
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(ias_amqp_conn_state(c->conn), &f, &tv);

    if (rc == AMQP_STATUS_TIMEOUT)
        return IAS_OK;
    if (ias_amqp_conn_check_status(c->conn, rc, "reading frame") != IAS_OK)
        return IAS_ERR;
    if (f.frame_type != AMQP_FRAME_METHOD)
        return IAS_OK;
    if (ias_amqp_conn_on_close(c->conn, f.channel, &f.payload.method))
        return IAS_ERR;
    if (f.payload.method.id == AMQP_BASIC_CANCEL_METHOD) {
        /* Queue deleted or failed over: subscribe again from scratch. */
        ias_warn(NULL, "consumer %s: broker cancelled the subscription to %s", c->name, c->queue);
        return IAS_ERR;
    }
    return IAS_OK;
}

/* Batch mode: first is a delivery just read (taken over and destroyed here).
 * Reads more until batch_max, batch_wait_ms or a non-delivery frame, then
 * hands the batch over. */
static int collect_batch(consumer *c, amqp_envelope_t *first)
{
    amqp_connection_state_t st = ias_amqp_conn_state(c->conn);
    amqp_envelope_t *envs = ias_xcalloc(c->batch_max, sizeof(*envs));
    uint64_t deadline = ias_now_ms() + (uint64_t)c->batch_wait_ms;
    size_t n = 1, events = delivery_events(first);
    int rc = IAS_OK;

    /* batch_max counts events: a pack is never split, so the batch may end
     * up to one pack over it. */
    envs[0] = *first;
    while (events < c->batch_max && n < c->batch_max && !stop_requested(c)) {
        uint64_t now = ias_now_ms();
        uint64_t left = deadline > now ? deadline - now : 0;
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
        amqp_rpc_reply_t r = amqp_consume_message(st, &envs[n], &tv, 0);

        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            events += delivery_events(&envs[n]);
            n++;
            continue;
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            rc = other_frame(c);
        } else if (!(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                     r.library_error == AMQP_STATUS_TIMEOUT)) {
            int err = r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error != 0
                          ? r.library_error
                          : AMQP_STATUS_UNEXPECTED_STATE;
            rc = ias_amqp_conn_check_status(c->conn, err, "consume");
        }
        break;
    }
    /* On a broken connection nothing can be acked: the broker redelivers. */
    if (rc == IAS_OK && !stop_requested(c))
        rc = process(c, envs, n);
    for (size_t i = 0; i < n; i++)
        amqp_destroy_envelope(&envs[i]);
    free(envs);
    return rc;
}

/* Consumes until stop or a connection problem. */
static void session(consumer *c)
{
    amqp_connection_state_t st = ias_amqp_conn_state(c->conn);

    while (!stop_requested(c) && ias_amqp_conn_ok(c->conn)) {
        struct timeval tv = {0, POLL_MS * 1000};
        amqp_envelope_t env;
        amqp_rpc_reply_t r;
        int rc;

        amqp_maybe_release_buffers(st);
        /* Returns frames already buffered or queued before touching the
         * socket, so nothing waits in librabbitmq while we sleep in poll. */
        r = amqp_consume_message(st, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            rc = c->o->batch_handler ? collect_batch(c, &env) : process(c, &env, 1);
            if (!c->o->batch_handler)
                amqp_destroy_envelope(&env);
            if (rc != IAS_OK)
                return;
            continue;
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT)
            continue;
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            if (other_frame(c) != IAS_OK)
                return;
            continue;
        }
        /* Anything else leaves the connection in an unknown state. */
        rc = r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error != 0
                 ? r.library_error
                 : AMQP_STATUS_UNEXPECTED_STATE;
        if (ias_amqp_conn_check_status(c->conn, rc, "consume") != IAS_OK)
            return; /* always taken: rc is an error */
    }
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int ias_consumer_run(const ias_consumer_opts *o)
{
    consumer c;
    int backoff;
    char label[160];

    if (!o || !o->url || (!o->handler && !o->batch_handler) || !o->stop ||
        (!o->queue && o->nbind_keys == 0) ||
        (o->queue && (!*o->queue || strlen(o->queue) > IAS_AMQP_SHORTSTR_MAX)) ||
        (o->name && strlen(o->name) > 64)) {
        ias_error(NULL, "consumer: url, handler, stop and a queue or binding keys are required");
        return IAS_ERR;
    }
    memset(&c, 0, sizeof(c));
    c.o = o;
    c.name = o->name ? o->name : (o->queue ? o->queue : "instance");
    c.prefetch = o->prefetch ? o->prefetch : 16;
    c.batch_max = o->batch_max ? o->batch_max : (size_t)c.prefetch;
    c.batch_wait_ms = o->batch_wait_ms > 0 ? o->batch_wait_ms : 20;
    c.max_attempts = o->max_attempts > 0 ? o->max_attempts : 5;
    c.retry_delay_ms =
        o->retry_delay_ms == 0 ? 200 : (o->retry_delay_ms < 0 ? 0 : o->retry_delay_ms);
    c.max_body = o->max_body ? o->max_body : IAS_AMQP_BODY_MAX;
    c.backoff_min = o->reconnect_min_ms > 0 ? o->reconnect_min_ms : 200;
    c.backoff_max = o->reconnect_max_ms > 0 ? o->reconnect_max_ms : 15000;
    if (c.backoff_max < c.backoff_min)
        c.backoff_max = c.backoff_min;
    c.rng = ias_now_us() ^ ((uint64_t)(uintptr_t)&c << 16) ^ 0x9E3779B97F4A7C15ull;
    for (const char *s = c.name; *s; s++) {
        if (*s == '"' || *s == '\\' || *s == '\n') {
            c.name = "invalid";
            break;
        }
    }
    snprintf(label, sizeof(label), "consumer=\"%s\",result=\"ack\"", c.name);
    c.m_ack = ias_metrics_counter("ias_amqp_consumed_total",
                                  "Events handled, by result (a pack counts its events).", label);
    snprintf(label, sizeof(label), "consumer=\"%s\",result=\"retry\"", c.name);
    c.m_retry = ias_metrics_counter("ias_amqp_consumed_total",
                                    "Events handled, by result (a pack counts its events).", label);
    snprintf(label, sizeof(label), "consumer=\"%s\",result=\"reject\"", c.name);
    c.m_reject = ias_metrics_counter(
        "ias_amqp_consumed_total", "Events handled, by result (a pack counts its events).", label);

    backoff = c.backoff_min;
    while (!stop_requested(&c)) {
        ias_amqp_conn_opts co = {.url = o->url, .heartbeat_s = o->heartbeat_s};
        char err[300];

        if (ias_amqp_connect(&co, &c.conn, err, sizeof(err)) != IAS_OK) {
            ias_warn(NULL, "consumer %s: %s", c.name, err);
        } else if (setup(&c) == IAS_OK) {
            backoff = c.backoff_min;
            ias_info(NULL, "consumer %s: consuming from %s", c.name, c.queue);
            if (o->on_ready)
                o->on_ready(c.queue, o->arg);
            session(&c);
        }
        /* On stop, closing the channel returns unacked messages to the queue. */
        ias_amqp_conn_free(c.conn);
        c.conn = NULL;
        if (stop_requested(&c))
            break;
        {
            int half = backoff / 2;
            sleep_stoppable(&c, half + (int)(xorshift(&c.rng) % (uint64_t)(half + 1)));
            backoff = backoff >= c.backoff_max / 2 ? c.backoff_max : backoff * 2;
        }
    }
    return IAS_OK;
}
