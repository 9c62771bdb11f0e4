/* API key lookup chain: Authorization -> SHA-256 -> per-worker LRU (short TTL)
 * -> Redis ias:key:{sha} -> users GET /internal/keys/{sha}, which then fills
 * Redis (30 s). Unknown keys are cached in the LRU only. */
#include "ingress.h"

#include "ias/apikey.h"
#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REDIS_KEY_TTL_S "30"

/* ---- key records ---- */

void ingress_key_free(ingress_key *k)
{
    free(k->allowed);
    k->allowed = NULL;
    k->nallowed = 0;
}

/* allowed is one block: the pointer array followed by the strings. */
static char **allowed_dup(char *const *src, size_t n)
{
    size_t bytes = n * sizeof(char *);
    char **out, *p;
    if (n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        bytes += strlen(src[i]) + 1;
    out = ias_xmalloc(bytes);
    p = (char *)(out + n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(src[i]) + 1;
        memcpy(p, src[i], len);
        out[i] = p;
        p += len;
    }
    return out;
}

void ingress_key_copy(ingress_key *dst, const ingress_key *src)
{
    *dst = *src;
    dst->allowed = allowed_dup(src->allowed, src->nallowed);
}

bool ingress_key_allows(const ingress_key *k, const char *model)
{
    for (size_t i = 0; i < k->nallowed; i++)
        if (strcmp(k->allowed[i], model) == 0)
            return true;
    return false;
}

bool ingress_key_usable(const ingress_key *k)
{
    return k->state == INGRESS_KEY_ACTIVE && (k->expires_ms == 0 || k->expires_ms > ias_wall_ms());
}

/* "2026-11-22T05:40:00.123456Z" or "...+00:00" -> ms; IAS_ERR otherwise. */
static int parse_iso(const char *s, int64_t *out)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec, n = 0;
    int64_t ms = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return IAS_ERR;
    s += n;
    if (*s == '.') {
        int digits = 0;
        s++;
        while (*s >= '0' && *s <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*s - '0');
            digits++;
            s++;
        }
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(s, "Z") != 0 && strcmp(s, "+00:00") != 0 && strcmp(s, "+00") != 0)
        return IAS_ERR;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return IAS_OK;
}

static int64_t json_limit(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0)
        return (int64_t)v->valuedouble;
    return -1;
}

static int json_id(const cJSON *o, const char *name, char *dst, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return IAS_ERR;
    return ias_strlcpy(dst, v->valuestring, len);
}

int ingress_key_parse(const char *json, size_t len, const char *sha, ingress_key *out)
{
    cJSON *o = cJSON_ParseWithLength(json, len);
    const cJSON *st, *exp, *am;
    char *names[INGRESS_MAX_ALLOWED];
    size_t n = 0;
    int rc = IAS_ERR;

    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(o))
        goto out;
    if (ias_strlcpy(out->sha, sha, sizeof(out->sha)) != IAS_OK ||
        json_id(o, "key_id", out->key_id, sizeof(out->key_id)) != IAS_OK ||
        json_id(o, "user_id", out->user_id, sizeof(out->user_id)) != IAS_OK ||
        json_id(o, "org_id", out->org_id, sizeof(out->org_id)) != IAS_OK ||
        json_id(o, "role", out->role, sizeof(out->role)) != IAS_OK)
        goto out;
    st = cJSON_GetObjectItemCaseSensitive(o, "status");
    if (!cJSON_IsString(st))
        goto out;
    out->state = strcmp(st->valuestring, "active") == 0 ? INGRESS_KEY_ACTIVE : INGRESS_KEY_INACTIVE;
    exp = cJSON_GetObjectItemCaseSensitive(o, "expires_at");
    if (cJSON_IsString(exp)) {
        if (parse_iso(exp->valuestring, &out->expires_ms) != IAS_OK)
            goto out;
    } else if (exp && !cJSON_IsNull(exp)) {
        goto out;
    }
    out->org_limit = json_limit(o, "org_monthly_token_limit");
    out->user_limit = json_limit(o, "user_monthly_token_limit");
    out->org_rps = json_limit(o, "org_rps_limit");
    out->key_rps = json_limit(o, "key_rps_limit");
    am = cJSON_GetObjectItemCaseSensitive(o, "allowed_models");
    if (am && !cJSON_IsArray(am))
        goto out;
    const cJSON *it;
    cJSON_ArrayForEach(it, am)
    {
        if (!cJSON_IsString(it) || n == INGRESS_MAX_ALLOWED)
            goto out;
        names[n++] = it->valuestring;
    }
    out->allowed = allowed_dup(names, n);
    out->nallowed = n;
    rc = IAS_OK;
out:
    cJSON_Delete(o);
    return rc;
}

/* ---- per-worker LRU ---- */

typedef struct lru_ent {
    ingress_key key;
    uint64_t expires; /* monotonic ms */
    struct lru_ent *hnext;
    struct lru_ent *prev, *next; /* recency list, newest after head */
} lru_ent;

struct ingress_lru {
    size_t cap, n, nbuckets;
    lru_ent **buckets;
    lru_ent head;
};

static size_t sha_bucket(const ingress_lru *l, const char *sha)
{
    uint64_t h = 0;
    for (int i = 0; i < 16 && sha[i]; i++)
        h = h * 31 + (unsigned char)sha[i];
    return (size_t)(h % l->nbuckets);
}

ingress_lru *ingress_lru_new(size_t slots)
{
    ingress_lru *l = ias_xcalloc(1, sizeof(*l));
    l->cap = slots;
    l->nbuckets = slots * 2 + 1;
    l->buckets = ias_xcalloc(l->nbuckets, sizeof(*l->buckets));
    l->head.prev = l->head.next = &l->head;
    return l;
}

static void lru_unlink(ingress_lru *l, lru_ent *e)
{
    lru_ent **pp = &l->buckets[sha_bucket(l, e->key.sha)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    e->prev->next = e->next;
    e->next->prev = e->prev;
    l->n--;
    ingress_key_free(&e->key);
    free(e);
}

void ingress_lru_free(ingress_lru *l)
{
    if (!l)
        return;
    while (l->head.next != &l->head)
        lru_unlink(l, l->head.next);
    free(l->buckets);
    free(l);
}

static lru_ent *lru_find(ingress_lru *l, const char *sha)
{
    for (lru_ent *e = l->buckets[sha_bucket(l, sha)]; e; e = e->hnext) {
        if (strcmp(e->key.sha, sha) != 0)
            continue;
        if (e->expires <= ias_now_ms()) {
            lru_unlink(l, e);
            return NULL;
        }
        e->prev->next = e->next; /* move to the front */
        e->next->prev = e->prev;
        e->next = l->head.next;
        e->prev = &l->head;
        l->head.next->prev = e;
        l->head.next = e;
        return e;
    }
    return NULL;
}

static void lru_put(ingress_lru *l, const ingress_key *k, int64_t ttl_ms)
{
    lru_ent *e;
    size_t b;
    if (ttl_ms <= 0)
        return;
    for (e = l->buckets[sha_bucket(l, k->sha)]; e; e = e->hnext) {
        if (strcmp(e->key.sha, k->sha) == 0) {
            lru_unlink(l, e);
            break;
        }
    }
    if (l->n >= l->cap)
        lru_unlink(l, l->head.prev);
    e = ias_xcalloc(1, sizeof(*e));
    ingress_key_copy(&e->key, k);
    e->expires = ias_now_ms() + (uint64_t)ttl_ms;
    b = sha_bucket(l, k->sha);
    e->hnext = l->buckets[b];
    l->buckets[b] = e;
    e->next = l->head.next;
    e->prev = &l->head;
    l->head.next->prev = e;
    l->head.next = e;
    l->n++;
}

void ingress_lru_evict(ingress_lru *l, const char *org_id, const char *key_id)
{
    lru_ent *e = l->head.next;
    while (e != &l->head) {
        lru_ent *next = e->next;
        bool drop = (!org_id || !org_id[0] || strcmp(e->key.org_id, org_id) == 0) &&
                    (!key_id || !key_id[0] || strcmp(e->key.key_id, key_id) == 0);
        /* Unknown-key entries have no org: drop them with any org-wide change. */
        if (e->key.state == INGRESS_KEY_UNKNOWN && (!key_id || !key_id[0]))
            drop = true;
        if (drop)
            lru_unlink(l, e);
        e = next;
    }
}

/* ---- the asynchronous part of the chain ---- */

typedef struct lookup {
    ingress_worker *w;
    char sha[65];
    uint64_t gen; /* invalidation generation when the lookup began */
    ingress_key_cb cb;
    void *arg;
} lookup;

static void lookup_finish(lookup *lk, int status, const ingress_key *k, bool cache)
{
    ingress_worker *w = lk->w;
    /* A change announced while we were asking may have made this answer stale:
     * use it for this request, never cache it. */
    if (cache && status == IAS_OK && atomic_load(&w->ctx->inval.gen) == lk->gen)
        lru_put(w->keys, k, w->ctx->key_cache_ttl_ms);
    lk->cb(status, k, lk->arg);
    free(lk);
}

static void on_redis_set(const redisReply *rep, const char *err, void *arg)
{
    (void)rep;
    (void)arg;
    if (err)
        ias_debug(NULL, "key cache SET failed: %s", err);
}

static void on_users(const ias_http_fetch_result *res, void *arg)
{
    lookup *lk = arg;
    ingress_worker *w = lk->w;
    ingress_key k;

    if (res->result == IAS_HTTP_OK && res->status == 404) {
        memset(&k, 0, sizeof(k));
        memcpy(k.sha, lk->sha, sizeof(k.sha));
        k.state = INGRESS_KEY_UNKNOWN;
        lookup_finish(lk, IAS_OK, &k, true);
        return;
    }
    if (res->result != IAS_HTTP_OK || res->status != 200 ||
        ingress_key_parse(res->body, res->body_len, lk->sha, &k) != IAS_OK) {
        ias_warn(NULL, "users key lookup failed: %s status %d %s", ias_http_result_str(res->result),
                 res->status, res->error);
        lookup_finish(lk, IAS_ERR, NULL, false);
        return;
    }
    if (atomic_load(&w->ctx->inval.gen) == lk->gen) {
        char rkey[80];
        const char *argv[] = {"SET", rkey, res->body, "EX", REDIS_KEY_TTL_S};
        size_t argvlen[] = {3, 0, res->body_len, 2, strlen(REDIS_KEY_TTL_S)};
        snprintf(rkey, sizeof(rkey), "ias:key:%s", lk->sha);
        argvlen[1] = strlen(rkey);
        ias_redis_async_cmd_argv(w->redis, 5, argv, argvlen, on_redis_set, NULL);
    }
    lookup_finish(lk, IAS_OK, &k, true);
    ingress_key_free(&k);
}

static void ask_users(lookup *lk)
{
    ingress_ctx *ctx = lk->w->ctx;
    char url[INGRESS_URL_MAX + 96];
    ias_http_header hdr[1] = {{"X-Ias-Internal-Token", ctx->internal_token}};
    ias_http_request hr = {.method = "GET",
                           .url = url,
                           .headers = hdr,
                           .nheaders = ctx->internal_token[0] ? 1 : 0,
                           .total_ms = ctx->lookup_ms,
                           .max_body_bytes = 64 * 1024};
    snprintf(url, sizeof(url), "%s/internal/keys/%s", ctx->users_url, lk->sha);
    ias_counter_inc(ctx->key_lookups_users);
    if (!ias_http_client_fetch(lk->w->http, &hr, on_users, lk))
        lookup_finish(lk, IAS_ERR, NULL, false);
}

static void on_redis_get(const redisReply *rep, const char *err, void *arg)
{
    lookup *lk = arg;
    ingress_key k;
    if (!err && rep && rep->type == REDIS_REPLY_STRING &&
        ingress_key_parse(rep->str, rep->len, lk->sha, &k) == IAS_OK) {
        lookup_finish(lk, IAS_OK, &k, true);
        ingress_key_free(&k);
        return;
    }
    /* Miss, unreadable entry or Redis down: ask the source (Redis failures are
     * answered by the budget and rate-limit steps, which fail closed). */
    ask_users(lk);
}

int ingress_key_lookup(ingress_worker *w, const char *authorization, ingress_key *out,
                       ingress_key_cb cb, void *arg)
{
    char key[IAS_APIKEY_BUFSZ], sha[IAS_APIKEY_HASH_BUFSZ], rkey[80];
    lru_ent *e;
    lookup *lk;

    memset(out, 0, sizeof(*out));
    if (!authorization || ias_apikey_from_bearer(authorization, key, NULL) != IAS_OK) {
        out->state = INGRESS_KEY_UNKNOWN;
        return IAS_OK;
    }
    ias_apikey_hash(key, sha);
    memset(key, 0, sizeof(key));
    e = lru_find(w->keys, sha);
    if (e) {
        ingress_key_copy(out, &e->key);
        return IAS_OK;
    }
    lk = ias_xcalloc(1, sizeof(*lk));
    lk->w = w;
    memcpy(lk->sha, sha, sizeof(lk->sha));
    lk->gen = atomic_load(&w->ctx->inval.gen);
    lk->cb = cb;
    lk->arg = arg;
    snprintf(rkey, sizeof(rkey), "ias:key:%s", sha);
    const char *argv[] = {"GET", rkey};
    ias_redis_async_cmd_argv(w->redis, 2, argv, NULL, on_redis_get, lk);
    return IAS_AGAIN;
}
