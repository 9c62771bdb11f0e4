/* ias-accounting: config table, context, route table and threads. The server
 * library does listening, workers, /health, /ready, /metrics and drain; the
 * consumer thread (consumer.c) and the maintenance thread (budgets.c, with
 * partitions.c and daily.c) run beside it. */
#include "accounting.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ias/config.h"
#include "ias/jwt.h"
#include "ias/log.h"
#include "ias/pg.h"
#include "ias/service.h"

static const ias_cfg_row config_rows[] = {
    IAS_SERVICE_CFG_ROWS("8083"),
    {"IAS_PG_DSN", IAS_CFG_SECRET, NULL, 0, 0, "PostgreSQL connection string"},
    {"IAS_REDIS_URL", IAS_CFG_URL, NULL, 0, 0, "Redis URL (budget counters)"},
    {"IAS_AMQP_URL", IAS_CFG_URL, NULL, 0, 0, "RabbitMQ URL"},
    {"IAS_JWT_SECRET", IAS_CFG_SECRET, NULL, 0, 0, "HS256 secret of access tokens (>= 32 bytes)"},
    {"IAS_USAGE_QUEUE", IAS_CFG_STR, "ias.usage", 0, 0, "queue of usage.recorded events"},
    {"IAS_CONSUME", IAS_CFG_BOOL, "true", 0, 0,
     "run the usage consumer (false: analytics API and budget checks only)"},
    {"IAS_CONSUMER_PREFETCH", IAS_CFG_INT, "256", 1, 65535,
     "unacked deliveries (messages of up to 256 events) in flight, per consumer thread"},
    {"IAS_BATCH_SIZE", IAS_CFG_INT, "1000", 1, ACCT_MAX_BATCH,
     "events applied per transaction (unpacked events: at most the prefetch arrive at once)"},
    {"IAS_CONSUMER_THREADS", IAS_CFG_INT, "2", 1, ACCT_MAX_CONSUMERS,
     "consumer threads on the usage queue, each with its own connections, so one batch "
     "is received and applied while another commits"},
    {"IAS_DRIFT_CHECK_INTERVAL", IAS_CFG_MS, "60s", 200, 86400000,
     "how often Redis budget counters are checked against PostgreSQL"},
    {"IAS_DAILY_ROLLUP_INTERVAL", IAS_CFG_MS, "60s", 200, 86400000,
     "how often closed UTC days are summed from the hourly into the daily usage rollups"},
    {"IAS_PARTITION_CHECK_INTERVAL", IAS_CFG_MS, "24h", 1000, 86400000LL * 7,
     "how often usage_events partitions are created ahead"},
    {"IAS_DEDUP_RETENTION", IAS_CFG_MS, "840h", 3600000, 3650LL * 86400000,
     "how long processed event ids are kept (longer than any spool replay)"},
    {"IAS_FAKE_NOW", IAS_CFG_STR, "", 0, 0,
     "tests only: ISO 8601 UTC time the service clock starts at"},
};

static const ias_route routes[] = {
    {"GET", "/api/v1/usage/summary", acct_handle_summary},
    {"GET", "/api/v1/usage/timeseries", acct_handle_timeseries},
    {"GET", "/api/v1/usage/events", acct_handle_events},
    {"GET", "/api/v1/usage/alerts", acct_handle_alerts},
};

int64_t acct_now_ms(const acct_ctx *ctx)
{
    if (ctx->fake_base_ms > 0)
        return ctx->fake_base_ms + (int64_t)(ias_now_ms() - ctx->start_mono_ms);
    return ias_wall_ms();
}

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int acct_parse_iso(const char *s, int64_t *out_ms)
{
    size_t n = strlen(s);
    struct tm tm = {0}, chk;
    int frac_ms = 0, want_mday, want_mon;
    time_t t;

    if (n < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2))
        return IAS_ERR;
    tm.tm_year = num(s, 4) - 1900;
    tm.tm_mon = num(s + 5, 2) - 1;
    tm.tm_mday = num(s + 8, 2);
    if (n > 10) {
        const char *p = s + 19;
        if (n < 20 || s[10] != 'T' || !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) ||
            s[16] != ':' || !digits(s + 17, 2))
            return IAS_ERR;
        tm.tm_hour = num(s + 11, 2);
        tm.tm_min = num(s + 14, 2);
        tm.tm_sec = num(s + 17, 2);
        if (*p == '.') {
            int k = 0, scale = 100;
            for (p++; *p >= '0' && *p <= '9'; p++, k++) {
                frac_ms += (*p - '0') * scale;
                scale /= 10;
            }
            if (k < 1 || k > 6)
                return IAS_ERR;
        }
        if (p[0] != 'Z' || p[1] != '\0')
            return IAS_ERR;
    }
    if (tm.tm_year < 0 || tm.tm_year > 8099 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
        return IAS_ERR;
    want_mday = tm.tm_mday;
    want_mon = tm.tm_mon;
    t = timegm(&tm); /* normalises tm in place */
    /* Out-of-calendar dates (02-30) come back as another day: refuse them. */
    if (t == (time_t)-1 || gmtime_r(&t, &chk) == NULL || chk.tm_mday != want_mday ||
        chk.tm_mon != want_mon)
        return IAS_ERR;
    *out_ms = (int64_t)t * 1000 + frac_ms;
    return IAS_OK;
}

bool acct_is_uuid(const char *s)
{
    if (s == NULL || strlen(s) != ACCT_UUID_LEN)
        return false;
    for (int i = 0; i < ACCT_UUID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

ias_pg *acct_worker_pg(ias_req *r)
{
    return ias_worker_data(ias_req_worker(r));
}

static int worker_init(ias_worker *w, void *vctx)
{
    acct_ctx *ctx = vctx;
    ias_pg *pg = ias_pg_new(ctx->pg_dsn, 5000);

    if (pg == NULL)
        return IAS_ERR;
    ias_pg_set_application_name(pg, "ias-accounting-api");
    /* Analytics queries are bounded; a runaway one is cut. */
    if (ias_pg_set_statement_timeout(pg, 30000) != IAS_OK) {
        ias_pg_free(pg);
        return IAS_ERR;
    }
    ias_worker_set_data(w, pg);
    return IAS_OK;
}

static void worker_fini(ias_worker *w, void *vctx)
{
    ias_pg_free(ias_worker_data(w));
    ias_worker_set_data(w, NULL);
}

static int ready(void *vctx, ias_worker *w, char *why, size_t whylen)
{
    if (ias_pg_ping(ias_worker_data(w)) != IAS_OK) {
        snprintf(why, whylen, "postgres unreachable");
        return IAS_ERR;
    }
    return IAS_OK;
}

/* Checks what the config table cannot express; prints every problem. */
static int load_ctx(const ias_config *cfg, acct_ctx *ctx)
{
    const char *secret = ias_config_str(cfg, "IAS_JWT_SECRET");
    const char *fake = ias_config_str(cfg, "IAS_FAKE_NOW");
    int rc = IAS_OK;

    memset(ctx, 0, sizeof(*ctx));
    ctx->pg_dsn = ias_config_str(cfg, "IAS_PG_DSN");
    ctx->redis_url = ias_config_str(cfg, "IAS_REDIS_URL");
    ctx->amqp_url = ias_config_str(cfg, "IAS_AMQP_URL");
    ctx->queue = ias_config_str(cfg, "IAS_USAGE_QUEUE");
    ctx->jwt_secret = secret;
    ctx->jwt_secret_len = strlen(secret);
    ctx->prefetch = (int)ias_config_int(cfg, "IAS_CONSUMER_PREFETCH");
    ctx->batch_size = (int)ias_config_int(cfg, "IAS_BATCH_SIZE");
    ctx->consumers = (int)ias_config_int(cfg, "IAS_CONSUMER_THREADS");
    /* No clamp to the prefetch: it counts deliveries and the batch counts
     * events, and a delivery may be a pack of many (the router's). */
    ctx->drift_interval_ms = ias_config_ms(cfg, "IAS_DRIFT_CHECK_INTERVAL");
    ctx->partition_interval_ms = ias_config_ms(cfg, "IAS_PARTITION_CHECK_INTERVAL");
    ctx->daily_interval_ms = ias_config_ms(cfg, "IAS_DAILY_ROLLUP_INTERVAL");
    ctx->dedup_retention_ms = ias_config_ms(cfg, "IAS_DEDUP_RETENTION");
    ctx->start_mono_ms = ias_now_ms();
    if (ctx->jwt_secret_len < IAS_JWT_MIN_SECRET || ctx->jwt_secret_len > IAS_JWT_MAX_SECRET) {
        fprintf(stderr, "  IAS_JWT_SECRET: want %d..%d bytes\n", IAS_JWT_MIN_SECRET,
                IAS_JWT_MAX_SECRET);
        rc = IAS_ERR;
    }
    if (ctx->queue[0] == '\0' || strlen(ctx->queue) > 255) {
        fprintf(stderr, "  IAS_USAGE_QUEUE: want 1..255 bytes\n");
        rc = IAS_ERR;
    }
    if (fake[0] && (acct_parse_iso(fake, &ctx->fake_base_ms) != IAS_OK || ctx->fake_base_ms <= 0)) {
        fprintf(stderr, "  IAS_FAKE_NOW: want an ISO 8601 UTC time like 2027-01-31T23:59:00Z\n");
        rc = IAS_ERR;
    }
    return rc;
}

int main(void)
{
    ias_config *cfg =
        ias_config_load_or_exit("ias-accounting", config_rows, IAS_ARRAY_LEN(config_rows));
    ias_server_opts opts = {0};
    ias_server *srv;
    acct_ctx ctx;
    int rc = 1;

    if (load_ctx(cfg, &ctx) != IAS_OK || ias_service_init(cfg, "accounting", &opts) != IAS_OK) {
        fprintf(stderr, "ias-accounting: invalid configuration (above)\n");
        ias_config_free(cfg);
        return 2;
    }
    pthread_mutex_init(&ctx.maint_mu, NULL);
    pthread_cond_init(&ctx.maint_cv, NULL);
    ctx.m_events = ias_metrics_counter("accounting_events_total",
                                       "Usage events stored (first delivery)", NULL);
    ctx.m_duplicates = ias_metrics_counter("accounting_duplicate_events_total",
                                           "Redelivered usage events that changed nothing", NULL);
    ctx.m_poison = ias_metrics_counter("accounting_poison_events_total",
                                       "Usage events dead-lettered as invalid", NULL);
    ctx.m_alerts =
        ias_metrics_counter("accounting_budget_alerts_total", "Budget alerts recorded", NULL);
    ctx.m_drift = ias_metrics_counter("accounting_budget_drift_corrections_total",
                                      "Redis budget counters raised to the database total", NULL);
    {
        static const double bounds[] = {1, 10, 50, 100, 250, 500, 1000};
        ctx.m_batch = ias_metrics_histogram("accounting_batch_events", "Events per transaction",
                                            NULL, bounds, IAS_ARRAY_LEN(bounds));
    }
    ctx.m_lag_ms = ias_metrics_gauge("accounting_ingest_lag_ms",
                                     "Age of the oldest event in the last stored batch", NULL);
    if (ctx.fake_base_ms > 0)
        ias_warn(NULL, "IAS_FAKE_NOW set: the service clock starts at %s",
                 ias_config_str(cfg, "IAS_FAKE_NOW"));

    opts.routes = routes;
    opts.nroutes = IAS_ARRAY_LEN(routes);
    opts.ctx = &ctx;
    opts.ready = ready;
    opts.worker_init = worker_init;
    opts.worker_fini = worker_fini;
    opts.handle_signals = true;

    srv = ias_server_new(&opts);
    if (srv == NULL) {
        ias_error(NULL, "cannot create the server");
        goto out;
    }
    {
        /* The server takes SIGTERM/SIGINT with sigwait in this thread: our
         * threads must never receive them (the default action would kill us). */
        sigset_t sigs, old;
        int started;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        pthread_sigmask(SIG_BLOCK, &sigs, &old);
        started = acct_maint_start(&ctx) == IAS_OK &&
                  (!ias_config_bool(cfg, "IAS_CONSUME") || acct_consumer_start(&ctx) == IAS_OK);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!started) {
            ias_error(NULL, "cannot start the accounting threads");
            goto out;
        }
    }
    ias_info(NULL, "accounting on %s:%d, consuming %s (%d threads, batch %d, prefetch %d)",
             opts.bind_addr, opts.port, ctx.queue, ctx.consumers, ctx.batch_size, ctx.prefetch);
    rc = ias_server_run(srv) == IAS_OK ? 0 : 1;
out:
    acct_threads_stop(&ctx);
    ias_server_free(srv);
    pthread_cond_destroy(&ctx.maint_cv);
    pthread_mutex_destroy(&ctx.maint_mu);
    ias_config_free(cfg);
    return rc;
}
