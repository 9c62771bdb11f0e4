#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/apikey.h"

/* A well-formed key: 32 bytes 0x00..0x1f as the secret. */
#define GOOD_KEY "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

static void test_generate_format(void **state)
{
    char key[IAS_APIKEY_BUFSZ], prefix[IAS_APIKEY_PREFIX_BUFSZ], parsed[IAS_APIKEY_PREFIX_BUFSZ];
    uint8_t secret[IAS_APIKEY_SECRET_BYTES];

    assert_int_equal(ias_apikey_generate(key, prefix), IAS_OK);
    assert_int_equal(strlen(key), IAS_APIKEY_LEN);
    assert_int_equal(strlen(prefix), IAS_APIKEY_PREFIX_LEN);
    assert_memory_equal(key, "ias_", 4);
    assert_memory_equal(key + 4, prefix, IAS_APIKEY_PREFIX_LEN);
    assert_int_equal(key[12], '.');
    for (size_t i = 0; i < IAS_APIKEY_PREFIX_LEN; i++)
        assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz0123456789", prefix[i]));
    assert_int_equal(ias_b64url_decode(key + 13, IAS_APIKEY_SECRET_LEN, secret, sizeof(secret)),
                     IAS_APIKEY_SECRET_BYTES);
    assert_int_equal(ias_apikey_parse(key, parsed), IAS_OK);
    assert_string_equal(parsed, prefix);
    assert_int_equal(ias_apikey_generate(key, NULL), IAS_OK);
    assert_int_equal(ias_apikey_parse(key, NULL), IAS_OK);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

#define NKEYS 1000

static void test_generate_unique(void **state)
{
    char(*keys)[IAS_APIKEY_BUFSZ] = calloc(NKEYS, IAS_APIKEY_BUFSZ);
    char(*prefixes)[IAS_APIKEY_PREFIX_BUFSZ] = calloc(NKEYS, IAS_APIKEY_PREFIX_BUFSZ);
    assert_non_null(keys);
    assert_non_null(prefixes);
    int seen[36] = {0};

    for (size_t i = 0; i < NKEYS; i++) {
        assert_int_equal(ias_apikey_generate(keys[i], prefixes[i]), IAS_OK);
        for (size_t j = 0; j < IAS_APIKEY_PREFIX_LEN; j++) {
            const char *alpha = "abcdefghijklmnopqrstuvwxyz0123456789";
            seen[strchr(alpha, prefixes[i][j]) - alpha]++;
        }
    }
    qsort(keys, NKEYS, IAS_APIKEY_BUFSZ, cmp_str);
    qsort(prefixes, NKEYS, IAS_APIKEY_PREFIX_BUFSZ, cmp_str);
    for (size_t i = 1; i < NKEYS; i++) {
        assert_string_not_equal(keys[i - 1], keys[i]);
        /* 36^8 prefixes: a collision among 1000 is ~1.8e-7 likely. */
        assert_string_not_equal(prefixes[i - 1], prefixes[i]);
    }
    /* 8000 prefix characters over 36 symbols (~222 each): every symbol shows
     * up, none wildly over-represented (would catch a broken modulo). */
    for (size_t s = 0; s < 36; s++) {
        assert_true(seen[s] > 120);
        assert_true(seen[s] < 340);
    }
    free(keys);
    free(prefixes);
}

static void test_parse_good(void **state)
{
    char prefix[IAS_APIKEY_PREFIX_BUFSZ];

    assert_int_equal(ias_apikey_parse(GOOD_KEY, prefix), IAS_OK);
    assert_string_equal(prefix, "ab12cd34");
}

/* Each entry breaks exactly one rule. */
static const char *const bad_keys[] = {
    "",
    "ias_",
    "ias_ab12cd34.",
    "ias_ab12cd34",
    /* scheme */
    "IAS_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "sk-_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ias-ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "xias_ab12cd3.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    /* prefix charset and length */
    "ias_AB12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ias_ab12cd3-.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ias_ab12cd3_.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ias_ab12 d34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ias_ab12cd3.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A",
    "ias_ab12cd345.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",
    /* separator */
    "ias_ab12cd34_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ias_ab12cd34:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    /* secret length */
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    /* secret charset */
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx/dHh8",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx.dHh8",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx dHh8",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx\xc3\xa9Hh",
    /* non-canonical last character ('9' has non-zero unused bits) */
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9",
    /* trailing and leading junk */
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 ",
    " ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8ias_ab12cd34.AAECAwQFBgcICQoLDA0",
};

static void test_parse_rejects(void **state)
{
    char prefix[IAS_APIKEY_PREFIX_BUFSZ];

    assert_int_equal(ias_apikey_parse(NULL, prefix), IAS_ERR);
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad_keys); i++) {
        if (ias_apikey_parse(bad_keys[i], prefix) != IAS_ERR)
            fail_msg("accepted bad key #%zu: %s", i, bad_keys[i]);
    }
    /* Embedded NUL: the C string ends early, so the key is too short. */
    char k[IAS_APIKEY_BUFSZ];
    memcpy(k, GOOD_KEY, sizeof(k));
    k[30] = '\0';
    assert_int_equal(ias_apikey_parse(k, prefix), IAS_ERR);
}

static void test_parse_bounded_read(void **state)
{
    /* An unterminated buffer of exactly 57 bytes: parse must not read past it
     * (ASan would report it). */
    char *buf = malloc(IAS_APIKEY_LEN + 1);
    assert_non_null(buf);
    memcpy(buf, GOOD_KEY, IAS_APIKEY_LEN);
    buf[IAS_APIKEY_LEN] = 'x';
    assert_int_equal(ias_apikey_parse(buf, NULL), IAS_ERR);
    free(buf);
}

static void test_hash_and_verify(void **state)
{
    char hex[IAS_APIKEY_HASH_BUFSZ], want[65], key[IAS_APIKEY_BUFSZ];

    ias_apikey_hash(GOOD_KEY, hex);
    ias_sha256_hex(GOOD_KEY, strlen(GOOD_KEY), want);
    assert_string_equal(hex, want);
    assert_int_equal(strlen(hex), 64);
    assert_true(ias_apikey_verify(GOOD_KEY, hex));

    /* Upper-case stored digests are fine too. */
    for (char *p = want; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_true(ias_apikey_verify(GOOD_KEY, want));

    /* Another key, a one-bit change, malformed digests. */
    assert_int_equal(ias_apikey_generate(key, NULL), IAS_OK);
    assert_false(ias_apikey_verify(key, hex));
    memcpy(key, GOOD_KEY, sizeof(key));
    key[20] = key[20] == 'A' ? 'B' : 'A';
    assert_false(ias_apikey_verify(key, hex));
    hex[63] = hex[63] == '0' ? '1' : '0';
    assert_false(ias_apikey_verify(GOOD_KEY, hex));
    hex[63] = '\0';
    assert_false(ias_apikey_verify(GOOD_KEY, hex));
    assert_false(ias_apikey_verify(GOOD_KEY, ""));
    assert_false(ias_apikey_verify(GOOD_KEY, NULL));
    assert_false(ias_apikey_verify(NULL, want));
    ias_apikey_hash(GOOD_KEY, hex);
    hex[10] = 'g';
    assert_false(ias_apikey_verify(GOOD_KEY, hex));
    /* A malformed key never verifies, even against its own digest. */
    ias_apikey_hash("ias_short", hex);
    assert_false(ias_apikey_verify("ias_short", hex));
}

static void test_from_bearer(void **state)
{
    char key[IAS_APIKEY_BUFSZ], prefix[IAS_APIKEY_PREFIX_BUFSZ];

    assert_int_equal(ias_apikey_from_bearer("Bearer " GOOD_KEY, key, prefix), IAS_OK);
    assert_string_equal(key, GOOD_KEY);
    assert_string_equal(prefix, "ab12cd34");
    memset(key, 0, sizeof(key));
    assert_int_equal(ias_apikey_from_bearer("bearer " GOOD_KEY, key, NULL), IAS_OK);
    assert_string_equal(key, GOOD_KEY);
    assert_int_equal(ias_apikey_from_bearer("BEARER " GOOD_KEY, key, NULL), IAS_OK);
    assert_int_equal(ias_apikey_from_bearer("bEaReR " GOOD_KEY, key, NULL), IAS_OK);

    static const char *const bad[] = {
        "",
        "Bearer",
        "Bearer ",
        GOOD_KEY,
        "Bearer  " GOOD_KEY,
        "Bearer\t" GOOD_KEY,
        " Bearer " GOOD_KEY,
        "Bearer " GOOD_KEY " ",
        "Bearer " GOOD_KEY "x",
        "Bearer " GOOD_KEY "\r\n",
        "Basic " GOOD_KEY,
        "Token " GOOD_KEY,
        "Bearerx" GOOD_KEY,
        "Bear " GOOD_KEY,
        "Bearer ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9",
        "Bearer ias_AB12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++) {
        if (ias_apikey_from_bearer(bad[i], key, prefix) != IAS_ERR)
            fail_msg("accepted bad header #%zu: %s", i, bad[i]);
    }
    assert_int_equal(ias_apikey_from_bearer(NULL, key, prefix), IAS_ERR);

    /* A huge header value is refused without reading all of it. */
    size_t big = 1 << 20;
    char *h = malloc(big + 1);
    assert_non_null(h);
    memcpy(h, "Bearer ", 7);
    memset(h + 7, 'A', big - 7);
    h[big] = '\0';
    assert_int_equal(ias_apikey_from_bearer(h, key, prefix), IAS_ERR);
    free(h);

    /* Round trip with generated keys. */
    char gen[IAS_APIKEY_BUFSZ], gp[IAS_APIKEY_PREFIX_BUFSZ], hdr[128];
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ias_apikey_generate(gen, gp), IAS_OK);
        snprintf(hdr, sizeof(hdr), "Bearer %s", gen);
        assert_int_equal(ias_apikey_from_bearer(hdr, key, prefix), IAS_OK);
        assert_string_equal(key, gen);
        assert_string_equal(prefix, gp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_format),    cmocka_unit_test(test_generate_unique),
        cmocka_unit_test(test_parse_good),         cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_parse_bounded_read), cmocka_unit_test(test_hash_and_verify),
        cmocka_unit_test(test_from_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
