/* Bearer access-token check shared by every management API. */
#include "ias/principal.h"

#include <string.h>
#include <strings.h>

#include "ias/log.h"

#define UNAUTHORIZED_TYPE "https://ias.dev/problems/unauthorized"

static int refuse(ias_req *r, const char *why)
{
    ias_info(ias_req_log(r), "unauthorized: %s", why);
    (void)ias_reply_header(r, "WWW-Authenticate", "Bearer");
    (void)ias_reply_problem_typed(r, 401, UNAUTHORIZED_TYPE, "%s",
                                  "a valid access token is required");
    return IAS_ERR;
}

int ias_principal_require(ias_req *r, const void *secret, size_t secret_len, ias_principal *out)
{
    const char *h = ias_req_header(r, "Authorization");
    ias_jwt_claims claims;
    ias_jwt_result res;

    memset(out, 0, sizeof(*out));
    if (!h)
        return refuse(r, "no Authorization header");
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return refuse(r, "Authorization is not a bearer token");
    h += 7;
    while (*h == ' ')
        h++;
    res = ias_jwt_verify(secret, secret_len, h, IAS_JWT_TYP_ACCESS, ias_wall_ms() / 1000, &claims);
    if (res != IAS_JWT_OK)
        return refuse(r, ias_jwt_strerror(res));
    if (claims.role[0] == '\0')
        return refuse(r, "token without a role");
    memcpy(out->user_id, claims.sub, sizeof(out->user_id));
    memcpy(out->org_id, claims.org, sizeof(out->org_id));
    memcpy(out->role, claims.role, sizeof(out->role));
    memcpy(out->jti, claims.jti, sizeof(out->jti));
    out->exp = claims.exp;
    return IAS_OK;
}

bool ias_principal_is_system_admin(const ias_principal *p)
{
    return strcmp(p->role, IAS_ROLE_SYSTEM_ADMIN) == 0;
}

bool ias_principal_in_org(const ias_principal *p, const char *org_id)
{
    if (ias_principal_is_system_admin(p))
        return true;
    return org_id && p->org_id[0] != '\0' && strcmp(p->org_id, org_id) == 0;
}
