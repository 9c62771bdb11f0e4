/* ias-pdp: policy decision point. Config table, context, route table; the
 * server library does listening, workers, /health, /ready, /metrics, drain. */
#include "pdp.h"

#include "ias/config.h"
#include "ias/log.h"
#include "ias/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ias_cfg_row config_rows[] = {
    IAS_SERVICE_CFG_ROWS("8082"),
    {"IAS_PG_DSN", IAS_CFG_SECRET, NULL, 0, 0, "PostgreSQL DSN (policies, guardrail profiles)"},
    {"IAS_AMQP_URL", IAS_CFG_SECRET, "", 0, 0,
     "RabbitMQ URL: audit and config events, hot reload (empty: none)"},
    {"IAS_JWT_SECRET", IAS_CFG_SECRET, NULL, 0, 0, "HS256 secret of access tokens (>= 32 bytes)"},
    {"IAS_INTERNAL_TOKEN", IAS_CFG_SECRET, "", 0, 0,
     "required X-Ias-Internal-Token on /internal/* (empty: not checked)"},
    {"IAS_GUARDRAIL_HOLDBACK", IAS_CFG_INT, "64", 1, IAS_GR_MAX_HOLDBACK,
     "largest output hold-back window of a guardrail profile, in characters"},
    {"IAS_SPOOL_DIR", IAS_CFG_STR, "./.run/spool/pdp", 0, 0,
     "event spool while RabbitMQ is away (one per process)"},
};

static const ias_route routes[] = {
    {"POST", "/internal/decide", pdp_handle_decide},
    {"GET", "/internal/guardrails/{id}", pdp_handle_internal_guardrail},
    {"GET", "/api/v1/policies", pdp_handle_policies_list},
    {"POST", "/api/v1/policies", pdp_handle_policies_create},
    {"POST", "/api/v1/policies/dry-run", pdp_handle_policies_dry_run},
    {"GET", "/api/v1/policies/{id}", pdp_handle_policies_get},
    {"DELETE", "/api/v1/policies/{id}", pdp_handle_policies_delete},
    {"POST", "/api/v1/policies/{id}/activate", pdp_handle_policies_activate},
    {"GET", "/api/v1/guardrails", pdp_handle_guardrails_list},
    {"POST", "/api/v1/guardrails", pdp_handle_guardrails_create},
    {"GET", "/api/v1/guardrails/{id}", pdp_handle_guardrails_get},
    {"DELETE", "/api/v1/guardrails/{id}", pdp_handle_guardrails_delete},
    {"POST", "/api/v1/guardrails/{id}/activate", pdp_handle_guardrails_activate},
};

static int worker_init(ias_worker *w, void *arg)
{
    pdp_ctx *ctx = arg;
    ias_pg *pg = ias_pg_new(ctx->pg_dsn, 5000);
    ias_pg_set_application_name(pg, "ias-pdp");
    ias_worker_set_data(w, pg);
    return IAS_OK;
}

static void worker_fini(ias_worker *w, void *arg)
{
    ias_pg_free(ias_worker_data(w));
    ias_worker_set_data(w, NULL);
}

static int ready(void *arg, ias_worker *w, char *why, size_t whylen)
{
    pdp_ctx *ctx = arg;
    pdp_snapshot *s = pdp_snapshot_get(ctx);
    if (s == NULL) {
        /* Try again here: the database may have been down at start. */
        if (pdp_reload(ctx, ias_worker_data(w)) != IAS_OK) {
            snprintf(why, whylen, "no policy snapshot (database unreachable)");
            return IAS_ERR;
        }
        return IAS_OK;
    }
    pdp_snapshot_put(s);
    if (ias_pg_ping(ias_worker_data(w)) != IAS_OK) {
        snprintf(why, whylen, "postgres unreachable");
        return IAS_ERR;
    }
    return IAS_OK;
}

static int load_ctx(const ias_config *cfg, pdp_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->pg_dsn = ias_config_str(cfg, "IAS_PG_DSN");
    ctx->amqp_url = ias_config_str(cfg, "IAS_AMQP_URL");
    ctx->internal_token = ias_config_str(cfg, "IAS_INTERNAL_TOKEN");
    ctx->jwt_secret = ias_config_str(cfg, "IAS_JWT_SECRET");
    ctx->jwt_secret_len = strlen(ctx->jwt_secret);
    ctx->holdback = (size_t)ias_config_int(cfg, "IAS_GUARDRAIL_HOLDBACK");
    ctx->spool_dir = ias_config_str(cfg, "IAS_SPOOL_DIR");
    if (ctx->jwt_secret_len < IAS_JWT_MIN_SECRET || ctx->jwt_secret_len > IAS_JWT_MAX_SECRET) {
        fprintf(stderr, "  IAS_JWT_SECRET: want %d..%d bytes\n", IAS_JWT_MIN_SECRET,
                IAS_JWT_MAX_SECRET);
        return IAS_ERR;
    }
    if (ctx->amqp_url[0] != '\0' && strstr(ctx->amqp_url, "://") == NULL) {
        fprintf(stderr, "  IAS_AMQP_URL: want amqp://user:pass@host:port/vhost\n");
        return IAS_ERR;
    }
    pthread_mutex_init(&ctx->snap_mu, NULL);
    pthread_mutex_init(&ctx->reload_mu, NULL);
    ctx->decisions_allow =
        ias_metrics_counter("pdp_decisions_total", "Decisions made", "decision=\"allow\"");
    ctx->decisions_deny =
        ias_metrics_counter("pdp_decisions_total", "Decisions made", "decision=\"deny\"");
    ctx->reloads = ias_metrics_counter("pdp_reloads_total", "Snapshots loaded", NULL);
    ctx->reload_failures =
        ias_metrics_counter("pdp_reload_failures_total", "Snapshot loads that failed", NULL);
    static const double bounds[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.0002,
                                    0.0005,  0.001,    0.005,   0.05};
    ctx->decide_seconds = ias_metrics_histogram(
        "pdp_decide_seconds", "Time to evaluate a decide request (single or batch)", NULL, bounds,
        IAS_ARRAY_LEN(bounds));
    return IAS_OK;
}

int main(void)
{
    ias_config *cfg = ias_config_load_or_exit("ias-pdp", config_rows, IAS_ARRAY_LEN(config_rows));
    ias_server_opts opts = {0};
    ias_server *srv;
    pdp_ctx ctx;
    ias_pg *pg;
    int rc;

    if (load_ctx(cfg, &ctx) != IAS_OK || ias_service_init(cfg, "pdp", &opts) != IAS_OK) {
        fprintf(stderr, "ias-pdp: invalid configuration (above)\n");
        ias_config_free(cfg);
        return 2;
    }
    pg = ias_pg_new(ctx.pg_dsn, 5000);
    ias_pg_set_application_name(pg, "ias-pdp");
    if (pdp_reload(&ctx, pg) != IAS_OK)
        ias_warn(NULL, "initial policy load failed; /ready stays 503 until it succeeds");
    ias_pg_free(pg);

    if (ctx.amqp_url[0] != '\0') {
        ias_publisher_opts po = {.url = ctx.amqp_url, .spool_dir = ctx.spool_dir, .name = "pdp"};
        ctx.pub = ias_publisher_new(&po);
        if (ctx.pub == NULL) {
            ias_error(NULL, "cannot start the event publisher (spool %s)", ctx.spool_dir);
            ias_config_free(cfg);
            return 1;
        }
        if (pdp_consumer_start(&ctx) != IAS_OK) {
            ias_error(NULL, "cannot start the config consumer thread");
            ias_publisher_free(ctx.pub);
            ias_config_free(cfg);
            return 1;
        }
    } else {
        ias_warn(NULL, "IAS_AMQP_URL is empty: no audit/config events, no hot reload");
    }

    opts.routes = routes;
    opts.nroutes = IAS_ARRAY_LEN(routes);
    opts.ctx = &ctx;
    opts.ready = ready;
    opts.worker_init = worker_init;
    opts.worker_fini = worker_fini;
    srv = ias_server_new(&opts);
    if (srv == NULL) {
        ias_error(NULL, "cannot create the server");
        rc = IAS_ERR;
    } else {
        ias_info(NULL, "pdp on %s:%d (hold-back %zu)", opts.bind_addr, opts.port, ctx.holdback);
        rc = ias_server_run(srv);
        ias_server_free(srv);
    }
    pdp_consumer_stop(&ctx);
    ias_publisher_free(ctx.pub);
    pdp_snapshot_put(ctx.snap);
    pthread_mutex_destroy(&ctx.snap_mu);
    pthread_mutex_destroy(&ctx.reload_mu);
    ias_config_free(cfg);
    return rc == IAS_OK ? 0 : 1;
}
