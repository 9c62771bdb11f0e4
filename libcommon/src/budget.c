/* Token budget reservations (see ias/budget.h).
 *
 * One Lua script takes a batch of reserves and settles. A script call costs Redis
 * more (script setup, MULTI/EXEC effects propagation to the AOF, reply building)
 * than the commands of one reserve, so the async API sends everything queued on
 * one client during one loop iteration as one EVALSHA: the first call queued makes
 * a libevent event active, which runs after the callbacks already active in this
 * iteration (one priority, appended to the active queue), so nothing waits on a
 * timer; hiredis writes the command on the next iteration, as it did for a
 * command queued directly. Settles may wait longer on a timer
 * (ias_budget_set_settle_wait): measured with callgrind on Redis 7.0, a script
 * call costs Redis ~110-130k instructions besides its items, about as much as one
 * reserve plus one settle, so a router that sends its settles a few ms later in
 * calls of 10-30 saves most of that. The blocking API sends batches of one. */
#include "ias/budget.h"
#include "ias/redis.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#define XSTR(x) STR(x)
#define STR(x) #x

/* Budget hashes outlive their month: TTL set when a write creates one. */
#define BUDGET_KEY_KEEP_MS "5616000000" /* 65 days */
/* Reservation records and the per org-month queue outlive any reservation TTL by
 * this much, so a late purge still finds an expired reservation and releases it.
 * The queue gets its TTL when the script creates it: a month's queue takes new
 * reservations during that month only, well within the 40 days. */
#define RESV_KEEP_EXTRA_MS "3456000000" /* 40 days */
/* IAS_BUDGET_SETTLED_KEEP_MS as a literal for the script. */
#define SETTLED_KEEP_MS "600000"
_Static_assert(IAS_BUDGET_SETTLED_KEEP_MS == 600000, "SETTLED_KEEP_MS out of date");
#define BUDGET_MAX_TOKENS 1000000000000000LL /* 1e15: exact in Lua doubles */
#define PURGE_BATCH "256"

/* Item error codes in the script's reply. */
#define ITEM_ERR_DUPLICATE 1 /* reservation id already used */
#define ITEM_ERR_DATA 2      /* a budget hash or queue is not of its type */
#define ITEM_ERR_RECORD 3    /* ias:resv:{id} is not a record */

/* ARGV: items back to back, each
 *   'r', org, user ("" = none), yyyymm, id, org_limit, user_limit, want, min, ttl_ms
 *   's', id, actual
 * Reply: 4 integers per item, in order: status, granted, org_remaining,
 * user_remaining; status 0 = OK, 1 = refused, 2 = item error (ITEM_ERR_* in the
 * second integer). Only a malformed batch (a client bug) is a script error.
 *
 * Each item runs as if alone, in order, but the batch reads TIME once, purges each
 * org-month once (time does not move within a script; a purge that hit its limit
 * runs again at the next reserve of that org-month, as every reserve did before),
 * reads each budget hash once (HMGET), keeps its counters in Lua and writes it
 * once at the end (HSET of the new values), and sends one ZADD and one ZREM per
 * org-month queue. Item-level problems (a reused id, unreadable data) answer that
 * item alone: data is read with pcall and nothing is written for a failed item.
 *
 * ias:resv:{id} is the string "state:tokens:expires_ms:org:yyyymm:user" (state
 * open, expired or settled; user may be empty; ids never contain ':'), written
 * with its TTL by one SET (NX for a new reservation: the duplicate check). Records
 * written as hashes by earlier versions are still read, and become strings at
 * their next change.
 *
 * Redis' Lua is slow at what a C programmer takes as free: every table, closure
 * and field insert allocates, tonumber() and string.format() go through the C
 * library, patterns backtrack. Hence records cut with plain finds, functions that
 * return several values instead of a table, and array-shaped entries. */
/* clang-format off */
static const char BATCH_LUA[] =
    "local now, nows\n"
    /* Budget hash: read once, changed in memory, written once at the end.
     * Entries are arrays (field names cost a table insert each in Redis' Lua):
     * [1] used, [2] reserved, [3] used delta, [4] reserved delta,
     * [5] unreadable, [6] absent (the write at the end creates it). */
    "local budgets = {}\n"
    "local function budget(k)\n"
    "  local b = budgets[k]\n"
    "  if b then return b end\n"
    "  local h = redis.pcall('HMGET', k, 'used', 'reserved')\n"
    "  local u, r = 0, 0\n"
    "  if h.err then\n"
    "    u = nil\n"
    "  else\n"
    "    if h[1] then u = tonumber(h[1]) end\n"
    "    if h[2] then r = tonumber(h[2]) end\n"
    "  end\n"
    "  b = {u or 0, r or 0, 0, 0, not u or not r, not h[1] and not h[2]}\n"
    "  budgets[k] = b\n"
    "  return b\n"
    "end\n"
    /* state, tokens, 'org:yyyymm', user, the text after state; nil = no record,
     * false = unreadable. */
    "local function record(rk)\n"
    "  local v = redis.pcall('GET', rk)\n"
    "  if not v then return nil end\n"
    "  if type(v) == 'table' then\n"
    "    local h = redis.pcall('HMGET', rk, 'state', 'tokens', 'expires_ms', 'org', 'month', 'user')\n"
    "    if h.err or not h[1] or not h[4] or not h[5] then return false end\n"
    "    local om, user = h[4] .. ':' .. h[5], h[6] or ''\n"
    "    return h[1], tonumber(h[2]) or 0, om, user,\n"
    "      ':' .. (h[2] or '0') .. ':' .. (h[3] or '0') .. ':' .. om .. ':' .. user\n"
    "  end\n"
    "  local find, sub = string.find, string.sub\n"
    "  local p1 = find(v, ':', 1, true)\n"
    "  local p2 = p1 and find(v, ':', p1 + 1, true)\n"
    "  local p3 = p2 and find(v, ':', p2 + 1, true)\n"
    "  local p4 = p3 and find(v, ':', p3 + 1, true)\n"
    "  local tok = p4 and tonumber(sub(v, p1 + 1, p2 - 1))\n"
    "  if not tok or #v < p4 + 7 then return false end\n"
    "  return sub(v, 1, p1 - 1), tok, sub(v, p3 + 1, p4 + 6), sub(v, p4 + 8), sub(v, p1)\n"
    "end\n"
    /* Queue of open reservations per org-month: [1] key, [2] the org's budget
     * key, [3] purge due, [4] longest TTL granted, [5] ZADD and [6] ZREM
     * arguments (false until needed), [7] the ZADD at the end may create it,
     * [8] unreadable (not a zset). */
    "local queues = {}\n"
    "local function queue(om)\n"
    "  local q = queues[om]\n"
    "  if not q then\n"
    "    q = {'ias:resvq:' .. om, 'ias:budget:' .. om, true, 0, false, false, false, false}\n"
    "    queues[om] = q\n"
    "  end\n"
    "  return q\n"
    "end\n"
    /* Expired open reservations stop counting. The first member tells whether
     * there are any, and whether the queue exists at all. */
    "local function purge(q)\n"
    "  q[3] = false\n"
    "  local first = redis.pcall('ZRANGE', q[1], '0', '0', 'WITHSCORES')\n"
    "  if first.err then\n"
    "    q[8] = true\n"
    "    return\n"
    "  end\n"
    "  if #first == 0 then\n"
    "    q[7] = true\n"
    "    return\n"
    "  end\n"
    "  if tonumber(first[2]) > now then return end\n"
    "  local exp = redis.call('ZRANGEBYSCORE', q[1], '-inf', nows, 'LIMIT', '0', '" PURGE_BATCH "')\n"
    "  for i = 1, #exp do\n"
    "    local rk = 'ias:resv:' .. exp[i]\n"
    "    local st, tok, _, user, rest = record(rk)\n"
    "    if st == 'open' then\n"
    "      local b = budget(q[2])\n"
    "      b[4] = b[4] - tok\n"
    "      if user ~= '' then\n"
    "        b = budget(q[2] .. ':u:' .. user)\n"
    "        b[4] = b[4] - tok\n"
    "      end\n"
    "      redis.call('SET', rk, 'expired' .. rest, 'PX', '" SETTLED_KEEP_MS "')\n"
    "    end\n"
    "  end\n"
    "  if #exp > 0 then\n"
    "    redis.call('ZREMRANGEBYRANK', q[1], '0', string.format('%d', #exp - 1))\n"
    "    q[7] = true\n" /* it may be gone now */
    "  end\n"
    "  q[3] = #exp == " PURGE_BATCH "\n"
    "end\n"
    "local function reserve(org, user, month, id, olim, ulim, want, min, ttl)\n"
    "  local om = org .. ':' .. month\n"
    "  local q = queue(om)\n"
    "  local ob, ub = budget(q[2]), nil\n"
    "  if user ~= '' then ub = budget(q[2] .. ':u:' .. user) end\n"
    "  if ob[5] or (ub and ub[5]) then return 2, " XSTR(ITEM_ERR_DATA) ", -1, -1 end\n"
    "  if not now then\n"
    "    local t = redis.call('TIME')\n"
    "    now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "    nows = string.format('%d', now)\n"
    "  end\n"
    "  if q[3] then purge(q) end\n"
    "  if q[8] then return 2, " XSTR(ITEM_ERR_DATA) ", -1, -1 end\n"
    "  local g = want\n"
    "  olim, want, min = olim + 0, want + 0, min + 0\n"
    "  local orem, urem, grant = -1, -1, want\n"
    "  if olim >= 0 then\n"
    "    orem = olim - ob[1] - ob[3] - ob[2] - ob[4]\n"
    "    if orem < 0 then orem = 0 end\n"
    "    if orem < grant then grant = orem end\n"
    "  end\n"
    "  if ub then\n"
    "    ulim = ulim + 0\n"
    "    if ulim >= 0 then\n"
    "      urem = ulim - ub[1] - ub[3] - ub[2] - ub[4]\n"
    "      if urem < 0 then urem = 0 end\n"
    "      if urem < grant then grant = urem end\n"
    "    end\n"
    "  end\n"
    "  local rk = 'ias:resv:' .. id\n"
    "  if grant < min then\n"
    "    if redis.call('EXISTS', rk) == 1 then return 2, " XSTR(ITEM_ERR_DUPLICATE) ", -1, -1 end\n"
    "    return 1, 0, orem, urem\n"
    "  end\n"
    "  local fmt = string.format\n"
    "  if grant ~= want then g = fmt('%d', grant) end\n"
    "  ttl = ttl + 0\n"
    "  local exp = fmt('%d', now + ttl)\n"
    "  if not redis.call('SET', rk, 'open:' .. g .. ':' .. exp .. ':' .. om .. ':' .. user,\n"
    "      'PX', fmt('%d', ttl + " RESV_KEEP_EXTRA_MS "), 'NX') then\n"
    "    return 2, " XSTR(ITEM_ERR_DUPLICATE) ", -1, -1\n"
    "  end\n"
    "  ob[4] = ob[4] + grant\n"
    "  if ub then ub[4] = ub[4] + grant end\n"
    "  local za = q[5]\n"
    "  if not za then\n"
    "    za = {}\n"
    "    q[5] = za\n"
    "  end\n"
    "  za[#za + 1] = exp\n"
    "  za[#za + 1] = id\n"
    "  if ttl > q[4] then q[4] = ttl end\n"
    "  if orem >= 0 then orem = orem - grant end\n"
    "  if urem >= 0 then urem = urem - grant end\n"
    "  return 0, grant, orem, urem\n"
    "end\n"
    "local function settle(id, actual)\n"
    "  local rk = 'ias:resv:' .. id\n"
    "  local st, tok, om, user, rest = record(rk)\n"
    "  if st == false then return 2, " XSTR(ITEM_ERR_RECORD) ", -1, -1 end\n"
    "  if not st or st == 'settled' then return 0, 0, -1, -1 end\n"
    "  local q = queue(om)\n"
    "  local ob, ub = budget(q[2]), nil\n"
    "  if user ~= '' then ub = budget(q[2] .. ':u:' .. user) end\n"
    "  if ob[5] or (ub and ub[5]) then return 2, " XSTR(ITEM_ERR_DATA) ", -1, -1 end\n"
    "  if st == 'open' then\n"
    "    ob[4] = ob[4] - tok\n"
    "    if ub then ub[4] = ub[4] - tok end\n"
    /* Reserved earlier in this batch: drop it from the pending ZADD instead. */
    "    local za, found = q[5], false\n"
    "    if za then\n"
    "      for i = 2, #za, 2 do\n"
    "        if za[i] == id then\n"
    "          table.remove(za, i)\n"
    "          table.remove(za, i - 1)\n"
    "          found = true\n"
    "          break\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    if not found then\n"
    "      local zr = q[6]\n"
    "      if not zr then\n"
    "        zr = {}\n"
    "        q[6] = zr\n"
    "      end\n"
    "      zr[#zr + 1] = id\n"
    "    end\n"
    "  end\n"
    "  actual = actual + 0\n"
    "  if actual > 0 then\n"
    "    ob[3] = ob[3] + actual\n"
    "    if ub then ub[3] = ub[3] + actual end\n"
    "  end\n"
    "  redis.call('SET', rk, 'settled' .. rest, 'PX', '" SETTLED_KEEP_MS "')\n"
    "  return 0, actual, -1, -1\n"
    "end\n"
    "local argv = ARGV\n"
    "local out, n, i, nargv = {0, 0, 0, 0}, 0, 1, #argv\n"
    "while i <= nargv do\n"
    "  local s, g, o, u\n"
    "  local tag = argv[i]\n"
    "  if tag == 'r' and i + 9 <= nargv then\n"
    "    s, g, o, u = reserve(argv[i + 1], argv[i + 2], argv[i + 3], argv[i + 4], argv[i + 5],\n"
    "      argv[i + 6], argv[i + 7], argv[i + 8], argv[i + 9])\n"
    "    i = i + 10\n"
    "  elseif tag == 's' and i + 2 <= nargv then\n"
    "    s, g, o, u = settle(argv[i + 1], argv[i + 2])\n"
    "    i = i + 3\n"
    "  else\n"
    "    return redis.error_reply('ERR malformed budget batch')\n"
    "  end\n"
    "  out[n + 1] = s\n"
    "  out[n + 2] = g\n"
    "  out[n + 3] = o\n"
    "  out[n + 4] = u\n"
    "  n = n + 4\n"
    "end\n"
    /* Effects are replicated, not the script, so the order of pairs() is free to
     * vary. */
    "local fmt = string.format\n"
    "for k, b in pairs(budgets) do\n"
    "  if not b[5] and (b[3] ~= 0 or b[4] ~= 0) then\n"
    "    if b[3] == 0 then\n"
    "      redis.call('HSET', k, 'reserved', fmt('%d', b[2] + b[4]))\n"
    "    elseif b[4] == 0 then\n"
    "      redis.call('HSET', k, 'used', fmt('%d', b[1] + b[3]))\n"
    "    else\n"
    "      redis.call('HSET', k, 'used', fmt('%d', b[1] + b[3]), 'reserved', fmt('%d', b[2] + b[4]))\n"
    "    end\n"
    "    if b[6] then redis.call('PEXPIRE', k, '" BUDGET_KEY_KEEP_MS "') end\n"
    "  end\n"
    "end\n"
    "for _, q in pairs(queues) do\n"
    "  if q[5] and #q[5] > 0 then\n"
    "    redis.call('ZADD', q[1], unpack(q[5]))\n"
    "    if q[7] then redis.call('PEXPIRE', q[1], fmt('%d', q[4] + " RESV_KEEP_EXTRA_MS ")) end\n"
    "  end\n"
    /* A queue that is not a zset only loses its cleanup. */
    "  if q[6] then redis.pcall('ZREM', q[1], unpack(q[6])) end\n"
    "end\n"
    "return out\n";
/* clang-format on */

/* Read-only after the one-time init; shared by every thread. */
static ias_redis_script batch_script;
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_init(void)
{
    ias_redis_script_init(&batch_script, BATCH_LUA);
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

/* ---- one item's script arguments ---- */

#define ITEM_ARGS_MAX 10
/* Tag, three ids, month and five int64 numbers, each with its NUL. */
#define ITEM_TEXT_MAX (2 + 3 * (IAS_BUDGET_ID_MAX + 1) + 7 + 5 * 21)

typedef struct item_args {
    int argc;
    size_t used;
    const char *argv[ITEM_ARGS_MAX];
    char text[ITEM_TEXT_MAX];
} item_args;

static void put_str(item_args *a, const char *s)
{
    size_t n = strlen(s) + 1;

    if (a->argc >= ITEM_ARGS_MAX || n > sizeof(a->text) - a->used)
        ias_die("budget: item arguments overflow"); /* ids are validated first */
    memcpy(a->text + a->used, s, n);
    a->argv[a->argc++] = a->text + a->used;
    a->used += n;
}

/* By hand: five of these per reservation, and snprintf's format machinery
 * was most of their cost. */
static void put_int(item_args *a, int64_t v)
{
    char num[IAS_I64_DEC_MAX];

    (void)ias_fmt_i64(num, v);
    put_str(a, num);
}

static int reserve_prepare(const ias_budget_reserve_req *q, item_args *a)
{
    char month[7];

    if (!q || !id_ok(q->org_id, false) || !id_ok(q->user_id, true) ||
        !id_ok(q->reservation_id, false))
        return IAS_ERR;
    if (q->min <= 0 || q->want < q->min || q->want > BUDGET_MAX_TOKENS ||
        q->org_limit > BUDGET_MAX_TOKENS || q->user_limit > BUDGET_MAX_TOKENS)
        return IAS_ERR;
    if (q->month) {
        if (!month_ok(q->month))
            return IAS_ERR;
        memcpy(month, q->month, 7);
    } else {
        ias_budget_month(ias_wall_ms(), month);
    }
    a->argc = 0;
    a->used = 0;
    put_str(a, "r");
    put_str(a, q->org_id);
    put_str(a, q->user_id ? q->user_id : "");
    put_str(a, month);
    put_str(a, q->reservation_id);
    put_int(a, q->org_limit < 0 ? -1 : q->org_limit);
    put_int(a, q->user_limit < 0 ? -1 : q->user_limit);
    put_int(a, q->want);
    put_int(a, q->min);
    put_int(a, q->ttl_ms > 0 ? q->ttl_ms : IAS_BUDGET_DEFAULT_TTL_MS);
    return IAS_OK;
}

static int settle_prepare(const char *id, int64_t actual, item_args *a)
{
    if (!id_ok(id, false) || actual < 0 || actual > BUDGET_MAX_TOKENS)
        return IAS_ERR;
    a->argc = 0;
    a->used = 0;
    put_str(a, "s");
    put_str(a, id);
    put_int(a, actual);
    return IAS_OK;
}

/* ---- replies ---- */

static void result_error(ias_budget_result *res, const char *why)
{
    memset(res, 0, sizeof(*res));
    res->status = IAS_BUDGET_ERROR;
    res->org_remaining = -1;
    res->user_remaining = -1;
    res->error = why;
}

/* NULL when rep answers n items; otherwise why it does not. */
static const char *reply_check(const redisReply *rep, size_t n)
{
    if (!rep)
        return "no reply from redis";
    if (rep->type == REDIS_REPLY_ERROR)
        return rep->str;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 * n)
        return "unexpected reply from redis";
    for (size_t i = 0; i < rep->elements; i++) {
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return "unexpected reply from redis";
    }
    return NULL;
}

/* Item i of a reply that passed reply_check. */
static void decode_item(const redisReply *rep, size_t i, ias_budget_result *res)
{
    long long status = rep->element[4 * i]->integer, v = rep->element[4 * i + 1]->integer;

    if (status == 2) {
        result_error(res, v == ITEM_ERR_DUPLICATE ? "reservation id already used"
                          : v == ITEM_ERR_DATA    ? "budget data in redis is unreadable"
                          : v == ITEM_ERR_RECORD  ? "reservation record in redis is unreadable"
                                                  : "unexpected reply from redis");
        return;
    }
    if (status != 0 && status != 1) {
        result_error(res, "unexpected reply from redis");
        return;
    }
    memset(res, 0, sizeof(*res));
    res->status = status == 0 ? IAS_BUDGET_OK : IAS_BUDGET_OVER;
    res->granted = v;
    res->org_remaining = rep->element[4 * i + 2]->integer;
    res->user_remaining = rep->element[4 * i + 3]->integer;
}

/* ---- async: one batch per client per loop iteration ---- */

#define BATCH_MAX IAS_BUDGET_BATCH_MAX

typedef struct item_cb {
    ias_budget_cb cb;
    void *arg;
} item_cb;

typedef struct batcher batcher;

/* A batch handed to Redis: the callbacks, in item order. Listed on its batcher
 * until answered, so a drain knows what is still owed; b is NULL once the
 * batcher is gone (the client is being freed). */
typedef struct sent_batch {
    batcher *b;
    struct sent_batch *prev, *next;
    size_t n;
    item_cb cbs[];
} sent_batch;

/* Items queued on one client. Reserves go at the end of the loop iteration
 * (flush_ev, made active); settles may wait up to settle_wait_ms for company
 * (wait_ev), and leave early with any reserve or when the batch is full. */
struct batcher {
    ias_redis_async *r;
    struct event *flush_ev;
    struct event *wait_ev;
    bool flush_active; /* flush_ev made active and not run yet */
    struct timeval settle_wait;
    bool settle_waits; /* settle_wait > 0 */
    sent_batch *sent;  /* unanswered batches */
    size_t nsent;      /* items in them */
    size_t n;
    item_cb cbs[BATCH_MAX];
    item_args items[BATCH_MAX];
};

static const char batcher_tag; /* its address names our state on a client */

static void on_batch_reply(const redisReply *rep, const char *err, void *arg)
{
    sent_batch *sb = arg;
    batcher *b = sb->b;
    const char *why = err ? err : reply_check(rep, sb->n);
    ias_budget_result res;

    if (b) {
        if (sb->prev)
            sb->prev->next = sb->next;
        else
            b->sent = sb->next;
        if (sb->next)
            sb->next->prev = sb->prev;
        b->nsent -= sb->n;
    }
    /* A callback may queue more items or free the client: neither touches sb,
     * and rep lives until we return. */
    for (size_t i = 0; i < sb->n; i++) {
        if (why)
            result_error(&res, why);
        else
            decode_item(rep, i, &res);
        sb->cbs[i].cb(&res, sb->cbs[i].arg);
    }
    free(sb);
}

/* Hands n items to the client as one script call; their callbacks fire from
 * on_batch_reply, never from here. b (NULL: the client is going away) lists the
 * batch until it is answered. */
static void send_items(ias_redis_async *r, batcher *b, const item_args *items, const item_cb *cbs,
                       size_t n)
{
    const char *argv[BATCH_MAX * ITEM_ARGS_MAX];
    sent_batch *sb;
    int argc = 0;

    if (n == 0 || n > BATCH_MAX)
        ias_die("budget: batch of %zu items", n);
    sb = ias_xmalloc(sizeof(*sb) + n * sizeof(sb->cbs[0]));
    sb->b = b;
    sb->prev = NULL;
    sb->next = NULL;
    sb->n = n;
    memcpy(sb->cbs, cbs, n * sizeof(cbs[0]));
    if (b) {
        sb->next = b->sent;
        if (b->sent)
            b->sent->prev = sb;
        b->sent = sb;
        b->nsent += n;
    }
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < items[i].argc; j++)
            argv[argc++] = items[i].argv[j];
    }
    /* The client copies the arguments, so the batcher's buffers are free again. */
    ias_redis_async_eval(r, &batch_script, 0, NULL, argc, argv, on_batch_reply, sb);
}

static void batcher_flush(batcher *b)
{
    size_t n = b->n;

    if (n == 0)
        return;
    b->n = 0;
    if (b->settle_waits)
        event_del(b->wait_ev); /* what waited goes now */
    send_items(b->r, b, b->items, b->cbs, n);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    batcher *b = arg;

    b->flush_active = false;
    batcher_flush(b);
}

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
    batcher_flush(arg);
}

/* Client teardown: what is still queued fails, exactly once; batches already
 * sent are answered by the client (with an error) without us. */
static void batcher_free(void *data)
{
    batcher *b = data;
    ias_budget_result res;

    event_free(b->flush_ev);
    event_free(b->wait_ev);
    for (sent_batch *sb = b->sent; sb; sb = sb->next)
        sb->b = NULL;
    for (size_t i = 0; i < b->n; i++) {
        result_error(&res, "redis client closed");
        b->cbs[i].cb(&res, b->cbs[i].arg);
    }
    free(b);
}

/* NULL when the client is being freed. */
static batcher *batcher_get(ias_redis_async *r)
{
    batcher *b = ias_redis_async_ext_get(r, &batcher_tag);

    if (b)
        return b;
    b = ias_xcalloc(1, sizeof(*b));
    b->r = r;
    b->flush_ev = event_new(ias_redis_async_base(r), -1, 0, on_flush, b);
    b->wait_ev = evtimer_new(ias_redis_async_base(r), on_wait, b);
    if (!b->flush_ev || !b->wait_ev)
        ias_die("budget: event_new failed");
    if (ias_redis_async_ext_set(r, &batcher_tag, b, batcher_free) != IAS_OK) {
        event_free(b->flush_ev);
        event_free(b->wait_ev);
        free(b);
        return NULL;
    }
    return b;
}

/* Queues the item just prepared in b->items[b->n], or sends `one` alone when
 * there is no batcher. A settle may wait (it only keeps the budget stricter
 * meanwhile: its reservation still counts); a reserve has a caller waiting. */
static void enqueue(ias_redis_async *r, batcher *b, const item_args *one, ias_budget_cb cb,
                    void *arg, bool may_wait)
{
    item_cb c = {cb, arg};

    if (!b) {
        /* The client is going away: the call fails like any command after free. */
        send_items(r, NULL, one, &c, 1);
        return;
    }
    b->cbs[b->n++] = c;
    if (b->n == BATCH_MAX) {
        batcher_flush(b); /* an active flush event then finds nothing to send */
        return;
    }
    if (may_wait && b->settle_waits) {
        if (!evtimer_pending(b->wait_ev, NULL) && evtimer_add(b->wait_ev, &b->settle_wait) != 0)
            ias_die("budget: evtimer_add failed");
    } else if (!b->flush_active) {
        b->flush_active = true;
        event_active(b->flush_ev, EV_TIMEOUT, 0);
    }
}

int ias_budget_reserve(ias_redis_async *r, const ias_budget_reserve_req *q, ias_budget_cb cb,
                       void *arg)
{
    item_args one;
    batcher *b;

    if (!r || !cb)
        return IAS_ERR;
    pthread_once(&scripts_once, scripts_init);
    b = batcher_get(r);
    if (reserve_prepare(q, b ? &b->items[b->n] : &one) != IAS_OK)
        return IAS_ERR;
    enqueue(r, b, &one, cb, arg, false);
    return IAS_OK;
}

int ias_budget_settle(ias_redis_async *r, const char *reservation_id, int64_t actual_tokens,
                      ias_budget_cb cb, void *arg)
{
    item_args one;
    batcher *b;

    if (!r || !cb)
        return IAS_ERR;
    pthread_once(&scripts_once, scripts_init);
    b = batcher_get(r);
    if (settle_prepare(reservation_id, actual_tokens, b ? &b->items[b->n] : &one) != IAS_OK)
        return IAS_ERR;
    enqueue(r, b, &one, cb, arg, true);
    return IAS_OK;
}

int ias_budget_set_settle_wait(ias_redis_async *r, unsigned wait_ms)
{
    batcher *b;

    if (!r || wait_ms > IAS_BUDGET_SETTLE_WAIT_MAX_MS)
        return IAS_ERR;
    b = batcher_get(r);
    if (!b)
        return IAS_ERR;
    b->settle_wait.tv_sec = wait_ms / 1000;
    b->settle_wait.tv_usec = (suseconds_t)(wait_ms % 1000) * 1000;
    if (wait_ms == 0 && b->settle_waits) {
        /* Nothing may keep waiting on a timer that no longer applies. */
        event_del(b->wait_ev);
        if (b->n > 0 && !b->flush_active) {
            b->flush_active = true;
            event_active(b->flush_ev, EV_TIMEOUT, 0);
        }
    }
    b->settle_waits = wait_ms > 0;
    return IAS_OK;
}

int ias_budget_drain(ias_redis_async *r, unsigned timeout_ms)
{
    batcher *b = r ? ias_redis_async_ext_get(r, &batcher_tag) : NULL;
    uint64_t deadline = ias_now_ms() + timeout_ms;

    if (!b)
        return IAS_OK; /* no budget call was ever made on r */
    batcher_flush(b);
    /* Every sent batch has a command timeout on the client, so each pass ends;
     * b outlives the loop (only ias_redis_async_free() frees it). */
    while (b->nsent > 0 || b->n > 0) {
        if (ias_now_ms() >= deadline)
            return IAS_ERR;
        batcher_flush(b); /* a callback may have queued more */
        if (event_base_loop(ias_redis_async_base(r), EVLOOP_ONCE) != 0)
            return b->nsent > 0 ? IAS_ERR : IAS_OK; /* error, or nothing left to wait for */
    }
    return IAS_OK;
}

/* ---- blocking: a batch of one ---- */

static void sync_run(ias_redis_sync *r, const item_args *a, ias_budget_result *out)
{
    redisReply *rep = NULL;

    pthread_once(&scripts_once, scripts_init);
    if (ias_redis_sync_eval(r, &batch_script, 0, NULL, a->argc, a->argv, &rep) != IAS_OK) {
        result_error(out, "redis unreachable");
        return;
    }
    if (reply_check(rep, 1))
        result_error(out, "redis refused the budget script"); /* rep is freed below */
    else
        decode_item(rep, 0, out);
    freeReplyObject(rep);
}

int ias_budget_reserve_sync(ias_redis_sync *r, const ias_budget_reserve_req *q,
                            ias_budget_result *out)
{
    item_args a;

    if (!r || !out || reserve_prepare(q, &a) != IAS_OK)
        return IAS_ERR;
    sync_run(r, &a, out);
    return IAS_OK;
}

int ias_budget_settle_sync(ias_redis_sync *r, const char *reservation_id, int64_t actual_tokens,
                           ias_budget_result *out)
{
    item_args a;

    if (!r || !out || settle_prepare(reservation_id, actual_tokens, &a) != IAS_OK)
        return IAS_ERR;
    sync_run(r, &a, out);
    return IAS_OK;
}
