#include "testlib.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ias/password.h"

#define GOOD_PW "Correct-Horse-9battery"

static void test_hash_verify_cost4(void **state)
{
    char h1[IAS_PASSWORD_HASH_BUFSZ], h2[IAS_PASSWORD_HASH_BUFSZ];

    assert_int_equal(ias_password_hash_cost(GOOD_PW, 4, h1, sizeof(h1)), IAS_OK);
    assert_int_equal(strlen(h1), 60);
    assert_memory_equal(h1, "$2b$04$", 7);
    assert_true(ias_password_verify(GOOD_PW, h1));
    assert_false(ias_password_verify("Correct-Horse-9batterY", h1));
    assert_false(ias_password_verify("Correct-Horse-9battery ", h1));
    assert_false(ias_password_verify("", h1));
    assert_false(ias_password_verify(NULL, h1));

    /* Fresh salt each time. */
    assert_int_equal(ias_password_hash_cost(GOOD_PW, 4, h2, sizeof(h2)), IAS_OK);
    assert_string_not_equal(h1, h2);
    assert_true(ias_password_verify(GOOD_PW, h2));
}

static void test_hash_cost12(void **state)
{
    char h[IAS_PASSWORD_HASH_BUFSZ];

    /* The real thing, once: the public function must use cost 12. */
    assert_int_equal(ias_password_hash(GOOD_PW, h, sizeof(h)), IAS_OK);
    assert_memory_equal(h, "$2b$12$", 7);
    assert_true(ias_password_verify(GOOD_PW, h));
    assert_false(ias_password_verify("correct-Horse-9battery", h));
}

static void test_known_answer(void **state)
{
    /* crypt_blowfish's published test vectors (Solar Designer). */
    assert_true(
        ias_password_verify("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
    assert_true(ias_password_verify(
        "U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"));
    assert_false(ias_password_verify(
        "U*U*", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
}

static void test_hash_rejects(void **state)
{
    char h[IAS_PASSWORD_HASH_BUFSZ], small[60];
    char long_pw[80];

    memset(long_pw, 'a', 73);
    long_pw[73] = '\0';
    assert_int_equal(ias_password_hash_cost("", 4, h, sizeof(h)), IAS_ERR);
    assert_int_equal(ias_password_hash_cost(NULL, 4, h, sizeof(h)), IAS_ERR);
    assert_int_equal(ias_password_hash_cost(long_pw, 4, h, sizeof(h)), IAS_ERR);
    assert_int_equal(ias_password_hash_cost(GOOD_PW, 3, h, sizeof(h)), IAS_ERR);
    assert_int_equal(ias_password_hash_cost(GOOD_PW, 32, h, sizeof(h)), IAS_ERR);
    /* 60 characters need 61 bytes. */
    assert_int_equal(ias_password_hash_cost(GOOD_PW, 4, small, sizeof(small)), IAS_ERR);
    assert_int_equal(ias_password_hash_cost(GOOD_PW, 4, h, 61), IAS_OK);

    /* Exactly 72 bytes is fine; a 73-byte password never verifies (bcrypt
     * would silently ignore the 73rd byte). */
    long_pw[72] = '\0';
    assert_int_equal(ias_password_hash_cost(long_pw, 4, h, sizeof(h)), IAS_OK);
    assert_true(ias_password_verify(long_pw, h));
    long_pw[72] = 'b';
    assert_false(ias_password_verify(long_pw, h));
}

static void test_verify_rejects_malformed_hashes(void **state)
{
    char h[IAS_PASSWORD_HASH_BUFSZ], t[IAS_PASSWORD_HASH_BUFSZ];

    assert_int_equal(ias_password_hash_cost(GOOD_PW, 4, h, sizeof(h)), IAS_OK);
    assert_false(ias_password_verify(GOOD_PW, NULL));
    assert_false(ias_password_verify(GOOD_PW, ""));
    assert_false(ias_password_verify(GOOD_PW, "*0"));
    assert_false(ias_password_verify(GOOD_PW, "*"));
    /* Other crypt schemes are not accepted, even if correct. */
    assert_false(ias_password_verify("password", "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/"));
    assert_false(ias_password_verify("password", "ab01FAX.bQRSU"));

    /* Truncated, extended, wrong variant, bad cost, bad alphabet. */
    memcpy(t, h, sizeof(t));
    t[59] = '\0';
    assert_false(ias_password_verify(GOOD_PW, t));
    memcpy(t, h, 60);
    t[60] = 'A';
    t[61] = '\0';
    assert_false(ias_password_verify(GOOD_PW, t));
    memcpy(t, h, sizeof(t));
    t[2] = 'x';
    assert_false(ias_password_verify(GOOD_PW, t));
    memcpy(t, h, sizeof(t));
    t[4] = '0';
    t[5] = '3';
    assert_false(ias_password_verify(GOOD_PW, t));
    memcpy(t, h, sizeof(t));
    t[40] = '!';
    assert_false(ias_password_verify(GOOD_PW, t));
    /* One changed character of the digest part. */
    memcpy(t, h, sizeof(t));
    t[58] = t[58] == 'a' ? 'b' : 'a';
    assert_false(ias_password_verify(GOOD_PW, t));
    /* The untouched hash still verifies (the copies above did not alias). */
    assert_true(ias_password_verify(GOOD_PW, h));
}

static void *hash_thread(void *arg)
{
    char h[IAS_PASSWORD_HASH_BUFSZ], pw[32];
    long id = (long)arg;
    long ok = 1;

    snprintf(pw, sizeof(pw), "Thread-%ld-Secret!", id);
    for (int i = 0; i < 5; i++) {
        if (ias_password_hash_cost(pw, 4, h, sizeof(h)) != IAS_OK || !ias_password_verify(pw, h) ||
            ias_password_verify("Thread-x-Secret!", h))
            ok = 0;
    }
    return (void *)ok;
}

static void test_threads(void **state)
{
    pthread_t th[4];

    for (long i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hash_thread, (void *)i), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_int_equal((long)r, 1);
    }
}

static void expect_policy(const char *pw, int rc, const char *why_part)
{
    char why[128];

    memset(why, 'x', sizeof(why));
    int got = ias_password_check_policy(pw, why, sizeof(why));
    if (got != rc)
        fail_msg("policy(%s) = %d, want %d (%s)", pw ? pw : "NULL", got, rc, why);
    if (why_part != NULL && strstr(why, why_part) == NULL)
        fail_msg("policy(%s): reason '%s' lacks '%s'", pw ? pw : "NULL", why, why_part);
    if (rc == IAS_OK)
        assert_string_equal(why, "");
}

static void test_policy(void **state)
{
    expect_policy(GOOD_PW, IAS_OK, NULL);
    expect_policy("Abcdefghij1!", IAS_OK, NULL);        /* exactly 12 */
    expect_policy("Abcdefghi j1", IAS_OK, NULL);        /* space is a symbol */
    expect_policy("Abcdefghij1\xc3\xa9", IAS_OK, NULL); /* non-ASCII counts as a symbol */
    expect_policy(NULL, IAS_ERR, "required");
    expect_policy("", IAS_ERR, "at least 12");
    expect_policy("Abcdefghi1!", IAS_ERR, "at least 12");
    /* 11 characters but 12 bytes: length is counted in characters. */
    expect_policy("Abcdefghi1\xc3\xa9", IAS_ERR, "at least 12");
    expect_policy("abcdefghij1!", IAS_ERR, "upper-case");
    expect_policy("ABCDEFGHIJ1!", IAS_ERR, "lower-case");
    expect_policy("Abcdefghijk!", IAS_ERR, "digit");
    expect_policy("Abcdefghijk1", IAS_ERR, "symbol");
    expect_policy("Abcdefghij1!\t", IAS_ERR, "control");
    expect_policy("Abcdefghij1!\x7f", IAS_ERR, "control");

    char pw[200];
    memset(pw, 'a', sizeof(pw));
    memcpy(pw, "A1!", 3);
    pw[72] = '\0';
    expect_policy(pw, IAS_OK, NULL);
    pw[72] = 'a';
    pw[73] = '\0';
    expect_policy(pw, IAS_ERR, "at most 72 bytes");
    pw[199] = '\0';
    expect_policy(pw, IAS_ERR, "at most 72 bytes");

    /* why may be NULL or tiny. */
    assert_int_equal(ias_password_check_policy("short", NULL, 0), IAS_ERR);
    char tiny[4];
    assert_int_equal(ias_password_check_policy("short", tiny, sizeof(tiny)), IAS_ERR);
    assert_int_equal(strlen(tiny), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify_cost4),
        cmocka_unit_test(test_hash_cost12),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_hash_rejects),
        cmocka_unit_test(test_verify_rejects_malformed_hashes),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
