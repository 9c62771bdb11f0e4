/* Growing NUL-terminated buffer (see ias/strbuf.h). */
#include "ias/strbuf.h"

#include <stdlib.h>
#include <string.h>

void ias_strbuf_reserve(ias_strbuf *b, size_t more, size_t min_cap)
{
    size_t need = b->len + more + 1, cap;

    if (need <= b->cap)
        return;
    cap = b->cap ? b->cap : (min_cap ? min_cap : 256);
    while (cap < need)
        cap *= 2;
    b->p = ias_xrealloc(b->p, cap);
    b->cap = cap;
    b->p[b->len] = '\0'; /* a fresh buffer reads as "" */
}

void ias_strbuf_put(ias_strbuf *b, const void *data, size_t n)
{
    ias_strbuf_reserve(b, n, 0);
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ias_strbuf_putc(ias_strbuf *b, char c)
{
    ias_strbuf_reserve(b, 1, 0);
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}

void ias_strbuf_puts(ias_strbuf *b, const char *s)
{
    ias_strbuf_put(b, s, strlen(s));
}

void ias_strbuf_consume(ias_strbuf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->p)
        b->p[b->len] = '\0';
}

char *ias_strbuf_take(ias_strbuf *b)
{
    char *p;

    ias_strbuf_reserve(b, 0, 0);
    p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void ias_strbuf_free(ias_strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
