/* Usage extraction and the usage event (pure; see usage.h). */
#include "usage.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ias/common.h"
#include "ias/json_scan.h"
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

size_t router_sse_event_end_lf(const char *buf, size_t len)
{
    return event_end_lf(buf, len);
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

/* Out of range (negative, NaN, or past any real count: a cast of 1e128 to
 * long long is undefined) is no usage: the router counts for itself. */
static void set_usage(router_usage *u, double p, double c)
{
    if (!(p >= 0 && p <= USAGE_TOKENS_MAX) || !(c >= 0 && c <= USAGE_TOKENS_MAX))
        return;
    u->have_usage = true;
    u->prompt = (long long)p;
    u->completion = (long long)c;
}

static void read_usage(router_usage *u, const cJSON *usage)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");

    if (cJSON_IsObject(usage) && cJSON_IsNumber(p) && cJSON_IsNumber(c))
        set_usage(u, p->valuedouble, c->valuedouble);
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
    const char *end = data + len, *key = NULL, *start = data;
    size_t keylen = 0, nchoices = 0, nchoices_keys = 0, ndelta_keys = 0;
    int depth = 0;
    bool counted_one = false, content_seen = false, resumed = false;
    router_chunk_memo *m = &u->memo;

    _Static_assert((int)ROUTER_MEMO_DEPTH == (int)FAST_MAX_DEPTH,
                   "the memo holds the scan's roles");
    if (len < 2 || data[0] != '{')
        return false;
    if (m->len > 0 && len > m->len && memcmp(data, m->prefix, m->len) == 0) {
        /* the bytes before the memo's point are this chunk's too: so is the state */
        depth = m->depth;
        memcpy(role, m->role, sizeof(role));
        key = m->key_set ? data + m->key_off : NULL;
        keylen = m->keylen;
        nchoices = m->nchoices;
        nchoices_keys = m->nchoices_keys;
        ndelta_keys = m->ndelta_keys;
        start = data + m->len;
        resumed = true;
    }
    for (const char *p = start; p < end; p++) {
        char c;

        while (p < end && !fast_structural[(unsigned char)*p])
            p++; /* numbers, literals, commas, whitespace */
        if (p == end)
            break;
        c = *p;
        if (!resumed && c == '"' && depth > 0 && role[depth - 1] == R_DELTA && !content_seen &&
            (size_t)(p - data) <= sizeof(m->prefix) && end - p > 9 &&
            memcmp(p, "\"content\"", 9) == 0) {
            /* remember the state here for the stream's next chunks */
            resumed = true; /* once per chunk */
            m->len = (size_t)(p - data);
            memcpy(m->prefix, data, m->len);
            m->depth = depth;
            memcpy(m->role, role, sizeof(role));
            m->key_set = key != NULL;
            m->key_off = key ? (size_t)(key - data) : 0;
            m->keylen = keylen;
            m->nchoices = nchoices;
            m->nchoices_keys = nchoices_keys;
            m->ndelta_keys = ndelta_keys;
        }
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

/* ---- the same reading on the raw bytes (ias/json_scan.h) ---- */

/* What one response document says, gathered before anything is applied: the
 * scan may still refuse a later byte. */
typedef struct scan_result {
    bool usage_object; /* the first "usage" member is an object */
    bool have_usage;   /* ... with numbers as prompt_tokens and completion_tokens */
    bool have_prompt;  /* ... with a number as prompt_tokens (embeddings have no completion) */
    double prompt, completion;
    bool choices_seen;  /* there is a "choices" member */
    bool choices_array; /* the first one is an array */
    size_t nchoices;    /* of its elements */
    long long counted;  /* choices with non-empty text, as count_choices */
} scan_result;

/* Each reader below walks into the value its caller's cursor just returned
 * and takes the first member of each name it cares about, as
 * cJSON_GetObjectItemCaseSensitive does; later duplicates are only checked. */

static int scan_usage(ias_json_cursor *cur, const char *s, scan_result *r)
{
    ias_json_cursor obj;
    ias_json_item it;
    bool seen_p = false, seen_c = false, num_p = false, num_c = false;
    double p = 0, c = 0;
    int rc;

    if (ias_json_scan_enter(cur, &obj) != IAS_OK)
        return IAS_ERR;
    while ((rc = ias_json_scan_next(&obj, &it)) == IAS_OK) {
        bool *seen = NULL, *num = NULL;
        double *v = NULL;

        if (!seen_p && ias_json_scan_key_is(s, it.key, "prompt_tokens")) {
            seen = &seen_p, num = &num_p, v = &p;
        } else if (!seen_c && ias_json_scan_key_is(s, it.key, "completion_tokens")) {
            seen = &seen_c, num = &num_c, v = &c;
        } else {
            continue;
        }
        *seen = true;
        if (it.type == IAS_JSON_NUMBER) {
            if (ias_json_scan_number(s, it.value, v) != IAS_OK)
                return IAS_ERR;
            *num = true;
        }
    }
    if (rc != IAS_JSON_DONE)
        return IAS_ERR;
    ias_json_scan_leave(cur, &obj);
    if (num_p) {
        r->have_prompt = true;
        r->prompt = p;
    }
    if (num_p && num_c) {
        r->have_usage = true; /* set_usage checks the range */
        r->completion = c;
    }
    return IAS_OK;
}

/* The first "content" of the object value cur just returned is a non-empty
 * string. */
static int scan_content(ias_json_cursor *cur, const char *s, bool *nonempty)
{
    ias_json_cursor obj;
    ias_json_item it;
    bool seen = false;
    int rc;

    if (ias_json_scan_enter(cur, &obj) != IAS_OK)
        return IAS_ERR;
    while ((rc = ias_json_scan_next(&obj, &it)) == IAS_OK) {
        if (seen || !ias_json_scan_key_is(s, it.key, "content"))
            continue;
        seen = true;
        if (it.type == IAS_JSON_STRING && ias_json_scan_string_nonempty(s, it.value))
            *nonempty = true;
    }
    if (rc != IAS_JSON_DONE)
        return IAS_ERR;
    ias_json_scan_leave(cur, &obj);
    return IAS_OK;
}

/* One element of "choices", as count_choices judges it: the first "text" a
 * non-empty string, or the first "delta" / "message" an object whose first
 * "content" is one. */
static int scan_choice(ias_json_cursor *cur, const char *s, bool *counts)
{
    ias_json_cursor obj;
    ias_json_item it;
    bool seen_text = false, seen_delta = false, seen_message = false;
    int rc;

    if (ias_json_scan_enter(cur, &obj) != IAS_OK)
        return IAS_ERR;
    while ((rc = ias_json_scan_next(&obj, &it)) == IAS_OK) {
        bool *seen;

        if (ias_json_scan_key_is(s, it.key, "text"))
            seen = &seen_text;
        else if (ias_json_scan_key_is(s, it.key, "delta"))
            seen = &seen_delta;
        else if (ias_json_scan_key_is(s, it.key, "message"))
            seen = &seen_message;
        else
            continue;
        if (*seen)
            continue;
        *seen = true;
        if (it.type == IAS_JSON_STRING && seen == &seen_text)
            *counts = *counts || ias_json_scan_string_nonempty(s, it.value);
        else if (it.type == IAS_JSON_OBJECT && seen != &seen_text &&
                 scan_content(&obj, s, counts) != IAS_OK)
            return IAS_ERR;
    }
    if (rc != IAS_JSON_DONE)
        return IAS_ERR;
    ias_json_scan_leave(cur, &obj);
    return IAS_OK;
}

static int scan_choices(ias_json_cursor *cur, const char *s, scan_result *r)
{
    ias_json_cursor arr;
    ias_json_item it;
    int rc;

    if (ias_json_scan_enter(cur, &arr) != IAS_OK)
        return IAS_ERR;
    while ((rc = ias_json_scan_next(&arr, &it)) == IAS_OK) {
        bool counts = false;

        r->nchoices++;
        if (it.type != IAS_JSON_OBJECT)
            continue;
        if (scan_choice(&arr, s, &counts) != IAS_OK)
            return IAS_ERR;
        if (counts)
            r->counted++;
    }
    if (rc != IAS_JSON_DONE)
        return IAS_ERR;
    ias_json_scan_leave(cur, &arr);
    return IAS_OK;
}

/* Reads "usage" and "choices" of a response document without a tree.
 * IAS_OK: an object, read into *r; IAS_ERR: valid JSON but no object (cJSON
 * would say the same); IAS_AGAIN: the strict scan refused the bytes, so only
 * cJSON can tell what they mean. */
static int scan_response(const char *s, size_t len, scan_result *r)
{
    ias_json_cursor root;
    ias_json_item it;
    bool seen_usage = false;
    int rc;

    memset(r, 0, sizeof(*r));
    if (ias_json_scan_open(&root, s, len) != IAS_OK || root.close != '}')
        return ias_json_scan_document(s, len, NULL, NULL) ? IAS_ERR : IAS_AGAIN;
    while ((rc = ias_json_scan_next(&root, &it)) == IAS_OK) {
        if (!seen_usage && ias_json_scan_key_is(s, it.key, "usage")) {
            seen_usage = true;
            if (it.type == IAS_JSON_OBJECT) {
                r->usage_object = true;
                if (scan_usage(&root, s, r) != IAS_OK)
                    return IAS_AGAIN;
            }
        } else if (!r->choices_seen && ias_json_scan_key_is(s, it.key, "choices")) {
            r->choices_seen = true;
            if (it.type == IAS_JSON_ARRAY) {
                r->choices_array = true;
                if (scan_choices(&root, s, r) != IAS_OK)
                    return IAS_AGAIN;
            }
        }
    }
    return rc == IAS_JSON_DONE ? IAS_OK : IAS_AGAIN;
}

static void apply_scan(router_usage *u, const scan_result *r)
{
    if (r->have_usage)
        set_usage(u, r->prompt, r->completion);
    u->counted += r->counted;
}

/* The reference: a cJSON tree of the chunk. */
static int usage_chunk_cjson(router_usage *u, const char *data, size_t len, bool *usage_only)
{
    cJSON *root;
    const cJSON *choices, *usage;

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

/* The same without a tree; IAS_AGAIN when only cJSON can tell. */
static int usage_chunk_scan(router_usage *u, const char *data, size_t len, bool *usage_only)
{
    scan_result r;
    int rc = scan_response(data, len, &r);

    if (rc != IAS_OK)
        return rc;
    apply_scan(u, &r);
    if (r.usage_object)
        *usage_only = !r.choices_seen || (r.choices_array && r.nchoices == 0);
    return IAS_OK;
}

int router_usage_chunk(router_usage *u, const char *data, size_t len, bool *usage_only)
{
    int rc;

    *usage_only = false;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        u->done = true;
        return IAS_OK;
    }
    if (usage_chunk_fast(u, data, len))
        return IAS_OK;
    /* usage, several choices, text/message choices: read without a tree */
    if ((rc = usage_chunk_scan(u, data, len, usage_only)) != IAS_AGAIN)
        return rc;
    return usage_chunk_cjson(u, data, len, usage_only);
}

int router_usage_body(router_usage *u, const char *body, size_t len)
{
    scan_result r;
    cJSON *root;
    const cJSON *choices;
    int rc = scan_response(body, len, &r);

    if (rc == IAS_OK) {
        apply_scan(u, &r);
        u->done = true;
        return IAS_OK;
    }
    if (rc == IAS_ERR)
        return IAS_ERR;
    /* bytes the strict scan refused (cJSON is more lenient): as before */
    root = cJSON_ParseWithLength(body, len);
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

int router_usage_embedding(router_usage *u, const char *body, size_t len)
{
    scan_result r;
    cJSON *root;
    const cJSON *p;
    int rc = scan_response(body, len, &r);

    if (rc == IAS_ERR)
        return IAS_ERR;
    if (rc == IAS_OK) {
        if (r.have_prompt)
            set_usage(u, r.prompt, 0);
        u->done = true;
        return IAS_OK;
    }
    /* bytes the strict scan refused (cJSON is more lenient) */
    root = cJSON_ParseWithLength(body, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return IAS_ERR;
    }
    p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "usage"),
                                         "prompt_tokens");
    if (cJSON_IsNumber(p))
        set_usage(u, p->valuedouble, 0);
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

/* ---- the upstream request body ---- */

int router_body_plan_scan(const char *body, size_t len, router_body_plan *p, char *model,
                          size_t cap)
{
    ias_json_cursor root;
    ias_json_item it;
    bool seen_opts = false;
    int rc;

    memset(p, 0, sizeof(*p));
    if (ias_json_scan_open(&root, body, len) != IAS_OK || root.close != '}')
        return IAS_ERR;
    while ((rc = ias_json_scan_next(&root, &it)) == IAS_OK) {
        if (ias_json_scan_key_is(body, it.key, "model")) {
            size_t n;
            if (p->model.len != 0 || it.type != IAS_JSON_STRING)
                return IAS_ERR; /* a duplicate: cJSON and the backend may differ on it */
            n = ias_json_scan_string(body, it.value, model, cap);
            if (n == 0 || n >= cap || strlen(model) != n)
                return IAS_ERR; /* empty, too long or with a NUL inside */
            p->model = it.value;
        } else if (ias_json_scan_key_is(body, it.key, "stream_options")) {
            if (seen_opts)
                return IAS_ERR;
            seen_opts = true;
            p->opts_type = it.type;
            if (it.type == IAS_JSON_ARRAY && ias_json_scan_skip(&root, &it.value) != IAS_OK)
                return IAS_ERR;
            if (it.type != IAS_JSON_OBJECT) {
                p->opts = it.value;
                continue;
            }
            ias_json_cursor obj;
            ias_json_item m;
            bool any = false;
            if (ias_json_scan_enter(&root, &obj) != IAS_OK)
                return IAS_ERR;
            while ((rc = ias_json_scan_next(&obj, &m)) == IAS_OK) {
                any = true;
                if (!ias_json_scan_key_is(body, m.key, "include_usage"))
                    continue;
                if (p->incl.len != 0)
                    return IAS_ERR;
                if (m.type == IAS_JSON_OBJECT || m.type == IAS_JSON_ARRAY) {
                    if (ias_json_scan_skip(&obj, &m.value) != IAS_OK)
                        return IAS_ERR;
                }
                p->incl = m.value;
            }
            if (rc != IAS_JSON_DONE)
                return IAS_ERR;
            ias_json_scan_leave(&root, &obj);
            p->opts = (ias_json_span){it.value.off, obj.pos - it.value.off};
            p->opts_empty = !any;
        }
    }
    if (rc != IAS_JSON_DONE || p->model.len == 0)
        return IAS_ERR;
    /* the closing brace: the last non-blank byte */
    p->close = len;
    while (p->close > 0 && body[p->close - 1] != '}')
        p->close--;
    p->close--;
    return IAS_OK;
}

/* One replacement of body bytes [off, off + del) by ins[0..inslen). */
typedef struct body_edit {
    size_t off, del;
    const char *ins;
    size_t inslen;
} body_edit;

/* name as a JSON string token, into out (6 bytes per input byte at most). */
static size_t json_quote(const char *name, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    out[n++] = '"';
    for (const unsigned char *q = (const unsigned char *)name; *q; q++) {
        if (*q == '"' || *q == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*q;
        } else if (*q < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[*q >> 4];
            out[n + 5] = hex[*q & 15];
            n += 6;
        } else {
            out[n++] = (char)*q;
        }
    }
    out[n++] = '"';
    return n;
}

const char *router_body_build(const char *body, size_t len, const router_body_plan *p,
                              const char *client_model, const char *name, bool stream,
                              size_t *outlen, char **owned)
{
    static const char append[] = ",\"stream_options\":{\"include_usage\":true}";
    static const char object[] = "{\"include_usage\":true}";
    body_edit e[2];
    size_t ne = 0, total = len, at = 0, n = 0;
    char *quoted = NULL, *out;

    *owned = NULL;
    if (strcmp(name, client_model) != 0) {
        quoted = ias_xmalloc(strlen(name) * 6 + 3);
        e[ne++] = (body_edit){p->model.off, p->model.len, quoted, json_quote(name, quoted)};
    }
    if (stream) {
        if (p->opts.len == 0)
            e[ne++] = (body_edit){p->close, 0, append, sizeof(append) - 1};
        else if (p->opts_type != IAS_JSON_OBJECT)
            e[ne++] = (body_edit){p->opts.off, p->opts.len, object, sizeof(object) - 1};
        else if (p->incl.len == 0)
            e[ne++] =
                (body_edit){p->opts.off + 1, 0, "\"include_usage\":true,", p->opts_empty ? 20 : 21};
        else if (!(p->incl.len == 4 && memcmp(body + p->incl.off, "true", 4) == 0))
            e[ne++] = (body_edit){p->incl.off, p->incl.len, "true", 4};
    }
    if (ne == 0) {
        *outlen = len;
        return body; /* the client's bytes as they are */
    }
    if (ne == 2 && e[1].off < e[0].off) {
        body_edit t = e[0];
        e[0] = e[1];
        e[1] = t;
    }
    for (size_t i = 0; i < ne; i++)
        total += e[i].inslen - e[i].del;
    out = ias_xmalloc(total + 1);
    for (size_t i = 0; i < ne; i++) {
        memcpy(out + n, body + at, e[i].off - at);
        n += e[i].off - at;
        memcpy(out + n, e[i].ins, e[i].inslen);
        n += e[i].inslen;
        at = e[i].off + e[i].del;
    }
    memcpy(out + n, body + at, len - at);
    n += len - at;
    out[n] = '\0';
    free(quoted);
    *outlen = n;
    *owned = out;
    return out;
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
