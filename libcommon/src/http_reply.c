/* Replies: whole bodies, JSON, the two error shapes, and chunked streaming
 * with explicit backpressure (libevent #862: evhttp has no flow control of
 * its own; we watch the connection's output buffer and resume producers from
 * evhttp_send_reply_chunk_with_cb). */
#include "http_internal.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DRAIN_POLL_US = 5000, /* only before the first chunk, see on_drain */
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
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

static bool can_reply(ias_req *r, const char *what)
{
    if (r->state == IAS_REQ_OPEN && r->evreq)
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

static void set_content_type(ias_req *r, const char *content_type)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->evreq);

    if (!content_type)
        return;
    evhttp_remove_header(out, "Content-Type");
    if (evhttp_add_header(out, "Content-Type", content_type) != 0)
        ias_warn(&r->log, "invalid Content-Type dropped");
}

/* Headers every reply gets at the last moment. */
static void before_send(ias_req *r)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->evreq);

    if (atomic_load(&r->srv->draining)) {
        /* keep-alive clients move to another instance while we drain */
        evhttp_remove_header(out, "Connection");
        (void)evhttp_add_header(out, "Connection", "close");
    }
}

int ias_reply_header(ias_req *r, const char *name, const char *value)
{
    if (r->state != IAS_REQ_OPEN || !r->evreq)
        return IAS_ERR;
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) {
        ias_warn(&r->log, "response header with CR/LF dropped");
        return IAS_ERR;
    }
    if (evhttp_add_header(evhttp_request_get_output_headers(r->evreq), name, value) != 0)
        return IAS_ERR;
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
    struct evkeyvalq *out;
    bool no_body;

    if (!can_reply(r, "ias_reply"))
        return IAS_ERR;
    status = sane_status(r, status);
    out = evhttp_request_get_output_headers(r->evreq);
    no_body = status < 200 || status == 204 || status == 304;
    if (!no_body)
        set_content_type(r, content_type);
    before_send(r);
    if (r->is_head && !no_body) {
        /* evhttp would put the body on the wire even for HEAD: send only its length */
        char cl[32];

        snprintf(cl, sizeof(cl), "%zu", len);
        evhttp_remove_header(out, "Content-Length");
        (void)evhttp_add_header(out, "Content-Length", cl);
    } else if (!no_body && len > 0) {
        if (evbuffer_add(evhttp_request_get_output_buffer(r->evreq), body, len) != 0)
            ias_die("fatal: out of memory queueing a %zu-byte reply", len);
        r->bytes = len;
    }
    r->status = status;
    r->state = IAS_REQ_REPLIED;
    r->close_cb = NULL; /* the handler is done with the request */
    evhttp_send_reply(r->evreq, status, NULL, NULL);
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

static struct bufferevent *req_bev(ias_req *r)
{
    return r->evcon ? evhttp_connection_get_bufferevent(r->evcon) : NULL;
}

size_t ias_reply_stream_pending(ias_req *r)
{
    struct bufferevent *bev = req_bev(r);

    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void drain_fire(ias_req *r)
{
    ias_req_cb cb = r->drain_cb;
    struct bufferevent *bev = req_bev(r);

    r->drain_cb = NULL;
    /* evhttp's "reply written" logic needs the default low-water mark of 0 */
    if (bev)
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    cb(r, r->drain_arg);
}

/* Decides how the pending drain callback will be reached. */
static void drain_check(ias_req *r)
{
    struct bufferevent *bev = req_bev(r);

    if (!r->drain_cb || r->state != IAS_REQ_STREAMING || !bev)
        return;
    if (ias_reply_stream_pending(r) <= r->low_water) {
        drain_fire(r);
    } else if (r->bytes == 0) {
        /* no chunk yet: evhttp's write callback is not ours, poll briefly */
        struct timeval tv = {0, DRAIN_POLL_US};

        event_add(r->drain_ev, &tv);
    } else {
        /* the last chunk's completion callback runs once pending <= low_water */
        bufferevent_setwatermark(bev, EV_WRITE, r->low_water, 0);
    }
}

static void drain_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    drain_check(arg);
}

/* evhttp_send_reply_chunk_with_cb completion: the socket took our bytes down
 * to the write low-water mark. */
static void stream_write_cb(struct evhttp_connection *evcon, void *arg)
{
    drain_check(arg);
}

int ias_reply_stream_start(ias_req *r, int status, const char *content_type)
{
    if (!can_reply(r, "ias_reply_stream_start"))
        return IAS_ERR;
    status = sane_status(r, status);
    set_content_type(r, content_type);
    before_send(r);
    ias_hs_conn_tune(r);
    r->status = status;
    r->state = IAS_REQ_STREAMING;
    evhttp_send_reply_start(r->evreq, status, NULL);
    return IAS_OK;
}

int ias_reply_stream_chunk(ias_req *r, const void *data, size_t len)
{
    if (r->state != IAS_REQ_STREAMING || !r->evreq)
        return IAS_ERR;
    if (len == 0)
        return IAS_OK; /* an empty chunk would end the chunked body */
    if (!r->chunk_buf && !(r->chunk_buf = evbuffer_new()))
        ias_die("fatal: evbuffer_new");
    if (evbuffer_add(r->chunk_buf, data, len) != 0)
        ias_die("fatal: out of memory queueing a %zu-byte chunk", len);
    evhttp_send_reply_chunk_with_cb(r->evreq, r->chunk_buf, stream_write_cb, r);
    /* HEAD: evhttp ignores the chunk; keep our buffer empty all the same */
    evbuffer_drain(r->chunk_buf, evbuffer_get_length(r->chunk_buf));
    if (!r->is_head)
        r->bytes += len;
    return IAS_OK;
}

void ias_reply_stream_on_drain(ias_req *r, size_t low_water, void (*cb)(ias_req *r, void *arg),
                               void *arg)
{
    if (r->state != IAS_REQ_STREAMING || !r->evreq) {
        ias_warn(&r->log, "ias_reply_stream_on_drain: not streaming");
        return;
    }
    r->drain_cb = cb;
    r->drain_arg = arg;
    r->low_water = low_water;
    if (!cb)
        return;
    if (!r->drain_ev && !(r->drain_ev = event_new(r->w->base, -1, 0, drain_ev_cb, r)))
        ias_die("fatal: event_new for a drain callback");
    if (ias_reply_stream_pending(r) <= low_water) {
        /* already drained: fire from the loop, not inside this call */
        event_active(r->drain_ev, EV_TIMEOUT, 0);
        return;
    }
    drain_check(r);
}

int ias_reply_stream_end(ias_req *r)
{
    struct bufferevent *bev = req_bev(r);

    if (r->state != IAS_REQ_STREAMING || !r->evreq)
        return IAS_ERR;
    r->drain_cb = NULL;
    if (r->drain_ev)
        event_del(r->drain_ev);
    /* evhttp_send_done must only run once everything is written */
    if (bev)
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    r->state = IAS_REQ_REPLIED;
    r->close_cb = NULL;
    evhttp_send_reply_end(r->evreq);
    return IAS_OK;
}
