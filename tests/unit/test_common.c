/* libcommon common.h: the decimal formatters the hot paths use instead of
 * snprintf must print exactly what snprintf prints; the JSON escape and hex
 * digit tables the parsers share. */
#include "ias/common.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void check_i64(int64_t v)
{
    char want[32], got[IAS_I64_DEC_MAX], digits[32];
    size_t n;

    snprintf(want, sizeof(want), "%" PRId64, v);
    memset(got, 'x', sizeof(got));
    n = ias_fmt_i64(got, v);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
    if (v >= 0) {
        memset(digits, 'x', sizeof(digits));
        n = ias_put_u64(digits, (uint64_t)v);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(digits, want, n);
        assert_int_equal(digits[n], 'x'); /* no NUL written */
    }
}

static void test_edges(void **state)
{
    (void)state;
    const int64_t vals[] = {0,
                            1,
                            -1,
                            9,
                            10,
                            -10,
                            99,
                            100,
                            12345,
                            -12345,
                            INT32_MAX,
                            INT32_MIN,
                            INT64_MAX,
                            INT64_MIN,
                            INT64_MIN + 1,
                            1000000000000000LL};

    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
        check_i64(vals[i]);
}

static void test_u64_max(void **state)
{
    (void)state;
    char got[24];
    size_t n = ias_put_u64(got, UINT64_MAX);

    got[n] = '\0';
    assert_string_equal(got, "18446744073709551615");
}

static void test_powers_and_neighbours(void **state)
{
    (void)state;
    int64_t p = 1;

    for (int i = 0; i < 19; i++) {
        check_i64(p - 1);
        check_i64(p);
        check_i64(p + 1);
        check_i64(-p);
        if (i < 18)
            p *= 10; /* 10^18 is the last power below INT64_MAX */
    }
}

/* JSON's one-letter escapes (RFC 8259 section 7) and nothing else; digits for hex. */
static void test_json_escape_and_hex(void **state)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";

    (void)state;
    for (size_t i = 0; i < sizeof(from) - 1; i++)
        assert_int_equal(ias_json_escape_value((unsigned char)from[i]), (unsigned char)to[i]);
    for (int c = 0; c < 256; c++) {
        int hex = (c >= '0' && c <= '9')   ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                           : -1;
        if (strchr(from, c) == NULL || c == 0)
            assert_int_equal(ias_json_escape_value((unsigned char)c), -1);
        assert_int_equal(ias_hex_digit((unsigned char)c), hex);
    }
}

/* Cuts as snprintf would: at most cap - 1 bytes, always NUL-terminated. */
static void test_str_append_cut(void **state)
{
    char buf[8];
    const char *want = "abcdefg";
    size_t used = 0;

    (void)state;
    buf[0] = '\0';
    ias_str_append_cut(buf, sizeof(buf), &used, "abc");
    ias_str_append_cut(buf, sizeof(buf), &used, "");
    ias_str_append_cut(buf, sizeof(buf), &used, "defgh");
    assert_string_equal(buf, want);
    assert_int_equal(used, sizeof(buf) - 1);
    ias_str_append_cut(buf, sizeof(buf), &used, "x"); /* full: nothing changes */
    assert_string_equal(buf, want);
    assert_int_equal(used, sizeof(buf) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_u64_max),
        cmocka_unit_test(test_powers_and_neighbours),
        cmocka_unit_test(test_json_escape_and_hex),
        cmocka_unit_test(test_str_append_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
