#include "testlib.h"

#include "ias/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void parse_ok(const char *url, ias_redis_url *u)
{
    char err[256] = "";
    int rc = ias_redis_url_parse(url, u, err, sizeof(err));
    if (rc != IAS_OK)
        fail_msg("%s: %s", url, err);
}

static void parse_bad(const char *url, const char *want_in_err)
{
    char err[256] = "";
    ias_redis_url u;
    assert_int_equal(ias_redis_url_parse(url, &u, err, sizeof(err)), IAS_ERR);
    if (!strstr(err, want_in_err))
        fail_msg("%s: error \"%s\" lacks \"%s\"", url, err, want_in_err);
    /* The message never repeats the credentials. */
    assert_null(strstr(err, "s3cret"));
}

static void test_minimal(void **state)
{
    ias_redis_url u;
    parse_ok("redis://127.0.0.1:56379/0", &u);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 56379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");

    parse_ok("redis://localhost", &u);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);

    parse_ok("REDIS://cache.internal/", &u);
    assert_string_equal(u.host, "cache.internal");
    assert_int_equal(u.db, 0);
}

static void test_password_user_db(void **state)
{
    ias_redis_url u;
    parse_ok("redis://:s3cret@redis-1:6380/12", &u);
    assert_string_equal(u.host, "redis-1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 12);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");

    parse_ok("redis://ias:p%40ss%3Aw%2Fd@10.0.0.5:7000/3", &u);
    assert_string_equal(u.user, "ias");
    assert_string_equal(u.password, "p@ss:w/d");
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.db, 3);

    /* An unencoded '@' in the password: the last '@' ends the userinfo. */
    parse_ok("redis://:a@b@host:1", &u);
    assert_string_equal(u.password, "a@b");
    assert_string_equal(u.host, "host");
    assert_int_equal(u.port, 1);

    parse_ok("redis://host:65535/65535", &u);
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, 65535);
}

static void test_ipv6(void **state)
{
    ias_redis_url u;
    char buf[128];

    parse_ok("redis://[::1]:7001/2", &u);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7001);
    assert_int_equal(u.db, 2);
    ias_redis_url_redact(&u, buf, sizeof(buf));
    assert_string_equal(buf, "redis://[::1]:7001/2");

    parse_ok("redis://[2001:db8::7]", &u);
    assert_string_equal(u.host, "2001:db8::7");
    assert_int_equal(u.port, 6379);
    parse_bad("redis://[fe80::1%25eth0]", "bad character");
}

static void test_redact(void **state)
{
    ias_redis_url u;
    char buf[128];

    parse_ok("redis://ias:s3cret@h:1/4", &u);
    ias_redis_url_redact(&u, buf, sizeof(buf));
    assert_string_equal(buf, "redis://ias:***@h:1/4");
    parse_ok("redis://:s3cret@h", &u);
    ias_redis_url_redact(&u, buf, sizeof(buf));
    assert_string_equal(buf, "redis://:***@h:6379/0");
    parse_ok("redis://h:2", &u);
    ias_redis_url_redact(&u, buf, sizeof(buf));
    assert_string_equal(buf, "redis://h:2/0");
}

static void test_rejects(void **state)
{
    parse_bad(NULL, "empty");
    parse_bad("", "must start with redis://");
    parse_bad("http://h:1", "must start with redis://");
    parse_bad("rediss://h:1", "TLS");
    parse_bad("redis://", "missing host");
    parse_bad("redis://:6379", "missing host");
    parse_bad("redis://h:0", "port");
    parse_bad("redis://h:65536", "port");
    parse_bad("redis://h:", "port");
    parse_bad("redis://h:12a", "port");
    parse_bad("redis://h:-1", "port");
    parse_bad("redis://h:1/x", "database");
    parse_bad("redis://h:1/65536", "database");
    parse_bad("redis://h:1/1/2", "database");
    parse_bad("redis://h:1/-1", "database");
    parse_bad("redis://h:1/0?timeout=1", "query");
    parse_bad("redis://h:1#frag", "query");
    parse_bad("redis://h o:1", "spaces");
    parse_bad("redis://s3cret@h:1", "[user]:password@");
    parse_bad("redis://user:@h:1", "needs a password");
    parse_bad("redis://:s3cret%zz@h:1", "password");
    parse_bad("redis://:s3cret%4@h:1", "password");
    parse_bad("redis://:s3cret%00@h:1", "password");
    parse_bad("redis://[::1:1", "unterminated");
    parse_bad("redis://[::1]x:1", "after [IPv6]");
    parse_bad("redis://h$st:1", "bad character");
    parse_bad("redis://[::1]]:1", "after [IPv6]");
}

static void test_bounds(void **state)
{
    char url[IAS_REDIS_URL_MAX + 64];
    ias_redis_url u;
    char err[128];

    /* Longest host that fits, then one too many. */
    memset(url, 0, sizeof(url));
    strcpy(url, "redis://");
    memset(url + 8, 'h', IAS_REDIS_HOST_MAX - 1);
    strcat(url, ":1");
    parse_ok(url, &u);
    assert_int_equal(strlen(u.host), IAS_REDIS_HOST_MAX - 1);
    memset(url, 0, sizeof(url));
    strcpy(url, "redis://");
    memset(url + 8, 'h', IAS_REDIS_HOST_MAX);
    parse_bad(url, "host name too long");

    /* Password at its limit and beyond. */
    memset(url, 0, sizeof(url));
    strcpy(url, "redis://:");
    memset(url + 9, 'p', IAS_REDIS_PASSWORD_MAX - 1);
    strcat(url, "@h");
    parse_ok(url, &u);
    assert_int_equal(strlen(u.password), IAS_REDIS_PASSWORD_MAX - 1);
    memset(url, 0, sizeof(url));
    strcpy(url, "redis://:");
    memset(url + 9, 'p', IAS_REDIS_PASSWORD_MAX);
    strcat(url, "@h");
    parse_bad(url, "password");

    /* Whole URL over the cap. */
    memset(url, 0, sizeof(url));
    strcpy(url, "redis://h/");
    memset(url + 10, '1', IAS_REDIS_URL_MAX);
    parse_bad(url, "longer than");

    /* A tiny error buffer is still terminated. */
    assert_int_equal(ias_redis_url_parse("nope", &u, err, 8), IAS_ERR);
    assert_int_equal(strlen(err), 7);
}

static void test_script_sha(void **state)
{
    ias_redis_script s;
    /* Known SHA1 values (also what SCRIPT LOAD returns). */
    ias_redis_script_init(&s, "return 1");
    assert_string_equal(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    ias_redis_script_init(&s, "");
    assert_string_equal(s.sha, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal),    cmocka_unit_test(test_password_user_db),
        cmocka_unit_test(test_ipv6),       cmocka_unit_test(test_redact),
        cmocka_unit_test(test_rejects),    cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_script_sha),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
