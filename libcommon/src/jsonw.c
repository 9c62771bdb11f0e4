/* Flat JSON object writer (see ias/jsonw.h). */
#include "ias/jsonw.h"

#include <stdlib.h>
#include <string.h>

static void reserve(ias_jsonw *w, size_t more)
{
    size_t need = w->len + more + 1;

    if (need <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < need)
        cap *= 2;
    w->buf = ias_xrealloc(w->buf, cap);
    w->cap = cap;
}

static void put(ias_jsonw *w, const char *s, size_t n)
{
    reserve(w, n);
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

/* Keys are our own literals: written as they are. */
static void key(ias_jsonw *w, const char *k)
{
    size_t n = strlen(k);

    reserve(w, n + 4);
    if (!w->first)
        w->buf[w->len++] = ',';
    w->first = false;
    w->buf[w->len++] = '"';
    memcpy(w->buf + w->len, k, n);
    w->len += n;
    w->buf[w->len++] = '"';
    w->buf[w->len++] = ':';
    w->buf[w->len] = '\0';
}

static void string(ias_jsonw *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);

    reserve(w, n + 2);
    w->buf[w->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;

        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            break;
        }
        if (esc) {
            put(w, esc, 2);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(w, u, sizeof(u));
        } else {
            reserve(w, 1);
            w->buf[w->len++] = (char)c;
        }
    }
    reserve(w, 1);
    w->buf[w->len++] = '"';
    w->buf[w->len] = '\0';
}

void ias_jsonw_begin(ias_jsonw *w, size_t cap_hint)
{
    w->buf = NULL;
    w->len = w->cap = 0;
    reserve(w, cap_hint ? cap_hint : 256);
    w->buf[w->len++] = '{';
    w->buf[w->len] = '\0';
    w->first = true;
}

void ias_jsonw_str(ias_jsonw *w, const char *k, const char *value)
{
    key(w, k);
    if (value)
        string(w, value);
    else
        put(w, "null", 4);
}

void ias_jsonw_str_or_null(ias_jsonw *w, const char *k, const char *value)
{
    ias_jsonw_str(w, k, value && value[0] ? value : NULL);
}

void ias_jsonw_int(ias_jsonw *w, const char *k, long long value)
{
    /* by hand: snprintf's format machinery is most of the cost of a field */
    char num[24];
    size_t i = sizeof(num);
    unsigned long long u = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;

    do {
        num[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (value < 0)
        num[--i] = '-';
    key(w, k);
    put(w, num + i, sizeof(num) - i);
}

void ias_jsonw_bool(ias_jsonw *w, const char *k, bool value)
{
    key(w, k);
    if (value)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

void ias_jsonw_null(ias_jsonw *w, const char *k)
{
    key(w, k);
    put(w, "null", 4);
}

char *ias_jsonw_end(ias_jsonw *w)
{
    char *out;

    put(w, "}", 1);
    out = w->buf;
    w->buf = NULL;
    w->len = w->cap = 0;
    return out;
}
