#include "testlib.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ias/log.h"

/* Captures what the logger writes through a pipe. */
static size_t capture(void (*fn)(void), char *buf, size_t len)
{
    int fds[2];
    ssize_t n;

    assert_int_equal(pipe(fds), 0);
    ias_log_set_fd(fds[1]);
    fn();
    ias_log_set_fd(-1);
    close(fds[1]);
    n = read(fds[0], buf, len - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    return (size_t)n;
}

static void log_with_ctx(void)
{
    ias_log_ctx ctx = {"req-123", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"};
    ias_info(&ctx, "hello \"%s\"\n\x01", "world");
}

static void test_json_line(void **state)
{
    char buf[8192];
    cJSON *j;

    ias_log_init("testsvc", IAS_LOG_INFO);
    capture(log_with_ctx, buf, sizeof(buf));
    assert_int_equal(buf[strlen(buf) - 1], '\n');
    assert_null(strchr(buf, '\n') != buf + strlen(buf) - 1 ? buf : NULL);
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "info");
    assert_string_equal(cJSON_GetObjectItem(j, "service")->valuestring, "testsvc");
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, "hello \"world\"\n\x01");
    assert_string_equal(cJSON_GetObjectItem(j, "request_id")->valuestring, "req-123");
    assert_non_null(strstr(cJSON_GetObjectItem(j, "traceparent")->valuestring, "0af76519"));
    assert_int_equal(strlen(cJSON_GetObjectItem(j, "time")->valuestring), 24);
    cJSON_Delete(j);
}

static void log_debug_and_warn(void)
{
    ias_debug(NULL, "invisible");
    ias_warn(NULL, "visible");
}

static void test_level_filter(void **state)
{
    char buf[8192];
    ias_log_level lvl;

    ias_log_init("testsvc", IAS_LOG_INFO);
    capture(log_debug_and_warn, buf, sizeof(buf));
    assert_null(strstr(buf, "invisible"));
    assert_non_null(strstr(buf, "\"level\":\"warn\""));
    assert_non_null(strstr(buf, "\"request_id\":null"));
    assert_int_equal(ias_log_level_parse("DEBUG", &lvl), IAS_OK);
    assert_int_equal(lvl, IAS_LOG_DEBUG);
    assert_int_equal(ias_log_level_parse("loud", &lvl), IAS_ERR);
}

static void test_scrub(void **state)
{
    char out[512];

    ias_log_scrub("key ias_ab12cd34.SuperSecretValue-_xyz used", out, sizeof(out));
    assert_string_equal(out, "key ias_ab12cd34.*** used");
    ias_log_scrub("Authorization: Bearer abc.def-ghi", out, sizeof(out));
    assert_string_equal(out, "Authorization: Bearer ***");
    ias_log_scrub("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig rest", out, sizeof(out));
    assert_string_equal(out, "token eyJ*** rest");
    ias_log_scrub("{\"email\":\"a@b\",\"password\":\"Hunter2!!\"}", out, sizeof(out));
    assert_null(strstr(out, "Hunter2"));
    ias_log_scrub("password=hunter2&x=1", out, sizeof(out));
    assert_string_equal(out, "password=***&x=1");
    ias_log_scrub("plain text stays", out, sizeof(out));
    assert_string_equal(out, "plain text stays");
    /* bounded */
    ias_log_scrub("0123456789", out, 5);
    assert_string_equal(out, "0123");
}

static void log_long(void)
{
    char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ias_error(NULL, "%s", big);
}

static void test_long_message_still_json(void **state)
{
    static char buf[16384];
    cJSON *j;

    capture(log_long, buf, sizeof(buf));
    j = cJSON_Parse(buf);
    assert_non_null(j);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_long_message_still_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
