/* The daily rollup job (migration 0012): on the maintenance thread, at start
 * and every IAS_DAILY_ROLLUP_INTERVAL, the closed UTC days from the watermark
 * (the first day not yet summarised) up to today (the service clock's UTC
 * day, IAS_FAKE_NOW in tests) are summed from usage_rollups_hourly into
 * usage_rollups_daily_model and usage_rollups_daily_user_key, replacing any
 * daily rows of those days, and the watermark moves past them, one day per
 * transaction. The batch transactions (consumer.c) upsert daily rows only for
 * events of days before the watermark (late events); analytics.c reads daily
 * rows for days before it and hourly rows from it on.
 *
 * Why every event is counted exactly once in the daily rows:
 *
 * - Every batch transaction takes the advisory lock ACCT_DAILY_LOCK_KEY
 *   shared in its first statement and reads the watermark W in a later one,
 *   so the snapshot that reads W is taken after the lock was granted. The job
 *   takes the same lock exclusive in its first statement and reads W, the
 *   hourly rows and writes everything in later statements.
 * - So the two never overlap. The job's lock waits for every batch that holds
 *   it shared to commit (or roll back); a batch that asks for it meanwhile
 *   waits for the job's commit (PostgreSQL queues a shared request behind a
 *   waiting exclusive one). The job's statements therefore see the hourly rows
 *   of every batch that read the old W, and every batch after the job reads
 *   the new W.
 * - A batch that read the old W added its events of days >= W to the hourly
 *   rollups only: the job sums them into the daily rows of [W, today). A batch
 *   after the job adds events of those days (now < W) to the daily rows
 *   itself. Events of days < the old W were added to the daily rows by their
 *   batch, and the job does not touch those days. Events of today or later
 *   stay hourly until the job summarises their day.
 * - Several accounting instances may run the job: the second to get the lock
 *   reads the W the first wrote (a fresh snapshot after the lock) and finds
 *   nothing to do. The watermark never moves back, so an instance whose clock
 *   is behind does nothing either.
 *
 * The price: batches wait while the job runs (summing a day is one aggregate
 * over that day's hourly rows), once a day plus whatever was missed while no
 * instance ran (3-7 s for a day of 10 M events a month, 357,000 hourly rows,
 * bench/README.md). So a transaction summarises one day, and a catch-up lets
 * batches through between days; only a stretch of days without any usage
 * goes in one step. The common call (nothing to do) reads the watermark row
 * without any lock. */
#include "accounting.h"

#include <stdio.h>
#include <time.h>

#include "ias/log.h"
#include "ias/pg.h"

/* Transactions per call (about 19 years of days): a longer catch-up goes on
 * at the next interval. */
#define MAX_TX_PER_RUN 1000

/* Whether the watermark is behind today ($1). No lock: the job proper
 * re-reads it under the lock. */
static const char PENDING_SQL[] =
    "SELECT 1 FROM usage_rollups_daily_watermark WHERE day < $1::date";

static const char LOCK_SQL[] = "SELECT pg_advisory_xact_lock(" ACCT_DAILY_LOCK_KEY ")";

/* Under the lock: the days to summarise, [W, end): the day W, or when W has
 * no hourly rows, every day up to the next one that has (or today). */
static const char RANGE_SQL[] =
    "SELECT w.day::text, least($1::date, CASE WHEN EXISTS (SELECT 1 FROM usage_rollups_hourly h"
    "   WHERE h.hour >= (w.day::timestamp AT TIME ZONE 'UTC')"
    "   AND h.hour < ((w.day + 1)::timestamp AT TIME ZONE 'UTC'))"
    "  THEN w.day + 1"
    "  ELSE greatest(w.day + 1, coalesce((SELECT (min(h.hour) AT TIME ZONE 'UTC')::date"
    "   FROM usage_rollups_hourly h WHERE h.hour >= (w.day::timestamp AT TIME ZONE 'UTC')),"
    "   $1::date)) END)::text"
    " FROM usage_rollups_daily_watermark w WHERE w.day < $1::date";

/* $1 = W, $2 = the end (dates): the UTC hours of those days. */
#define HOURS_OF_DAYS                                                                              \
    " WHERE hour >= ($1::date::timestamp AT TIME ZONE 'UTC')"                                      \
    " AND hour < ($2::date::timestamp AT TIME ZONE 'UTC')"

/* Replaces the daily rows of [$1, $2): none unless a 0011 consumer ran on. */
static const char DELETE_MODEL_SQL[] =
    "DELETE FROM usage_rollups_daily_model WHERE day >= $1::date AND day < $2::date";
static const char DELETE_USER_KEY_SQL[] =
    "DELETE FROM usage_rollups_daily_user_key WHERE day >= $1::date AND day < $2::date";

/* As migration 0011's backfill, for [$1, $2), written in day order as the
 * BRIN indexes on day expect. */
static const char INSERT_MODEL_SQL[] =
    "INSERT INTO usage_rollups_daily_model (org_id, day, model, requests, errors, prompt_tokens,"
    "  completion_tokens, cost)"
    " SELECT org_id, (hour AT TIME ZONE 'UTC')::date, model, sum(requests), sum(errors),"
    "  sum(prompt_tokens), sum(completion_tokens), sum(cost)"
    " FROM usage_rollups_hourly" HOURS_OF_DAYS " GROUP BY 1, 2, 3 ORDER BY 2, 1, 3";
static const char INSERT_USER_KEY_SQL[] =
    "INSERT INTO usage_rollups_daily_user_key (org_id, day, user_id, api_key_id, requests, errors,"
    "  prompt_tokens, completion_tokens, cost)"
    " SELECT org_id, (hour AT TIME ZONE 'UTC')::date, user_id, api_key_id, sum(requests),"
    "  sum(errors), sum(prompt_tokens), sum(completion_tokens), sum(cost)"
    " FROM usage_rollups_hourly" HOURS_OF_DAYS " GROUP BY 1, 2, 3, 4 ORDER BY 2, 1, 3, 4";

static const char ADVANCE_SQL[] =
    "UPDATE usage_rollups_daily_watermark SET day = $1::date, updated_at = now()";

typedef struct daily_arg {
    const char *today;
    bool done;                     /* nothing (left) to summarise */
    char from[16], to[16];         /* the days summarised: [from, to) */
    long long model_rows, uk_rows; /* daily rows written */
} daily_arg;

static int exec_affected(ias_pg *pg, const char *sql, const char *const *params,
                         long long *affected)
{
    PGresult *res = NULL;

    if (ias_pg_exec(pg, sql, 2, params, &res) != IAS_OK)
        return IAS_ERR;
    if (affected)
        *affected = ias_pg_affected(res);
    ias_pg_clear(res);
    return IAS_OK;
}

static int daily_tx(ias_pg *pg, void *varg)
{
    daily_arg *a = varg;
    const char *range_params[1] = {a->today};
    const char *days[2] = {a->from, a->to};
    const char *advance[1] = {a->to};
    PGresult *res = NULL;

    a->done = false;
    if (ias_pg_exec(pg, LOCK_SQL, 0, NULL, NULL) != IAS_OK ||
        ias_pg_exec(pg, RANGE_SQL, 1, range_params, &res) != IAS_OK)
        return IAS_ERR;
    if (ias_pg_nrows(res) == 0) {
        ias_pg_clear(res);
        a->done = true; /* another instance got there first */
        return IAS_OK;
    }
    (void)ias_strlcpy(a->from, ias_pg_value(res, 0, 0), sizeof(a->from));
    (void)ias_strlcpy(a->to, ias_pg_value(res, 0, 1), sizeof(a->to));
    ias_pg_clear(res);
    if (exec_affected(pg, DELETE_MODEL_SQL, days, NULL) != IAS_OK ||
        exec_affected(pg, DELETE_USER_KEY_SQL, days, NULL) != IAS_OK ||
        exec_affected(pg, INSERT_MODEL_SQL, days, &a->model_rows) != IAS_OK ||
        exec_affected(pg, INSERT_USER_KEY_SQL, days, &a->uk_rows) != IAS_OK)
        return IAS_ERR;
    return ias_pg_exec(pg, ADVANCE_SQL, 1, advance, NULL);
}

int acct_daily_rollup(ias_pg *pg, int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    char today[16];
    const char *params[1] = {today};

    if (gmtime_r(&t, &tm) == NULL)
        return IAS_ERR;
    snprintf(today, sizeof(today), "%04d-%02d-%02d", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon % 12) + 1, tm.tm_mday % 32);
    for (int i = 0; i < MAX_TX_PER_RUN; i++) {
        daily_arg a = {.today = today};
        PGresult *res = NULL;
        uint64_t t0;
        bool pending;

        if (ias_pg_exec(pg, PENDING_SQL, 1, params, &res) != IAS_OK) {
            ias_warn(NULL, "daily rollups: %s", ias_pg_last_message(pg));
            return IAS_ERR;
        }
        pending = ias_pg_nrows(res) > 0;
        ias_pg_clear(res);
        if (!pending)
            return IAS_OK;
        t0 = ias_now_ms();
        if (ias_pg_tx(pg, daily_tx, &a, 3) != IAS_OK) {
            ias_warn(NULL, "daily rollups up to %s: %s", today, ias_pg_last_message(pg));
            return IAS_ERR;
        }
        if (a.done)
            return IAS_OK;
        /* The time is about how long ingest waited for the lock. */
        ias_info(NULL,
                 "daily rollups: summarised %s up to %s (%lld model rows, %lld user/key rows) in "
                 "%llu ms",
                 a.from, a.to, a.model_rows, a.uk_rows, (unsigned long long)(ias_now_ms() - t0));
    }
    return IAS_OK;
}
