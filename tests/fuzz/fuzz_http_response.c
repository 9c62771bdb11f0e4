/* Fuzzes the HTTP response parser (and the URL parser on the same bytes): no
 * crash, sane events, and the same responses, bodies and verdicts whether the
 * input is fed at once, byte by byte, or in pieces of an input-chosen size.
 * Responses are parsed back to back (as on a keep-alive connection) until the
 * input ends, then eof is signalled.
 *
 * Input layout: byte 0 = flags (bit 0: the request was HEAD; bits 1-2: header
 * byte limit; bits 3-7: piece size - 1), byte 1 = header count limit (0:
 * default), then the bytes from the server. */
#include "ias/http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct rec {
    char *out;
    size_t len, cap;
} rec;

static void rec_add(rec *r, const void *d, size_t n)
{
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n)
            cap *= 2;
        r->out = realloc(r->out, cap);
        if (!r->out)
            abort();
        r->cap = cap;
    }
    memcpy(r->out + r->len, d, n);
    r->len += n;
}

static void rec_str(rec *r, const char *s)
{
    rec_add(r, s, strlen(s) + 1);
}

static void rec_int(rec *r, int64_t v)
{
    rec_add(r, &v, sizeof(v));
}

static void record_head(rec *r, const ias_http_parser *p)
{
    const ias_http_response *resp = ias_http_parser_response(p);
    if (resp->status < 200 || resp->status > 599 || !resp->reason)
        abort();
    if (resp->chunked && (resp->until_close || resp->content_length != -1))
        abort();
    if (resp->until_close && resp->keep_alive)
        abort();
    rec_str(r, "H");
    rec_int(r, resp->status);
    rec_int(r, resp->minor_version);
    rec_int(r, resp->content_length);
    rec_int(r, resp->chunked | resp->until_close << 1 | resp->keep_alive << 2);
    rec_str(r, resp->reason);
    for (size_t i = 0; i < resp->nheaders; i++) {
        const char *n = resp->headers[i].name, *v = resp->headers[i].value;
        if (!n[0] || strpbrk(n, " \t\r\n:") || strpbrk(v, "\r\n"))
            abort();
        rec_str(r, n);
        rec_str(r, v);
    }
}

/* The body is compared whole: how it is cut into events depends on the input's pieces. */
static void record_end(rec *r, rec *body, const ias_http_parser *p, ias_http_ev ev)
{
    rec_str(r, "B");
    rec_int(r, (int64_t)body->len);
    if (body->len)
        rec_add(r, body->out, body->len);
    body->len = 0;
    rec_str(r, ev == IAS_HTTP_EV_DONE ? "D" : ev == IAS_HTTP_EV_ERROR ? "E" : "M");
    rec_int(r, ias_http_parser_error(p));
    if (ev == IAS_HTTP_EV_DONE) {
        rec_int(r, ias_http_parser_keep_alive(p));
        size_t nt = 0;
        const ias_http_header *t = ias_http_parser_trailers(p, &nt);
        for (size_t i = 0; i < nt; i++) {
            rec_str(r, t[i].name);
            rec_str(r, t[i].value);
        }
    }
    if (ev == IAS_HTTP_EV_ERROR && !ias_http_parser_errmsg(p)[0])
        abort();
}

static void run(const uint8_t *s, size_t len, size_t step, const ias_http_parse_limits *lim,
                bool head, rec *r)
{
    ias_http_parser *p = ias_http_parser_new();
    ias_http_parser_begin(p, lim, head);
    size_t off = 0;
    int responses = 0;
    ias_http_ev ev = IAS_HTTP_EV_NEED_MORE;
    rec body = {0};
    while (off < len && responses < 8) {
        size_t n = len - off < step ? len - off : step;
        char *piece = malloc(n);
        if (!piece)
            abort();
        memcpy(piece, s + off, n);
        size_t at = 0;
        while (responses < 8) {
            size_t used = 0, blen = 0;
            const char *b = NULL;
            ev = ias_http_parser_run(p, piece + at, n - at, &used, &b, &blen);
            if (used > n - at)
                abort();
            if (ev == IAS_HTTP_EV_BODY) {
                if (blen == 0 || b < piece + at || b + blen > piece + at + used)
                    abort();
                rec_add(&body, b, blen);
            }
            at += used;
            if (ev == IAS_HTTP_EV_HEADERS)
                record_head(r, p);
            if (ev == IAS_HTTP_EV_DONE || ev == IAS_HTTP_EV_ERROR) {
                if (ias_http_parser_body_bytes(p) != body.len)
                    abort();
                record_end(r, &body, p, ev);
                responses++;
                if (ev == IAS_HTTP_EV_ERROR) {
                    responses = 8; /* a broken connection carries nothing more */
                    break;
                }
                ias_http_parser_begin(p, lim, head);
                ev = IAS_HTTP_EV_NEED_MORE;
                continue;
            }
            if (ev == IAS_HTTP_EV_NEED_MORE) {
                if (at != n)
                    abort();
                break;
            }
        }
        free(piece);
        off += at;
        if (at < n)
            break;
    }
    if (responses < 8 && ev == IAS_HTTP_EV_NEED_MORE && ias_http_parser_started(p)) {
        ev = ias_http_parser_eof(p);
        record_end(r, &body, p, ev);
    }
    free(body.out);
    ias_http_parser_free(p);
}

static void fuzz_url(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    if (!url)
        abort();
    memcpy(url, data, size);
    url[size] = '\0';
    ias_http_url u;
    if (ias_http_url_parse(url, &u) == IAS_OK) {
        size_t hl = strlen(u.host);
        if (hl == 0 || hl >= sizeof(u.host) || u.port == 0)
            abort();
        if (u.path < url || u.path + u.path_len > url + strlen(url))
            abort();
        if (u.path_len && u.path[0] != '/' && u.path[0] != '?')
            abort();
        if (memchr(u.path, '#', u.path_len))
            abort();
    }
    free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536)
        return 0;
    fuzz_url(data, size);
    static const size_t limits[4] = {0, 64, 256, 1024};
    bool head = data[0] & 1;
    ias_http_parse_limits lim = {
        .max_header_bytes = limits[(data[0] >> 1) & 3],
        .max_headers = data[1] ? (size_t)(data[1] % 16) + 1 : 0,
    };
    size_t step = (size_t)(data[0] >> 3) + 1;
    const uint8_t *s = data + 2;
    size_t len = size - 2;

    rec whole = {0}, split = {0}, bytes = {0};
    run(s, len, len ? len : 1, &lim, head, &whole);
    run(s, len, step, &lim, head, &split);
    run(s, len, 1, &lim, head, &bytes);
    if (whole.len != split.len || whole.len != bytes.len ||
        (whole.len && (memcmp(whole.out, split.out, whole.len) != 0 ||
                       memcmp(whole.out, bytes.out, whole.len) != 0)))
        abort();
    free(whole.out);
    free(split.out);
    free(bytes.out);
    return 0;
}
