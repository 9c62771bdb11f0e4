/* HS256 access tokens (libjwt 1.10) with strict verification.
 *
 * Claims: sub (user id), org (org id, "" for system admins), role, typ
 * ("access"), jti (token id), iat and exp (Unix seconds). Verification accepts
 * only alg HS256 whatever the header says, checks the signature itself in
 * constant time before libjwt parses the claims, and bounds every length.
 * The result tells why a token was refused so callers can log it; the HTTP
 * answer should stay a generic 401. */
#ifndef IAS_JWT_H
#define IAS_JWT_H

#include <stdint.h>

#include "ias/common.h"

#define IAS_JWT_MIN_SECRET 32   /* bytes; shorter secrets are refused */
#define IAS_JWT_MAX_SECRET 1024 /* bytes */
#define IAS_JWT_MAX_TOKEN 8192  /* characters */
/* Clock skew tolerated between services: a token is still good up to 30 s
 * after exp, and iat may be up to 30 s in the future. */
#define IAS_JWT_LEEWAY_S 30

#define IAS_JWT_ID_BUFSZ 65 /* sub, org, jti: up to 64 characters (UUIDs are 36) */
#define IAS_JWT_ROLE_BUFSZ 65
#define IAS_JWT_TYP_BUFSZ 17

#define IAS_JWT_TYP_ACCESS "access"

typedef struct ias_jwt_claims {
    char sub[IAS_JWT_ID_BUFSZ];
    char org[IAS_JWT_ID_BUFSZ]; /* may be empty */
    char role[IAS_JWT_ROLE_BUFSZ];
    char typ[IAS_JWT_TYP_BUFSZ];
    char jti[IAS_JWT_ID_BUFSZ];
    int64_t iat;
    int64_t exp;
} ias_jwt_claims;

typedef enum {
    IAS_JWT_OK = 0,
    IAS_JWT_EMALFORMED, /* not three base64url parts, bad JSON, too long */
    IAS_JWT_EALG,       /* header alg is not exactly HS256 (none, HS512, RS256...) */
    IAS_JWT_ESIG,       /* signature does not match */
    IAS_JWT_ECLAIMS,    /* sub/typ/iat/exp missing, wrong type, too long, exp <= iat */
    IAS_JWT_ETYP,       /* typ is not the expected one */
    IAS_JWT_EEXPIRED,   /* now >= exp + leeway */
    IAS_JWT_EFUTURE,    /* iat > now + leeway */
    IAS_JWT_ESECRET,    /* the secret given to verify is too short or too long */
} ias_jwt_result;

/* Short lower-case name of a result for log lines ("expired", "bad_signature"). */
const char *ias_jwt_strerror(ias_jwt_result r);

/* Signs a token for in (sub and typ required; in->iat 0 means now; an empty
 * in->jti gets a fresh UUIDv7) valid for ttl_seconds (> 0). *out is a
 * malloc'd string for the caller to free(). IAS_OK or IAS_ERR (short secret,
 * missing or over-long claims, libjwt failure). */
int ias_jwt_issue(const void *secret, size_t secret_len, const ias_jwt_claims *in,
                  int64_t ttl_seconds, char **out) IAS_MUSTCHECK;

/* Verifies token against secret at time now (Unix seconds) and that its typ
 * is expected_typ. On IAS_JWT_OK fills *out (missing org/role/jti are ""). On
 * any other result *out is zeroed. */
ias_jwt_result ias_jwt_verify(const void *secret, size_t secret_len, const char *token,
                              const char *expected_typ, int64_t now,
                              ias_jwt_claims *out) IAS_MUSTCHECK;

#endif
