#include "testlib.h"

#include "ias/query.h"

#include <limits.h>
#include <string.h>

static void test_url_decode(void **state)
{
    char buf[64];

    assert_int_equal(ias_url_decode("a%20b+c", 7, true, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "a b c");
    assert_int_equal(ias_url_decode("a%20b+c", 7, false, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "a b+c");
    assert_int_equal(ias_url_decode("%2f%2F%e2%82%ac", 15, false, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "//\xe2\x82\xac");
    assert_int_equal(ias_url_decode("", 0, true, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    /* srclen bounds the input, not the NUL */
    assert_int_equal(ias_url_decode("abcdef", 3, true, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "abc");
}

static void test_url_decode_malformed(void **state)
{
    char buf[64];
    const char *bad[] = {"%", "%2", "a%g0", "%0g", "%00", "x%zz", "abc%"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(buf, "junk");
        assert_int_equal(ias_url_decode(bad[i], strlen(bad[i]), true, buf, sizeof(buf)),
                         IAS_QUERY_MALFORMED);
        assert_string_equal(buf, "");
    }
    /* an embedded NUL inside srclen is malformed too */
    assert_int_equal(ias_url_decode("a\0b", 3, true, buf, sizeof(buf)), IAS_QUERY_MALFORMED);
}

static void test_url_decode_bounds(void **state)
{
    char buf[4];

    assert_int_equal(ias_url_decode("abc", 3, true, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "abc");
    assert_int_equal(ias_url_decode("abcd", 4, true, buf, sizeof(buf)), IAS_QUERY_TOOLONG);
    assert_string_equal(buf, "");
    /* %41 is one byte: fits */
    assert_int_equal(ias_url_decode("%41%42%43", 9, true, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "ABC");
    /* malformed wins over too long, whatever the buffer size */
    assert_int_equal(ias_url_decode("abcdef%zz", 9, true, buf, sizeof(buf)), IAS_QUERY_MALFORMED);
    assert_int_equal(ias_url_decode("a", 1, true, buf, 0), IAS_QUERY_TOOLONG);
    assert_int_equal(ias_url_decode("a", 1, true, buf, 1), IAS_QUERY_TOOLONG);
    assert_string_equal(buf, "");
}

static void test_query_get(void **state)
{
    char buf[32];
    const char *q = "limit=10&after=abc%2Fdef&q=hello+world&flag&empty=&a%5Fb=x&limit=99";

    assert_int_equal(ias_query_get(q, "limit", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "10"); /* first one wins */
    assert_int_equal(ias_query_get(q, "after", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "abc/def");
    assert_int_equal(ias_query_get(q, "q", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "hello world");
    assert_int_equal(ias_query_get(q, "flag", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "");
    assert_int_equal(ias_query_get(q, "empty", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "");
    assert_int_equal(ias_query_get(q, "a_b", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "x");
    assert_int_equal(ias_query_get(q, "nope", buf, sizeof(buf)), IAS_QUERY_MISSING);
    assert_string_equal(buf, "");
    /* a prefix of a key is not the key */
    assert_int_equal(ias_query_get(q, "lim", buf, sizeof(buf)), IAS_QUERY_MISSING);
    assert_int_equal(ias_query_get(NULL, "x", buf, sizeof(buf)), IAS_QUERY_MISSING);
    assert_int_equal(ias_query_get("", "x", buf, sizeof(buf)), IAS_QUERY_MISSING);
    assert_int_equal(ias_query_get("&&x=1&&", "x", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "1");
    /* '=' inside a value is data */
    assert_int_equal(ias_query_get("t=a=b", "t", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "a=b");
}

static void test_query_errors(void **state)
{
    char small[4];
    char buf[32];

    assert_int_equal(ias_query_get("x=12345", "x", small, sizeof(small)), IAS_QUERY_TOOLONG);
    assert_string_equal(small, "");
    assert_int_equal(ias_query_get("x=123", "x", small, sizeof(small)), IAS_QUERY_FOUND);
    assert_string_equal(small, "123");
    assert_int_equal(ias_query_get("x=%zz", "x", buf, sizeof(buf)), IAS_QUERY_MALFORMED);
    assert_int_equal(ias_query_get("x=%00", "x", buf, sizeof(buf)), IAS_QUERY_MALFORMED);
    /* a malformed key before the match could have been the one asked for */
    assert_int_equal(ias_query_get("%zz=1&x=2", "x", buf, sizeof(buf)), IAS_QUERY_MALFORMED);
    /* a malformed value of another key is not looked at */
    assert_int_equal(ias_query_get("y=%zz&x=2", "x", buf, sizeof(buf)), IAS_QUERY_FOUND);
    assert_string_equal(buf, "2");
    /* a flag with no room even for "" */
    assert_int_equal(ias_query_get("x", "x", buf, 0), IAS_QUERY_TOOLONG);
}

static void test_query_ll(void **state)
{
    long long v = 7;

    assert_int_equal(ias_query_get_ll("limit=25", "limit", 1, 100, &v), IAS_QUERY_FOUND);
    assert_int_equal(v, 25);
    v = 7;
    assert_int_equal(ias_query_get_ll("x=1", "limit", 1, 100, &v), IAS_QUERY_MISSING);
    assert_int_equal(v, 7);
    assert_int_equal(ias_query_get_ll("limit=0", "limit", 1, 100, &v), IAS_QUERY_MALFORMED);
    assert_int_equal(ias_query_get_ll("limit=101", "limit", 1, 100, &v), IAS_QUERY_MALFORMED);
    assert_int_equal(ias_query_get_ll("limit=1x", "limit", 1, 100, &v), IAS_QUERY_MALFORMED);
    assert_int_equal(ias_query_get_ll("limit=", "limit", 1, 100, &v), IAS_QUERY_MALFORMED);
    assert_int_equal(ias_query_get_ll("limit=+5", "limit", 1, 100, &v), IAS_QUERY_MALFORMED);
    assert_int_equal(ias_query_get_ll("limit=-5", "limit", -10, 100, &v), IAS_QUERY_FOUND);
    assert_int_equal(v, -5);
    assert_int_equal(ias_query_get_ll("n=99999999999999999999999", "n", LLONG_MIN, LLONG_MAX, &v),
                     IAS_QUERY_MALFORMED);
    assert_int_equal(v, -5);
}

/* The encoding of raw bytes as a cursor string, for forging test cursors. */
static void forge(const char *raw, size_t n, char *out, size_t outlen)
{
    assert_true(ias_b64url_encode(raw, n, out, outlen) >= 0);
}

static void test_cursor_roundtrip(void **state)
{
    const char *ts = "2026-11-22T05:40:00.123456Z", *id = "0190f3b2-7c4e-7abc-8def-0123456789ab";
    char enc[IAS_CURSOR_MAX];
    ias_cursor c;

    assert_int_equal(ias_cursor_encode(ts, id, enc, sizeof(enc)), IAS_OK);
    /* The users service's format since its first release: base64url("ts|id"),
     * no padding. Clients may hold such cursors; it must not change. */
    assert_string_equal(enc,
                        "MjAyNi0xMS0yMlQwNTo0MDowMC4xMjM0NTZafDAxOTBmM2IyLTdjNGUtN2FiYy04ZGVmLT"
                        "AxMjM0NTY3ODlhYg");
    assert_int_equal(ias_cursor_decode(enc, &c), IAS_OK);
    assert_string_equal(c.ts, ts);
    assert_string_equal(c.id, id);

    /* Whole seconds, fewer fraction digits, upper-case ids and leap days pass. */
    const char *good[] = {"2026-01-01T00:00:00Z", "1999-12-31T23:59:59.5Z",
                          "2024-02-29T12:00:00.000001Z", "2000-02-29T00:00:00Z"};
    for (size_t i = 0; i < IAS_ARRAY_LEN(good); i++) {
        assert_int_equal(
            ias_cursor_encode(good[i], "0190F3B2-7C4E-7ABC-8DEF-0123456789AB", enc, sizeof(enc)),
            IAS_OK);
        assert_int_equal(ias_cursor_decode(enc, &c), IAS_OK);
        assert_string_equal(c.ts, good[i]);
    }
}

static void test_cursor_rejects(void **state)
{
    const char *id = "0190f3b2-7c4e-7abc-8def-0123456789ab";
    char enc[IAS_CURSOR_MAX], raw[160];
    ias_cursor c;

    /* Not base64url at all, padding, empty, too long. */
    const char *junk[] = {"", "zzz", "a+b/", "MjAy=", "!!!!"};
    for (size_t i = 0; i < IAS_ARRAY_LEN(junk); i++) {
        memset(&c, 'x', sizeof(c));
        assert_int_equal(ias_cursor_decode(junk[i], &c), IAS_ERR);
        assert_string_equal(c.ts, "");
        assert_string_equal(c.id, "");
    }
    assert_int_equal(ias_cursor_decode(NULL, &c), IAS_ERR);
    memset(raw, 'A', sizeof(raw) - 1);
    raw[sizeof(raw) - 1] = '\0';
    assert_int_equal(ias_cursor_decode(raw, &c), IAS_ERR);

    /* Valid base64url around contents that are not ts|uuid. */
    const char *bad[] = {
        "no bar here",
        "2026-11-22T05:40:00.123456Z|not-a-uuid",
        "2026-11-22T05:40:00.123456Z|0190f3b2-7c4e-7abc-8def-0123456789abX",
        "2026-11-22T05:40:00.123456Z|0190f3b2-7c4e-7abc-8def-0123456789a",
        "|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-13-01T00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-02-30T00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2025-02-29T00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "1900-02-29T00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "0000-01-01T00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T24:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T00:60:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T00:00:60Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T00:00:00.Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T00:00:00.1234567Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T00:00:00.12a4Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T00:00:00|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01T00:00:00+02:00|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-01-01 00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "-infinity|0190f3b2-7c4e-7abc-8def-0123456789ab",
        "2026-1a-01T00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++) {
        forge(bad[i], strlen(bad[i]), enc, sizeof(enc));
        assert_int_equal(ias_cursor_decode(enc, &c), IAS_ERR);
    }
    /* A NUL hidden inside would let trailing bytes ride along unseen. */
    const char nul[] = "2026-01-01T00:00:00Z|0190f3b2-7c4e-7abc-8def-0123456789ab\0junk";
    forge(nul, sizeof(nul) - 1, enc, sizeof(enc));
    assert_int_equal(ias_cursor_decode(enc, &c), IAS_ERR);

    /* encode refuses what decode would refuse, and a short buffer. */
    assert_int_equal(ias_cursor_encode("2026-13-01T00:00:00Z", id, enc, sizeof(enc)), IAS_ERR);
    assert_int_equal(ias_cursor_encode("2026-01-01T00:00:00Z", "nope", enc, sizeof(enc)), IAS_ERR);
    assert_int_equal(ias_cursor_encode(NULL, id, enc, sizeof(enc)), IAS_ERR);
    assert_int_equal(ias_cursor_encode("2026-01-01T00:00:00Z", id, enc, 20), IAS_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_decode),        cmocka_unit_test(test_url_decode_malformed),
        cmocka_unit_test(test_url_decode_bounds), cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_query_errors),      cmocka_unit_test(test_query_ll),
        cmocka_unit_test(test_cursor_roundtrip),  cmocka_unit_test(test_cursor_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
