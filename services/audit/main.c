/* ias-audit: the tamper-evident audit ledger. Config table, context, route
 * table; a consumer thread appends events, a checkpoint thread signs the head,
 * the server library does the rest (listening, workers, /health, /ready,
 * /metrics, drain). */
#include "audit.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/config.h"
#include "ias/http_server.h"
#include "ias/jwt.h"
#include "ias/log.h"
#include "ias/metrics.h"
#include "ias/service.h"

static const ias_cfg_row config_rows[] = {
    IAS_SERVICE_CFG_ROWS("8084"),
    {"IAS_PG_DSN", IAS_CFG_SECRET, NULL, 0, 0, "PostgreSQL connection string"},
    {"IAS_AMQP_URL", IAS_CFG_URL, NULL, 0, 0, "RabbitMQ URL (amqp://user:pass@host:port/vhost)"},
    {"IAS_JWT_SECRET", IAS_CFG_SECRET, NULL, 0, 0, "HS256 secret of access tokens (>= 32 bytes)"},
    {"IAS_AUDIT_SIGNING_KEY", IAS_CFG_SECRET, NULL, 0, 0,
     "Ed25519 checkpoint key: PEM private key or base64 of a 32-byte seed"},
    {"IAS_CHECKPOINT_EVERY", IAS_CFG_INT, "1000", 1, 100000000,
     "sign a checkpoint after this many new entries"},
    {"IAS_CHECKPOINT_INTERVAL", IAS_CFG_MS, "5m", 1000, 86400000,
     "... or when the oldest unsigned entry is this old"},
};

static const ias_route routes[] = {
    {"GET", "/api/v1/audit", audit_h_list},
    {"GET", "/api/v1/audit/verify", audit_h_verify},
    {"GET", "/api/v1/audit/checkpoints", audit_h_checkpoints},
    {"GET", "/api/v1/audit/export", audit_h_export},
};

ias_pg *audit_pg(ias_req *r)
{
    audit_worker *w = ias_worker_data(ias_req_worker(r));
    return w->pg;
}

static int worker_init(ias_worker *wk, void *arg)
{
    audit_ctx *ctx = arg;
    audit_worker *w = ias_xcalloc(1, sizeof(*w));

    w->pg = ias_pg_new(ctx->pg_dsn, 5000);
    if (!w->pg) {
        free(w);
        return IAS_ERR;
    }
    ias_pg_set_application_name(w->pg, "ias-audit");
    /* verify and export walk long ranges: allow them a minute */
    if (ias_pg_set_statement_timeout(w->pg, 60000) != IAS_OK)
        ias_warn(NULL, "cannot set the statement timeout");
    ias_worker_set_data(wk, w);
    return IAS_OK;
}

static void worker_fini(ias_worker *wk, void *arg)
{
    audit_worker *w = ias_worker_data(wk);

    IAS_UNUSED(arg);
    if (!w)
        return;
    ias_pg_free(w->pg);
    free(w);
    ias_worker_set_data(wk, NULL);
}

/* PostgreSQL is the hard dependency; cached for a second. */
static int ready(void *arg, ias_worker *wk, char *why, size_t whylen)
{
    audit_worker *w = ias_worker_data(wk);

    IAS_UNUSED(arg);
    return ias_pg_ready_cached(w->pg, &w->ready, 1000, why, whylen);
}

static int load_ctx(const ias_config *cfg, audit_ctx *ctx)
{
    char why[200];
    int rc = IAS_OK;

    memset(ctx, 0, sizeof(*ctx));
    ctx->pg_dsn = ias_config_str(cfg, "IAS_PG_DSN");
    ctx->amqp_url = ias_config_str(cfg, "IAS_AMQP_URL");
    ctx->jwt_secret = ias_config_str(cfg, "IAS_JWT_SECRET");
    ctx->jwt_secret_len = strlen(ctx->jwt_secret);
    if (ctx->jwt_secret_len < IAS_JWT_MIN_SECRET || ctx->jwt_secret_len > IAS_JWT_MAX_SECRET) {
        fprintf(stderr, "  IAS_JWT_SECRET: want %d to %d bytes\n", IAS_JWT_MIN_SECRET,
                IAS_JWT_MAX_SECRET);
        rc = IAS_ERR;
    }
    if (audit_key_load(ctx, ias_config_str(cfg, "IAS_AUDIT_SIGNING_KEY"), why, sizeof(why)) !=
        IAS_OK) {
        fprintf(stderr, "  IAS_AUDIT_SIGNING_KEY: %s\n", why);
        rc = IAS_ERR;
    }
    ctx->checkpoint_every = ias_config_int(cfg, "IAS_CHECKPOINT_EVERY");
    ctx->checkpoint_interval_ms = ias_config_ms(cfg, "IAS_CHECKPOINT_INTERVAL");
    return rc;
}

int main(void)
{
    ias_config *cfg = ias_config_load_or_exit("ias-audit", config_rows, IAS_ARRAY_LEN(config_rows));
    ias_server_opts opts = {0};
    ias_server *srv;
    audit_ctx ctx;
    pthread_t consumer, checkpointer;
    sigset_t sigs;
    int rc;

    if (load_ctx(cfg, &ctx) != IAS_OK || ias_service_init(cfg, "audit", &opts) != IAS_OK) {
        fprintf(stderr, "ias-audit: invalid configuration (above)\n");
        audit_key_free(&ctx);
        ias_config_free(cfg);
        return 2;
    }
    pthread_mutex_init(&ctx.mu, NULL);
    pthread_cond_init(&ctx.cond, NULL);
    atomic_init(&ctx.stop, false);
    ctx.m_appended = ias_metrics_counter("audit_entries_appended_total",
                                         "Entries appended to the audit chain", NULL);
    ctx.m_duplicate =
        ias_metrics_counter("audit_events_duplicate_total",
                            "Redelivered audit events found already in the ledger", NULL);
    ctx.m_rejected = ias_metrics_counter("audit_events_rejected_total",
                                         "Malformed audit events dead-lettered", NULL);
    ctx.m_checkpoints =
        ias_metrics_counter("audit_checkpoints_total", "Signed checkpoints written", NULL);
    ctx.m_head_seq = ias_metrics_gauge("audit_head_seq", "seq of the last appended entry", NULL);

    opts.routes = routes;
    opts.nroutes = IAS_ARRAY_LEN(routes);
    opts.ctx = &ctx;
    opts.ready = ready;
    opts.worker_init = worker_init;
    opts.worker_fini = worker_fini;
    opts.handle_signals = true;
    srv = ias_server_new(&opts);
    if (!srv) {
        ias_error(NULL, "cannot create the server");
        audit_key_free(&ctx);
        ias_config_free(cfg);
        return 1;
    }
    /* Our threads must never take SIGTERM/SIGINT (the server drains on them):
     * they inherit this mask, which ias_server_run sets up the same way. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (pthread_create(&consumer, NULL, audit_consumer_main, &ctx) != 0 ||
        pthread_create(&checkpointer, NULL, audit_checkpoint_main, &ctx) != 0)
        ias_die("cannot start the audit threads");
    ias_info(NULL, "audit ledger on %s:%d, checkpoint key %s", opts.bind_addr, opts.port,
             ctx.key_id);
    rc = ias_server_run(srv);

    atomic_store(&ctx.stop, true);
    pthread_mutex_lock(&ctx.mu);
    pthread_cond_broadcast(&ctx.cond);
    pthread_mutex_unlock(&ctx.mu);
    pthread_join(consumer, NULL);
    pthread_join(checkpointer, NULL);
    ias_server_free(srv);
    pthread_cond_destroy(&ctx.cond);
    pthread_mutex_destroy(&ctx.mu);
    audit_key_free(&ctx);
    ias_config_free(cfg);
    return rc == IAS_OK ? 0 : 1;
}
