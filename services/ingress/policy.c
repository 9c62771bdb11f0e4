/* Policy enforcement point. With IAS_PDP_URL: POST {pdp}/internal/decide and
 * reuse the answer briefly per (org, user, role, model) under the returned
 * policy_version (config.policies.changed / config.guardrails.changed clear the
 * cache). Version check: policy_version is "g<global>.o<org>"; an answer with a
 * newer global version drops every entry, one with a newer org version drops
 * that org's entries, and an answer older than what the worker already saw (or
 * that raced with a clear) is used once and not cached. Without a pdp: the
 * built-in decision, allowed iff the model is in the org's allowed models. */
#include "ingress.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_SLOTS 512

typedef struct policy_ent {
    char key[4 * INGRESS_ID_MAX + IAS_OPENAI_MAX_MODEL_LEN + 8];
    char org[INGRESS_ID_MAX];
    long long gver, over; /* policy_version g<gver>.o<over> */
    uint64_t expires;     /* monotonic ms; 0 = empty */
    ingress_decision d;
} policy_ent;

struct ingress_policy_cache {
    policy_ent slots[POLICY_SLOTS]; /* direct-mapped: a collision just refetches */
    long long gver;                 /* newest global version seen */
    uint64_t epoch;                 /* bumped by every clear */
};

ingress_policy_cache *ingress_policy_cache_new(void)
{
    return ias_xcalloc(1, sizeof(ingress_policy_cache));
}

void ingress_policy_cache_free(ingress_policy_cache *c)
{
    free(c);
}

void ingress_policy_cache_clear(ingress_policy_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < POLICY_SLOTS; i++)
        c->slots[i].expires = 0;
    c->epoch++;
}

/* "g<N>.o<M>"; anything else is -1, -1 (never cached). */
static void parse_version(const char *v, long long *g, long long *o)
{
    char *end;

    *g = *o = -1;
    if (v[0] != 'g')
        return;
    long long gv = strtoll(v + 1, &end, 10);
    if (end == v + 1 || end[0] != '.' || end[1] != 'o')
        return;
    const char *os = end + 2;
    long long ov = strtoll(os, &end, 10);
    if (end == os || *end != '\0' || gv < 0 || ov < 0)
        return;
    *g = gv;
    *o = ov;
}

/* Whether an answer under (gv, ov) for org may be cached; evicts what it
 * proves outdated. */
static bool version_admit(ingress_policy_cache *c, const char *org, long long gv, long long ov)
{
    if (gv < 0 || gv < c->gver)
        return false;
    if (gv > c->gver) {
        ingress_policy_cache_clear(c);
        c->gver = gv;
        return true;
    }
    for (size_t i = 0; i < POLICY_SLOTS; i++) {
        policy_ent *e = &c->slots[i];
        if (e->expires == 0 || strcmp(e->org, org) != 0)
            continue;
        if (e->over > ov)
            return false; /* we already saw a newer org policy */
        if (e->over < ov)
            e->expires = 0;
    }
    return true;
}

static size_t slot_of(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % POLICY_SLOTS);
}

typedef struct decide_call {
    ingress_worker *w;
    char cache_key[sizeof(((policy_ent *)0)->key)];
    char org[INGRESS_ID_MAX];
    uint64_t epoch; /* cache epoch when asked: a clear since then = maybe stale */
    ingress_policy_cb cb;
    void *arg;
} decide_call;

static int parse_decision(const char *body, size_t len, ingress_decision *d, char *version,
                          size_t vlen, int64_t *ttl_ms)
{
    cJSON *o = cJSON_ParseWithLength(body, len);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(o, "decision");
    const cJSON *reasons = cJSON_GetObjectItemCaseSensitive(o, "reasons");
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(o, "policy_version");
    const cJSON *obl = cJSON_GetObjectItemCaseSensitive(o, "obligations");
    const cJSON *ttl = cJSON_GetObjectItemCaseSensitive(o, "ttl_ms");
    const cJSON *g, *it;
    int rc = IAS_ERR;

    memset(d, 0, sizeof(*d));
    if (!cJSON_IsString(dec))
        goto out;
    if (strcmp(dec->valuestring, "allow") == 0)
        d->allow = true;
    else if (strcmp(dec->valuestring, "deny") != 0)
        goto out;
    it = cJSON_IsArray(reasons) ? cJSON_GetArrayItem(reasons, 0) : NULL;
    if (it) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(it, "message");
        const cJSON *rid = cJSON_GetObjectItemCaseSensitive(it, "rule_id");
        snprintf(d->reason, sizeof(d->reason), "%s%s%s%s",
                 cJSON_IsString(msg) ? msg->valuestring : "denied by policy",
                 cJSON_IsString(rid) ? " (rule " : "", cJSON_IsString(rid) ? rid->valuestring : "",
                 cJSON_IsString(rid) ? ")" : "");
    } else if (!d->allow) {
        snprintf(d->reason, sizeof(d->reason), "denied by policy");
    }
    g = cJSON_GetObjectItemCaseSensitive(obl, "guardrails");
    cJSON_ArrayForEach(it, g)
    {
        size_t used = strlen(d->guardrails);
        if (!cJSON_IsString(it))
            continue;
        /* Profile ids are uuids: a list that does not fit is refused, not cut. */
        if (used + strlen(it->valuestring) + 2 > sizeof(d->guardrails))
            goto out;
        snprintf(d->guardrails + used, sizeof(d->guardrails) - used, "%s%s", used ? "," : "",
                 it->valuestring);
    }
    (void)ias_strlcpy(version, cJSON_IsString(pv) ? pv->valuestring : "", vlen);
    *ttl_ms = cJSON_IsNumber(ttl) && ttl->valuedouble > 0 ? (int64_t)ttl->valuedouble : 0;
    d->status = IAS_OK;
    rc = IAS_OK;
out:
    cJSON_Delete(o);
    return rc;
}

static void on_pdp(const ias_http_fetch_result *res, void *arg)
{
    decide_call *c = arg;
    ingress_decision d;
    char version[64];
    int64_t ttl = 0;

    if (res->result != IAS_HTTP_OK || res->status != 200 ||
        parse_decision(res->body, res->body_len, &d, version, sizeof(version), &ttl) != IAS_OK) {
        ias_warn(NULL, "pdp decide failed: %s status %d %s", ias_http_result_str(res->result),
                 res->status, res->error);
        memset(&d, 0, sizeof(d));
        d.status = IAS_ERR;
    } else {
        ingress_policy_cache *pc = c->w->policy;
        int64_t keep = c->w->ctx->policy_cache_ttl_ms;
        long long gv, ov;

        if (ttl > 0 && ttl < keep)
            keep = ttl;
        parse_version(version, &gv, &ov);
        if (keep > 0 && pc->epoch == c->epoch && version_admit(pc, c->org, gv, ov)) {
            policy_ent *e = &pc->slots[slot_of(c->cache_key)];
            memcpy(e->key, c->cache_key, sizeof(e->key));
            memcpy(e->org, c->org, sizeof(e->org));
            e->gver = gv;
            e->over = ov;
            e->d = d;
            e->expires = ias_now_ms() + (uint64_t)keep;
        }
    }
    c->cb(&d, c->arg);
    free(c);
}

int ingress_policy_decide(ingress_worker *w, const ingress_key *k, const char *model,
                          const char *source_ip, const char *request_id, ingress_decision *out,
                          ingress_policy_cb cb, void *arg)
{
    ingress_ctx *ctx = w->ctx;
    decide_call *c;
    policy_ent *e;
    char key[sizeof(e->key)], url[INGRESS_URL_MAX + 32], now[32];
    cJSON *body, *subj, *am, *res, *env;
    const ingress_model *mod;
    char *text;
    ias_http_call *call;

    memset(out, 0, sizeof(*out));
    if (!ctx->pdp_url[0]) {
        out->status = IAS_OK;
        out->builtin = true;
        out->allow = ingress_key_allows(k, model);
        if (!out->allow)
            snprintf(out->reason, sizeof(out->reason), "model not allowed for this org");
        return IAS_OK;
    }
    size_t key_len = 0;
    key[0] = '\0';
    ias_str_append_cut(key, sizeof(key), &key_len, k->org_id);
    ias_str_append_cut(key, sizeof(key), &key_len, "|");
    ias_str_append_cut(key, sizeof(key), &key_len, k->user_id);
    ias_str_append_cut(key, sizeof(key), &key_len, "|");
    ias_str_append_cut(key, sizeof(key), &key_len, k->role);
    ias_str_append_cut(key, sizeof(key), &key_len, "|");
    ias_str_append_cut(key, sizeof(key), &key_len, model);
    e = &w->policy->slots[slot_of(key)];
    if (e->expires > ias_now_ms() && strcmp(e->key, key) == 0 && e->gver == w->policy->gver) {
        *out = e->d;
        return IAS_OK;
    }

    body = cJSON_CreateObject();
    subj = cJSON_AddObjectToObject(body, "subject");
    cJSON_AddStringToObject(subj, "user_id", k->user_id);
    cJSON_AddStringToObject(subj, "org_id", k->org_id);
    cJSON_AddStringToObject(subj, "role", k->role);
    cJSON_AddStringToObject(subj, "key_id", k->key_id);
    am = cJSON_AddArrayToObject(subj, "allowed_models");
    for (size_t i = 0; i < k->nallowed; i++)
        cJSON_AddItemToArray(am, cJSON_CreateString(k->allowed[i]));
    cJSON_AddStringToObject(body, "action", "inference");
    res = cJSON_AddObjectToObject(body, "resource");
    cJSON_AddStringToObject(res, "model", model);
    /* Rules may match the model's registry tags (e.g. data classes); the
     * snapshot is current (config.models.changed clears the decision cache). */
    mod = ingress_models_find(w, model);
    if (mod != NULL && mod->ntags > 0) {
        cJSON *tags = cJSON_AddArrayToObject(res, "tags");
        for (size_t i = 0; i < mod->ntags; i++)
            cJSON_AddItemToArray(tags, cJSON_CreateString(mod->tags[i]));
    }
    env = cJSON_AddObjectToObject(body, "environment");
    cJSON_AddStringToObject(env, "source_ip", source_ip ? source_ip : "");
    if (ctx->region[0] != '\0')
        cJSON_AddStringToObject(env, "region", ctx->region);
    ias_iso8601_ms(ias_wall_ms(), now, sizeof(now));
    cJSON_AddStringToObject(env, "time", now);
    text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text)
        ias_die("ingress: out of memory");

    ias_http_header hdr[3] = {{"Content-Type", "application/json"},
                              {"X-Request-Id", request_id != NULL ? request_id : ""},
                              {"X-Ias-Internal-Token", ctx->internal_token}};
    ias_http_request hr = {.method = "POST",
                           .url = url,
                           .headers = hdr,
                           .nheaders = ctx->internal_token[0] ? 3 : 2,
                           .body = text,
                           .body_len = strlen(text),
                           .total_ms = ctx->lookup_ms,
                           .max_body_bytes = 64 * 1024};
    snprintf(url, sizeof(url), "%s/internal/decide", ctx->pdp_url);
    c = ias_xcalloc(1, sizeof(*c));
    c->w = w;
    memcpy(c->cache_key, key, sizeof(c->cache_key));
    (void)ias_strlcpy(c->org, k->org_id, sizeof(c->org));
    c->epoch = w->policy->epoch;
    c->cb = cb;
    c->arg = arg;
    call = ias_http_client_fetch(w->http, &hr, on_pdp, c);
    free(text); /* the client copied the body */
    if (!call) {
        free(c);
        out->status = IAS_ERR;
        return IAS_OK;
    }
    return IAS_AGAIN;
}
