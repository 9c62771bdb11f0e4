/* API key generation, parsing and hashing (see ias/apikey.h). */
#include "ias/apikey.h"

#include <string.h>
#include <strings.h>

#define APIKEY_SCHEME "ias_"
#define APIKEY_SCHEME_LEN 4
#define APIKEY_DOT_AT (APIKEY_SCHEME_LEN + IAS_APIKEY_PREFIX_LEN)
#define APIKEY_SECRET_AT (APIKEY_DOT_AT + 1)
#define BEARER_SCHEME "Bearer"
#define BEARER_SCHEME_LEN 6

static const char prefix_alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";

static bool is_prefix_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int ias_apikey_generate(char key[IAS_APIKEY_BUFSZ], char prefix[IAS_APIKEY_PREFIX_BUFSZ])
{
    uint8_t secret[IAS_APIKEY_SECRET_BYTES];
    uint8_t rnd[32];
    char p[IAS_APIKEY_PREFIX_BUFSZ];
    size_t np = 0;
    int rc = IAS_ERR;

    /* Rejection sampling keeps the prefix uniform over 36 symbols: bytes
     * >= 252 (7 * 36) would bias the modulo, so they are skipped. */
    while (np < IAS_APIKEY_PREFIX_LEN) {
        if (ias_random_bytes(rnd, sizeof(rnd)) != IAS_OK)
            goto fail;
        for (size_t i = 0; i < sizeof(rnd) && np < IAS_APIKEY_PREFIX_LEN; i++) {
            if (rnd[i] < 252)
                p[np++] = prefix_alphabet[rnd[i] % 36];
        }
    }
    p[np] = '\0';

    if (ias_random_bytes(secret, sizeof(secret)) != IAS_OK)
        goto fail;
    memcpy(key, APIKEY_SCHEME, APIKEY_SCHEME_LEN);
    memcpy(key + APIKEY_SCHEME_LEN, p, IAS_APIKEY_PREFIX_LEN);
    key[APIKEY_DOT_AT] = '.';
    if (ias_b64url_encode(secret, sizeof(secret), key + APIKEY_SECRET_AT,
                          IAS_APIKEY_SECRET_LEN + 1) != IAS_APIKEY_SECRET_LEN)
        goto fail;
    if (prefix != NULL)
        memcpy(prefix, p, sizeof(p));
    rc = IAS_OK;
fail:
    /* The secret only lives in key from here on. */
    explicit_bzero(secret, sizeof(secret));
    return rc;
}

int ias_apikey_parse(const char *key, char prefix[IAS_APIKEY_PREFIX_BUFSZ])
{
    uint8_t secret[IAS_APIKEY_SECRET_BYTES];
    ssize_t n;

    if (key == NULL || strnlen(key, IAS_APIKEY_LEN + 1) != IAS_APIKEY_LEN)
        return IAS_ERR;
    if (memcmp(key, APIKEY_SCHEME, APIKEY_SCHEME_LEN) != 0 || key[APIKEY_DOT_AT] != '.')
        return IAS_ERR;
    for (size_t i = APIKEY_SCHEME_LEN; i < APIKEY_DOT_AT; i++) {
        if (!is_prefix_char(key[i]))
            return IAS_ERR;
    }
    /* The strict decoder checks the charset and that the last character is
     * canonical, so each secret has exactly one spelling. */
    n = ias_b64url_decode(key + APIKEY_SECRET_AT, IAS_APIKEY_SECRET_LEN, secret, sizeof(secret));
    explicit_bzero(secret, sizeof(secret));
    if (n != IAS_APIKEY_SECRET_BYTES)
        return IAS_ERR;
    if (prefix != NULL) {
        memcpy(prefix, key + APIKEY_SCHEME_LEN, IAS_APIKEY_PREFIX_LEN);
        prefix[IAS_APIKEY_PREFIX_LEN] = '\0';
    }
    return IAS_OK;
}

void ias_apikey_hash(const char *key, char hex[IAS_APIKEY_HASH_BUFSZ])
{
    ias_sha256_hex(key, strlen(key), hex);
}

int ias_apikey_from_bearer(const char *value, char key[IAS_APIKEY_BUFSZ],
                           char prefix[IAS_APIKEY_PREFIX_BUFSZ])
{
    const size_t want = BEARER_SCHEME_LEN + 1 + IAS_APIKEY_LEN;
    const char *k;

    /* strnlen bounds the read: anything longer than "Bearer <key>" is wrong. */
    if (value == NULL || strnlen(value, want + 1) != want)
        return IAS_ERR;
    if (strncasecmp(value, BEARER_SCHEME, BEARER_SCHEME_LEN) != 0 ||
        value[BEARER_SCHEME_LEN] != ' ')
        return IAS_ERR;
    k = value + BEARER_SCHEME_LEN + 1;
    if (ias_apikey_parse(k, prefix) != IAS_OK)
        return IAS_ERR;
    memcpy(key, k, IAS_APIKEY_LEN + 1);
    return IAS_OK;
}

bool ias_apikey_verify(const char *key, const char *stored_hex)
{
    uint8_t want[IAS_SHA256_LEN], got[IAS_SHA256_LEN];

    if (ias_apikey_parse(key, NULL) != IAS_OK || stored_hex == NULL ||
        strnlen(stored_hex, IAS_SHA256_HEX_LEN + 1) != IAS_SHA256_HEX_LEN)
        return false;
    if (ias_hex_decode(stored_hex, IAS_SHA256_HEX_LEN, want, sizeof(want)) != IAS_SHA256_LEN)
        return false;
    ias_sha256(key, IAS_APIKEY_LEN, got);
    return ias_ct_equal(want, got, sizeof(want));
}
