/* Cache invalidation: a consumer thread on a per-instance queue bound to
 * config.{keys,models,policies}.changed pushes entries into a ring; every
 * worker drains the ring at the start of each request (one atomic load when
 * nothing changed), so a revoked key stops working on every worker at once. */
#include "ingress.h"

#include "ias/amqp.h"
#include "ias/log.h"

#include <cjson/cJSON.h>
#include <string.h>

void ingress_inval_init(ingress_inval *iv)
{
    memset(iv->ring, 0, sizeof(iv->ring));
    atomic_store(&iv->gen, 0);
    if (pthread_mutex_init(&iv->mu, NULL) != 0)
        ias_die("ingress: mutex init failed");
}

void ingress_inval_destroy(ingress_inval *iv)
{
    pthread_mutex_destroy(&iv->mu);
}

void ingress_inval_push(ingress_inval *iv, const char *kind, const char *org_id, const char *id)
{
    ingress_inval_entry *e;
    uint64_t gen;
    pthread_mutex_lock(&iv->mu);
    gen = atomic_load(&iv->gen) + 1;
    e = &iv->ring[gen % INGRESS_INVAL_LOG];
    e->gen = gen;
    if (ias_strlcpy(e->kind, kind, sizeof(e->kind)) != IAS_OK ||
        ias_strlcpy(e->org_id, org_id ? org_id : "", sizeof(e->org_id)) != IAS_OK ||
        ias_strlcpy(e->id, id ? id : "", sizeof(e->id)) != IAS_OK) {
        /* Over-long ids cannot match anything we cache: widen to the whole org. */
        e->id[0] = '\0';
    }
    atomic_store(&iv->gen, gen);
    pthread_mutex_unlock(&iv->mu);
}

static void apply(ingress_worker *w, const ingress_inval_entry *e)
{
    if (strcmp(e->kind, "keys") == 0 || strcmp(e->kind, "budgets") == 0) {
        /* Budget limits travel inside the key record too. */
        ingress_lru_evict(w->keys, e->org_id,
                          strcmp(e->kind, "keys") == 0 && e->id[0] ? e->id : NULL);
        ingress_policy_cache_clear(w->policy);
    } else if (strcmp(e->kind, "models") == 0) {
        w->models_fetched_ms = 0; /* refetch on next use */
        /* allowed_models lives in key records */
        ingress_lru_evict(w->keys, e->org_id, NULL);
        ingress_policy_cache_clear(w->policy);
    } else if (strcmp(e->kind, "policies") == 0 || strcmp(e->kind, "guardrails") == 0) {
        ingress_policy_cache_clear(w->policy);
    }
}

void ingress_inval_drain(ingress_worker *w)
{
    ingress_inval *iv = &w->ctx->inval;
    uint64_t gen = atomic_load(&iv->gen);
    if (gen == w->inval_seen)
        return;
    pthread_mutex_lock(&iv->mu);
    gen = atomic_load(&iv->gen);
    if (gen - w->inval_seen >= INGRESS_INVAL_LOG) {
        /* Fell behind the ring: forget everything. */
        ingress_lru_evict(w->keys, NULL, NULL);
        ingress_policy_cache_clear(w->policy);
        w->models_fetched_ms = 0;
    } else {
        for (uint64_t g = w->inval_seen + 1; g <= gen; g++)
            apply(w, &iv->ring[g % INGRESS_INVAL_LOG]);
    }
    w->inval_seen = gen;
    pthread_mutex_unlock(&iv->mu);
}

/* ---- consumer thread ---- */

static ias_consume_result on_config(const ias_amqp_msg *msg, void *arg)
{
    ingress_ctx *ctx = arg;
    cJSON *o = cJSON_ParseWithLength(msg->body, msg->body_len);
    const cJSON *kind, *org, *ids, *it;
    ias_consume_result rc = IAS_CONSUME_REJECT;

    if (!cJSON_IsObject(o))
        goto out;
    kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
    org = cJSON_GetObjectItemCaseSensitive(o, "org_id");
    ids = cJSON_GetObjectItemCaseSensitive(o, "ids");
    if (!cJSON_IsString(kind) || (!cJSON_IsArray(ids) && ids))
        goto out;
    const char *org_id = cJSON_IsString(org) ? org->valuestring : "";
    if (cJSON_GetArraySize(ids) == 0) {
        ingress_inval_push(&ctx->inval, kind->valuestring, org_id, "");
    } else {
        cJSON_ArrayForEach(it, ids)
        {
            if (cJSON_IsString(it))
                ingress_inval_push(&ctx->inval, kind->valuestring, org_id, it->valuestring);
        }
    }
    ias_debug(NULL, "config.%s.changed applied (org %s)", kind->valuestring,
              org_id[0] ? org_id : "-");
    rc = IAS_CONSUME_ACK;
out:
    if (rc != IAS_CONSUME_ACK && msg->reason)
        (void)ias_strlcpy(msg->reason, "not a config.changed.v1 body", msg->reason_len);
    cJSON_Delete(o);
    return rc;
}

/* After a (re)connect we may have missed events: drop every cached entry. */
static void on_ready(const char *queue, void *arg)
{
    ingress_ctx *ctx = arg;
    ias_info(NULL, "listening for config changes on %s", queue);
    ingress_inval_push(&ctx->inval, "keys", "", "");
    ingress_inval_push(&ctx->inval, "models", "", "");
}

static void *consumer_main(void *arg)
{
    ingress_ctx *ctx = arg;
    static const char *const keys[] = {"config.keys.changed", "config.models.changed",
                                       "config.budgets.changed", "config.policies.changed",
                                       "config.guardrails.changed"};
    ias_consumer_opts o = {.url = ctx->amqp_url,
                           .name = "ingress-config",
                           .bind_keys = keys,
                           .nbind_keys = IAS_ARRAY_LEN(keys),
                           .prefetch = 64,
                           .handler = on_config,
                           .on_ready = on_ready,
                           .arg = ctx,
                           .stop = &ctx->stop};
    if (ias_consumer_run(&o) != IAS_OK)
        ias_error(NULL, "config consumer: invalid options");
    return NULL;
}

int ingress_consumer_start(ingress_ctx *ctx)
{
    atomic_store(&ctx->stop, false);
    if (pthread_create(&ctx->consumer, NULL, consumer_main, ctx) != 0)
        return IAS_ERR;
    ctx->consumer_started = true;
    return IAS_OK;
}

void ingress_consumer_stop(ingress_ctx *ctx)
{
    if (!ctx->consumer_started)
        return;
    atomic_store(&ctx->stop, true);
    pthread_join(ctx->consumer, NULL);
    ctx->consumer_started = false;
}
