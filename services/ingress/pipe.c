/* Relays an upstream response to the client as it arrives: status, selected
 * headers, then the body in chunks. Backpressure: when the client's unsent
 * bytes pass IAS_STREAM_HIGH_WATER the upstream is paused (its socket stops
 * being read, TCP does the rest) and resumed once they drained to half.
 * A small body of known length (not SSE, at most PIPE_BUFFER_MAX) is instead
 * collected and answered in one piece with its Content-Length: no chunked
 * framing, and an upstream that fails mid-body still gets a clean error. */
#include "ingress.h"

#include "ias/log.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { PIPE_BUFFER_MAX = 64 * 1024 };

struct ingress_pipe {
    ias_req *req;
    ingress_worker *w;
    ias_http_call *call;
    bool openai;
    bool started; /* upstream head arrived and the client reply began */
    bool paused;
    bool sse;
    bool buffering; /* collecting a small body to answer in one piece */
    int status;
    char content_type[128];
    char *buf;
    size_t len, cap;
    ingress_pipe_done done;
    void *arg;
};

/* Response headers worth passing on; hop-by-hop and framing ones never are. */
static const char *const pass_headers[] = {
    "Location",
    "Retry-After",
    "Cache-Control",
    "ETag",
    "Last-Modified",
    "Set-Cookie",
    "WWW-Authenticate",
    "Content-Disposition",
    "X-Ratelimit-Limit-Requests",
    "X-Ratelimit-Remaining-Requests",
    "X-Ratelimit-Limit-Tokens",
    "X-Ratelimit-Remaining-Tokens",
    "X-Ias-Backend",
    "X-Ias-Model",
    "Openai-Model",
    "Openai-Processing-Ms",
};

static void pipe_free(ingress_pipe *p)
{
    free(p->buf);
    ias_gauge_add(p->w->ctx->streams_active, -1);
    ias_req_release(p->req);
    free(p);
}

static void on_drain(ias_req *req, void *arg)
{
    ingress_pipe *p = arg;
    (void)req;
    if (p->paused && p->call) {
        p->paused = false;
        ias_http_call_resume(p->call);
    }
}

static void on_response(ias_http_call *call, const ias_http_response *resp, void *arg)
{
    ingress_pipe *p = arg;
    const char *ct = ias_http_header_get(resp->headers, resp->nheaders, "Content-Type");
    /* Name lengths first: most pairs then differ in length and cost no
     * strcasecmp (this loop was 64 of them per request). */
    enum { NLEN_MAX = 32 };
    size_t nlen[NLEN_MAX], plen[IAS_ARRAY_LEN(pass_headers)];
    (void)call;
    for (size_t j = 0; j < resp->nheaders && j < NLEN_MAX; j++)
        nlen[j] = strlen(resp->headers[j].name);
    for (size_t i = 0; i < IAS_ARRAY_LEN(pass_headers); i++)
        plen[i] = strlen(pass_headers[i]); /* constant-folded */
    for (size_t i = 0; i < IAS_ARRAY_LEN(pass_headers); i++) {
        for (size_t j = 0; j < resp->nheaders; j++) {
            size_t n = j < NLEN_MAX ? nlen[j] : strlen(resp->headers[j].name);
            if (n == plen[i] && strcasecmp(resp->headers[j].name, pass_headers[i]) == 0)
                (void)ias_reply_header(p->req, resp->headers[j].name, resp->headers[j].value);
        }
    }
    p->sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0;
    if (!p->sse && resp->content_length >= 0 && resp->content_length <= PIPE_BUFFER_MAX &&
        (ct == NULL || strlen(ct) < sizeof(p->content_type))) {
        p->buffering = true;
        p->status = resp->status;
        (void)ias_strlcpy(p->content_type, ct ? ct : "application/octet-stream",
                          sizeof(p->content_type));
        p->cap = (size_t)resp->content_length;
        p->buf = ias_xmalloc(p->cap + 1);
        return;
    }
    if (ias_reply_stream_start(p->req, resp->status, ct ? ct : "application/octet-stream") ==
        IAS_OK)
        p->started = true;
}

static void on_body(ias_http_call *call, const char *data, size_t len, void *arg)
{
    ingress_pipe *p = arg;
    size_t hw = p->w->ctx->stream_high_water;
    if (p->buffering) {
        if (len <= p->cap - p->len) { /* the parser never passes more than Content-Length */
            memcpy(p->buf + p->len, data, len);
            p->len += len;
        }
        return;
    }
    if (!p->started || ias_reply_stream_chunk(p->req, data, len) != IAS_OK)
        return; /* the client is gone: on_close aborts the call */
    if (!p->paused && ias_reply_stream_pending(p->req) > hw) {
        p->paused = true;
        ias_http_call_pause(call);
        ias_reply_stream_on_drain(p->req, hw / 2, on_drain, p);
    }
}

static void reply_failure(ingress_pipe *p, ias_http_result res)
{
    int status = 502;
    const char *code = "upstream_error", *msg = "The upstream service failed to answer.";
    switch (res) {
    case IAS_HTTP_CONNECT_FAILED:
    case IAS_HTTP_CONNECT_TIMEOUT:
        status = 503;
        code = "upstream_unavailable";
        msg = "The upstream service is unavailable; retry shortly.";
        break;
    case IAS_HTTP_FIRST_BYTE_TIMEOUT:
    case IAS_HTTP_IDLE_TIMEOUT:
    case IAS_HTTP_TOTAL_TIMEOUT:
        status = 504;
        code = "upstream_timeout";
        msg = "The upstream service did not answer in time.";
        break;
    default:
        break;
    }
    (void)ias_reply_retry_after(p->req, 1);
    if (p->openai)
        (void)ias_reply_openai_error(p->req, status, "server_error", code, NULL, "%s", msg);
    else
        (void)ias_reply_problem_typed(p->req, status,
                                      status == 504
                                          ? "https://ias.dev/problems/upstream-timeout"
                                          : "https://ias.dev/problems/upstream-unavailable",
                                      "%s", msg);
}

static void on_done(ias_http_call *call, ias_http_result res, void *arg)
{
    ingress_pipe *p = arg;
    (void)call;
    p->call = NULL;
    if (res != IAS_HTTP_OK) {
        ias_counter_inc(p->w->ctx->upstream_errors);
        ias_warn(ias_req_log(p->req), "upstream %s after %s: %s", ias_http_result_str(res),
                 p->started ? "the response began" : "no response", ias_http_call_error(call));
    }
    if (p->buffering) {
        /* the upstream received the request: report it as started */
        if (res == IAS_HTTP_OK)
            (void)ias_reply(p->req, p->status, p->content_type, p->buf, p->len);
        else
            reply_failure(p, res);
        if (p->done)
            p->done(res, true, p->arg);
        pipe_free(p);
        return;
    }
    if (!p->started) {
        if (res == IAS_HTTP_OK) /* head arrived but the reply could not start */
            res = IAS_HTTP_RESET;
        reply_failure(p, res);
    } else {
        if (res != IAS_HTTP_OK && p->sse) {
            /* The client must not mistake a cut stream for a complete one. */
            static const char ev[] =
                "data: {\"error\":{\"message\":\"upstream connection lost\",\"type\":"
                "\"server_error\",\"param\":null,\"code\":\"upstream_error\"}}\n\n";
            if (ias_reply_stream_chunk(p->req, ev, sizeof(ev) - 1) != IAS_OK)
                ias_debug(ias_req_log(p->req), "client gone before the error event");
        }
        (void)ias_reply_stream_end(p->req);
    }
    if (p->done)
        p->done(res, p->started, p->arg);
    pipe_free(p);
}

ingress_pipe *ingress_pipe_start(ias_req *req, ingress_worker *w, const ias_http_request *hreq,
                                 bool openai, ingress_pipe_done done, void *arg)
{
    static const ias_http_callbacks cbs = {on_response, on_body, on_done};
    ingress_pipe *p = ias_xcalloc(1, sizeof(*p));
    p->req = req;
    p->w = w;
    p->openai = openai;
    p->done = done;
    p->arg = arg;
    ias_req_retain(req);
    ias_gauge_add(w->ctx->streams_active, 1);
    p->call = ias_http_client_request(w->http, hreq, &cbs, p);
    if (!p->call) {
        pipe_free(p);
        return NULL;
    }
    return p;
}

void ingress_pipe_abort(ingress_pipe *p)
{
    if (!p)
        return;
    if (p->call)
        ias_http_call_cancel(p->call);
    pipe_free(p);
}
