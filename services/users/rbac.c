/* The one permission middleware: JWT -> principal -> the role's permission set
 * (from roles/role_permissions, cached per worker for a short TTL) -> allow,
 * 403, or 404 for another org's objects. */
#include "users.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

int users_authenticate(ias_req *r, ias_principal *p)
{
    users_ctx *ctx = ias_req_ctx(r);
    return ias_principal_require(r, ctx->jwt_secret, ctx->jwt_secret_len, p);
}

/* Reloads every built-in and custom role's permissions (a handful of rows). */
static int load_roles(users_worker *w)
{
    PGresult *res = NULL;
    users_role_perms *roles = NULL;
    size_t n = 0;

    if (users_q(w, &res,
                "SELECT r.name, rp.permission FROM roles r JOIN role_permissions rp "
                "ON rp.role_id = r.id WHERE r.org_id IS NULL ORDER BY r.name",
                0, NULL) != IAS_OK)
        return IAS_ERR;
    for (int i = 0; i < ias_pg_nrows(res); i++) {
        const char *role = ias_pg_value(res, i, 0), *perm = ias_pg_value(res, i, 1);
        if (n == 0 || strcmp(roles[n - 1].role, role) != 0) {
            roles = ias_xrealloc(roles, (n + 1) * sizeof(*roles));
            memset(&roles[n], 0, sizeof(roles[n]));
            (void)ias_strlcpy(roles[n].role, role, sizeof(roles[n].role));
            n++;
        }
        if (roles[n - 1].n < USERS_PERM_MAX)
            (void)ias_strlcpy(roles[n - 1].perms[roles[n - 1].n++], perm,
                              sizeof(roles[0].perms[0]));
    }
    ias_pg_clear(res);
    free(w->roles);
    w->roles = roles;
    w->nroles = n;
    w->roles_loaded_ms = ias_now_ms();
    return IAS_OK;
}

/* -1: could not load, 0: no, 1: yes. */
static int role_grants(ias_req *r, const char *role, const char *perm)
{
    users_ctx *ctx = ias_req_ctx(r);
    users_worker *w = users_worker_of(r);

    if (w->roles_loaded_ms == 0 || ias_now_ms() - w->roles_loaded_ms > (uint64_t)ctx->rbac_ttl_ms) {
        if (load_roles(w) != IAS_OK && w->roles_loaded_ms == 0)
            return -1;
    }
    for (size_t i = 0; i < w->nroles; i++) {
        if (strcmp(w->roles[i].role, role) != 0)
            continue;
        for (size_t j = 0; j < w->roles[i].n; j++)
            if (strcmp(w->roles[i].perms[j], perm) == 0)
                return 1;
        return 0;
    }
    return 0;
}

bool users_has_perm(ias_req *r, const ias_principal *p, const char *perm)
{
    return role_grants(r, p->role, perm) == 1;
}

int users_authorize(users_ctx *ctx, ias_req *r, const ias_principal *p, const char *perm,
                    const char *target_org)
{
    int g = role_grants(r, p->role, perm);

    IAS_UNUSED(ctx);
    if (g < 0) {
        users_internal_error(r, users_worker_of(r), "loading role permissions");
        return IAS_ERR;
    }
    /* Another org's object does not exist for this caller, whatever its role. */
    if (target_org && !ias_principal_in_org(p, target_org)) {
        users_problem(r, 404, "not-found", "not found");
        return IAS_ERR;
    }
    if (g == 0) {
        ias_info(ias_req_log(r), "forbidden: role %s lacks %s", p->role, perm);
        users_problem(r, 403, "forbidden", "your role does not allow %s", perm);
        return IAS_ERR;
    }
    return IAS_OK;
}
