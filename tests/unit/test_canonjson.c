/* Canonical JSON (RFC 8785): the RFC's own examples, number formatting,
 * member ordering by UTF-16 code units, and everything the strict parser
 * refuses. */
#include "testlib.h"

#include "ias/canonjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect(const char *in, const char *want)
{
    char *out = NULL, err[200];
    size_t len = 0;

    if (ias_canonjson(in, strlen(in), 0, &out, &len, err, sizeof(err)) != IAS_OK)
        fail_msg("canonjson(%s): %s", in, err);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    /* canonical output is a fixed point */
    {
        char *again = NULL;
        assert_int_equal(ias_canonjson(out, len, 0, &again, NULL, err, sizeof(err)), IAS_OK);
        assert_string_equal(again, out);
        free(again);
    }
    free(out);
}

static void expect_fail(const char *in, size_t len, unsigned flags, const char *why)
{
    char *out = (char *)"junk", err[200];

    assert_int_equal(ias_canonjson(in, len, flags, &out, NULL, err, sizeof(err)), IAS_ERR);
    assert_null(out);
    if (!strstr(err, why))
        fail_msg("canonjson(%.*s): error '%s' does not mention '%s'", (int)len, in, err, why);
}

static double from_bits(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

/* RFC 8785 appendix B: IEEE-754 bit patterns and their serialisation. */
static void test_numbers_rfc(void **state)
{
    static const struct {
        uint64_t bits;
        const char *want;
    } cases[] = {
        {0x0000000000000000ULL, "0"},
        {0x8000000000000000ULL, "0"},
        {0x0000000000000001ULL, "5e-324"},
        {0x8000000000000001ULL, "-5e-324"},
        {0x7fefffffffffffffULL, "1.7976931348623157e+308"},
        {0xffefffffffffffffULL, "-1.7976931348623157e+308"},
        {0x4340000000000000ULL, "9007199254740992"},
        {0xc340000000000000ULL, "-9007199254740992"},
        {0x4430000000000000ULL, "295147905179352830000"},
        {0x44b52d02c7e14af5ULL, "9.999999999999997e+22"},
        {0x44b52d02c7e14af6ULL, "1e+23"},
        {0x44b52d02c7e14af7ULL, "1.0000000000000001e+23"},
        {0x444b1ae4d6e2ef4eULL, "999999999999999700000"},
        {0x444b1ae4d6e2ef4fULL, "999999999999999900000"},
        {0x444b1ae4d6e2ef50ULL, "1e+21"},
        {0x3eb0c6f7a0b5ed8cULL, "9.999999999999997e-7"},
        {0x3eb0c6f7a0b5ed8dULL, "0.000001"},
        {0x41b3de4355555553ULL, "333333333.3333332"},
        {0x41b3de4355555554ULL, "333333333.33333325"},
        {0x41b3de4355555555ULL, "333333333.3333333"},
        {0x41b3de4355555556ULL, "333333333.3333334"},
        {0x41b3de4355555557ULL, "333333333.33333343"},
        {0xbecbf647612f3696ULL, "-0.0000033333333333333333"},
        {0x43143ff3c1cb0959ULL, "1424953923781206.2"},
    };
    char buf[40];

    for (size_t i = 0; i < IAS_ARRAY_LEN(cases); i++) {
        assert_int_equal(ias_canonjson_number(from_bits(cases[i].bits), buf, sizeof(buf)), IAS_OK);
        assert_string_equal(buf, cases[i].want);
    }
    assert_int_equal(ias_canonjson_number(NAN, buf, sizeof(buf)), IAS_ERR);
    assert_int_equal(ias_canonjson_number(INFINITY, buf, sizeof(buf)), IAS_ERR);
    assert_int_equal(ias_canonjson_number(-INFINITY, buf, sizeof(buf)), IAS_ERR);
    assert_int_equal(ias_canonjson_number(1e300, buf, 4), IAS_ERR);
}

static void test_numbers_text(void **state)
{
    expect("1.0", "1");
    expect("1e2", "100");
    expect("-0", "0");
    expect("-0.0e5", "0");
    expect("4.50", "4.5");
    expect("2e-3", "0.002");
    expect("1E30", "1e+30");
    expect("0.1", "0.1");
    expect("123456789012345678901234567890", "1.2345678901234568e+29");
    expect("12345678901234567890", "12345678901234567000");
    expect("1e-7", "1e-7");
    expect("0.0000001234", "1.234e-7");
    expect("[1,-1,10,100.5]", "[1,-1,10,100.5]");
}

/* RFC 8785 section 3.2.2 example. */
static void test_rfc_example(void **state)
{
    expect("{\n  \"numbers\": [333333333.33333329, 1E30, 4.50,\n"
           "                2e-3, 0.000000000000000000000000001],\n"
           "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
           "  \"literals\": [null, true, false]\n}",
           "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-"
           "27],\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

/* RFC 8785 section 3.2.3: names sorted by UTF-16 code units, so U+1F600
 * (surrogates D83D DE00) sorts before U+FB33. */
static void test_sort_utf16(void **state)
{
    expect("{\"\\u20ac\":\"Euro Sign\",\"\\r\":\"Carriage Return\",\"\\ufb33\":\"Hebrew\","
           "\"1\":\"One\",\"\\ud83d\\ude00\":\"Emoji\",\"\\u0080\":\"Control\","
           "\"\\u00f6\":\"o\"}",
           "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
           "\"\xc3\xb6\":\"o\",\"\xe2\x82\xac\":\"Euro Sign\",\"\xf0\x9f\x98\x80\":\"Emoji\","
           "\"\xef\xac\xb3\":\"Hebrew\"}");
    /* nested objects are sorted too; arrays keep their order */
    expect(" { \"b\" : [ {\"z\":1,\"a\":2} , 3 ] , \"a\" : { } , \"ab\":[] } ",
           "{\"a\":{},\"ab\":[],\"b\":[{\"a\":2,\"z\":1},3]}");
    /* prefix sorts first; many members take the merge-sort path */
    {
        char in[2048], want[2048];
        size_t o = 0, w = 0;

        o += (size_t)snprintf(in + o, sizeof(in) - o, "{");
        for (int i = 39; i >= 0; i--)
            o += (size_t)snprintf(in + o, sizeof(in) - o, "%s\"k%02d\":%d", i == 39 ? "" : ",", i,
                                  i);
        snprintf(in + o, sizeof(in) - o, "}");
        w += (size_t)snprintf(want + w, sizeof(want) - w, "{");
        for (int i = 0; i < 40; i++)
            w += (size_t)snprintf(want + w, sizeof(want) - w, "%s\"k%02d\":%d", i ? "," : "", i, i);
        snprintf(want + w, sizeof(want) - w, "}");
        expect(in, want);
    }
}

static void test_strings(void **state)
{
    expect("\"a/b\"", "\"a/b\"");
    expect("\"\\/\"", "\"/\"");
    expect("\"\\b\\f\\n\\r\\t\\u0001\\u001F\\u007f\"", "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\"");
    expect("\"\\u00e9\xc3\xa9\"", "\"\xc3\xa9\xc3\xa9\"");
    expect("\"\\u0000\"", "\"\\u0000\"");
    expect("true", "true");
    expect("null", "null");
}

static void test_refused(void **state)
{
    expect_fail("", 0, 0, "unexpected end");
    expect_fail("{\"a\":1,\"a\":2}", 13, 0, "duplicate member name");
    /* the same name written two ways is still a duplicate */
    expect_fail("{\"\\u0061\":1,\"a\":2}", 18, 0, "duplicate");
    expect_fail("{\"a\":1}x", 8, 0, "trailing");
    expect_fail("[1,]", 4, 0, "unexpected character");
    expect_fail("{\"a\" 1}", 7, 0, "expected ':'");
    expect_fail("{1:2}", 5, 0, "expected member name");
    expect_fail("01", 2, 0, "trailing");
    expect_fail("1.", 2, 0, "bad number");
    expect_fail("1e", 2, 0, "bad number");
    expect_fail("-", 1, 0, "bad number");
    expect_fail("+1", 2, 0, "unexpected character");
    expect_fail("1e400", 5, 0, "out of range");
    expect_fail("NaN", 3, 0, "unexpected character");
    expect_fail("\"abc", 4, 0, "unterminated");
    expect_fail("\"a\nb\"", 5, 0, "control character");
    expect_fail("\"\\x\"", 4, 0, "bad escape");
    expect_fail("\"\\u12g4\"", 8, 0, "bad \\u escape");
    expect_fail("\"\\ud800\"", 8, 0, "lone high surrogate");
    expect_fail("\"\\ud800\\u0041\"", 14, 0, "lone high surrogate");
    expect_fail("\"\\udc00\"", 8, 0, "lone low surrogate");
    expect_fail("\"\xc0\xaf\"", 4, 0, "invalid UTF-8");         /* overlong '/' */
    expect_fail("\"\xed\xa0\x80\"", 5, 0, "invalid UTF-8");     /* encoded surrogate */
    expect_fail("\"\xf4\x90\x80\x80\"", 6, 0, "invalid UTF-8"); /* > U+10FFFF */
    expect_fail("\"\xe2\x82\"", 4, 0, "invalid UTF-8");         /* truncated */
    expect_fail("\"\xff\"", 3, 0, "invalid UTF-8");
    expect_fail("[1\0]", 4, 0, "expected ','");
    expect_fail("\"\\u0000\"", 8, IAS_CANONJSON_NO_NUL, "U+0000");
    expect_fail("tru", 3, 0, "unexpected character");
    {
        char *out = NULL, err[64];
        assert_int_equal(ias_canonjson(NULL, 0, 0, &out, NULL, err, sizeof(err)), IAS_ERR);
    }
}

static void test_depth(void **state)
{
    char deep[2 * (IAS_CANONJSON_MAX_DEPTH + 1) + 1];
    size_t n = IAS_CANONJSON_MAX_DEPTH;
    char *out = NULL, err[100];

    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    expect(deep, deep);
    n++;
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    assert_int_equal(ias_canonjson(deep, 2 * n, 0, &out, NULL, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "nesting"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_rfc), cmocka_unit_test(test_numbers_text),
        cmocka_unit_test(test_rfc_example), cmocka_unit_test(test_sort_utf16),
        cmocka_unit_test(test_strings),     cmocka_unit_test(test_refused),
        cmocka_unit_test(test_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
