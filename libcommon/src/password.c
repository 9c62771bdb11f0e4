/* bcrypt hashing and password policy (see ias/password.h). */
#include "ias/password.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/crypto.h"

#define BCRYPT_PREFIX "$2b$"
#define BCRYPT_SALT_BYTES 16
#define BCRYPT_HASH_LEN 60
#define BCRYPT_MIN_COST 4
#define BCRYPT_MAX_COST 31

/* struct crypt_data is ~32 KiB: keep it off worker-thread stacks, and wipe it
 * since it holds password-derived state. */
static struct crypt_data *crypt_data_new(void)
{
    return ias_xcalloc(1, sizeof(struct crypt_data));
}

static void crypt_data_free(struct crypt_data *cd)
{
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
}

static bool plain_ok(const char *plain)
{
    size_t n;

    if (plain == NULL)
        return false;
    n = strnlen(plain, IAS_PASSWORD_MAX_BYTES + 1);
    return n > 0 && n <= IAS_PASSWORD_MAX_BYTES;
}

int ias_password_hash_cost(const char *plain, int cost, char *out, size_t outlen)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    char rnd[BCRYPT_SALT_BYTES];
    struct crypt_data *cd = NULL;
    const char *h;
    size_t n;
    int rc = IAS_ERR;

    if (!plain_ok(plain) || out == NULL || cost < BCRYPT_MIN_COST || cost > BCRYPT_MAX_COST)
        return IAS_ERR;
    if (ias_random_bytes(rnd, sizeof(rnd)) != IAS_OK)
        return IAS_ERR;
    if (crypt_gensalt_rn(BCRYPT_PREFIX, (unsigned long)cost, rnd, (int)sizeof(rnd), setting,
                         (int)sizeof(setting)) == NULL)
        goto fail;
    cd = crypt_data_new();
    h = crypt_rn(plain, setting, cd, (int)sizeof(*cd));
    /* libxcrypt returns NULL on failure (never the "*0" token with crypt_rn),
     * but check the shape anyway before handing the hash out. */
    if (h == NULL || strncmp(h, BCRYPT_PREFIX, 4) != 0)
        goto fail;
    n = strlen(h);
    if (n != BCRYPT_HASH_LEN || n + 1 > outlen)
        goto fail;
    memcpy(out, h, n + 1);
    rc = IAS_OK;
fail:
    explicit_bzero(rnd, sizeof(rnd));
    if (cd != NULL)
        crypt_data_free(cd);
    return rc;
}

int ias_password_hash(const char *plain, char *out, size_t outlen)
{
    return ias_password_hash_cost(plain, IAS_PASSWORD_COST, out, outlen);
}

/* "$2a$", "$2b$" or "$2y$", two-digit cost, "$", 53 characters of bcrypt's
 * base64 alphabet. Anything else (DES, MD5, the "*0" failure token) is
 * refused before libcrypt sees it. */
static bool bcrypt_shape_ok(const char *hash)
{
    if (strnlen(hash, BCRYPT_HASH_LEN + 1) != BCRYPT_HASH_LEN)
        return false;
    if (hash[0] != '$' || hash[1] != '2' || (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'y') ||
        hash[3] != '$' || hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9' ||
        hash[6] != '$')
        return false;
    int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
    if (cost < BCRYPT_MIN_COST || cost > BCRYPT_MAX_COST)
        return false;
    for (size_t i = 7; i < BCRYPT_HASH_LEN; i++) {
        char c = hash[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '/'))
            return false;
    }
    return true;
}

bool ias_password_verify(const char *plain, const char *hash)
{
    struct crypt_data *cd;
    const char *h;
    bool ok = false;

    if (!plain_ok(plain) || hash == NULL || !bcrypt_shape_ok(hash))
        return false;
    cd = crypt_data_new();
    h = crypt_rn(plain, hash, cd, (int)sizeof(*cd));
    if (h != NULL && strnlen(h, BCRYPT_HASH_LEN + 1) == BCRYPT_HASH_LEN)
        ok = ias_ct_equal(h, hash, BCRYPT_HASH_LEN);
    crypt_data_free(cd);
    return ok;
}

static int policy_fail(char *why, size_t whylen, const char *msg)
{
    if (why != NULL && whylen > 0)
        (void)ias_strlcpy(why, msg, whylen);
    return IAS_ERR;
}

int ias_password_check_policy(const char *plain, char *why, size_t whylen)
{
    bool upper = false, lower = false, digit = false, symbol = false;
    size_t nbytes, nchars = 0;

    if (plain == NULL)
        return policy_fail(why, whylen, "password is required");
    nbytes = strnlen(plain, IAS_PASSWORD_MAX_BYTES + 1);
    if (nbytes > IAS_PASSWORD_MAX_BYTES)
        return policy_fail(why, whylen, "password must be at most 72 bytes long");
    for (size_t i = 0; i < nbytes; i++) {
        unsigned char c = (unsigned char)plain[i];
        if (c < 0x20 || c == 0x7f)
            return policy_fail(why, whylen, "password must not contain control characters");
        if ((c & 0xc0) != 0x80) /* not a UTF-8 continuation byte */
            nchars++;
        if (c >= 'A' && c <= 'Z')
            upper = true;
        else if (c >= 'a' && c <= 'z')
            lower = true;
        else if (c >= '0' && c <= '9')
            digit = true;
        else
            symbol = true; /* punctuation, space or non-ASCII */
    }
    if (nchars < IAS_PASSWORD_MIN_CHARS)
        return policy_fail(why, whylen, "password must be at least 12 characters long");
    if (!upper)
        return policy_fail(why, whylen, "password must contain an upper-case letter");
    if (!lower)
        return policy_fail(why, whylen, "password must contain a lower-case letter");
    if (!digit)
        return policy_fail(why, whylen, "password must contain a digit");
    if (!symbol)
        return policy_fail(why, whylen, "password must contain a symbol");
    if (why != NULL && whylen > 0)
        why[0] = '\0';
    return IAS_OK;
}
