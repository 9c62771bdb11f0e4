/* Token budget reservations: one Lua script per operation (see ias/budget.h). */
#include "ias/budget.h"
#include "ias/redis.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Budget hashes outlive their month (accounting reads last month's figures);
 * reservation records outlive any TTL so a late purge still finds them. */
#define BUDGET_KEY_KEEP_MS "5616000000"      /* 65 days */
#define RESV_KEEP_EXTRA_MS 3456000000LL      /* 40 days past expiry */
#define BUDGET_MAX_TOKENS 1000000000000000LL /* 1e15: exact in Lua doubles */
#define PURGE_BATCH "256"

/* KEYS: org budget, user budget ("" = none), resvq, resv.
 * ARGV: org_limit, user_limit, want, min, ttl_ms, org, user, month, id, keep_ms, resv_keep_ms
 * Returns {0, granted, org_rem, user_rem}, {1, 0, org_rem, user_rem} or an error. */
static const char RESERVE_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local user = ARGV[7]\n"
    "local keep = ARGV[10]\n"
    "local exp = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, " PURGE_BATCH ")\n"
    "for _, id in ipairs(exp) do\n"
    "  local rk = 'ias:resv:' .. id\n"
    "  local h = redis.call('HMGET', rk, 'tokens', 'user', 'state')\n"
    "  if h[3] == 'open' then\n"
    "    local tok = tonumber(h[1]) or 0\n"
    "    redis.call('HINCRBY', KEYS[1], 'reserved', -tok)\n"
    "    if h[2] and h[2] ~= '' then\n"
    "      redis.call('HINCRBY', KEYS[1] .. ':u:' .. h[2], 'reserved', -tok)\n"
    "    end\n"
    "    redis.call('HSET', rk, 'state', 'expired')\n"
    "    redis.call('PEXPIRE', rk, keep)\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[3], id)\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[4]) == 1 then\n"
    "  return redis.error_reply('ERR reservation id already used')\n"
    "end\n"
    "local function remaining(key, limit)\n"
    "  if limit < 0 then return -1 end\n"
    "  local h = redis.call('HMGET', key, 'used', 'reserved')\n"
    "  local r = limit - (tonumber(h[1]) or 0) - (tonumber(h[2]) or 0)\n"
    "  if r < 0 then r = 0 end\n"
    "  return r\n"
    "end\n"
    "local want = tonumber(ARGV[3])\n"
    "local min = tonumber(ARGV[4])\n"
    "local orem = remaining(KEYS[1], tonumber(ARGV[1]))\n"
    "local urem = -1\n"
    "if user ~= '' then urem = remaining(KEYS[2], tonumber(ARGV[2])) end\n"
    "local grant = want\n"
    "if orem >= 0 and orem < grant then grant = orem end\n"
    "if urem >= 0 and urem < grant then grant = urem end\n"
    "if grant < min then return {1, 0, orem, urem} end\n"
    "local g = string.format('%d', grant)\n"
    "redis.call('HINCRBY', KEYS[1], 'reserved', g)\n"
    "redis.call('PEXPIRE', KEYS[1], '" BUDGET_KEY_KEEP_MS "')\n"
    "if user ~= '' then\n"
    "  redis.call('HINCRBY', KEYS[2], 'reserved', g)\n"
    "  redis.call('PEXPIRE', KEYS[2], '" BUDGET_KEY_KEEP_MS "')\n"
    "end\n"
    "local expires = now + tonumber(ARGV[5])\n"
    "redis.call('HSET', KEYS[4], 'org', ARGV[6], 'user', user, 'month', ARGV[8],\n"
    "  'tokens', g, 'expires_ms', string.format('%d', expires), 'state', 'open')\n"
    "redis.call('PEXPIRE', KEYS[4], ARGV[11])\n"
    "redis.call('ZADD', KEYS[3], expires, ARGV[9])\n"
    "redis.call('PEXPIRE', KEYS[3], ARGV[11])\n"
    "if orem >= 0 then orem = orem - grant end\n"
    "if urem >= 0 then urem = urem - grant end\n"
    "return {0, grant, orem, urem}\n";

/* KEYS: resv. ARGV: actual, keep_ms, id. Returns {0, added}. */
static const char SETTLE_LUA[] =
    "local h = redis.call('HMGET', KEYS[1], 'org', 'user', 'month', 'tokens', 'state')\n"
    "if not h[1] or h[5] == 'settled' then return {0, 0} end\n"
    "local ok = 'ias:budget:' .. h[1] .. ':' .. h[3]\n"
    "local uk = ok .. ':u:' .. h[2]\n"
    "if h[5] == 'open' then\n"
    "  local tok = string.format('%d', -(tonumber(h[4]) or 0))\n"
    "  redis.call('HINCRBY', ok, 'reserved', tok)\n"
    "  if h[2] ~= '' then redis.call('HINCRBY', uk, 'reserved', tok) end\n"
    "  redis.call('ZREM', 'ias:resvq:' .. h[1] .. ':' .. h[3], ARGV[3])\n"
    "end\n"
    "local actual = tonumber(ARGV[1])\n"
    "if actual > 0 then\n"
    "  redis.call('HINCRBY', ok, 'used', ARGV[1])\n"
    "  if h[2] ~= '' then redis.call('HINCRBY', uk, 'used', ARGV[1]) end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'state', 'settled')\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return {0, actual}\n";

/* Read-only after the one-time init; shared by every thread. */
static ias_redis_script reserve_script, settle_script;
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_init(void)
{
    ias_redis_script_init(&reserve_script, RESERVE_LUA);
    ias_redis_script_init(&settle_script, SETTLE_LUA);
}

void ias_budget_month(int64_t wall_ms, char out[7])
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        memcpy(out, "197001", 7);
        return;
    }
    unsigned y = (unsigned)(tm.tm_year + 1900) % 10000u, mo = (unsigned)tm.tm_mon % 12u + 1u;
    out[0] = (char)('0' + y / 1000);
    out[1] = (char)('0' + y / 100 % 10);
    out[2] = (char)('0' + y / 10 % 10);
    out[3] = (char)('0' + y % 10);
    out[4] = (char)('0' + mo / 10);
    out[5] = (char)('0' + mo % 10);
    out[6] = '\0';
}

static bool id_ok(const char *s, bool allow_empty)
{
    size_t n;
    if (!s)
        return allow_empty;
    n = strlen(s);
    if (n == 0)
        return allow_empty;
    if (n > IAS_BUDGET_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == ':' || c >= 0x7f)
            return false;
    }
    return true;
}

static bool month_ok(const char *m)
{
    if (strlen(m) != 6)
        return false;
    for (int i = 0; i < 6; i++)
        if (m[i] < '0' || m[i] > '9')
            return false;
    return true;
}

/* Everything one EVALSHA needs, in one block. */
typedef struct reserve_args {
    char korg[IAS_BUDGET_ID_MAX + 32];
    char kuser[2 * IAS_BUDGET_ID_MAX + 40];
    char kq[IAS_BUDGET_ID_MAX + 32];
    char kresv[IAS_BUDGET_ID_MAX + 16];
    char olim[24], ulim[24], want[24], min[24], ttl[24], keep[24], resv_keep[24];
    char month[7];
    const char *keys[4];
    const char *args[11];
} reserve_args;

static int reserve_prepare(const ias_budget_reserve_req *q, reserve_args *a)
{
    const char *user;
    int64_t ttl;

    if (!q || !id_ok(q->org_id, false) || !id_ok(q->user_id, true) ||
        !id_ok(q->reservation_id, false))
        return IAS_ERR;
    if (q->min <= 0 || q->want < q->min || q->want > BUDGET_MAX_TOKENS ||
        q->org_limit > BUDGET_MAX_TOKENS || q->user_limit > BUDGET_MAX_TOKENS)
        return IAS_ERR;
    if (q->month) {
        if (!month_ok(q->month))
            return IAS_ERR;
        memcpy(a->month, q->month, 7);
    } else {
        ias_budget_month(ias_wall_ms(), a->month);
    }
    ttl = q->ttl_ms > 0 ? q->ttl_ms : IAS_BUDGET_DEFAULT_TTL_MS;
    user = q->user_id ? q->user_id : "";

    snprintf(a->korg, sizeof(a->korg), "ias:budget:%s:%s", q->org_id, a->month);
    if (user[0])
        snprintf(a->kuser, sizeof(a->kuser), "ias:budget:%s:%s:u:%s", q->org_id, a->month, user);
    else
        a->kuser[0] = '\0';
    snprintf(a->kq, sizeof(a->kq), "ias:resvq:%s:%s", q->org_id, a->month);
    snprintf(a->kresv, sizeof(a->kresv), "ias:resv:%s", q->reservation_id);
    snprintf(a->olim, sizeof(a->olim), "%" PRId64, q->org_limit < 0 ? -1 : q->org_limit);
    snprintf(a->ulim, sizeof(a->ulim), "%" PRId64, q->user_limit < 0 ? -1 : q->user_limit);
    snprintf(a->want, sizeof(a->want), "%" PRId64, q->want);
    snprintf(a->min, sizeof(a->min), "%" PRId64, q->min);
    snprintf(a->ttl, sizeof(a->ttl), "%" PRId64, ttl);
    snprintf(a->keep, sizeof(a->keep), "%d", IAS_BUDGET_SETTLED_KEEP_MS);
    snprintf(a->resv_keep, sizeof(a->resv_keep), "%lld", (long long)(ttl + RESV_KEEP_EXTRA_MS));

    a->keys[0] = a->korg;
    a->keys[1] = a->kuser;
    a->keys[2] = a->kq;
    a->keys[3] = a->kresv;
    a->args[0] = a->olim;
    a->args[1] = a->ulim;
    a->args[2] = a->want;
    a->args[3] = a->min;
    a->args[4] = a->ttl;
    a->args[5] = q->org_id;
    a->args[6] = user;
    a->args[7] = a->month;
    a->args[8] = q->reservation_id;
    a->args[9] = a->keep;
    a->args[10] = a->resv_keep;
    return IAS_OK;
}

typedef struct settle_args {
    char kresv[IAS_BUDGET_ID_MAX + 16];
    char actual[24], keep[24];
    const char *keys[1];
    const char *args[3];
} settle_args;

static int settle_prepare(const char *id, int64_t actual, settle_args *a)
{
    if (!id_ok(id, false) || actual < 0 || actual > BUDGET_MAX_TOKENS)
        return IAS_ERR;
    snprintf(a->kresv, sizeof(a->kresv), "ias:resv:%s", id);
    snprintf(a->actual, sizeof(a->actual), "%" PRId64, actual);
    snprintf(a->keep, sizeof(a->keep), "%d", IAS_BUDGET_SETTLED_KEEP_MS);
    a->keys[0] = a->kresv;
    a->args[0] = a->actual;
    a->args[1] = a->keep;
    a->args[2] = id;
    return IAS_OK;
}

/* Decodes {status, granted[, org_rem, user_rem]}. */
static void decode_reply(const redisReply *rep, const char *err, ias_budget_result *res)
{
    memset(res, 0, sizeof(*res));
    res->org_remaining = -1;
    res->user_remaining = -1;
    if (err || !rep) {
        res->status = IAS_BUDGET_ERROR;
        res->error = err ? err : "no reply from redis";
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) {
        res->status = IAS_BUDGET_ERROR;
        res->error = rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply from redis";
        return;
    }
    for (size_t i = 0; i < rep->elements && i < 4; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER) {
            res->status = IAS_BUDGET_ERROR;
            res->error = "unexpected reply from redis";
            return;
        }
    }
    res->status = rep->element[0]->integer == 0 ? IAS_BUDGET_OK : IAS_BUDGET_OVER;
    res->granted = rep->element[1]->integer;
    if (rep->elements >= 4) {
        res->org_remaining = rep->element[2]->integer;
        res->user_remaining = rep->element[3]->integer;
    }
}

typedef struct budget_call {
    ias_budget_cb cb;
    void *arg;
} budget_call;

static void on_eval(const redisReply *rep, const char *err, void *arg)
{
    budget_call *c = arg;
    ias_budget_result res;
    decode_reply(rep, err, &res);
    c->cb(&res, c->arg);
    free(c);
}

int ias_budget_reserve(ias_redis_async *r, const ias_budget_reserve_req *q, ias_budget_cb cb,
                       void *arg)
{
    reserve_args a;
    budget_call *c;

    if (!r || !cb || reserve_prepare(q, &a) != IAS_OK)
        return IAS_ERR;
    pthread_once(&scripts_once, scripts_init);
    c = ias_xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    /* hiredis copies the arguments into its output buffer, so a may go now. */
    ias_redis_async_eval(r, &reserve_script, 4, a.keys, 11, a.args, on_eval, c);
    return IAS_OK;
}

int ias_budget_settle(ias_redis_async *r, const char *reservation_id, int64_t actual_tokens,
                      ias_budget_cb cb, void *arg)
{
    settle_args a;
    budget_call *c;

    if (!r || !cb || settle_prepare(reservation_id, actual_tokens, &a) != IAS_OK)
        return IAS_ERR;
    pthread_once(&scripts_once, scripts_init);
    c = ias_xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    ias_redis_async_eval(r, &settle_script, 1, a.keys, 3, a.args, on_eval, c);
    return IAS_OK;
}

static void sync_result(int rc, redisReply *rep, ias_budget_result *out)
{
    if (rc != IAS_OK) {
        decode_reply(NULL, "redis unreachable", out);
        return;
    }
    decode_reply(rep, NULL, out);
    if (out->status == IAS_BUDGET_ERROR)
        out->error = "redis refused the budget script"; /* rep is freed below */
    freeReplyObject(rep);
}

int ias_budget_reserve_sync(ias_redis_sync *r, const ias_budget_reserve_req *q,
                            ias_budget_result *out)
{
    reserve_args a;
    redisReply *rep = NULL;
    int rc;

    if (!r || !out || reserve_prepare(q, &a) != IAS_OK)
        return IAS_ERR;
    pthread_once(&scripts_once, scripts_init);
    rc = ias_redis_sync_eval(r, &reserve_script, 4, a.keys, 11, a.args, &rep);
    sync_result(rc, rep, out);
    return IAS_OK;
}

int ias_budget_settle_sync(ias_redis_sync *r, const char *reservation_id, int64_t actual_tokens,
                           ias_budget_result *out)
{
    settle_args a;
    redisReply *rep = NULL;
    int rc;

    if (!r || !out || settle_prepare(reservation_id, actual_tokens, &a) != IAS_OK)
        return IAS_ERR;
    pthread_once(&scripts_once, scripts_init);
    rc = ias_redis_sync_eval(r, &settle_script, 1, a.keys, 3, a.args, &rep);
    sync_result(rc, rep, out);
    return IAS_OK;
}
