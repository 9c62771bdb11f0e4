/* Transactional outbox: audit.recorded.v1 and config.changed.v1 events are
 * inserted in the transaction of the change; a relay thread with its own
 * PostgreSQL and RabbitMQ connections publishes unsent rows in id order with
 * publisher confirms and marks a row sent only after the broker acked it. */
#include "users.h"

#include "ias/amqp.h"
#include "ias/audit_event.h"
#include "ias/crypto.h"
#include "ias/log.h"

#include <amqp.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>

static int insert_event(users_worker *w, const char *event_id, const char *rk, cJSON *payload)
{
    char *text = cJSON_PrintUnformatted(payload);
    const char *v[3] = {event_id, rk, text};
    int rc;

    if (text == NULL)
        ias_die("out of memory");
    rc = users_q(w, NULL,
                 "INSERT INTO outbox (event_id, source, routing_key, payload) "
                 "VALUES ($1, 'users', $2, $3::jsonb)",
                 3, v);
    free(text);
    cJSON_Delete(payload);
    return rc;
}

static void now_iso(char *buf, size_t len)
{
    ias_iso8601_ms(ias_wall_ms(), buf, len);
}

int users_audit(ias_req *r, users_worker *w, const char *actor_id, const char *org_id,
                const char *action, const char *resource_type, const char *resource_id,
                const char *outcome, cJSON *details)
{
    char eid[IAS_UUID_STR_LEN + 1], rk[IAS_AMQP_SHORTSTR_MAX + 1];
    cJSON *p;

    if (ias_amqp_audit_key(rk, sizeof(rk), "users", action) != IAS_OK) {
        cJSON_Delete(details);
        return IAS_ERR;
    }
    p = ias_audit_event_new(&(ias_audit_fields){.service = "users",
                                                .actor_type = actor_id ? "user" : "anonymous",
                                                .actor_id = actor_id,
                                                .org_id = org_id,
                                                .action = action,
                                                .resource_type = resource_type,
                                                .resource_id = resource_id,
                                                .request_id = r ? ias_req_id(r) : NULL,
                                                .outcome = outcome},
                            details, eid);
    return insert_event(w, eid, rk, p);
}

int users_config_changed(users_worker *w, const char *kind, const char *org_id, cJSON *ids)
{
    char eid[IAS_UUID_STR_LEN + 1], ts[32], rk[IAS_AMQP_SHORTSTR_MAX + 1];
    cJSON *p = cJSON_CreateObject();

    ias_uuid_v7(eid);
    now_iso(ts, sizeof(ts));
    if (ias_amqp_config_key(rk, sizeof(rk), kind) != IAS_OK) {
        cJSON_Delete(p);
        cJSON_Delete(ids);
        return IAS_ERR;
    }
    cJSON_AddStringToObject(p, "event_id", eid);
    cJSON_AddStringToObject(p, "occurred_at", ts);
    cJSON_AddStringToObject(p, "kind", kind);
    if (org_id && org_id[0])
        cJSON_AddStringToObject(p, "org_id", org_id);
    else
        cJSON_AddNullToObject(p, "org_id");
    cJSON_AddItemToObject(p, "ids", ids ? ids : cJSON_CreateArray());
    return insert_event(w, eid, rk, p);
}

void users_redis_drop_keys(users_worker *w, PGresult *res, int col)
{
    for (int i = 0; res && i < ias_pg_nrows(res); i++) {
        char key[80];
        const char *argv[2] = {"DEL", key};
        size_t lens[2] = {3, 0};
        redisReply *rep = NULL;

        snprintf(key, sizeof(key), "ias:key:%s", ias_pg_value(res, i, col));
        lens[1] = strlen(key);
        /* Best effort: the config event and the cache TTL cover a miss. */
        if (ias_redis_sync_cmd(w->redis, 2, argv, lens, &rep) != IAS_OK)
            ias_warn(NULL, "redis DEL of a revoked key failed; cache TTL applies");
        if (rep)
            freeReplyObject(rep);
    }
}

/* ---------------------------------------------------------------- relay */

typedef struct relay {
    users_ctx *ctx;
    ias_pg *pg;
    ias_amqp_conn *conn;
    uint64_t next_tag;
    int backoff_ms;
} relay;

static void relay_sleep(relay *rl, int ms)
{
    while (ms > 0 && !atomic_load(&rl->ctx->relay_stop)) {
        int step = ms > 100 ? 100 : ms;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static void relay_drop(relay *rl)
{
    ias_amqp_conn_free(rl->conn);
    rl->conn = NULL;
    ias_gauge_set(rl->ctx->m_outbox_connected, 0);
}

static int relay_connect(relay *rl)
{
    ias_amqp_conn_opts co = {.url = rl->ctx->amqp_url,
                             .heartbeat_s = 30,
                             .rpc_timeout_ms = 5000,
                             .connect_timeout_ms = 3000};
    char err[300];

    if (ias_amqp_connect(&co, &rl->conn, err, sizeof(err)) != IAS_OK) {
        ias_warn(NULL, "outbox relay: %s", err);
        rl->conn = NULL;
        return IAS_ERR;
    }
    amqp_confirm_select(ias_amqp_conn_state(rl->conn), 1);
    if (ias_amqp_conn_check_rpc(rl->conn, "confirm.select") != IAS_OK ||
        ias_amqp_declare_topology(rl->conn) != IAS_OK) {
        relay_drop(rl);
        return IAS_ERR;
    }
    rl->next_tag = 1;
    ias_gauge_set(rl->ctx->m_outbox_connected, 1);
    ias_info(NULL, "outbox relay: connected");
    return IAS_OK;
}

/* Publishes one event and waits for its confirm. IAS_OK only on ack. */
static int relay_publish(relay *rl, const char *rk, const char *event_id, const char *body)
{
    amqp_connection_state_t st = ias_amqp_conn_state(rl->conn);
    ias_amqp_props pr = {.message_id = event_id,
                         .type = strncmp(rk, "audit.", 6) == 0 ? IAS_EVENT_AUDIT_V1
                                                               : IAS_EVENT_CONFIG_V1,
                         .timestamp_ms = ias_wall_ms()};
    uint64_t tag = rl->next_tag, deadline = ias_now_ms() + 5000;

    if (ias_amqp_publish_raw(rl->conn, 1, IAS_AMQP_EXCHANGE, rk, &pr, body, strlen(body)) != IAS_OK)
        return IAS_ERR;
    rl->next_tag++;
    while (ias_amqp_conn_ok(rl->conn)) {
        uint64_t now = ias_now_ms();
        struct timeval tv;
        amqp_frame_t f;
        int rc;

        if (now >= deadline)
            return IAS_ERR;
        tv.tv_sec = (time_t)((deadline - now) / 1000);
        tv.tv_usec = (suseconds_t)((deadline - now) % 1000) * 1000;
        rc = amqp_simple_wait_frame_noblock(st, &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            continue;
        if (ias_amqp_conn_check_status(rl->conn, rc, "waiting for a confirm") != IAS_OK)
            return IAS_ERR;
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (ias_amqp_conn_on_close(rl->conn, f.channel, &f.payload.method))
            return IAS_ERR;
        if (f.channel == 1 && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            if (a->delivery_tag == tag || (a->multiple && a->delivery_tag >= tag)) {
                amqp_maybe_release_buffers(st);
                return IAS_OK;
            }
        } else if (f.channel == 1 && f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            return IAS_ERR;
        }
    }
    return IAS_ERR;
}

/* Answers heartbeats and notices a dead link while idle. */
static void relay_poll_conn(relay *rl)
{
    struct timeval tv = {0, 0};
    amqp_frame_t f;

    while (rl->conn && ias_amqp_conn_ok(rl->conn)) {
        int rc = amqp_simple_wait_frame_noblock(ias_amqp_conn_state(rl->conn), &f, &tv);
        if (rc == AMQP_STATUS_TIMEOUT)
            break;
        if (ias_amqp_conn_check_status(rl->conn, rc, "idle poll") != IAS_OK)
            break;
        if (f.frame_type == AMQP_FRAME_METHOD &&
            ias_amqp_conn_on_close(rl->conn, f.channel, &f.payload.method))
            break;
    }
    if (rl->conn && !ias_amqp_conn_ok(rl->conn))
        relay_drop(rl);
}

/* One batch in one transaction (FOR UPDATE SKIP LOCKED lets several instances
 * share the table). Returns rows sent, or -1 on a publish/database failure. */
static int relay_batch(relay *rl)
{
    PGresult *res = NULL;
    int sent = 0, n;
    bool failed = false;

    if (ias_pg_begin(rl->pg) != IAS_OK)
        return -1;
    if (ias_pg_exec(rl->pg,
                    "SELECT id, event_id, routing_key, payload::text FROM outbox "
                    "WHERE source = 'users' AND sent_at IS NULL AND next_attempt_at <= now() "
                    "ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
                    0, NULL, &res) != IAS_OK) {
        ias_pg_rollback(rl->pg);
        return -1;
    }
    n = ias_pg_nrows(res);
    for (int i = 0; i < n; i++) {
        const char *id = ias_pg_value(res, i, 0);
        if (relay_publish(rl, ias_pg_value(res, i, 2), ias_pg_value(res, i, 1),
                          ias_pg_value(res, i, 3)) != IAS_OK) {
            const char *v[2] = {id, ias_amqp_conn_error(rl->conn)};
            /* Keep the order: later rows wait for this one; the relay backs off. */
            if (ias_pg_exec(rl->pg,
                            "UPDATE outbox SET attempts = attempts + 1, "
                            "last_error = left(nullif($2, ''), 1000) WHERE id = $1",
                            2, v, NULL) != IAS_OK)
                ias_warn(NULL, "outbox relay: cannot record the failure");
            failed = true;
            break;
        }
        const char *v[1] = {id};
        if (ias_pg_exec(rl->pg,
                        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 "
                        "WHERE id = $1",
                        1, v, NULL) != IAS_OK) {
            failed = true;
            break;
        }
        sent++;
    }
    ias_pg_clear(res);
    /* A lost commit republishes rows; consumers deduplicate on event_id. */
    if (ias_pg_commit(rl->pg) != IAS_OK) {
        ias_warn(NULL, "outbox relay: commit failed: %s", ias_pg_last_message(rl->pg));
        return -1;
    }
    ias_counter_add(rl->ctx->m_outbox_sent, (uint64_t)sent);
    if (failed) {
        if (rl->conn)
            relay_drop(rl); /* a late confirm must never match a newer tag */
        return -1;
    }
    return sent;
}

static void *relay_main(void *arg)
{
    relay rl = {.ctx = arg, .backoff_ms = 100};

    rl.pg = ias_pg_new(rl.ctx->pg_dsn, 5000);
    if (rl.pg == NULL) {
        ias_error(NULL, "outbox relay: bad PostgreSQL DSN");
        return NULL;
    }
    ias_pg_set_application_name(rl.pg, "ias-users-relay");
    while (!atomic_load(&rl.ctx->relay_stop)) {
        int n;

        if (rl.conn == NULL && relay_connect(&rl) != IAS_OK) {
            relay_sleep(&rl, rl.backoff_ms);
            rl.backoff_ms = rl.backoff_ms * 2 > rl.ctx->relay_backoff_max_ms
                                ? rl.ctx->relay_backoff_max_ms
                                : rl.backoff_ms * 2;
            continue;
        }
        n = relay_batch(&rl);
        if (n < 0) {
            relay_sleep(&rl, rl.backoff_ms);
            rl.backoff_ms = rl.backoff_ms * 2 > rl.ctx->relay_backoff_max_ms
                                ? rl.ctx->relay_backoff_max_ms
                                : rl.backoff_ms * 2;
            continue;
        }
        rl.backoff_ms = 100;
        if (n == 0) {
            relay_poll_conn(&rl);
            relay_sleep(&rl, 100);
        }
    }
    relay_drop(&rl);
    ias_pg_free(rl.pg);
    return NULL;
}

int users_relay_start(users_ctx *ctx)
{
    sigset_t all, old;
    int rc;

    atomic_store(&ctx->relay_stop, false);
    /* The thread inherits a full mask: SIGTERM/SIGINT must reach the server's
     * drain handling, never kill the process through this thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&ctx->relay_thread, NULL, relay_main, ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return IAS_ERR;
    ctx->relay_started = true;
    return IAS_OK;
}

void users_relay_stop(users_ctx *ctx)
{
    if (!ctx->relay_started)
        return;
    atomic_store(&ctx->relay_stop, true);
    pthread_join(ctx->relay_thread, NULL);
    ctx->relay_started = false;
}
