/* ias-accounting: usage of record (usage.recorded.v1 -> PostgreSQL), hourly
 * rollups with cost, analytics API, budget counters of record in Redis and
 * budget alerts. See docs/architecture/accounting.md. */
#ifndef IAS_ACCOUNTING_H
#define IAS_ACCOUNTING_H

#include <pthread.h>
#include <stdatomic.h>

#include "ias/common.h"
#include "ias/http_server.h"
#include "ias/metrics.h"

typedef struct ias_pg ias_pg;

#define ACCT_PROBLEM_BASE "https://ias.dev/problems/"
#define ACCT_MAX_BATCH 1000
/* Most consumer threads on the usage queue. */
#define ACCT_MAX_CONSUMERS 8
#define ACCT_UUID_LEN 36
/* The advisory lock (one bigint key, "iasdaily") between the batch
 * transactions (shared) and the daily rollup job (exclusive): daily.c. */
#define ACCT_DAILY_LOCK_KEY "7593477321691589753"

typedef struct acct_ctx {
    /* configuration (read-only after start) */
    const char *pg_dsn;
    const char *redis_url;
    const char *amqp_url;
    const char *queue;
    const void *jwt_secret;
    size_t jwt_secret_len;
    int prefetch;
    int batch_size;
    int consumers; /* consumer threads (1..ACCT_MAX_CONSUMERS) */
    int64_t drift_interval_ms;
    int64_t partition_interval_ms;
    int64_t dedup_retention_ms;
    int64_t daily_interval_ms; /* how often closed days are summarised */
    /* Fake clock for tests: when fake_base_ms > 0 the wall clock is
     * fake_base_ms + time elapsed since start. */
    int64_t fake_base_ms;
    uint64_t start_mono_ms;

    /* threads */
    atomic_bool stop;
    pthread_t consumer_threads[ACCT_MAX_CONSUMERS], maint_thread;
    int consumers_started;
    bool maint_started;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;

    /* metrics */
    ias_counter *m_events;     /* new events stored */
    ias_counter *m_duplicates; /* redelivered events that changed nothing */
    ias_counter *m_poison;     /* events dead-lettered as invalid */
    ias_counter *m_alerts;     /* budget alerts recorded */
    ias_counter *m_drift;      /* Redis counters corrected */
    ias_histogram *m_batch;    /* events per transaction */
    ias_gauge *m_lag_ms;       /* received_at - occurred_at of the newest batch */
} acct_ctx;

/* The service's wall clock (ms since epoch), honouring IAS_FAKE_NOW. */
int64_t acct_now_ms(const acct_ctx *ctx);
/* Parses "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" (or a bare date) into ms since epoch. */
int acct_parse_iso(const char *s, int64_t *out_ms) IAS_MUSTCHECK;
/* Lower-case canonical UUID text. */
bool acct_is_uuid(const char *s);

/* consumer.c: the ias.usage consumer thread. */
int acct_consumer_start(acct_ctx *ctx) IAS_MUSTCHECK;
/* Validates one event body against usage.recorded.v1; on success appends it as
 * a JSON object to arr (the batch's column arrays are built from those). why
 * gets the first problem. */
int acct_event_parse(const void *body, size_t len, cJSON *arr, char *why,
                     size_t whylen) IAS_MUSTCHECK;

/* partitions.c */
int acct_partitions_ensure(ias_pg *pg, int64_t now_ms, int months) IAS_MUSTCHECK;
/* Deletes processed_events ids older than retention_ms. */
int acct_processed_prune(ias_pg *pg, int64_t retention_ms) IAS_MUSTCHECK;

/* daily.c: sums the closed UTC days before now_ms's day that are not yet
 * summarised from usage_rollups_hourly into the daily rollups and moves the
 * watermark (migration 0012). Safe with several accounting instances. */
int acct_daily_rollup(ias_pg *pg, int64_t now_ms) IAS_MUSTCHECK;

/* budgets.c: Redis counters of record (rebuild on start, periodic drift check)
 * on the maintenance thread, which also keeps partitions ahead and runs the
 * daily rollup job. */
int acct_maint_start(acct_ctx *ctx) IAS_MUSTCHECK;
void acct_threads_stop(acct_ctx *ctx);

/* analytics.c: /api/v1/usage handlers. */
void acct_handle_summary(ias_req *r, void *vctx);
void acct_handle_timeseries(ias_req *r, void *vctx);
void acct_handle_events(ias_req *r, void *vctx);
void acct_handle_alerts(ias_req *r, void *vctx);

/* The worker's PostgreSQL connection (made in worker_init). */
ias_pg *acct_worker_pg(ias_req *r);

#endif
