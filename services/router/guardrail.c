/* Guardrail obligations (X-Ias-Guardrails from ingress's policy decision).
 *
 *   ids -> per-worker cache of compiled profiles (version ids are immutable), else
 *          GET {pdp}/internal/guardrails/{id} one after the other, compiled with
 *          libcommon's engine -> prompt side on the request tree (deny / redact)
 *          -> output side on each streamed delta (or the whole non-streamed
 *          content) -> one audit.router.guardrail_violation event per violation.
 *
 * Anything that prevents enforcing an obligation (no pdp configured, pdp down,
 * unknown id, a document this build cannot compile) refuses the request: fail
 * closed. */
#include "router.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/audit_event.h"
#include "ias/crypto.h"
#include "ias/guardrail.h"
#include "ias/http_client.h"
#include "ias/log.h"

enum {
    GR_CACHE_SLOTS = 64,
    GR_MAX_VIOL = 2 * IAS_GR_MAX_VIOLATIONS,
    GR_MAX_DOC_BYTES = 1024 * 1024, /* one /internal/guardrails answer */
};

/* One compiled profile version. refs: requests using it; cached: still in the
 * worker's cache. Freed when neither. Worker-local, so plain ints. */
typedef struct router_gr_ent {
    char id[IAS_UUID_STR_LEN + 1];
    ias_guardrail *g;
    int refs;
    bool cached;
    uint64_t used; /* LRU tick */
} router_gr_ent;

struct router_gr_cache {
    router_gr_ent *slot[GR_CACHE_SLOTS];
    uint64_t tick;
};

typedef struct gr_viol {
    const char *profile, *rule_id; /* point into referenced profiles */
    bool deny;
    const char *side; /* "prompt" / "output" */
} gr_viol;

struct router_guard {
    char ids[ROUTER_GR_MAX_IDS][IAS_UUID_STR_LEN + 1];
    size_t nids, next;
    router_gr_ent *ents[ROUTER_GR_MAX_IDS];
    const ias_guardrail *profiles[ROUTER_GR_MAX_IDS];

    /* resolution in progress */
    router_ctx *ctx;
    router_worker *w;
    const ias_log_ctx *log;
    ias_http_call *call;
    router_guard_ready_cb cb;
    void *cb_arg;

    ias_gr_stream *stream; /* NULL: no output rules */
    bool stopped;
    gr_viol viol[GR_MAX_VIOL];
    size_t nviol;
    char *out; /* bytes for the client in place of the current event */
    size_t outlen, outcap;
};

/* ---- per-worker cache ---- */

router_gr_cache *router_gr_cache_new(void)
{
    return ias_xcalloc(1, sizeof(router_gr_cache));
}

static void ent_put(router_gr_ent *e)
{
    if (e == NULL || --e->refs > 0 || e->cached)
        return;
    ias_guardrail_free(e->g);
    free(e);
}

void router_gr_cache_free(router_gr_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < GR_CACHE_SLOTS; i++) {
        router_gr_ent *e = c->slot[i];
        if (e == NULL)
            continue;
        e->cached = false;
        e->refs++;
        ent_put(e);
    }
    free(c);
}

static router_gr_ent *cache_get(router_gr_cache *c, const char *id)
{
    for (size_t i = 0; i < GR_CACHE_SLOTS; i++) {
        router_gr_ent *e = c->slot[i];
        if (e != NULL && strcmp(e->id, id) == 0) {
            e->refs++;
            e->used = ++c->tick;
            return e;
        }
    }
    return NULL;
}

/* Takes g; returns a referenced entry (an existing one if another request won
 * the race, then g is freed). */
static router_gr_ent *cache_put(router_gr_cache *c, const char *id, ias_guardrail *g)
{
    router_gr_ent *e = cache_get(c, id);
    size_t victim = 0;

    if (e != NULL) {
        ias_guardrail_free(g);
        return e;
    }
    for (size_t i = 0; i < GR_CACHE_SLOTS; i++) {
        if (c->slot[i] == NULL) {
            victim = i;
            break;
        }
        if (c->slot[i]->used < c->slot[victim]->used)
            victim = i;
    }
    if (c->slot[victim] != NULL) {
        router_gr_ent *old = c->slot[victim];
        old->cached = false;
        old->refs++;
        ent_put(old); /* freed now unless a request still uses it */
    }
    e = ias_xcalloc(1, sizeof(*e));
    memcpy(e->id, id, sizeof(e->id));
    e->g = g;
    e->refs = 1;
    e->cached = true;
    e->used = ++c->tick;
    c->slot[victim] = e;
    return e;
}

/* ---- header and resolution ---- */

int router_guard_new(const char *header, router_guard **out, char *why, size_t whylen)
{
    router_guard *g;
    const char *p = header;

    *out = NULL;
    if (header == NULL)
        return IAS_OK;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return IAS_OK;
    g = ias_xcalloc(1, sizeof(*g));
    while (*p != '\0') {
        size_t n = strcspn(p, ", \t");
        bool dup = false;

        if (n != IAS_UUID_STR_LEN || g->nids >= ROUTER_GR_MAX_IDS)
            goto bad;
        memcpy(g->ids[g->nids], p, n);
        g->ids[g->nids][n] = '\0';
        if (!ias_uuid_valid(g->ids[g->nids]))
            goto bad;
        for (size_t i = 0; i < g->nids && !dup; i++)
            dup = strcmp(g->ids[i], g->ids[g->nids]) == 0;
        if (!dup)
            g->nids++;
        p += n;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
    }
    *out = g;
    return IAS_OK;
bad:
    snprintf(why, whylen, "X-Ias-Guardrails: at most %d comma-separated profile version ids",
             ROUTER_GR_MAX_IDS);
    free(g);
    return IAS_ERR;
}

static void resolved(router_guard *g)
{
    size_t nout = 0;

    for (size_t i = 0; i < g->nids; i++) {
        g->profiles[i] = g->ents[i]->g;
        nout += ias_guardrail_output_rules(g->ents[i]->g);
    }
    if (nout > 0) {
        g->stream = ias_gr_stream_new(g->profiles, g->nids, IAS_GR_MAX_HOLDBACK);
        if (g->stream == NULL)
            ias_die("router: out of memory");
    }
}

static int resolve_next(router_guard *g, char *why, size_t whylen);

static void on_profile(const ias_http_fetch_result *res, void *arg)
{
    router_guard *g = arg;
    const char *id = g->ids[g->next];
    char why[512], err[384];
    cJSON *o = NULL;
    const cJSON *doc, *name, *hb;
    ias_guardrail *compiled = NULL;
    int rc;

    g->call = NULL;
    if (res->result != IAS_HTTP_OK || res->status != 200) {
        snprintf(why, sizeof(why), "guardrail profile %s: pdp answered %s, status %d", id,
                 ias_http_result_str(res->result), res->status);
        goto fail;
    }
    o = cJSON_ParseWithLength(res->body, res->body_len);
    doc = cJSON_GetObjectItemCaseSensitive(o, "document");
    name = cJSON_GetObjectItemCaseSensitive(o, "name");
    hb = cJSON_GetObjectItemCaseSensitive(o, "holdback");
    if (!cJSON_IsObject(doc)) {
        snprintf(why, sizeof(why), "guardrail profile %s: pdp answer has no document", id);
        goto fail;
    }
    /* holdback is the window pdp validated the profile with */
    if (ias_guardrail_compile(doc, cJSON_IsString(name) ? name->valuestring : id,
                              cJSON_IsNumber(hb) && hb->valuedouble >= 1 &&
                                      hb->valuedouble <= IAS_GR_MAX_HOLDBACK
                                  ? (size_t)hb->valuedouble
                                  : IAS_GR_DEFAULT_HOLDBACK,
                              &compiled, err, sizeof(err)) != IAS_OK) {
        snprintf(why, sizeof(why), "guardrail profile %s does not compile: %s", id, err);
        goto fail;
    }
    cJSON_Delete(o);
    g->ents[g->next] = cache_put(g->w->grc, id, compiled);
    g->next++;
    rc = resolve_next(g, why, sizeof(why));
    if (rc == IAS_AGAIN)
        return;
    g->cb(g, rc, why, g->cb_arg);
    return;
fail:
    cJSON_Delete(o);
    ias_counter_inc(g->ctx->m_gr_fetch_errors);
    ias_warn(g->log, "%s", why);
    g->cb(g, IAS_ERR, why, g->cb_arg);
}

static int resolve_next(router_guard *g, char *why, size_t whylen)
{
    char url[1024];
    ias_http_header h[1];

    for (; g->next < g->nids; g->next++) {
        g->ents[g->next] = cache_get(g->w->grc, g->ids[g->next]);
        if (g->ents[g->next] == NULL)
            break;
    }
    if (g->next == g->nids) {
        resolved(g);
        return IAS_OK;
    }
    if (g->ctx->cfg.pdp_url[0] == '\0') {
        snprintf(why, whylen, "guardrails requested but IAS_PDP_URL is not set");
        return IAS_ERR;
    }
    h[0] = (ias_http_header){"X-Ias-Internal-Token", g->ctx->cfg.internal_token};
    snprintf(url, sizeof(url), "%s/internal/guardrails/%s", g->ctx->cfg.pdp_url, g->ids[g->next]);
    ias_http_request req = {.method = "GET",
                            .url = url,
                            .headers = h,
                            .nheaders = g->ctx->cfg.internal_token[0] ? 1 : 0,
                            .total_ms = (int)g->ctx->cfg.pdp_timeout_ms,
                            .max_body_bytes = GR_MAX_DOC_BYTES};
    g->call = ias_http_client_fetch(g->w->http, &req, on_profile, g);
    if (g->call == NULL) {
        snprintf(why, whylen, "guardrail profile %s: cannot ask pdp", g->ids[g->next]);
        return IAS_ERR;
    }
    return IAS_AGAIN;
}

int router_guard_resolve(router_guard *g, router_ctx *ctx, router_worker *w, const ias_log_ctx *log,
                         router_guard_ready_cb cb, void *arg, char *why, size_t whylen)
{
    g->ctx = ctx;
    g->w = w;
    g->log = log;
    g->cb = cb;
    g->cb_arg = arg;
    return resolve_next(g, why, whylen);
}

void router_guard_cancel(router_guard *g)
{
    if (g != NULL && g->call != NULL) {
        ias_http_call_cancel(g->call);
        g->call = NULL;
    }
}

void router_guard_free(router_guard *g)
{
    if (g == NULL)
        return;
    if (g->call != NULL)
        ias_http_call_cancel(g->call);
    ias_gr_stream_free(g->stream);
    for (size_t i = 0; i < g->nids; i++)
        ent_put(g->ents[i]);
    free(g->out);
    free(g);
}

bool router_guard_has_output(const router_guard *g)
{
    return g != NULL && g->stream != NULL;
}

bool router_guard_has_prompt(const router_guard *g)
{
    for (size_t i = 0; g != NULL && i < g->nids; i++) {
        if (ias_guardrail_prompt_rules(g->profiles[i]) > 0)
            return true;
    }
    return false;
}

/* ---- prompt side ---- */

static void add_viol(router_guard *g, const ias_gr_violation *v, const char *side)
{
    if (g->nviol >= GR_MAX_VIOL)
        return;
    g->viol[g->nviol++] = (gr_viol){v->profile, v->rule_id, v->deny, side};
}

/* Every profile over one string item, in place. IAS_ERR: denied (res says why). */
static int prompt_item(router_guard *g, cJSON *item, ias_gr_prompt_result *res)
{
    char *cur = ias_xstrdup(item->valuestring);

    for (size_t i = 0; i < g->nids; i++) {
        char *next = NULL;
        size_t nlen = 0;

        if (ias_guardrail_prompt(g->profiles[i], cur, &next, &nlen, res) != IAS_OK)
            ias_die("router: guardrail prompt failed (out of memory)");
        if (res->deny || next == NULL) {
            free(next);
            free(cur);
            return IAS_ERR;
        }
        free(cur);
        cur = next;
    }
    if (strcmp(cur, item->valuestring) != 0 && cJSON_SetValuestring(item, cur) == NULL)
        ias_die("router: out of memory");
    free(cur);
    return IAS_OK;
}

static int prompt_content(router_guard *g, cJSON *content, ias_gr_prompt_result *res)
{
    cJSON *part;

    if (cJSON_IsString(content))
        return prompt_item(g, content, res);
    cJSON_ArrayForEach(part, content)
    {
        cJSON *text = cJSON_IsObject(part) ? cJSON_GetObjectItemCaseSensitive(part, "text")
                                           : (cJSON_IsString(part) ? part : NULL);
        if (cJSON_IsString(text) && prompt_item(g, text, res) != IAS_OK)
            return IAS_ERR;
    }
    return IAS_OK;
}

int router_guard_prompt(router_guard *g, cJSON *body, ias_openai_kind kind, char *msg,
                        size_t msglen)
{
    ias_gr_prompt_result res;
    cJSON *m;
    int rc = IAS_OK;

    memset(&res, 0, sizeof(res));
    if (kind == IAS_OPENAI_CHAT) {
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "messages"))
        {
            if ((rc = prompt_content(g, cJSON_GetObjectItemCaseSensitive(m, "content"), &res)) !=
                IAS_OK)
                break;
        }
    } else {
        rc = prompt_content(g,
                            cJSON_GetObjectItemCaseSensitive(
                                body, kind == IAS_OPENAI_EMBEDDING ? "input" : "prompt"),
                            &res);
    }
    for (size_t i = 0; i < res.nv; i++)
        add_viol(g, &res.v[i], "prompt");
    if (rc != IAS_OK) {
        const ias_gr_violation *d = NULL;
        for (size_t i = 0; i < res.nv && d == NULL; i++)
            d = res.v[i].deny ? &res.v[i] : NULL;
        snprintf(msg, msglen, "The prompt was refused by guardrail `%s` (rule `%s`)%s%s",
                 d ? d->profile : "?", d ? d->rule_id : "?",
                 res.message && res.message[0] ? ": " : ".", res.message ? res.message : "");
    }
    return rc;
}

/* ---- output side ---- */

static void out_add(router_guard *g, const char *s, size_t n)
{
    if (g->outlen + n + 1 > g->outcap) {
        size_t cap = g->outcap ? g->outcap : 1024;
        while (cap < g->outlen + n + 1)
            cap *= 2;
        g->out = ias_xrealloc(g->out, cap);
        g->outcap = cap;
    }
    memcpy(g->out + g->outlen, s, n);
    g->outlen += n;
    g->out[g->outlen] = '\0';
}

static void out_event(router_guard *g, const cJSON *chunk)
{
    char *text = cJSON_PrintUnformatted(chunk);

    if (text == NULL)
        ias_die("router: out of memory");
    out_add(g, "data: ", 6);
    out_add(g, text, strlen(text));
    out_add(g, "\n\n", 2);
    free(text);
}

/* Sets the text of choice ch (delta.content or text) to s[0..n). */
static void set_text(cJSON *ch, bool chat, const char *s, size_t n)
{
    cJSON *holder = chat ? cJSON_GetObjectItemCaseSensitive(ch, "delta") : ch;
    const char *key = chat ? "content" : "text";
    char *copy = ias_xmalloc(n + 1);

    if (holder == NULL)
        holder = cJSON_AddObjectToObject(ch, "delta");
    memcpy(copy, s, n);
    copy[n] = '\0';
    cJSON_DeleteItemFromObjectCaseSensitive(holder, key);
    if (cJSON_AddStringToObject(holder, key, copy) == NULL)
        ias_die("router: out of memory");
    free(copy);
}

static void set_finish(cJSON *ch, const char *reason)
{
    cJSON_DeleteItemFromObjectCaseSensitive(ch, "finish_reason");
    if (reason != NULL)
        cJSON_AddStringToObject(ch, "finish_reason", reason);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
}

/* Released text (if any), then the content_filter chunk, then [DONE]. */
static void out_stop(router_guard *g, cJSON *chunk, cJSON *ch, bool chat, const char *rel,
                     size_t rellen)
{
    cJSON_DeleteItemFromObjectCaseSensitive(chunk, "usage");
    if (rellen > 0) {
        set_text(ch, chat, rel, rellen);
        set_finish(ch, NULL);
        out_event(g, chunk);
    }
    if (chat) {
        cJSON_DeleteItemFromObjectCaseSensitive(ch, "delta");
        cJSON_AddObjectToObject(ch, "delta");
    } else {
        set_text(ch, chat, "", 0);
    }
    set_finish(ch, "content_filter");
    out_event(g, chunk);
    out_add(g, "data: [DONE]\n\n", 14);
    g->stopped = true;
}

router_gr_verdict router_guard_event(router_guard *g, bool chat, const char *data, size_t len,
                                     const char **out, size_t *outlen)
{
    cJSON *chunk, *ch, *holder, *fr;
    const cJSON *t;
    const char *txt = "", *rel;
    size_t txtlen = 0, rellen;
    bool final;
    ias_gr_status st;
    router_gr_verdict v = ROUTER_GR_PASS;

    g->outlen = 0;
    *out = NULL;
    *outlen = 0;
    if (g->stream == NULL || g->stopped)
        return ROUTER_GR_PASS;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        /* a stream without a finish_reason chunk: nothing may stay held */
        if (ias_gr_stream_held(g->stream) == 0)
            return ROUTER_GR_PASS;
        st = ias_gr_stream_feed(g->stream, "", 0, true, &rel, &rellen);
        chunk = cJSON_CreateObject();
        cJSON_AddStringToObject(chunk, "object",
                                chat ? "chat.completion.chunk" : "text_completion");
        ch = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(chunk, "choices"), ch);
        cJSON_AddNumberToObject(ch, "index", 0);
        if (st == IAS_GR_STOP) {
            out_stop(g, chunk, ch, chat, rel, rellen);
            v = ROUTER_GR_STOP;
        } else {
            set_text(ch, chat, rel, rellen);
            set_finish(ch, NULL);
            out_event(g, chunk);
            out_add(g, "data: [DONE]\n\n", 14);
            v = ROUTER_GR_REWRITE;
        }
        cJSON_Delete(chunk);
        goto done;
    }
    chunk = cJSON_ParseWithLength(data, len);
    ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(chunk, "choices"), 0);
    if (!cJSON_IsObject(ch)) {
        cJSON_Delete(chunk); /* usage chunk, error, or not JSON: as it is */
        return ROUTER_GR_PASS;
    }
    holder = chat ? cJSON_GetObjectItemCaseSensitive(ch, "delta") : ch;
    t = cJSON_GetObjectItemCaseSensitive(holder, chat ? "content" : "text");
    fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
    final = cJSON_IsString(fr);
    if (cJSON_IsString(t)) {
        txt = t->valuestring;
        txtlen = strlen(txt);
    }
    if (txtlen == 0 && !final) {
        cJSON_Delete(chunk);
        return ROUTER_GR_PASS;
    }
    st = ias_gr_stream_feed(g->stream, txt, txtlen, final, &rel, &rellen);
    if (st == IAS_GR_STOP) {
        out_stop(g, chunk, ch, chat, rel, rellen);
        v = ROUTER_GR_STOP;
    } else if (rellen != txtlen || memcmp(rel, txt, txtlen) != 0) {
        set_text(ch, chat, rel, rellen);
        out_event(g, chunk);
        v = ROUTER_GR_REWRITE;
    }
    cJSON_Delete(chunk);
done:
    *out = g->out;
    *outlen = g->outlen;
    return v;
}

int router_guard_body(router_guard *g, bool chat, const char *body, size_t len, char **out)
{
    cJSON *o, *ch;
    bool changed = false;

    *out = NULL;
    if (g == NULL || g->stream == NULL)
        return IAS_OK;
    o = cJSON_ParseWithLength(body, len);
    cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(o, "choices"))
    {
        cJSON *holder = chat ? cJSON_GetObjectItemCaseSensitive(ch, "message") : ch;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(holder, chat ? "content" : "text");
        const ias_gr_violation *v;
        const char *rel;
        size_t rellen, nv, tlen;
        ias_gr_stream *s;
        ias_gr_status st;

        if (!cJSON_IsString(t))
            continue;
        s = ias_gr_stream_new(g->profiles, g->nids, IAS_GR_MAX_HOLDBACK);
        if (s == NULL)
            ias_die("router: out of memory");
        tlen = strlen(t->valuestring);
        st = ias_gr_stream_feed(s, t->valuestring, tlen, true, &rel, &rellen);
        if (st == IAS_GR_STOP || rellen != tlen || memcmp(rel, t->valuestring, tlen) != 0) {
            char *copy = ias_xmalloc(rellen + 1);
            memcpy(copy, rel, rellen);
            copy[rellen] = '\0';
            cJSON_DeleteItemFromObjectCaseSensitive(holder, chat ? "content" : "text");
            cJSON_AddStringToObject(holder, chat ? "content" : "text", copy);
            free(copy);
            if (st == IAS_GR_STOP)
                set_finish(ch, "content_filter");
            changed = true;
        }
        nv = ias_gr_stream_violations(s, &v);
        for (size_t i = 0; i < nv; i++)
            add_viol(g, &v[i], "output");
        ias_gr_stream_free(s);
    }
    if (changed && (*out = cJSON_PrintUnformatted(o)) == NULL)
        ias_die("router: out of memory");
    cJSON_Delete(o);
    return IAS_OK;
}

/* ---- audit ---- */

static void publish_one(router_guard *g, router_ctx *ctx, const router_guard_who *who,
                        const gr_viol *v)
{
    char eid[IAS_UUID_STR_LEN + 1], rk[128];
    const char *pid = "";
    cJSON *o, *x = cJSON_CreateObject();
    char *text;

    for (size_t i = 0; i < g->nids; i++)
        if (ias_guardrail_name(g->profiles[i]) == v->profile)
            pid = g->ids[i];
    cJSON_AddStringToObject(x, "profile", v->profile);
    cJSON_AddStringToObject(x, "rule", v->rule_id);
    cJSON_AddStringToObject(x, "action", v->deny ? "deny" : "redact");
    cJSON_AddStringToObject(x, "side", v->side);
    cJSON_AddStringToObject(x, "model", who->model);
    if (who->user_id[0])
        cJSON_AddStringToObject(x, "user_id", who->user_id);
    o = ias_audit_event_new(
        &(ias_audit_fields){.service = "router",
                            .actor_type = who->key_id[0] ? "api_key" : "user",
                            .actor_id = who->key_id[0] ? who->key_id : who->user_id,
                            .org_id = who->org_id,
                            .action = "guardrail_violation",
                            .resource_type = "guardrail",
                            .resource_id = pid[0] ? pid : v->profile,
                            .request_id = who->request_id,
                            .outcome = v->deny ? "denied" : "success"},
        x, eid);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL)
        ias_die("router: out of memory");
    ias_counter_inc(v->deny ? ctx->m_gr_blocked : ctx->m_gr_redacted);
    if (ias_amqp_audit_key(rk, sizeof(rk), "router", "guardrail_violation") != IAS_OK ||
        ias_publisher_publish(ctx->pub, rk, eid, IAS_EVENT_AUDIT_V1, text, strlen(text)) != IAS_OK)
        ias_error(NULL, "audit event %s (guardrail violation of request %s) lost", eid,
                  who->request_id);
    free(text);
}

void router_guard_publish(router_guard *g, router_ctx *ctx, const router_guard_who *who)
{
    const ias_gr_violation *v;
    size_t nv;

    if (g == NULL)
        return;
    if (g->stream != NULL) {
        nv = ias_gr_stream_violations(g->stream, &v);
        for (size_t i = 0; i < nv; i++)
            add_viol(g, &v[i], "output");
    }
    for (size_t i = 0; i < g->nviol; i++)
        publish_one(g, ctx, who, &g->viol[i]);
    g->nviol = 0;
}
