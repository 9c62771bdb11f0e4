/* JSON log lines. One write(2) per line so concurrent threads never interleave. */
#include "ias/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
    LOG_MSG_MAX = 4096,
    LOG_LINE_MAX = 8192,
};

/* Configuration, written once at start (the allowed kind of global). */
static char log_service[64] = "ias";
static atomic_int log_min_level = IAS_LOG_INFO;
static atomic_int log_fd = STDERR_FILENO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ias_log_init(const char *service, ias_log_level min_level)
{
    if (service)
        (void)ias_strlcpy(log_service, service, sizeof(log_service));
    atomic_store(&log_min_level, (int)min_level);
}

void ias_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd < 0 ? STDERR_FILENO : fd);
}

int ias_log_level_parse(const char *s, ias_log_level *out)
{
    for (size_t i = 0; i < IAS_ARRAY_LEN(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (ias_log_level)i;
            return IAS_OK;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = IAS_LOG_WARN;
        return IAS_OK;
    }
    return IAS_ERR;
}

bool ias_log_enabled(ias_log_level level)
{
    return (int)level >= atomic_load_explicit(&log_min_level, memory_order_relaxed);
}

static bool is_token_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' ||
           c == '/' || c == '=';
}

static bool is_b64url(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* Appends a literal into dst, bounded. */
static void put(char *dst, size_t dstlen, size_t *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && *o + 1 < dstlen; i++)
        dst[(*o)++] = s[i];
}

void ias_log_scrub(const char *src, char *dst, size_t dstlen)
{
    size_t i = 0, o = 0;
    size_t n = strlen(src);

    if (dstlen == 0)
        return;
    while (i < n && o + 1 < dstlen) {
        const char *p = src + i;
        /* ias_<prefix>.<secret>: keep the prefix, hide the secret. */
        if (strncmp(p, "ias_", 4) == 0) {
            size_t j = 4;
            while (i + j < n && isalnum((unsigned char)p[j]))
                j++;
            if (j > 4 && i + j < n && p[j] == '.' && i + j + 1 < n && is_b64url(p[j + 1])) {
                put(dst, dstlen, &o, p, j + 1);
                put(dst, dstlen, &o, "***", 3);
                j++;
                while (i + j < n && is_b64url(p[j]))
                    j++;
                i += j;
                continue;
            }
        }
        /* Bearer <token> */
        if (strncasecmp(p, "bearer ", 7) == 0) {
            size_t j = 7;
            while (i + j < n && p[j] == ' ')
                j++;
            if (i + j < n && is_token_char(p[j])) {
                put(dst, dstlen, &o, p, 7);
                put(dst, dstlen, &o, "***", 3);
                while (i + j < n && is_token_char(p[j]))
                    j++;
                i += j;
                continue;
            }
        }
        /* A JWT: base64url JSON header starting with {" is "eyJ". */
        if (strncmp(p, "eyJ", 3) == 0 && (i == 0 || !is_b64url(src[i - 1]))) {
            size_t j = 3;
            while (i + j < n && (is_b64url(p[j]) || p[j] == '.'))
                j++;
            put(dst, dstlen, &o, "eyJ***", 6);
            i += j;
            continue;
        }
        /* password=..., "password":"...", password: ... */
        if (strncasecmp(p, "password", 8) == 0) {
            size_t j = 8;
            put(dst, dstlen, &o, p, 8);
            while (i + j < n && (p[j] == '"' || p[j] == ' ' || p[j] == ':' || p[j] == '=')) {
                put(dst, dstlen, &o, p + j, 1);
                j++;
            }
            if (j > 8 && i + j < n && p[j] != ',' && p[j] != '}') {
                put(dst, dstlen, &o, "***", 3);
                while (i + j < n && p[j] != '"' && p[j] != ' ' && p[j] != ',' && p[j] != '&' &&
                       p[j] != '}')
                    j++;
            }
            i += j;
            continue;
        }
        dst[o++] = src[i++];
    }
    dst[o] = '\0';
}

/* JSON string escaping into a bounded buffer; invalid control bytes become \u00XX. */
static void put_json_str(char *dst, size_t dstlen, size_t *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    put(dst, dstlen, o, "\"", 1);
    for (; *s && *o + 8 < dstlen; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"':
            put(dst, dstlen, o, "\\\"", 2);
            break;
        case '\\':
            put(dst, dstlen, o, "\\\\", 2);
            break;
        case '\n':
            put(dst, dstlen, o, "\\n", 2);
            break;
        case '\r':
            put(dst, dstlen, o, "\\r", 2);
            break;
        case '\t':
            put(dst, dstlen, o, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                put(dst, dstlen, o, esc, 6);
            } else {
                dst[(*o)++] = (char)c;
            }
        }
    }
    put(dst, dstlen, o, "\"", 1);
}

static void put_field(char *dst, size_t dstlen, size_t *o, const char *key, const char *val)
{
    put(dst, dstlen, o, ",\"", 2);
    put(dst, dstlen, o, key, strlen(key));
    put(dst, dstlen, o, "\":", 2);
    if (val)
        put_json_str(dst, dstlen, o, val);
    else
        put(dst, dstlen, o, "null", 4);
}

void ias_log_write(ias_log_level level, const ias_log_ctx *ctx, const char *fmt, ...)
{
    char raw[LOG_MSG_MAX], msg[LOG_MSG_MAX], line[LOG_LINE_MAX], now[32];
    size_t o = 0;
    va_list ap;
    int n;

    if ((unsigned)level >= IAS_ARRAY_LEN(level_names))
        level = IAS_LOG_ERROR;
    va_start(ap, fmt);
    n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (n < 0)
        (void)ias_strlcpy(raw, "(unformattable log message)", sizeof(raw));
    ias_log_scrub(raw, msg, sizeof(msg));
    ias_iso8601_ms(ias_wall_ms(), now, sizeof(now));

    put(line, sizeof(line), &o, "{\"time\":\"", 9);
    put(line, sizeof(line), &o, now, strlen(now));
    put(line, sizeof(line), &o, "\"", 1);
    put_field(line, sizeof(line), &o, "level", level_names[level]);
    put_field(line, sizeof(line), &o, "service", log_service);
    put_field(line, sizeof(line), &o, "msg", msg);
    put_field(line, sizeof(line), &o, "request_id", ctx ? ctx->request_id : NULL);
    put_field(line, sizeof(line), &o, "traceparent", ctx ? ctx->traceparent : NULL);
    /* Room for the closing brace and newline is always kept by the 8-byte margin above. */
    if (o + 2 >= sizeof(line))
        o = sizeof(line) - 3;
    line[o++] = '}';
    line[o++] = '\n';

    /* Log output failing is not worth crashing for; nothing else to tell. */
    if (write(atomic_load(&log_fd), line, o) < 0)
        return;
}
