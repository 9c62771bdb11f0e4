/* The ias.audit consumer: every audit.# event that validates against
 * audit.recorded.v1 is appended to the chain; the message is acked only after
 * the append committed (or was found to be a redelivery). Malformed events are
 * rejected, so the queue dead-letters them to ias.dead; the reason is logged by
 * the consumer loop with the message id. */
#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/amqp.h"
#include "ias/log.h"

typedef struct consumer_state {
    audit_ctx *ctx;
    ias_pg *pg;
} consumer_state;

/* Appends one delivery alone (the fallback when a batch is refused). */
static ias_consume_result append_single(consumer_state *st, const ias_amqp_msg *m,
                                        const audit_event *ev)
{
    audit_ctx *ctx = st->ctx;
    char why[300];
    long long seq = 0;

    switch (audit_chain_append(st->pg, ev, &seq, why, sizeof(why))) {
    case AUDIT_APPENDED:
        ias_counter_inc(ctx->m_appended);
        ias_gauge_set(ctx->m_head_seq, seq);
        return IAS_CONSUME_ACK;
    case AUDIT_DUPLICATE:
        ias_info(NULL, "audit event %s already in the ledger: redelivery ignored",
                 ev->entry.event_id);
        ias_counter_inc(ctx->m_duplicate);
        return IAS_CONSUME_ACK;
    case AUDIT_FAIL_REJECT:
        snprintf(m->reason, m->reason_len, "refused by the ledger: %s", why);
        ias_counter_inc(ctx->m_rejected);
        return IAS_CONSUME_REJECT;
    case AUDIT_FAIL_RETRY:
        break;
    }
    snprintf(m->reason, m->reason_len, "postgres: %s", why);
    return IAS_CONSUME_RETRY;
}

/* The valid events of a batch are appended in delivery order in one
 * transaction (one commit, one head lock); if the ledger refuses one of them,
 * each is appended alone so only the culprit is dead-lettered. */
static void on_batch(const ias_amqp_msg *msgs, size_t n, ias_consume_result *results, void *arg)
{
    consumer_state *st = arg;
    audit_ctx *ctx = st->ctx;
    audit_event *evs = ias_xcalloc(n, sizeof(*evs));
    const audit_event **ok = ias_xcalloc(n, sizeof(*ok));
    size_t *idx = ias_xcalloc(n, sizeof(*idx));
    long long *seqs = ias_xcalloc(n, sizeof(*seqs));
    size_t nok = 0;
    char why[300];
    bool appended = false;

    for (size_t i = 0; i < n; i++) {
        const ias_amqp_msg *m = &msgs[i];
        if (audit_event_parse(m->body, m->body_len, &evs[i], why, sizeof(why)) != IAS_OK) {
            snprintf(m->reason, m->reason_len, "malformed audit event: %s", why);
            ias_counter_inc(ctx->m_rejected);
            results[i] = IAS_CONSUME_REJECT;
            continue;
        }
        if (m->message_id[0] != '\0' && strcmp(m->message_id, evs[i].entry.event_id) != 0)
            ias_warn(NULL, "audit event %s arrived with message_id %s", evs[i].entry.event_id,
                     m->message_id);
        idx[nok] = i;
        ok[nok++] = &evs[i];
    }
    if (nok > 0) {
        audit_append_rc rc = audit_chain_append_batch(st->pg, ok, nok, seqs, why, sizeof(why));
        for (size_t j = 0; j < nok; j++) {
            const ias_amqp_msg *m = &msgs[idx[j]];
            if (rc == AUDIT_APPENDED) {
                results[idx[j]] = IAS_CONSUME_ACK;
                if (seqs[j] > 0) {
                    ias_counter_inc(ctx->m_appended);
                    ias_gauge_set(ctx->m_head_seq, seqs[j]);
                } else {
                    ias_info(NULL, "audit event %s already in the ledger: redelivery ignored",
                             ok[j]->entry.event_id);
                    ias_counter_inc(ctx->m_duplicate);
                }
            } else if (rc == AUDIT_FAIL_REJECT && nok > 1) {
                results[idx[j]] = append_single(st, m, ok[j]);
            } else if (rc == AUDIT_FAIL_REJECT) {
                snprintf(m->reason, m->reason_len, "refused by the ledger: %s", why);
                ias_counter_inc(ctx->m_rejected);
                results[idx[j]] = IAS_CONSUME_REJECT;
            } else {
                snprintf(m->reason, m->reason_len, "postgres: %s", why);
                results[idx[j]] = IAS_CONSUME_RETRY;
            }
            appended = appended || results[idx[j]] == IAS_CONSUME_ACK;
        }
    }
    if (appended) {
        /* Wake the checkpoint thread once per batch. */
        pthread_mutex_lock(&ctx->mu);
        ctx->appended = true;
        pthread_cond_signal(&ctx->cond);
        pthread_mutex_unlock(&ctx->mu);
    }
    for (size_t i = 0; i < n; i++)
        audit_event_free(&evs[i]);
    free(seqs);
    free(idx);
    free(ok);
    free(evs);
}

void *audit_consumer_main(void *arg)
{
    audit_ctx *ctx = arg;
    consumer_state st = {.ctx = ctx, .pg = ias_pg_new(ctx->pg_dsn, 5000)};
    ias_consumer_opts o = {
        .url = ctx->amqp_url,
        .name = "audit",
        .queue = IAS_AMQP_QUEUE_AUDIT,
        /* Batches of up to 200 events share one commit (the WAL flush is the
         * cost of an append); 10 ms gathering bounds the added latency. */
        .prefetch = 400,
        .batch_handler = on_batch,
        .batch_max = 200,
        .batch_wait_ms = 10,
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
