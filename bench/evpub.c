/* Load generator for the accounting and audit benchmarks: publishes
 * usage.recorded.v1 or audit.recorded.v1 events through libcommon's
 * ias_publisher (confirms, the same path the router uses) at a fixed rate or
 * as fast as the broker confirms.
 *
 *   evpub usage|audit COUNT RATE [ORGS] [USERS_PER_ORG]
 *
 * RATE 0 = unpaced. IAS_AMQP_URL names the broker, BENCH_SPOOL a fresh spool
 * directory. occurred_at is the publish time (ms), so the consumer's
 * received_at - created_at is the end-to-end lag. Org i is
 * 0000xxxx-0000-4000-8000-00000000000i style ids, user j of org i
 * ...-8001-<i><j>, key = user with 8002, all deterministic, so the SQL side
 * can rebuild them. Built by bench/accounting.sh and bench/audit.sh.
 *
 * BENCH_PACK_MAX=N (N > 1) lets the publisher send up to N queued events in
 * one message, waiting up to BENCH_PACK_WAIT_MS (10) for a pack to fill, as
 * the router does (IAS_EVENTS_PACK_MAX, IAS_EVENTS_PACK_WAIT); unset or 1: one
 * message per event. */
#include "ias/amqp.h"
#include "ias/crypto.h"

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

static void iso_now(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "usage") != 0 && strcmp(argv[1], "audit") != 0)) {
        fprintf(stderr, "usage: evpub usage|audit COUNT RATE [ORGS] [USERS_PER_ORG]\n");
        return 2;
    }
    int audit = strcmp(argv[1], "audit") == 0;
    long count = atol(argv[2]);
    double rate = atof(argv[3]);
    long orgs = argc > 4 ? atol(argv[4]) : 1000;
    long users = argc > 5 ? atol(argv[5]) : 100;
    const char *url = getenv("IAS_AMQP_URL");
    const char *spool = getenv("BENCH_SPOOL");
    if (url == NULL || spool == NULL || count <= 0 || orgs <= 0 || users <= 0) {
        fprintf(stderr, "evpub: need IAS_AMQP_URL, BENCH_SPOOL, COUNT > 0\n");
        return 2;
    }
    ias_publisher_opts o = {.url = url, .spool_dir = spool, .name = "bench", .batch_max = 256};
    const char *pack = getenv("BENCH_PACK_MAX"), *wait = getenv("BENCH_PACK_WAIT_MS");
    if (pack != NULL && atol(pack) > 1) {
        o.pack_max = (size_t)atol(pack);
        o.pack_wait_ms = wait ? atoi(wait) : 10; /* the router's IAS_EVENTS_PACK_WAIT */
    }
    /* Event ids as their producers make them: time-ordered UUIDv7 (the router,
     * audit_event.c), so the consumers' unique indexes are appended to at their
     * right edge. BENCH_UUID_V4=1 makes random ids, as this tool did before. */
    const char *v4 = getenv("BENCH_UUID_V4");
    void (*make_id)(char *) = v4 != NULL && strcmp(v4, "1") == 0 ? ias_uuid_v4 : ias_uuid_v7;
    ias_publisher *p = ias_publisher_new(&o);
    if (p == NULL)
        return 1;

    char body[1024], id[IAS_UUID_STR_LEN + 1], ts[96];
    double t0 = now_s();
    unsigned long long seed = 88172645463325252ULL;
    for (long i = 0; i < count; i++) {
        if (rate > 0) {
            double due = t0 + (double)i / rate;
            double d = due - now_s();
            if (d > 0.0005)
                usleep((useconds_t)(d * 1e6));
        }
        /* Keep the in-memory queue short: when it fills, the publisher
         * fsyncs events to its spool, which is not what we measure. */
        for (;;) {
            ias_publisher_stats st;
            ias_publisher_stats_get(p, &st);
            if (st.queue_depth < 2048)
                break;
            usleep(200);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        long org = (long)(seed % (unsigned long long)orgs);
        long user = (long)((seed >> 20) % (unsigned long long)users);
        make_id(id);
        iso_now(ts, sizeof(ts));
        int n;
        if (audit)
            n = snprintf(body, sizeof(body),
                         "{\"event_id\":\"%s\",\"occurred_at\":\"%s\",\"service\":\"bench\","
                         "\"actor\":{\"type\":\"user\",\"id\":\"%08lx-0000-4000-8001-%012lx\"},"
                         "\"org_id\":\"%08lx-0000-4000-8000-000000000000\","
                         "\"action\":\"api_key_created\","
                         "\"resource\":{\"type\":\"api_key\",\"id\":\"%s\"},"
                         "\"request_id\":\"req_bench_%ld\",\"outcome\":\"success\","
                         "\"details\":{\"name\":\"bench\",\"prefix\":\"ab12cd34\",\"n\":%ld}}",
                         id, ts, org, user, org, id, i, i);
        else
            n = snprintf(
                body, sizeof(body),
                "{\"event_id\":\"%s\",\"occurred_at\":\"%s\",\"request_id\":\"req_bench_%ld\","
                "\"org_id\":\"%08lx-0000-4000-8000-000000000000\","
                "\"user_id\":\"%08lx-0000-4000-8001-%012lx\","
                "\"api_key_id\":\"%08lx-0000-4000-8002-%012lx\","
                "\"model\":\"%s\",\"backend\":\"mockllm-1\",\"prompt_tokens\":%d,"
                "\"completion_tokens\":%d,\"status\":200,\"ttft_ms\":%d,"
                "\"duration_ms\":%d,\"stream\":%s,\"aborted\":false}",
                id, ts, i, org, org, user, org, user, (seed & 1) ? "mock-gpt" : "llama-3",
                (int)(seed >> 40) % 2000, (int)(seed >> 50) % 500, 80, 900,
                (seed & 2) ? "true" : "false");
        if (n < 0 || (size_t)n >= sizeof(body) ||
            ias_publisher_publish(p, audit ? "audit.bench.api_key_created" : IAS_AMQP_RK_USAGE, id,
                                  audit ? IAS_EVENT_AUDIT_V1 : IAS_EVENT_USAGE_V1, body,
                                  (size_t)n) != IAS_OK) {
            fprintf(stderr, "evpub: publish %ld failed\n", i);
            ias_publisher_free(p);
            return 1;
        }
    }
    double t_pub = now_s() - t0;
    int idle = ias_publisher_wait_idle(p, 120000);
    double t_all = now_s() - t0;
    ias_publisher_stats st;
    ias_publisher_stats_get(p, &st);
    /* messages: what the broker's cost scales with (a pack is one message). */
    printf("evpub: %ld %s events handed over in %.2fs, confirmed %llu (spooled %llu) in %.2fs: "
           "%.0f events/s, %llu messages%s\n",
           count, argv[1], t_pub, (unsigned long long)st.confirmed, (unsigned long long)st.spooled,
           t_all, (double)count / t_all, (unsigned long long)st.messages,
           idle == IAS_OK ? "" : " (NOT idle)");
    ias_publisher_free(p);
    return idle == IAS_OK ? 0 : 1;
}
