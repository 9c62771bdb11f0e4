#include "testlib.h"

#include <stdlib.h>
#include <string.h>

#include "ias/config.h"

static const ias_cfg_row rows[] = {
    {"IAS_T_PORT", IAS_CFG_INT, "8080", 1, 65535, "listening port"},
    {"IAS_T_NAME", IAS_CFG_STR, NULL, 0, 0, "service name"},
    {"IAS_T_DEBUG", IAS_CFG_BOOL, "false", 0, 0, NULL},
    {"IAS_T_TIMEOUT", IAS_CFG_MS, "5s", 1, 600000, NULL},
    {"IAS_T_BODY", IAS_CFG_BYTES, "1M", 1, 1LL << 30, NULL},
    {"IAS_T_URL", IAS_CFG_URL, "redis://127.0.0.1:6379/0", 0, 0, NULL},
    {"IAS_T_SECRET", IAS_CFG_SECRET, NULL, 0, 0, "JWT signing secret"},
};

static void clear_env(void)
{
    for (size_t i = 0; i < IAS_ARRAY_LEN(rows); i++)
        unsetenv(rows[i].name);
}

static void test_defaults_and_types(void **state)
{
    char err[1024];
    ias_config *cfg;

    clear_env();
    setenv("IAS_T_NAME", "router", 1);
    setenv("IAS_T_SECRET", "s3cr3t", 1);
    setenv("IAS_T_DEBUG", "yes", 1);
    cfg = ias_config_load(rows, IAS_ARRAY_LEN(rows), err, sizeof(err));
    assert_non_null(cfg);
    assert_int_equal(ias_config_int(cfg, "IAS_T_PORT"), 8080);
    assert_string_equal(ias_config_str(cfg, "IAS_T_NAME"), "router");
    assert_true(ias_config_bool(cfg, "IAS_T_DEBUG"));
    assert_int_equal(ias_config_ms(cfg, "IAS_T_TIMEOUT"), 5000);
    assert_int_equal(ias_config_bytes(cfg, "IAS_T_BODY"), 1048576);
    assert_string_equal(ias_config_str(cfg, "IAS_T_URL"), "redis://127.0.0.1:6379/0");
    ias_config_free(cfg);
}

static void test_every_problem_listed(void **state)
{
    char err[2048];
    ias_config *cfg;

    clear_env();
    setenv("IAS_T_PORT", "70000", 1);
    setenv("IAS_T_DEBUG", "maybe", 1);
    setenv("IAS_T_TIMEOUT", "5 parsecs", 1);
    setenv("IAS_T_URL", "not a url", 1);
    cfg = ias_config_load(rows, IAS_ARRAY_LEN(rows), err, sizeof(err));
    assert_null(cfg);
    assert_non_null(strstr(err, "IAS_T_PORT: must be between 1 and 65535"));
    assert_non_null(strstr(err, "IAS_T_NAME: missing (service name)"));
    assert_non_null(strstr(err, "IAS_T_DEBUG: must be a boolean"));
    assert_non_null(strstr(err, "IAS_T_TIMEOUT: must be a duration"));
    assert_non_null(strstr(err, "IAS_T_URL: must be a URL"));
    assert_non_null(strstr(err, "IAS_T_SECRET: missing"));
    clear_env();
}

static void test_secret_never_echoed(void **state)
{
    static const ias_cfg_row srow[] = {
        {"IAS_T_SECRET_URL", IAS_CFG_SECRET, NULL, 0, 0, NULL},
        {"IAS_T_PORT", IAS_CFG_INT, NULL, 1, 10, NULL},
    };
    char err[512];

    setenv("IAS_T_SECRET_URL", "hunter2hunter2", 1);
    setenv("IAS_T_PORT", "hunter3", 1);
    assert_null(ias_config_load(srow, 2, err, sizeof(err)));
    assert_null(strstr(err, "hunter2"));
    unsetenv("IAS_T_SECRET_URL");
    unsetenv("IAS_T_PORT");
}

static void test_parsers(void **state)
{
    long long v;
    bool b;

    assert_int_equal(ias_parse_duration_ms("250ms", &v), IAS_OK);
    assert_int_equal(v, 250);
    assert_int_equal(ias_parse_duration_ms("2m", &v), IAS_OK);
    assert_int_equal(v, 120000);
    assert_int_equal(ias_parse_duration_ms("1h", &v), IAS_OK);
    assert_int_equal(v, 3600000);
    assert_int_equal(ias_parse_duration_ms("-5s", &v), IAS_ERR);
    assert_int_equal(ias_parse_duration_ms("5x", &v), IAS_ERR);
    assert_int_equal(ias_parse_bytes("64k", &v), IAS_OK);
    assert_int_equal(v, 65536);
    assert_int_equal(ias_parse_bytes("99999999999999999G", &v), IAS_ERR);
    assert_int_equal(ias_parse_ll(" 42 ", &v), IAS_OK);
    assert_int_equal(v, 42);
    assert_int_equal(ias_parse_ll("42abc", &v), IAS_ERR);
    assert_int_equal(ias_parse_ll("", &v), IAS_ERR);
    assert_int_equal(ias_parse_ll("99999999999999999999", &v), IAS_ERR);
    assert_int_equal(ias_parse_bool("OFF", &b), IAS_OK);
    assert_false(b);
    assert_int_equal(ias_parse_bool("2", &b), IAS_ERR);
    assert_true(ias_config_default_workers() >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_types),
        cmocka_unit_test(test_every_problem_listed),
        cmocka_unit_test(test_secret_never_echoed),
        cmocka_unit_test(test_parsers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
