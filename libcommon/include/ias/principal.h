/* Who is calling a management API (/api/v1/...): the verified access JWT of
 * "Authorization: Bearer <jwt>". Every service checks it itself (DESIGN.md:
 * each service validates the JWT and enforces roles and tenant scope). */
#ifndef IAS_PRINCIPAL_H
#define IAS_PRINCIPAL_H

#include "ias/http_server.h"
#include "ias/jwt.h"

#define IAS_ROLE_SYSTEM_ADMIN "system_admin"
#define IAS_ROLE_ORG_ADMIN "org_admin"
#define IAS_ROLE_ORG_USER "org_user"

typedef struct ias_principal {
    char user_id[IAS_JWT_ID_BUFSZ];
    char org_id[IAS_JWT_ID_BUFSZ]; /* "" for a system admin */
    char role[IAS_JWT_ROLE_BUFSZ];
    char jti[IAS_JWT_ID_BUFSZ];
    int64_t exp;
} ias_principal;

/* Verifies the request's bearer access token against secret. On success fills
 * *out and returns IAS_OK. Otherwise answers 401 itself (RFC 7807, type
 * https://ias.dev/problems/unauthorized, WWW-Authenticate: Bearer), logs why
 * (expired, bad signature...) without the token, and returns IAS_ERR. */
int ias_principal_require(ias_req *r, const void *secret, size_t secret_len,
                          ias_principal *out) IAS_MUSTCHECK;

bool ias_principal_is_system_admin(const ias_principal *p);
/* True when p may act inside org_id: a system admin anywhere, others in their own org. */
bool ias_principal_in_org(const ias_principal *p, const char *org_id);

#endif
