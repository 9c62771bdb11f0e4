#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "ias/crypto.h"
#include "ias/jwt.h"

static const char SECRET[] = "0123456789abcdef0123456789abcdef-test-secret";
#define SECRET_LEN (sizeof(SECRET) - 1)
static const char OTHER[] = "fedcba9876543210fedcba9876543210-other-secret";
#define NOW 1800000000LL

#define HS256_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static ias_jwt_claims sample_claims(void)
{
    ias_jwt_claims c;

    memset(&c, 0, sizeof(c));
    strcpy(c.sub, "0190f1b2-7c3d-7a4e-8f00-123456789abc");
    strcpy(c.org, "0190f1b2-7c3d-7a4e-8f00-cba987654321");
    strcpy(c.role, "org_admin");
    strcpy(c.typ, IAS_JWT_TYP_ACCESS);
    c.iat = NOW;
    return c;
}

static char *issue(const ias_jwt_claims *c, int64_t ttl)
{
    char *tok = NULL;

    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, c, ttl, &tok), IAS_OK);
    assert_non_null(tok);
    return tok;
}

static void b64(const char *s, char *out, size_t outlen)
{
    assert_true(ias_b64url_encode(s, strlen(s), out, outlen) >= 0);
}

/* Builds "b64(header).b64(payload).sig" signed with HMAC-SHA256 under key, so
 * tests can make authentic tokens with arbitrary (bad) contents. */
static char *sign_raw(const char *header, const char *payload, const void *key, size_t keylen)
{
    char h[2048], p[4096], sig[64];
    uint8_t mac[32];
    size_t cap = strlen(header) * 2 + strlen(payload) * 2 + 100;
    char *tok = malloc(cap);

    assert_non_null(tok);
    b64(header, h, sizeof(h));
    b64(payload, p, sizeof(p));
    snprintf(tok, cap, "%s.%s", h, p);
    ias_hmac_sha256(key, keylen, tok, strlen(tok), mac);
    assert_int_equal(ias_b64url_encode(mac, sizeof(mac), sig, sizeof(sig)), 43);
    strcat(tok, ".");
    strcat(tok, sig);
    return tok;
}

static ias_jwt_result verify(const char *tok, ias_jwt_claims *out)
{
    return ias_jwt_verify(SECRET, SECRET_LEN, tok, IAS_JWT_TYP_ACCESS, NOW, out);
}

#define GOOD_PAYLOAD                                                                               \
    "{\"sub\":\"u1\",\"org\":\"o1\",\"role\":\"org_user\",\"typ\":\"access\",\"jti\":\"j1\","      \
    "\"iat\":1800000000,\"exp\":1800003600}"

static void test_roundtrip(void **state)
{
    ias_jwt_claims in = sample_claims(), out;
    char *tok = issue(&in, 3600);

    assert_int_equal(verify(tok, &out), IAS_JWT_OK);
    assert_string_equal(out.sub, in.sub);
    assert_string_equal(out.org, in.org);
    assert_string_equal(out.role, "org_admin");
    assert_string_equal(out.typ, "access");
    assert_true(ias_uuid_valid(out.jti)); /* generated */
    assert_int_equal(out.iat, NOW);
    assert_int_equal(out.exp, NOW + 3600);

    /* Checked by libjwt too: it reads back the same claims and alg. */
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, tok, (const unsigned char *)SECRET, (int)SECRET_LEN), 0);
    assert_int_equal(jwt_get_alg(j), JWT_ALG_HS256);
    assert_string_equal(jwt_get_grant(j, "sub"), in.sub);
    assert_int_equal(jwt_get_grant_int(j, "exp"), NOW + 3600);
    jwt_free(j);
    free(tok);

    /* Empty org (system admin), explicit jti, out may be NULL. */
    in.org[0] = '\0';
    strcpy(in.jti, "my-token-id");
    tok = issue(&in, 60);
    assert_int_equal(verify(tok, &out), IAS_JWT_OK);
    assert_string_equal(out.org, "");
    assert_string_equal(out.jti, "my-token-id");
    assert_int_equal(verify(tok, NULL), IAS_JWT_OK);
    free(tok);

    /* iat 0 means "now" (wall clock). */
    in = sample_claims();
    in.iat = 0;
    tok = issue(&in, 3600);
    int64_t now = ias_wall_ms() / 1000;
    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", now, &out), IAS_JWT_OK);
    assert_true(out.iat >= now - 5 && out.iat <= now);
    free(tok);
}

static void test_jti_unique(void **state)
{
    ias_jwt_claims in = sample_claims(), a, b;
    char *t1 = issue(&in, 3600), *t2 = issue(&in, 3600);

    assert_string_not_equal(t1, t2);
    assert_int_equal(verify(t1, &a), IAS_JWT_OK);
    assert_int_equal(verify(t2, &b), IAS_JWT_OK);
    assert_string_not_equal(a.jti, b.jti);
    free(t1);
    free(t2);
}

static void test_time_checks(void **state)
{
    ias_jwt_claims in = sample_claims(), out;
    char *tok = issue(&in, 3600); /* iat NOW, exp NOW+3600 */
    int64_t exp = NOW + 3600;

    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", exp - 1, &out), IAS_JWT_OK);
    /* Within the leeway after exp: still good. */
    assert_int_equal(
        ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", exp + IAS_JWT_LEEWAY_S - 1, &out),
        IAS_JWT_OK);
    assert_int_equal(
        ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", exp + IAS_JWT_LEEWAY_S, &out),
        IAS_JWT_EEXPIRED);
    assert_string_equal(out.sub, ""); /* zeroed on failure */
    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", exp + 86400, &out),
                     IAS_JWT_EEXPIRED);
    /* Issued in the future: fine within the leeway, refused beyond it. */
    assert_int_equal(
        ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", NOW - IAS_JWT_LEEWAY_S, &out),
        IAS_JWT_OK);
    assert_int_equal(
        ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", NOW - IAS_JWT_LEEWAY_S - 1, &out),
        IAS_JWT_EFUTURE);
    /* Absurd clocks do not overflow. */
    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", INT64_MAX, &out),
                     IAS_JWT_EEXPIRED);
    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN, tok, "access", INT64_MIN, &out),
                     IAS_JWT_EFUTURE);
    free(tok);
}

static void test_wrong_typ_and_secret(void **state)
{
    ias_jwt_claims in = sample_claims(), out;
    char *tok;

    strcpy(in.typ, "refresh");
    tok = issue(&in, 3600);
    assert_int_equal(verify(tok, &out), IAS_JWT_ETYP);
    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN, tok, "refresh", NOW, &out), IAS_JWT_OK);
    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN, tok, NULL, NOW, &out), IAS_JWT_ETYP);
    free(tok);

    in = sample_claims();
    tok = issue(&in, 3600);
    assert_int_equal(ias_jwt_verify(OTHER, strlen(OTHER), tok, "access", NOW, &out), IAS_JWT_ESIG);
    /* Same secret minus its last byte. */
    assert_int_equal(ias_jwt_verify(SECRET, SECRET_LEN - 1, tok, "access", NOW, &out),
                     IAS_JWT_ESIG);
    free(tok);
}

static void test_short_secret(void **state)
{
    ias_jwt_claims in = sample_claims(), out;
    char *tok = (char *)"x";

    assert_int_equal(ias_jwt_issue(SECRET, 31, &in, 3600, &tok), IAS_ERR);
    assert_null(tok);
    assert_int_equal(ias_jwt_issue(NULL, 0, &in, 3600, &tok), IAS_ERR);
    tok = issue(&in, 3600);
    assert_int_equal(ias_jwt_verify(SECRET, 31, tok, "access", NOW, &out), IAS_JWT_ESECRET);
    assert_int_equal(ias_jwt_verify(NULL, 64, tok, "access", NOW, &out), IAS_JWT_ESECRET);
    /* 32 bytes is the minimum that works. */
    char *t32 = NULL;
    assert_int_equal(ias_jwt_issue(SECRET, 32, &in, 3600, &t32), IAS_OK);
    assert_int_equal(ias_jwt_verify(SECRET, 32, t32, "access", NOW, &out), IAS_JWT_OK);
    free(t32);
    free(tok);
}

static void test_issue_rejects(void **state)
{
    ias_jwt_claims in = sample_claims();
    char *tok = NULL;

    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, &in, 0, &tok), IAS_ERR);
    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, &in, -5, &tok), IAS_ERR);
    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, NULL, 60, &tok), IAS_ERR);
    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, &in, 60, NULL), IAS_ERR);
    in.sub[0] = '\0';
    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, &in, 60, &tok), IAS_ERR);
    in = sample_claims();
    in.typ[0] = '\0';
    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, &in, 60, &tok), IAS_ERR);
    in = sample_claims();
    memset(in.role, 'r', sizeof(in.role)); /* unterminated field */
    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, &in, 60, &tok), IAS_ERR);
    in = sample_claims();
    in.iat = INT64_MAX - 10;
    assert_int_equal(ias_jwt_issue(SECRET, SECRET_LEN, &in, 60, &tok), IAS_ERR);
    assert_null(tok);
}

static void test_tampered_payload(void **state)
{
    ias_jwt_claims in = sample_claims(), out;
    char *tok = issue(&in, 3600);
    char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    char forged[4096], p[1024];

    /* Swap in a payload that claims system_admin, keep the signature. */
    b64("{\"sub\":\"0190f1b2-7c3d-7a4e-8f00-123456789abc\",\"org\":\"\",\"role\":"
        "\"system_admin\",\"typ\":\"access\",\"jti\":\"x\",\"iat\":1800000000,\"exp\":1800003600}",
        p, sizeof(p));
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, p, d2);
    assert_int_equal(verify(forged, &out), IAS_JWT_ESIG);
    assert_string_equal(out.role, "");

    /* Flip one character of the payload, then of the signature. */
    strcpy(forged, tok);
    forged[d1 - tok + 5] = forged[d1 - tok + 5] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(forged, &out), IAS_JWT_ESIG);
    strcpy(forged, tok);
    forged[d2 - tok + 3] = forged[d2 - tok + 3] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(forged, &out), IAS_JWT_ESIG);
    /* Truncated or extended signature. */
    strcpy(forged, tok);
    forged[strlen(forged) - 1] = '\0';
    assert_int_equal(verify(forged, &out), IAS_JWT_ESIG);
    snprintf(forged, sizeof(forged), "%sA", tok);
    assert_int_equal(verify(forged, &out), IAS_JWT_ESIG);
    /* No signature at all. */
    snprintf(forged, sizeof(forged), "%.*s", (int)(d2 - tok + 1), tok);
    assert_int_equal(verify(forged, &out), IAS_JWT_ESIG);
    free(tok);
}

static void test_alg_none_and_others(void **state)
{
    char h[256], p[1024], tok[2048];
    ias_jwt_claims out;

    /* Crafted by hand: alg none, empty signature. */
    b64("{\"alg\":\"none\",\"typ\":\"JWT\"}", h, sizeof(h));
    b64(GOOD_PAYLOAD, p, sizeof(p));
    snprintf(tok, sizeof(tok), "%s.%s.", h, p);
    assert_int_equal(verify(tok, &out), IAS_JWT_EALG);
    /* alg none with a signature made with our key is still refused. */
    char *signed_none = sign_raw("{\"alg\":\"none\"}", GOOD_PAYLOAD, SECRET, SECRET_LEN);
    assert_int_equal(verify(signed_none, &out), IAS_JWT_EALG);
    free(signed_none);

    /* Case and spelling variants of the alg, missing alg, non-string alg. */
    static const char *const headers[] = {
        "{\"alg\":\"hs256\"}", "{\"alg\":\"HS256 \"}", "{\"alg\":\"NONE\"}", "{\"alg\":\"RS256\"}",
        "{\"alg\":\"HS384\"}", "{\"typ\":\"JWT\"}",    "{\"alg\":256}",      "{\"alg\":null}",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(headers); i++) {
        char *t = sign_raw(headers[i], GOOD_PAYLOAD, SECRET, SECRET_LEN);
        ias_jwt_result r = verify(t, &out);
        if (r != IAS_JWT_EALG)
            fail_msg("header %s: got %s", headers[i], ias_jwt_strerror(r));
        free(t);
    }

    /* A genuine HS512 token made by libjwt with our secret: libjwt alone would
     * accept it; we do not. */
    jwt_t *j = NULL;
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grant(j, "sub", "u1"), 0);
    assert_int_equal(jwt_add_grant(j, "typ", "access"), 0);
    assert_int_equal(jwt_add_grant_int(j, "iat", NOW), 0);
    assert_int_equal(jwt_add_grant_int(j, "exp", NOW + 3600), 0);
    assert_int_equal(jwt_set_alg(j, JWT_ALG_HS512, (const unsigned char *)SECRET, (int)SECRET_LEN),
                     0);
    char *t512 = jwt_encode_str(j);
    assert_non_null(t512);
    jwt_free(j);
    j = NULL;
    assert_int_equal(jwt_decode(&j, t512, (const unsigned char *)SECRET, (int)SECRET_LEN), 0);
    jwt_free(j);
    assert_int_equal(verify(t512, &out), IAS_JWT_EALG);
    free(t512);
}

static void test_malformed(void **state)
{
    ias_jwt_claims in = sample_claims(), out;
    char *good = issue(&in, 3600);
    char buf[256];

    static const char *const bad[] = {
        "",
        ".",
        "..",
        "abc",
        "abc.def",
        "abc.def.ghi.jkl",
        ".eyJzdWIiOiIxIn0.c2ln",
        "eyJhbGciOiJIUzI1NiJ9..c2ln",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0=.c2ln",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi OiIxIn0.c2ln",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln\n",
        "eyJhbGciOiJIUzI1NiJ9+.eyJzdWIiOiIxIn0.c2ln",
        "bm90IGpzb24.eyJzdWIiOiIxIn0.c2ln", /* header "not json" */
        "WzFd.eyJzdWIiOiIxIn0.c2ln",        /* header [1] */
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++) {
        ias_jwt_result r = verify(bad[i], &out);
        if (r != IAS_JWT_EMALFORMED)
            fail_msg("token #%zu '%s': got %s", i, bad[i], ias_jwt_strerror(r));
    }
    assert_int_equal(verify(NULL, &out), IAS_JWT_EMALFORMED);

    /* Too long: an otherwise good token padded past 8 KiB. */
    size_t n = IAS_JWT_MAX_TOKEN + 10;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'A', n);
    memcpy(big, good, strlen(good));
    big[n] = '\0';
    assert_int_equal(verify(big, &out), IAS_JWT_EMALFORMED);
    free(big);

    /* Authentic but with a header or payload that is not acceptable JSON. */
    static const struct {
        const char *header, *payload;
        ias_jwt_result want;
    } signed_bad[] = {
        {HS256_HDR, "not json", IAS_JWT_EMALFORMED},
        /* jansson refuses integers beyond 64 bits while parsing */
        {HS256_HDR,
         "{\"sub\":\"u\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":99999999999999999999}",
         IAS_JWT_EMALFORMED},
        {"{\"alg\":\"HS256\",\"alg\":\"none\"}", GOOD_PAYLOAD, IAS_JWT_EALG},
        {"{\"alg\":\"HS256\",\"alg\":\"HS256\"}", GOOD_PAYLOAD, IAS_JWT_EMALFORMED},
        {"{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}", GOOD_PAYLOAD, IAS_JWT_EMALFORMED},
        {"{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", GOOD_PAYLOAD, IAS_JWT_EMALFORMED},
        {"{\"alg\":\"HS256\"", GOOD_PAYLOAD, IAS_JWT_EMALFORMED},
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(signed_bad); i++) {
        char *t = sign_raw(signed_bad[i].header, signed_bad[i].payload, SECRET, SECRET_LEN);
        ias_jwt_result r = verify(t, &out);
        if (r != signed_bad[i].want)
            fail_msg("signed #%zu: got %s want %s", i, ias_jwt_strerror(r),
                     ias_jwt_strerror(signed_bad[i].want));
        free(t);
    }
    /* The minimal header without typ is fine. */
    char *t = sign_raw("{\"alg\":\"HS256\"}", GOOD_PAYLOAD, SECRET, SECRET_LEN);
    assert_int_equal(verify(t, &out), IAS_JWT_OK);
    assert_string_equal(out.sub, "u1");
    assert_string_equal(out.jti, "j1");
    free(t);
    snprintf(buf, sizeof(buf), "%s", ias_jwt_strerror(IAS_JWT_EEXPIRED));
    assert_string_equal(buf, "expired");
    free(good);
}

static void test_bad_claims(void **state)
{
    ias_jwt_claims out;
    char longsub[200], payload[512];

    static const char *const payloads[] = {
        /* missing or empty sub */
        "{\"typ\":\"access\",\"iat\":1800000000,\"exp\":1800003600}",
        "{\"sub\":\"\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":1800003600}",
        /* wrong types */
        "{\"sub\":7,\"typ\":\"access\",\"iat\":1800000000,\"exp\":1800003600}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":\"1800003600\"}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":1800003600.5}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":true}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"iat\":-1,\"exp\":1800003600}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"role\":[\"x\"],\"iat\":1800000000,\"exp\":1800003600}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"org\":null,\"iat\":1800000000,\"exp\":1800003600}",
        /* missing typ / iat / exp */
        "{\"sub\":\"u\",\"iat\":1800000000,\"exp\":1800003600}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"exp\":1800003600}",
        "{\"sub\":\"u\",\"typ\":\"access\",\"iat\":1800000000}",
        /* exp not after iat */
        "{\"sub\":\"u\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":1800000000}",
        /* not an object */
        "[1,2,3]",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(payloads); i++) {
        char *t = sign_raw(HS256_HDR, payloads[i], SECRET, SECRET_LEN);
        ias_jwt_result r = verify(t, &out);
        if (r != IAS_JWT_ECLAIMS)
            fail_msg("payload #%zu %s: got %s", i, payloads[i], ias_jwt_strerror(r));
        free(t);
    }

    /* Claim longer than its struct field: refused, not truncated. */
    memset(longsub, 's', IAS_JWT_ID_BUFSZ);
    longsub[IAS_JWT_ID_BUFSZ] = '\0';
    snprintf(payload, sizeof(payload),
             "{\"sub\":\"%s\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":1800003600}", longsub);
    char *t = sign_raw(HS256_HDR, payload, SECRET, SECRET_LEN);
    assert_int_equal(verify(t, &out), IAS_JWT_ECLAIMS);
    free(t);
    longsub[IAS_JWT_ID_BUFSZ - 1] = '\0'; /* 64 characters fit */
    snprintf(payload, sizeof(payload),
             "{\"sub\":\"%s\",\"typ\":\"access\",\"iat\":1800000000,\"exp\":1800003600}", longsub);
    t = sign_raw(HS256_HDR, payload, SECRET, SECRET_LEN);
    assert_int_equal(verify(t, &out), IAS_JWT_OK);
    assert_int_equal(strlen(out.sub), IAS_JWT_ID_BUFSZ - 1);
    free(t);
    /* An over-long typ is a claims problem too. */
    t = sign_raw(HS256_HDR,
                 "{\"sub\":\"u\",\"typ\":\"accessaccessaccessaccess\",\"iat\":1800000000,"
                 "\"exp\":1800003600}",
                 SECRET, SECRET_LEN);
    assert_int_equal(verify(t, &out), IAS_JWT_ECLAIMS);
    free(t);
}

static void test_strerror(void **state)
{
    for (int r = IAS_JWT_OK; r <= IAS_JWT_ESECRET; r++)
        assert_string_not_equal(ias_jwt_strerror((ias_jwt_result)r), "unknown");
    assert_string_equal(ias_jwt_strerror(IAS_JWT_ESIG), "bad_signature");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),        cmocka_unit_test(test_jti_unique),
        cmocka_unit_test(test_time_checks),      cmocka_unit_test(test_wrong_typ_and_secret),
        cmocka_unit_test(test_short_secret),     cmocka_unit_test(test_issue_rejects),
        cmocka_unit_test(test_tampered_payload), cmocka_unit_test(test_alg_none_and_others),
        cmocka_unit_test(test_malformed),        cmocka_unit_test(test_bad_claims),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
