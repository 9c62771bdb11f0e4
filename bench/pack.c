/* Broker cost of event packs: publishes COUNT router-shaped usage.recorded.v1
 * events through libcommon's ias_publisher (confirms, the router's path) with
 * a given pack_max into a private durable queue, then drains them with
 * ias_consumer_run in batch mode (acking everything, as a consumer whose
 * transaction is free would). For each phase it reports the rate and the
 * broker's CPU per event: utime + stime of RabbitMQ's beam.smp from
 * /proc/<pid>/stat, minus what the idle broker burns over the same time.
 *
 *   pack COUNT PACK_MAX [RATE [PACK_WAIT_MS]]
 *
 * RATE 0 or absent = unpaced; PACK_WAIT_MS is the publisher's pack_wait_ms. Environment:
 * IAS_AMQP_URL, BENCH_SPOOL (a fresh spool directory), BENCH_BROKER_PID (beam.smp; without it no
 * CPU figures), BENCH_PREFETCH / BENCH_BATCH (consumer, default 400 / 200 like ias-audit). Build
 * (release libcommon): make BUILD=/tmp/b /tmp/b/lib/libcommon.a
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Ilibcommon/include -o /tmp/pack bench/pack.c \
 *      /tmp/b/lib/libcommon.a $(pkg-config --libs libevent libevent_pthreads hiredis \
 *      librabbitmq libpq libcjson libjwt libcrypt libcrypto) -lpthread -lm */
#include "ias/amqp.h"
#include "ias/crypto.h"
#include "ias/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of pid in seconds, or -1. */
static double cpu_of(long pid)
{
    char path[64], buf[2048];
    FILE *f;
    size_t n;
    const char *p;
    unsigned long long ut = 0, st = 0;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the ")" of the command name: state is field 3, utime 14. */
    if (!(p = strrchr(buf, ')')))
        return -1;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

typedef struct drain {
    atomic_long got;
    long want;
    atomic_bool stop;
} drain;

static void on_batch(const ias_amqp_msg *msgs, size_t n, ias_consume_result *res, void *arg)
{
    drain *d = arg;

    (void)msgs;
    for (size_t i = 0; i < n; i++)
        res[i] = IAS_CONSUME_ACK;
    if (atomic_fetch_add(&d->got, (long)n) + (long)n >= d->want)
        atomic_store(&d->stop, true);
}

static ias_consumer_opts g_copts;

static void *consumer_main(void *arg)
{
    (void)arg;
    if (ias_consumer_run(&g_copts) != IAS_OK)
        fprintf(stderr, "pack: consumer options refused\n");
    return NULL;
}

static void report(const char *phase, long count, double wall, double broker, double idle_rate,
                   double self)
{
    printf("%-8s %7ld events in %6.2f s: %7.0f events/s", phase, count, wall, (double)count / wall);
    if (broker >= 0) {
        double net = broker - idle_rate * wall;
        printf(", broker %.2f s CPU (%.2f idle) = %.1f us/event", broker, idle_rate * wall,
               net * 1e6 / (double)count);
    }
    printf(", this process %.1f us/event\n", self * 1e6 / (double)count);
}

int main(int argc, char **argv)
{
    const char *url = getenv("IAS_AMQP_URL"), *spool = getenv("BENCH_SPOOL");
    long count = argc > 2 ? atol(argv[1]) : 0, pid = 0;
    size_t pack_max = argc > 2 ? (size_t)atol(argv[2]) : 0;
    double rate = argc > 3 ? atof(argv[3]) : 0;
    int wait_ms = argc > 4 ? atoi(argv[4]) : 0;
    char queue[96], key[96], err[300];
    ias_amqp_conn *conn;
    ias_amqp_conn_opts co = {0};
    const char *keys[1];

    if (argc < 3 || !url || !spool || count <= 0) {
        fprintf(stderr, "usage: IAS_AMQP_URL=... BENCH_SPOOL=dir [BENCH_BROKER_PID=pid] "
                        "pack COUNT PACK_MAX [RATE [PACK_WAIT_MS]]\n");
        return 2;
    }
    if (getenv("BENCH_BROKER_PID"))
        pid = atol(getenv("BENCH_BROKER_PID"));
    ias_log_init("pack", IAS_LOG_WARN);
    snprintf(queue, sizeof(queue), "bench.pack.%ld", (long)getpid());
    snprintf(key, sizeof(key), "bench.pack.%ld", (long)getpid());
    keys[0] = key;
    co.url = url;
    if (ias_amqp_connect(&co, &conn, err, sizeof(err)) != IAS_OK) {
        fprintf(stderr, "pack: %s\n", err);
        return 1;
    }
    if (ias_amqp_declare_topology(conn) != IAS_OK ||
        ias_amqp_declare_queue(conn, queue, keys, 1) != IAS_OK) {
        fprintf(stderr, "pack: declare: %s\n", ias_amqp_conn_error(conn));
        ias_amqp_conn_free(conn);
        return 1;
    }

    /* The idle broker's own CPU (stats, timers), subtracted below. */
    double i0 = cpu_of(pid), t0 = now_s();
    sleep(2);
    double idle_rate = pid > 0 ? (cpu_of(pid) - i0) / (now_s() - t0) : 0;

    /* ---- publish ---- */
    ias_publisher_opts o = {.url = url,
                            .spool_dir = spool,
                            .name = "bench",
                            .queue_capacity = 4096,
                            .pack_max = pack_max,
                            .pack_wait_ms = wait_ms};
    ias_publisher *p = ias_publisher_new(&o);
    if (!p)
        return 1;
    if (ias_publisher_wait_idle(p, 10000) != IAS_OK)
        return 1;
    char body[1024], id[IAS_UUID_STR_LEN + 1];
    unsigned long long seed = 88172645463325252ULL;
    double b0 = cpu_of(pid), s0 = cpu_self_s();
    t0 = now_s();
    for (long i = 0; i < count; i++) {
        if (rate > 0) {
            double d = t0 + (double)i / rate - now_s();
            if (d > 0.0002)
                usleep((useconds_t)(d * 1e6));
        }
        /* Keep the memory queue from overflowing into the spool: that is the
         * broker-away path, not what is measured. */
        for (;;) {
            ias_publisher_stats st;
            ias_publisher_stats_get(p, &st);
            if (st.queue_depth < 3072)
                break;
            usleep(100);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ias_uuid_v4(id);
        int n = snprintf(
            body, sizeof(body),
            "{\"event_id\":\"%s\",\"occurred_at\":\"2026-11-22T07:00:00.000Z\","
            "\"request_id\":\"req_bench_%ld\",\"org_id\":\"%08llx-0000-4000-8000-000000000000\","
            "\"user_id\":\"%08llx-0000-4000-8001-000000000001\","
            "\"api_key_id\":\"%08llx-0000-4000-8002-000000000001\",\"model\":\"mock-gpt\","
            "\"backend\":\"mockllm-1\",\"prompt_tokens\":%d,\"completion_tokens\":%d,"
            "\"status\":200,\"ttft_ms\":80,\"duration_ms\":900,\"stream\":true,\"aborted\":false}",
            id, i, seed % 1000, seed % 1000, seed % 1000, (int)(seed >> 40) % 2000,
            (int)(seed >> 50) % 500);
        if (n < 0 || (size_t)n >= sizeof(body) ||
            ias_publisher_publish(p, key, id, IAS_EVENT_USAGE_V1, body, (size_t)n) != IAS_OK) {
            fprintf(stderr, "pack: publish %ld failed\n", i);
            return 1;
        }
    }
    int idle = ias_publisher_wait_idle(p, 300000);
    double wall = now_s() - t0, broker = pid > 0 ? cpu_of(pid) - b0 : -1;
    double self = cpu_self_s() - s0;
    ias_publisher_stats st;
    ias_publisher_stats_get(p, &st);
    ias_publisher_free(p);
    printf("pack_max %zu, pack_wait_ms %d: %llu events confirmed in %llu messages (%.1f per "
           "message), spooled "
           "%llu%s\n",
           pack_max, wait_ms, (unsigned long long)st.confirmed, (unsigned long long)st.messages,
           st.messages ? (double)st.confirmed / (double)st.messages : 0.0,
           (unsigned long long)st.spooled, idle == IAS_OK ? "" : " (NOT idle)");
    report("publish", count, wall, broker, idle_rate, self);

    /* ---- drain ---- */
    drain d = {.want = (long)st.confirmed};
    atomic_init(&d.got, 0);
    atomic_init(&d.stop, false);
    g_copts = (ias_consumer_opts){
        .url = url,
        .name = "bench",
        .queue = queue,
        .prefetch = (uint16_t)(getenv("BENCH_PREFETCH") ? atoi(getenv("BENCH_PREFETCH")) : 400),
        .batch_max = (size_t)(getenv("BENCH_BATCH") ? atoi(getenv("BENCH_BATCH")) : 200),
        .batch_handler = on_batch,
        .arg = &d,
        .stop = &d.stop,
    };
    pthread_t th;
    b0 = cpu_of(pid);
    s0 = cpu_self_s();
    t0 = now_s();
    if (pthread_create(&th, NULL, consumer_main, NULL) != 0)
        return 1;
    pthread_join(th, NULL);
    wall = now_s() - t0;
    broker = pid > 0 ? cpu_of(pid) - b0 : -1;
    self = cpu_self_s() - s0;
    report("drain", atomic_load(&d.got), wall, broker, idle_rate, self);

    if (ias_amqp_delete_queue(conn, queue) != IAS_OK)
        fprintf(stderr, "pack: could not delete %s\n", queue);
    ias_amqp_conn_free(conn);
    return 0;
}
