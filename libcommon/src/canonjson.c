/* RFC 8785 canonical JSON: a strict recursive-descent parser that writes the
 * canonical form as it goes. Object members are written to the output in input
 * order, then the member spans are sorted and moved into place. */
#include "ias/canonjson.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *data;
    size_t len, cap;
} buf;

/* One member of the object being built: its raw (decoded) name in the names
 * buffer and its "name":value span in the output. */
typedef struct member {
    size_t name_off, name_len;
    size_t span_off, span_len;
} member;

typedef struct parser {
    const unsigned char *p, *start, *end;
    unsigned flags;
    buf out;
    buf names; /* decoded member names of the objects being parsed (a stack) */
    char *err;
    size_t errlen;
    bool failed;
} parser;

static void buf_reserve(buf *b, size_t more)
{
    if (b->cap - b->len > more)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= more)
        cap *= 2;
    b->data = ias_xrealloc(b->data, cap);
    b->cap = cap;
}

static void buf_add(buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void buf_addc(buf *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
}

static int fail(parser *ps, const char *fmt, ...) IAS_PRINTF(2, 3);
static int fail(parser *ps, const char *fmt, ...)
{
    if (!ps->failed && ps->errlen > 0) {
        char msg[160];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        snprintf(ps->err, ps->errlen, "%s at byte %zu", msg, (size_t)(ps->p - ps->start));
    }
    ps->failed = true;
    return IAS_ERR;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;

    for (int i = 0; i < 4; i++) {
        int d = ias_hex_digit(s[i]);
        if (d < 0)
            return IAS_ERR;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return IAS_OK;
}

/* Length of the valid UTF-8 sequence at s (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end, unsigned *cp)
{
    unsigned c = s[0], v;
    size_t n;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - s) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    /* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

static void put_utf8(buf *b, unsigned cp)
{
    char t[4];

    if (cp < 0x80) {
        buf_addc(b, (char)cp);
    } else if (cp < 0x800) {
        t[0] = (char)(0xc0 | cp >> 6);
        t[1] = (char)(0x80 | (cp & 0x3f));
        buf_add(b, t, 2);
    } else if (cp < 0x10000) {
        t[0] = (char)(0xe0 | cp >> 12);
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[2] = (char)(0x80 | (cp & 0x3f));
        buf_add(b, t, 3);
    } else {
        t[0] = (char)(0xf0 | cp >> 18);
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        t[3] = (char)(0x80 | (cp & 0x3f));
        buf_add(b, t, 4);
    }
}

/* Writes one decoded code point in canonical string form. */
static void put_escaped(buf *b, unsigned cp)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\', 'u', '0', '0', 0, 0};

    switch (cp) {
    case '"':
        buf_add(b, "\\\"", 2);
        return;
    case '\\':
        buf_add(b, "\\\\", 2);
        return;
    case '\b':
        buf_add(b, "\\b", 2);
        return;
    case '\f':
        buf_add(b, "\\f", 2);
        return;
    case '\n':
        buf_add(b, "\\n", 2);
        return;
    case '\r':
        buf_add(b, "\\r", 2);
        return;
    case '\t':
        buf_add(b, "\\t", 2);
        return;
    default:
        break;
    }
    if (cp < 0x20) {
        e[4] = hex[cp >> 4];
        e[5] = hex[cp & 0xf];
        buf_add(b, e, 6);
        return;
    }
    put_utf8(b, cp);
}

/* Parses a string at ps->p ('"'): writes its canonical form to the output and,
 * when raw is given, its decoded bytes there too. */
static int parse_string(parser *ps, buf *raw)
{
    ps->p++; /* opening quote */
    buf_addc(&ps->out, '"');
    for (;;) {
        unsigned cp;

        if (ps->p >= ps->end)
            return fail(ps, "unterminated string");
        if (*ps->p == '"') {
            ps->p++;
            break;
        }
        if (*ps->p < 0x20)
            return fail(ps, "control character in string");
        if (*ps->p == '\\') {
            if (ps->end - ps->p < 2)
                return fail(ps, "unterminated string");
            if (ps->p[1] == 'u') {
                if (ps->end - ps->p < 6 || hex4(ps->p + 2, &cp) != IAS_OK)
                    return fail(ps, "bad \\u escape");
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return fail(ps, "lone low surrogate");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo;

                    if (ps->end - ps->p < 12 || ps->p[6] != '\\' || ps->p[7] != 'u' ||
                        hex4(ps->p + 8, &lo) != IAS_OK || lo < 0xdc00 || lo > 0xdfff)
                        return fail(ps, "lone high surrogate");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    ps->p += 6;
                }
                ps->p += 4;
            } else {
                int v = ias_json_escape_value(ps->p[1]);
                if (v < 0)
                    return fail(ps, "bad escape");
                cp = (unsigned)v;
            }
            ps->p += 2;
        } else if (*ps->p < 0x80) {
            cp = *ps->p++;
        } else {
            size_t n = utf8_seq(ps->p, ps->end, &cp);
            if (n == 0)
                return fail(ps, "invalid UTF-8");
            ps->p += n;
        }
        if (cp == 0 && (ps->flags & IAS_CANONJSON_NO_NUL))
            return fail(ps, "U+0000 in string");
        put_escaped(&ps->out, cp);
        if (raw)
            put_utf8(raw, cp);
    }
    buf_addc(&ps->out, '"');
    return IAS_OK;
}

int ias_canonjson_number(double v, char *out, size_t outlen)
{
    char tmp[40], digits[32], res[48];
    int k = 0, n, exp10;
    size_t o = 0;
    const char *e;

    if (isnan(v) || isinf(v))
        return IAS_ERR;
    if (v == 0) {
        return snprintf(out, outlen, "0") < (int)outlen ? IAS_OK : IAS_ERR;
    }
    if (v < 0) {
        res[o++] = '-';
        v = -v;
    }
    /* Shortest digit string that reads back as v (ECMAScript's k is minimal). */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    e = strchr(tmp, 'e');
    if (!e)
        return IAS_ERR;
    for (const char *c = tmp; c < e; c++)
        if (*c >= '0' && *c <= '9')
            digits[k++] = *c;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    exp10 = atoi(e + 1);
    n = exp10 + 1; /* v = 0.d1d2...dk * 10^n */
    if (k <= n && n <= 21) {
        memcpy(res + o, digits, (size_t)k);
        o += (size_t)k;
        for (int i = 0; i < n - k; i++)
            res[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(res + o, digits, (size_t)n);
        o += (size_t)n;
        res[o++] = '.';
        memcpy(res + o, digits + n, (size_t)(k - n));
        o += (size_t)(k - n);
    } else if (-6 < n && n <= 0) {
        res[o++] = '0';
        res[o++] = '.';
        for (int i = 0; i < -n; i++)
            res[o++] = '0';
        memcpy(res + o, digits, (size_t)k);
        o += (size_t)k;
    } else {
        res[o++] = digits[0];
        if (k > 1) {
            res[o++] = '.';
            memcpy(res + o, digits + 1, (size_t)(k - 1));
            o += (size_t)(k - 1);
        }
        o +=
            (size_t)snprintf(res + o, sizeof(res) - o, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
    res[o] = '\0';
    if (o + 1 > outlen)
        return IAS_ERR;
    memcpy(out, res, o + 1);
    return IAS_OK;
}

static int parse_number(parser *ps)
{
    const unsigned char *s = ps->p;
    char tmp[512], num[40];
    double v;

    if (ps->p < ps->end && *ps->p == '-')
        ps->p++;
    if (ps->p >= ps->end)
        return fail(ps, "bad number");
    if (*ps->p == '0') {
        ps->p++;
    } else if (*ps->p >= '1' && *ps->p <= '9') {
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    } else {
        return fail(ps, "bad number");
    }
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
            return fail(ps, "bad number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
            return fail(ps, "bad number");
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    if ((size_t)(ps->p - s) >= sizeof(tmp))
        return fail(ps, "number too long");
    memcpy(tmp, s, (size_t)(ps->p - s));
    tmp[ps->p - s] = '\0';
    v = strtod(tmp, NULL);
    if (isinf(v) || ias_canonjson_number(v, num, sizeof(num)) != IAS_OK)
        return fail(ps, "number out of range");
    buf_add(&ps->out, num, strlen(num));
    return IAS_OK;
}

/* Next UTF-16 code unit of a UTF-8 string (valid: we wrote it), -1 at the end. */
typedef struct u16it {
    const unsigned char *p, *end;
    unsigned pending; /* low surrogate still to return, or 0 */
} u16it;

static long u16_next(u16it *it)
{
    unsigned cp;

    if (it->pending) {
        cp = it->pending;
        it->pending = 0;
        return (long)cp;
    }
    if (it->p >= it->end)
        return -1;
    if (*it->p < 0x80) {
        cp = *it->p++;
    } else {
        size_t n = utf8_seq(it->p, it->end, &cp);
        if (n == 0) /* cannot happen for names we decoded ourselves */
            n = 1;
        it->p += n;
    }
    if (cp >= 0x10000) {
        it->pending = 0xdc00 + ((cp - 0x10000) & 0x3ff);
        return (long)(0xd800 + ((cp - 0x10000) >> 10));
    }
    return (long)cp;
}

static int name_cmp(const char *names, const member *a, const member *b)
{
    u16it x = {(const unsigned char *)names + a->name_off,
               (const unsigned char *)names + a->name_off + a->name_len, 0};
    u16it y = {(const unsigned char *)names + b->name_off,
               (const unsigned char *)names + b->name_off + b->name_len, 0};

    for (;;) {
        long u = u16_next(&x), v = u16_next(&y);
        if (u != v)
            return u < v ? -1 : 1;
        if (u < 0)
            return 0;
    }
}

/* Insertion sort on small arrays, merge sort otherwise (stable, no qsort_r). */
static void sort_members(member *m, size_t n, member *tmp, const char *names)
{
    if (n < 2)
        return;
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            member x = m[i];
            size_t j = i;
            while (j > 0 && name_cmp(names, &m[j - 1], &x) > 0) {
                m[j] = m[j - 1];
                j--;
            }
            m[j] = x;
        }
        return;
    }
    size_t h = n / 2, i = 0, j = h, k = 0;
    sort_members(m, h, tmp, names);
    sort_members(m + h, n - h, tmp, names);
    while (i < h && j < n)
        tmp[k++] = name_cmp(names, &m[j], &m[i]) < 0 ? m[j++] : m[i++];
    while (i < h)
        tmp[k++] = m[i++];
    while (j < n)
        tmp[k++] = m[j++];
    memcpy(m, tmp, n * sizeof(*m));
}

static int parse_value(parser *ps, int depth);

static int parse_object(parser *ps, int depth)
{
    size_t obj_start = ps->out.len, names_start = ps->names.len, n = 0, cap = 0;
    member *mem = NULL, *tmp = NULL;
    int rc = IAS_ERR;

    ps->p++; /* '{' */
    buf_addc(&ps->out, '{');
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        buf_addc(&ps->out, '}');
        return IAS_OK;
    }
    for (;;) {
        member m;

        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            fail(ps, "expected member name");
            goto out;
        }
        m.span_off = ps->out.len;
        m.name_off = ps->names.len;
        if (parse_string(ps, &ps->names) != IAS_OK)
            goto out;
        m.name_len = ps->names.len - m.name_off;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            fail(ps, "expected ':'");
            goto out;
        }
        ps->p++;
        buf_addc(&ps->out, ':');
        if (parse_value(ps, depth + 1) != IAS_OK)
            goto out;
        m.span_len = ps->out.len - m.span_off;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            mem = ias_xrealloc(mem, cap * sizeof(*mem));
        }
        mem[n++] = m;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            buf_addc(&ps->out, ',');
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        fail(ps, "expected ',' or '}'");
        goto out;
    }
    /* Sort the spans, refuse duplicates, and rewrite them in order. */
    tmp = ias_xmalloc(n * sizeof(*tmp));
    sort_members(mem, n, tmp, ps->names.data);
    for (size_t i = 1; i < n; i++) {
        if (name_cmp(ps->names.data, &mem[i - 1], &mem[i]) == 0) {
            fail(ps, "duplicate member name");
            goto out;
        }
    }
    {
        size_t region = ps->out.len - (obj_start + 1), o = obj_start + 1;
        char *copy = ias_xmalloc(region ? region : 1);

        memcpy(copy, ps->out.data + obj_start + 1, region);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                ps->out.data[o++] = ',';
            memcpy(ps->out.data + o, copy + (mem[i].span_off - obj_start - 1), mem[i].span_len);
            o += mem[i].span_len;
        }
        free(copy);
        ps->out.len = o;
    }
    buf_addc(&ps->out, '}');
    rc = IAS_OK;
out:
    ps->names.len = names_start;
    free(mem);
    free(tmp);
    return rc;
}

static int parse_array(parser *ps, int depth)
{
    ps->p++; /* '[' */
    buf_addc(&ps->out, '[');
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        buf_addc(&ps->out, ']');
        return IAS_OK;
    }
    for (;;) {
        if (parse_value(ps, depth + 1) != IAS_OK)
            return IAS_ERR;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            buf_addc(&ps->out, ',');
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            buf_addc(&ps->out, ']');
            return IAS_OK;
        }
        return fail(ps, "expected ',' or ']'");
    }
}

static int parse_literal(parser *ps, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "unexpected character");
    ps->p += n;
    buf_add(&ps->out, word, n);
    return IAS_OK;
}

static int parse_value(parser *ps, int depth)
{
    if (depth > IAS_CANONJSON_MAX_DEPTH)
        return fail(ps, "nesting deeper than %d", IAS_CANONJSON_MAX_DEPTH);
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "unexpected end of input");
    switch (*ps->p) {
    case '{':
        return parse_object(ps, depth);
    case '[':
        return parse_array(ps, depth);
    case '"':
        return parse_string(ps, NULL);
    case 't':
        return parse_literal(ps, "true");
    case 'f':
        return parse_literal(ps, "false");
    case 'n':
        return parse_literal(ps, "null");
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return parse_number(ps);
        return fail(ps, "unexpected character");
    }
}

int ias_canonjson(const char *in, size_t len, unsigned flags, char **out, size_t *outlen, char *err,
                  size_t errlen)
{
    const char *text = in ? in : "";
    parser ps = {.p = (const unsigned char *)text,
                 .start = (const unsigned char *)text,
                 .end = (const unsigned char *)text + (in ? len : 0),
                 .flags = flags,
                 .err = err,
                 .errlen = errlen};

    *out = NULL;
    if (outlen)
        *outlen = 0;
    if (errlen > 0)
        err[0] = '\0';
    if (!in) {
        fail(&ps, "no input");
        return IAS_ERR;
    }
    /* never NULL, so offsets into empty names stay defined */
    buf_reserve(&ps.names, 64);
    if (parse_value(&ps, 1) == IAS_OK) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            fail(&ps, "trailing characters after the value");
    }
    free(ps.names.data);
    if (ps.failed) {
        free(ps.out.data);
        return IAS_ERR;
    }
    buf_addc(&ps.out, '\0');
    *out = ps.out.data;
    if (outlen)
        *outlen = ps.out.len - 1;
    return IAS_OK;
}
