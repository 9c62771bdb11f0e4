/* Users of an org: invite (create), list, read, update (role, per-user monthly
 * limit, disabled), remove, and a system admin's password reset. */
#include "users.h"

#include "ias/log.h"
#include "ias/password.h"

#include <cjson/cJSON.h>
#include <string.h>

#define USER_JSON                                                                                  \
    "json_build_object('id', u.id, 'org_id', u.org_id, 'email', u.email, "                         \
    "'display_name', u.display_name, 'role', r.name, "                                             \
    "'monthly_token_limit', u.monthly_token_limit, 'disabled', u.disabled, "                       \
    "'last_login_at', " USERS_TS("u.last_login_at") ", 'created_at', " USERS_TS(                   \
        "u.created_at") ", 'updated_at', " USERS_TS("u.updated_at") ")::text"

static const users_field create_fields[] = {
    {"email", UF_STR, true, false, 254},
    {"password", UF_STR, true, false, 256},
    {"display_name", UF_STR, false, false, 200},
    {"role", UF_STR, false, false, 63},
    {"monthly_token_limit", UF_INT, false, true, 0},
};

static int check_role_name(ias_req *r, const char *role)
{
    if (role && strcmp(role, IAS_ROLE_ORG_ADMIN) != 0 && strcmp(role, IAS_ROLE_ORG_USER) != 0) {
        users_problem(r, 400, "validation", "field 'role' must be org_admin or org_user");
        return IAS_ERR;
    }
    return IAS_OK;
}

void users_h_users_create(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *org;
    ias_principal p;
    char why[160], hash[IAS_PASSWORD_HASH_BUFSZ];
    PGresult *res = NULL;
    cJSON *body;

    if ((org = users_org_access(r, arg, "users:write", &p)) == NULL)
        return;
    body = users_body(r, create_fields, IAS_ARRAY_LEN(create_fields));
    if (body == NULL)
        return;
    const char *role = users_json_str(body, "role"), *pw = users_json_str(body, "password");
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(body, "monthly_token_limit");
    if (check_role_name(r, role) != IAS_OK)
        return;
    if (ias_password_check_policy(pw, why, sizeof(why)) != IAS_OK) {
        users_problem(r, 400, "weak-password", "field 'password': %s", why);
        return;
    }
    if (ias_password_hash(pw, hash, sizeof(hash)) != IAS_OK) {
        users_internal_error(r, NULL, "hashing a password");
        return;
    }
    users_params ps = {0};
    users_params_add(&ps, org);
    users_params_add(&ps, users_json_str(body, "email"));
    users_params_json(&ps, cJSON_GetObjectItemCaseSensitive(body, "display_name"));
    users_params_add(&ps, hash);
    users_params_add(&ps, role ? role : IAS_ROLE_ORG_USER);
    users_params_json(&ps, lim);
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "WITH ins AS (INSERT INTO users (org_id, email, display_name, password_hash, "
                "role_id, monthly_token_limit) SELECT o.id, $2, coalesce($3, ''), $4, ro.id, "
                "$6::bigint FROM orgs o JOIN roles ro ON ro.name = $5 AND ro.scope = 'org' "
                "AND (ro.org_id IS NULL OR ro.org_id = o.id) "
                "WHERE o.id = $1 AND o.deleted_at IS NULL RETURNING *) "
                "SELECT " USER_JSON ", u.id FROM ins u JOIN roles r ON r.id = u.role_id",
                ps.n, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "creating the user");
        return;
    }
    users_params_free(&ps);
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 404, "not-found", "not found");
        return;
    }
    const char *uid = ias_pg_value(res, 0, 1);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "email", users_json_str(body, "email"));
    cJSON_AddStringToObject(d, "role", role ? role : IAS_ROLE_ORG_USER);
    cJSON *ids = cJSON_CreateArray();
    cJSON_AddItemToArray(ids, cJSON_CreateString(uid));
    if (users_audit(r, w, p.user_id, org, "user_created", "user", uid, "success", d) != IAS_OK ||
        users_config_changed(w, "budgets", org, ids) != IAS_OK || users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "creating the user");
        return;
    }
    users_reply_raw(r, 201, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_users_list(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *org;
    ias_principal p;
    users_page pg;
    PGresult *res = NULL;

    if ((org = users_org_access(r, arg, "users:read", &p)) == NULL ||
        users_page_parse(r, &pg) != IAS_OK)
        return;
    const char *v[4] = {org, pg.cursor_ts, pg.cursor_id, pg.limit_s};
    if (users_tx_begin_page(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "SELECT " USER_JSON ", " USERS_TS(
                    "u.created_at") ", u.id FROM users u "
                                    "JOIN roles r ON r.id = u.role_id WHERE u.org_id = $1 AND "
                                    "u.deleted_at IS NULL "
                                    "AND (u.created_at, u.id) > ($2::timestamptz, $3::uuid) "
                                    "ORDER BY u.created_at, u.id LIMIT $4::int",
                4, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "listing users");
        return;
    }
    users_tx_rollback(w);
    users_reply_page(r, &pg, res);
    ias_pg_clear(res);
}

/* Looks the user up within the caller's scope (RLS hides other orgs) and
 * authorizes perm on its org; a caller may always read itself. Leaves the
 * transaction open on IAS_OK. */
static int load_user(ias_req *r, users_worker *w, const ias_principal *p, const char *perm,
                     bool self_ok, PGresult **res)
{
    const char *id = users_org_param(r);

    if (users_lock_row(r, w, p,
                       "SELECT " USER_JSON ", u.id, u.org_id FROM users u JOIN roles r "
                       "ON r.id = u.role_id WHERE u.id = $1 AND u.deleted_at IS NULL "
                       "FOR UPDATE OF u",
                       "reading the user", res) != IAS_OK)
        return IAS_ERR;
    if (self_ok && strcmp(id, p->user_id) == 0)
        return IAS_OK;
    /* A system admin (no org) is visible only to system admins. */
    const char *org = ias_pg_value(*res, 0, 2);
    if (users_authorize(ias_req_ctx(r), r, p, perm, org ? org : "") != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(*res);
        *res = NULL;
        return IAS_ERR;
    }
    return IAS_OK;
}

void users_h_users_get(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    PGresult *res;

    IAS_UNUSED(arg);
    if (users_authenticate(r, &p) != IAS_OK ||
        load_user(r, w, &p, "users:read", true, &res) != IAS_OK)
        return;
    users_tx_rollback(w);
    users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

static const users_field patch_fields[] = {
    {"display_name", UF_STR, false, false, 200},
    {"role", UF_STR, false, false, 63},
    {"monthly_token_limit", UF_INT, false, true, 0},
    {"disabled", UF_BOOL, false, false, 0},
};

/* Key ids and hashes of a user (for invalidation after disable/removal). */
static int user_keys(users_worker *w, const char *uid, PGresult **keys, cJSON **ids)
{
    const char *v[1] = {uid};
    if (users_q(w, keys, "SELECT id, key_hash FROM api_keys WHERE user_id = $1", 1, v) != IAS_OK)
        return IAS_ERR;
    *ids = cJSON_CreateArray();
    for (int i = 0; i < ias_pg_nrows(*keys) && i < 1000; i++)
        cJSON_AddItemToArray(*ids, cJSON_CreateString(ias_pg_value(*keys, i, 0)));
    return IAS_OK;
}

void users_h_users_update(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    PGresult *res, *upd = NULL, *keys = NULL;
    users_params ps = {0};
    cJSON *body;

    IAS_UNUSED(arg);
    if (users_authenticate(r, &p) != IAS_OK)
        return;
    body = users_body(r, patch_fields, IAS_ARRAY_LEN(patch_fields));
    if (body == NULL || check_role_name(r, users_json_str(body, "role")) != IAS_OK ||
        load_user(r, w, &p, "users:write", false, &res) != IAS_OK)
        return;
    const char *uid = ias_pg_value(res, 0, 1), *org = ias_pg_value(res, 0, 2);
    users_params_add(&ps, uid);
    for (size_t i = 0; i < IAS_ARRAY_LEN(patch_fields); i++)
        users_params_field(&ps, body, patch_fields[i].name);
    if (users_q(w, &upd,
                "WITH u AS (UPDATE users SET "
                "display_name = CASE WHEN $2 THEN $3 ELSE display_name END, "
                "role_id = CASE WHEN $4 THEN (SELECT id FROM roles WHERE name = $5 AND "
                "scope = 'org' AND org_id IS NULL) ELSE role_id END, "
                "monthly_token_limit = CASE WHEN $6 THEN $7::bigint ELSE monthly_token_limit END, "
                "disabled = CASE WHEN $8 THEN $9::boolean ELSE disabled END "
                "WHERE id = $1 RETURNING *) "
                "SELECT " USER_JSON " FROM u JOIN roles r ON r.id = u.role_id",
                ps.n, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        ias_pg_clear(res);
        users_db_error(r, w, "updating the user");
        return;
    }
    users_params_free(&ps);
    cJSON *d = cJSON_CreateObject(), *f = cJSON_AddArrayToObject(d, "fields"), *it;
    cJSON_ArrayForEach(it, body)
    {
        cJSON_AddItemToArray(f, cJSON_CreateString(it->string));
        if (!cJSON_IsString(it) || strcmp(it->string, "display_name") != 0)
            cJSON_AddItemToObject(d, it->string, cJSON_Duplicate(it, true));
    }
    int rc = users_audit(r, w, p.user_id, org, "user_updated", "user", uid, "success", d);
    if (rc == IAS_OK && cJSON_GetObjectItemCaseSensitive(body, "monthly_token_limit")) {
        cJSON *ids = cJSON_CreateArray();
        cJSON_AddItemToArray(ids, cJSON_CreateString(uid));
        rc = users_config_changed(w, "budgets", org, ids);
    }
    if (rc == IAS_OK && (cJSON_GetObjectItemCaseSensitive(body, "disabled") ||
                         cJSON_GetObjectItemCaseSensitive(body, "role"))) {
        cJSON *ids = NULL;
        rc = user_keys(w, uid, &keys, &ids);
        if (rc == IAS_OK)
            rc = users_config_changed(w, "keys", org, ids);
    }
    if (rc != IAS_OK || users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        ias_pg_clear(upd);
        ias_pg_clear(keys);
        users_db_error(r, w, "updating the user");
        return;
    }
    users_redis_drop_keys(w, keys, 1);
    users_reply_raw(r, 200, ias_pg_value(upd, 0, 0));
    ias_pg_clear(res);
    ias_pg_clear(upd);
    ias_pg_clear(keys);
}

void users_h_users_delete(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    PGresult *res, *keys = NULL;
    cJSON *ids = NULL;

    IAS_UNUSED(arg);
    if (users_authenticate(r, &p) != IAS_OK ||
        load_user(r, w, &p, "users:write", false, &res) != IAS_OK)
        return;
    const char *uid = ias_pg_value(res, 0, 1), *org = ias_pg_value(res, 0, 2);
    const char *v[1] = {uid};
    int rc = users_audit(r, w, p.user_id, org, "user_removed", "user", uid, "success", NULL);
    if (rc == IAS_OK)
        rc = users_q(w, NULL, "UPDATE users SET deleted_at = now() WHERE id = $1", 1, v);
    if (rc == IAS_OK)
        rc = users_q(w, NULL,
                     "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 "
                     "AND revoked_at IS NULL",
                     1, v);
    if (rc == IAS_OK)
        rc = user_keys(w, uid, &keys, &ids);
    if (rc == IAS_OK)
        rc = users_config_changed(w, "keys", org, ids);
    if (rc != IAS_OK || users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        ias_pg_clear(keys);
        users_db_error(r, w, "removing the user");
        return;
    }
    users_redis_drop_keys(w, keys, 1);
    ias_pg_clear(res);
    ias_pg_clear(keys);
    ias_reply(r, 204, NULL, NULL, 0);
}

static const users_field password_fields[] = {
    {"password", UF_STR, true, false, 256},
};

void users_h_users_password(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    char why[160], hash[IAS_PASSWORD_HASH_BUFSZ];
    PGresult *res;
    cJSON *body;

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "users:reset_password", NULL) != IAS_OK)
        return;
    body = users_body(r, password_fields, IAS_ARRAY_LEN(password_fields));
    if (body == NULL)
        return;
    if (ias_password_check_policy(users_json_str(body, "password"), why, sizeof(why)) != IAS_OK) {
        users_problem(r, 400, "weak-password", "field 'password': %s", why);
        return;
    }
    if (ias_password_hash(users_json_str(body, "password"), hash, sizeof(hash)) != IAS_OK) {
        users_internal_error(r, NULL, "hashing a password");
        return;
    }
    if (load_user(r, w, &p, "users:reset_password", false, &res) != IAS_OK)
        return;
    const char *uid = ias_pg_value(res, 0, 1), *org = ias_pg_value(res, 0, 2);
    const char *v[2] = {uid, hash};
    if (users_q(w, NULL,
                "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1", 2,
                v) != IAS_OK ||
        users_q(w, NULL,
                "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 "
                "AND revoked_at IS NULL",
                1, v) != IAS_OK ||
        users_audit(r, w, p.user_id, org, "password_reset", "user", uid, "success", NULL) !=
            IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "resetting the password");
        return;
    }
    ias_pg_clear(res);
    ias_reply(r, 204, NULL, NULL, 0);
}
