/* POST /api/v1/bootstrap/super-admin: creates the first system admin, only
 * while none exists (and with IAS_BOOTSTRAP_TOKEN when set); 409 afterwards. */
#include "users.h"

#include "ias/crypto.h"
#include "ias/log.h"
#include "ias/password.h"

#include <cjson/cJSON.h>
#include <string.h>

#define SYSTEM_ADMIN_ROLE "00000000-0000-0000-0000-000000000001"

static const users_field fields[] = {
    {"email", UF_STR, true, false, 254},
    {"password", UF_STR, true, false, 256},
    {"display_name", UF_STR, false, false, 200},
};

static bool admin_exists(users_worker *w, int *err)
{
    PGresult *res = NULL;
    bool exists;

    *err = IAS_OK;
    if (users_q(w, &res,
                "SELECT 1 FROM users WHERE role_id = '" SYSTEM_ADMIN_ROLE
                "' AND deleted_at IS NULL LIMIT 1",
                0, NULL) != IAS_OK) {
        *err = IAS_ERR;
        return false;
    }
    exists = ias_pg_nrows(res) > 0;
    ias_pg_clear(res);
    return exists;
}

void users_h_bootstrap(ias_req *r, void *arg)
{
    users_ctx *ctx = arg;
    users_worker *w = users_worker_of(r);
    cJSON *body;
    char why[160], hash[IAS_PASSWORD_HASH_BUFSZ];
    PGresult *res = NULL;
    int err;

    if (ctx->bootstrap_token[0] != '\0') {
        const char *t = ias_req_header(r, "X-Bootstrap-Token");
        size_t n = strlen(ctx->bootstrap_token);
        if (t == NULL || strlen(t) != n || !ias_ct_equal(t, ctx->bootstrap_token, n)) {
            users_problem(r, 401, "unauthorized", "a valid X-Bootstrap-Token is required");
            return;
        }
    }
    body = users_body(r, fields, IAS_ARRAY_LEN(fields));
    if (body == NULL)
        return;
    const char *email = users_json_str(body, "email"), *pw = users_json_str(body, "password");
    const char *dn = users_json_str(body, "display_name");
    if (ias_password_check_policy(pw, why, sizeof(why)) != IAS_OK) {
        users_problem(r, 400, "weak-password", "field 'password': %s", why);
        return;
    }
    /* Cheap check first so a finished bootstrap costs no bcrypt. */
    if (users_tx_begin(w, "*") != IAS_OK) {
        users_db_error(r, w, "bootstrap");
        return;
    }
    bool exists = admin_exists(w, &err);
    users_tx_rollback(w);
    if (err != IAS_OK) {
        users_db_error(r, w, "bootstrap");
        return;
    }
    if (exists) {
        users_problem(r, 409, "already-bootstrapped", "a system admin already exists");
        return;
    }
    if (ias_password_hash(pw, hash, sizeof(hash)) != IAS_OK) {
        users_internal_error(r, NULL, "hashing a password");
        return;
    }
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, NULL, "SELECT pg_advisory_xact_lock(hashtext('ias_users_bootstrap'))", 0,
                NULL) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "bootstrap");
        return;
    }
    exists = admin_exists(w, &err);
    if (err != IAS_OK || exists) {
        users_tx_rollback(w);
        if (err != IAS_OK)
            users_db_error(r, w, "bootstrap");
        else
            users_problem(r, 409, "already-bootstrapped", "a system admin already exists");
        return;
    }
    const char *v[3] = {email, dn ? dn : "", hash};
    if (users_q(w, &res,
                "INSERT INTO users (email, display_name, password_hash, role_id) "
                "VALUES ($1, $2, $3, '" SYSTEM_ADMIN_ROLE
                "') RETURNING id, " USERS_TS("created_at"),
                3, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "bootstrap");
        return;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "email", email);
    if (users_audit(r, w, ias_pg_value(res, 0, 0), NULL, "super_admin_bootstrapped", "user",
                    ias_pg_value(res, 0, 0), "success", d) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "bootstrap");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", ias_pg_value(res, 0, 0));
    cJSON_AddStringToObject(o, "email", email);
    cJSON_AddStringToObject(o, "role", "system_admin");
    cJSON_AddNullToObject(o, "org_id");
    cJSON_AddStringToObject(o, "created_at", ias_pg_value(res, 0, 1));
    ias_pg_clear(res);
    ias_info(ias_req_log(r), "bootstrapped the first system admin");
    users_reply_json(r, 201, o);
}
