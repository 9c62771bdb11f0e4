/* HS256 access tokens over libjwt 1.10 (see ias/jwt.h).
 *
 * libjwt 1.10's jwt_decode() trusts the header: it accepts "alg":"none" when
 * no key is given, verifies HS384/HS512 with our key if the header asks, and
 * compares signatures with strcmp(). So verification does its own checks
 * first (structure, header alg exactly HS256, constant-time HMAC over the
 * signing input) and only then lets libjwt parse the claims. */
#include "ias/jwt.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <jwt.h>

#include "ias/crypto.h"

#define HEADER_MAX_CHARS 1024 /* base64url characters of the JOSE header */
#define SIG_CHARS 43          /* base64url of a 32-byte HMAC-SHA256 */

const char *ias_jwt_strerror(ias_jwt_result r)
{
    switch (r) {
    case IAS_JWT_OK:
        return "ok";
    case IAS_JWT_EMALFORMED:
        return "malformed";
    case IAS_JWT_EALG:
        return "bad_alg";
    case IAS_JWT_ESIG:
        return "bad_signature";
    case IAS_JWT_ECLAIMS:
        return "bad_claims";
    case IAS_JWT_ETYP:
        return "wrong_typ";
    case IAS_JWT_EEXPIRED:
        return "expired";
    case IAS_JWT_EFUTURE:
        return "issued_in_future";
    case IAS_JWT_ESECRET:
        return "bad_secret";
    }
    return "unknown";
}

static bool secret_ok(const void *secret, size_t len)
{
    return secret != NULL && len >= IAS_JWT_MIN_SECRET && len <= IAS_JWT_MAX_SECRET;
}

/* A claim string from the caller's struct: NUL-terminated inside its field. */
static bool field_ok(const char *s, size_t cap, bool required)
{
    size_t n = strnlen(s, cap);
    return n < cap && (!required || n > 0);
}

int ias_jwt_issue(const void *secret, size_t secret_len, const ias_jwt_claims *in,
                  int64_t ttl_seconds, char **out)
{
    jwt_t *jwt = NULL;
    char jti[IAS_JWT_ID_BUFSZ];
    int64_t iat, exp;
    char *tok;
    int rc = IAS_ERR;

    if (out == NULL)
        return IAS_ERR;
    *out = NULL;
    if (!secret_ok(secret, secret_len) || in == NULL || ttl_seconds <= 0)
        return IAS_ERR;
    if (!field_ok(in->sub, sizeof(in->sub), true) || !field_ok(in->org, sizeof(in->org), false) ||
        !field_ok(in->role, sizeof(in->role), false) || !field_ok(in->typ, sizeof(in->typ), true) ||
        !field_ok(in->jti, sizeof(in->jti), false))
        return IAS_ERR;
    iat = in->iat != 0 ? in->iat : (int64_t)time(NULL);
    if (iat < 0 || iat > LONG_MAX - ttl_seconds)
        return IAS_ERR;
    exp = iat + ttl_seconds;
    if (in->jti[0] != '\0')
        memcpy(jti, in->jti, sizeof(jti));
    else
        ias_uuid_v7(jti);

    if (jwt_new(&jwt) != 0)
        return IAS_ERR;
    if (jwt_add_grant(jwt, "sub", in->sub) != 0 || jwt_add_grant(jwt, "org", in->org) != 0 ||
        jwt_add_grant(jwt, "role", in->role) != 0 || jwt_add_grant(jwt, "typ", in->typ) != 0 ||
        jwt_add_grant(jwt, "jti", jti) != 0 || jwt_add_grant_int(jwt, "iat", (long)iat) != 0 ||
        jwt_add_grant_int(jwt, "exp", (long)exp) != 0)
        goto fail;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int)secret_len) != 0)
        goto fail;
    tok = jwt_encode_str(jwt);
    if (tok == NULL)
        goto fail;
    *out = tok;
    rc = IAS_OK;
fail:
    jwt_free(jwt); /* also scrubs its copy of the key */
    return rc;
}

static bool all_b64url(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* The JOSE header must be a JSON object with exactly one "alg", equal to
 * "HS256"; "typ", if present, "JWT"; and no "crit" extensions we would have
 * to understand. */
static ias_jwt_result check_header(const char *b64, size_t n)
{
    char buf[HEADER_MAX_CHARS / 4 * 3 + 1];
    ssize_t len;
    cJSON *h, *it;
    int nalg = 0, ntyp = 0;
    ias_jwt_result r = IAS_JWT_EMALFORMED;

    if (n > HEADER_MAX_CHARS)
        return IAS_JWT_EMALFORMED;
    len = ias_b64url_decode(b64, n, buf, sizeof(buf) - 1);
    if (len <= 0)
        return IAS_JWT_EMALFORMED;
    buf[len] = '\0';
    h = cJSON_ParseWithLength(buf, (size_t)len);
    if (h == NULL || !cJSON_IsObject(h))
        goto done;
    cJSON_ArrayForEach(it, h)
    {
        if (it->string == NULL)
            goto done;
        if (strcmp(it->string, "alg") == 0) {
            nalg++;
            if (!cJSON_IsString(it) || strcmp(it->valuestring, "HS256") != 0) {
                r = IAS_JWT_EALG;
                goto done;
            }
        } else if (strcmp(it->string, "typ") == 0) {
            ntyp++;
            if (!cJSON_IsString(it) || strcasecmp(it->valuestring, "JWT") != 0)
                goto done;
        } else if (strcmp(it->string, "crit") == 0) {
            goto done;
        }
    }
    if (nalg != 1) {
        r = nalg == 0 ? IAS_JWT_EALG : IAS_JWT_EMALFORMED;
        goto done;
    }
    if (ntyp > 1)
        goto done;
    r = IAS_JWT_OK;
done:
    cJSON_Delete(h);
    return r;
}

static ias_jwt_result get_str(jwt_t *jwt, const char *name, bool required, char *dst, size_t cap)
{
    const char *v;

    dst[0] = '\0';
    errno = 0;
    v = jwt_get_grant(jwt, name);
    if (v == NULL) {
        /* ENOENT: absent; errno 0: present but not a string. */
        return (errno == ENOENT && !required) ? IAS_JWT_OK : IAS_JWT_ECLAIMS;
    }
    if (ias_strlcpy(dst, v, cap) != IAS_OK || (required && dst[0] == '\0'))
        return IAS_JWT_ECLAIMS;
    return IAS_JWT_OK;
}

/* jwt_get_grant_int() turns a string or a float into 0 without saying so;
 * look at the JSON text instead and accept only a plain non-negative integer. */
static ias_jwt_result get_int(jwt_t *jwt, const char *name, int64_t *dst)
{
    char *js, *end;
    long long v;
    ias_jwt_result r = IAS_JWT_ECLAIMS;

    js = jwt_get_grants_json(jwt, name);
    if (js == NULL)
        return IAS_JWT_ECLAIMS;
    if (js[0] < '0' || js[0] > '9' || strlen(js) > 19)
        goto done;
    errno = 0;
    v = strtoll(js, &end, 10);
    if (errno != 0 || *end != '\0')
        goto done;
    *dst = (int64_t)v;
    r = IAS_JWT_OK;
done:
    free(js);
    return r;
}

static ias_jwt_result verify(const void *secret, size_t secret_len, const char *token,
                             const char *expected_typ, int64_t now, ias_jwt_claims *c)
{
    const char *d1, *d2;
    size_t len, hlen, plen, slen;
    uint8_t mac[IAS_SHA256_LEN];
    char want[SIG_CHARS + 1];
    jwt_t *jwt = NULL;
    ias_jwt_result r;

    if (!secret_ok(secret, secret_len))
        return IAS_JWT_ESECRET;
    if (token == NULL)
        return IAS_JWT_EMALFORMED;
    len = strnlen(token, IAS_JWT_MAX_TOKEN + 1);
    if (len > IAS_JWT_MAX_TOKEN)
        return IAS_JWT_EMALFORMED;

    /* Exactly three non-empty base64url parts (signature checked below). */
    d1 = memchr(token, '.', len);
    if (d1 == NULL)
        return IAS_JWT_EMALFORMED;
    d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (d2 == NULL)
        return IAS_JWT_EMALFORMED;
    hlen = (size_t)(d1 - token);
    plen = (size_t)(d2 - d1 - 1);
    slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0 || plen == 0 || !all_b64url(token, hlen) || !all_b64url(d1 + 1, plen) ||
        !all_b64url(d2 + 1, slen))
        return IAS_JWT_EMALFORMED;

    r = check_header(token, hlen);
    if (r != IAS_JWT_OK)
        return r;

    ias_hmac_sha256(secret, secret_len, token, (size_t)(d2 - token), mac);
    if (ias_b64url_encode(mac, sizeof(mac), want, sizeof(want)) != SIG_CHARS)
        return IAS_JWT_ESIG;
    if (slen != SIG_CHARS || !ias_ct_equal(want, d2 + 1, SIG_CHARS))
        return IAS_JWT_ESIG;

    /* Authentic: now let libjwt parse it (it verifies the HMAC again). */
    if (jwt_decode(&jwt, token, secret, (int)secret_len) != 0 || jwt == NULL)
        return IAS_JWT_EMALFORMED;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        r = IAS_JWT_EALG;
        goto done;
    }
    if ((r = get_str(jwt, "sub", true, c->sub, sizeof(c->sub))) != IAS_JWT_OK ||
        (r = get_str(jwt, "typ", true, c->typ, sizeof(c->typ))) != IAS_JWT_OK ||
        (r = get_str(jwt, "org", false, c->org, sizeof(c->org))) != IAS_JWT_OK ||
        (r = get_str(jwt, "role", false, c->role, sizeof(c->role))) != IAS_JWT_OK ||
        (r = get_str(jwt, "jti", false, c->jti, sizeof(c->jti))) != IAS_JWT_OK ||
        (r = get_int(jwt, "iat", &c->iat)) != IAS_JWT_OK ||
        (r = get_int(jwt, "exp", &c->exp)) != IAS_JWT_OK)
        goto done;
    if (c->exp <= c->iat) {
        r = IAS_JWT_ECLAIMS;
        goto done;
    }
    if (expected_typ == NULL || strcmp(c->typ, expected_typ) != 0) {
        r = IAS_JWT_ETYP;
        goto done;
    }
    /* Clamp so the leeway arithmetic cannot overflow. */
    if (now < 0)
        now = 0;
    if (now > INT64_MAX - IAS_JWT_LEEWAY_S)
        now = INT64_MAX - IAS_JWT_LEEWAY_S;
    if (c->iat > now + IAS_JWT_LEEWAY_S) {
        r = IAS_JWT_EFUTURE;
        goto done;
    }
    if (c->exp <= now - IAS_JWT_LEEWAY_S) {
        r = IAS_JWT_EEXPIRED;
        goto done;
    }
    r = IAS_JWT_OK;
done:
    jwt_free(jwt);
    return r;
}

ias_jwt_result ias_jwt_verify(const void *secret, size_t secret_len, const char *token,
                              const char *expected_typ, int64_t now, ias_jwt_claims *out)
{
    ias_jwt_claims c;
    ias_jwt_result r;

    memset(&c, 0, sizeof(c));
    r = verify(secret, secret_len, token, expected_typ, now, &c);
    if (out != NULL) {
        if (r == IAS_JWT_OK)
            *out = c;
        else
            memset(out, 0, sizeof(*out));
    }
    return r;
}
