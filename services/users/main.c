/* ias-users: config table, context, route table and per-worker wiring; the
 * handlers live in one file per group (auth.c, orgs.c, keys.c, ...). */
#include "users.h"

#include "ias/config.h"
#include "ias/jwt.h"
#include "ias/log.h"
#include "ias/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ias_cfg_row config_rows[] = {
    IAS_SERVICE_CFG_ROWS("8085"),
    {"IAS_PG_DSN", IAS_CFG_SECRET, NULL, 0, 0, "PostgreSQL connection string"},
    {"IAS_REDIS_URL", IAS_CFG_URL, "redis://127.0.0.1:6379/0", 0, 0,
     "Redis (login rate limits, key cache invalidation)"},
    {"IAS_AMQP_URL", IAS_CFG_SECRET, "amqp://guest:guest@127.0.0.1:5672/%2f", 0, 0,
     "RabbitMQ, for the outbox relay"},
    {"IAS_JWT_SECRET", IAS_CFG_SECRET, NULL, 0, 0, "HS256 secret for access tokens (>= 32 bytes)"},
    {"IAS_BOOTSTRAP_TOKEN", IAS_CFG_SECRET, "", 0, 0,
     "when set, POST /api/v1/bootstrap/super-admin needs it in X-Bootstrap-Token"},
    {"IAS_INTERNAL_TOKEN", IAS_CFG_SECRET, "", 0, 0,
     "when set, /internal/* needs it in X-Ias-Internal-Token"},
    {"IAS_LOGIN_MAX_FAILURES", IAS_CFG_INT, "5", 1, 1000,
     "failed logins per account within the window before 429"},
    {"IAS_LOGIN_MAX_FAILURES_ADDR", IAS_CFG_INT, "50", 1, 100000,
     "failed logins per source address within the window before 429"},
    {"IAS_LOGIN_WINDOW", IAS_CFG_MS, "15m", 1000, 86400000, "failed-login counting window"},
    {"IAS_RBAC_CACHE_TTL", IAS_CFG_MS, "5s", 0, 3600000, "role permission cache per worker"},
    {"IAS_OUTBOX_BACKOFF_MAX", IAS_CFG_MS, "2s", 100, 60000,
     "longest pause between outbox relay attempts while RabbitMQ is away"},
};

static const ias_route routes[] = {
    {"POST", "/api/v1/auth/login", users_h_login},
    {"POST", "/api/v1/auth/refresh", users_h_refresh},
    {"POST", "/api/v1/auth/logout", users_h_logout},
    {"POST", "/api/v1/bootstrap/super-admin", users_h_bootstrap},
    {"POST", "/api/v1/orgs", users_h_orgs_create},
    {"GET", "/api/v1/orgs", users_h_orgs_list},
    {"GET", "/api/v1/orgs/{id}", users_h_orgs_get},
    {"PATCH", "/api/v1/orgs/{id}", users_h_orgs_update},
    {"DELETE", "/api/v1/orgs/{id}", users_h_orgs_delete},
    {"POST", "/api/v1/orgs/{id}/users", users_h_users_create},
    {"GET", "/api/v1/orgs/{id}/users", users_h_users_list},
    {"GET", "/api/v1/orgs/{id}/budget", users_h_budget_get},
    {"PUT", "/api/v1/orgs/{id}/budget", users_h_budget_put},
    {"DELETE", "/api/v1/orgs/{id}/budget", users_h_budget_delete},
    {"GET", "/api/v1/orgs/{id}/models", users_h_allowed_get},
    {"PUT", "/api/v1/orgs/{id}/models", users_h_allowed_put},
    {"GET", "/api/v1/users/{id}", users_h_users_get},
    {"PATCH", "/api/v1/users/{id}", users_h_users_update},
    {"DELETE", "/api/v1/users/{id}", users_h_users_delete},
    {"POST", "/api/v1/users/{id}/password", users_h_users_password},
    {"POST", "/api/v1/keys", users_h_keys_create},
    {"GET", "/api/v1/keys", users_h_keys_list},
    {"GET", "/api/v1/keys/{id}", users_h_keys_get},
    {"DELETE", "/api/v1/keys/{id}", users_h_keys_revoke},
    {"POST", "/api/v1/models", users_h_models_create},
    {"GET", "/api/v1/models", users_h_models_list},
    {"GET", "/api/v1/models/{id}", users_h_models_get},
    {"PATCH", "/api/v1/models/{id}", users_h_models_update},
    {"DELETE", "/api/v1/models/{id}", users_h_models_delete},
    {"GET", "/internal/keys/{sha256}", users_h_internal_key},
    {"GET", "/internal/models", users_h_internal_models},
};

users_worker *users_worker_of(ias_req *r)
{
    return ias_worker_data(ias_req_worker(r));
}

static int worker_init(ias_worker *wk, void *arg)
{
    users_ctx *ctx = arg;
    users_worker *w = ias_xcalloc(1, sizeof(*w));

    w->pg = ias_pg_new(ctx->pg_dsn, 5000);
    w->redis = ias_redis_sync_new(ctx->redis_url, 1000);
    if (w->pg == NULL || w->redis == NULL) {
        ias_pg_free(w->pg);
        ias_redis_sync_free(w->redis);
        free(w);
        return IAS_ERR;
    }
    ias_pg_set_application_name(w->pg, "ias-users");
    if (ias_pg_set_statement_timeout(w->pg, 10000) != IAS_OK)
        ias_warn(NULL, "cannot set the statement timeout");
    ias_worker_set_data(wk, w);
    return IAS_OK;
}

static void worker_fini(ias_worker *wk, void *arg)
{
    users_worker *w = ias_worker_data(wk);

    IAS_UNUSED(arg);
    if (w == NULL)
        return;
    ias_pg_free(w->pg);
    ias_redis_sync_free(w->redis);
    free(w->roles);
    free(w);
    ias_worker_set_data(wk, NULL);
}

/* PostgreSQL is the one hard dependency; the answer is cached for a second so
 * a probe storm costs no queries. */
static int ready(void *arg, ias_worker *wk, char *why, size_t whylen)
{
    users_worker *w = ias_worker_data(wk);

    IAS_UNUSED(arg);
    return ias_pg_ready_cached(w->pg, &w->ready, 1000, why, whylen);
}

static int load_ctx(const ias_config *cfg, users_ctx *ctx)
{
    int rc = IAS_OK;

    memset(ctx, 0, sizeof(*ctx));
    ctx->pg_dsn = ias_config_str(cfg, "IAS_PG_DSN");
    ctx->redis_url = ias_config_str(cfg, "IAS_REDIS_URL");
    ctx->amqp_url = ias_config_str(cfg, "IAS_AMQP_URL");
    ctx->jwt_secret = ias_config_str(cfg, "IAS_JWT_SECRET");
    ctx->jwt_secret_len = strlen(ctx->jwt_secret);
    ctx->bootstrap_token = ias_config_str(cfg, "IAS_BOOTSTRAP_TOKEN");
    ctx->internal_token = ias_config_str(cfg, "IAS_INTERNAL_TOKEN");
    ctx->login_max_failures = (int)ias_config_int(cfg, "IAS_LOGIN_MAX_FAILURES");
    ctx->login_max_failures_addr = (int)ias_config_int(cfg, "IAS_LOGIN_MAX_FAILURES_ADDR");
    ctx->login_window_s = (int)(ias_config_ms(cfg, "IAS_LOGIN_WINDOW") / 1000);
    ctx->rbac_ttl_ms = (int)ias_config_ms(cfg, "IAS_RBAC_CACHE_TTL");
    ctx->relay_backoff_max_ms = (int)ias_config_ms(cfg, "IAS_OUTBOX_BACKOFF_MAX");
    if (ctx->jwt_secret_len < IAS_JWT_MIN_SECRET || ctx->jwt_secret_len > IAS_JWT_MAX_SECRET) {
        fprintf(stderr, "  IAS_JWT_SECRET: want %d..%d bytes\n", IAS_JWT_MIN_SECRET,
                IAS_JWT_MAX_SECRET);
        rc = IAS_ERR;
    }
    if (strstr(ctx->amqp_url, "://") == NULL) {
        fprintf(stderr, "  IAS_AMQP_URL: want amqp://...\n");
        rc = IAS_ERR;
    }
    return rc;
}

int main(void)
{
    ias_config *cfg = ias_config_load_or_exit("ias-users", config_rows, IAS_ARRAY_LEN(config_rows));
    ias_server_opts opts = {0};
    ias_server *srv;
    users_ctx ctx;
    int rc;

    if (load_ctx(cfg, &ctx) != IAS_OK || ias_service_init(cfg, "users", &opts) != IAS_OK) {
        fprintf(stderr, "ias-users: invalid configuration (above)\n");
        ias_config_free(cfg);
        return 2;
    }
    /* bcrypt at cost 12 holds a worker for ~250 ms: never run with one. */
    if (opts.workers > 0 && opts.workers < 2)
        opts.workers = 2;
    ctx.m_logins_failed =
        ias_metrics_counter("users_logins_failed_total", "Failed login attempts", NULL);
    ctx.m_outbox_sent = ias_metrics_counter("users_outbox_sent_total",
                                            "Outbox events confirmed by the broker", NULL);
    ctx.m_outbox_connected = ias_metrics_gauge("users_outbox_relay_connected",
                                               "1 while the outbox relay has a broker link", NULL);

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
        ias_config_free(cfg);
        return 1;
    }
    if (users_relay_start(&ctx) != IAS_OK) {
        ias_error(NULL, "cannot start the outbox relay");
        ias_server_free(srv);
        ias_config_free(cfg);
        return 1;
    }
    ias_info(NULL, "users listening on %s:%d", opts.bind_addr, opts.port);
    rc = ias_server_run(srv);
    users_relay_stop(&ctx);
    ias_server_free(srv);
    ias_config_free(cfg);
    return rc == IAS_OK ? 0 : 1;
}
