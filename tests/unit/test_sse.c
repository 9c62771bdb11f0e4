/* Unit tests for the incremental Server-Sent Events parser. */
#include "testlib.h"

#include "ias/sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Events serialized as "type|id|retry|data" records separated by 0x1e. */
typedef struct collect {
    char out[65536];
    size_t len;
    int n;
    int stop_after; /* stop when n reaches it (0: never) */
} collect;

static int on_event(const ias_sse_event *ev, void *arg)
{
    collect *c = arg;
    assert_int_equal(ev->data[ev->data_len], '\0');
    int w = snprintf(c->out + c->len, sizeof(c->out) - c->len, "%.*s|%.*s|%lld|", (int)ev->type_len,
                     ev->type, (int)ev->id_len, ev->id, (long long)ev->retry_ms);
    assert_true(w > 0 && (size_t)w < sizeof(c->out) - c->len);
    c->len += (size_t)w;
    assert_true(c->len + ev->data_len + 1 < sizeof(c->out));
    memcpy(c->out + c->len, ev->data, ev->data_len);
    c->len += ev->data_len;
    c->out[c->len++] = 0x1e;
    c->out[c->len] = '\0';
    c->n++;
    if (c->stop_after && c->n >= c->stop_after)
        return IAS_ERR;
    return IAS_OK;
}

/* Feeds len bytes in pieces of step bytes (each piece in its own allocation). */
static int feed_steps(ias_sse_parser *p, const char *in, size_t len, size_t step)
{
    int rc = IAS_OK;
    for (size_t off = 0; off < len && rc == IAS_OK; off += step) {
        size_t n = len - off < step ? len - off : step;
        char *piece = malloc(n);
        assert_non_null(piece);
        memcpy(piece, in + off, n);
        rc = ias_sse_parser_feed(p, piece, n);
        free(piece);
    }
    return rc;
}

static int parse_whole(const char *in, size_t len, size_t max, collect *c)
{
    memset(c, 0, sizeof(*c));
    ias_sse_parser *p = ias_sse_parser_new(max, on_event, c);
    int rc = feed_steps(p, in, len, len ? len : 1);
    ias_sse_parser_free(p);
    return rc;
}

/* Byte by byte, every piece size, and two pieces cut at every position give
 * the same events (and the same outcome) as one feed. */
static void check_splits(const char *in, size_t len, size_t max)
{
    collect *whole = malloc(sizeof(*whole)), *c = malloc(sizeof(*c));
    assert_non_null(whole);
    assert_non_null(c);
    int want = parse_whole(in, len, max, whole);
    for (size_t step = 1; step <= len; step++) {
        memset(c, 0, sizeof(*c));
        ias_sse_parser *p = ias_sse_parser_new(max, on_event, c);
        int rc = feed_steps(p, in, len, step);
        assert_int_equal(rc, want);
        assert_int_equal(c->n, whole->n);
        assert_int_equal(c->len, whole->len);
        assert_memory_equal(c->out, whole->out, whole->len);
        ias_sse_parser_free(p);
    }
    for (size_t cut = 0; cut <= len; cut++) {
        memset(c, 0, sizeof(*c));
        ias_sse_parser *p = ias_sse_parser_new(max, on_event, c);
        int rc = ias_sse_parser_feed(p, in, cut);
        if (rc == IAS_OK)
            rc = ias_sse_parser_feed(p, in + cut, len - cut);
        assert_int_equal(rc, want);
        assert_int_equal(c->len, whole->len);
        assert_memory_equal(c->out, whole->out, whole->len);
        ias_sse_parser_free(p);
    }
    free(whole);
    free(c);
}

static const char vllm[] =
    "data: {\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\"}}]}\n\n"
    "data: {\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"
    "data: {\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
    "\"completion_tokens\":1,\"total_tokens\":6}}\n\n"
    "data: [DONE]\n\n";

static const char vllm_expected[] =
    "message||-1|{\"id\":\"cmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\"}}]}\x1e"
    "message||-1|{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\x1e"
    "message||-1|{\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
    "\"completion_tokens\":1,\"total_tokens\":6}}\x1e"
    "message||-1|[DONE]\x1e";

static void test_vllm_stream(void **state)
{
    collect c;
    assert_int_equal(parse_whole(vllm, strlen(vllm), 0, &c), IAS_OK);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.out, vllm_expected);
    check_splits(vllm, strlen(vllm), 0);
}

/* The same stream with CRLF and with CR line ends. */
static void replace_lf(const char *in, const char *eol, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *s = in; *s; s++) {
        const char *add = *s == '\n' ? eol : NULL;
        size_t n = add ? strlen(add) : 1;
        assert_true(o + n < outlen);
        memcpy(out + o, add ? add : s, n);
        o += n;
    }
    out[o] = '\0';
}

static void test_line_endings(void **state)
{
    char buf[2048];
    const char *eols[] = {"\r\n", "\r"};
    for (size_t i = 0; i < IAS_ARRAY_LEN(eols); i++) {
        replace_lf(vllm, eols[i], buf, sizeof(buf));
        collect c;
        assert_int_equal(parse_whole(buf, strlen(buf), 0, &c), IAS_OK);
        assert_string_equal(c.out, vllm_expected);
        check_splits(buf, strlen(buf), 0);
    }
    /* Mixed endings; in "\r\r\n" the first CR ends the data line and "\r\n"
     * ends an empty line, which dispatches. */
    const char *mixed = "data: a\r\ndata: b\rdata: c\n\r\n"
                        "data: d\r\r\n";
    collect c;
    assert_int_equal(parse_whole(mixed, strlen(mixed), 0, &c), IAS_OK);
    assert_string_equal(c.out, "message||-1|a\nb\nc\x1emessage||-1|d\x1e");
    check_splits(mixed, strlen(mixed), 0);
}

static void test_fields(void **state)
{
    const char *in = ": this is a comment\n"
                     ":\n"
                     "event: delta\n"
                     "id: 42\n"
                     "retry: 1500\n"
                     "data:no space\n"
                     "data:  two spaces\n"
                     "data\n"
                     "unknown: field\n"
                     "Data: case matters\n"
                     "\n"
                     "data: second\n"
                     "retry: 12x\n"
                     "id\n"
                     "\n"
                     "event: only-type\n"
                     "\n"
                     "data: after\n"
                     "\n";
    collect c;
    assert_int_equal(parse_whole(in, strlen(in), 0, &c), IAS_OK);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.out, "delta|42|1500|no space\n two spaces\n\x1e"
                               "message||1500|second\x1e"
                               "message||1500|after\x1e");
    check_splits(in, strlen(in), 0);
}

static void test_id_rules(void **state)
{
    /* id persists across events; an id containing NUL is ignored. */
    const char in[] = "id: 7\ndata: a\n\ndata: b\n\nid: x\0y\ndata: c\n\n";
    collect c;
    assert_int_equal(parse_whole(in, sizeof(in) - 1, 0, &c), IAS_OK);
    assert_string_equal(c.out, "message|7|-1|a\x1emessage|7|-1|b\x1emessage|7|-1|c\x1e");
    check_splits(in, sizeof(in) - 1, 0);
}

static void test_empty_and_binary_data(void **state)
{
    const char in[] = "data\n\ndata:\n\ndata: \n\ndata: a\0b\n\n";
    collect c;
    assert_int_equal(parse_whole(in, sizeof(in) - 1, 0, &c), IAS_OK);
    assert_int_equal(c.n, 4);
    const char want[] = "message||-1|\x1emessage||-1|\x1emessage||-1|\x1emessage||-1|a\0b\x1e";
    assert_int_equal(c.len, sizeof(want) - 1);
    assert_memory_equal(c.out, want, sizeof(want) - 1);
}

static void test_bom(void **state)
{
    const char in[] = "\xEF\xBB\xBF"
                      "data: x\n\n\xEF\xBB\xBF"
                      "data: y\n\n";
    collect c;
    assert_int_equal(parse_whole(in, sizeof(in) - 1, 0, &c), IAS_OK);
    /* Only the first BOM goes; the second makes an unknown field name. */
    assert_string_equal(c.out, "message||-1|x\x1e");
    check_splits(in, sizeof(in) - 1, 0);
    /* A partial BOM is ordinary data. */
    const char partial[] = "\xEF\xBB"
                           "data: z\n\n";
    assert_int_equal(parse_whole(partial, sizeof(partial) - 1, 0, &c), IAS_OK);
    assert_int_equal(c.n, 0);
    check_splits(partial, sizeof(partial) - 1, 0);
    const char ee[] = "\xEF\xEF\nx\n\ndata: ok\n\n";
    assert_int_equal(parse_whole(ee, sizeof(ee) - 1, 0, &c), IAS_OK);
    assert_string_equal(c.out, "message||-1|ok\x1e");
}

static void test_oversized_event(void **state)
{
    /* Many small data lines add up past the limit. */
    char in[4096];
    size_t o = 0;
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(in + o, sizeof(in) - o, "data: 0123456789\n");
    o += (size_t)snprintf(in + o, sizeof(in) - o, "\n");
    collect c;
    assert_int_equal(parse_whole(in, o, 1000, &c), IAS_OK); /* 440 bytes fit in 1000 */
    assert_int_equal(c.n, 1);
    assert_int_equal(parse_whole(in, o, 300, &c), IAS_ERR);
    assert_int_equal(c.n, 0);
    check_splits(in, o, 300);

    /* One long unterminated line is refused before it is complete. */
    ias_sse_parser *p = ias_sse_parser_new(256, on_event, &c);
    memset(&c, 0, sizeof(c));
    char chunk[100];
    memset(chunk, 'x', sizeof(chunk));
    assert_int_equal(ias_sse_parser_feed(p, "data: ", 6), IAS_OK);
    assert_int_equal(ias_sse_parser_feed(p, chunk, sizeof(chunk)), IAS_OK);
    assert_int_equal(ias_sse_parser_feed(p, chunk, sizeof(chunk)), IAS_OK);
    assert_int_equal(ias_sse_parser_feed(p, chunk, sizeof(chunk)), IAS_ERR);
    assert_int_equal(ias_sse_parser_error(p), IAS_SSE_ERR_TOO_LARGE);
    /* Sticky until reset. */
    assert_int_equal(ias_sse_parser_feed(p, "\n\n", 2), IAS_ERR);
    ias_sse_parser_reset(p);
    assert_int_equal(ias_sse_parser_error(p), IAS_SSE_ERR_NONE);
    assert_int_equal(ias_sse_parser_feed(p, "data: ok\n\n", 10), IAS_OK);
    assert_int_equal(c.n, 1);
    ias_sse_parser_free(p);

    /* Events under the limit keep flowing when the stream as a whole is huge. */
    p = ias_sse_parser_new(64, on_event, &c);
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ias_sse_parser_feed(p, "data: 0123456789\n\n", 18), IAS_OK);
    assert_int_equal(c.n, 1000);
    ias_sse_parser_free(p);
}

static void test_callback_stop(void **state)
{
    collect c;
    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    ias_sse_parser *p = ias_sse_parser_new(0, on_event, &c);
    assert_int_equal(ias_sse_parser_feed(p, vllm, strlen(vllm)), IAS_ERR);
    assert_int_equal(ias_sse_parser_error(p), IAS_SSE_ERR_STOPPED);
    assert_int_equal(c.n, 2);
    assert_int_equal(ias_sse_parser_feed(p, "data: x\n\n", 9), IAS_ERR);
    assert_int_equal(c.n, 2);
    ias_sse_parser_free(p);
}

static void test_pending(void **state)
{
    collect c;
    memset(&c, 0, sizeof(c));
    ias_sse_parser *p = ias_sse_parser_new(0, on_event, &c);
    assert_false(ias_sse_parser_pending(p));
    assert_int_equal(ias_sse_parser_feed(p, "data: par", 9), IAS_OK);
    assert_true(ias_sse_parser_pending(p));
    assert_int_equal(ias_sse_parser_feed(p, "tial\n", 5), IAS_OK);
    assert_true(ias_sse_parser_pending(p)); /* line done, event not dispatched */
    assert_int_equal(c.n, 0);
    assert_int_equal(ias_sse_parser_feed(p, "\n", 1), IAS_OK);
    assert_false(ias_sse_parser_pending(p));
    assert_int_equal(c.n, 1);
    assert_string_equal(c.out, "message||-1|partial\x1e");
    assert_int_equal(ias_sse_parser_feed(p, ": ping\n", 7), IAS_OK);
    assert_false(ias_sse_parser_pending(p)); /* comments are not an event */
    assert_int_equal(ias_sse_parser_feed(p, "id: 9\nretry: 5\n\n", 16), IAS_OK);
    ias_sse_parser_reset(p);
    memset(&c, 0, sizeof(c));
    assert_int_equal(ias_sse_parser_feed(p, "data: z\n\n", 9), IAS_OK);
    assert_string_equal(c.out, "message||-1|z\x1e"); /* id and retry forgotten */
    ias_sse_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_stream),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_id_rules),
        cmocka_unit_test(test_empty_and_binary_data),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_oversized_event),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
