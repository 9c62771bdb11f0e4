/* Strict JSON scanning without a tree (see ias/json_scan.h). */
#include "ias/json_scan.h"

#include "ias/common.h"
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static size_t skip_ws(const char *s, size_t len, size_t p)
{
    while (p < len && is_ws((unsigned char)s[p]))
        p++;
    return p;
}

/* The code unit of the \uXXXX at s[p] (p at the backslash), -1 when the six
 * bytes are not one. */
static long hex4_at(const char *s, size_t len, size_t p)
{
    long v = 0;

    if (len - p < 6 || s[p] != '\\' || s[p + 1] != 'u')
        return -1;
    for (size_t i = 2; i < 6; i++) {
        int h = ias_hex_digit((unsigned char)s[p + i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Marks the bytes of w that are '"', '\\' or below ' ' with their top bit,
 * 8 bytes at once (see services/router/usage.c for the derivation). The
 * lowest mark is always a true one in little-endian order. */
static uint64_t word_specials(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');

    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * ' ') & ~w)) & high;
}

/* s[p] is '"': the offset just past the closing quote, or 0 when the string
 * is invalid (0 can never be a real end: it is at least p + 2). Prompt text
 * is most of a request's bytes, so plain runs go 8 bytes at a time. */
static size_t scan_string(const char *s, size_t len, size_t p)
{
    size_t q = p + 1;

    while (q < len) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (len - q >= 8) {
            uint64_t w, m;

            memcpy(&w, s + q, sizeof(w));
            m = word_specials(w);
            if (m == 0) {
                q += 8;
                continue;
            }
            q += (size_t)__builtin_ctzll(m) / 8;
        }
#endif
        unsigned char c = (unsigned char)s[q];
        if (c == '"')
            return q + 1;
        if (c < 0x20)
            return 0;
        if (c != '\\') {
            q++;
            continue;
        }
        if (len - q < 2)
            return 0;
        switch (s[q + 1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            q += 2;
            break;
        case 'u': {
            long u = hex4_at(s, len, q);
            if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF))
                return 0; /* a low surrogate must follow a high one */
            q += 6;
            if (u >= 0xD800 && u <= 0xDBFF) {
                long lo = hex4_at(s, len, q);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return 0;
                q += 6;
            }
            break;
        }
        default:
            return 0;
        }
    }
    return 0;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at s[p]: the end, or 0. */
static size_t scan_number(const char *s, size_t len, size_t p)
{
    size_t q = p;

    if (q < len && s[q] == '-')
        q++;
    if (q >= len || !is_digit((unsigned char)s[q]))
        return 0;
    if (s[q] == '0')
        q++;
    else
        while (q < len && is_digit((unsigned char)s[q]))
            q++;
    if (q < len && s[q] == '.') {
        q++;
        if (q >= len || !is_digit((unsigned char)s[q]))
            return 0;
        while (q < len && is_digit((unsigned char)s[q]))
            q++;
    }
    if (q < len && (s[q] == 'e' || s[q] == 'E')) {
        q++;
        if (q < len && (s[q] == '+' || s[q] == '-'))
            q++;
        if (q >= len || !is_digit((unsigned char)s[q]))
            return 0;
        while (q < len && is_digit((unsigned char)s[q]))
            q++;
    }
    if (q - p > IAS_JSON_SCAN_MAX_NUMBER)
        return 0;
    return q;
}

static size_t scan_literal(const char *s, size_t len, size_t p, const char *lit, size_t n)
{
    if (len - p < n || memcmp(s + p, lit, n) != 0)
        return 0;
    return p + n;
}

static ias_json_type type_at(const char *s, size_t len, size_t p)
{
    if (p >= len)
        return IAS_JSON_NONE;
    switch (s[p]) {
    case '{':
        return IAS_JSON_OBJECT;
    case '[':
        return IAS_JSON_ARRAY;
    case '"':
        return IAS_JSON_STRING;
    case 't':
        return IAS_JSON_TRUE;
    case 'f':
        return IAS_JSON_FALSE;
    case 'n':
        return IAS_JSON_NULL;
    default:
        return s[p] == '-' || is_digit((unsigned char)s[p]) ? IAS_JSON_NUMBER : IAS_JSON_NONE;
    }
}

/* A scalar of type t at s[p]: its end, or 0. */
static size_t scan_scalar(const char *s, size_t len, size_t p, ias_json_type t)
{
    switch (t) {
    case IAS_JSON_STRING:
        return scan_string(s, len, p);
    case IAS_JSON_NUMBER:
        return scan_number(s, len, p);
    case IAS_JSON_TRUE:
        return scan_literal(s, len, p, "true", 4);
    case IAS_JSON_FALSE:
        return scan_literal(s, len, p, "false", 5);
    case IAS_JSON_NULL:
        return scan_literal(s, len, p, "null", 4);
    default:
        return 0;
    }
}

/* An object's "key" : at s[p] (p past '{' or ',' and whitespace): the offset
 * of the value (after the colon and whitespace), or 0. */
static size_t scan_key(const char *s, size_t len, size_t p, ias_json_span *key)
{
    size_t e;

    if (p >= len || s[p] != '"' || (e = scan_string(s, len, p)) == 0)
        return 0;
    if (key != NULL)
        *key = (ias_json_span){p, e - p};
    e = skip_ws(s, len, e);
    if (e >= len || s[e] != ':')
        return 0;
    return skip_ws(s, len, e + 1);
}

int ias_json_scan_value(const char *s, size_t len, size_t off, int depth_left, size_t *end,
                        ias_json_type *type)
{
    /* one bit per open container: 1 object, 0 array; no recursion, no heap */
    uint64_t stack[(IAS_JSON_SCAN_MAX_DEPTH + 63) / 64] = {0};
    int depth = 0;
    size_t p = off;
    ias_json_type t = type_at(s, len, off);

    if (t == IAS_JSON_NONE)
        return IAS_ERR;
    if (depth_left > IAS_JSON_SCAN_MAX_DEPTH)
        depth_left = IAS_JSON_SCAN_MAX_DEPTH;
    for (;;) {
        /* p at the first byte of a value */
        ias_json_type vt = type_at(s, len, p);

        if (vt == IAS_JSON_OBJECT || vt == IAS_JSON_ARRAY) {
            bool obj = vt == IAS_JSON_OBJECT;

            if (depth >= depth_left)
                return IAS_ERR;
            if (obj)
                stack[depth / 64] |= 1ULL << (depth % 64);
            else
                stack[depth / 64] &= ~(1ULL << (depth % 64));
            depth++;
            p = skip_ws(s, len, p + 1);
            if (p < len && s[p] == (obj ? '}' : ']')) {
                p++;
                depth--;
            } else {
                if (obj && (p = scan_key(s, len, p, NULL)) == 0)
                    return IAS_ERR;
                continue; /* the first value */
            }
        } else if ((p = scan_scalar(s, len, p, vt)) == 0) {
            return IAS_ERR;
        }
        /* p just past a value: close containers, or go to the next value */
        for (;;) {
            bool obj;

            if (depth == 0) {
                *end = p;
                if (type)
                    *type = t;
                return IAS_OK;
            }
            obj = (stack[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
            p = skip_ws(s, len, p);
            if (p >= len)
                return IAS_ERR;
            if (s[p] == ',') {
                p = skip_ws(s, len, p + 1);
                if (obj && (p = scan_key(s, len, p, NULL)) == 0)
                    return IAS_ERR;
                break; /* the next value */
            }
            if (s[p] != (obj ? '}' : ']'))
                return IAS_ERR;
            p++;
            depth--;
        }
    }
}

bool ias_json_scan_document(const char *s, size_t len, ias_json_type *type, ias_json_span *span)
{
    size_t p = skip_ws(s, len, 0), e;
    ias_json_type t;

    if (ias_json_scan_value(s, len, p, IAS_JSON_SCAN_MAX_DEPTH, &e, &t) != IAS_OK ||
        skip_ws(s, len, e) != len)
        return false;
    if (type)
        *type = t;
    if (span)
        *span = (ias_json_span){p, e - p};
    return true;
}

int ias_json_scan_open(ias_json_cursor *cur, const char *s, size_t len)
{
    size_t p = skip_ws(s, len, 0);

    memset(cur, 0, sizeof(*cur));
    if (p >= len || (s[p] != '{' && s[p] != '['))
        return IAS_ERR;
    cur->s = s;
    cur->len = len;
    cur->pos = p + 1;
    cur->depth = 1;
    cur->close = s[p] == '{' ? '}' : ']';
    cur->root = true;
    return IAS_OK;
}

int ias_json_scan_skip(ias_json_cursor *cur, ias_json_span *span)
{
    size_t e;

    if (!cur->pending)
        return IAS_ERR;
    if (ias_json_scan_value(cur->s, cur->len, cur->value_off, IAS_JSON_SCAN_MAX_DEPTH - cur->depth,
                            &e, NULL) != IAS_OK)
        return IAS_ERR;
    cur->pending = false;
    cur->pos = e;
    if (span)
        *span = (ias_json_span){cur->value_off, e - cur->value_off};
    return IAS_OK;
}

int ias_json_scan_next(ias_json_cursor *cur, ias_json_item *item)
{
    const char *s = cur->s;
    size_t len = cur->len, p;
    ias_json_type t;

    if (cur->done || cur->s == NULL)
        return IAS_ERR;
    if (cur->pending && ias_json_scan_skip(cur, NULL) != IAS_OK)
        return IAS_ERR;
    p = skip_ws(s, len, cur->pos);
    if (p >= len)
        return IAS_ERR;
    if (s[p] == cur->close) {
        /* an empty container, or the end after an item ("[1,]" fails below:
         * after a comma an item must follow) */
        cur->pos = p + 1;
        cur->done = true;
        if (cur->root && skip_ws(s, len, cur->pos) != len)
            return IAS_ERR;
        return IAS_JSON_DONE;
    }
    if (cur->started) {
        if (s[p] != ',')
            return IAS_ERR;
        p = skip_ws(s, len, p + 1);
    }
    item->key = (ias_json_span){0, 0};
    if (cur->close == '}' && (p = scan_key(s, len, p, &item->key)) == 0)
        return IAS_ERR;
    t = type_at(s, len, p);
    item->type = t;
    cur->started = true;
    if (t == IAS_JSON_OBJECT || t == IAS_JSON_ARRAY) {
        item->value = (ias_json_span){p, 0};
        cur->value_off = p;
        cur->pending = true;
        cur->pos = p;
        return IAS_OK;
    }
    size_t e = scan_scalar(s, len, p, t);
    if (e == 0)
        return IAS_ERR;
    item->value = (ias_json_span){p, e - p};
    cur->pos = e;
    return IAS_OK;
}

int ias_json_scan_enter(ias_json_cursor *cur, ias_json_cursor *child)
{
    char open;

    if (!cur->pending || cur->depth >= IAS_JSON_SCAN_MAX_DEPTH)
        return IAS_ERR;
    open = cur->s[cur->value_off];
    memset(child, 0, sizeof(*child));
    child->s = cur->s;
    child->len = cur->len;
    child->pos = cur->value_off + 1;
    child->depth = cur->depth + 1;
    child->close = open == '{' ? '}' : ']';
    cur->pending = false;
    return IAS_OK;
}

void ias_json_scan_leave(ias_json_cursor *cur, const ias_json_cursor *child)
{
    cur->pos = child->pos;
}

int ias_json_scan_object(const char *s, size_t len, ias_json_item *m, size_t max, size_t *n)
{
    ias_json_cursor cur;
    ias_json_item it;
    int rc;

    *n = 0;
    if (ias_json_scan_open(&cur, s, len) != IAS_OK || cur.close != '}')
        return IAS_ERR;
    while ((rc = ias_json_scan_next(&cur, &it)) == IAS_OK) {
        if (cur.pending && ias_json_scan_skip(&cur, &it.value) != IAS_OK)
            return IAS_ERR;
        if (*n < max)
            m[*n] = it;
        (*n)++;
    }
    return rc == IAS_JSON_DONE ? IAS_OK : IAS_ERR;
}

/* ---- decoding ---- */

/* Appends the UTF-8 of code point cp to out (cut at cap - 1), counting all. */
static void put_utf8(unsigned long cp, char *out, size_t cap, size_t *n)
{
    unsigned char b[4];
    size_t k;

    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    for (size_t i = 0; i < k; i++, (*n)++)
        if (cap > 0 && *n < cap - 1)
            out[*n] = (char)b[i];
}

size_t ias_json_scan_string(const char *s, ias_json_span str, char *out, size_t cap)
{
    const char *p = s + str.off + 1, *end = s + str.off + str.len - 1;
    size_t n = 0;

    if (str.len < 2 || s[str.off] != '"') {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((bs ? bs : end) - p);

        if (cap > 0 && n < cap - 1) {
            size_t k = run < cap - 1 - n ? run : cap - 1 - n;
            memcpy(out + n, p, k);
        }
        n += run;
        p += run;
        if (p >= end)
            break;
        /* p at a backslash the scan vouched for */
        unsigned long cp;
        if (p[1] == 'u') {
            long hi = hex4_at(p, (size_t)(end - p), 0);
            if (hi < 0)
                goto bad;
            cp = (unsigned long)hi;
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                long lo = hex4_at(p, (size_t)(end - p), 6);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    goto bad;
                cp = 0x10000 + (((unsigned long)hi & 0x3FF) << 10) + ((unsigned long)lo & 0x3FF);
                p += 6;
            }
            p += 4; /* the hex digits; the two escape bytes below */
        } else {
            int v = ias_json_escape_value((unsigned char)p[1]);
            if (v < 0)
                goto bad;
            cp = (unsigned long)v;
        }
        put_utf8(cp, out, cap, &n);
        p += 2;
    }
    if (cap > 0)
        out[n < cap - 1 ? n : cap - 1] = '\0';
    return n;
bad: /* not a span of a successful scan */
    if (cap > 0)
        out[n < cap - 1 ? n : cap - 1] = '\0';
    return n;
}

bool ias_json_scan_key_is(const char *s, ias_json_span key, const char *lit)
{
    size_t n = strlen(lit), d;
    char buf[64];

    if (key.len < 2)
        return false;
    if (memchr(s + key.off + 1, '\\', key.len - 2) == NULL)
        return key.len - 2 == n && memcmp(s + key.off + 1, lit, n) == 0;
    d = ias_json_scan_string(s, key, buf, sizeof(buf));
    /* a decoded key longer than buf without a NUL inside is longer than lit */
    if (d >= sizeof(buf) && memchr(buf, '\0', sizeof(buf) - 1) == NULL)
        return false;
    return strcmp(buf, lit) == 0;
}

bool ias_json_scan_string_nonempty(const char *s, ias_json_span str)
{
    if (str.len <= 2)
        return false;
    /* only \u0000 decodes to a NUL byte */
    return !(s[str.off + 1] == '\\' && hex4_at(s, str.off + str.len, str.off + 1) == 0);
}

int ias_json_scan_number(const char *s, ias_json_span num, double *out)
{
    char buf[IAS_JSON_SCAN_MAX_NUMBER + 1], *end;

    if (num.len == 0 || num.len > IAS_JSON_SCAN_MAX_NUMBER)
        return IAS_ERR;
    memcpy(buf, s + num.off, num.len);
    buf[num.len] = '\0';
    *out = strtod(buf, &end);
    return end == buf + num.len ? IAS_OK : IAS_ERR;
}

int ias_json_scan_int(const char *s, ias_json_span num, long long *out)
{
    const char *p = s + num.off, *end = p + num.len;
    bool neg = false;
    unsigned long long v = 0, lim;

    if (num.len > 0 && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= end)
        return IAS_ERR;
    lim = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; p < end; p++) {
        if (!is_digit((unsigned char)*p))
            return IAS_ERR;
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10)
            return IAS_ERR;
        v = v * 10 + d;
    }
    if (neg)
        *out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
    else
        *out = (long long)v;
    return IAS_OK;
}

int ias_json_scan_bool(const char *s, ias_json_span tok, bool *out)
{
    if (tok.len == 4 && memcmp(s + tok.off, "true", 4) == 0) {
        *out = true;
        return IAS_OK;
    }
    if (tok.len == 5 && memcmp(s + tok.off, "false", 5) == 0) {
        *out = false;
        return IAS_OK;
    }
    return IAS_ERR;
}
