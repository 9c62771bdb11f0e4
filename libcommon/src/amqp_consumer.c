/* Consumer loop for a dedicated thread: manual acks after the handler's effect
 * is committed, RETRY by republishing with an attempt counter, dead-lettering
 * by reject(requeue=false), reconnect with backoff, and a stop flag.
 *
 * Channel 1 consumes; channel 2 is in tx mode and only used to republish a
 * RETRY copy to the queue: tx.commit-ok means the copy is enqueued (and on disk
 * for a durable queue), and only then is the original acked. tx.commit is a
 * synchronous RPC, during which librabbitmq queues deliveries arriving on
 * channel 1; amqp_consume_message returns those queued frames first. */
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

/* Republishes a copy with x-ias-attempts = attempt to this queue only (the
 * default exchange), commits, then acks the original. */
static int republish(consumer *c, const amqp_envelope_t *env, const ias_amqp_msg *m)
{
    amqp_connection_state_t st = ias_amqp_conn_state(c->conn);
    amqp_basic_properties_t props = env->message.properties;
    amqp_table_entry_t hdr[MAX_HEADERS + 2];
    int n = 0, rc;

    if (props._flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < props.headers.num_entries && n < MAX_HEADERS; i++) {
            const amqp_table_entry_t *e = &props.headers.entries[i];
            if ((e->key.len == strlen(IAS_AMQP_HDR_ATTEMPTS) &&
                 memcmp(e->key.bytes, IAS_AMQP_HDR_ATTEMPTS, e->key.len) == 0) ||
                (e->key.len == strlen(IAS_AMQP_HDR_ROUTING_KEY) &&
                 memcmp(e->key.bytes, IAS_AMQP_HDR_ROUTING_KEY, e->key.len) == 0))
                continue;
            hdr[n++] = *e;
        }
    }
    hdr[n].key = amqp_cstring_bytes(IAS_AMQP_HDR_ATTEMPTS);
    hdr[n].value.kind = AMQP_FIELD_KIND_I32;
    hdr[n].value.value.i32 = m->attempt;
    n++;
    hdr[n].key = amqp_cstring_bytes(IAS_AMQP_HDR_ROUTING_KEY);
    hdr[n].value.kind = AMQP_FIELD_KIND_UTF8;
    hdr[n].value.value.bytes = amqp_cstring_bytes(m->routing_key);
    n++;
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

/* One delivery as handed to a handler, with the buffers its strings point to. */
typedef struct slot {
    char rk[IAS_AMQP_SHORTSTR_MAX + 1], mid[IAS_AMQP_SHORTSTR_MAX + 1];
    char type[IAS_AMQP_SHORTSTR_MAX + 1], reason[256];
    ias_amqp_msg m;
} slot;

static void fill_msg(const consumer *c, const amqp_envelope_t *env, slot *s)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    const amqp_table_entry_t *h;
    int64_t prev = 0;

    copy_bytes(s->rk, sizeof(s->rk), env->routing_key);
    if ((h = find_header(p, IAS_AMQP_HDR_ROUTING_KEY)) &&
        (h->value.kind == AMQP_FIELD_KIND_UTF8 || h->value.kind == AMQP_FIELD_KIND_BYTES))
        copy_bytes(s->rk, sizeof(s->rk), h->value.value.bytes);
    s->mid[0] = s->type[0] = s->reason[0] = '\0';
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        copy_bytes(s->mid, sizeof(s->mid), p->message_id);
    if (p->_flags & AMQP_BASIC_TYPE_FLAG)
        copy_bytes(s->type, sizeof(s->type), p->type);
    if ((h = find_header(p, IAS_AMQP_HDR_ATTEMPTS)))
        prev = field_int(&h->value);
    if (prev < 0 || prev > 1000000)
        prev = 0;

    memset(&s->m, 0, sizeof(s->m));
    s->m.queue = c->queue;
    s->m.routing_key = s->rk;
    s->m.message_id = s->mid;
    s->m.type = s->type;
    s->m.body = env->message.body.bytes;
    s->m.body_len = env->message.body.len;
    s->m.timestamp_s = (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) ? (int64_t)p->timestamp : 0;
    s->m.attempt = (int)prev + 1;
    s->m.redelivered = env->redelivered;
    s->m.reason = s->reason;
    s->m.reason_len = sizeof(s->reason);
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

/* Acts on a handler's verdict. pause: sleep before a RETRY republish. */
static int dispose(consumer *c, const amqp_envelope_t *env, slot *s, ias_consume_result res,
                   bool pause)
{
    const char *mid = s->mid, *rk = s->rk, *reason = s->reason;

    s->reason[sizeof(s->reason) - 1] = '\0';
    switch (res) {
    case IAS_CONSUME_ACK:
        ias_counter_inc(c->m_ack);
        return ack(c, env->delivery_tag);
    case IAS_CONSUME_RETRY:
        if (s->m.attempt >= c->max_attempts) {
            ias_warn(NULL, "consumer %s: message %s (%s) on %s dead-lettered after %d attempts: %s",
                     c->name, mid, rk, c->queue, s->m.attempt, reason[0] ? reason : "retry");
            return dead_letter(c, env->delivery_tag);
        }
        ias_info(NULL, "consumer %s: message %s (%s) on %s will be retried (attempt %d/%d): %s",
                 c->name, mid, rk, c->queue, s->m.attempt, c->max_attempts,
                 reason[0] ? reason : "retry");
        if (pause) {
            sleep_stoppable(c, retry_pause_ms(c, s->m.attempt));
            if (stop_requested(c))
                return IAS_OK; /* unacked: redelivered after we close */
        }
        return republish(c, env, &s->m);
    case IAS_CONSUME_REJECT:
    default:
        ias_warn(NULL, "consumer %s: message %s (%s) on %s dead-lettered: %s", c->name, mid, rk,
                 c->queue, reason[0] ? reason : "rejected by handler");
        return dead_letter(c, env->delivery_tag);
    }
}

static bool too_big(consumer *c, const slot *s)
{
    if (s->m.body_len <= c->max_body)
        return false;
    ias_warn(NULL, "consumer %s: message %s on %s dead-lettered: body of %zu bytes over %zu",
             c->name, s->mid, c->queue, s->m.body_len, c->max_body);
    return true;
}

static int handle(consumer *c, const amqp_envelope_t *env)
{
    slot s;

    fill_msg(c, env, &s);
    if (too_big(c, &s))
        return dead_letter(c, env->delivery_tag);
    return dispose(c, env, &s, c->o->handler(&s.m, c->o->arg), true);
}

/* Batch mode: one batch_handler call for envs[0..n), then each verdict. */
static int handle_batch(consumer *c, const amqp_envelope_t *envs, size_t n)
{
    slot *slots = ias_xcalloc(n, sizeof(*slots));
    ias_amqp_msg *msgs = ias_xcalloc(n, sizeof(*msgs));
    ias_consume_result *res = ias_xcalloc(n, sizeof(*res));
    size_t *idx = ias_xcalloc(n, sizeof(*idx));
    size_t k = 0;
    int pause = 0, rc = IAS_OK;

    for (size_t i = 0; i < n && rc == IAS_OK; i++) {
        fill_msg(c, &envs[i], &slots[i]);
        if (too_big(c, &slots[i]))
            rc = dead_letter(c, envs[i].delivery_tag);
        else
            idx[k++] = i;
    }
    if (rc == IAS_OK && k > 0) {
        for (size_t j = 0; j < k; j++) {
            msgs[j] = slots[idx[j]].m;
            res[j] = IAS_CONSUME_REJECT;
        }
        c->o->batch_handler(msgs, k, res, c->o->arg);
        /* Handlers write reasons through msgs[j].reason, which points into the slot. */
        for (size_t j = 0; j < k; j++) {
            int a = slots[idx[j]].m.attempt;
            if (res[j] == IAS_CONSUME_RETRY && a < c->max_attempts && retry_pause_ms(c, a) > pause)
                pause = retry_pause_ms(c, a);
        }
        if (pause > 0) {
            sleep_stoppable(c, pause);
            if (stop_requested(c))
                k = 0; /* unacked: redelivered after we close */
        }
        bool all_ack = k == n;
        for (size_t j = 0; j < k && all_ack; j++)
            all_ack = res[j] == IAS_CONSUME_ACK;
        if (all_ack) {
            /* Everything unacked on the channel is this batch: one frame acks it. */
            uint64_t last = envs[0].delivery_tag;
            for (size_t i = 1; i < n; i++)
                last = envs[i].delivery_tag > last ? envs[i].delivery_tag : last;
            ias_counter_add(c->m_ack, k);
            rc = ias_amqp_conn_check_status(
                c->conn, amqp_basic_ack(ias_amqp_conn_state(c->conn), 1, last, 1),
                "basic.ack (multiple)");
            k = 0;
        }
        for (size_t j = 0; j < k && rc == IAS_OK; j++)
            rc = dispose(c, &envs[idx[j]], &slots[idx[j]], res[j], false);
    }
    free(idx);
    free(res);
    free(msgs);
    free(slots);
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
    size_t n = 1;
    int rc = IAS_OK;

    envs[0] = *first;
    while (n < c->batch_max && !stop_requested(c)) {
        uint64_t now = ias_now_ms();
        uint64_t left = deadline > now ? deadline - now : 0;
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
        amqp_rpc_reply_t r = amqp_consume_message(st, &envs[n], &tv, 0);

        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
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
        rc = handle_batch(c, envs, n);
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
            rc = c->o->batch_handler ? collect_batch(c, &env) : handle(c, &env);
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
    c.m_ack = ias_metrics_counter("ias_amqp_consumed_total", "Messages handled by result.", label);
    snprintf(label, sizeof(label), "consumer=\"%s\",result=\"retry\"", c.name);
    c.m_retry =
        ias_metrics_counter("ias_amqp_consumed_total", "Messages handled by result.", label);
    snprintf(label, sizeof(label), "consumer=\"%s\",result=\"reject\"", c.name);
    c.m_reject =
        ias_metrics_counter("ias_amqp_consumed_total", "Messages handled by result.", label);

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
