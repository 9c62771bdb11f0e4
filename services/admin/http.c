/* libcurl easy wrapper: one handle per run (keep-alive across the calls of a
 * command), JSON in and out, bearer tokens with automatic refresh. Tokens
 * never reach stdout or stderr: curl's verbose mode stays off and errors print
 * only the problem document the server sent. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ADMIN_TIMEOUT_S 60L
#define ADMIN_CONNECT_TIMEOUT_S 10L
/* Refresh a little before the server would refuse the token. */
#define ADMIN_EXPIRY_SLACK_S 30

typedef struct sink {
    char *buf;
    size_t len, cap;
    bool over;
} sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    sink *s = user;
    size_t n = size * nmemb;
    if (s->len + n + 1 > ADMIN_RESPONSE_MAX) {
        s->over = true;
        return 0; /* aborts the transfer */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        s->buf = ias_xrealloc(s->buf, cap);
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

void admin_resp_free(admin_resp *r)
{
    free(r->body);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof(*r));
}

char *admin_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e)
        ias_die("out of memory");
    char *out = ias_xstrdup(e);
    curl_free(e);
    return out;
}

char *admin_path_query(const char *path, const char *const *kv)
{
    size_t cap = strlen(path) + 1;
    char *out = ias_xstrdup(path);
    bool first = strchr(path, '?') == NULL;

    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (!kv[i + 1])
            continue;
        char *v = admin_escape(kv[i + 1]);
        size_t add = strlen(kv[i]) + strlen(v) + 3;
        out = ias_xrealloc(out, cap + add);
        snprintf(out + cap - 1, add, "%c%s=%s", first ? '?' : '&', kv[i], v);
        cap += add - 1;
        first = false;
        free(v);
    }
    return out;
}

/* One request, no token logic. */
static int perform(admin_ctx *ctx, const char *method, const char *path, const cJSON *body,
                   const char *token, admin_resp *out)
{
    CURL *c = ctx->curl;
    struct curl_slist *hdrs = NULL;
    char *payload = NULL;
    char *url = NULL;
    char *auth = NULL;
    sink s = {0};
    CURLcode cc;
    int rc = IAS_ERR;

    memset(out, 0, sizeof(*out));
    if (!c) {
        c = curl_easy_init();
        if (!c) {
            fprintf(stderr, "ias-admin: cannot initialise libcurl\n");
            return IAS_ERR;
        }
        ctx->curl = c;
    }
    curl_easy_reset(c);
    url = ias_xasprintf("%s%s", ctx->base_url, path);
    hdrs = curl_slist_append(hdrs, "Accept: application/json, application/problem+json");
    if (body) {
        payload = cJSON_PrintUnformatted(body);
        if (!payload)
            ias_die("out of memory");
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    }
    if (ctx->extra_header)
        hdrs = curl_slist_append(hdrs, ctx->extra_header);
    if (token) {
        auth = ias_xasprintf("Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (!hdrs)
        ias_die("out of memory");
    if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &s) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT, ADMIN_TIMEOUT_S) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, ADMIN_CONNECT_TIMEOUT_S) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_USERAGENT, "ias-admin/1") != CURLE_OK ||
        /* Never follow redirects: the bearer token must not travel elsewhere. */
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK) {
        fprintf(stderr, "ias-admin: libcurl refused an option\n");
        goto done;
    }
    if (strcmp(method, "HEAD") == 0 && curl_easy_setopt(c, CURLOPT_NOBODY, 1L) != CURLE_OK)
        goto done;
    if (payload) {
        if (curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload)) != CURLE_OK)
            goto done;
    }
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        if (s.over)
            fprintf(stderr, "ias-admin: response from %s larger than %u bytes\n", ctx->base_url,
                    ADMIN_RESPONSE_MAX);
        else
            fprintf(stderr, "ias-admin: %s %s%s: %s\n", method, ctx->base_url, path,
                    curl_easy_strerror(cc));
        goto done;
    }
    if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status) != CURLE_OK)
        goto done;
    out->body = s.buf;
    out->len = s.len;
    s.buf = NULL;
    if (out->body && out->len > 0)
        out->json = cJSON_ParseWithLength(out->body, out->len);
    rc = IAS_OK;
done:
    free(s.buf);
    if (auth) {
        memset(auth, 0, strlen(auth));
        free(auth);
    }
    curl_slist_free_all(hdrs);
    cJSON_free(payload);
    free(url);
    return rc;
}

/* Stores the tokens of a login or refresh answer. */
static int take_tokens(admin_ctx *ctx, const cJSON *j)
{
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(j, "refresh_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");

    if (!cJSON_IsString(at) || !at->valuestring[0]) {
        fprintf(stderr, "ias-admin: the server's token answer has no access_token\n");
        return IAS_ERR;
    }
    admin_creds_clear(&ctx->creds);
    if (ias_strlcpy(ctx->creds.base_url, ctx->base_url, sizeof(ctx->creds.base_url)) != IAS_OK)
        return IAS_ERR;
    ctx->creds.access_token = ias_xstrdup(at->valuestring);
    ctx->creds.refresh_token =
        cJSON_IsString(rt) && rt->valuestring[0] ? ias_xstrdup(rt->valuestring) : NULL;
    ctx->creds.expires_at =
        cJSON_IsNumber(exp) ? (int64_t)time(NULL) + (int64_t)exp->valuedouble : 0;
    ctx->have_creds = true;
    return admin_creds_save(ctx->creds_path, &ctx->creds);
}

int admin_store_login(admin_ctx *ctx, const char *email, const cJSON *tokens)
{
    if (ias_strlcpy(ctx->creds.email, email, sizeof(ctx->creds.email)) != IAS_OK)
        return IAS_ERR;
    return take_tokens(ctx, tokens);
}

/* Exchanges the refresh token; IAS_OK when a new access token is stored. */
static int refresh(admin_ctx *ctx)
{
    admin_resp r;
    cJSON *body;
    int rc = IAS_ERR;

    if (!ctx->have_creds || !ctx->creds.refresh_token)
        return IAS_ERR;
    body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "refresh_token", ctx->creds.refresh_token);
    if (perform(ctx, "POST", "/api/v1/auth/refresh", body, NULL, &r) == IAS_OK) {
        if (r.status == 200 && r.json) {
            rc = take_tokens(ctx, r.json); /* keeps the email, saves the file */
        } else if (r.status == 401) {
            /* Expired, revoked or reused: the session is over. */
            fprintf(stderr, "ias-admin: the session expired; run 'ias-admin login' again\n");
        }
        if (r.body)
            explicit_bzero(r.body, r.len); /* it held the new tokens */
        admin_resp_free(&r);
    }
    /* cJSON_AddStringToObject copied the token: wipe the copy too. */
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "refresh_token");
    if (cJSON_IsString(t))
        memset(t->valuestring, 0, strlen(t->valuestring));
    cJSON_Delete(body);
    return rc;
}

int admin_http(admin_ctx *ctx, const char *method, const char *path, const cJSON *body, bool auth,
               admin_resp *out)
{
    const char *env_token = getenv("IAS_ACCESS_TOKEN");
    bool refreshed = false;

    if (auth && env_token && env_token[0])
        return perform(ctx, method, path, body, env_token, out);
    if (auth && ctx->have_creds && ctx->creds.expires_at > 0 &&
        (int64_t)time(NULL) >= ctx->creds.expires_at - ADMIN_EXPIRY_SLACK_S) {
        refreshed = refresh(ctx) == IAS_OK;
    }
    const char *token = auth && ctx->have_creds ? ctx->creds.access_token : NULL;
    if (perform(ctx, method, path, body, token, out) != IAS_OK)
        return IAS_ERR;
    if (out->status == 401 && token && !refreshed && ctx->creds.refresh_token) {
        /* The server may have restarted with a new secret or shortened the TTL. */
        if (refresh(ctx) == IAS_OK) {
            admin_resp_free(out);
            return perform(ctx, method, path, body, ctx->creds.access_token, out);
        }
    }
    return IAS_OK;
}

int admin_call(admin_ctx *ctx, const char *method, const char *path, const cJSON *body,
               admin_resp *out)
{
    if (admin_http(ctx, method, path, body, true, out) != IAS_OK)
        return IAS_ERR;
    if (out->status >= 200 && out->status < 300)
        return IAS_OK;
    admin_print_problem(stderr, out->status, out->body, out->len);
    if (out->status == 401 && !ctx->have_creds && !getenv("IAS_ACCESS_TOKEN"))
        fprintf(stderr, "hint: not logged in to %s; run 'ias-admin login'\n", ctx->base_url);
    admin_resp_free(out);
    return IAS_ERR;
}
