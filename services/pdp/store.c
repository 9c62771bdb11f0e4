/* The decision snapshot: load the active versions, swap atomically, and the
 * consumer that reloads on config events (every instance has its own queue). */
#include "pdp.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pdp_snapshot *pdp_snapshot_get(pdp_ctx *ctx)
{
    pdp_snapshot *s;
    pthread_mutex_lock(&ctx->snap_mu);
    s = ctx->snap;
    if (s != NULL)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&ctx->snap_mu);
    return s;
}

void pdp_snapshot_free(pdp_snapshot *s)
{
    if (s == NULL)
        return;
    ias_policy_free(s->global);
    for (size_t i = 0; i < s->norgs; i++)
        ias_policy_free(s->orgs[i].policy);
    free(s->orgs);
    for (size_t i = 0; i < s->nprofiles; i++) {
        free(s->profiles[i].json);
        ias_guardrail_free(s->profiles[i].compiled);
    }
    free(s->profiles);
    free(s);
}

void pdp_snapshot_put(pdp_snapshot *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1)
        pdp_snapshot_free(s);
}

static int org_cmp(const void *a, const void *b)
{
    return strcmp(((const pdp_org_policy *)a)->org_id, ((const pdp_org_policy *)b)->org_id);
}

static int profile_cmp(const void *a, const void *b)
{
    const pdp_profile *x = a, *y = b;
    int c = strcmp(x->org_id, y->org_id);
    return c != 0 ? c : strcmp(x->name, y->name);
}

const ias_policy *pdp_snapshot_org(const pdp_snapshot *s, const char *org_id)
{
    pdp_org_policy key = {.policy = NULL};
    const pdp_org_policy *hit;
    if (org_id == NULL || ias_strlcpy(key.org_id, org_id, sizeof(key.org_id)) != IAS_OK)
        return NULL;
    hit = bsearch(&key, s->orgs, s->norgs, sizeof(*s->orgs), org_cmp);
    return hit != NULL ? hit->policy : NULL;
}

const pdp_profile *pdp_snapshot_profile(const pdp_snapshot *s, const char *org_id, const char *name)
{
    pdp_profile key;
    memset(&key, 0, sizeof(key));
    if (ias_strlcpy(key.org_id, org_id != NULL ? org_id : "", sizeof(key.org_id)) != IAS_OK ||
        ias_strlcpy(key.name, name, sizeof(key.name)) != IAS_OK)
        return NULL;
    return bsearch(&key, s->profiles, s->nprofiles, sizeof(*s->profiles), profile_cmp);
}

const pdp_profile *pdp_snapshot_profile_by_id(const pdp_snapshot *s, const char *id)
{
    for (size_t i = 0; i < s->nprofiles; i++)
        if (strcmp(s->profiles[i].id, id) == 0)
            return &s->profiles[i];
    return NULL;
}

/* A stored document that no longer compiles (a newer pdp became stricter)
 * must not widen access: its scope denies everything until it is fixed. */
static ias_policy *deny_all(const char *id, int version)
{
    cJSON *doc = cJSON_Parse("{\"default_effect\":\"deny\",\"rules\":[]}");
    ias_policy *p = NULL;
    char err[64];
    if (doc == NULL ||
        ias_policy_compile(doc, IAS_POLICY_GLOBAL, id, version, &p, err, sizeof(err)) != IAS_OK)
        ias_die("pdp: cannot build the deny-all policy");
    cJSON_Delete(doc);
    return p;
}

static int load_policies(pdp_snapshot *s, ias_pg *pg)
{
    PGresult *res;
    int n;
    if (ias_pg_exec(pg,
                    "SELECT id::text, scope, coalesce(org_id::text, ''), version, document::text "
                    "FROM policies WHERE active ORDER BY org_id NULLS FIRST",
                    0, NULL, &res) != IAS_OK)
        return IAS_ERR;
    n = ias_pg_nrows(res);
    s->orgs = ias_xcalloc(n > 0 ? (size_t)n : 1, sizeof(*s->orgs));
    for (int i = 0; i < n; i++) {
        const char *id = ias_pg_value(res, i, 0);
        bool global = strcmp(ias_pg_value(res, i, 1), "global") == 0;
        long long version = 0;
        cJSON *doc = cJSON_Parse(ias_pg_value(res, i, 4));
        ias_policy *p = NULL;
        char err[256];
        if (ias_pg_value_ll(res, i, 3, &version) != IAS_OK)
            version = 0;
        if (doc == NULL || ias_policy_compile(doc, global ? IAS_POLICY_GLOBAL : IAS_POLICY_ORG, id,
                                              (int)version, &p, err, sizeof(err)) != IAS_OK) {
            ias_error(NULL, "policy %s (version %lld) does not compile (%s): its scope denies all",
                      id, version, doc == NULL ? "bad JSON" : err);
            p = deny_all(id, (int)version);
        }
        cJSON_Delete(doc);
        if (global) {
            ias_policy_free(s->global);
            s->global = p;
        } else {
            ias_strlcpy(s->orgs[s->norgs].org_id, ias_pg_value(res, i, 2), PDP_ID_LEN);
            s->orgs[s->norgs++].policy = p;
        }
    }
    ias_pg_clear(res);
    qsort(s->orgs, s->norgs, sizeof(*s->orgs), org_cmp);
    return IAS_OK;
}

/* The document the router fetches: id, name, scope, org_id, version, holdback, document. */
static char *profile_json(const char *id, const char *org_id, const char *name, int version,
                          size_t holdback, const char *doc_text)
{
    cJSON *o = cJSON_CreateObject(), *doc = cJSON_Parse(doc_text);
    char *s;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "scope", org_id[0] ? "org" : "global");
    if (org_id[0])
        cJSON_AddStringToObject(o, "org_id", org_id);
    else
        cJSON_AddNullToObject(o, "org_id");
    cJSON_AddNumberToObject(o, "version", version);
    cJSON_AddNumberToObject(o, "holdback", (double)holdback);
    cJSON_AddItemToObject(o, "document", doc != NULL ? doc : cJSON_CreateObject());
    s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s == NULL)
        ias_die("out of memory");
    return s;
}

static int load_profiles(pdp_snapshot *s, ias_pg *pg, size_t holdback)
{
    PGresult *res;
    int n;
    if (ias_pg_exec(pg,
                    "SELECT id::text, coalesce(org_id::text, ''), name, version, document::text "
                    "FROM guardrail_profiles WHERE active",
                    0, NULL, &res) != IAS_OK)
        return IAS_ERR;
    n = ias_pg_nrows(res);
    s->profiles = ias_xcalloc(n > 0 ? (size_t)n : 1, sizeof(*s->profiles));
    for (int i = 0; i < n; i++) {
        pdp_profile *p = &s->profiles[s->nprofiles];
        long long version = 0;
        cJSON *doc = cJSON_Parse(ias_pg_value(res, i, 4));
        char err[256];
        if (ias_pg_value_ll(res, i, 3, &version) != IAS_OK)
            version = 0;
        if (doc == NULL || ias_guardrail_compile(doc, ias_pg_value(res, i, 2), holdback,
                                                 &p->compiled, err, sizeof(err)) != IAS_OK) {
            /* Left out: a policy naming it then fails closed (profile not active). */
            ias_error(NULL, "guardrail profile %s does not compile (%s): withdrawn",
                      ias_pg_value(res, i, 0), doc == NULL ? "bad JSON" : err);
            cJSON_Delete(doc);
            continue;
        }
        cJSON_Delete(doc);
        ias_strlcpy(p->id, ias_pg_value(res, i, 0), sizeof(p->id));
        ias_strlcpy(p->org_id, ias_pg_value(res, i, 1), sizeof(p->org_id));
        ias_strlcpy(p->name, ias_pg_value(res, i, 2), sizeof(p->name));
        p->version = (int)version;
        p->json = profile_json(p->id, p->org_id, p->name, p->version,
                               ias_guardrail_holdback(p->compiled), ias_pg_value(res, i, 4));
        s->nprofiles++;
    }
    ias_pg_clear(res);
    qsort(s->profiles, s->nprofiles, sizeof(*s->profiles), profile_cmp);
    return IAS_OK;
}

int pdp_reload(pdp_ctx *ctx, ias_pg *pg)
{
    pdp_snapshot *s, *old;
    int rc = IAS_ERR;

    pthread_mutex_lock(&ctx->reload_mu);
    s = ias_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    /* One REPEATABLE READ transaction: policies and profiles of the same moment. */
    if (ias_pg_begin_iso(pg, IAS_PG_REPEATABLE_READ) != IAS_OK)
        goto fail;
    if (load_policies(s, pg) != IAS_OK || load_profiles(s, pg, ctx->holdback) != IAS_OK) {
        ias_pg_rollback(pg);
        goto fail;
    }
    ias_pg_rollback(pg);
    s->loaded_ms = ias_wall_ms();
    pthread_mutex_lock(&ctx->snap_mu);
    old = ctx->snap;
    ctx->snap = s;
    pthread_mutex_unlock(&ctx->snap_mu);
    pdp_snapshot_put(old);
    ias_counter_inc(ctx->reloads);
    ias_debug(NULL, "snapshot loaded: global=%s orgs=%zu profiles=%zu",
              s->global != NULL ? "yes" : "no", s->norgs, s->nprofiles);
    rc = IAS_OK;
    pthread_mutex_unlock(&ctx->reload_mu);
    return rc;
fail:
    ias_error(NULL, "snapshot reload failed: %s", ias_pg_last_message(pg));
    ias_counter_inc(ctx->reload_failures);
    pdp_snapshot_free(s);
    pthread_mutex_unlock(&ctx->reload_mu);
    return rc;
}

/* ---------------------------------------------------------------- consumer */

typedef struct consumer_arg {
    pdp_ctx *ctx;
    ias_pg *pg;
} consumer_arg;

static ias_consume_result on_config(const ias_amqp_msg *msg, void *arg)
{
    consumer_arg *a = arg;
    /* A hint only: whatever changed, load the whole snapshot again. */
    if (pdp_reload(a->ctx, a->pg) != IAS_OK) {
        snprintf(msg->reason, msg->reason_len, "reload failed");
        return IAS_CONSUME_RETRY;
    }
    return IAS_CONSUME_ACK;
}

static void on_ready(const char *queue, void *arg)
{
    consumer_arg *a = arg;
    ias_info(NULL, "config consumer subscribed (%s): reloading", queue);
    if (pdp_reload(a->ctx, a->pg) != IAS_OK)
        ias_warn(NULL, "reload after (re)connect failed; serving the previous snapshot");
}

static void *consumer_main(void *p)
{
    pdp_ctx *ctx = p;
    static const char *const keys[] = {"config.policies.changed", "config.guardrails.changed"};
    consumer_arg a = {ctx, ias_pg_new(ctx->pg_dsn, 5000)};
    ias_consumer_opts o = {
        .url = ctx->amqp_url,
        .name = "pdp-config",
        .bind_keys = keys,
        .nbind_keys = IAS_ARRAY_LEN(keys),
        .retry_delay_ms = -1,
        .max_attempts = 3,
        .handler = on_config,
        .on_ready = on_ready,
        .arg = &a,
        .stop = &ctx->consumer_stop,
    };
    ias_pg_set_application_name(a.pg, "ias-pdp-consumer");
    if (ias_consumer_run(&o) != IAS_OK)
        ias_error(NULL, "config consumer: invalid options");
    ias_pg_free(a.pg);
    return NULL;
}

int pdp_consumer_start(pdp_ctx *ctx)
{
    atomic_store(&ctx->consumer_stop, false);
    if (pthread_create(&ctx->consumer, NULL, consumer_main, ctx) != 0)
        return IAS_ERR;
    ctx->consumer_running = true;
    return IAS_OK;
}

void pdp_consumer_stop(pdp_ctx *ctx)
{
    if (!ctx->consumer_running)
        return;
    atomic_store(&ctx->consumer_stop, true);
    pthread_join(ctx->consumer, NULL);
    ctx->consumer_running = false;
}
