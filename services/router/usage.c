/* Usage extraction and the usage event (pure; see usage.h). */
#include "usage.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ias/common.h"
#include "ias/jsonw.h"

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

/* Far above any context window, far below LLONG_MAX. */
#define USAGE_TOKENS_MAX 1e12

static void read_usage(router_usage *u, const cJSON *usage)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");

    /* Out of range (negative, NaN, or past any real count: a cast of 1e128 to
     * long long is undefined) is no usage: the router counts for itself. */
    if (!cJSON_IsObject(usage) || !cJSON_IsNumber(p) || !cJSON_IsNumber(c) ||
        !(p->valuedouble >= 0 && p->valuedouble <= USAGE_TOKENS_MAX) ||
        !(c->valuedouble >= 0 && c->valuedouble <= USAGE_TOKENS_MAX))
        return;
    u->have_usage = true;
    u->prompt = (long long)p->valuedouble;
    u->completion = (long long)c->valuedouble;
}

/* Marks the bytes of w that are '"', '\\' or below ' ' with their top bit,
 * 8 bytes at once: per byte, (x - 1) & ~x has its top bit set when x was 0,
 * and (w - 0x20) & ~w when the byte was below 0x20. A borrow can only mark
 * bytes above a true match, so in little-endian order the lowest mark is
 * always a true one. */
static uint64_t word_specials(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');

    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * ' ') & ~w)) & high;
}

/* The end of the string whose opening quote is at p (the closing quote), or
 * NULL; *escaped tells whether it holds a backslash or a control byte, i.e.
 * whether its raw bytes may differ from what cJSON makes of them. Plain bytes
 * are skipped 8 at a time: a byte at a time, this scan was most of the
 * router's cost per stream chunk. */
static const char *string_end(const char *p, const char *end, bool *escaped)
{
    const char *q = p + 1;
    bool esc = false;

    while (q < end) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (end - q >= 8) {
            uint64_t w, m;

            memcpy(&w, q, sizeof(w));
            m = word_specials(w);
            if (m == 0) {
                q += 8;
                continue;
            }
            q += __builtin_ctzll(m) / 8; /* the first special byte */
        }
#endif
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            *escaped = esc;
            return q;
        }
        if (c == '\\') {
            esc = true;
            if (end - q < 2)
                break;
            q += 2; /* the escaped byte, whatever it is */
            continue;
        }
        if (c < ' ')
            esc = true;
        q++;
    }
    *escaped = esc;
    return NULL;
}

/* cJSON's notion of whitespace: every byte up to and including the space. */
static bool is_space(char c)
{
    return (unsigned char)c <= ' ';
}

/* The length test first, and a memcmp of constant size the compiler inlines. */
#define KEY_IS(k, n, lit) ((n) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

enum { FAST_MAX_DEPTH = 16 };

/* The bytes the scan stops at; everything else is skipped in a tight loop. */
static const bool fast_structural[256] = {
    ['{'] = true, ['}'] = true, ['['] = true, [']'] = true, ['"'] = true};

/* The common chunk, {..."choices":[{"index":0,"delta":{"content":"..."},...}]}
 * without usage, counted by one scan of the bytes that follows the nesting
 * instead of a cJSON tree. It counts exactly what count_choices would for a
 * valid JSON object, or returns false and leaves the chunk to the full parse:
 * a "usage" member, more than one choice, "text"/"message" choices, a key
 * with an escape in it, a content value starting with an escape, nesting
 * deeper than FAST_MAX_DEPTH. */
static bool usage_chunk_fast(router_usage *u, const char *data, size_t len)
{
    /* role of each open container: */
    enum { R_OTHER = 0, R_ROOT, R_CHOICES, R_CHOICE, R_DELTA };
    unsigned char role[FAST_MAX_DEPTH];
    const char *end = data + len, *key = NULL;
    size_t keylen = 0, nchoices = 0, nchoices_keys = 0, ndelta_keys = 0;
    int depth = 0;
    bool counted_one = false, content_seen = false;

    if (len < 2 || data[0] != '{')
        return false;
    for (const char *p = data; p < end; p++) {
        char c;

        while (p < end && !fast_structural[(unsigned char)*p])
            p++; /* numbers, literals, commas, whitespace */
        if (p == end)
            break;
        c = *p;
        if (c == '{' || c == '[') {
            unsigned char r = R_OTHER, parent = depth > 0 ? role[depth - 1] : R_OTHER;
            if (depth == FAST_MAX_DEPTH)
                return false;
            if (depth == 0)
                r = c == '{' ? R_ROOT : R_OTHER;
            else if (parent == R_ROOT && c == '[' && key && KEY_IS(key, keylen, "choices"))
                r = R_CHOICES;
            else if (parent == R_CHOICES && c == '{') {
                r = R_CHOICE;
                if (++nchoices > 1)
                    return false;
            } else if (parent == R_CHOICE && c == '{' && key && KEY_IS(key, keylen, "delta"))
                r = R_DELTA;
            role[depth++] = r;
            key = NULL;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return false;
            depth--;
            key = NULL;
            if (depth == 0)
                break; /* the root closed; like cJSON, ignore what follows */
        } else if (c == '"') {
            bool escaped;
            const char *q = string_end(p, end, &escaped), *after;
            unsigned char in = depth > 0 ? role[depth - 1] : R_OTHER;

            if (q == NULL)
                return false;
            after = q + 1;
            while (after < end && is_space(*after))
                after++;
            if (after < end && *after == ':' &&
                (in == R_ROOT || in == R_CHOICE || in == R_DELTA || in == R_OTHER)) {
                if (escaped && in != R_OTHER)
                    return false; /* compared raw, a key must be plain */
                key = p + 1;
                keylen = (size_t)(q - p - 1);
                if (in == R_ROOT && KEY_IS(key, keylen, "usage"))
                    return false;
                /* cJSON reads the first of duplicate keys: leave those to it */
                if ((in == R_ROOT && KEY_IS(key, keylen, "choices") && nchoices_keys++ > 0) ||
                    (in == R_CHOICE && KEY_IS(key, keylen, "delta") && ndelta_keys++ > 0))
                    return false;
                if (in == R_CHOICE &&
                    (KEY_IS(key, keylen, "text") || KEY_IS(key, keylen, "message")))
                    return false;
                p = after; /* the colon */
                if (in == R_DELTA && KEY_IS(key, keylen, "content") && !content_seen) {
                    const char *v = after + 1;
                    content_seen = true;
                    while (v < end && is_space(*v))
                        v++;
                    if (v + 1 < end && *v == '"') {
                        if (v[1] == '\\' || (v[1] != '"' && (unsigned char)v[1] < ' '))
                            return false; /* "\u0000..." would be empty to cJSON */
                        counted_one = v[1] != '"';
                    }
                }
                continue;
            }
            p = q; /* a value: skip it */
        }
    }
    if (depth != 0)
        return false;
    if (counted_one)
        u->counted++;
    return true;
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

/* Written directly, one event per request: a cJSON tree cost ~20 small
 * allocations here. */
char *router_usage_event_json(const router_usage_event *e)
{
    ias_jsonw w;
    char when[32];

    ias_iso8601_ms(e->occurred_wall_ms, when, sizeof(when));
    ias_jsonw_begin(&w, 512);
    ias_jsonw_str(&w, "event_id", e->event_id);
    ias_jsonw_str(&w, "occurred_at", when);
    ias_jsonw_str(&w, "request_id", e->request_id);
    ias_jsonw_str(&w, "org_id", e->org_id);
    ias_jsonw_str_or_null(&w, "user_id", e->user_id);
    ias_jsonw_str_or_null(&w, "api_key_id", e->api_key_id);
    ias_jsonw_str(&w, "model", e->model);
    ias_jsonw_str_or_null(&w, "backend", e->backend);
    ias_jsonw_int(&w, "prompt_tokens", e->prompt_tokens);
    ias_jsonw_int(&w, "completion_tokens", e->completion_tokens);
    ias_jsonw_int(&w, "status", e->status);
    if (e->ttft_ms < 0)
        ias_jsonw_null(&w, "ttft_ms");
    else
        ias_jsonw_int(&w, "ttft_ms", e->ttft_ms);
    ias_jsonw_int(&w, "duration_ms", e->duration_ms);
    ias_jsonw_bool(&w, "stream", e->stream);
    ias_jsonw_bool(&w, "aborted", e->aborted);
    return ias_jsonw_end(&w);
}
