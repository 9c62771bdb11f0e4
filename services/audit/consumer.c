/* The ias.audit consumer: every audit.# event that validates against
 * audit.recorded.v1 is appended to the chain; the message is acked only after
 * the append committed (or was found to be a redelivery). Malformed events are
 * rejected, so the queue dead-letters them to ias.dead; the reason is logged by
 * the consumer loop with the message id. */
#include "audit.h"

#include <stdio.h>
#include <string.h>

#include "ias/amqp.h"
#include "ias/log.h"

typedef struct consumer_state {
    audit_ctx *ctx;
    ias_pg *pg;
} consumer_state;

static ias_consume_result on_event(const ias_amqp_msg *m, void *arg)
{
    consumer_state *st = arg;
    audit_ctx *ctx = st->ctx;
    audit_event ev;
    char why[300];
    long long seq = 0;
    audit_append_rc rc;

    if (audit_event_parse(m->body, m->body_len, &ev, why, sizeof(why)) != IAS_OK) {
        snprintf(m->reason, m->reason_len, "malformed audit event: %s", why);
        ias_counter_inc(ctx->m_rejected);
        return IAS_CONSUME_REJECT;
    }
    if (m->message_id[0] != '\0' && strcmp(m->message_id, ev.entry.event_id) != 0)
        ias_warn(NULL, "audit event %s arrived with message_id %s", ev.entry.event_id,
                 m->message_id);
    rc = audit_chain_append(st->pg, &ev, &seq, why, sizeof(why));
    switch (rc) {
    case AUDIT_APPENDED:
        ias_debug(NULL, "appended %s (%s) as seq %lld", ev.entry.event_id, m->routing_key, seq);
        ias_counter_inc(ctx->m_appended);
        ias_gauge_set(ctx->m_head_seq, seq);
        pthread_mutex_lock(&ctx->mu);
        ctx->appended = true;
        pthread_cond_signal(&ctx->cond);
        pthread_mutex_unlock(&ctx->mu);
        break;
    case AUDIT_DUPLICATE:
        ias_info(NULL, "audit event %s already in the ledger: redelivery ignored",
                 ev.entry.event_id);
        ias_counter_inc(ctx->m_duplicate);
        break;
    case AUDIT_FAIL_REJECT:
        snprintf(m->reason, m->reason_len, "refused by the ledger: %s", why);
        ias_counter_inc(ctx->m_rejected);
        audit_event_free(&ev);
        return IAS_CONSUME_REJECT;
    case AUDIT_FAIL_RETRY:
        snprintf(m->reason, m->reason_len, "postgres: %s", why);
        audit_event_free(&ev);
        return IAS_CONSUME_RETRY;
    }
    audit_event_free(&ev);
    return IAS_CONSUME_ACK;
}

void *audit_consumer_main(void *arg)
{
    audit_ctx *ctx = arg;
    consumer_state st = {.ctx = ctx, .pg = ias_pg_new(ctx->pg_dsn, 5000)};
    ias_consumer_opts o = {
        .url = ctx->amqp_url,
        .name = "audit",
        .queue = IAS_AMQP_QUEUE_AUDIT,
        .prefetch = 64,
        .handler = on_event,
        .arg = &st,
        .stop = &ctx->stop,
    };

    if (!st.pg) {
        ias_error(NULL, "audit consumer: cannot create a PostgreSQL handle");
        return NULL;
    }
    ias_pg_set_application_name(st.pg, "ias-audit-consumer");
    if (ias_consumer_run(&o) != IAS_OK)
        ias_error(NULL, "audit consumer: invalid options");
    ias_pg_free(st.pg);
    return NULL;
}
