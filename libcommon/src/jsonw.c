/* Flat JSON object writer (see ias/jsonw.h). */
#include "ias/jsonw.h"

#include <stdint.h>
#include <string.h>

/* Keys are our own literals: written as they are. */
static void key(ias_jsonw *w, const char *k)
{
    if (!w->first)
        ias_strbuf_putc(&w->b, ',');
    w->first = false;
    ias_strbuf_putc(&w->b, '"');
    ias_strbuf_puts(&w->b, k);
    ias_strbuf_put(&w->b, "\":", 2);
}

/* Bytes that need an escape in a JSON string: controls, '"' and '\\'. */
static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* The end of the run of plain bytes in s[i..n) starting at i. Eight bytes
 * at a time where the byte order allows: per byte, (x - 1) & ~x has its top
 * bit set when x was 0 and (w - 0x20) & ~w when the byte was below 0x20; a
 * borrow only marks bytes above a true match, so the lowest mark (little
 * endian) is the first byte that needs an escape. */
static size_t plain_run(const char *s, size_t i, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;

    while (n - i >= 8) {
        uint64_t w, q, b, m;

        memcpy(&w, s + i, sizeof(w));
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        m = (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * ' ') & ~w)) & high;
        if (m != 0)
            return i + (size_t)__builtin_ctzll(m) / 8;
        i += 8;
    }
#endif
    while (i < n && !needs_escape((unsigned char)s[i]))
        i++;
    return i;
}

/* Runs of plain bytes are copied with one memcpy; only the bytes that need
 * an escape go one at a time (a byte at a time was most of the cost of the
 * router's usage events). */
static void string(ias_jsonw *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    size_t i = 0;

    ias_strbuf_reserve(&w->b, n + 2, 0);
    ias_strbuf_putc(&w->b, '"');
    while (i < n) {
        size_t run = plain_run(s, i, n);
        if (run > i)
            ias_strbuf_put(&w->b, s + i, run - i);
        if (run == n)
            break;
        unsigned char c = (unsigned char)s[run];
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
            ias_strbuf_put(&w->b, esc, 2);
        } else {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ias_strbuf_put(&w->b, u, sizeof(u));
        }
        i = run + 1;
    }
    ias_strbuf_putc(&w->b, '"');
}

void ias_jsonw_begin(ias_jsonw *w, size_t cap_hint)
{
    w->b = (ias_strbuf){0};
    ias_strbuf_reserve(&w->b, 1, cap_hint);
    ias_strbuf_putc(&w->b, '{');
    w->first = true;
}

void ias_jsonw_str(ias_jsonw *w, const char *k, const char *value)
{
    key(w, k);
    if (value)
        string(w, value);
    else
        ias_strbuf_put(&w->b, "null", 4);
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
    ias_strbuf_put(&w->b, num + i, sizeof(num) - i);
}

void ias_jsonw_bool(ias_jsonw *w, const char *k, bool value)
{
    key(w, k);
    if (value)
        ias_strbuf_put(&w->b, "true", 4);
    else
        ias_strbuf_put(&w->b, "false", 5);
}

void ias_jsonw_null(ias_jsonw *w, const char *k)
{
    key(w, k);
    ias_strbuf_put(&w->b, "null", 4);
}

char *ias_jsonw_end(ias_jsonw *w)
{
    ias_strbuf_putc(&w->b, '}');
    return ias_strbuf_take(&w->b);
}
