/* ias-accounting against the real stack: usage events published through
 * ias_publisher, the real binary consuming them, PostgreSQL and Redis checked.
 *
 * - kill -9 the consumer repeatedly while 10,000 events (plus duplicates) flow
 *   -> exactly 10,000 rows, token sums equal in events, hourly and daily
 *   rollups and month totals (per org and per user);
 * - RabbitMQ restarted mid-run -> nothing lost;
 * - malformed events -> ias.dead, the consumer keeps going;
 * - month rollover with IAS_FAKE_NOW: partitions, rates of the time, budget
 *   counters per month, alerts once each, drift correction rule (read from
 *   usage_month_totals), the daily rollup job summarising the day that ended
 *   and a late event of that day counted once.
 *
 * Each test uses a fresh database and its own queue bound to its own routing
 * key, so nothing else on the stack is disturbed. Needs IAS_PG_DSN,
 * IAS_REDIS_URL, IAS_AMQP_URL (IAS_STACK_CTL for the broker restart). */
#include "testlib.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>

#include "ias/amqp.h"
#include "ias/common.h"
#include "ias/log.h"
#include "ias/pg.h"
#include "ias/redis.h"

#define SECRET "accounting-test-secret-0123456789abcdef"

typedef struct env {
    const char *dsn, *redis, *amqp;
    char db[128];
    char *db_dsn;
    char queue[200], rk[200], tmp[256];
    ias_pg *pg;
    ias_publisher *pub;
    pid_t child;
    int runs;
    unsigned seq;
    unsigned tag;
} env;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *bin_dir(void)
{
    const char *b = ias_test_env("IAS_BIN_DIR");
    return b ? b : "build/asan/bin";
}

/* Forks path with extra environment entries ("K=V", NULL-terminated). */
static pid_t spawn(const char *path, const char *const *extra, const char *log)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                _exit(126);
            close(fd);
        }
        for (int i = 0; extra && extra[i]; i++)
            putenv((char *)extra[i]);
        execl(path, path, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static long long q1(env *e, const char *sql)
{
    PGresult *res = NULL;
    long long v = -1;

    if (ias_pg_exec(e->pg, sql, 0, NULL, &res) != IAS_OK)
        fail_msg("%s: %s", sql, ias_pg_last_message(e->pg));
    if (ias_pg_is_null(res, 0, 0))
        v = 0;
    else if (ias_pg_value_ll(res, 0, 0, &v) != IAS_OK)
        fail_msg("%s: not a number: %s", sql, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
    return v;
}

static int setup(void **state)
{
    env *e = ias_xcalloc(1, sizeof(*e));
    ias_pg *admin;
    char *sql, mig[512], migdir[512], dsn_env[2048];
    ias_amqp_conn *c = NULL;
    ias_amqp_conn_opts co = {0};
    char err[256];
    const char *keys[1];
    pid_t pid;
    int st;

    e->dsn = ias_test_env("IAS_PG_DSN");
    e->redis = ias_test_env("IAS_REDIS_URL");
    e->amqp = ias_test_env("IAS_AMQP_URL");
    if (!e->dsn || !e->redis || !e->amqp) {
        free(e);
        *state = NULL;
        return 0;
    }
    ias_test_unique("acct", e->db, sizeof(e->db));
    admin = ias_pg_new(e->dsn, 5000);
    sql = ias_xasprintf("CREATE DATABASE %s", e->db);
    if (ias_pg_exec(admin, sql, 0, NULL, NULL) != IAS_OK)
        fail_msg("%s: %s", sql, ias_pg_last_message(admin));
    free(sql);
    ias_pg_free(admin);
    e->db_dsn = ias_pg_dsn_with_dbname(e->dsn, e->db);
    assert_non_null(e->db_dsn);

    snprintf(mig, sizeof(mig), "%s/ias-migrate", bin_dir());
    snprintf(migdir, sizeof(migdir), "IAS_MIGRATIONS_DIR=%s/migrations", ias_test_repo_root());
    snprintf(dsn_env, sizeof(dsn_env), "IAS_PG_DSN=%s", e->db_dsn);
    {
        const char *extra[] = {dsn_env, migdir, NULL};
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (int i = 0; extra[i]; i++)
                putenv((char *)extra[i]);
            execl(mig, mig, "up", (char *)NULL);
            _exit(127);
        }
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    e->pg = ias_pg_new(e->db_dsn, 5000);

    snprintf(e->queue, sizeof(e->queue), "%s.q", e->db);
    snprintf(e->rk, sizeof(e->rk), "test.%s", e->db);
    co.url = e->amqp;
    if (ias_amqp_connect(&co, &c, err, sizeof(err)) != IAS_OK)
        fail_msg("amqp: %s", err);
    keys[0] = e->rk;
    assert_int_equal(ias_amqp_declare_topology(c), IAS_OK);
    assert_int_equal(ias_amqp_declare_queue(c, e->queue, keys, 1), IAS_OK);
    ias_amqp_conn_free(c);

    snprintf(e->tmp, sizeof(e->tmp), "/tmp/%s", e->db);
    assert_int_equal(mkdir(e->tmp, 0700), 0);
    {
        char spool[300];
        ias_publisher_opts po = {.url = e->amqp, .spool_dir = spool, .name = "acct-test"};
        snprintf(spool, sizeof(spool), "%s/spool", e->tmp);
        e->pub = ias_publisher_new(&po);
        assert_non_null(e->pub);
    }
    e->tag = (unsigned)(ias_now_us() & 0xffffffu);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    ias_amqp_conn *c = NULL;
    ias_amqp_conn_opts co = {0};
    char err[256], cmd[400];
    ias_pg *admin;
    char *sql;

    if (e == NULL)
        return 0;
    if (e->child > 0) {
        kill(e->child, SIGKILL);
        waitpid(e->child, NULL, 0);
    }
    ias_publisher_free(e->pub);
    co.url = e->amqp;
    if (ias_amqp_connect(&co, &c, err, sizeof(err)) == IAS_OK) {
        if (ias_amqp_delete_queue(c, e->queue) != IAS_OK)
            fprintf(stderr, "could not delete %s\n", e->queue);
        ias_amqp_conn_free(c);
    }
    ias_pg_free(e->pg);
    admin = ias_pg_new(e->dsn, 5000);
    sql = ias_xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", e->db);
    /* An autovacuum worker busy on the new rows can refuse FORCE for a while. */
    for (int i = 0; ias_pg_exec(admin, sql, 0, NULL, NULL) != IAS_OK; i++) {
        if (i == 10) {
            fprintf(stderr, "%s: %s\n", sql, ias_pg_last_message(admin));
            break;
        }
        sleep_ms(500);
    }
    free(sql);
    ias_pg_free(admin);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", e->tmp);
    free(e->db_dsn);
    free(e);
    return 0;
}

static void start_acct(env *e, const char *fake_now)
{
    static char dsn_env[2048], q[256], fake[100], log_path[400], batch[64], prefetch[64];
    char path[400];
    const char *extra[] = {
        dsn_env, q, "IAS_JWT_SECRET=" SECRET, "IAS_PORT=0", "IAS_WORKERS=1", batch, prefetch,
        "IAS_DRIFT_CHECK_INTERVAL=300ms", "IAS_DAILY_ROLLUP_INTERVAL=300ms", "IAS_LOG_LEVEL=info",
        fake,
        /* two concurrent batches: exactly-once and alerts must hold across them */
        "IAS_CONSUMER_THREADS=2", NULL};

    snprintf(batch, sizeof(batch), "IAS_BATCH_SIZE=%s",
             ias_test_env("IAS_BENCH_BATCH") ? ias_test_env("IAS_BENCH_BATCH") : "250");
    snprintf(prefetch, sizeof(prefetch), "IAS_CONSUMER_PREFETCH=%s",
             ias_test_env("IAS_BENCH_PREFETCH") ? ias_test_env("IAS_BENCH_PREFETCH") : "500");
    snprintf(dsn_env, sizeof(dsn_env), "IAS_PG_DSN=%s", e->db_dsn);
    snprintf(q, sizeof(q), "IAS_USAGE_QUEUE=%s", e->queue);
    snprintf(fake, sizeof(fake), "IAS_FAKE_NOW=%s", fake_now ? fake_now : "");
    snprintf(log_path, sizeof(log_path), "%s/accounting.log", e->tmp);
    snprintf(path, sizeof(path), "%s/ias-accounting", bin_dir());
    e->child = spawn(path, extra, log_path);
    e->runs++;
}

/* SIGTERM and a clean exit (ASan/LSan make a leak a non-zero status). */
static void stop_acct(env *e)
{
    int st;

    assert_true(e->child > 0);
    kill(e->child, SIGTERM);
    assert_int_equal(waitpid(e->child, &st, 0), e->child);
    e->child = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "tail -n 40 '%s/accounting.log' >&2", e->tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "no log\n");
        fail_msg("ias-accounting did not exit cleanly (status %d)", st);
    }
}

static void kill9(env *e)
{
    kill(e->child, SIGKILL);
    waitpid(e->child, NULL, 0);
    e->child = 0;
}

typedef struct ev {
    char id[40];
    char org[40];
    char user[40];
    const char *model;
    const char *at;
    long prompt, completion;
} ev;

static void make_id(env *e, char *buf, size_t len, unsigned kind, unsigned n)
{
    snprintf(buf, len, "%08x-%04x-4000-8000-%012x", e->tag, kind & 0xffffu, n);
}

static void publish(env *e, const ev *v)
{
    char body[1024];
    int n =
        snprintf(body, sizeof(body),
                 "{\"event_id\":\"%s\",\"occurred_at\":\"%s\",\"request_id\":\"req-%s\","
                 "\"org_id\":\"%s\",\"user_id\":%s%s%s,\"api_key_id\":null,"
                 "\"model\":\"%s\",\"backend\":\"mock-1\",\"prompt_tokens\":%ld,"
                 "\"completion_tokens\":%ld,\"status\":200,\"ttft_ms\":5,\"duration_ms\":20,"
                 "\"stream\":false,\"aborted\":false}",
                 v->id, v->at, v->id, v->org, v->user[0] ? "\"" : "", v->user[0] ? v->user : "null",
                 v->user[0] ? "\"" : "", v->model, v->prompt, v->completion);
    assert_true(n > 0 && (size_t)n < sizeof(body));
    assert_int_equal(
        ias_publisher_publish(e->pub, e->rk, v->id, IAS_EVENT_USAGE_V1, body, (size_t)n), IAS_OK);
}

static void publish_raw(env *e, const char *id, const char *body)
{
    assert_int_equal(
        ias_publisher_publish(e->pub, e->rk, id, IAS_EVENT_USAGE_V1, body, strlen(body)), IAS_OK);
}

/* Waits until usage_events holds want rows (or fails after timeout_s). */
static void wait_rows(env *e, long long want, int timeout_s)
{
    uint64_t end = ias_now_ms() + (uint64_t)timeout_s * 1000;
    long long n = 0;

    while (ias_now_ms() < end) {
        n = q1(e, "SELECT count(*) FROM usage_events");
        if (n >= want)
            break;
        sleep_ms(200);
    }
    assert_int_equal(n, want);
}

/* The watermark of the daily rollups (0012) as SQL: the first UTC day not
 * yet summarised, as a time. */
#define WATERMARK_TS "(SELECT day::timestamp AT TIME ZONE 'UTC' FROM usage_rollups_daily_watermark)"

/* Each daily rollup (0011) of a day before the watermark (0012) equals the
 * stored events summed per org, UTC day and its dimension, and no day from
 * the watermark on has a daily row: no event counted twice or lost there
 * either. */
static void assert_daily_rollups(env *e)
{
    static const char *const dims[][2] = {{"model", "model"},
                                          {"user_key", "(user_id, api_key_id)"}};

    for (size_t i = 0; i < IAS_ARRAY_LEN(dims); i++) {
        char *sql = ias_xasprintf(
            "SELECT count(*) FROM (SELECT org_id, (created_at AT TIME ZONE 'UTC')::date AS day,"
            "  %s AS dim, count(*) AS n, count(*) FILTER (WHERE status >= 400 OR aborted) AS err,"
            "  sum(prompt_tokens) AS p, sum(completion_tokens) AS c, sum(cost) AS cost"
            "  FROM usage_events WHERE created_at < " WATERMARK_TS " GROUP BY 1, 2, 3) ev"
            " FULL JOIN usage_rollups_daily_%s d ON d.org_id = ev.org_id AND d.day = ev.day"
            "  AND %s IS NOT DISTINCT FROM ev.dim"
            " WHERE ev.org_id IS NULL OR d.org_id IS NULL OR d.requests <> ev.n"
            "  OR d.errors <> ev.err OR d.prompt_tokens <> ev.p OR d.completion_tokens <> ev.c"
            "  OR d.cost <> ev.cost",
            dims[i][1], dims[i][0], i == 0 ? "d.model" : "(d.user_id, d.api_key_id)");
        long long bad = q1(e, sql);
        if (bad != 0)
            fail_msg("usage_rollups_daily_%s: %lld rows differ from usage_events", dims[i][0], bad);
        free(sql);
        sql = ias_xasprintf("SELECT count(*) FROM usage_rollups_daily_%s"
                            " WHERE day >= (SELECT day FROM usage_rollups_daily_watermark)",
                            dims[i][0]);
        bad = q1(e, sql);
        if (bad != 0)
            fail_msg("usage_rollups_daily_%s: %lld rows of days not summarised yet", dims[i][0],
                     bad);
        free(sql);
    }
}

/* Waits until the daily rollup job has moved the watermark to day. */
static void wait_watermark(env *e, const char *day)
{
    char *sql =
        ias_xasprintf("SELECT count(*) FROM usage_rollups_daily_watermark WHERE day = '%s'", day);
    uint64_t end = ias_now_ms() + 30000;
    long long n = 0;

    while (ias_now_ms() < end && (n = q1(e, sql)) != 1)
        sleep_ms(100);
    free(sql);
    if (n != 1)
        fail_msg("the daily rollup watermark never reached %s", day);
}

static void now_iso(char *buf, size_t len)
{
    ias_iso8601_ms(ias_wall_ms(), buf, len);
}

/* ---- kill -9 during 10,000 events ------------------------------------- */

static void test_kill9_exactly_once(void **state)
{
    env *e = *state;
    const int total = 10000, dups = 300, kills = 5;
    long long want_prompt = 0, want_completion = 0;
    char at[32], orgs[3][40];
    int published = 0, killed = 0;
    uint64_t next_kill;

    if (!e)
        skip();
    now_iso(at, sizeof(at));
    for (int i = 0; i < 3; i++)
        make_id(e, orgs[i], sizeof(orgs[i]), 0xa000u + (unsigned)i, 1);
    start_acct(e, NULL);
    next_kill = ias_now_ms() + 700;
    while (published < total || killed < kills) {
        /* Publish in slices so the kills land while events flow. */
        for (int k = 0; k < 400 && published < total; k++, published++) {
            ev v = {.model = "mock-gpt", .at = at};
            make_id(e, v.id, sizeof(v.id), 1, (unsigned)published);
            (void)ias_strlcpy(v.org, orgs[published % 3], sizeof(v.org));
            make_id(e, v.user, sizeof(v.user), 0xb000u, (unsigned)(published % 7));
            v.prompt = 1 + published % 97;
            v.completion = published % 13;
            want_prompt += v.prompt;
            want_completion += v.completion;
            publish(e, &v);
            /* The producer's own duplicates (a replayed spool): same event again. */
            if (published % (total / dups) == 0)
                publish(e, &v);
        }
        sleep_ms(60);
        if (killed < kills && ias_now_ms() >= next_kill) {
            kill9(e);
            killed++;
            printf("# kill -9 #%d: %d published, %lld stored\n", killed, published,
                   q1(e, "SELECT count(*) FROM usage_events"));
            sleep_ms(100);
            start_acct(e, NULL);
            next_kill = ias_now_ms() + 450 + (uint64_t)(killed * 50);
        }
    }
    assert_int_equal(ias_publisher_wait_idle(e->pub, 30000), IAS_OK);
    wait_rows(e, total, 60);
    sleep_ms(500); /* anything extra would show up now */
    assert_int_equal(q1(e, "SELECT count(*) FROM usage_events"), total);
    assert_int_equal(q1(e, "SELECT count(DISTINCT event_id) FROM usage_events"), total);
    assert_int_equal(q1(e, "SELECT count(*) FROM processed_events"), total);
    assert_int_equal(q1(e, "SELECT sum(prompt_tokens) FROM usage_events"), want_prompt);
    assert_int_equal(q1(e, "SELECT sum(completion_tokens) FROM usage_events"), want_completion);
    assert_int_equal(q1(e, "SELECT sum(prompt_tokens) FROM usage_rollups_hourly"), want_prompt);
    assert_int_equal(q1(e, "SELECT sum(completion_tokens) FROM usage_rollups_hourly"),
                     want_completion);
    assert_int_equal(q1(e, "SELECT sum(requests) FROM usage_rollups_hourly"), total);
    /* Month totals: one org row per org and one per (org, user), each equal
     * to the sums over usage_events (no event counted twice or lost). */
    assert_int_equal(q1(e, "SELECT count(*) FROM usage_month_totals WHERE user_id IS NULL"), 3);
    assert_int_equal(q1(e, "SELECT count(*) FROM usage_month_totals WHERE user_id IS NOT NULL"),
                     21);
    assert_int_equal(
        q1(e, "SELECT count(*) FROM (SELECT org_id, NULL::uuid AS user_id,"
              "  (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date AS month,"
              "  count(*) AS n, sum(prompt_tokens) AS p, sum(completion_tokens) AS c"
              "  FROM usage_events GROUP BY 1, 3"
              " UNION ALL SELECT org_id, user_id,"
              "  (date_trunc('month', created_at, 'UTC') AT TIME ZONE 'UTC')::date,"
              "  count(*), sum(prompt_tokens), sum(completion_tokens)"
              "  FROM usage_events WHERE user_id IS NOT NULL GROUP BY 1, 2, 3) ev"
              " FULL JOIN usage_month_totals t"
              "  ON t.org_id = ev.org_id AND t.month = ev.month"
              "  AND t.user_id IS NOT DISTINCT FROM ev.user_id"
              " WHERE ev.org_id IS NULL OR t.org_id IS NULL OR t.requests <> ev.n"
              "  OR t.prompt_tokens <> ev.p OR t.completion_tokens <> ev.c"),
        0);
    assert_int_equal(q1(e, "SELECT sum(prompt_tokens) FROM usage_month_totals"
                           " WHERE user_id IS NULL"),
                     want_prompt);
    assert_daily_rollups(e);
    /* What the analytics read: daily rows before the watermark, hourly after. */
    assert_int_equal(q1(e,
                        "SELECT (SELECT coalesce(sum(requests), 0) FROM usage_rollups_daily_model"
                        "  WHERE day < (SELECT day FROM usage_rollups_daily_watermark))"
                        " + (SELECT coalesce(sum(requests), 0) FROM usage_rollups_hourly"
                        "  WHERE hour >= " WATERMARK_TS ")"),
                     total);
    /* Budget counters of record rebuilt from the database. */
    {
        ias_redis_sync *rs = ias_redis_sync_new(e->redis, 2000);
        char key[200], month[8];
        time_t t = time(NULL);
        struct tm tm;
        long long db_org0;
        char *sql;
        uint64_t end = ias_now_ms() + 5000;
        long long used = -1;

        assert_non_null(gmtime_r(&t, &tm));
        strftime(month, sizeof(month), "%Y%m", &tm);
        snprintf(key, sizeof(key), "ias:budget:%s:%s", orgs[0], month);
        sql = ias_xasprintf("SELECT sum(prompt_tokens + completion_tokens) FROM usage_events "
                            "WHERE org_id = '%s'",
                            orgs[0]);
        db_org0 = q1(e, sql);
        free(sql);
        while (ias_now_ms() < end && used != db_org0) {
            const char *argv[] = {"HGET", key, "used"};
            redisReply *rep = NULL;
            assert_int_equal(ias_redis_sync_cmd(rs, 3, argv, NULL, &rep), IAS_OK);
            used = rep->type == REDIS_REPLY_STRING ? atoll(rep->str) : -1;
            freeReplyObject(rep);
            sleep_ms(200);
        }
        assert_int_equal(used, db_org0);
        {
            const char *argv[] = {"DEL", key};
            redisReply *rep = NULL;
            assert_int_equal(ias_redis_sync_cmd(rs, 2, argv, NULL, &rep), IAS_OK);
            freeReplyObject(rep);
        }
        ias_redis_sync_free(rs);
    }
    stop_acct(e);
    printf("# %d runs of ias-accounting, %d kill -9\n", e->runs, killed);
}

/* ---- RabbitMQ restarted mid-run ---------------------------------------- */

static void test_broker_restart(void **state)
{
    env *e = *state;
    const int total = 3000;
    char at[32], org[40];

    if (!e)
        skip();
    if (!ias_test_env("IAS_STACK_CTL"))
        skip();
    now_iso(at, sizeof(at));
    make_id(e, org, sizeof(org), 0xc000u, 1);
    start_acct(e, NULL);
    for (int i = 0; i < total; i++) {
        ev v = {.model = "mock-gpt", .at = at, .prompt = 10, .completion = 5};
        make_id(e, v.id, sizeof(v.id), 2, (unsigned)i);
        (void)ias_strlcpy(v.org, org, sizeof(v.org));
        publish(e, &v);
        if (i == total / 3) {
            sleep_ms(300);
            assert_int_equal(ias_test_stack("restart rabbitmq"), 0);
        } else if (i % 200 == 0) {
            sleep_ms(30);
        }
    }
    assert_int_equal(ias_publisher_wait_idle(e->pub, 60000), IAS_OK);
    wait_rows(e, total, 60);
    assert_int_equal(q1(e, "SELECT sum(prompt_tokens) FROM usage_rollups_hourly"), 10LL * total);
    stop_acct(e);
}

/* ---- PostgreSQL restarted mid-run: RETRY, never dead-letter ------------ */

static void test_postgres_restart(void **state)
{
    env *e = *state;
    const int total = 2000;
    char at[32], org[40];

    if (!e)
        skip();
    if (!ias_test_env("IAS_STACK_CTL"))
        skip();
    now_iso(at, sizeof(at));
    make_id(e, org, sizeof(org), 0xf000u, 1);
    start_acct(e, NULL);
    for (int i = 0; i < total; i++) {
        ev v = {.model = "mock-gpt", .at = at, .prompt = 3, .completion = 4};
        make_id(e, v.id, sizeof(v.id), 8, (unsigned)i);
        (void)ias_strlcpy(v.org, org, sizeof(v.org));
        publish(e, &v);
        if (i == total / 3) {
            sleep_ms(200);
            assert_int_equal(ias_test_stack("restart postgres"), 0);
        } else if (i % 200 == 0) {
            sleep_ms(30);
        }
    }
    assert_int_equal(ias_publisher_wait_idle(e->pub, 60000), IAS_OK);
    wait_rows(e, total, 60);
    assert_int_equal(q1(e, "SELECT sum(completion_tokens) FROM usage_rollups_hourly"), 4LL * total);
    stop_acct(e);
}

/* ---- poison messages ---------------------------------------------------- */

/* Finds (and acks) messages with the given ids on ias.dead; others are left. */
static int take_dead(env *e, const char *const *ids, int nids)
{
    ias_amqp_conn *c = NULL;
    ias_amqp_conn_opts co = {.url = e->amqp};
    char err[256];
    int found = 0;

    if (ias_amqp_connect(&co, &c, err, sizeof(err)) != IAS_OK)
        fail_msg("amqp: %s", err);
    for (int guard = 0; guard < 20000 && found < nids; guard++) {
        amqp_connection_state_t st = ias_amqp_conn_state(c);
        amqp_rpc_reply_t r = amqp_basic_get(st, 1, amqp_cstring_bytes(IAS_AMQP_QUEUE_DEAD), 0);
        amqp_message_t msg;
        uint64_t tag;
        bool mine = false;

        assert_int_equal(r.reply_type, AMQP_RESPONSE_NORMAL);
        if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD)
            break;
        tag = ((amqp_basic_get_ok_t *)r.reply.decoded)->delivery_tag;
        assert_int_equal(amqp_read_message(st, 1, &msg, 0).reply_type, AMQP_RESPONSE_NORMAL);
        for (int i = 0; i < nids; i++) {
            if ((msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) &&
                msg.properties.message_id.len == strlen(ids[i]) &&
                memcmp(msg.properties.message_id.bytes, ids[i], strlen(ids[i])) == 0)
                mine = true;
        }
        amqp_destroy_message(&msg);
        if (mine) {
            found++;
            assert_int_equal(amqp_basic_ack(st, 1, tag, 0), 0);
        }
    }
    /* Closing the channel returns the others (unacked) to ias.dead. */
    ias_amqp_conn_free(c);
    return found;
}

static void test_poison_dead_lettered(void **state)
{
    env *e = *state;
    char at[32], bad1[40], bad2[40], bad3[40], org[40];
    const char *ids[3] = {bad1, bad2, bad3};
    char body[600];
    int found = 0;

    if (!e)
        skip();
    now_iso(at, sizeof(at));
    make_id(e, org, sizeof(org), 0xd000u, 1);
    make_id(e, bad1, sizeof(bad1), 3, 1);
    make_id(e, bad2, sizeof(bad2), 3, 2);
    make_id(e, bad3, sizeof(bad3), 3, 3);
    start_acct(e, NULL);
    publish_raw(e, bad1, "{\"event_id\": not json");
    snprintf(body, sizeof(body),
             "{\"event_id\":\"%s\",\"occurred_at\":\"%s\",\"request_id\":\"r1\",\"org_id\":\"%s\","
             "\"user_id\":null,\"api_key_id\":null,\"model\":\"m\",\"backend\":null,"
             "\"prompt_tokens\":-5,\"completion_tokens\":1,\"status\":200,\"ttft_ms\":null,"
             "\"duration_ms\":1,\"stream\":false,\"aborted\":false}",
             bad2, at, org);
    publish_raw(e, bad2, body);
    /* An impossible date passes a regex but not the calendar. */
    snprintf(body, sizeof(body),
             "{\"event_id\":\"%s\",\"occurred_at\":\"2026-02-30T10:00:00Z\",\"request_id\":\"r1\","
             "\"org_id\":\"%s\",\"user_id\":null,\"api_key_id\":null,\"model\":\"m\","
             "\"backend\":null,\"prompt_tokens\":5,\"completion_tokens\":1,\"status\":200,"
             "\"ttft_ms\":null,\"duration_ms\":1,\"stream\":false,\"aborted\":false}",
             bad3, org);
    publish_raw(e, bad3, body);
    for (int i = 0; i < 5; i++) {
        ev v = {.model = "mock-gpt", .at = at, .prompt = 1, .completion = 1};
        make_id(e, v.id, sizeof(v.id), 4, (unsigned)i);
        (void)ias_strlcpy(v.org, org, sizeof(v.org));
        publish(e, &v);
    }
    assert_int_equal(ias_publisher_wait_idle(e->pub, 30000), IAS_OK);
    wait_rows(e, 5, 30);
    for (int tries = 0; tries < 25 && found < 3; tries++) {
        found += take_dead(e, ids, 3);
        if (found < 3)
            sleep_ms(200);
    }
    assert_int_equal(found, 3);
    stop_acct(e);
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "grep -c 'dead-lettered' '%s/accounting.log' >/dev/null",
                 e->tmp);
        assert_int_equal(system(cmd), 0);
    }
}

/* ---- month rollover with the fake clock -------------------------------- */

static long long redis_used(ias_redis_sync *rs, const char *key)
{
    const char *argv[] = {"HGET", key, "used"};
    redisReply *rep = NULL;
    long long v;

    assert_int_equal(ias_redis_sync_cmd(rs, 3, argv, NULL, &rep), IAS_OK);
    v = rep->type == REDIS_REPLY_STRING ? atoll(rep->str) : -1;
    freeReplyObject(rep);
    return v;
}

static void redis_set_used(ias_redis_sync *rs, const char *key, const char *v)
{
    const char *argv[] = {"HSET", key, "used", v};
    redisReply *rep = NULL;

    assert_int_equal(ias_redis_sync_cmd(rs, 4, argv, NULL, &rep), IAS_OK);
    freeReplyObject(rep);
}

static void wait_used(ias_redis_sync *rs, const char *key, long long want)
{
    uint64_t end = ias_now_ms() + 8000;
    long long v = -2;

    while (ias_now_ms() < end && (v = redis_used(rs, key)) != want)
        sleep_ms(100);
    assert_int_equal(v, want);
}

static void test_month_rollover(void **state)
{
    env *e = *state;
    char org[40], user[40], sql[1200], kfeb[200], kfeb_u[200];
    ias_redis_sync *rs;

    if (!e)
        skip();
    make_id(e, org, sizeof(org), 0xe000u, 1);
    make_id(e, user, sizeof(user), 0xe001u, 1);
    snprintf(sql, sizeof(sql),
             "SELECT set_config('ias.org_id', '*', false);"
             "INSERT INTO orgs (id, name) VALUES ('%s', 'rollover');"
             "INSERT INTO org_budgets (org_id, monthly_token_limit) VALUES ('%s', 1000);"
             "INSERT INTO users (id, org_id, email, password_hash, role_id, monthly_token_limit)"
             " VALUES ('%s', '%s', 'u@example.com', 'x', '00000000-0000-0000-0000-000000000003',"
             " 500);"
             "INSERT INTO model_rate_history VALUES"
             " ('rated', '2031-01-01T00:00:00Z', 1, 2), ('rated', '2031-02-01T00:00:00Z', 3, 4)",
             org, org, user, org);
    assert_int_equal(ias_pg_ensure(e->pg), IAS_OK);
    if (ias_pg_exec_script(e->pg, sql) != IAS_OK)
        fail_msg("seeding: %s", ias_pg_last_message(e->pg));

    /* One second before February 2031 (UTC): no partition exists for it yet. */
    assert_int_equal(q1(e, "SELECT count(*) FROM pg_class WHERE relname = 'usage_events_2031_02'"),
                     0);
    start_acct(e, "2031-01-31T23:59:59Z");
    {
        ev jan = {
            .model = "rated", .at = "2031-01-31T23:59:59.500Z", .prompt = 800, .completion = 50};
        ev feb1 = {
            .model = "rated", .at = "2031-02-01T00:00:00.250Z", .prompt = 60, .completion = 40};
        ev feb2 = {
            .model = "rated", .at = "2031-02-01T00:00:00.750Z", .prompt = 900, .completion = 50};
        make_id(e, jan.id, sizeof(jan.id), 5, 1);
        make_id(e, feb1.id, sizeof(feb1.id), 5, 2);
        make_id(e, feb2.id, sizeof(feb2.id), 5, 3);
        (void)ias_strlcpy(jan.org, org, sizeof(jan.org));
        (void)ias_strlcpy(feb1.org, org, sizeof(feb1.org));
        (void)ias_strlcpy(feb2.org, org, sizeof(feb2.org));
        (void)ias_strlcpy(feb2.user, user, sizeof(feb2.user));
        publish(e, &jan);
        publish(e, &feb1);
        assert_int_equal(ias_publisher_wait_idle(e->pub, 30000), IAS_OK);
        wait_rows(e, 2, 30);
        publish(e, &feb2);
        publish(e, &jan); /* a redelivery: changes nothing, raises no second alert */
        assert_int_equal(ias_publisher_wait_idle(e->pub, 30000), IAS_OK);
        wait_rows(e, 3, 30);
    }
    sleep_ms(300);
    /* Partitions made ahead from the fake clock; rows where their month says. */
    assert_int_equal(q1(e, "SELECT count(*) FROM pg_class WHERE relname IN ('usage_events_2031_01',"
                           " 'usage_events_2031_02', 'usage_events_2031_03')"),
                     3);
    assert_int_equal(q1(e, "SELECT count(*) FROM usage_events_2031_01"), 1);
    assert_int_equal(q1(e, "SELECT count(*) FROM usage_events_2031_02"), 2);
    /* Cost at the rate of the time: January 1/2, February 3/4 per 1k. */
    assert_int_equal(q1(e, "SELECT (sum(cost) * 1000000)::bigint FROM usage_events_2031_01"),
                     (800LL * 1 + 50 * 2) * 1000);
    assert_int_equal(q1(e, "SELECT (sum(cost) * 1000000)::bigint FROM usage_events_2031_02"),
                     ((60LL + 900) * 3 + (40LL + 50) * 4) * 1000);
    assert_int_equal(q1(e, "SELECT (sum(cost) * 1000000)::bigint FROM usage_rollups_hourly"),
                     ((800LL * 1 + 50 * 2) + (960LL * 3 + 90 * 4)) * 1000);
    /* The fake clock is in February now: the daily job summarises January 31
     * (and the years before it, empty) and moves the watermark to February 1;
     * the redelivered January event is in January 31's daily rows once. */
    wait_watermark(e, "2031-02-01");
    assert_daily_rollups(e);
    assert_int_equal(q1(e, "SELECT count(*) FROM usage_rollups_daily_model"), 1);
    assert_int_equal(q1(e, "SELECT prompt_tokens FROM usage_rollups_daily_user_key"
                           " WHERE day = '2031-01-31'"),
                     800);
    /* January: 850 of 1000 -> 80 %. February: 1050 -> 80, 90, 100 %; the user
     * (950 of 500) -> 80, 90, 100 %. Each once. */
    assert_int_equal(
        q1(e, "SELECT count(*) FROM budget_alerts WHERE month = '2031-01-01' AND user_id IS NULL"
              " AND threshold = 80"),
        1);
    assert_int_equal(q1(e, "SELECT count(*) FROM budget_alerts WHERE month = '2031-01-01'"), 1);
    assert_int_equal(
        q1(e, "SELECT count(*) FROM budget_alerts WHERE month = '2031-02-01' AND user_id IS NULL"),
        3);
    assert_int_equal(q1(e, "SELECT count(*) FROM budget_alerts WHERE month = '2031-02-01'"
                           " AND user_id IS NOT NULL"),
                     3);

    /* Counters keyed by month: the fake clock is in February now. */
    rs = ias_redis_sync_new(e->redis, 2000);
    snprintf(kfeb, sizeof(kfeb), "ias:budget:%s:203102", org);
    snprintf(kfeb_u, sizeof(kfeb_u), "ias:budget:%s:203102:u:%s", org, user);
    wait_used(rs, kfeb, 1050);
    wait_used(rs, kfeb_u, 950);
    /* Below the record: corrected. Above it (events in flight): left alone. */
    redis_set_used(rs, kfeb, "7");
    wait_used(rs, kfeb, 1050);
    redis_set_used(rs, kfeb_u, "5000");
    sleep_ms(1000);
    assert_int_equal(redis_used(rs, kfeb_u), 5000);
    /* The totals the consumer kept, per month, org and user... */
    {
        PGresult *res = NULL;
        char want[200];
        snprintf(sql, sizeof(sql),
                 "SELECT coalesce(string_agg(month || ':' || coalesce(user_id::text, 'org') || '='"
                 " || (prompt_tokens + completion_tokens), ',' ORDER BY month, user_id NULLS"
                 " FIRST), '') FROM usage_month_totals WHERE org_id = '%s'",
                 org);
        snprintf(want, sizeof(want), "2031-01-01:org=850,2031-02-01:org=1050,2031-02-01:%s=950",
                 user);
        assert_int_equal(ias_pg_exec(e->pg, sql, 0, NULL, &res), IAS_OK);
        assert_string_equal(ias_pg_value(res, 0, 0), want);
        ias_pg_clear(res);
    }
    /* ...are what the drift check reads: raise the org's February total behind
     * the consumer's back and the counter follows. */
    snprintf(sql, sizeof(sql),
             "UPDATE usage_month_totals SET prompt_tokens = prompt_tokens + 100"
             " WHERE org_id = '%s' AND month = '2031-02-01' AND user_id IS NULL",
             org);
    assert_int_equal(ias_pg_exec(e->pg, sql, 0, NULL, NULL), IAS_OK);
    wait_used(rs, kfeb, 1150);
    /* A late event of January 31, a day already summarised, and the January
     * event once more: the batch adds the new one to the daily rows itself,
     * once; the redelivery changes nothing. */
    {
        ev late = {.model = "rated", .at = "2031-01-31T12:00:00Z", .prompt = 10, .completion = 0};
        ev jan = {
            .model = "rated", .at = "2031-01-31T23:59:59.500Z", .prompt = 800, .completion = 50};
        make_id(e, late.id, sizeof(late.id), 5, 4);
        make_id(e, jan.id, sizeof(jan.id), 5, 1);
        (void)ias_strlcpy(late.org, org, sizeof(late.org));
        (void)ias_strlcpy(jan.org, org, sizeof(jan.org));
        publish(e, &late);
        publish(e, &jan);
        assert_int_equal(ias_publisher_wait_idle(e->pub, 30000), IAS_OK);
        wait_rows(e, 4, 30);
        sleep_ms(300);
        assert_int_equal(q1(e, "SELECT count(*) FROM usage_events"), 4);
        assert_int_equal(
            q1(e, "SELECT (day = '2031-02-01')::int FROM usage_rollups_daily_watermark"), 1);
        assert_daily_rollups(e);
        assert_int_equal(q1(e, "SELECT count(*) FROM usage_rollups_daily_model"), 1);
        assert_int_equal(q1(e, "SELECT requests * 10000 + prompt_tokens"
                               " FROM usage_rollups_daily_model WHERE day = '2031-01-31'"),
                         2 * 10000 + 810);
    }
    {
        const char *argv[] = {"DEL", kfeb, kfeb_u};
        redisReply *rep = NULL;
        assert_int_equal(ias_redis_sync_cmd(rs, 3, argv, NULL, &rep), IAS_OK);
        freeReplyObject(rep);
    }
    ias_redis_sync_free(rs);
    stop_acct(e);
}

/* ---- benchmark mode (bench/accounting.sh): IAS_BENCH_EVENTS=N ----------- */

static void test_bench_ingest(void **state)
{
    env *e = *state;
    const char *nenv = ias_test_env("IAS_BENCH_EVENTS");
    long n = nenv ? atol(nenv) : 0;
    char at[32];
    uint64_t t0, t_first = 0, t_end;
    long long rows = 0;

    if (!e || n <= 0)
        skip();
    /* 1. Backlog drain: N events queued first (1,000 orgs x 100 users), then
     * the consumer starts; the rate counts from the first stored row. */
    now_iso(at, sizeof(at));
    t0 = ias_now_ms();
    for (long i = 0; i < n; i++) {
        ev v = {.model = "mock-gpt", .at = at, .prompt = 1 + i % 500, .completion = i % 300};
        make_id(e, v.id, sizeof(v.id), 6, (unsigned)i);
        make_id(e, v.org, sizeof(v.org), 0x1000u + (unsigned)(i % 1000), 1);
        make_id(e, v.user, sizeof(v.user), 0x1000u + (unsigned)(i % 1000), 2 + (unsigned)(i % 100));
        publish(e, &v);
    }
    assert_int_equal(ias_publisher_wait_idle(e->pub, 600000), IAS_OK);
    printf("# published %ld events in %.2f s\n", n, (double)(ias_now_ms() - t0) / 1000.0);
    start_acct(e, NULL);
    for (;;) {
        rows = q1(e, "SELECT count(*) FROM usage_events");
        if (rows > 0 && t_first == 0)
            t_first = ias_now_ms();
        if (rows >= n)
            break;
        sleep_ms(50);
    }
    t_end = ias_now_ms();
    printf("# ingest: %ld events in %.2f s after the first row: %.0f events/s\n", n,
           (double)(t_end - t_first) / 1000.0,
           (double)n * 1000.0 / (double)(t_end - t_first > 0 ? t_end - t_first : 1));
    /* 2. Consumer lag at a steady 2,000 events/s for 10 s. */
    {
        const int rate = 2000, secs = 10;
        PGresult *res = NULL;
        t0 = ias_now_ms();
        for (int i = 0; i < rate * secs; i++) {
            ev v = {.model = "mock-gpt", .prompt = 10, .completion = 10};
            char now[32];
            int64_t due = (int64_t)t0 + (int64_t)i * 1000 / rate;
            while ((int64_t)ias_now_ms() < due)
                sleep_ms(1);
            now_iso(now, sizeof(now));
            v.at = now;
            make_id(e, v.id, sizeof(v.id), 7, (unsigned)i);
            make_id(e, v.org, sizeof(v.org), 0x1000u + (unsigned)(i % 1000), 1);
            publish(e, &v);
        }
        assert_int_equal(ias_publisher_wait_idle(e->pub, 60000), IAS_OK);
        wait_rows(e, n + rate * secs, 120);
        assert_int_equal(
            ias_pg_exec(e->pg,
                        "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)),"
                        " round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)), round(max(l))"
                        " FROM (SELECT extract(epoch FROM received_at - created_at) * 1000 AS l"
                        " FROM usage_events WHERE request_id LIKE 'req-%-0007-%') s",
                        0, NULL, &res),
            IAS_OK);
        printf("# lag at %d events/s (occurred_at -> committed): p50 %s ms, p99 %s ms, max %s ms\n",
               rate, ias_pg_value(res, 0, 0), ias_pg_value(res, 0, 1), ias_pg_value(res, 0, 2));
        ias_pg_clear(res);
    }
    stop_acct(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_month_rollover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poison_dead_lettered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_postgres_restart, setup, teardown),
    };

    const struct CMUnitTest bench[] = {
        cmocka_unit_test_setup_teardown(test_bench_ingest, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    ias_log_init("test_accounting", IAS_LOG_WARN);
    if (ias_test_env("IAS_BENCH_EVENTS"))
        return cmocka_run_group_tests(bench, NULL, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
