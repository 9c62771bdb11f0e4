/* /api/v1/... reverse proxy by prefix: usage -> accounting, audit -> audit,
 * policies and guardrails -> pdp, everything else -> users. Method, path,
 * query and a fixed set of headers are kept; the response streams back. Only
 * /api/v1/ is routed here, and paths that could climb out of it are refused,
 * so /internal/... is never reachable from outside. */
#include "ingress.h"

#include "ias/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct mgmt_call {
    ias_req *req;
    ingress_pipe *pipe;
} mgmt_call;

static const char *const fwd_headers[] = {
    "Authorization", "Content-Type", "Accept", "Cookie", "If-Match", "If-None-Match",
};

static bool has_prefix(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/' || path[n] == '?');
}

/* Picks the service for a decoded /api/v1 path; NULL when it has no base URL. */
static const char *target_of(const ingress_ctx *ctx, const char *path)
{
    const char *base;
    if (has_prefix(path, "/api/v1/usage"))
        base = ctx->accounting_url;
    else if (has_prefix(path, "/api/v1/audit"))
        base = ctx->audit_url;
    else if (has_prefix(path, "/api/v1/policies") || has_prefix(path, "/api/v1/guardrails"))
        base = ctx->pdp_url;
    else
        base = ctx->users_url;
    return base[0] ? base : NULL;
}

/* Dot segments, empty segments or encoded slashes could make the upstream see
 * a different path than the one we routed on. */
static bool path_safe(const char *decoded, const char *raw)
{
    const char *p;
    if (strstr(decoded, "//") || strchr(decoded, '\\'))
        return false;
    for (p = decoded; (p = strstr(p, "/.")) != NULL; p++)
        if (p[2] == '\0' || p[2] == '/' || (p[2] == '.' && (p[3] == '\0' || p[3] == '/')))
            return false;
    for (p = raw; *p && *p != '?'; p++)
        if (*p == '%' && (strncasecmp(p, "%2f", 3) == 0 || strncasecmp(p, "%5c", 3) == 0 ||
                          strncasecmp(p, "%00", 3) == 0))
            return false;
    return true;
}

static void on_done(ias_http_result res, bool started, void *arg)
{
    mgmt_call *c = arg;
    (void)res;
    (void)started;
    ias_req_release(c->req);
    free(c);
}

static void on_close(ias_req *req, void *arg)
{
    mgmt_call *c = arg;
    (void)req;
    ingress_pipe_abort(c->pipe);
    ias_req_release(c->req);
    free(c);
}

void ingress_handle_mgmt(ias_req *req, void *ctxp)
{
    ingress_ctx *ctx = ctxp;
    ingress_worker *w = ingress_worker_of(req);
    const char *raw = ias_req_target(req);
    const char *path = ias_req_path(req), *base;
    char *url;
    ias_http_header h[IAS_ARRAY_LEN(fwd_headers) + 4];
    size_t n = 0, body_len = 0;
    const char *body = ias_req_body(req, &body_len);
    mgmt_call *c;

    if (!raw || raw[0] != '/' || !path_safe(path, raw)) {
        (void)ias_reply_problem_typed(req, 400, "https://ias.dev/problems/bad-path",
                                      "the path is not a canonical /api/v1 path");
        return;
    }
    base = target_of(ctx, path);
    if (!base) {
        (void)ias_reply_problem_typed(req, 503, "https://ias.dev/problems/upstream-unavailable",
                                      "the service for %s is not configured", path);
        return;
    }
    for (size_t i = 0; i < IAS_ARRAY_LEN(fwd_headers); i++) {
        const char *v = ias_req_header(req, fwd_headers[i]);
        if (v)
            h[n++] = (ias_http_header){fwd_headers[i], v};
    }
    h[n++] = (ias_http_header){"X-Request-Id", ias_req_id(req)};
    h[n++] = (ias_http_header){"traceparent", ias_req_traceparent(req)};
    h[n++] = (ias_http_header){"X-Forwarded-For", ias_req_peer(req)};
    url = ias_xasprintf("%s%s", base, raw);
    ias_http_request hr = {.method = ias_req_method(req),
                           .url = url,
                           .headers = h,
                           .nheaders = n,
                           .body = body_len ? body : NULL,
                           .body_len = body_len,
                           .first_byte_ms = ctx->lookup_ms > 30000 ? ctx->lookup_ms : 30000,
                           .total_ms = ctx->total_ms};
    c = ias_xcalloc(1, sizeof(*c));
    c->req = req;
    ias_req_retain(req);
    c->pipe = ingress_pipe_start(req, w, &hr, false, on_done, c);
    free(url);
    if (!c->pipe) {
        ias_req_release(req);
        free(c);
        (void)ias_reply_problem_typed(req, 502, "https://ias.dev/problems/upstream-unavailable",
                                      "the upstream request could not be built");
        return;
    }
    ias_req_on_close(req, on_close, c);
}
