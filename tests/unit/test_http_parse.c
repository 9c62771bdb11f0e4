/* Unit tests for the incremental HTTP response parser and the URL parser. */
#include "testlib.h"

#include "ias/http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct result {
    ias_http_ev last; /* DONE, ERROR, or NEED_MORE when input ran out */
    int status;
    bool keep_alive, chunked, until_close;
    int64_t content_length;
    char head[2048]; /* "name: value\n"... */
    char body[65536];
    size_t body_len;
    size_t consumed; /* total bytes consumed */
    int headers_events;
} result;

static void record_head(ias_http_parser *p, result *r)
{
    const ias_http_response *resp = ias_http_parser_response(p);
    r->status = resp->status;
    r->keep_alive = resp->keep_alive;
    r->chunked = resp->chunked;
    r->until_close = resp->until_close;
    r->content_length = resp->content_length;
    size_t off = (size_t)snprintf(r->head, sizeof(r->head), "%d %s\n", resp->status, resp->reason);
    for (size_t i = 0; i < resp->nheaders && off < sizeof(r->head); i++)
        off += (size_t)snprintf(r->head + off, sizeof(r->head) - off, "%s: %s\n",
                                resp->headers[i].name, resp->headers[i].value);
    r->headers_events++;
}

/* Feeds in[0..len) in pieces of `step` bytes (each in its own allocation, so
 * ASan catches reads past a piece), then optionally signals eof. */
static void run_parser(ias_http_parser *p, const char *in, size_t len, size_t step, bool eof,
                       result *r)
{
    memset(r, 0, sizeof(*r));
    size_t off = 0;
    while (off < len || len == 0) {
        size_t n = len - off < step ? len - off : step;
        char *piece = malloc(n ? n : 1);
        assert_non_null(piece);
        memcpy(piece, in + off, n);
        const char *d = piece;
        size_t rem = n;
        for (;;) {
            size_t used = 0, blen = 0;
            const char *body = NULL;
            ias_http_ev ev = ias_http_parser_run(p, d, rem, &used, &body, &blen);
            assert_true(used <= rem);
            d += used;
            rem -= used;
            r->consumed += used;
            if (ev == IAS_HTTP_EV_HEADERS) {
                record_head(p, r);
            } else if (ev == IAS_HTTP_EV_BODY) {
                assert_true(blen > 0);
                assert_true(r->body_len + blen <= sizeof(r->body));
                memcpy(r->body + r->body_len, body, blen);
                r->body_len += blen;
            } else if (ev == IAS_HTTP_EV_DONE || ev == IAS_HTTP_EV_ERROR) {
                r->last = ev;
                free(piece);
                return;
            } else {
                assert_int_equal(rem, 0);
                break;
            }
        }
        free(piece);
        off += n;
        if (len == 0)
            break;
    }
    r->last = eof ? ias_http_parser_eof(p) : IAS_HTTP_EV_NEED_MORE;
}

static void parse_once(const char *in, size_t len, bool eof, result *r)
{
    ias_http_parser *p = ias_http_parser_new();
    ias_http_parser_begin(p, NULL, false);
    run_parser(p, in, len, len ? len : 1, eof, r);
    ias_http_parser_free(p);
}

/* Every split point and every piece size give what one feed gives. */
static void check_all_splits(const char *in, bool eof)
{
    size_t len = strlen(in);
    result *whole = calloc(1, sizeof(*whole)), *r = calloc(1, sizeof(*r));
    assert_non_null(whole);
    assert_non_null(r);
    parse_once(in, len, eof, whole);
    ias_http_parser *p = ias_http_parser_new();
    for (size_t step = 1; step <= len; step++) {
        ias_http_parser_begin(p, NULL, false);
        run_parser(p, in, len, step, eof, r);
        assert_int_equal(r->last, whole->last);
        assert_string_equal(r->head, whole->head);
        assert_int_equal(r->body_len, whole->body_len);
        assert_memory_equal(r->body, whole->body, whole->body_len);
        if (whole->last == IAS_HTTP_EV_DONE)
            assert_int_equal(r->consumed, whole->consumed);
    }
    /* Two pieces split at every position. */
    for (size_t cut = 0; cut <= len; cut++) {
        ias_http_parser_begin(p, NULL, false);
        result *a = r;
        memset(a, 0, sizeof(*a));
        size_t used = 0, blen = 0, off = 0;
        const char *body;
        ias_http_ev ev = IAS_HTTP_EV_NEED_MORE;
        size_t bounds[2] = {cut, len};
        for (int part = 0; part < 2 && ev != IAS_HTTP_EV_DONE && ev != IAS_HTTP_EV_ERROR; part++) {
            while (ev != IAS_HTTP_EV_DONE && ev != IAS_HTTP_EV_ERROR) {
                ev = ias_http_parser_run(p, in + off, bounds[part] - off, &used, &body, &blen);
                off += used;
                if (ev == IAS_HTTP_EV_HEADERS)
                    record_head(p, a);
                if (ev == IAS_HTTP_EV_BODY) {
                    memcpy(a->body + a->body_len, body, blen);
                    a->body_len += blen;
                }
                if (ev == IAS_HTTP_EV_NEED_MORE)
                    break;
            }
        }
        if (ev == IAS_HTTP_EV_NEED_MORE && eof)
            ev = ias_http_parser_eof(p);
        assert_int_equal(ev, whole->last);
        assert_string_equal(a->head, whole->head);
        assert_int_equal(a->body_len, whole->body_len);
        assert_memory_equal(a->body, whole->body, whole->body_len);
    }
    ias_http_parser_free(p);
    free(whole);
    free(r);
}

static void test_content_length(void **state)
{
    const char *in = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                     "X-Empty:\r\nX-Spaces:   a b  \r\n\r\nhello";
    result r;
    parse_once(in, strlen(in), false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_int_equal(r.status, 200);
    assert_true(r.keep_alive);
    assert_false(r.chunked);
    assert_int_equal(r.content_length, 5);
    assert_string_equal(r.head, "200 OK\nContent-Type: text/plain\nContent-Length: 5\n"
                                "X-Empty: \nX-Spaces: a b\n");
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(r.body, "hello", 5);
    assert_int_equal(r.consumed, strlen(in));
    check_all_splits(in, false);
}

static void test_header_lookup(void **state)
{
    const char *in = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nConnection: Keep-Alive, "
                     "Upgrade\r\n\r\n";
    ias_http_parser *p = ias_http_parser_new();
    size_t used, blen;
    const char *body;
    assert_int_equal(ias_http_parser_run(p, in, strlen(in), &used, &body, &blen),
                     IAS_HTTP_EV_HEADERS);
    const ias_http_response *resp = ias_http_parser_response(p);
    assert_string_equal(resp->reason, "Not Found");
    assert_string_equal(ias_http_header_get(resp->headers, resp->nheaders, "Content-Length"), "0");
    assert_null(ias_http_header_get(resp->headers, resp->nheaders, "X-Nope"));
    const char *conn = ias_http_header_get(resp->headers, resp->nheaders, "connection");
    assert_true(ias_http_header_has_token(conn, "upgrade"));
    assert_true(ias_http_header_has_token(conn, "keep-alive"));
    assert_false(ias_http_header_has_token(conn, "keep"));
    assert_int_equal(ias_http_parser_run(p, in + used, strlen(in) - used, &used, &body, &blen),
                     IAS_HTTP_EV_DONE);
    assert_int_equal(used, 0);
    assert_true(ias_http_parser_keep_alive(p));
    ias_http_parser_free(p);
}

static void test_chunked_with_trailers(void **state)
{
    const char *in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n"
                     "6;name=value;x=\"q\"\r\n world\r\n"
                     "0000A \t; ext\r\n0123456789\r\n"
                     "0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n";
    result r;
    parse_once(in, strlen(in), false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_true(r.chunked);
    assert_true(r.keep_alive);
    assert_int_equal(r.content_length, -1);
    assert_int_equal(r.body_len, 21);
    assert_memory_equal(r.body, "hello world0123456789", 21);
    assert_int_equal(r.consumed, strlen(in));
    check_all_splits(in, false);

    ias_http_parser *p = ias_http_parser_new();
    run_parser(p, in, strlen(in), 7, false, &r);
    size_t nt = 0;
    const ias_http_header *t = ias_http_parser_trailers(p, &nt);
    assert_int_equal(nt, 2);
    assert_string_equal(t[0].name, "X-Trailer");
    assert_string_equal(t[0].value, "yes");
    assert_int_equal(ias_http_parser_body_bytes(p), 21);
    ias_http_parser_free(p);
}

static void test_chunked_bare_lf_and_lower_hex(void **state)
{
    const char *in = "HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\na\nabcdefghij\n0\n\n";
    result r;
    parse_once(in, strlen(in), false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_int_equal(r.body_len, 10);
    check_all_splits(in, false);
}

static void expect_error(const char *in, bool eof, ias_http_perr want)
{
    ias_http_parser *p = ias_http_parser_new();
    result *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    run_parser(p, in, strlen(in), strlen(in) ? strlen(in) : 1, eof, r);
    if (r->last != IAS_HTTP_EV_ERROR)
        fail_msg("expected an error for %s", in);
    assert_int_equal(ias_http_parser_error(p), want);
    assert_true(strlen(ias_http_parser_errmsg(p)) > 0);
    /* Sticky. */
    size_t used, blen;
    const char *body;
    assert_int_equal(ias_http_parser_run(p, "x", 1, &used, &body, &blen), IAS_HTTP_EV_ERROR);
    free(r);
    ias_http_parser_free(p);
    check_all_splits(in, eof); /* the error is the same however it is split */
}

static void test_chunked_errors(void **state)
{
    const ias_http_perr P = IAS_HTTP_PERR_PROTOCOL;
    const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    char buf[512];
    const char *bad[] = {
        "\r\n",                         /* no size */
        "g\r\n",                        /* not hex */
        "5\r\nhelloX\r\n",              /* data not followed by CRLF */
        "5\r\nhello\rX",                /* CR not followed by LF */
        "5 6\r\nhello\r\n",             /* junk after the size */
        "10000000000000000\r\n",        /* overflow */
        "5\rX",                         /* CR LF broken after size */
        "0\r\nbad trailer\r\n\r\n",     /* malformed trailer */
        "5;\x01\r\nhello\r\n0\r\n\r\n", /* control byte in extension */
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++) {
        snprintf(buf, sizeof(buf), "%s%s", h, bad[i]);
        expect_error(buf, false, P);
    }
    /* Over-long extension line. */
    char *big = malloc(4096);
    assert_non_null(big);
    int n = snprintf(big, 4096, "%s5;", h);
    memset(big + n, 'x', 2000);
    strcpy(big + n + 2000, "\r\n");
    expect_error(big, false, IAS_HTTP_PERR_TOO_LARGE);
    free(big);
    /* Truncated. */
    snprintf(buf, sizeof(buf), "%s5\r\nhel", h);
    expect_error(buf, true, IAS_HTTP_PERR_TRUNCATED);
    snprintf(buf, sizeof(buf), "%s5\r\nhello\r\n0\r\n", h);
    expect_error(buf, true, IAS_HTTP_PERR_TRUNCATED);
}

static void test_until_close(void **state)
{
    const char *in = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n\n";
    result r;
    parse_once(in, strlen(in), true, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_true(r.until_close);
    assert_false(r.keep_alive);
    assert_int_equal(r.body_len, 9);
    check_all_splits(in, true);
    /* Without eof it is still waiting. */
    parse_once(in, strlen(in), false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_NEED_MORE);
    /* A transfer coding other than chunked also reads until close. */
    const char *gz =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdef";
    parse_once(gz, strlen(gz), true, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_int_equal(r.body_len, 6);
    assert_false(r.keep_alive);
}

static void test_no_body_statuses(void **state)
{
    const char *cases[] = {
        "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(cases); i++) {
        result r;
        parse_once(cases[i], strlen(cases[i]), false, &r);
        assert_int_equal(r.last, IAS_HTTP_EV_DONE);
        assert_int_equal(r.body_len, 0);
        assert_true(r.keep_alive);
    }
    /* HEAD: Content-Length describes the GET body, none follows. */
    const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    ias_http_parser *p = ias_http_parser_new();
    ias_http_parser_begin(p, NULL, true);
    result r;
    run_parser(p, in, strlen(in), 3, false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_int_equal(r.content_length, 100);
    assert_int_equal(r.body_len, 0);
    assert_true(ias_http_parser_keep_alive(p));
    ias_http_parser_free(p);
}

static void test_interim_responses(void **state)
{
    const char *in = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    result r;
    parse_once(in, strlen(in), false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.headers_events, 1);
    assert_string_equal(r.head, "201 Created\nContent-Length: 2\n");
    check_all_splits(in, false);
    expect_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false,
                 IAS_HTTP_PERR_PROTOCOL);
}

static void test_keep_alive_rules(void **state)
{
    struct {
        const char *in;
        bool ka;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         false},
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(cases); i++) {
        ias_http_parser *p = ias_http_parser_new();
        result r;
        run_parser(p, cases[i].in, strlen(cases[i].in), 1000, false, &r);
        assert_int_equal(r.last, IAS_HTTP_EV_DONE);
        assert_int_equal(ias_http_parser_keep_alive(p), cases[i].ka);
        ias_http_parser_free(p);
    }
}

static void test_content_length_rules(void **state)
{
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc";
    result r;
    parse_once(ok, strlen(ok), false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_int_equal(r.body_len, 3);
    const char *bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++)
        expect_error(bad[i], false, IAS_HTTP_PERR_PROTOCOL);
    /* Truncated fixed-length body. */
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true, IAS_HTTP_PERR_TRUNCATED);
}

static void test_malformed_heads(void **state)
{
    const char *bad[] = {
        "HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n\tcontinued\r\n\r\n",
        "HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\x01\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 600 High\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 200 O\x01K\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "\r\n\r\n\r\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++)
        expect_error(bad[i], false, IAS_HTTP_PERR_PROTOCOL);
    /* Junk is rejected after five bytes, not after the header limit. */
    ias_http_parser *p = ias_http_parser_new();
    size_t used, blen;
    const char *body;
    assert_int_equal(ias_http_parser_run(p, "GARBAGE", 7, &used, &body, &blen), IAS_HTTP_EV_ERROR);
    ias_http_parser_free(p);
}

static void test_lenient_heads(void **state)
{
    const char *cases[] = {
        "\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 Ok \xc3\xa9\r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(cases); i++) {
        result r;
        parse_once(cases[i], strlen(cases[i]), false, &r);
        assert_int_equal(r.last, IAS_HTTP_EV_DONE);
        assert_int_equal(r.status, 200);
        check_all_splits(cases[i], false);
    }
}

static void test_limits(void **state)
{
    /* Head over max_header_bytes. */
    char *big = malloc(70000);
    assert_non_null(big);
    int n = snprintf(big, 70000, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + n, 'a', 20000);
    strcpy(big + n + 20000, "\r\n\r\n");
    ias_http_parser *p = ias_http_parser_new();
    result *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    run_parser(p, big, strlen(big), 100, false, r);
    assert_int_equal(r->last, IAS_HTTP_EV_ERROR);
    assert_int_equal(ias_http_parser_error(p), IAS_HTTP_PERR_TOO_LARGE);
    /* The same head fits under a larger limit. */
    ias_http_parse_limits lim = {.max_header_bytes = 32 * 1024};
    ias_http_parser_begin(p, &lim, false);
    run_parser(p, big, strlen(big), 4096, false, r);
    assert_int_equal(r->last, IAS_HTTP_EV_NEED_MORE); /* no framing: reads until close */
    assert_int_equal(r->status, 200);
    /* Too many header lines. */
    n = snprintf(big, 70000, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 101; i++)
        n += snprintf(big + n, (size_t)(70000 - n), "X-%d: v\r\n", i);
    snprintf(big + n, (size_t)(70000 - n), "\r\n");
    ias_http_parser_begin(p, NULL, false);
    run_parser(p, big, strlen(big), 512, false, r);
    assert_int_equal(r->last, IAS_HTTP_EV_ERROR);
    assert_int_equal(ias_http_parser_error(p), IAS_HTTP_PERR_TOO_LARGE);
    /* Trailers over the limit. */
    lim.max_header_bytes = 128;
    ias_http_parser_begin(p, &lim, false);
    n = snprintf(big, 70000, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ");
    memset(big + n, 'b', 200);
    strcpy(big + n + 200, "\r\n\r\n");
    run_parser(p, big, strlen(big), 64, false, r);
    assert_int_equal(r->last, IAS_HTTP_EV_ERROR);
    assert_int_equal(ias_http_parser_error(p), IAS_HTTP_PERR_TOO_LARGE);
    free(r);
    free(big);
    ias_http_parser_free(p);
}

static void test_truncation(void **state)
{
    ias_http_parser *p = ias_http_parser_new();
    assert_false(ias_http_parser_started(p));
    assert_int_equal(ias_http_parser_eof(p), IAS_HTTP_EV_ERROR);
    assert_int_equal(ias_http_parser_error(p), IAS_HTTP_PERR_TRUNCATED);
    assert_non_null(strstr(ias_http_parser_errmsg(p), "before any"));
    ias_http_parser_begin(p, NULL, false);
    assert_int_equal(ias_http_parser_error(p), IAS_HTTP_PERR_NONE);
    size_t used, blen;
    const char *body;
    assert_int_equal(ias_http_parser_run(p, "HTTP/1.1 2", 10, &used, &body, &blen),
                     IAS_HTTP_EV_NEED_MORE);
    assert_true(ias_http_parser_started(p));
    assert_int_equal(ias_http_parser_eof(p), IAS_HTTP_EV_ERROR);
    assert_int_equal(ias_http_parser_error(p), IAS_HTTP_PERR_TRUNCATED);
    ias_http_parser_free(p);
}

/* Two responses back to back on one buffer: DONE stops at the boundary. */
static void test_pipelined_boundary(void **state)
{
    const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabHTTP/1.1 204 No\r\n\r\n";
    ias_http_parser *p = ias_http_parser_new();
    result r;
    run_parser(p, in, strlen(in), strlen(in), false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    size_t first = r.consumed;
    assert_int_equal(first, strlen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"));
    ias_http_parser_begin(p, NULL, false);
    run_parser(p, in + first, strlen(in) - first, 5, false, &r);
    assert_int_equal(r.last, IAS_HTTP_EV_DONE);
    assert_int_equal(r.status, 204);
    ias_http_parser_free(p);
}

static void test_url_parse(void **state)
{
    ias_http_url u;
    assert_int_equal(ias_http_url_parse("http://example.com/v1/chat?x=1#frag", &u), IAS_OK);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 80);
    assert_int_equal(u.path_len, strlen("/v1/chat?x=1"));
    assert_memory_equal(u.path, "/v1/chat?x=1", u.path_len);
    assert_false(u.host_is_ipv6);

    assert_int_equal(ias_http_url_parse("HTTP://127.0.0.1:8090", &u), IAS_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 8090);
    assert_int_equal(u.path_len, 0);

    assert_int_equal(ias_http_url_parse("http://[::1]:9000/a", &u), IAS_OK);
    assert_string_equal(u.host, "::1");
    assert_true(u.host_is_ipv6);
    assert_int_equal(u.port, 9000);

    assert_int_equal(ias_http_url_parse("http://vllm-0.models.svc.cluster.local:8000?q", &u),
                     IAS_OK);
    assert_string_equal(u.host, "vllm-0.models.svc.cluster.local");
    assert_memory_equal(u.path, "?q", 2);

    const char *bad[] = {
        NULL,
        "",
        "https://example.com/",
        "ftp://x/",
        "http://",
        "http:///path",
        "http://user:pw@host/",
        "http://host:/",
        "http://host:0/",
        "http://host:65536/",
        "http://host:123456/",
        "http://host:80x/",
        "http://ho st/",
        "http://host/a b",
        "http://host/\x01",
        "http://[::1/",
        "http://[nothex]/",
        "http://[]/",
        "http://h\xc3\xa9/",
        "example.com",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++)
        if (ias_http_url_parse(bad[i], &u) != IAS_ERR)
            fail_msg("accepted bad url #%zu", i);
    char longhost[400];
    memset(longhost, 0, sizeof(longhost));
    strcpy(longhost, "http://");
    memset(longhost + 7, 'a', 300);
    assert_int_equal(ias_http_url_parse(longhost, &u), IAS_ERR);
}

static void test_url_parse_unix(void **state)
{
    ias_http_url u;
    assert_int_equal(ias_http_url_parse("http://h/x", &u), IAS_OK);
    assert_string_equal(u.unix_path, "");

    assert_int_equal(ias_http_url_parse("unix:/run/ias/router.sock", &u), IAS_OK);
    assert_string_equal(u.unix_path, "/run/ias/router.sock");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 80);
    assert_int_equal(u.path_len, 0);

    /* a base URL with a trailing ':' and a path appended, as ingress builds it */
    assert_int_equal(ias_http_url_parse("UNIX:/tmp/r.sock:/v1/chat/completions?a=1#f", &u), IAS_OK);
    assert_string_equal(u.unix_path, "/tmp/r.sock");
    assert_int_equal(u.path_len, strlen("/v1/chat/completions?a=1"));
    assert_memory_equal(u.path, "/v1/chat/completions?a=1", u.path_len);
    assert_int_equal(ias_http_url_parse("unix:/tmp/r.sock:", &u), IAS_OK);
    assert_string_equal(u.unix_path, "/tmp/r.sock");
    assert_int_equal(u.path_len, 0);
    assert_int_equal(ias_http_url_parse("unix:relative.sock:?q", &u), IAS_OK);
    assert_string_equal(u.unix_path, "relative.sock");
    assert_memory_equal(u.path, "?q", 2);

    assert_int_equal(ias_http_url_parse("http+unix://%2Ftmp%2fr.sock/v1/x?y", &u), IAS_OK);
    assert_string_equal(u.unix_path, "/tmp/r.sock");
    assert_string_equal(u.host, "localhost");
    assert_memory_equal(u.path, "/v1/x?y", u.path_len);
    assert_int_equal(ias_http_url_parse("http+unix://%2Ftmp%2Fr.sock", &u), IAS_OK);
    assert_string_equal(u.unix_path, "/tmp/r.sock");
    assert_int_equal(u.path_len, 0);

    char longpath[200] = "unix:/";
    memset(longpath + 6, 'a', IAS_HTTP_UNIX_PATH_MAX - 2); /* path of 107 bytes: fits */
    assert_int_equal(ias_http_url_parse(longpath, &u), IAS_OK);
    assert_int_equal(strlen(u.unix_path), IAS_HTTP_UNIX_PATH_MAX - 1);
    longpath[6 + IAS_HTTP_UNIX_PATH_MAX - 2] = 'a'; /* 108: no room for the NUL */
    assert_int_equal(ias_http_url_parse(longpath, &u), IAS_ERR);

    const char *bad[] = {
        "unix:",
        "unix::/v1",
        "unix:/tmp/r.sock:v1",
        "unix:/tmp/r sock",
        "unix:/tmp/r.sock:/a\x01",
        "unix /tmp/r.sock",
        "http+unix://",
        "http+unix:///v1",
        "http+unix://%2Ftmp%2Fr.sock:80/v1",
        "http+unix://u@%2Ftmp/",
        "http+unix://%2Ftmp%00x/",
        "http+unix://%2Ftmp%0a/",
        "http+unix://%2Ftmp%2/",
        "http+unix://%zz/",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++)
        if (ias_http_url_parse(bad[i], &u) != IAS_ERR)
            fail_msg("accepted bad unix url #%zu", i);
    assert_string_equal(u.unix_path, ""); /* a refused URL leaves nothing behind */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_chunked_with_trailers),
        cmocka_unit_test(test_chunked_bare_lf_and_lower_hex),
        cmocka_unit_test(test_chunked_errors),
        cmocka_unit_test(test_until_close),
        cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_interim_responses),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_content_length_rules),
        cmocka_unit_test(test_malformed_heads),
        cmocka_unit_test(test_lenient_heads),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_pipelined_boundary),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_url_parse_unix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
