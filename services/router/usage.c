/* Usage extraction and the usage event (pure; see usage.h). */
#include "usage.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "ias/common.h"

/* No CR anywhere (what every backend we know sends): line ends are LFs only,
 * found with memchr; an event ends at the first empty line. */
static size_t event_end_lf(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return 0;
        if (nl == p)
            return (size_t)(nl - buf) + 1; /* an empty line dispatches the event */
        p = nl + 1;
        if (p < end && *p == '\n')
            return (size_t)(p - buf) + 1;
    }
    return 0;
}

size_t router_sse_event_end(const char *buf, size_t len)
{
    bool line_start = true;

    if (memchr(buf, '\r', len) == NULL)
        return event_end_lf(buf, len);

    for (size_t i = 0; i < len; i++) {
        char c = buf[i];

        if (c != '\n' && c != '\r') {
            line_start = false;
            continue;
        }
        size_t end = i + 1;
        if (c == '\r') {
            if (i + 1 == len)
                return 0; /* a CR at the end may be the first half of CRLF */
            if (buf[i + 1] == '\n')
                end = i + 2;
        }
        if (line_start)
            return end; /* an empty line dispatches the event */
        line_start = true;
        i = end - 1;
    }
    return 0;
}

static bool nonempty_string(const cJSON *v)
{
    return cJSON_IsString(v) && v->valuestring != NULL && v->valuestring[0] != '\0';
}

static void count_choices(router_usage *u, const cJSON *choices)
{
    const cJSON *c;

    cJSON_ArrayForEach(c, choices)
    {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c, "delta");
        const cJSON *message = cJSON_GetObjectItemCaseSensitive(c, "message");

        if (nonempty_string(cJSON_GetObjectItemCaseSensitive(c, "text")) ||
            (delta && nonempty_string(cJSON_GetObjectItemCaseSensitive(delta, "content"))) ||
            (message && nonempty_string(cJSON_GetObjectItemCaseSensitive(message, "content"))))
            u->counted++;
    }
}

static void read_usage(router_usage *u, const cJSON *usage)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");

    if (!cJSON_IsObject(usage) || !cJSON_IsNumber(p) || !cJSON_IsNumber(c) || p->valuedouble < 0 ||
        c->valuedouble < 0)
        return;
    u->have_usage = true;
    u->prompt = (long long)p->valuedouble;
    u->completion = (long long)c->valuedouble;
}

static size_t count_substr(const char *data, size_t len, const char *needle, const char **first)
{
    size_t n = 0, nl = strlen(needle);
    const char *p = data, *end = data + len;

    *first = NULL;
    while (p < end) {
        const char *m = memmem(p, (size_t)(end - p), needle, nl);
        if (m == NULL)
            break;
        if (n++ == 0)
            *first = m;
        p = m + nl;
    }
    return n;
}

/* The common chunk, {..."choices":[{"index":0,"delta":{"content":"..."},...}]}
 * with no usage, counted without building a cJSON tree. An unescaped `"` cannot
 * occur inside a JSON string, so `"content":"` in the raw bytes is a key
 * followed by a string value. Anything less plain (no compact "choices", more
 * than one choice, "text"/"message" choices, logprobs, tool calls, a usage
 * object, whitespace around the colon) returns false and takes the full parse. */
static bool usage_chunk_fast(router_usage *u, const char *data, size_t len)
{
    const char *m, *content;
    size_t nc;

    if (len < 2 || data[0] != '{' || memmem(data, len, "\"usage\"", 7) != NULL ||
        count_substr(data, len, "\"choices\":[", &m) != 1 ||
        count_substr(data, len, "\"choices\"", &m) != 1 ||
        memmem(data, len, "\"text\"", 6) != NULL || memmem(data, len, "\"message\"", 9) != NULL ||
        count_substr(data, len, "\"index\"", &m) > 1)
        return false;
    nc = count_substr(data, len, "\"content\"", &content);
    if (nc == 0)
        return true;
    if (nc != 1)
        return false;
    m = content + 9; /* after "content" */
    if ((size_t)(data + len - m) >= 3 && m[0] == ':' && m[1] == '"') {
        if (m[2] != '"')
            u->counted++;
        return true;
    }
    return (size_t)(data + len - m) >= 5 && memcmp(m, ":null", 5) == 0;
}

int router_usage_chunk(router_usage *u, const char *data, size_t len, bool *usage_only)
{
    cJSON *root;
    const cJSON *choices, *usage;

    *usage_only = false;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        u->done = true;
        return IAS_OK;
    }
    if (usage_chunk_fast(u, data, len))
        return IAS_OK;
    root = cJSON_ParseWithLength(data, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return IAS_ERR;
    }
    choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (cJSON_IsObject(usage)) {
        read_usage(u, usage);
        *usage_only =
            choices == NULL || (cJSON_IsArray(choices) && cJSON_GetArraySize(choices) == 0);
    }
    if (cJSON_IsArray(choices))
        count_choices(u, choices);
    cJSON_Delete(root);
    return IAS_OK;
}

int router_usage_body(router_usage *u, const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *choices;

    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return IAS_ERR;
    }
    read_usage(u, cJSON_GetObjectItemCaseSensitive(root, "usage"));
    choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (cJSON_IsArray(choices))
        count_choices(u, choices);
    u->done = true;
    cJSON_Delete(root);
    return IAS_OK;
}

long long router_usage_completion(const router_usage *u, bool complete)
{
    if (u->have_usage && complete)
        return u->completion;
    return u->counted;
}

static void add_str(cJSON *o, const char *name, const char *v)
{
    if (v == NULL || v[0] == '\0')
        cJSON_AddNullToObject(o, name);
    else
        cJSON_AddStringToObject(o, name, v);
}

char *router_usage_event_json(const router_usage_event *e)
{
    cJSON *o = cJSON_CreateObject();
    char when[32];
    char *out;

    if (o == NULL)
        ias_die("router: out of memory");
    ias_iso8601_ms(e->occurred_wall_ms, when, sizeof(when));
    cJSON_AddStringToObject(o, "event_id", e->event_id);
    cJSON_AddStringToObject(o, "occurred_at", when);
    cJSON_AddStringToObject(o, "request_id", e->request_id);
    cJSON_AddStringToObject(o, "org_id", e->org_id);
    add_str(o, "user_id", e->user_id);
    add_str(o, "api_key_id", e->api_key_id);
    cJSON_AddStringToObject(o, "model", e->model);
    add_str(o, "backend", e->backend);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)e->prompt_tokens);
    cJSON_AddNumberToObject(o, "completion_tokens", (double)e->completion_tokens);
    cJSON_AddNumberToObject(o, "status", e->status);
    if (e->ttft_ms < 0)
        cJSON_AddNullToObject(o, "ttft_ms");
    else
        cJSON_AddNumberToObject(o, "ttft_ms", (double)e->ttft_ms);
    cJSON_AddNumberToObject(o, "duration_ms", (double)e->duration_ms);
    cJSON_AddBoolToObject(o, "stream", e->stream);
    cJSON_AddBoolToObject(o, "aborted", e->aborted);
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (out == NULL)
        ias_die("router: out of memory");
    return out;
}
