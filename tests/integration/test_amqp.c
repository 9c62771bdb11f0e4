/* RabbitMQ module against a real broker: topology, publish/confirm/consume/ack,
 * retry then dead-letter, the spool across a broker outage, and spool replay
 * by a new publisher instance. Skips without IAS_AMQP_URL (and the outage test
 * without IAS_STACK_CTL). */
#include "testlib.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>

#include "ias/amqp.h"
#include "ias/common.h"
#include "ias/log.h"

#define ID_LEN 96

/* ---- helpers -------------------------------------------------------------- */

static const char *amqp_url(void)
{
    return ias_test_env("IAS_AMQP_URL");
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static ias_amqp_conn *connect_or_fail(void)
{
    ias_amqp_conn_opts o = {.url = amqp_url()};
    ias_amqp_conn *c = NULL;
    char err[300];

    if (ias_amqp_connect(&o, &c, err, sizeof(err)) != IAS_OK)
        fail_msg("connect: %s", err);
    return c;
}

/* Ready messages in a queue (passive declare). */
static long queue_depth(const char *queue)
{
    ias_amqp_conn *c = connect_or_fail();
    amqp_queue_declare_ok_t *ok;
    long n;

    ok = amqp_queue_declare(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(queue), 1, 0, 0, 0,
                            amqp_empty_table);
    assert_int_equal(ias_amqp_conn_check_rpc(c, "passive declare"), IAS_OK);
    n = (long)ok->message_count;
    ias_amqp_conn_free(c);
    return n;
}

static void make_queue(const char *queue, const char *key)
{
    ias_amqp_conn *c = connect_or_fail();
    const char *keys[] = {key};

    assert_int_equal(ias_amqp_declare_topology(c), IAS_OK);
    assert_int_equal(ias_amqp_declare_queue(c, queue, keys, 1), IAS_OK);
    ias_amqp_conn_free(c);
}

static void drop_queue(const char *queue)
{
    ias_amqp_conn *c = connect_or_fail();

    assert_int_equal(ias_amqp_delete_queue(c, queue), IAS_OK);
    ias_amqp_conn_free(c);
}

static size_t count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "seg-", 4) == 0)
            n++;
    closedir(d);
    return n;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[600];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void make_tmpdir(char *buf, size_t len)
{
    snprintf(buf, len, "/tmp/ias_amqp_it_XXXXXX");
    assert_non_null(mkdtemp(buf));
}

/* ---- a consumer thread that records what it sees ------------------------- */

typedef enum { MODE_ACK, MODE_RETRY_OR_REJECT } cmode;

typedef struct collector {
    pthread_mutex_t mu;
    char (*ids)[ID_LEN];
    size_t n, cap;
    int attempts_seen[8]; /* MODE_RETRY_OR_REJECT: attempt numbers for "retry-*" */
    int nattempts;
    int bad; /* messages whose properties were wrong */
    char want_key[IAS_AMQP_SHORTSTR_MAX + 1];
    char want_type[64];
    cmode mode;
    atomic_bool stop;
    atomic_bool ready;
    atomic_int nready; /* on_ready calls: 1 + reconnects */
    char ready_queue[IAS_AMQP_SHORTSTR_MAX + 1];
    ias_consumer_opts o;
    const char *keys[1];
    pthread_t th;
    int rc;
} collector;

static ias_consume_result collect(const ias_amqp_msg *m, void *arg)
{
    collector *c = arg;
    ias_consume_result res = IAS_CONSUME_ACK;

    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->ids = ias_xrealloc(c->ids, c->cap * sizeof(*c->ids));
    }
    snprintf(c->ids[c->n++], ID_LEN, "%s", m->message_id);
    if (strcmp(m->routing_key, c->want_key) != 0 || strcmp(m->type, c->want_type) != 0 ||
        m->body_len < 2 || ((const char *)m->body)[0] != '{' || m->timestamp_s <= 0)
        c->bad++;
    if (c->mode == MODE_RETRY_OR_REJECT) {
        if (strncmp(m->message_id, "retry-", 6) == 0) {
            if (c->nattempts < 8)
                c->attempts_seen[c->nattempts++] = m->attempt;
            snprintf(m->reason, m->reason_len, "test: transient failure %d", m->attempt);
            res = IAS_CONSUME_RETRY;
        } else {
            snprintf(m->reason, m->reason_len, "test: malformed");
            res = IAS_CONSUME_REJECT;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return res;
}

static void on_ready(const char *queue, void *arg)
{
    collector *c = arg;

    pthread_mutex_lock(&c->mu);
    snprintf(c->ready_queue, sizeof(c->ready_queue), "%s", queue);
    pthread_mutex_unlock(&c->mu);
    atomic_store(&c->ready, true);
    atomic_fetch_add(&c->nready, 1);
}

static void *collector_main(void *arg)
{
    collector *c = arg;
    c->rc = ias_consumer_run(&c->o);
    return NULL;
}

/* queue NULL: a per-instance queue bound to key. */
static collector *collector_start_hb(const char *queue, const char *key, const char *type,
                                     cmode mode, int heartbeat_s)
{
    collector *c = ias_xcalloc(1, sizeof(*c));

    pthread_mutex_init(&c->mu, NULL);
    snprintf(c->want_key, sizeof(c->want_key), "%s", key);
    snprintf(c->want_type, sizeof(c->want_type), "%s", type);
    c->mode = mode;
    atomic_init(&c->stop, false);
    atomic_init(&c->ready, false);
    atomic_init(&c->nready, 0);
    c->keys[0] = key;
    c->o.url = amqp_url();
    c->o.name = "it";
    c->o.queue = queue;
    c->o.bind_keys = queue ? NULL : c->keys;
    c->o.nbind_keys = queue ? 0 : 1;
    c->o.prefetch = 50;
    c->o.max_attempts = 3;
    c->o.retry_delay_ms = 10;
    c->o.reconnect_min_ms = 100;
    c->o.reconnect_max_ms = 1000;
    c->o.handler = collect;
    c->o.on_ready = on_ready;
    c->o.arg = c;
    c->o.stop = &c->stop;
    c->o.heartbeat_s = heartbeat_s;
    assert_int_equal(pthread_create(&c->th, NULL, collector_main, c), 0);
    for (int i = 0; i < 100 && !atomic_load(&c->ready); i++)
        sleep_ms(50);
    assert_true(atomic_load(&c->ready));
    return c;
}

static collector *collector_start(const char *queue, const char *key, const char *type, cmode mode)
{
    return collector_start_hb(queue, key, type, mode, 0);
}

static size_t collector_count(collector *c)
{
    size_t n;

    pthread_mutex_lock(&c->mu);
    n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static bool wait_count(collector *c, size_t want, int timeout_ms)
{
    uint64_t end = ias_now_ms() + (uint64_t)timeout_ms;

    while (collector_count(c) < want && ias_now_ms() < end)
        sleep_ms(20);
    return collector_count(c) >= want;
}

static void collector_stop(collector *c)
{
    atomic_store(&c->stop, true);
    assert_int_equal(pthread_join(c->th, NULL), 0);
    assert_int_equal(c->rc, IAS_OK);
}

static void collector_free(collector *c)
{
    pthread_mutex_destroy(&c->mu);
    free(c->ids);
    free(c);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static size_t distinct_ids(collector *c)
{
    size_t d = 0;

    qsort(c->ids, c->n, sizeof(*c->ids), cmp_id);
    for (size_t i = 0; i < c->n; i++)
        if (i == 0 || strcmp(c->ids[i], c->ids[i - 1]) != 0)
            d++;
    return d;
}

static ias_publisher *publisher_new(const char *url, const char *spool)
{
    ias_publisher_opts o = {0};

    o.url = url;
    o.spool_dir = spool;
    o.name = "it";
    o.queue_capacity = 256;
    o.reconnect_min_ms = 100;
    o.reconnect_max_ms = 1000;
    o.confirm_timeout_ms = 5000;
    return ias_publisher_new(&o);
}

static void publish_n(ias_publisher *p, const char *key, const char *prefix, int n, int *ok)
{
    *ok = 0;
    for (int i = 0; i < n; i++) {
        char id[ID_LEN], body[200];
        snprintf(id, sizeof(id), "%s-%05d", prefix, i);
        snprintf(body, sizeof(body), "{\"event_id\":\"%s\",\"i\":%d}", id, i);
        if (ias_publisher_publish(p, key, id, IAS_EVENT_USAGE_V1, body, strlen(body)) == IAS_OK)
            (*ok)++;
    }
}

/* ---- tests ---------------------------------------------------------------- */

static void test_topology_idempotent(void **state)
{
    ias_amqp_conn *c;
    const char *keys[] = {"config.keys.changed", "config.models.changed"};
    char qname[256];
    static const char *const queues[] = {IAS_AMQP_QUEUE_USAGE, IAS_AMQP_QUEUE_AUDIT,
                                         IAS_AMQP_QUEUE_DEAD};

    if (!amqp_url())
        skip();
    c = connect_or_fail();
    assert_int_equal(ias_amqp_declare_topology(c), IAS_OK);
    assert_int_equal(ias_amqp_declare_topology(c), IAS_OK);
    assert_true(ias_amqp_conn_ok(c));
    ias_amqp_conn_free(c);

    /* Declared by another connection: a third declaration still agrees. */
    c = connect_or_fail();
    assert_int_equal(ias_amqp_declare_topology(c), IAS_OK);
    for (size_t i = 0; i < IAS_ARRAY_LEN(queues); i++) {
        amqp_queue_declare(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(queues[i]), 1, 0, 0, 0,
                           amqp_empty_table);
        assert_int_equal(ias_amqp_conn_check_rpc(c, queues[i]), IAS_OK);
    }
    assert_int_equal(ias_amqp_declare_instance_queue(c, keys, 2, qname, sizeof(qname)), IAS_OK);
    assert_memory_equal(qname, "amq.gen-", 8);
    ias_amqp_conn_free(c);

    /* A conflicting declaration is reported, not ignored. */
    c = connect_or_fail();
    amqp_queue_declare(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(IAS_AMQP_QUEUE_USAGE), 0, 0, 0,
                       0, amqp_empty_table);
    assert_int_equal(ias_amqp_conn_check_rpc(c, "conflicting declare"), IAS_ERR);
    assert_false(ias_amqp_conn_ok(c));
    assert_true(strstr(ias_amqp_conn_error(c), "PRECONDITION_FAILED") != NULL);
    ias_amqp_conn_free(c);
}

static void test_roundtrip(void **state)
{
    char queue[64], key[80], spool[64], prefix[72];
    ias_publisher *p;
    ias_publisher_stats st;
    collector *c;
    int ok;
    const int N = 50;

    if (!amqp_url())
        skip();
    ias_test_unique("it_rt", queue, sizeof(queue));
    snprintf(key, sizeof(key), "test.%s", queue);
    snprintf(prefix, sizeof(prefix), "rt-%s", queue);
    make_queue(queue, key);
    make_tmpdir(spool, sizeof(spool));

    p = publisher_new(amqp_url(), spool);
    assert_non_null(p);
    publish_n(p, key, prefix, N, &ok);
    assert_int_equal(ok, N);
    assert_int_equal(ias_publisher_wait_idle(p, 20000), IAS_OK);
    ias_publisher_stats_get(p, &st);
    assert_int_equal(st.confirmed, N);
    assert_int_equal(st.spooled, 0);
    assert_true(st.connected);
    assert_int_equal(queue_depth(queue), N); /* durable, confirmed, waiting */

    c = collector_start(queue, key, IAS_EVENT_USAGE_V1, MODE_ACK);
    assert_true(wait_count(c, (size_t)N, 20000));
    sleep_ms(300); /* anything extra would show up now */
    collector_stop(c);
    assert_int_equal(c->n, N);
    assert_int_equal(distinct_ids(c), N);
    assert_int_equal(c->bad, 0);
    assert_int_equal(queue_depth(queue), 0); /* all acked */
    collector_free(c);

    ias_publisher_free(p);
    assert_int_equal(count_segments(spool), 0);
    rm_dir(spool);
    drop_queue(queue);
}

/* Config events: a per-instance exclusive queue bound by key. */
static void test_instance_queue(void **state)
{
    char uniq[64], key[96], spool[64], id[ID_LEN];
    ias_publisher *p;
    collector *c;
    const char *body = "{\"kind\":\"keys\"}";

    if (!amqp_url())
        skip();
    ias_test_unique("it_cfg", uniq, sizeof(uniq));
    for (char *s = uniq; *s; s++)
        if (*s == '_')
            *s = '-';
    assert_int_equal(ias_amqp_config_key(key, sizeof(key), uniq), IAS_OK);
    c = collector_start(NULL, key, IAS_EVENT_CONFIG_V1, MODE_ACK);
    assert_memory_equal(c->ready_queue, "amq.gen-", 8);

    make_tmpdir(spool, sizeof(spool));
    p = publisher_new(amqp_url(), spool);
    assert_non_null(p);
    snprintf(id, sizeof(id), "cfg-%s", uniq);
    assert_int_equal(ias_publisher_publish(p, key, id, IAS_EVENT_CONFIG_V1, body, strlen(body)),
                     IAS_OK);
    assert_true(wait_count(c, 1, 10000));
    collector_stop(c);
    assert_string_equal(c->ids[0], id);
    assert_int_equal(c->bad, 0);
    collector_free(c);
    ias_publisher_free(p);
    rm_dir(spool);
}

/* Looks for message_id in ias.dead (basic.get without ack: other messages
 * stay unacked and return to the queue when the channel closes). Acks ours.
 * Returns true when found; fills the headers we check. */
static bool find_dead(const char *message_id, int *attempts_hdr, char *orig_key, size_t klen,
                      bool *has_xdeath)
{
    ias_amqp_conn *c = connect_or_fail();
    amqp_connection_state_t st = ias_amqp_conn_state(c);
    bool found = false;

    *attempts_hdr = -1;
    orig_key[0] = '\0';
    *has_xdeath = false;
    for (int i = 0; i < 200000 && !found; i++) {
        amqp_rpc_reply_t r = amqp_basic_get(st, 1, amqp_cstring_bytes(IAS_AMQP_QUEUE_DEAD), 0);
        amqp_message_t msg;
        uint64_t tag;

        assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            break;
        tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        r = amqp_read_message(st, 1, &msg, 0);
        assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
        if ((msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) &&
            msg.properties.message_id.len == strlen(message_id) &&
            memcmp(msg.properties.message_id.bytes, message_id, strlen(message_id)) == 0) {
            found = true;
            for (int h = 0; h < msg.properties.headers.num_entries; h++) {
                amqp_table_entry_t *e = &msg.properties.headers.entries[h];
                if (e->key.len == strlen(IAS_AMQP_HDR_ATTEMPTS) &&
                    memcmp(e->key.bytes, IAS_AMQP_HDR_ATTEMPTS, e->key.len) == 0 &&
                    e->value.kind == AMQP_FIELD_KIND_I32)
                    *attempts_hdr = e->value.value.i32;
                if (e->key.len == strlen(IAS_AMQP_HDR_ROUTING_KEY) &&
                    memcmp(e->key.bytes, IAS_AMQP_HDR_ROUTING_KEY, e->key.len) == 0)
                    snprintf(orig_key, klen, "%.*s", (int)e->value.value.bytes.len,
                             (const char *)e->value.value.bytes.bytes);
                if (e->key.len == 7 && memcmp(e->key.bytes, "x-death", 7) == 0)
                    *has_xdeath = true;
            }
            assert_int_equal(amqp_basic_ack(st, 1, tag, 0), AMQP_STATUS_OK);
        }
        amqp_destroy_message(&msg);
        amqp_maybe_release_buffers(st);
    }
    ias_amqp_conn_free(c);
    return found;
}

static void test_retry_then_dead_letter(void **state)
{
    char queue[64], key[80], spool[64], retry_id[ID_LEN], reject_id[ID_LEN], okey[256];
    const char *body = "{\"event_id\":\"x\"}";
    ias_publisher *p;
    collector *c;
    int attempts;
    bool xdeath, found = false;
    uint64_t end;

    if (!amqp_url())
        skip();
    ias_test_unique("it_dlx", queue, sizeof(queue));
    snprintf(key, sizeof(key), "test.%s", queue);
    snprintf(retry_id, sizeof(retry_id), "retry-%s", queue);
    snprintf(reject_id, sizeof(reject_id), "reject-%s", queue);
    make_queue(queue, key);
    make_tmpdir(spool, sizeof(spool));
    p = publisher_new(amqp_url(), spool);
    assert_non_null(p);

    c = collector_start(queue, key, IAS_EVENT_AUDIT_V1, MODE_RETRY_OR_REJECT);
    assert_int_equal(
        ias_publisher_publish(p, key, retry_id, IAS_EVENT_AUDIT_V1, body, strlen(body)), IAS_OK);
    assert_int_equal(
        ias_publisher_publish(p, key, reject_id, IAS_EVENT_AUDIT_V1, body, strlen(body)), IAS_OK);
    /* retry-*: attempts 1, 2, 3 then dead; reject-*: once. */
    assert_true(wait_count(c, 4, 20000));
    sleep_ms(500);
    collector_stop(c);
    assert_int_equal(c->n, 4);
    assert_int_equal(c->nattempts, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c->attempts_seen[i], i + 1);
    assert_int_equal(c->bad, 0); /* routing key and type survive the republish */
    collector_free(c);
    assert_int_equal(queue_depth(queue), 0);

    /* Both land in ias.dead (dead-lettering is asynchronous: poll). */
    end = ias_now_ms() + 10000;
    while (!found && ias_now_ms() < end) {
        found = find_dead(retry_id, &attempts, okey, sizeof(okey), &xdeath);
        if (!found)
            sleep_ms(100);
    }
    assert_true(found);
    assert_int_equal(attempts, 2); /* the last copy carried two previous tries */
    assert_string_equal(okey, key);
    assert_true(xdeath);
    found = false;
    end = ias_now_ms() + 10000;
    while (!found && ias_now_ms() < end) {
        found = find_dead(reject_id, &attempts, okey, sizeof(okey), &xdeath);
        if (!found)
            sleep_ms(100);
    }
    assert_true(found);
    assert_int_equal(attempts, -1); /* rejected at once, never republished */
    assert_true(xdeath);

    ias_publisher_free(p);
    rm_dir(spool);
    drop_queue(queue);
}

/* With 1 s heartbeats, an idle publisher and consumer keep their connections
 * (librabbitmq only answers heartbeats inside library calls). */
static void test_heartbeat_idle(void **state)
{
    char queue[64], key[80], spool[64], id[ID_LEN];
    ias_publisher_opts o = {0};
    ias_publisher *p;
    ias_publisher_stats st;
    collector *c;
    const char *body = "{}";

    if (!amqp_url())
        skip();
    ias_test_unique("it_hb", queue, sizeof(queue));
    snprintf(key, sizeof(key), "test.%s", queue);
    snprintf(id, sizeof(id), "hb-%s", queue);
    make_queue(queue, key);
    make_tmpdir(spool, sizeof(spool));
    o.url = amqp_url();
    o.spool_dir = spool;
    o.heartbeat_s = 1;
    p = ias_publisher_new(&o);
    assert_non_null(p);
    c = collector_start_hb(queue, key, IAS_EVENT_USAGE_V1, MODE_ACK, 1);
    assert_int_equal(ias_publisher_wait_idle(p, 10000), IAS_OK);
    sleep_ms(5000); /* > 2 heartbeat intervals: a deaf peer would be dropped */
    assert_int_equal(ias_publisher_publish(p, key, id, IAS_EVENT_USAGE_V1, body, 2), IAS_OK);
    assert_int_equal(ias_publisher_wait_idle(p, 10000), IAS_OK);
    assert_true(wait_count(c, 1, 10000));
    collector_stop(c);
    ias_publisher_stats_get(p, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.confirmed, 1);
    assert_int_equal(atomic_load(&c->nready), 1);
    collector_free(c);
    ias_publisher_free(p);
    rm_dir(spool);
    drop_queue(queue);
}

/* Set while the broker is stopped so teardown can restart it after a failure. */
typedef struct suite_state {
    bool broker_stopped;
} suite_state;

static int suite_teardown(void **state)
{
    suite_state *s = *state;

    if (s && s->broker_stopped) {
        if (ias_test_stack("start rabbitmq") == 0)
            s->broker_stopped = false;
    }
    free(s);
    return 0;
}

static int suite_setup(void **state)
{
    *state = ias_xcalloc(1, sizeof(suite_state));
    return 0;
}

/* THE SPOOL TEST: 1,000 events published while RabbitMQ is down all arrive,
 * each exactly once, and the spool is empty afterwards. */
static void test_spool_across_broker_outage(void **state)
{
    suite_state *ss = *state;
    char queue[64], key[80], spool[64], prefix[72];
    ias_publisher *p;
    ias_publisher_stats st;
    collector *c;
    int ok, stop_rc, start_rc;
    size_t distinct;
    const int N = 1000;

    if (!amqp_url() || !ias_test_env("IAS_STACK_CTL"))
        skip();
    ias_test_unique("it_spool", queue, sizeof(queue));
    snprintf(key, sizeof(key), "test.%s", queue);
    snprintf(prefix, sizeof(prefix), "sp-%s", queue);
    make_queue(queue, key); /* durable: survives the restart */
    make_tmpdir(spool, sizeof(spool));
    p = publisher_new(amqp_url(), spool);
    assert_non_null(p);
    assert_int_equal(ias_publisher_wait_idle(p, 10000), IAS_OK);
    /* The consumer runs through the outage too and must come back by itself. */
    c = collector_start(queue, key, IAS_EVENT_USAGE_V1, MODE_ACK);

    ss->broker_stopped = true;
    stop_rc = ias_test_stack("stop rabbitmq");
    publish_n(p, key, prefix, N, &ok);
    /* While the broker is away every accepted event must reach the spool on
     * disk (bounded wait: the publisher first has to notice the loss). The
     * check happens before the broker returns, when a fast replay could
     * already have emptied the spool again. */
    for (int waited = 0; waited < 20000; waited += 50) {
        ias_publisher_stats_get(p, &st);
        if (st.spooled >= (uint64_t)N)
            break;
        sleep_ms(50);
    }
    fprintf(stderr, "broker down: published %d, spooled %llu, queued %zu, segments %zu\n", ok,
            (unsigned long long)st.spooled, st.queue_depth, count_segments(spool));
    assert_true(st.spooled >= (uint64_t)N);
    assert_true(count_segments(spool) > 0);
    start_rc = ias_test_stack("start rabbitmq");
    if (start_rc == 0)
        ss->broker_stopped = false;
    assert_int_equal(stop_rc, 0);
    assert_int_equal(start_rc, 0);
    assert_int_equal(ok, N); /* publish never failed while the broker was away */

    /* Reconnect (backoff capped at 1 s) and replay. */
    assert_int_equal(ias_publisher_wait_idle(p, 90000), IAS_OK);
    ias_publisher_stats_get(p, &st);
    fprintf(stderr, "after replay: confirmed %llu, replayed %llu, spooled %llu, connects %llu\n",
            (unsigned long long)st.confirmed, (unsigned long long)st.replayed,
            (unsigned long long)st.spooled, (unsigned long long)st.connects);
    assert_true(st.spooled >= (uint64_t)N);
    assert_int_equal(st.replayed, (uint64_t)N);
    assert_int_equal(st.connects, 2);
    assert_int_equal(count_segments(spool), 0);

    assert_true(wait_count(c, (size_t)N, 60000));
    sleep_ms(1000); /* duplicates, if any, arrive now */
    collector_stop(c);
    assert_true(atomic_load(&c->nready) >= 2); /* it did reconnect */
    distinct = distinct_ids(c);
    fprintf(stderr, "received %zu messages, %zu distinct, %zu duplicate(s)\n", c->n, distinct,
            c->n - distinct);
    assert_int_equal(distinct, (size_t)N); /* nothing lost */
    assert_int_equal(c->n, (size_t)N);     /* and nothing twice */
    assert_int_equal(c->bad, 0);
    assert_int_equal(queue_depth(queue), 0);
    collector_free(c);

    ias_publisher_free(p);
    assert_int_equal(count_segments(spool), 0);
    rm_dir(spool);
    drop_queue(queue);
}

typedef struct pacer {
    ias_publisher *p;
    const char *key;
    const char *prefix;
    int n, ok;
} pacer;

static void *pacer_main(void *arg)
{
    pacer *pc = arg;

    for (int i = 0; i < pc->n; i++) {
        char id[ID_LEN], body[200];
        snprintf(id, sizeof(id), "%s-%05d", pc->prefix, i);
        snprintf(body, sizeof(body), "{\"event_id\":\"%s\",\"i\":%d}", id, i);
        if (ias_publisher_publish(pc->p, pc->key, id, IAS_EVENT_USAGE_V1, body, strlen(body)) ==
            IAS_OK)
            pc->ok++;
        sleep_ms(1);
    }
    return NULL;
}

/* Events keep flowing while the broker goes away and comes back: nothing is
 * lost. A duplicate is possible by design here (an event whose confirm was
 * lost with the connection is spooled and sent again): reported, not failed. */
static void test_publish_through_outage(void **state)
{
    suite_state *ss = *state;
    char queue[64], key[80], spool[64], prefix[72];
    ias_publisher *p;
    pthread_t th;
    pacer pc;
    collector *c;
    int stop_rc, start_rc;
    size_t distinct;
    const int N = 3000;

    if (!amqp_url() || !ias_test_env("IAS_STACK_CTL"))
        skip();
    ias_test_unique("it_flow", queue, sizeof(queue));
    snprintf(key, sizeof(key), "test.%s", queue);
    snprintf(prefix, sizeof(prefix), "fl-%s", queue);
    make_queue(queue, key);
    make_tmpdir(spool, sizeof(spool));
    p = publisher_new(amqp_url(), spool);
    assert_non_null(p);
    assert_int_equal(ias_publisher_wait_idle(p, 10000), IAS_OK);

    pc = (pacer){.p = p, .key = key, .prefix = prefix, .n = N};
    assert_int_equal(pthread_create(&th, NULL, pacer_main, &pc), 0);
    sleep_ms(300);
    ss->broker_stopped = true;
    stop_rc = ias_test_stack("stop rabbitmq");
    sleep_ms(300);
    start_rc = ias_test_stack("start rabbitmq");
    if (start_rc == 0)
        ss->broker_stopped = false;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(stop_rc, 0);
    assert_int_equal(start_rc, 0);
    assert_int_equal(pc.ok, N);
    assert_int_equal(ias_publisher_wait_idle(p, 90000), IAS_OK);
    assert_int_equal(count_segments(spool), 0);

    c = collector_start(queue, key, IAS_EVENT_USAGE_V1, MODE_ACK);
    assert_true(wait_count(c, (size_t)N, 60000));
    sleep_ms(1000);
    collector_stop(c);
    distinct = distinct_ids(c);
    fprintf(stderr, "through outage: received %zu, distinct %zu, duplicates %zu\n", c->n, distinct,
            c->n - distinct);
    assert_int_equal(distinct, (size_t)N);
    collector_free(c);
    ias_publisher_free(p);
    rm_dir(spool);
    drop_queue(queue);
}

/* Events spooled by one publisher instance are replayed by the next one
 * pointed at the same spool directory. */
static void test_publisher_restart_replays(void **state)
{
    char queue[64], key[80], spool[64], prefix[72];
    ias_publisher *p;
    ias_publisher_stats st;
    collector *c;
    int ok;
    const int N = 200;

    if (!amqp_url())
        skip();
    ias_test_unique("it_restart", queue, sizeof(queue));
    snprintf(key, sizeof(key), "test.%s", queue);
    snprintf(prefix, sizeof(prefix), "rs-%s", queue);
    make_queue(queue, key);
    make_tmpdir(spool, sizeof(spool));

    /* Instance 1 cannot reach any broker: all of it ends in the spool, part
     * of it drained there by ias_publisher_free. */
    p = publisher_new("amqp://ias:ias@127.0.0.1:1/%2f", spool);
    assert_non_null(p);
    publish_n(p, key, prefix, N, &ok);
    assert_int_equal(ok, N);
    ias_publisher_free(p);
    assert_true(count_segments(spool) > 0);

    /* Instance 2: same spool, real broker. */
    p = publisher_new(amqp_url(), spool);
    assert_non_null(p);
    assert_int_equal(ias_publisher_wait_idle(p, 30000), IAS_OK);
    ias_publisher_stats_get(p, &st);
    assert_int_equal(st.replayed, (uint64_t)N);
    assert_int_equal(count_segments(spool), 0);
    ias_publisher_free(p);

    c = collector_start(queue, key, IAS_EVENT_USAGE_V1, MODE_ACK);
    assert_true(wait_count(c, (size_t)N, 30000));
    sleep_ms(500);
    collector_stop(c);
    assert_int_equal(distinct_ids(c), (size_t)N);
    assert_int_equal(c->n, (size_t)N);
    collector_free(c);
    rm_dir(spool);
    drop_queue(queue);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology_idempotent),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_instance_queue),
        cmocka_unit_test(test_retry_then_dead_letter),
        cmocka_unit_test(test_publisher_restart_replays),
        cmocka_unit_test(test_heartbeat_idle),
        cmocka_unit_test(test_spool_across_broker_outage),
        cmocka_unit_test(test_publish_through_outage),
    };

    ias_log_init("test_amqp", IAS_LOG_INFO);
    return cmocka_run_group_tests(tests, suite_setup, suite_teardown);
}
