/* Budget reservations against a real Redis (IAS_REDIS_URL). Skips without it. */
#include "testlib.h"

#include "ias/budget.h"
#include "ias/redis.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_month),          cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_reserve_settle), cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_month_keys),     cmocka_unit_test(test_concurrent_never_overgrants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
