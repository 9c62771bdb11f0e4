#include "testlib.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ias/crypto.h"

static void to_hex(const uint8_t *d, size_t n, char *out, size_t outlen)
{
    assert_int_equal(ias_hex_encode(d, n, out, outlen), (ssize_t)(2 * n));
}

static void test_random_bytes(void **state)
{
    uint8_t a[64], b[64], zero[64] = {0};

    assert_int_equal(ias_random_bytes(a, sizeof(a)), IAS_OK);
    assert_int_equal(ias_random_bytes(b, sizeof(b)), IAS_OK);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_int_equal(ias_random_bytes(a, 0), IAS_OK);
}

static void test_sha256_vectors(void **state)
{
    char hex[65];
    uint8_t d[32];

    /* FIPS 180-2 appendix B.1 and the empty string. */
    ias_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ias_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ias_sha256(NULL, 0, d);
    to_hex(d, sizeof(d), hex, sizeof(hex));
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* FIPS 180-2 B.2 (two blocks). */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ias_sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_hmac_rfc4231(void **state)
{
    uint8_t key[131], mac[32];
    char hex[65];

    /* Test case 1. */
    memset(key, 0x0b, 20);
    ias_hmac_sha256(key, 20, "Hi There", 8, mac);
    to_hex(mac, sizeof(mac), hex, sizeof(hex));
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    /* Test case 2: key shorter than the block. */
    const char *data2 = "what do ya want for nothing?";
    ias_hmac_sha256("Jefe", 4, data2, strlen(data2), mac);
    to_hex(mac, sizeof(mac), hex, sizeof(hex));
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* Test case 6: key longer than the block (hashed first). */
    const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    memset(key, 0xaa, sizeof(key));
    ias_hmac_sha256(key, sizeof(key), data6, strlen(data6), mac);
    to_hex(mac, sizeof(mac), hex, sizeof(hex));
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* RFC 4648 §10 vectors, without padding, plus the two url-safe characters. */
static const struct {
    const char *raw;
    size_t rawlen;
    const char *enc;
} b64_vectors[] = {
    {"", 0, ""},
    {"f", 1, "Zg"},
    {"fo", 2, "Zm8"},
    {"foo", 3, "Zm9v"},
    {"foob", 4, "Zm9vYg"},
    {"fooba", 5, "Zm9vYmE"},
    {"foobar", 6, "Zm9vYmFy"},
    {"\xfb\xff", 2, "-_8"},      /* "+/8=" in standard base64 */
    {"\xff\xff\xfe", 3, "___-"}, /* "///+" */
    {"\x00\x00\x00\x00", 4, "AAAAAA"},
};

static void test_b64url_vectors(void **state)
{
    char enc[32];
    uint8_t dec[32];

    for (size_t i = 0; i < IAS_ARRAY_LEN(b64_vectors); i++) {
        size_t n = b64_vectors[i].rawlen, elen = strlen(b64_vectors[i].enc);
        assert_int_equal(ias_b64url_encoded_len(n), elen);
        assert_int_equal(ias_b64url_encode(b64_vectors[i].raw, n, enc, sizeof(enc)), (ssize_t)elen);
        assert_string_equal(enc, b64_vectors[i].enc);
        assert_true(ias_b64url_decoded_max(elen) >= n);
        assert_int_equal(ias_b64url_decode(b64_vectors[i].enc, elen, dec, sizeof(dec)), (ssize_t)n);
        assert_memory_equal(dec, b64_vectors[i].raw, n);
    }
}

static void test_b64url_rejects(void **state)
{
    uint8_t dec[16];
    char enc[8];

    /* Padding, standard-alphabet characters, whitespace, NUL. */
    assert_int_equal(ias_b64url_decode("Zg==", 4, dec, sizeof(dec)), IAS_ERR);
    assert_int_equal(ias_b64url_decode("+/8", 3, dec, sizeof(dec)), IAS_ERR);
    /* (each of these has a valid length, so the character is what fails) */
    assert_int_equal(ias_b64url_decode("Zm9vYmFy", 8, dec, sizeof(dec)), 6);
    assert_int_equal(ias_b64url_decode("Zm9 YmFy", 8, dec, sizeof(dec)), IAS_ERR);
    assert_int_equal(ias_b64url_decode("Zm9\nYmFy", 8, dec, sizeof(dec)), IAS_ERR);
    assert_int_equal(ias_b64url_decode("Zm9\0YmFy", 8, dec, sizeof(dec)), IAS_ERR);
    assert_int_equal(ias_b64url_decode("Zm9\x80YmFy", 8, dec, sizeof(dec)), IAS_ERR);
    assert_int_equal(ias_b64url_decode("Zm9.YmFy", 8, dec, sizeof(dec)), IAS_ERR);
    /* A length of 4k+1 cannot be an encoding. */
    assert_int_equal(ias_b64url_decode("Zm9vY", 5, dec, sizeof(dec)), IAS_ERR);
    assert_int_equal(ias_b64url_decode("Z", 1, dec, sizeof(dec)), IAS_ERR);
    /* Non-canonical: "Zh" has non-zero unused bits (would also decode to "f"). */
    assert_int_equal(ias_b64url_decode("Zh", 2, dec, sizeof(dec)), IAS_ERR);
    assert_int_equal(ias_b64url_decode("Zm9", 3, dec, sizeof(dec)), IAS_ERR);
    /* Output bound: "foobar" needs 6 bytes. */
    assert_int_equal(ias_b64url_decode("Zm9vYmFy", 8, dec, 5), IAS_ERR);
    assert_int_equal(ias_b64url_decode("Zm9vYmFy", 8, dec, 6), 6);
    /* Encode bound: "foo" needs 4 chars + NUL. */
    assert_int_equal(ias_b64url_encode("foo", 3, enc, 4), IAS_ERR);
    assert_int_equal(ias_b64url_encode("foo", 3, enc, 5), 4);
}

static void test_b64url_roundtrip_random(void **state)
{
    uint8_t raw[100], back[100];
    char enc[200];

    for (size_t n = 0; n <= sizeof(raw); n++) {
        assert_int_equal(ias_random_bytes(raw, n), IAS_OK);
        ssize_t e = ias_b64url_encode(raw, n, enc, sizeof(enc));
        assert_int_equal(e, (ssize_t)ias_b64url_encoded_len(n));
        assert_int_equal(ias_b64url_decode(enc, (size_t)e, back, sizeof(back)), (ssize_t)n);
        assert_memory_equal(raw, back, n);
    }
}

static void test_hex(void **state)
{
    char hex[16];
    uint8_t b[4];

    assert_int_equal(ias_hex_encode("\x00\xab\xff", 3, hex, sizeof(hex)), 6);
    assert_string_equal(hex, "00abff");
    assert_int_equal(ias_hex_encode("\x00\xab\xff", 3, hex, 6), IAS_ERR);
    assert_int_equal(ias_hex_decode("00AbfF", 6, b, sizeof(b)), 3);
    assert_memory_equal(b, "\x00\xab\xff", 3);
    assert_int_equal(ias_hex_decode("0", 1, b, sizeof(b)), IAS_ERR);
    assert_int_equal(ias_hex_decode("0g", 2, b, sizeof(b)), IAS_ERR);
    assert_int_equal(ias_hex_decode("0011223344", 10, b, sizeof(b)), IAS_ERR);
}

static void test_ct_equal(void **state)
{
    assert_true(ias_ct_equal("abcdef", "abcdef", 6));
    assert_false(ias_ct_equal("abcdef", "abcdeg", 6));
    assert_false(ias_ct_equal("xbcdef", "abcdef", 6));
    assert_true(ias_ct_equal("a", "b", 0));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_unique(char **ids, size_t n)
{
    qsort(ids, n, sizeof(ids[0]), cmp_str);
    for (size_t i = 1; i < n; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
}

#define NUUID 2000

static void test_uuid_v4(void **state)
{
    char **ids = calloc(NUUID, sizeof(char *));
    assert_non_null(ids);

    for (size_t i = 0; i < NUUID; i++) {
        ids[i] = malloc(IAS_UUID_STR_LEN + 1);
        assert_non_null(ids[i]);
        ias_uuid_v4(ids[i]);
        assert_true(ias_uuid_valid(ids[i]));
        assert_int_equal(ids[i][14], '4');
        assert_non_null(strchr("89ab", ids[i][19]));
    }
    check_unique(ids, NUUID);
    for (size_t i = 0; i < NUUID; i++)
        free(ids[i]);
    free(ids);
}

static void test_uuid_v7_ordered(void **state)
{
    char **ids = calloc(NUUID, sizeof(char *));
    assert_non_null(ids);
    struct timespec ts;
    assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts), 0);
    uint64_t before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;

    for (size_t i = 0; i < NUUID; i++) {
        ids[i] = malloc(IAS_UUID_STR_LEN + 1);
        assert_non_null(ids[i]);
        ias_uuid_v7(ids[i]);
        assert_true(ias_uuid_valid(ids[i]));
        assert_int_equal(ids[i][14], '7');
        assert_non_null(strchr("89ab", ids[i][19]));
        /* Later ids never sort before earlier ones (sub-ms fraction in rand_a;
         * equal prefixes are possible, then the random tail decides). */
        if (i > 0)
            assert_true(strncmp(ids[i - 1], ids[i], 18) <= 0);
    }
    /* The first 48 bits are the Unix time in ms. */
    char hexts[13];
    memcpy(hexts, ids[0], 8);
    memcpy(hexts + 8, ids[0] + 9, 4);
    hexts[12] = '\0';
    uint64_t ms = strtoull(hexts, NULL, 16);
    assert_true(ms >= before && ms < before + 5000);
    check_unique(ids, NUUID);
    for (size_t i = 0; i < NUUID; i++)
        free(ids[i]);
    free(ids);
}

static void test_uuid_valid(void **state)
{
    assert_true(ias_uuid_valid("123e4567-e89b-12d3-a456-426614174000"));
    assert_true(ias_uuid_valid("123E4567-E89B-12D3-A456-426614174000"));
    assert_true(ias_uuid_valid("00000000-0000-0000-0000-000000000000"));
    assert_false(ias_uuid_valid(NULL));
    assert_false(ias_uuid_valid(""));
    assert_false(ias_uuid_valid("123e4567-e89b-12d3-a456-42661417400"));   /* short */
    assert_false(ias_uuid_valid("123e4567-e89b-12d3-a456-4266141740000")); /* long */
    assert_false(ias_uuid_valid("123e4567e89b-12d3-a456-4266141740000"));  /* hyphen */
    assert_false(ias_uuid_valid("123e4567-e89b-12d3-a456-42661417400g"));  /* hex */
    assert_false(ias_uuid_valid("{23e4567-e89b-12d3-a456-42661417400}"));
    assert_false(ias_uuid_valid("123e4567-e89b-12d3-a456 426614174000"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_b64url_vectors),
        cmocka_unit_test(test_b64url_rejects),
        cmocka_unit_test(test_b64url_roundtrip_random),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_uuid_v4),
        cmocka_unit_test(test_uuid_v7_ordered),
        cmocka_unit_test(test_uuid_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
