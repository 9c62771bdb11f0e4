/* Redis clients against a real server (IAS_REDIS_URL); restarts it through
 * IAS_STACK_CTL. Skips when the stack is not configured. */
#include "testlib.h"

#include "ias/redis.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- helpers ---- */

static redisReply *sync_cmd(ias_redis_sync *s, int argc, const char **argv)
{
    redisReply *r = NULL;
    assert_int_equal(ias_redis_sync_cmd(s, argc, argv, NULL, &r), IAS_OK);
    assert_non_null(r);
    return r;
}

static void sync_ok(ias_redis_sync *s, int argc, const char **argv)
{
    redisReply *r = sync_cmd(s, argc, argv);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", argv[0], r->str);
    freeReplyObject(r);
}

static long long eval_count(ias_redis_sync *s, const char *which)
{
    const char *argv[] = {"INFO", "commandstats"};
    redisReply *r = sync_cmd(s, 2, argv);
    char needle[64];
    long long calls = 0;

    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", which);
    const char *p = strstr(r->str, needle);
    if (p)
        calls = atoll(p + strlen(needle));
    freeReplyObject(r);
    return calls;
}

static bool script_exists(ias_redis_sync *s, const ias_redis_script *sc)
{
    const char *argv[] = {"SCRIPT", "EXISTS", sc->sha};
    redisReply *r = sync_cmd(s, 3, argv);
    bool yes;
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    yes = r->element[0]->integer == 1;
    freeReplyObject(r);
    return yes;
}

static const char *INCR_SRC = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

/* ---- sync ---- */

static void test_sync_set_get(void **state)
{
    const char *url = redis_url();
    char key[96];
    ias_redis_sync *s = ias_redis_sync_new(url, 2000);
    assert_non_null(s);
    assert_int_equal(ias_redis_sync_ping(s), IAS_OK);

    ias_test_unique("ias:test:sync", key, sizeof(key));
    /* Binary-safe values with explicit lengths. */
    const char *set[] = {"SET", key, "a\0b", "PX", "60000"};
    size_t setlen[] = {3, strlen(key), 3, 2, 5};
    redisReply *r = NULL;
    assert_int_equal(ias_redis_sync_cmd(s, 5, set, setlen, &r), IAS_OK);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);

    const char *get[] = {"GET", key};
    r = sync_cmd(s, 2, get);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->str, "a\0b", 3);
    freeReplyObject(r);

    /* A server error is a reply, not a transport failure. */
    const char *bad[] = {"INCR", key};
    r = sync_cmd(s, 2, bad);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);

    const char *del[] = {"DEL", key};
    sync_ok(s, 2, del);
    ias_redis_sync_free(s);
}

static void test_sync_bad_url_and_down_server(void **state)
{
    assert_null(ias_redis_sync_new("http://nope", 100));
    /* Nothing listens on port 1: the client exists but every command fails. */
    ias_redis_sync *s = ias_redis_sync_new("redis://127.0.0.1:1/0", 200);
    assert_non_null(s);
    const char *ping[] = {"PING"};
    redisReply *r = (redisReply *)1;
    assert_int_equal(ias_redis_sync_cmd(s, 1, ping, NULL, &r), IAS_ERR);
    assert_null(r);
    assert_int_equal(ias_redis_sync_ping(s), IAS_ERR);
    ias_redis_sync_free(s);
}

static void test_sync_script_noscript_fallback(void **state)
{
    const char *url = redis_url();
    ias_redis_script sc;
    char key[96];
    ias_redis_sync *s = ias_redis_sync_new(url, 2000);
    assert_non_null(s);
    ias_redis_script_init(&sc, INCR_SRC);
    ias_test_unique("ias:test:script", key, sizeof(key));

    const char *flush[] = {"SCRIPT", "FLUSH"};
    sync_ok(s, 2, flush);
    assert_false(script_exists(s, &sc));

    long long evals = eval_count(s, "eval");
    const char *keys[] = {key};
    const char *args[] = {"5"};
    redisReply *r = NULL;
    assert_int_equal(ias_redis_sync_eval(s, &sc, 1, keys, 1, args, &r), IAS_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 5);
    freeReplyObject(r);
    /* NOSCRIPT made it fall back to EVAL once, which cached the script. */
    assert_int_equal(eval_count(s, "eval"), evals + 1);
    assert_true(script_exists(s, &sc));

    long long shas = eval_count(s, "evalsha");
    args[0] = "7";
    assert_int_equal(ias_redis_sync_eval(s, &sc, 1, keys, 1, args, &r), IAS_OK);
    assert_int_equal(r->integer, 12);
    freeReplyObject(r);
    /* Cached now: EVALSHA only. */
    assert_int_equal(eval_count(s, "eval"), evals + 1);
    assert_int_equal(eval_count(s, "evalsha"), shas + 1);

    /* A script error is delivered as an error reply. */
    ias_redis_script broken;
    ias_redis_script_init(&broken, "return redis.call('NOSUCHCOMMAND')");
    assert_int_equal(ias_redis_sync_eval(s, &broken, 0, NULL, 0, NULL, &r), IAS_OK);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);

    const char *del[] = {"DEL", key};
    sync_ok(s, 2, del);
    ias_redis_sync_free(s);
}

static void test_sync_retry_after_restart(void **state)
{
    const char *url = redis_url();
    if (!ias_test_env("IAS_STACK_CTL"))
        skip();
    ias_redis_sync *s = ias_redis_sync_new(url, 2000);
    assert_non_null(s);
    assert_int_equal(ias_redis_sync_ping(s), IAS_OK);
    assert_int_equal(ias_test_stack("restart redis"), 0);
    /* The old connection is dead; the client reconnects and retries once. */
    assert_int_equal(ias_redis_sync_ping(s), IAS_OK);
    ias_redis_sync_free(s);
}

/* ---- async ---- */

typedef struct result {
    int calls;
    int type;
    long long integer;
    char str[256];
    char err[256];
    bool had_reply;
    uint64_t at_ms;
} result;

static void on_result(const redisReply *reply, const char *err, void *arg)
{
    result *res = arg;
    res->calls++;
    res->at_ms = ias_now_ms();
    res->had_reply = reply != NULL;
    res->err[0] = '\0';
    res->str[0] = '\0';
    if (err)
        snprintf(res->err, sizeof(res->err), "%s", err);
    if (reply) {
        res->type = reply->type;
        res->integer = reply->integer;
        if (reply->str)
            snprintf(res->str, sizeof(res->str), "%.*s", (int)reply->len, reply->str);
    }
}

/* Runs the loop until *flag is true or ms pass; returns the flag. */
static bool run_until(struct event_base *base, bool (*cond)(void *), void *arg, unsigned ms)
{
    uint64_t deadline = ias_now_ms() + ms;
    struct timeval tick = {0, 2000};
    while (!cond(arg)) {
        if (ias_now_ms() >= deadline)
            return false;
        /* A short timer so the loop returns even when nothing happens. */
        assert_int_equal(event_base_loopexit(base, &tick), 0);
        assert_true(event_base_dispatch(base) >= 0);
    }
    return true;
}

static bool is_connected(void *arg)
{
    return ias_redis_async_connected(arg);
}

static bool got_result(void *arg)
{
    return ((result *)arg)->calls > 0;
}

static void run_for(struct event_base *base, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    assert_int_equal(event_base_loopexit(base, &tv), 0);
    assert_true(event_base_dispatch(base) >= 0);
}

static ias_redis_async *async_connected(struct event_base *base, const char *url)
{
    ias_redis_async *a = ias_redis_async_new(base, url);
    assert_non_null(a);
    assert_false(ias_redis_async_connected(a));
    assert_true(run_until(base, is_connected, a, 5000));
    return a;
}

static void async_cmd_wait(struct event_base *base, ias_redis_async *a, int argc, const char **argv,
                           result *res)
{
    memset(res, 0, sizeof(*res));
    ias_redis_async_cmd_argv(a, argc, argv, NULL, on_result, res);
    /* Never called from inside the queueing call. */
    assert_int_equal(res->calls, 0);
    assert_true(run_until(base, got_result, res, 5000));
    assert_int_equal(res->calls, 1);
}

static void test_async_commands(void **state)
{
    const char *url = redis_url();
    struct event_base *base = event_base_new();
    char key[96];
    result res;

    assert_non_null(base);
    ias_redis_async *a = async_connected(base, url);
    ias_test_unique("ias:test:async", key, sizeof(key));

    const char *set[] = {"SET", key, "hello", "PX", "60000"};
    async_cmd_wait(base, a, 5, set, &res);
    assert_string_equal(res.err, "");
    assert_int_equal(res.type, REDIS_REPLY_STATUS);
    assert_string_equal(res.str, "OK");

    const char *get[] = {"GET", key};
    async_cmd_wait(base, a, 2, get, &res);
    assert_string_equal(res.err, "");
    assert_int_equal(res.type, REDIS_REPLY_STRING);
    assert_string_equal(res.str, "hello");

    /* Error replies: reply present and err carries the server's text. */
    const char *incr[] = {"INCR", key};
    async_cmd_wait(base, a, 2, incr, &res);
    assert_true(res.had_reply);
    assert_int_equal(res.type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(res.err, "not an integer"));

    /* Many pipelined commands, each answered once and in order. */
    enum { N = 200 };
    static result many[N];
    memset(many, 0, sizeof(many));
    const char *incr2[] = {"INCR", "placeholder"};
    char ckey[128];
    snprintf(ckey, sizeof(ckey), "%s:n", key);
    incr2[1] = ckey;
    for (int i = 0; i < N; i++)
        ias_redis_async_cmd_argv(a, 2, incr2, NULL, on_result, &many[i]);
    assert_true(run_until(base, got_result, &many[N - 1], 5000));
    for (int i = 0; i < N; i++) {
        assert_int_equal(many[i].calls, 1);
        assert_int_equal(many[i].integer, i + 1);
    }

    /* Pub/sub would break one-reply-per-command: refused, asynchronously. */
    const char *sub[] = {"SUBSCRIBE", "x"};
    async_cmd_wait(base, a, 2, sub, &res);
    assert_false(res.had_reply);
    assert_non_null(strstr(res.err, "not supported"));

    /* A command larger than op_submit's stack buffer (and below ASan's 4 KiB
     * malloc fill, so a missing NUL is caught), with RESP framing
     * bytes inside the value: sent byte for byte (the heap path). */
    enum { BIG = 3000 };
    static char big[BIG + 1];
    char bkey[128], range[BIG + 1];
    for (int i = 0; i < BIG; i++)
        big[i] = "ab\r\n$*9"[i % 7];
    big[BIG] = '\0';
    snprintf(bkey, sizeof(bkey), "%s:big", key);
    const char *setbig[] = {"SET", bkey, big, "PX", "60000"};
    async_cmd_wait(base, a, 5, setbig, &res);
    assert_string_equal(res.str, "OK");
    const char *strlen_cmd[] = {"STRLEN", bkey};
    async_cmd_wait(base, a, 2, strlen_cmd, &res);
    assert_int_equal(res.integer, BIG);
    const char *getrange[] = {"GETRANGE", bkey, "0", "199"};
    async_cmd_wait(base, a, 4, getrange, &res);
    memcpy(range, big, 200);
    range[200] = '\0';
    assert_string_equal(res.str, range);

    const char *del[] = {"DEL", key, ckey, bkey};
    async_cmd_wait(base, a, 4, del, &res);
    assert_int_equal(res.integer, 3);

    ias_redis_async_free(a);
    event_base_free(base);
}

static void test_async_eval_noscript(void **state)
{
    const char *url = redis_url();
    struct event_base *base = event_base_new();
    ias_redis_sync *s = ias_redis_sync_new(url, 2000);
    ias_redis_script sc;
    char key[96];
    result res;

    assert_non_null(base);
    assert_non_null(s);
    ias_redis_script_init(&sc, INCR_SRC);
    ias_test_unique("ias:test:aeval", key, sizeof(key));
    ias_redis_async *a = async_connected(base, url);

    const char *flush[] = {"SCRIPT", "FLUSH"};
    sync_ok(s, 2, flush);
    long long evals = eval_count(s, "eval");

    /* Keys and args from a buffer that is gone before the NOSCRIPT retry. */
    char *k = strdup(key), *v = strdup("3");
    const char *keys[] = {k};
    const char *args[] = {v};
    memset(&res, 0, sizeof(res));
    ias_redis_async_eval(a, &sc, 1, keys, 1, args, on_result, &res);
    memset(k, 'X', strlen(k));
    memset(v, 'X', strlen(v));
    free(k);
    free(v);
    assert_true(run_until(base, got_result, &res, 5000));
    assert_string_equal(res.err, "");
    assert_int_equal(res.type, REDIS_REPLY_INTEGER);
    assert_int_equal(res.integer, 3);
    assert_int_equal(eval_count(s, "eval"), evals + 1);
    assert_true(script_exists(s, &sc));

    const char *keys2[] = {key};
    const char *args2[] = {"4"};
    memset(&res, 0, sizeof(res));
    ias_redis_async_eval(a, &sc, 1, keys2, 1, args2, on_result, &res);
    assert_true(run_until(base, got_result, &res, 5000));
    assert_int_equal(res.integer, 7);
    assert_int_equal(eval_count(s, "eval"), evals + 1);

    const char *del[] = {"DEL", key};
    sync_ok(s, 2, del);
    ias_redis_async_free(a);
    ias_redis_sync_free(s);
    event_base_free(base);
}

static void test_async_command_timeout(void **state)
{
    const char *url = redis_url();
    struct event_base *base = event_base_new();
    char key[96];
    result res, ping;

    assert_non_null(base);
    ias_redis_async *a = async_connected(base, url);
    ias_test_unique("ias:test:blpop", key, sizeof(key));

    /* The server blocks for 2 s; the client gives up after 200 ms. */
    ias_redis_async_set_timeout(a, 200);
    const char *blpop[] = {"BLPOP", key, "2"};
    memset(&res, 0, sizeof(res));
    uint64_t t0 = ias_now_ms();
    ias_redis_async_cmd_argv(a, 3, blpop, NULL, on_result, &res);
    assert_true(run_until(base, got_result, &res, 5000));
    uint64_t took = res.at_ms - t0;
    assert_false(res.had_reply);
    assert_string_equal(res.err, "redis command timed out");
    assert_true(took >= 190 && took < 1500);

    /* The late reply (nil after 2 s) arrives and is dropped: no second call. */
    run_for(base, 2300);
    assert_int_equal(res.calls, 1);
    assert_true(ias_redis_async_connected(a));

    ias_redis_async_set_timeout(a, 1000);
    const char *p[] = {"PING"};
    async_cmd_wait(base, a, 1, p, &ping);
    assert_string_equal(ping.err, "");
    assert_string_equal(ping.str, "PONG");

    ias_redis_async_free(a);
    event_base_free(base);
}

static void test_async_stuck_link_replaced(void **state)
{
    const char *url = redis_url();
    struct event_base *base = event_base_new();
    char key[96];
    result res[IAS_REDIS_STALL_TIMEOUTS], ping;

    assert_non_null(base);
    ias_redis_async *a = async_connected(base, url);
    ias_test_unique("ias:test:stall", key, sizeof(key));

    /* Enough timeouts in a row mean a stuck link: it is dropped and rebuilt. */
    ias_redis_async_set_timeout(a, 100);
    const char *blpop[] = {"BLPOP", key, "5"};
    memset(res, 0, sizeof(res));
    for (int i = 0; i < IAS_REDIS_STALL_TIMEOUTS; i++)
        ias_redis_async_cmd_argv(a, 3, blpop, NULL, on_result, &res[i]);
    assert_true(run_until(base, got_result, &res[IAS_REDIS_STALL_TIMEOUTS - 1], 3000));
    for (int i = 0; i < IAS_REDIS_STALL_TIMEOUTS; i++) {
        assert_int_equal(res[i].calls, 1);
        assert_string_equal(res[i].err, "redis command timed out");
    }
    assert_false(ias_redis_async_connected(a));
    assert_true(run_until(base, is_connected, a, 5000));
    ias_redis_async_set_timeout(a, 1000);
    const char *p[] = {"PING"};
    async_cmd_wait(base, a, 1, p, &ping);
    assert_string_equal(ping.str, "PONG");

    ias_redis_async_free(a);
    event_base_free(base);
}

typedef struct restart_ctx {
    ias_redis_async *a;
    result first, second;
    bool connected_in_first;
} restart_ctx;

static void on_first_after_restart(const redisReply *reply, const char *err, void *arg)
{
    restart_ctx *c = arg;
    on_result(reply, err, &c->first);
    c->connected_in_first = ias_redis_async_connected(c->a);
    /* Disconnected now: this one must fail fast, not wait for the reconnect. */
    const char *p[] = {"PING"};
    ias_redis_async_cmd_argv(c->a, 1, p, NULL, on_result, &c->second);
}

static bool second_done(void *arg)
{
    return ((restart_ctx *)arg)->second.calls > 0;
}

static void test_async_server_restart(void **state)
{
    const char *url = redis_url();
    if (!ias_test_env("IAS_STACK_CTL"))
        skip();
    struct event_base *base = event_base_new();
    restart_ctx c;
    result res;

    assert_non_null(base);
    memset(&c, 0, sizeof(c));
    c.a = async_connected(base, url);
    ias_redis_async_set_timeout(c.a, 5000);

    assert_int_equal(ias_test_stack("restart redis"), 0);

    /* The old link is dead: the command fails quickly, well before its 5 s timeout. */
    uint64_t t0 = ias_now_ms();
    const char *p[] = {"PING"};
    ias_redis_async_cmd_argv(c.a, 1, p, NULL, on_first_after_restart, &c);
    assert_true(run_until(base, second_done, &c, 3000));
    assert_int_equal(c.first.calls, 1);
    assert_false(c.first.had_reply);
    assert_true(c.first.err[0] != '\0');
    assert_false(c.connected_in_first);
    assert_int_equal(c.second.calls, 1);
    assert_false(c.second.had_reply);
    assert_string_equal(c.second.err, "redis not connected");
    assert_true(c.second.at_ms - t0 < 1000);

    /* Then it reconnects on its own and works again. */
    assert_true(run_until(base, is_connected, c.a, 10000));
    async_cmd_wait(base, c.a, 1, p, &res);
    assert_string_equal(res.err, "");
    assert_string_equal(res.str, "PONG");

    ias_redis_async_free(c.a);
    event_base_free(base);
}

static void test_async_down_server_fails_fast(void **state)
{
    /* Needs no server: nothing listens on port 1. */
    struct event_base *base = event_base_new();
    result res;

    assert_non_null(base);
    assert_null(ias_redis_async_new(base, "redis://h:1/x"));
    ias_redis_async *a = ias_redis_async_new(base, "redis://127.0.0.1:1/0");
    assert_non_null(a);
    run_for(base, 300); /* a few reconnect attempts with backoff */
    assert_false(ias_redis_async_connected(a));
    const char *p[] = {"PING"};
    uint64_t t0 = ias_now_ms();
    async_cmd_wait(base, a, 1, p, &res);
    assert_false(res.had_reply);
    assert_string_equal(res.err, "redis not connected");
    assert_true(res.at_ms - t0 < 100);

    /* Freed with a failure still queued: it is delivered during the free. */
    memset(&res, 0, sizeof(res));
    ias_redis_async_cmd_argv(a, 1, p, NULL, on_result, &res);
    ias_redis_async_free(a);
    assert_int_equal(res.calls, 1);
    assert_false(res.had_reply);
    event_base_free(base);
}

/* Freeing the client from inside its own callback, with more commands pending. */
typedef struct free_ctx {
    ias_redis_async *a;
    result r[3];
    int order[3];
    int n;
} free_ctx;

static void on_free_first(const redisReply *reply, const char *err, void *arg)
{
    free_ctx *c = arg;
    on_result(reply, err, &c->r[0]);
    c->order[c->n++] = 0;
    ias_redis_async_free(c->a);
    ias_redis_async_free(c->a); /* idempotent while the free is pending */
}

static void on_free_other(const redisReply *reply, const char *err, void *arg)
{
    result *r = arg;
    on_result(reply, err, r);
}

static void test_async_free_inside_callback(void **state)
{
    const char *url = redis_url();
    struct event_base *base = event_base_new();
    free_ctx c;

    assert_non_null(base);
    memset(&c, 0, sizeof(c));
    c.a = async_connected(base, url);
    const char *p[] = {"PING"};
    ias_redis_async_cmd_argv(c.a, 1, p, NULL, on_free_first, &c);
    ias_redis_async_cmd_argv(c.a, 1, p, NULL, on_free_other, &c.r[1]);
    ias_redis_async_cmd_argv(c.a, 1, p, NULL, on_free_other, &c.r[2]);
    assert_true(run_until(base, got_result, &c.r[2], 3000));
    assert_int_equal(c.r[0].calls, 1);
    assert_string_equal(c.r[0].str, "PONG");
    /* The rest either got their reply in the same read or "client closed". */
    for (int i = 1; i < 3; i++) {
        assert_int_equal(c.r[i].calls, 1);
        if (c.r[i].had_reply)
            assert_string_equal(c.r[i].str, "PONG");
        else
            assert_string_equal(c.r[i].err, "redis client closed");
    }
    run_for(base, 50); /* nothing left that could fire */
    event_base_free(base);
}

static void test_async_free_with_pending(void **state)
{
    const char *url = redis_url();
    struct event_base *base = event_base_new();
    char key[96];
    result res;

    assert_non_null(base);
    ias_redis_async *a = async_connected(base, url);
    ias_test_unique("ias:test:freepend", key, sizeof(key));
    const char *blpop[] = {"BLPOP", key, "1"};
    memset(&res, 0, sizeof(res));
    ias_redis_async_cmd_argv(a, 3, blpop, NULL, on_result, &res);
    run_for(base, 50); /* written and waiting on the server */
    assert_int_equal(res.calls, 0);
    ias_redis_async_free(a);
    assert_int_equal(res.calls, 1);
    assert_false(res.had_reply);
    assert_string_equal(res.err, "redis client closed");
    event_base_free(base);
}

/* AUTH with an ACL user and SELECT of a non-zero db, on both clients, using a
 * throwaway ACL user so the shared server's default user is untouched. */
static void test_auth_and_select(void **state)
{
    const char *url = redis_url();
    ias_redis_url u;
    char err[128], user[64], good[512], bad[512];
    struct event_base *base = event_base_new();
    result res;

    assert_non_null(base);
    assert_int_equal(ias_redis_url_parse(url, &u, err, sizeof(err)), IAS_OK);
    if (u.password[0])
        skip(); /* the stack runs without AUTH; keep this test simple */
    ias_test_unique("ias_test_user", user, sizeof(user));
    snprintf(good, sizeof(good), "redis://%s:p%%40ss@%s:%d/3", user, u.host, u.port);
    snprintf(bad, sizeof(bad), "redis://%s:wrong@%s:%d/3", user, u.host, u.port);

    ias_redis_sync *admin = ias_redis_sync_new(url, 2000);
    assert_non_null(admin);
    const char *mk[] = {"ACL", "SETUSER", user, "on", ">p@ss", "~*", "&*", "+@all"};
    sync_ok(admin, 8, mk);

    /* Sync: AUTH user p@ss (percent-decoded), SELECT 3. */
    ias_redis_sync *s = ias_redis_sync_new(good, 2000);
    assert_non_null(s);
    const char *who[] = {"ACL", "WHOAMI"};
    redisReply *r = sync_cmd(s, 2, who);
    assert_string_equal(r->str, user);
    freeReplyObject(r);
    const char *info[] = {"CLIENT", "INFO"};
    r = sync_cmd(s, 2, info);
    assert_non_null(strstr(r->str, " db=3 "));
    freeReplyObject(r);
    ias_redis_sync_free(s);

    /* Sync with a wrong password never gets a connection. */
    s = ias_redis_sync_new(bad, 2000);
    assert_non_null(s);
    assert_int_equal(ias_redis_sync_ping(s), IAS_ERR);
    ias_redis_sync_free(s);

    /* Async: the same handshake, pipelined before "connected". */
    ias_redis_async *a = async_connected(base, good);
    async_cmd_wait(base, a, 2, who, &res);
    assert_string_equal(res.str, user);
    async_cmd_wait(base, a, 2, info, &res);
    assert_non_null(strstr(res.str, " db=3 "));
    ias_redis_async_free(a);

    /* Async with a wrong password stays disconnected and fails fast. */
    a = ias_redis_async_new(base, bad);
    assert_non_null(a);
    run_for(base, 300);
    assert_false(ias_redis_async_connected(a));
    const char *p[] = {"PING"};
    async_cmd_wait(base, a, 1, p, &res);
    assert_string_equal(res.err, "redis not connected");
    ias_redis_async_free(a);

    const char *rm[] = {"ACL", "DELUSER", user};
    sync_ok(admin, 3, rm);
    ias_redis_sync_free(admin);
    event_base_free(base);
}

int main(void)
{
    /* As every ias service does (see redis.h). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_set_get),
        cmocka_unit_test(test_sync_bad_url_and_down_server),
        cmocka_unit_test(test_sync_script_noscript_fallback),
        cmocka_unit_test(test_async_commands),
        cmocka_unit_test(test_async_eval_noscript),
        cmocka_unit_test(test_async_command_timeout),
        cmocka_unit_test(test_async_stuck_link_replaced),
        cmocka_unit_test(test_async_down_server_fails_fast),
        cmocka_unit_test(test_async_free_inside_callback),
        cmocka_unit_test(test_async_free_with_pending),
        cmocka_unit_test(test_auth_and_select),
        cmocka_unit_test(test_sync_retry_after_restart),
        cmocka_unit_test(test_async_server_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
