/* Flat JSON object writer (see ias/jsonw.h). */
#include "ias/jsonw.h"

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

static void string(ias_jsonw *w, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);

    ias_strbuf_reserve(&w->b, n + 2, 0);
    ias_strbuf_putc(&w->b, '"');
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
            ias_strbuf_put(&w->b, esc, 2);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ias_strbuf_put(&w->b, u, sizeof(u));
        } else {
            ias_strbuf_putc(&w->b, (char)c);
        }
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
