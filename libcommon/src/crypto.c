/* Randomness, UUIDs, encodings and digests over OpenSSL (see ias/crypto.h). */
#include "ias/crypto.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

int ias_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;

    /* RAND_bytes takes an int: feed it in chunks. */
    while (len > 0) {
        int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, n) != 1)
            return IAS_ERR;
        p += n;
        len -= (size_t)n;
    }
    return IAS_OK;
}

static void uuid_format(const uint8_t b[16], char out[IAS_UUID_STR_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = digits[b[i] >> 4];
        out[o++] = digits[b[i] & 0x0f];
    }
    out[o] = '\0';
}

static void random_or_die(void *buf, size_t len)
{
    if (ias_random_bytes(buf, len) != IAS_OK)
        ias_die("crypto: RAND_bytes failed");
}

void ias_uuid_v4(char out[IAS_UUID_STR_LEN + 1])
{
    uint8_t b[16];

    random_or_die(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC variant */
    uuid_format(b, out);
}

/* xoshiro256** (Blackman and Vigna), one state per thread. */
static _Thread_local uint64_t fast_state[4];
static _Thread_local bool fast_seeded;

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t fast_next(void)
{
    uint64_t *s = fast_state;
    uint64_t result, t;

    if (!fast_seeded) {
        do
            random_or_die(fast_state, sizeof(fast_state));
        while ((s[0] | s[1] | s[2] | s[3]) == 0); /* the all-zero state is a fixed point */
        fast_seeded = true;
    }
    result = rotl64(s[1] * 5, 7) * 9;
    t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

void ias_fast_random(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        uint64_t v = fast_next();
        size_t n = len < sizeof(v) ? len : sizeof(v);
        memcpy(p, &v, n);
        p += n;
        len -= n;
    }
}

void ias_uuid_v4_fast(char out[IAS_UUID_STR_LEN + 1])
{
    uint8_t b[16];

    ias_fast_random(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    uuid_format(b, out);
}

/* b holds 16 random bytes; the first 8 become the time and version fields. */
static void uuid_v7_from(uint8_t b[16], char out[IAS_UUID_STR_LEN + 1])
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        ias_die("crypto: clock_gettime failed");

    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    /* RFC 9562 §6.2 method 3: rand_a holds the sub-millisecond fraction in
     * 1/4096 ms steps, so ordering holds within one millisecond as well. */
    uint32_t frac = (uint32_t)(((uint64_t)ts.tv_nsec % 1000000u) * 4096u / 1000000u);

    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | ((frac >> 8) & 0x0f)); /* version 7 */
    b[7] = (uint8_t)(frac & 0xff);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC variant */
    uuid_format(b, out);
}

void ias_uuid_v7(char out[IAS_UUID_STR_LEN + 1])
{
    uint8_t b[16];

    random_or_die(b, sizeof(b));
    uuid_v7_from(b, out);
}

void ias_uuid_v7_fast(char out[IAS_UUID_STR_LEN + 1])
{
    uint8_t b[16];

    ias_fast_random(b, sizeof(b));
    uuid_v7_from(b, out);
}

bool ias_uuid_valid(const char *str)
{
    if (str == NULL || strnlen(str, IAS_UUID_STR_LEN + 1) != IAS_UUID_STR_LEN)
        return false;
    for (size_t i = 0; i < IAS_UUID_STR_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (str[i] != '-')
                return false;
        } else if (ias_hex_digit((unsigned char)str[i]) < 0) {
            return false;
        }
    }
    return true;
}

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t ias_b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

size_t ias_b64url_decoded_max(size_t n)
{
    return n / 4 * 3 + (n % 4 == 0 ? 0 : n % 4 - 1);
}

ssize_t ias_b64url_encode(const void *in, size_t inlen, char *out, size_t outlen)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;

    if (out == NULL || (in == NULL && inlen > 0) || inlen > (size_t)SSIZE_MAX / 2 ||
        outlen < ias_b64url_encoded_len(inlen) + 1)
        return IAS_ERR;
    for (; i + 3 <= inlen; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url_alphabet[(v >> 18) & 63];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (inlen - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64url_alphabet[(v >> 18) & 63];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
    } else if (inlen - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64url_alphabet[(v >> 18) & 63];
        out[o++] = b64url_alphabet[(v >> 12) & 63];
        out[o++] = b64url_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return (ssize_t)o;
}

ssize_t ias_b64url_decode(const char *in, size_t inlen, void *out, size_t outcap)
{
    unsigned char *q = out;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if ((in == NULL && inlen > 0) || (out == NULL && outcap > 0) || inlen % 4 == 1 ||
        inlen > (size_t)SSIZE_MAX || ias_b64url_decoded_max(inlen) > outcap)
        return IAS_ERR;
    for (size_t i = 0; i < inlen; i++) {
        int v = b64url_val((unsigned char)in[i]);
        if (v < 0)
            return IAS_ERR;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            q[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero: one canonical encoding per byte string. */
    if (acc != 0)
        return IAS_ERR;
    return (ssize_t)o;
}

ssize_t ias_hex_encode(const void *in, size_t inlen, char *out, size_t outlen)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;

    if (out == NULL || (in == NULL && inlen > 0) || inlen > (size_t)SSIZE_MAX / 2 ||
        outlen < inlen * 2 + 1)
        return IAS_ERR;
    for (size_t i = 0; i < inlen; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * inlen] = '\0';
    return (ssize_t)(inlen * 2);
}

ssize_t ias_hex_decode(const char *in, size_t inlen, void *out, size_t outcap)
{
    unsigned char *q = out;

    if ((in == NULL && inlen > 0) || (out == NULL && outcap > 0) || inlen % 2 != 0 ||
        inlen > (size_t)SSIZE_MAX || inlen / 2 > outcap)
        return IAS_ERR;
    for (size_t i = 0; i < inlen; i += 2) {
        int hi = ias_hex_digit((unsigned char)in[i]), lo = ias_hex_digit((unsigned char)in[i + 1]);
        if (hi < 0 || lo < 0)
            return IAS_ERR;
        q[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return (ssize_t)(inlen / 2);
}

/* EVP_sha256() makes OpenSSL 3 look the implementation up on every call (a
 * lock and a property query); fetched once, it is reused by every thread. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL)
        ias_die("crypto: EVP_MD_fetch(SHA256) failed");
}

void ias_sha256(const void *data, size_t len, uint8_t out[IAS_SHA256_LEN])
{
    static const unsigned char empty[1] = {0};
    unsigned int outlen = 0;

    pthread_once(&sha256_once, sha256_fetch);
    if (EVP_Digest(len > 0 ? data : empty, len, out, &outlen, sha256_md, NULL) != 1 ||
        outlen != IAS_SHA256_LEN)
        ias_die("crypto: EVP_Digest(sha256) failed");
}

void ias_sha256_hex(const void *data, size_t len, char out[IAS_SHA256_HEX_LEN + 1])
{
    uint8_t d[IAS_SHA256_LEN];

    ias_sha256(data, len, d);
    if (ias_hex_encode(d, sizeof(d), out, IAS_SHA256_HEX_LEN + 1) != IAS_SHA256_HEX_LEN)
        ias_die("crypto: hex encode failed");
}

void ias_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                     uint8_t out[IAS_SHA256_LEN])
{
    /* OpenSSL wants non-NULL pointers even for empty keys and messages. */
    static const unsigned char empty[1] = {0};
    unsigned int outlen = 0;

    if (keylen > INT_MAX)
        ias_die("crypto: HMAC key too long");
    if (HMAC(EVP_sha256(), keylen > 0 ? key : empty, (int)keylen, len > 0 ? data : empty, len, out,
             &outlen) == NULL ||
        outlen != IAS_SHA256_LEN)
        ias_die("crypto: HMAC(sha256) failed");
}

bool ias_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}
