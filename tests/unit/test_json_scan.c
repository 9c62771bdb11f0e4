/* The strict JSON scanner: what it accepts and refuses, object member spans,
 * cursors into nested values, and decoding of string/number/bool spans. */
#include "testlib.h"

#include "ias/json_scan.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static bool doc_ok(const char *s)
{
    return ias_json_scan_document(s, strlen(s), NULL, NULL);
}

static void test_accepts(void **state)
{
    static const char *const ok[] = {
        "0",
        "-0",
        "1",
        "-12",
        "1.5",
        "1e5",
        "1E+5",
        "-0.0e-07",
        "true",
        "false",
        "null",
        "\"\"",
        "\" \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\ude00 \"",
        "\"caf\xc3\xa9\"",
        "[]",
        "{}",
        " [ ] ",
        "\t{\r\n}\n",
        "[1,[2,[3]],{\"a\":{}}]",
        "{\"a\":1,\"a\":2}", /* duplicates are valid JSON */
        "{\"k\" : \"v\" , \"n\" : null}",
    };
    ias_json_type t;
    ias_json_span sp;

    for (size_t i = 0; i < IAS_ARRAY_LEN(ok); i++)
        if (!doc_ok(ok[i]))
            fail_msg("refused: %s", ok[i]);
    assert_true(ias_json_scan_document("  {\"a\":[1]}  ", 13, &t, &sp));
    assert_int_equal(t, IAS_JSON_OBJECT);
    assert_int_equal(sp.off, 2);
    assert_int_equal(sp.len, 9);
}

static void test_refuses(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "01",
        "-",
        "1.",
        ".5",
        "+1",
        "1e",
        "1e+",
        "-01",
        "0x1",
        "NaN",
        "Infinity",
        "tru",
        "nul",
        "truex",
        "[1,]",
        "{\"a\":1,}",
        "[1 2]",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "{\"a\":1",
        "[",
        "]",
        "\"abc",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\uD83D\"",        /* lone high surrogate */
        "\"\\uDE00\"",        /* lone low surrogate */
        "\"\\uD83D\\u0041\"", /* high surrogate, no low one */
        "\"a\tb\"",           /* raw control byte */
        "\xef\xbb\xbf{}",     /* BOM */
        "{}\x0b",
        "[1]x",
        "1 2",
        "{\"a\":1}}",
        "[]]",
    };

    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++)
        if (doc_ok(bad[i]))
            fail_msg("accepted: %s", bad[i]);
    /* an embedded NUL is no whitespace */
    assert_false(ias_json_scan_document("{}\0", 3, NULL, NULL));
    assert_false(ias_json_scan_document("\"a\0b\"", 5, NULL, NULL));
}

static void test_limits(void **state)
{
    char num[80], *deep;
    size_t n = IAS_JSON_SCAN_MAX_DEPTH;

    memset(num, '1', sizeof(num));
    assert_true(ias_json_scan_document(num, IAS_JSON_SCAN_MAX_NUMBER, NULL, NULL));
    assert_false(ias_json_scan_document(num, IAS_JSON_SCAN_MAX_NUMBER + 1, NULL, NULL));

    deep = malloc(2 * n + 3);
    assert_non_null(deep);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    assert_true(ias_json_scan_document(deep, 2 * n, NULL, NULL));
    memset(deep, '[', n + 1);
    memset(deep + n + 1, ']', n + 1);
    assert_false(ias_json_scan_document(deep, 2 * n + 2, NULL, NULL));
    free(deep);
}

static void test_object_members(void **state)
{
    const char *s = " {\"model\":\"m\", \"n\" : 1,\"o\":{\"x\":[1,2]},\"model\":true} ";
    ias_json_item m[3];
    size_t n;

    assert_int_equal(ias_json_scan_object(s, strlen(s), m, 3, &n), IAS_OK);
    assert_int_equal(n, 4); /* counted past max */
    assert_true(ias_json_scan_key_is(s, m[0].key, "model"));
    assert_int_equal(m[0].type, IAS_JSON_STRING);
    assert_memory_equal(s + m[0].value.off, "\"m\"", m[0].value.len);
    assert_true(ias_json_scan_key_is(s, m[1].key, "n"));
    assert_memory_equal(s + m[1].value.off, "1", m[1].value.len);
    assert_int_equal(m[2].type, IAS_JSON_OBJECT);
    assert_int_equal(m[2].value.len, strlen("{\"x\":[1,2]}"));
    assert_memory_equal(s + m[2].value.off, "{\"x\":[1,2]}", m[2].value.len);

    assert_int_equal(ias_json_scan_object("[1]", 3, m, 3, &n), IAS_ERR);
    assert_int_equal(ias_json_scan_object("{\"a\":[}", 7, m, 3, &n), IAS_ERR);
    assert_int_equal(ias_json_scan_object("{} x", 4, m, 3, &n), IAS_ERR);
    assert_int_equal(ias_json_scan_object("{ }", 3, m, 3, &n), IAS_OK);
    assert_int_equal(n, 0);
}

static void test_cursor(void **state)
{
    const char *s = "{\"a\":[1,{\"b\":\"x\"}],\"c\":{\"d\":[]},\"e\":null}";
    ias_json_cursor root, arr, obj;
    ias_json_item it;
    ias_json_span sp;

    assert_int_equal(ias_json_scan_open(&root, s, strlen(s)), IAS_OK);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_OK);
    assert_true(ias_json_scan_key_is(s, it.key, "a"));
    assert_int_equal(it.type, IAS_JSON_ARRAY);
    assert_int_equal(it.value.len, 0); /* not scanned yet */
    assert_int_equal(ias_json_scan_enter(&root, &arr), IAS_OK);
    assert_int_equal(ias_json_scan_next(&arr, &it), IAS_OK);
    assert_int_equal(it.type, IAS_JSON_NUMBER);
    assert_int_equal(it.key.len, 0);
    assert_int_equal(ias_json_scan_next(&arr, &it), IAS_OK);
    assert_int_equal(ias_json_scan_enter(&arr, &obj), IAS_OK);
    assert_int_equal(ias_json_scan_next(&obj, &it), IAS_OK);
    assert_true(ias_json_scan_key_is(s, it.key, "b"));
    assert_int_equal(ias_json_scan_next(&obj, &it), IAS_JSON_DONE);
    ias_json_scan_leave(&arr, &obj);
    assert_int_equal(ias_json_scan_next(&arr, &it), IAS_JSON_DONE);
    ias_json_scan_leave(&root, &arr);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_OK);
    assert_true(ias_json_scan_key_is(s, it.key, "c"));
    assert_int_equal(ias_json_scan_skip(&root, &sp), IAS_OK);
    assert_memory_equal(s + sp.off, "{\"d\":[]}", sp.len);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_OK);
    assert_int_equal(it.type, IAS_JSON_NULL);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_JSON_DONE);

    /* a value left alone is still checked */
    s = "{\"a\":[1,]}";
    assert_int_equal(ias_json_scan_open(&root, s, strlen(s)), IAS_OK);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_OK);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_ERR);
    /* bytes after the document */
    s = "[1] 2";
    assert_int_equal(ias_json_scan_open(&root, s, strlen(s)), IAS_OK);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_OK);
    assert_int_equal(ias_json_scan_next(&root, &it), IAS_ERR);
    assert_int_equal(ias_json_scan_open(&root, "1", 1), IAS_ERR);
}

static ias_json_span whole(const char *s)
{
    return (ias_json_span){0, strlen(s)};
}

static void test_strings(void **state)
{
    char out[16];
    const char *s = "\"a\\u00e9\\uD83D\\uDE00\\n\\\"\"";

    assert_int_equal(ias_json_scan_string(s, whole(s), out, sizeof(out)), 9);
    assert_string_equal(out, "a\xc3\xa9\xf0\x9f\x98\x80\n\"");
    /* cut like snprintf */
    assert_int_equal(ias_json_scan_string(s, whole(s), out, 4), 9);
    assert_string_equal(out, "a\xc3\xa9");
    s = "\"x\\u0000y\"";
    assert_int_equal(ias_json_scan_string(s, whole(s), out, sizeof(out)), 3);
    assert_int_equal(strlen(out), 1);

    assert_true(ias_json_scan_key_is("\"text\"", whole("\"text\""), "text"));
    assert_false(ias_json_scan_key_is("\"texts\"", whole("\"texts\""), "text"));
    assert_true(ias_json_scan_key_is("\"te\\u0078t\"", whole("\"te\\u0078t\""), "text"));
    /* cJSON's key is a C string: it ends at the first NUL */
    s = "\"text\\u0000and more than sixty-four bytes of key after the NUL byte......\"";
    assert_true(ias_json_scan_key_is(s, whole(s), "text"));
    s = "\"t\\u0065xt and more than sixty-four bytes of key without any NUL byte.....\"";
    assert_false(ias_json_scan_key_is(s, whole(s), "text"));

    assert_true(ias_json_scan_string_nonempty("\"a\"", whole("\"a\"")));
    assert_false(ias_json_scan_string_nonempty("\"\"", whole("\"\"")));
    assert_false(ias_json_scan_string_nonempty("\"\\u0000a\"", whole("\"\\u0000a\"")));
    assert_true(ias_json_scan_string_nonempty("\"\\u0001\"", whole("\"\\u0001\"")));
    assert_true(ias_json_scan_string_nonempty("\"\\n\"", whole("\"\\n\"")));
}

static void test_numbers(void **state)
{
    double d;
    long long v;
    bool b;

    assert_int_equal(ias_json_scan_number("12.5e1", whole("12.5e1"), &d), IAS_OK);
    assert_true(d == 125.0);
    assert_int_equal(ias_json_scan_int("-42", whole("-42"), &v), IAS_OK);
    assert_int_equal(v, -42);
    assert_int_equal(ias_json_scan_int("9223372036854775807", whole("9223372036854775807"), &v),
                     IAS_OK);
    assert_true(v == LLONG_MAX);
    assert_int_equal(ias_json_scan_int("-9223372036854775808", whole("-9223372036854775808"), &v),
                     IAS_OK);
    assert_true(v == LLONG_MIN);
    assert_int_equal(ias_json_scan_int("9223372036854775808", whole("9223372036854775808"), &v),
                     IAS_ERR);
    assert_int_equal(ias_json_scan_int("1.0", whole("1.0"), &v), IAS_ERR);
    assert_int_equal(ias_json_scan_int("1e3", whole("1e3"), &v), IAS_ERR);
    assert_int_equal(ias_json_scan_bool("true", whole("true"), &b), IAS_OK);
    assert_true(b);
    assert_int_equal(ias_json_scan_bool("false", whole("false"), &b), IAS_OK);
    assert_false(b);
    assert_int_equal(ias_json_scan_bool("null", whole("null"), &b), IAS_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts), cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_limits),  cmocka_unit_test(test_object_members),
        cmocka_unit_test(test_cursor),  cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
