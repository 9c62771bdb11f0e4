/* Allocation that dies on OOM, bounded string helpers and clocks. */
#include "ias/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void ias_die(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    /* The only output left when memory is gone: best effort, then abort. */
    if (write(STDERR_FILENO, buf, (size_t)n) < 0)
        abort();
    abort();
}

void *ias_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        ias_die("fatal: out of memory allocating %zu bytes", n);
    return p;
}

void *ias_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        ias_die("fatal: out of memory allocating %zu x %zu bytes", nmemb, size);
    return p;
}

void *ias_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        ias_die("fatal: out of memory reallocating %zu bytes", n);
    return q;
}

char *ias_xstrdup(const char *s)
{
    return ias_xstrndup(s, strlen(s));
}

char *ias_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = ias_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *ias_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *p = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (n < 0)
        ias_die("fatal: out of memory formatting a string");
    return p;
}

int ias_strlcpy(char *dst, const char *src, size_t dstlen)
{
    size_t len;

    if (dstlen == 0)
        return IAS_ERR;
    len = strlen(src);
    if (len >= dstlen) {
        memcpy(dst, src, dstlen - 1);
        dst[dstlen - 1] = '\0';
        return IAS_ERR;
    }
    memcpy(dst, src, len + 1);
    return IAS_OK;
}

void ias_str_append_cut(char *dst, size_t cap, size_t *used, const char *s)
{
    size_t n = strlen(s);

    if (*used + 1 >= cap)
        return;
    if (n > cap - 1 - *used)
        n = cap - 1 - *used;
    memcpy(dst + *used, s, n);
    *used += n;
    dst[*used] = '\0';
}

int ias_json_escape_value(unsigned char c)
{
    switch (c) {
    case '"':
    case '\\':
    case '/':
        return c;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

int ias_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

uint64_t ias_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ias_now_ms(void)
{
    return ias_now_us() / 1000u;
}

int64_t ias_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t ias_put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0, len;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    len = n;
    while (n)
        *p++ = tmp[--n];
    return len;
}

size_t ias_fmt_i64(char out[IAS_I64_DEC_MAX], int64_t v)
{
    size_t n = 0;

    if (v < 0)
        out[n++] = '-';
    n += ias_put_u64(out + n, v < 0 ? 0ULL - (uint64_t)v : (uint64_t)v);
    out[n] = '\0';
    return n;
}

void ias_iso8601_ms(int64_t wall_ms, char *buf, size_t len)
{
    time_t secs = (time_t)(wall_ms / 1000);
    int ms = (int)(wall_ms % 1000);
    struct tm tm;

    if (ms < 0) {
        ms += 1000;
        secs -= 1;
    }
    if (!gmtime_r(&secs, &tm)) {
        ias_strlcpy(buf, "1970-01-01T00:00:00.000Z", len);
        return;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}
