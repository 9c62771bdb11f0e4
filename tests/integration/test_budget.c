/* Budget reservations against a real Redis (IAS_REDIS_URL). Skips without it. */
#include "testlib.h"

#include "ias/budget.h"
#include "ias/redis.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

static const char *redis_url(void)
{
    const char *url = ias_test_env("IAS_REDIS_URL");
    if (!url) {
        fprintf(stderr, "IAS_REDIS_URL not set: skipping\n");
        skip();
    }
    return url;
}

static long long hget(ias_redis_sync *s, const char *key, const char *field)
{
    const char *argv[] = {"HGET", key, field};
    redisReply *r = NULL;
    long long v = 0;
    assert_int_equal(ias_redis_sync_cmd(s, 3, argv, NULL, &r), IAS_OK);
    if (r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    else
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    return v;
}

static ias_budget_result reserve(ias_redis_sync *s, const char *org, const char *user, int64_t olim,
                                 int64_t ulim, int64_t want, int64_t min, const char *id,
                                 int64_t ttl)
{
    ias_budget_reserve_req q = {.org_id = org,
                                .user_id = user,
                                .org_limit = olim,
                                .user_limit = ulim,
                                .want = want,
                                .min = min,
                                .month = "202611",
                                .reservation_id = id,
                                .ttl_ms = ttl};
    ias_budget_result res;
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_OK);
    return res;
}

static void test_month(void **state)
{
    char m[7];
    (void)state;
    ias_budget_month(0, m);
    assert_string_equal(m, "197001");
    ias_budget_month(1796083200000LL - 1, m); /* 2026-11-30T23:59:59.999Z */
    assert_string_equal(m, "202611");
    ias_budget_month(1796083200000LL, m); /* 2026-12-01T00:00:00Z */
    assert_string_equal(m, "202612");
}

static void test_invalid(void **state)
{
    ias_budget_result res;
    ias_redis_sync *s = ias_redis_sync_new("redis://127.0.0.1:1", 100);
    ias_budget_reserve_req q = {.org_id = "o", .want = 10, .min = 20, .reservation_id = "r"};
    (void)state;
    assert_non_null(s);
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_ERR); /* min > want */
    q.min = 1;
    q.org_id = "a:b"; /* would alias another key */
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_ERR);
    q.org_id = "o";
    q.month = "2026-1";
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_ERR);
    assert_int_equal(ias_budget_settle_sync(s, "r", -1, &res), IAS_ERR);
    /* Valid but Redis is down: fail closed. */
    q.month = NULL;
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_OK);
    assert_int_equal(res.status, IAS_BUDGET_ERROR);
    assert_non_null(res.error);
    ias_redis_sync_free(s);
}

static void test_reserve_settle(void **state)
{
    char org[64], user[64], id1[64], id2[64], ok[160], uk[200];
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    ias_budget_result res;
    (void)state;
    assert_non_null(s);
    ias_test_unique("org", org, sizeof(org));
    ias_test_unique("user", user, sizeof(user));
    ias_test_unique("r", id1, sizeof(id1));
    ias_test_unique("r", id2, sizeof(id2));
    snprintf(ok, sizeof(ok), "ias:budget:%s:202611", org);
    snprintf(uk, sizeof(uk), "ias:budget:%s:202611:u:%s", org, user);

    res = reserve(s, org, user, 1000, 300, 200, 50, id1, 0);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.granted, 200);
    assert_int_equal(res.org_remaining, 800);
    assert_int_equal(res.user_remaining, 100);
    assert_int_equal(hget(s, ok, "reserved"), 200);
    assert_int_equal(hget(s, uk, "reserved"), 200);

    /* The user limit leaves 100: granted less, down to min. */
    res = reserve(s, org, user, 1000, 300, 200, 50, id2, 0);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.granted, 100);
    assert_int_equal(res.user_remaining, 0);

    /* Nothing left for the user: refused, nothing recorded. */
    res = reserve(s, org, user, 1000, 300, 200, 50, "never-recorded-xyz", 0);
    assert_int_equal(res.status, IAS_BUDGET_OVER);
    assert_int_equal(res.granted, 0);
    assert_int_equal(hget(s, ok, "reserved"), 300);

    /* A reused id is an error, not a second grant. */
    res = reserve(s, org, user, -1, -1, 10, 1, id1, 0);
    assert_int_equal(res.status, IAS_BUDGET_ERROR);

    /* Settle more than reserved: used counts the actual tokens. */
    assert_int_equal(ias_budget_settle_sync(s, id1, 250, &res), IAS_OK);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.granted, 250);
    assert_int_equal(hget(s, ok, "used"), 250);
    assert_int_equal(hget(s, ok, "reserved"), 100);
    assert_int_equal(hget(s, uk, "used"), 250);
    assert_int_equal(hget(s, uk, "reserved"), 100);

    /* Idempotent: settling again changes nothing. */
    assert_int_equal(ias_budget_settle_sync(s, id1, 250, &res), IAS_OK);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.granted, 0);
    assert_int_equal(hget(s, ok, "used"), 250);
    assert_int_equal(hget(s, ok, "reserved"), 100);

    /* Release (actual 0). */
    assert_int_equal(ias_budget_settle_sync(s, id2, 0, &res), IAS_OK);
    assert_int_equal(hget(s, ok, "used"), 250);
    assert_int_equal(hget(s, ok, "reserved"), 0);
    assert_int_equal(hget(s, uk, "reserved"), 0);

    /* Unknown ids are fine. */
    assert_int_equal(ias_budget_settle_sync(s, "no-such-reservation", 5, &res), IAS_OK);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.granted, 0);

    /* No user: only the org counter moves. */
    ias_test_unique("r", id1, sizeof(id1));
    res = reserve(s, org, NULL, 1000, 5, 100, 100, id1, 0);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.user_remaining, -1);
    assert_int_equal(hget(s, ok, "reserved"), 100);
    ias_redis_sync_free(s);
}

static void test_expiry(void **state)
{
    char org[64], id1[64], id2[64], ok[160];
    struct timespec ts = {0, 300 * 1000000L};
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    ias_budget_result res;
    (void)state;
    assert_non_null(s);
    ias_test_unique("org", org, sizeof(org));
    ias_test_unique("r", id1, sizeof(id1));
    ias_test_unique("r", id2, sizeof(id2));
    snprintf(ok, sizeof(ok), "ias:budget:%s:202611", org);

    res = reserve(s, org, "u1", 100, -1, 100, 100, id1, 200);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    res = reserve(s, org, "u1", 100, -1, 100, 100, id2, 200);
    assert_int_equal(res.status, IAS_BUDGET_OVER);
    nanosleep(&ts, NULL);
    /* The first reservation expired: the next reserve purges it and fits. */
    res = reserve(s, org, "u1", 100, -1, 100, 100, id2, 60000);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(hget(s, ok, "reserved"), 100);
    char uk[200];
    snprintf(uk, sizeof(uk), "ias:budget:%s:202611:u:u1", org);
    assert_int_equal(hget(s, uk, "reserved"), 100);

    /* A late settle of the expired one still bills its tokens, once. */
    assert_int_equal(ias_budget_settle_sync(s, id1, 40, &res), IAS_OK);
    assert_int_equal(res.granted, 40);
    assert_int_equal(hget(s, ok, "used"), 40);
    assert_int_equal(hget(s, ok, "reserved"), 100);
    assert_int_equal(ias_budget_settle_sync(s, id1, 40, &res), IAS_OK);
    assert_int_equal(hget(s, ok, "used"), 40);
    ias_redis_sync_free(s);
}

static void test_month_keys(void **state)
{
    char org[64], id[64], key[160];
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    ias_budget_result res;
    ias_budget_reserve_req q = {.org_limit = 10, .user_limit = -1, .want = 10, .min = 10};
    (void)state;
    assert_non_null(s);
    ias_test_unique("org", org, sizeof(org));
    q.org_id = org;
    q.user_id = "u";
    /* October's budget spent does not touch November's. */
    ias_test_unique("r", id, sizeof(id));
    q.reservation_id = id;
    q.month = "202501";
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_OK);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(ias_budget_settle_sync(s, id, 10, &res), IAS_OK);
    ias_test_unique("r", id, sizeof(id));
    q.month = "202502";
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_OK);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(ias_budget_settle_sync(s, id, 7, &res), IAS_OK);
    snprintf(key, sizeof(key), "ias:budget:%s:202501", org);
    assert_int_equal(hget(s, key, "used"), 10);
    snprintf(key, sizeof(key), "ias:budget:%s:202502", org);
    assert_int_equal(hget(s, key, "used"), 7);
    /* month NULL = the current UTC month. */
    ias_test_unique("r", id, sizeof(id));
    q.month = NULL;
    assert_int_equal(ias_budget_reserve_sync(s, &q, &res), IAS_OK);
    assert_int_equal(ias_budget_settle_sync(s, id, 3, &res), IAS_OK);
    char m[7];
    ias_budget_month(ias_wall_ms(), m);
    snprintf(key, sizeof(key), "ias:budget:%s:%s", org, m);
    assert_int_equal(hget(s, key, "used"), 3);
    ias_redis_sync_free(s);
}

/* ---- concurrency: 50 reservations at once over 5 connections ---- */

#define NCONC 50
#define NCLIENTS 5

typedef struct conc {
    int done, ok, over, err;
    int64_t granted;
    struct event_base *base;
} conc;

static void on_conc(const ias_budget_result *res, void *arg)
{
    conc *c = arg;
    c->done++;
    if (res->status == IAS_BUDGET_OK) {
        c->ok++;
        c->granted += res->granted;
    } else if (res->status == IAS_BUDGET_OVER) {
        c->over++;
    } else {
        c->err++;
    }
    if (c->done == NCONC)
        event_base_loopbreak(c->base);
}

static void run_concurrent(const char *org, int64_t limit, int64_t want, int64_t min, conc *c)
{
    ias_redis_async *cl[NCLIENTS];
    struct event_base *base = event_base_new();
    struct timespec ts = {0, 200 * 1000000L};
    assert_non_null(base);
    memset(c, 0, sizeof(*c));
    c->base = base;
    for (int i = 0; i < NCLIENTS; i++) {
        cl[i] = ias_redis_async_new(base, redis_url());
        assert_non_null(cl[i]);
    }
    /* Let the connections come up. */
    for (int tries = 0; tries < 50; tries++) {
        bool all = true;
        event_base_loop(base, EVLOOP_NONBLOCK);
        for (int i = 0; i < NCLIENTS; i++)
            all = all && ias_redis_async_connected(cl[i]);
        if (all)
            break;
        ts.tv_nsec = 20 * 1000000L;
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < NCONC; i++) {
        char id[64];
        ias_budget_reserve_req q = {.org_id = org,
                                    .user_id = (i % 2) ? "ua" : "ub",
                                    .org_limit = limit,
                                    .user_limit = -1,
                                    .want = want,
                                    .min = min,
                                    .reservation_id = id};
        ias_test_unique("c", id, sizeof(id));
        assert_int_equal(ias_budget_reserve(cl[i % NCLIENTS], &q, on_conc, c), IAS_OK);
    }
    event_base_dispatch(base);
    for (int i = 0; i < NCLIENTS; i++)
        ias_redis_async_free(cl[i]);
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_free(base);
}

static void test_concurrent_never_overgrants(void **state)
{
    char org[64];
    conc c;
    (void)state;
    ias_test_unique("org", org, sizeof(org));
    run_concurrent(org, 1000, 100, 100, &c);
    assert_int_equal(c.done, NCONC);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.ok, 10);
    assert_int_equal(c.over, 40);
    assert_int_equal(c.granted, 1000);

    /* Partial grants down to min: the sum still fits exactly. */
    ias_test_unique("org", org, sizeof(org));
    run_concurrent(org, 1234, 100, 10, &c);
    assert_int_equal(c.err, 0);
    assert_true(c.granted <= 1234);
    assert_true(c.granted >= 1234 - 9);
}

/* ---- batching: the async calls of one loop iteration go as one script ---- */

typedef struct outcome {
    int calls;
    int status;
    int64_t granted, org_remaining, user_remaining;
    char error[128];
} outcome;

static void on_outcome(const ias_budget_result *res, void *arg)
{
    outcome *o = arg;
    o->calls++;
    o->status = res->status;
    o->granted = res->granted;
    o->org_remaining = res->org_remaining;
    o->user_remaining = res->user_remaining;
    snprintf(o->error, sizeof(o->error), "%s", res->error ? res->error : "");
}

typedef struct waiter {
    outcome *o;
    int n;
} waiter;

static bool all_called(const waiter *w)
{
    for (int i = 0; i < w->n; i++) {
        if (w->o[i].calls == 0)
            return false;
    }
    return true;
}

/* Runs the loop until every outcome has its callback (a deadline only guards
 * against a hang), then checks none was called twice. */
static void wait_all(struct event_base *base, outcome *o, int n)
{
    waiter w = {o, n};
    struct timeval tick = {0, 2000};
    uint64_t deadline = ias_now_ms() + 10000;

    while (!all_called(&w)) {
        assert_true(ias_now_ms() < deadline);
        assert_int_equal(event_base_loopexit(base, &tick), 0);
        assert_true(event_base_dispatch(base) >= 0);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(o[i].calls, 1);
}

static ias_redis_async *connect_async(struct event_base *base)
{
    ias_redis_async *a = ias_redis_async_new(base, redis_url());
    struct timeval tick = {0, 2000};
    uint64_t deadline = ias_now_ms() + 5000;

    assert_non_null(a);
    while (!ias_redis_async_connected(a)) {
        assert_true(ias_now_ms() < deadline);
        assert_int_equal(event_base_loopexit(base, &tick), 0);
        assert_true(event_base_dispatch(base) >= 0);
    }
    return a;
}

static void areserve(ias_redis_async *a, const char *org, const char *user, int64_t olim,
                     int64_t ulim, int64_t want, int64_t min, const char *id, outcome *o)
{
    ias_budget_reserve_req q = {.org_id = org,
                                .user_id = user,
                                .org_limit = olim,
                                .user_limit = ulim,
                                .want = want,
                                .min = min,
                                .month = "202611",
                                .reservation_id = id};
    memset(o, 0, sizeof(*o));
    assert_int_equal(ias_budget_reserve(a, &q, on_outcome, o), IAS_OK);
    assert_int_equal(o->calls, 0); /* never from inside the call */
}

static void asettle(ias_redis_async *a, const char *id, int64_t actual, outcome *o)
{
    memset(o, 0, sizeof(*o));
    assert_int_equal(ias_budget_settle(a, id, actual, on_outcome, o), IAS_OK);
    assert_int_equal(o->calls, 0);
}

/* Script calls so far (EVALSHA, and EVAL after a NOSCRIPT), from INFO commandstats. */
static long long script_calls(ias_redis_sync *s)
{
    static const char *const stats[] = {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="};
    const char *argv[] = {"INFO", "commandstats"};
    redisReply *r = NULL;
    long long n = 0;

    assert_int_equal(ias_redis_sync_cmd(s, 2, argv, NULL, &r), IAS_OK);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    for (size_t i = 0; i < IAS_ARRAY_LEN(stats); i++) {
        const char *p = strstr(r->str, stats[i]);
        if (p)
            n += atoll(p + strlen(stats[i]));
    }
    freeReplyObject(r);
    return n;
}

static long long pttl(ias_redis_sync *s, const char *key)
{
    const char *argv[] = {"PTTL", key};
    redisReply *r = NULL;
    long long v;
    assert_int_equal(ias_redis_sync_cmd(s, 2, argv, NULL, &r), IAS_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

static void sync_do(ias_redis_sync *s, int argc, const char **argv)
{
    redisReply *r = NULL;
    assert_int_equal(ias_redis_sync_cmd(s, argc, argv, NULL, &r), IAS_OK);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

/* Reserves and settles for two orgs, queued in one iteration: one script, each
 * call its own result, applied in call order. */
static void test_batch_mixed(void **state)
{
    char a[64], b[64], ra[64], rb[64], rc[64], rd[64], re[64], key[200];
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    outcome o[8];
    (void)state;
    assert_non_null(base);
    assert_non_null(s);
    ias_redis_async *cl = connect_async(base);
    ias_test_unique("org", a, sizeof(a));
    ias_test_unique("org", b, sizeof(b));
    ias_test_unique("r", ra, sizeof(ra));
    ias_test_unique("r", rb, sizeof(rb));
    ias_test_unique("r", rc, sizeof(rc));
    ias_test_unique("r", rd, sizeof(rd));
    ias_test_unique("r", re, sizeof(re));

    /* A first batch leaves one reservation per org to settle. */
    areserve(cl, a, "u1", 100, -1, 60, 60, ra, &o[0]);
    areserve(cl, b, NULL, 1000, -1, 300, 1, rb, &o[1]);
    wait_all(base, o, 2);
    assert_int_equal(o[0].status, IAS_BUDGET_OK);
    assert_int_equal(o[1].status, IAS_BUDGET_OK);
    /* Every key the script creates expires: counters 65 days, the queue and an
     * open record their TTL + 40 days. */
    snprintf(key, sizeof(key), "ias:budget:%s:202611", a);
    assert_true(pttl(s, key) > 64LL * 86400000);
    snprintf(key, sizeof(key), "ias:budget:%s:202611:u:u1", a);
    assert_true(pttl(s, key) > 64LL * 86400000);
    snprintf(key, sizeof(key), "ias:resvq:%s:202611", a);
    assert_true(pttl(s, key) > 39LL * 86400000);
    snprintf(key, sizeof(key), "ias:resv:%s", ra);
    assert_true(pttl(s, key) > 39LL * 86400000);

    long long before = script_calls(s);
    areserve(cl, a, "u1", 100, -1, 60, 60, rc, &o[0]);   /* 40 left: refused */
    asettle(cl, ra, 20, &o[1]);                          /* frees 60, uses 20 */
    areserve(cl, a, "u1", 100, -1, 60, 60, rc, &o[2]);   /* now 80 left: fits */
    asettle(cl, rb, 0, &o[3]);                           /* org b: release */
    areserve(cl, b, "u2", 1000, 50, 300, 10, rd, &o[4]); /* user limit: 50 */
    areserve(cl, a, "u1", 100, 10, 60, 1, re, &o[5]);    /* u1 used 20 > 10 */
    wait_all(base, o, 6);
    assert_int_equal(script_calls(s) - before, 1);

    assert_int_equal(o[0].status, IAS_BUDGET_OVER);
    assert_int_equal(o[0].org_remaining, 40);
    assert_int_equal(o[1].status, IAS_BUDGET_OK);
    assert_int_equal(o[1].granted, 20);
    assert_int_equal(o[2].status, IAS_BUDGET_OK);
    assert_int_equal(o[2].granted, 60);
    assert_int_equal(o[2].org_remaining, 20);
    assert_int_equal(o[3].status, IAS_BUDGET_OK);
    assert_int_equal(o[3].granted, 0);
    assert_int_equal(o[4].status, IAS_BUDGET_OK);
    assert_int_equal(o[4].granted, 50);
    assert_int_equal(o[4].org_remaining, 950);
    assert_int_equal(o[4].user_remaining, 0);
    assert_int_equal(o[5].status, IAS_BUDGET_OVER);
    assert_int_equal(o[5].user_remaining, 0);

    snprintf(key, sizeof(key), "ias:budget:%s:202611", a);
    assert_int_equal(hget(s, key, "used"), 20);
    assert_int_equal(hget(s, key, "reserved"), 60);
    snprintf(key, sizeof(key), "ias:budget:%s:202611:u:u1", a);
    assert_int_equal(hget(s, key, "used"), 20);
    assert_int_equal(hget(s, key, "reserved"), 60);
    snprintf(key, sizeof(key), "ias:budget:%s:202611", b);
    assert_int_equal(hget(s, key, "used"), 0);
    assert_int_equal(hget(s, key, "reserved"), 50);
    snprintf(key, sizeof(key), "ias:budget:%s:202611:u:u2", b);
    assert_int_equal(hget(s, key, "reserved"), 50);

    /* Reserved and settled in the same batch: nothing stays in the queue. */
    ias_test_unique("r", ra, sizeof(ra));
    areserve(cl, b, "u2", 1000, -1, 30, 30, ra, &o[0]);
    asettle(cl, ra, 25, &o[1]);
    asettle(cl, rd, 40, &o[2]);
    wait_all(base, o, 3);
    assert_int_equal(o[0].granted, 30);
    assert_int_equal(o[1].granted, 25);
    assert_int_equal(o[2].granted, 40);
    /* A settled record is kept IAS_BUDGET_SETTLED_KEEP_MS. */
    snprintf(key, sizeof(key), "ias:resv:%s", rd);
    assert_true(pttl(s, key) > 0 && pttl(s, key) <= IAS_BUDGET_SETTLED_KEEP_MS);
    snprintf(key, sizeof(key), "ias:budget:%s:202611", b);
    assert_int_equal(hget(s, key, "used"), 65);
    assert_int_equal(hget(s, key, "reserved"), 0);
    snprintf(key, sizeof(key), "ias:resvq:%s:202611", b);
    const char *zc[] = {"ZCARD", key};
    redisReply *r = NULL;
    assert_int_equal(ias_redis_sync_cmd(s, 2, zc, NULL, &r), IAS_OK);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    ias_redis_async_free(cl);
    ias_redis_sync_free(s);
    event_base_free(base);
}

/* A reused id fails alone; the other calls of its batch go through. */
static void test_batch_duplicate_fails_alone(void **state)
{
    char org[64], id1[64], id2[64], key[160];
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    outcome o[5];
    (void)state;
    assert_non_null(base);
    assert_non_null(s);
    ias_redis_async *cl = connect_async(base);
    ias_test_unique("org", org, sizeof(org));
    ias_test_unique("r", id1, sizeof(id1));
    ias_test_unique("r", id2, sizeof(id2));

    areserve(cl, org, "u", 1000, -1, 100, 100, id1, &o[0]);
    areserve(cl, org, "u", 1000, -1, 100, 100, id1, &o[1]); /* same batch */
    areserve(cl, org, "u", 1000, -1, 100, 100, id2, &o[2]);
    asettle(cl, "no-such-reservation-id", 7, &o[3]);
    areserve(cl, org, "u", 1, -1, 100, 100, id2, &o[4]); /* over and reused: error */
    wait_all(base, o, 5);
    assert_int_equal(o[0].status, IAS_BUDGET_OK);
    assert_int_equal(o[1].status, IAS_BUDGET_ERROR);
    assert_string_equal(o[1].error, "reservation id already used");
    assert_int_equal(o[2].status, IAS_BUDGET_OK);
    assert_int_equal(o[2].org_remaining, 800);
    assert_int_equal(o[3].status, IAS_BUDGET_OK);
    assert_int_equal(o[3].granted, 0);
    assert_int_equal(o[4].status, IAS_BUDGET_ERROR);

    /* A later batch reusing it fails too, alone. */
    areserve(cl, org, "u", 1000, -1, 100, 100, id2, &o[0]);
    asettle(cl, id1, 100, &o[1]);
    wait_all(base, o, 2);
    assert_int_equal(o[0].status, IAS_BUDGET_ERROR);
    assert_int_equal(o[1].status, IAS_BUDGET_OK);
    assert_int_equal(o[1].granted, 100);
    snprintf(key, sizeof(key), "ias:budget:%s:202611", org);
    assert_int_equal(hget(s, key, "used"), 100);
    assert_int_equal(hget(s, key, "reserved"), 100);

    ias_redis_async_free(cl);
    ias_redis_sync_free(s);
    event_base_free(base);
}

/* Unreadable Redis data fails the items that touch it, not their batch. */
static void test_batch_bad_data_fails_alone(void **state)
{
    char org[64], bad[64], badq[64], id[64], rec[64], key[160], rkey[96];
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    outcome o[5];
    (void)state;
    assert_non_null(base);
    assert_non_null(s);
    ias_redis_async *cl = connect_async(base);
    ias_test_unique("org", org, sizeof(org));
    ias_test_unique("org", bad, sizeof(bad));
    ias_test_unique("org", badq, sizeof(badq));
    ias_test_unique("r", id, sizeof(id));
    ias_test_unique("r", rec, sizeof(rec));
    snprintf(key, sizeof(key), "ias:budget:%s:202611", bad);
    const char *set1[] = {"HSET", key, "used", "lots"};
    sync_do(s, 4, set1);
    snprintf(key, sizeof(key), "ias:resvq:%s:202611", badq);
    const char *set2[] = {"SET", key, "not a zset"};
    sync_do(s, 3, set2);
    snprintf(rkey, sizeof(rkey), "ias:resv:%s", rec);
    const char *set3[] = {"SET", rkey, "garbage"};
    sync_do(s, 3, set3);

    areserve(cl, bad, "u", 1000, -1, 10, 10, id, &o[0]);
    areserve(cl, badq, "u", 1000, -1, 10, 10, id, &o[1]);
    areserve(cl, org, "u", 1000, -1, 10, 10, id, &o[2]);
    asettle(cl, rec, 5, &o[3]);
    asettle(cl, id, 5, &o[4]);
    wait_all(base, o, 5);
    assert_int_equal(o[0].status, IAS_BUDGET_ERROR);
    assert_string_equal(o[0].error, "budget data in redis is unreadable");
    assert_int_equal(o[1].status, IAS_BUDGET_ERROR);
    assert_int_equal(o[2].status, IAS_BUDGET_OK);
    assert_int_equal(o[3].status, IAS_BUDGET_ERROR);
    assert_string_equal(o[3].error, "reservation record in redis is unreadable");
    assert_int_equal(o[4].status, IAS_BUDGET_OK);
    assert_int_equal(o[4].granted, 5);
    snprintf(key, sizeof(key), "ias:budget:%s:202611", org);
    assert_int_equal(hget(s, key, "used"), 5);
    assert_int_equal(hget(s, key, "reserved"), 0);
    /* Nothing was written for the failed ones. */
    snprintf(key, sizeof(key), "ias:budget:%s:202611", badq);
    assert_int_equal(hget(s, key, "reserved"), 0);

    ias_redis_async_free(cl);
    ias_redis_sync_free(s);
    event_base_free(base);
}

/* Many reserves at once over two clients, in batches up to the cap: never more
 * than the limits, and the counters hold exactly what was granted. */
#define NMANY 200

static void test_batches_never_overgrant(void **state)
{
    char org[64], key[200];
    char(*ids)[48] = calloc(NMANY, 48);
    outcome *o = calloc(NMANY, sizeof(*o));
    bool *got = calloc(NMANY, sizeof(*got));
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    int64_t granted = 0, granted_ua = 0;
    int ok = 0;
    (void)state;
    assert_non_null(ids);
    assert_non_null(o);
    assert_non_null(got);
    assert_non_null(base);
    assert_non_null(s);
    ias_redis_async *cl[2] = {connect_async(base), connect_async(base)};
    ias_test_unique("org", org, sizeof(org));

    /* Every 4th call is user ua (limit 150), the others ub (no limit); the org's
     * 1000 binds. */
    long long before = script_calls(s);
    for (int i = 0; i < NMANY; i++) {
        bool ua = i % 4 == 0;
        ias_test_unique("m", ids[i], sizeof(ids[i]));
        areserve(cl[i % 2], org, ua ? "ua" : "ub", 1000, ua ? 150 : -1, 10, 10, ids[i], &o[i]);
    }
    wait_all(base, o, NMANY);
    /* 100 calls per client, all queued in one iteration: one batch each
     * (the IAS_BUDGET_BATCH_MAX cap is test_settle_wait's). */
    assert_int_equal(script_calls(s) - before, 2);
    for (int i = 0; i < NMANY; i++) {
        assert_int_not_equal(o[i].status, IAS_BUDGET_ERROR);
        if (o[i].status == IAS_BUDGET_OK) {
            got[i] = true;
            ok++;
            granted += o[i].granted;
            if (i % 4 == 0)
                granted_ua += o[i].granted;
        }
    }
    assert_int_equal(ok, 100);
    assert_int_equal(granted, 1000);
    assert_true(granted_ua <= 150);
    snprintf(key, sizeof(key), "ias:budget:%s:202611", org);
    assert_int_equal(hget(s, key, "reserved"), 1000);
    snprintf(key, sizeof(key), "ias:budget:%s:202611:u:ua", org);
    assert_int_equal(hget(s, key, "reserved"), granted_ua);

    /* Settle everything, twice, in batches: used counts each grant once; refused
     * calls left no reservation to bill. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NMANY; i++)
            asettle(cl[i % 2], ids[i], 3, &o[i]);
        wait_all(base, o, NMANY);
        for (int i = 0; i < NMANY; i++) {
            assert_int_equal(o[i].status, IAS_BUDGET_OK);
            assert_int_equal(o[i].granted, round == 0 && got[i] ? 3 : 0);
        }
    }
    snprintf(key, sizeof(key), "ias:budget:%s:202611", org);
    assert_int_equal(hget(s, key, "used"), 3 * ok);
    assert_int_equal(hget(s, key, "reserved"), 0);
    snprintf(key, sizeof(key), "ias:budget:%s:202611:u:ua", org);
    assert_int_equal(hget(s, key, "reserved"), 0);

    ias_redis_async_free(cl[0]);
    ias_redis_async_free(cl[1]);
    ias_redis_sync_free(s);
    event_base_free(base);
    free(ids);
    free(o);
    free(got);
}

/* Settles that may wait (the router's IAS_SETTLE_BATCH_WAIT): they leave with a
 * reserve of the same iteration, when the batch is full, when the wait ends, or
 * on ias_budget_drain(); each way every call is answered once and applied. */
static void test_settle_wait(void **state)
{
    enum { NS = IAS_BUDGET_BATCH_MAX + 44 };
    char org[64], key[200], rid[64];
    char(*ids)[48] = calloc(NS, 48);
    outcome *o = calloc(NS, sizeof(*o));
    outcome ro;
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    (void)state;
    assert_non_null(ids);
    assert_non_null(o);
    assert_non_null(base);
    assert_non_null(s);
    ias_redis_async *rcl = connect_async(base), *scl = connect_async(base);
    ias_test_unique("org", org, sizeof(org));
    snprintf(key, sizeof(key), "ias:budget:%s:202611", org);
    assert_int_equal(ias_budget_set_settle_wait(scl, IAS_BUDGET_SETTLE_WAIT_MAX_MS + 1), IAS_ERR);
    /* The longest wait, so only the way under test can send them. */
    assert_int_equal(ias_budget_set_settle_wait(scl, IAS_BUDGET_SETTLE_WAIT_MAX_MS), IAS_OK);

    for (int i = 0; i < NS; i++) {
        ias_test_unique("w", ids[i], sizeof(ids[i]));
        areserve(rcl, org, "u", -1, -1, 10, 10, ids[i], &o[i]);
    }
    wait_all(base, o, NS);
    for (int i = 0; i < NS; i++)
        assert_int_equal(o[i].status, IAS_BUDGET_OK);
    assert_int_equal(hget(s, key, "reserved"), 10 * NS);

    /* A full batch goes at once, without waiting; the rest waits. */
    long long before = script_calls(s);
    for (int i = 0; i < IAS_BUDGET_BATCH_MAX; i++)
        asettle(scl, ids[i], 1, &o[i]);
    wait_all(base, o, IAS_BUDGET_BATCH_MAX);
    assert_int_equal(script_calls(s) - before, 1);
    assert_int_equal(hget(s, key, "used"), IAS_BUDGET_BATCH_MAX);

    /* Waiting settles leave with a reserve queued in the same iteration. */
    before = script_calls(s);
    for (int i = IAS_BUDGET_BATCH_MAX; i < IAS_BUDGET_BATCH_MAX + 20; i++)
        asettle(scl, ids[i], 1, &o[i]);
    ias_test_unique("w", rid, sizeof(rid));
    areserve(scl, org, "u", -1, -1, 10, 10, rid, &ro);
    wait_all(base, &o[IAS_BUDGET_BATCH_MAX], 20);
    wait_all(base, &ro, 1);
    assert_int_equal(ro.status, IAS_BUDGET_OK);
    assert_int_equal(script_calls(s) - before, 1);

    /* ias_budget_drain sends what waits and returns once it is answered. */
    before = script_calls(s);
    for (int i = IAS_BUDGET_BATCH_MAX + 20; i < NS - 1; i++)
        asettle(scl, ids[i], 1, &o[i]);
    assert_int_equal(ias_budget_drain(scl, 5000), IAS_OK);
    for (int i = IAS_BUDGET_BATCH_MAX + 20; i < NS - 1; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, IAS_BUDGET_OK);
        assert_int_equal(o[i].granted, 1);
    }
    assert_int_equal(script_calls(s) - before, 1);
    assert_int_equal(ias_budget_drain(scl, 5000), IAS_OK); /* nothing owed: at once */

    /* The wait ends on its own (a short one now). */
    assert_int_equal(ias_budget_set_settle_wait(scl, 1), IAS_OK);
    asettle(scl, ids[NS - 1], 1, &o[NS - 1]);
    wait_all(base, &o[NS - 1], 1);
    assert_int_equal(o[NS - 1].granted, 1);
    assert_int_equal(hget(s, key, "used"), NS);
    assert_int_equal(hget(s, key, "reserved"), 10);

    /* Freed while settles wait: each fails once, nothing is sent. */
    assert_int_equal(ias_budget_set_settle_wait(scl, IAS_BUDGET_SETTLE_WAIT_MAX_MS), IAS_OK);
    asettle(scl, rid, 1, &o[0]);
    asettle(scl, ids[0], 1, &o[1]);
    ias_redis_async_free(scl);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, IAS_BUDGET_ERROR);
    }
    assert_int_equal(hget(s, key, "reserved"), 10);

    ias_redis_async_free(rcl);
    (void)event_base_loop(base, EVLOOP_NONBLOCK);
    ias_redis_sync_free(s);
    event_base_free(base);
    free(ids);
    free(o);
}

/* Settles are idempotent within one batch and across batches. */
static void test_batch_settle_idempotent(void **state)
{
    char org[64], id[64], key[160];
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    outcome o[3];
    (void)state;
    assert_non_null(base);
    assert_non_null(s);
    ias_redis_async *cl = connect_async(base);
    ias_test_unique("org", org, sizeof(org));
    ias_test_unique("r", id, sizeof(id));
    snprintf(key, sizeof(key), "ias:budget:%s:202611", org);

    areserve(cl, org, "u", -1, 500, 100, 100, id, &o[0]);
    wait_all(base, o, 1);
    assert_int_equal(o[0].status, IAS_BUDGET_OK);
    asettle(cl, id, 70, &o[0]);
    asettle(cl, id, 70, &o[1]);
    asettle(cl, id, 0, &o[2]);
    wait_all(base, o, 3);
    assert_int_equal(o[0].granted, 70);
    assert_int_equal(o[1].granted, 0);
    assert_int_equal(o[2].granted, 0);
    asettle(cl, id, 70, &o[0]);
    wait_all(base, o, 1);
    assert_int_equal(o[0].status, IAS_BUDGET_OK);
    assert_int_equal(o[0].granted, 0);
    assert_int_equal(hget(s, key, "used"), 70);
    assert_int_equal(hget(s, key, "reserved"), 0);
    char uk[200];
    snprintf(uk, sizeof(uk), "%s:u:u", key);
    assert_int_equal(hget(s, uk, "used"), 70);
    assert_int_equal(hget(s, uk, "reserved"), 0);

    ias_redis_async_free(cl);
    ias_redis_sync_free(s);
    event_base_free(base);
}

/* Reservations recorded as hashes by the previous layout are still settled and
 * purged correctly. */
static void test_legacy_hash_records(void **state)
{
    char org[64], id1[64], id2[64], id3[64], key[160], rk[96], qk[160], exp[24];
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    ias_budget_result res;
    (void)state;
    assert_non_null(s);
    ias_test_unique("org", org, sizeof(org));
    ias_test_unique("r", id1, sizeof(id1));
    ias_test_unique("r", id2, sizeof(id2));
    ias_test_unique("r", id3, sizeof(id3));
    snprintf(key, sizeof(key), "ias:budget:%s:202611", org);
    snprintf(qk, sizeof(qk), "ias:resvq:%s:202611", org);
    const char *r0[] = {"HSET", key, "used", "0", "reserved", "200"};
    sync_do(s, 6, r0);
    /* id1 open for a long time, id2 already expired. */
    snprintf(exp, sizeof(exp), "%lld", (long long)ias_wall_ms() + 600000);
    snprintf(rk, sizeof(rk), "ias:resv:%s", id1);
    const char *h1[] = {"HSET",   rk,       "org", org,          "user", "",      "month",
                        "202611", "tokens", "100", "expires_ms", exp,    "state", "open"};
    sync_do(s, 14, h1);
    const char *z1[] = {"ZADD", qk, exp, id1};
    sync_do(s, 4, z1);
    snprintf(exp, sizeof(exp), "%lld", (long long)ias_wall_ms() - 1000);
    snprintf(rk, sizeof(rk), "ias:resv:%s", id2);
    const char *h2[] = {"HSET",   rk,       "org", org,          "user", "",      "month",
                        "202611", "tokens", "100", "expires_ms", exp,    "state", "open"};
    sync_do(s, 14, h2);
    const char *z2[] = {"ZADD", qk, exp, id2};
    sync_do(s, 4, z2);

    /* The reserve purges id2 (100 back), then grants. */
    res = reserve(s, org, NULL, 1000, -1, 10, 10, id3, 0);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.org_remaining, 1000 - 100 - 10);
    assert_int_equal(hget(s, key, "reserved"), 110);
    assert_int_equal(ias_budget_settle_sync(s, id1, 42, &res), IAS_OK);
    assert_int_equal(res.status, IAS_BUDGET_OK);
    assert_int_equal(res.granted, 42);
    assert_int_equal(hget(s, key, "reserved"), 10);
    assert_int_equal(hget(s, key, "used"), 42);
    assert_int_equal(ias_budget_settle_sync(s, id1, 42, &res), IAS_OK);
    assert_int_equal(res.granted, 0);
    /* The late settle of the purged one bills its tokens, once. */
    assert_int_equal(ias_budget_settle_sync(s, id2, 5, &res), IAS_OK);
    assert_int_equal(res.granted, 5);
    assert_int_equal(hget(s, key, "used"), 47);
    assert_int_equal(hget(s, key, "reserved"), 10);
    ias_redis_sync_free(s);
}

/* NOSCRIPT (script cache flushed): the batch is resent as EVAL and answered. */
static void test_batch_noscript(void **state)
{
    char org[64], id[64];
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(redis_url(), 2000);
    outcome o[3];
    (void)state;
    assert_non_null(base);
    assert_non_null(s);
    ias_redis_async *cl = connect_async(base);
    ias_test_unique("org", org, sizeof(org));
    ias_test_unique("r", id, sizeof(id));
    const char *flush[] = {"SCRIPT", "FLUSH"};
    sync_do(s, 2, flush);
    areserve(cl, org, "u", 100, -1, 60, 60, id, &o[0]);
    areserve(cl, org, "u", 100, -1, 60, 60, "other-id-xyz", &o[1]);
    asettle(cl, id, 10, &o[2]);
    wait_all(base, o, 3);
    assert_int_equal(o[0].status, IAS_BUDGET_OK);
    assert_int_equal(o[1].status, IAS_BUDGET_OVER);
    assert_int_equal(o[2].granted, 10);
    ias_redis_async_free(cl);
    ias_redis_sync_free(s);
    event_base_free(base);
}

/* Queued calls when the client is freed: each callback once, with an error;
 * a call made from such a callback fails the same way. */
typedef struct requeue {
    ias_redis_async *cl;
    outcome first, second;
} requeue;

static void on_requeue(const ias_budget_result *res, void *arg)
{
    requeue *q = arg;
    on_outcome(res, &q->first);
    assert_int_equal(ias_budget_settle(q->cl, "after-free", 1, on_outcome, &q->second), IAS_OK);
}

static void test_batch_client_freed(void **state)
{
    struct event_base *base = event_base_new();
    outcome o[3];
    requeue rq;
    (void)state;
    assert_non_null(base);
    ias_redis_async *cl = connect_async(base);
    memset(&rq, 0, sizeof(rq));
    rq.cl = cl;
    areserve(cl, "org-freed", "u", 100, -1, 10, 10, "freed-1", &o[0]);
    asettle(cl, "freed-2", 1, &o[1]);
    ias_budget_reserve_req q = {.org_id = "org-freed",
                                .want = 1,
                                .min = 1,
                                .org_limit = -1,
                                .user_limit = -1,
                                .reservation_id = "freed-3"};
    assert_int_equal(ias_budget_reserve(cl, &q, on_requeue, &rq), IAS_OK);
    ias_redis_async_free(cl);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, IAS_BUDGET_ERROR);
    }
    assert_int_equal(rq.first.calls, 1);
    assert_int_equal(rq.first.status, IAS_BUDGET_ERROR);
    assert_int_equal(rq.second.calls, 1);
    assert_int_equal(rq.second.status, IAS_BUDGET_ERROR);
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(rq.second.calls, 1);
    event_base_free(base);
}

/* Redis goes away with calls queued: every callback once, with an error; then
 * the client reconnects and batches work again. */
static void test_batch_redis_restart(void **state)
{
    char org[64], ids[6][64];
    struct event_base *base;
    outcome o[6];
    (void)state;
    (void)redis_url();
    if (!ias_test_env("IAS_STACK_CTL"))
        skip();
    base = event_base_new();
    assert_non_null(base);
    ias_redis_async *cl = connect_async(base);
    ias_test_unique("org", org, sizeof(org));
    for (int i = 0; i < 6; i++)
        ias_test_unique("k", ids[i], sizeof(ids[i]));
    for (int i = 0; i < 3; i++)
        areserve(cl, org, "u", 1000, -1, 10, 10, ids[i], &o[i]);
    for (int i = 3; i < 6; i++)
        asettle(cl, ids[i - 3], 1, &o[i]);
    /* Queued, not yet sent: the link dies under them. */
    assert_int_equal(ias_test_stack("restart redis"), 0);
    wait_all(base, o, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(o[i].status, IAS_BUDGET_ERROR);
        assert_true(o[i].error[0] != '\0');
    }

    struct timeval tick = {0, 2000};
    uint64_t deadline = ias_now_ms() + 10000;
    while (!ias_redis_async_connected(cl)) {
        assert_true(ias_now_ms() < deadline);
        assert_int_equal(event_base_loopexit(base, &tick), 0);
        assert_true(event_base_dispatch(base) >= 0);
    }
    areserve(cl, org, "u", 1000, -1, 10, 10, ids[3], &o[0]);
    asettle(cl, ids[3], 4, &o[1]);
    wait_all(base, o, 2);
    assert_int_equal(o[0].status, IAS_BUDGET_OK);
    assert_int_equal(o[1].granted, 4);
    ias_redis_async_free(cl);
    event_base_free(base);
}

int main(void)
{
    /* As every ias service does (see redis.h): the restart test writes to a dead link. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_month),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_reserve_settle),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_month_keys),
        cmocka_unit_test(test_concurrent_never_overgrants),
        cmocka_unit_test(test_batch_mixed),
        cmocka_unit_test(test_batch_duplicate_fails_alone),
        cmocka_unit_test(test_batch_bad_data_fails_alone),
        cmocka_unit_test(test_batches_never_overgrant),
        cmocka_unit_test(test_batch_settle_idempotent),
        cmocka_unit_test(test_settle_wait),
        cmocka_unit_test(test_legacy_hash_records),
        cmocka_unit_test(test_batch_noscript),
        cmocka_unit_test(test_batch_client_freed),
        cmocka_unit_test(test_batch_redis_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
