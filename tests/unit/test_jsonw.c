/* ias_jsonw: the flat object writer's output parses back (cJSON) to exactly
 * the values written, for awkward strings and extreme integers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/jsonw.h"

static void test_empty(void **state)
{
    (void)state;
    ias_jsonw w;
    ias_jsonw_begin(&w, 0);
    char *s = ias_jsonw_end(&w);
    assert_string_equal(s, "{}");
    free(s);
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const char *const strs[] = {
        "",
        "plain",
        "quote\" and \\ backslash",
        "tab\tnl\ncr\rbs\bff\f",
        "\x01\x1f",
        "caf\xc3\xa9 \xe2\x82\xac",
        "</script>",
        "\x7f del",
    };
    static const long long ints[] = {0, 1, -1, 42, LLONG_MAX, LLONG_MIN, 1000000000000000LL};
    char key[16];
    ias_jsonw w;

    ias_jsonw_begin(&w, 8); /* small on purpose: the buffer has to grow */
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        snprintf(key, sizeof(key), "s%zu", i);
        ias_jsonw_str(&w, key, strs[i]);
    }
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        snprintf(key, sizeof(key), "i%zu", i);
        ias_jsonw_int(&w, key, ints[i]);
    }
    ias_jsonw_bool(&w, "t", true);
    ias_jsonw_bool(&w, "f", false);
    ias_jsonw_null(&w, "n");
    ias_jsonw_str(&w, "sn", NULL);
    ias_jsonw_str_or_null(&w, "e", "");
    ias_jsonw_str_or_null(&w, "v", "x");
    char *s = ias_jsonw_end(&w);
    assert_null(strchr(s, '\n')); /* one line: events can be packed by newline */

    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        snprintf(key, sizeof(key), "s%zu", i);
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
        assert_true(cJSON_IsString(it));
        assert_string_equal(it->valuestring, strs[i]);
    }
    /* Integers: compare the text, doubles cannot hold LLONG_MAX exactly. */
    assert_non_null(strstr(s, "\"i4\":9223372036854775807,"));
    assert_non_null(strstr(s, "\"i5\":-9223372036854775808,"));
    assert_non_null(strstr(s, "\"i2\":-1,"));
    assert_non_null(strstr(s, "\"i0\":0,"));
    assert_int_equal(cJSON_GetObjectItem(o, "i3")->valueint, 42);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "t")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "f")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "n")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "sn")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "e")));
    assert_string_equal(cJSON_GetObjectItem(o, "v")->valuestring, "x");
    cJSON_Delete(o);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
