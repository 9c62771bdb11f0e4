/* Budget counters of record and the maintenance thread.
 *
 * Redis holds the hot-path budget counters (internal-contracts.md): the `used`
 * field of ias:budget:{org}:{yyyymm} and ias:budget:{org}:{yyyymm}:u:{user},
 * settled by the router. PostgreSQL holds the usage of record. At start and
 * every IAS_DRIFT_CHECK_INTERVAL this thread compares each counter of the
 * current UTC month with the month's total in usage_month_totals (kept by the
 * consumer in the batch transaction; summing usage_rollups_hourly instead read
 * every rollup row of the month each time, seconds at millions of rows), up to
 * SYNC_CHUNK counters per Lua call (one call per counter took 6-9 s for the
 * 101,000 counters of 1,000 orgs x 100 users, a round trip each):
 *
 * - Redis below the database: the counter lost updates (Redis restarted, a
 *   settle was lost). It is raised to the database total and the drift logged.
 * - Redis above the database: legitimate while events are in flight (settled
 *   by the router, not yet consumed: queued, spooled, or in a batch being
 *   committed). It is never lowered, because lowering it would let an org spend
 *   tokens it already used; the excess is reported (metric, log) instead.
 *
 * Months are part of the key, so a new month simply starts new counters at
 * 00:00 UTC on the 1st: no job has to run (or can be missed) at rollover.
 * The thread also keeps usage_events partitions ahead (daily) and sums closed
 * days into the daily rollups (daily.c, every IAS_DAILY_ROLLUP_INTERVAL). */
#include "accounting.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ias/log.h"
#include "ias/pg.h"
#include "ias/redis.h"

#define BUDGET_KEY_TTL_S (62 * 24 * 3600) /* a month's counters outlive it a while */
#define PARTITION_MONTHS 3

/* Counters per Lua call: few enough that Redis, which runs a script to the
 * end before any other command, is held for about a millisecond at a time
 * (the hot path's reserves and settles wait meanwhile). */
#define SYNC_CHUNK 256

/* For each KEYS[i], raises `used` to the database total ARGV[i + 1] when below
 * it (and gives the key the TTL ARGV[1] if it has none); returns the flat list
 * {raised_1, before_1, raised_2, before_2, ...}. */
static const char RAISE_LUA[] =
    "local out = {}\n"
    "for i, key in ipairs(KEYS) do\n"
    "  local cur = tonumber(redis.call('HGET', key, 'used') or '0') or 0\n"
    "  local want = tonumber(ARGV[i + 1])\n"
    "  if cur < want then\n"
    "    redis.call('HSET', key, 'used', ARGV[i + 1])\n"
    "    if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[1]) end\n"
    "    out[#out + 1] = 1\n"
    "  else\n"
    "    out[#out + 1] = 0\n"
    "  end\n"
    "  out[#out + 1] = cur\n"
    "end\n"
    "return out\n";

/* Month totals per org (user_id NULL) and per (org, user): one row per
 * counter, found through the month index. $1: the month's first day. */
static const char TOTALS_SQL[] =
    "SELECT org_id, coalesce(user_id::text, ''), prompt_tokens + completion_tokens"
    " FROM usage_month_totals WHERE month = $1::date";

typedef struct maint {
    acct_ctx *ctx;
    ias_pg *pg;
    ias_redis_sync *redis;
    ias_redis_script raise;
    char keybuf[SYNC_CHUNK][256]; /* the counter keys of one RAISE_LUA call */
} maint;

/* The UTC month of now_ms as "YYYYMM" (counter keys) and "YYYY-MM-01". */
static void month_of(int64_t now_ms, char yyyymm[7], char first[16])
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    int y, m;

    if (gmtime_r(&t, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    y = (tm.tm_year + 1900) % 10000;
    m = (tm.tm_mon % 12) + 1;
    snprintf(yyyymm, 7, "%04u%02u", (unsigned)y % 10000u, (unsigned)m % 100u);
    snprintf(first, 16, "%04d-%02d-01", y, m);
}

typedef struct sync_totals {
    long long raised, raised_tokens, ahead, ahead_tokens;
} sync_totals;

/* The counter key of row i of TOTALS_SQL. */
static void counter_key(const PGresult *res, int i, const char *yyyymm, char *key, size_t len)
{
    const char *org = ias_pg_value(res, i, 0), *user = ias_pg_value(res, i, 1);

    if (user[0])
        snprintf(key, len, "ias:budget:%s:%s:u:%s", org, yyyymm, user);
    else
        snprintf(key, len, "ias:budget:%s:%s", org, yyyymm);
}

/* Rows [first, first + n) of TOTALS_SQL in one RAISE_LUA call. */
static int sync_chunk(maint *mt, const PGresult *res, int first, int n, const char *yyyymm,
                      sync_totals *t)
{
    const char *keys[SYNC_CHUNK], *args[SYNC_CHUNK + 1];
    char ttl[16];
    redisReply *rep = NULL;
    int rc = IAS_OK;

    snprintf(ttl, sizeof(ttl), "%d", BUDGET_KEY_TTL_S);
    args[0] = ttl;
    for (int k = 0; k < n; k++) {
        counter_key(res, first + k, yyyymm, mt->keybuf[k], sizeof(mt->keybuf[k]));
        keys[k] = mt->keybuf[k];
        args[k + 1] = ias_pg_value(res, first + k, 2);
    }
    if (ias_redis_sync_eval(mt->redis, &mt->raise, n, keys, n + 1, args, &rep) != IAS_OK) {
        ias_warn(NULL, "budget drift check: redis unreachable");
        return IAS_ERR;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)n * 2) {
        ias_warn(NULL, "budget drift check: unexpected reply: %s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        freeReplyObject(rep);
        return IAS_ERR;
    }
    for (int k = 0; k < n && rc == IAS_OK; k++) {
        const redisReply *raised = rep->element[2 * k], *before = rep->element[2 * k + 1];
        long long db = strtoll(args[k + 1], NULL, 10);
        if (raised->type != REDIS_REPLY_INTEGER || before->type != REDIS_REPLY_INTEGER) {
            ias_warn(NULL, "budget drift check: unexpected reply for %s", keys[k]);
            rc = IAS_ERR;
        } else if (raised->integer == 1) {
            t->raised++;
            t->raised_tokens += db - before->integer;
            ias_warn(NULL,
                     "budget drift corrected: %s used %lld in redis, %lld of record; "
                     "raised by %lld",
                     keys[k], before->integer, db, db - before->integer);
        } else if (before->integer > db) {
            t->ahead++;
            t->ahead_tokens += before->integer - db;
        }
    }
    freeReplyObject(rep);
    return rc;
}

/* One pass of the drift check over the current month. */
static int budget_sync(maint *mt)
{
    acct_ctx *ctx = mt->ctx;
    char yyyymm[7], first[16];
    const char *params[1] = {first};
    PGresult *res = NULL;
    sync_totals t = {0};
    uint64_t t0 = ias_now_ms();
    int nrows, rc = IAS_OK;

    month_of(acct_now_ms(ctx), yyyymm, first);
    if (ias_pg_exec(mt->pg, TOTALS_SQL, 1, params, &res) != IAS_OK) {
        ias_warn(NULL, "budget drift check: %s", ias_pg_last_message(mt->pg));
        return IAS_ERR;
    }
    nrows = ias_pg_nrows(res);
    for (int i = 0; i < nrows && rc == IAS_OK; i += SYNC_CHUNK)
        rc = sync_chunk(mt, res, i, nrows - i < SYNC_CHUNK ? nrows - i : SYNC_CHUNK, yyyymm, &t);
    ias_pg_clear(res);
    if (t.raised > 0)
        ias_counter_add(ctx->m_drift, (uint64_t)t.raised);
    ias_info(NULL,
             "budget drift check %s: %d counters, %lld raised (+%lld tokens), %lld ahead of the "
             "database by %lld tokens (events in flight), %llu ms",
             yyyymm, nrows, t.raised, t.raised_tokens, t.ahead, t.ahead_tokens,
             (unsigned long long)(ias_now_ms() - t0));
    return rc;
}

/* Waits up to ms or until stop; true when stopping. */
static bool maint_wait(acct_ctx *ctx, int64_t ms)
{
    struct timespec ts;
    bool stop;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&ctx->maint_mu);
    while (!(stop = atomic_load(&ctx->stop))) {
        int rc = pthread_cond_timedwait(&ctx->maint_cv, &ctx->maint_mu, &ts);
        if (rc == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&ctx->maint_mu);
    return stop || atomic_load(&ctx->stop);
}

static void *maint_main(void *varg)
{
    maint *mt = varg;
    acct_ctx *ctx = mt->ctx;
    uint64_t next_partitions = 0, next_drift = 0, next_daily = 0;
    bool partitions_ok = false, synced_once = false;

    while (!atomic_load(&ctx->stop)) {
        uint64_t now = ias_now_ms();
        int64_t wait;

        if (now >= next_partitions) {
            partitions_ok =
                acct_partitions_ensure(mt->pg, acct_now_ms(ctx), PARTITION_MONTHS) == IAS_OK &&
                acct_processed_prune(mt->pg, ctx->dedup_retention_ms) == IAS_OK;
            /* Retry soon after a failure (database not up yet), else daily. */
            next_partitions = now + (uint64_t)(partitions_ok ? ctx->partition_interval_ms : 2000);
        }
        if (now >= next_daily) {
            int rc = acct_daily_rollup(mt->pg, acct_now_ms(ctx));
            next_daily = now + (uint64_t)(rc == IAS_OK || ctx->daily_interval_ms < 2000
                                              ? ctx->daily_interval_ms
                                              : 2000);
        }
        if (now >= next_drift) {
            int rc = budget_sync(mt);
            if (rc == IAS_OK && !synced_once) {
                synced_once = true;
                ias_info(NULL, "budget counters rebuilt from PostgreSQL");
            }
            next_drift = now + (uint64_t)(rc == IAS_OK || ctx->drift_interval_ms < 2000
                                              ? ctx->drift_interval_ms
                                              : 2000);
        }
        {
            uint64_t next = next_partitions < next_drift ? next_partitions : next_drift;
            if (next_daily < next)
                next = next_daily;
            wait = (int64_t)next - (int64_t)ias_now_ms();
        }
        if (wait > 0 && maint_wait(ctx, wait))
            break;
    }
    ias_redis_sync_free(mt->redis);
    ias_pg_free(mt->pg);
    free(mt);
    return NULL;
}

int acct_maint_start(acct_ctx *ctx)
{
    maint *mt = ias_xcalloc(1, sizeof(*mt));

    mt->ctx = ctx;
    mt->pg = ias_pg_new(ctx->pg_dsn, 5000);
    mt->redis = ias_redis_sync_new(ctx->redis_url, 2000);
    if (mt->pg == NULL || mt->redis == NULL) {
        ias_pg_free(mt->pg);
        ias_redis_sync_free(mt->redis);
        free(mt);
        return IAS_ERR;
    }
    ias_pg_set_application_name(mt->pg, "ias-accounting-maint");
    ias_redis_script_init(&mt->raise, RAISE_LUA);
    if (pthread_create(&ctx->maint_thread, NULL, maint_main, mt) != 0) {
        ias_pg_free(mt->pg);
        ias_redis_sync_free(mt->redis);
        free(mt);
        return IAS_ERR;
    }
    ctx->maint_started = true;
    return IAS_OK;
}

void acct_threads_stop(acct_ctx *ctx)
{
    pthread_mutex_lock(&ctx->maint_mu);
    atomic_store(&ctx->stop, true);
    pthread_cond_broadcast(&ctx->maint_cv);
    pthread_mutex_unlock(&ctx->maint_mu);
    for (int i = 0; i < ctx->consumers_started; i++)
        pthread_join(ctx->consumer_threads[i], NULL);
    if (ctx->maint_started)
        pthread_join(ctx->maint_thread, NULL);
    ctx->consumers_started = 0;
    ctx->maint_started = false;
}
