/* Replies: whole bodies, JSON, the two error shapes, and chunked streaming
 * with explicit backpressure (the connection's output buffer is the pending
 * count; the connection fires on_drain from the loop). The response head is
 * built in the connection's output buffer with memcpy only. */
#include "http_internal.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum {
    HEAD_FIXED = 256, /* status line, framing and Connection headers, Date, final CRLF */
};

const char *ias_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

static bool can_reply(ias_req *r, const char *what)
{
    if (r->state == IAS_REQ_OPEN && r->conn)
        return true;
    if (r->state != IAS_REQ_CLOSED)
        ias_warn(&r->log, "%s: the request was already answered", what);
    return false;
}

static int sane_status(ias_req *r, int status)
{
    if (status < 100 || status > 599) {
        ias_error(&r->log, "reply with invalid status %d, sending 500", status);
        return 500;
    }
    return status;
}

const char *ias_hs_date(ias_worker *w, size_t *len)
{
    time_t now = time(NULL);

    if (now != w->date_sec || w->date_len == 0) {
        struct tm tm;

        w->date_len = 0;
        if (gmtime_r(&now, &tm))
            w->date_len = strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    *len = w->date_len;
    return w->date;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_hex(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;

    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* How the body is delimited. */
typedef enum {
    FRAME_LENGTH,  /* Content-Length */
    FRAME_NONE,    /* 1xx, 204, 304: no body, no length */
    FRAME_CHUNKED, /* streaming to HTTP/1.1 */
    FRAME_CLOSE,   /* streaming to HTTP/1.0: the body ends with the connection */
} framing;

static bool is_name(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);

    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

/* The handler's headers, without a Content-Type of its own when the reply names one. */
static char *put_user_headers(char *p, const ias_req *r, bool drop_ct)
{
    const char *s = r->xh, *end = r->xh + r->xh_len;

    if (!drop_ct)
        return put(p, s, r->xh_len);
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t n = (size_t)(nl - s) + 1;

        if (!is_name(s, n, "Content-Type"))
            p = put(p, s, n);
        s += n;
    }
    return p;
}

/* Queues the response head in the connection's output buffer. */
static void put_head(ias_req *r, int status, const char *ct, framing fr, size_t len)
{
    ias_conn *c = r->conn;
    const char *reason = ias_http_reason(status);
    size_t rlen = strlen(reason), ctlen = ct ? strlen(ct) : 0, dlen;
    const char *date = ias_hs_date(r->w, &dlen);
    char *p, *start;

    /* keep-alive clients move to another instance while we drain */
    if (atomic_load(&r->srv->draining) || fr == FRAME_CLOSE)
        c->keep_alive = false;
    start = p =
        ias_hs_conn_reserve(c, HEAD_FIXED + rlen + strlen(r->id) + r->xh_len + ctlen + dlen);
    p = PUT_LIT(p, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = put(p, reason, rlen);
    p = PUT_LIT(p, "\r\nX-Request-Id: ");
    p = put(p, r->id, strlen(r->id));
    p = PUT_LIT(p, "\r\n");
    p = put_user_headers(p, r, ct && r->user_ct);
    if (ct) {
        p = PUT_LIT(p, "Content-Type: ");
        p = put(p, ct, ctlen);
        p = PUT_LIT(p, "\r\n");
    }
    if (dlen) {
        p = PUT_LIT(p, "Date: ");
        p = put(p, date, dlen);
        p = PUT_LIT(p, "\r\n");
    }
    switch (fr) {
    case FRAME_LENGTH:
        p = PUT_LIT(p, "Content-Length: ");
        p += ias_put_u64(p, len);
        p = PUT_LIT(p, "\r\n");
        break;
    case FRAME_CHUNKED:
        p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
        break;
    default:
        break;
    }
    if (!c->keep_alive)
        p = PUT_LIT(p, "Connection: close\r\n");
    else if (r->http10)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    c->wlen += (size_t)(p - start);
}

static void queue(ias_conn *c, const void *data, size_t len)
{
    if (len == 0)
        return;
    memcpy(ias_hs_conn_reserve(c, len), data, len);
    c->wlen += len;
}

int ias_reply_header(ias_req *r, const char *name, const char *value)
{
    size_t nlen, vlen;

    if (r->state != IAS_REQ_OPEN || !r->conn)
        return IAS_ERR;
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) {
        ias_warn(&r->log, "response header with CR/LF dropped");
        return IAS_ERR;
    }
    nlen = strlen(name);
    vlen = strlen(value);
    if (nlen == 0)
        return IAS_ERR;
    /* the framing is the server's */
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0 ||
        strcasecmp(name, "Connection") == 0) {
        ias_warn(&r->log, "response header %s is set by the server: dropped", name);
        return IAS_ERR;
    }
    if (r->xh_len + nlen + vlen + 4 > r->xh_cap) {
        size_t cap = r->xh_cap * 2;

        while (r->xh_len + nlen + vlen + 4 > cap)
            cap *= 2;
        r->xh_heap = ias_xrealloc(r->xh_heap, cap);
        if (r->xh != r->xh_heap)
            memcpy(r->xh_heap, r->xh, r->xh_len);
        r->xh = r->xh_heap;
        r->xh_cap = cap;
    }
    memcpy(r->xh + r->xh_len, name, nlen);
    r->xh_len += nlen;
    memcpy(r->xh + r->xh_len, ": ", 2);
    r->xh_len += 2;
    memcpy(r->xh + r->xh_len, value, vlen);
    r->xh_len += vlen;
    memcpy(r->xh + r->xh_len, "\r\n", 2);
    r->xh_len += 2;
    if (strcasecmp(name, "Content-Type") == 0)
        r->user_ct = true;
    return IAS_OK;
}

int ias_reply_retry_after(ias_req *r, unsigned seconds)
{
    char v[16];

    snprintf(v, sizeof(v), "%u", seconds);
    return ias_reply_header(r, "Retry-After", v);
}

int ias_reply(ias_req *r, int status, const char *content_type, const void *body, size_t len)
{
    bool no_body;

    if (!can_reply(r, "ias_reply"))
        return IAS_ERR;
    status = sane_status(r, status);
    no_body = status < 200 || status == 204 || status == 304;
    if (content_type && strpbrk(content_type, "\r\n")) {
        ias_warn(&r->log, "invalid Content-Type dropped");
        content_type = NULL;
    }
    put_head(r, status, no_body ? NULL : content_type, no_body ? FRAME_NONE : FRAME_LENGTH, len);
    /* HEAD: the length of the body a GET would get, and no body */
    if (!no_body && !r->is_head) {
        queue(r->conn, body, len);
        r->bytes = len;
    }
    r->status = status;
    r->state = IAS_REQ_REPLIED;
    r->close_cb = NULL; /* the handler is done with the request */
    ias_hs_conn_kick(r->conn);
    return IAS_OK;
}

int ias_reply_json_str(ias_req *r, int status, const char *json)
{
    return ias_reply(r, status, "application/json", json, strlen(json));
}

int ias_reply_json(ias_req *r, int status, const cJSON *json)
{
    char *s;
    int rc;

    if (!can_reply(r, "ias_reply_json"))
        return IAS_ERR;
    s = cJSON_PrintUnformatted(json);
    if (!s)
        ias_die("fatal: out of memory printing JSON");
    rc = ias_reply(r, status, "application/json", s, strlen(s));
    cJSON_free(s);
    return rc;
}

IAS_PRINTF(1, 0) static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;

    if (vasprintf(&s, fmt, ap) < 0)
        ias_die("fatal: out of memory formatting an error");
    return s;
}

static void must(const void *p)
{
    if (!p)
        ias_die("fatal: out of memory building JSON");
}

IAS_PRINTF(6, 0)
static int reply_openai_v(ias_req *r, int status, const char *type, const char *code,
                          const char *param, const char *fmt, va_list ap)
{
    cJSON *root, *err;
    char *msg;
    int rc;

    if (!can_reply(r, "ias_reply_openai_error"))
        return IAS_ERR;
    msg = vformat(fmt, ap);
    must(root = cJSON_CreateObject());
    must(err = cJSON_AddObjectToObject(root, "error"));
    must(cJSON_AddStringToObject(err, "message", msg));
    must(cJSON_AddStringToObject(err, "type", type ? type : "invalid_request_error"));
    must(param ? cJSON_AddStringToObject(err, "param", param)
               : cJSON_AddNullToObject(err, "param"));
    must(code ? cJSON_AddStringToObject(err, "code", code) : cJSON_AddNullToObject(err, "code"));
    free(msg);
    {
        char *s = cJSON_PrintUnformatted(root);

        must(s);
        rc = ias_reply(r, status, "application/json", s, strlen(s));
        cJSON_free(s);
    }
    cJSON_Delete(root);
    return rc;
}

IAS_PRINTF(4, 0)
static int reply_problem_v(ias_req *r, int status, const char *type, const char *fmt, va_list ap)
{
    cJSON *root;
    char *detail, *s;
    int rc;

    if (!can_reply(r, "ias_reply_problem"))
        return IAS_ERR;
    status = sane_status(r, status);
    detail = vformat(fmt, ap);
    must(root = cJSON_CreateObject());
    must(cJSON_AddStringToObject(root, "type", type ? type : "about:blank"));
    must(cJSON_AddStringToObject(root, "title", ias_http_reason(status)));
    must(cJSON_AddNumberToObject(root, "status", status));
    must(cJSON_AddStringToObject(root, "detail", detail));
    must(cJSON_AddStringToObject(root, "instance", r->path));
    must(cJSON_AddStringToObject(root, "request_id", r->id));
    free(detail);
    must(s = cJSON_PrintUnformatted(root));
    rc = ias_reply(r, status, "application/problem+json", s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(root);
    return rc;
}

int ias_reply_openai_error(ias_req *r, int status, const char *type, const char *code,
                           const char *param, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = reply_openai_v(r, status, type, code, param, fmt, ap);
    va_end(ap);
    return rc;
}

int ias_reply_problem(ias_req *r, int status, const char *detail_fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, detail_fmt);
    rc = reply_problem_v(r, status, NULL, detail_fmt, ap);
    va_end(ap);
    return rc;
}

int ias_reply_problem_typed(ias_req *r, int status, const char *type, const char *detail_fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, detail_fmt);
    rc = reply_problem_v(r, status, type, detail_fmt, ap);
    va_end(ap);
    return rc;
}

int ias_reply_error(ias_req *r, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    if (r->openai_errors)
        rc = reply_openai_v(r, status, status >= 500 ? "server_error" : "invalid_request_error",
                            code, NULL, fmt, ap);
    else
        rc = reply_problem_v(r, status, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- streaming ---- */

size_t ias_reply_stream_pending(ias_req *r)
{
    ias_conn *c = r->conn;

    return c ? c->wlen - c->wpos : 0;
}

int ias_reply_stream_start(ias_req *r, int status, const char *content_type)
{
    if (!can_reply(r, "ias_reply_stream_start"))
        return IAS_ERR;
    status = sane_status(r, status);
    if (content_type && strpbrk(content_type, "\r\n")) {
        ias_warn(&r->log, "invalid Content-Type dropped");
        content_type = NULL;
    }
    /* HTTP/1.0 has no chunked coding: the body ends when the connection does */
    put_head(r, status, content_type, r->http10 ? FRAME_CLOSE : FRAME_CHUNKED, 0);
    r->status = status;
    r->state = IAS_REQ_STREAMING;
    ias_hs_conn_kick(r->conn);
    return IAS_OK;
}

int ias_reply_stream_chunk(ias_req *r, const void *data, size_t len)
{
    ias_conn *c = r->conn;
    char *p, *start;

    if (r->state != IAS_REQ_STREAMING || !c)
        return IAS_ERR;
    if (len == 0 || r->is_head)
        return IAS_OK; /* an empty chunk would end the chunked body */
    if (r->http10) {
        queue(c, data, len);
    } else {
        start = p = ias_hs_conn_reserve(c, len + 32);
        p = put_hex(p, len);
        p = PUT_LIT(p, "\r\n");
        p = put(p, data, len);
        p = PUT_LIT(p, "\r\n");
        c->wlen += (size_t)(p - start);
    }
    r->bytes += len;
    ias_hs_conn_kick(c);
    return IAS_OK;
}

void ias_reply_stream_on_drain(ias_req *r, size_t low_water, void (*cb)(ias_req *r, void *arg),
                               void *arg)
{
    if (r->state != IAS_REQ_STREAMING || !r->conn) {
        ias_warn(&r->log, "ias_reply_stream_on_drain: not streaming");
        return;
    }
    r->drain_cb = cb;
    r->drain_arg = arg;
    r->low_water = low_water;
    /* already drained: the connection fires it from the loop, not inside this call */
    if (cb && ias_reply_stream_pending(r) <= low_water)
        ias_hs_conn_kick(r->conn);
}

int ias_reply_stream_end(ias_req *r)
{
    ias_conn *c = r->conn;

    if (r->state != IAS_REQ_STREAMING || !c)
        return IAS_ERR;
    r->drain_cb = NULL;
    if (!r->is_head && !r->http10)
        queue(c, "0\r\n\r\n", 5);
    r->state = IAS_REQ_REPLIED;
    r->close_cb = NULL;
    ias_hs_conn_kick(c);
    return IAS_OK;
}
