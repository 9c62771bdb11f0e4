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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_decode),        cmocka_unit_test(test_url_decode_malformed),
        cmocka_unit_test(test_url_decode_bounds), cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_query_errors),      cmocka_unit_test(test_query_ll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
