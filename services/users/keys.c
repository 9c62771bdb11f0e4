/* /api/v1/keys: create (the key is returned once), list, read, revoke. Only
 * the prefix and the SHA-256 of the whole key are stored. */
#include "users.h"

#include "ias/apikey.h"
#include "ias/log.h"
#include "ias/query.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define KEY_JSON                                                                                   \
    "json_build_object('id', k.id, 'org_id', k.org_id, 'user_id', k.user_id, 'name', k.name, "     \
    "'prefix', k.prefix, 'status', CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked' "             \
    "WHEN k.expires_at IS NOT NULL AND k.expires_at <= now() THEN 'expired' ELSE 'active' END, "   \
    "'created_at', " USERS_TS("k.created_at") ", 'expires_at', " USERS_TS(                         \
        "k.expires_at") ", 'revoked_at', " USERS_TS("k.revoked_at") ", "                           \
                                                                    "'last_used_at', " USERS_TS(   \
                                                                        "k.last_used_at") ")"

static const users_field create_fields[] = {
    {"name", UF_STR, false, false, 200},
    {"expires_at", UF_TIME, false, true, 0},
};

void users_h_keys_create(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    char key[IAS_APIKEY_BUFSZ], prefix[IAS_APIKEY_PREFIX_BUFSZ], hash[IAS_APIKEY_HASH_BUFSZ];
    ias_principal p;
    PGresult *res = NULL;
    cJSON *body;

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "keys:write", NULL) != IAS_OK)
        return;
    body = users_body(r, create_fields, IAS_ARRAY_LEN(create_fields));
    if (body == NULL)
        return;
    if (p.org_id[0] == '\0') {
        users_problem(r, 403, "forbidden", "accounts without an org cannot own API keys");
        return;
    }
    if (ias_apikey_generate(key, prefix) != IAS_OK) {
        users_internal_error(r, NULL, "generating a key");
        return;
    }
    ias_apikey_hash(key, hash);
    const char *exp = users_json_str(body, "expires_at"), *name = users_json_str(body, "name");
    const char *v[6] = {p.org_id, p.user_id, name ? name : "", prefix, hash, exp};
    if (users_tx_begin(w, p.org_id) != IAS_OK ||
        users_q(w, &res,
                "INSERT INTO api_keys AS k (org_id, user_id, name, prefix, key_hash, expires_at) "
                "SELECT $1, u.id, $3, $4, $5, $6::timestamptz FROM users u "
                "WHERE u.id = $2 AND u.org_id = $1 AND u.deleted_at IS NULL AND NOT u.disabled "
                "AND ($6::timestamptz IS NULL OR $6::timestamptz > now()) "
                "RETURNING " KEY_JSON "::jsonb, k.id",
                6, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "creating the key");
        return;
    }
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        if (exp)
            users_problem(r, 400, "validation", "field 'expires_at' must be in the future");
        else
            users_problem(r, 403, "forbidden", "this account cannot create keys");
        return;
    }
    const char *id = ias_pg_value(res, 0, 1);
    cJSON *d = cJSON_CreateObject(), *ids = cJSON_CreateArray();
    cJSON_AddStringToObject(d, "prefix", prefix);
    cJSON_AddStringToObject(d, "name", name ? name : "");
    if (exp)
        cJSON_AddStringToObject(d, "expires_at", exp);
    cJSON_AddItemToArray(ids, cJSON_CreateString(id));
    if (users_audit(r, w, p.user_id, p.org_id, "api_key_created", "api_key", id, "success", d) !=
            IAS_OK ||
        users_config_changed(w, "keys", p.org_id, ids) != IAS_OK || users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "creating the key");
        return;
    }
    cJSON *o = cJSON_Parse(ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
    if (o == NULL)
        ias_die("out of memory");
    cJSON_AddStringToObject(o, "key", key);
    users_reply_json(r, 201, o);
}

void users_h_keys_list(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *q = ias_req_query(r);
    char org[64] = "", user[64] = "";
    ias_principal p;
    users_page pg;
    PGresult *res = NULL;
    bool any;

    if (users_authenticate(r, &p) != IAS_OK)
        return;
    /* keys:read lists own keys; keys:read_any the whole scope. */
    any = users_has_perm(r, &p, "keys:read_any");
    if ((!any && users_authorize(arg, r, &p, "keys:read", NULL) != IAS_OK) ||
        users_page_parse(r, &pg) != IAS_OK)
        return;
    if (ias_query_get(q, "org_id", org, sizeof(org)) < 0 ||
        ias_query_get(q, "user_id", user, sizeof(user)) < 0 || (org[0] && !users_valid_uuid(org)) ||
        (user[0] && !users_valid_uuid(user))) {
        users_problem(r, 400, "validation", "query 'org_id' and 'user_id' must be UUIDs");
        return;
    }
    if (!any)
        (void)ias_strlcpy(user, p.user_id, sizeof(user));
    const char *v[6] = {org[0] ? org : NULL, user[0] ? user : NULL, pg.cursor_ts, pg.cursor_id,
                        pg.limit_s,          users_scope(&p)};
    /* An org's page comes off api_keys_org_created_idx (own keys: _org_user_idx)
     * in order, stopping at the LIMIT; users_tx_begin_page says why. */
    if (users_tx_begin_page(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "SELECT " KEY_JSON "::text, " USERS_TS(
                    "k.created_at") ", k.id FROM api_keys k "
                                    "WHERE ($6 = '*' OR k.org_id = nullif($6, '*')::uuid) "
                                    "AND ($1::uuid IS NULL OR k.org_id = $1) AND ($2::uuid IS NULL "
                                    "OR k.user_id = $2) "
                                    "AND (k.created_at, k.id) > ($3::timestamptz, $4::uuid) "
                                    "ORDER BY k.created_at, k.id LIMIT $5::int",
                6, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "listing keys");
        return;
    }
    users_tx_rollback(w);
    users_reply_page(r, &pg, res);
    ias_pg_clear(res);
}

/* Loads a key in the caller's scope with FOR UPDATE; 404 when invisible, and
 * 403 when it is someone else's and the caller lacks any_perm. */
static int load_key(ias_req *r, users_worker *w, const ias_principal *p, const char *own_perm,
                    const char *any_perm, PGresult **res)
{
    if (users_lock_row(r, w, p,
                       "SELECT " KEY_JSON "::text, k.id, k.org_id, k.user_id, k.key_hash, "
                       "k.revoked_at IS NOT NULL FROM api_keys k WHERE k.id = $1 FOR UPDATE",
                       "reading the key", res) != IAS_OK)
        return IAS_ERR;
    bool own = strcmp(ias_pg_value(*res, 0, 3), p->user_id) == 0;
    if (users_authorize(ias_req_ctx(r), r, p,
                        own && !users_has_perm(r, p, any_perm) ? own_perm : any_perm,
                        ias_pg_value(*res, 0, 2)) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(*res);
        *res = NULL;
        return IAS_ERR;
    }
    return IAS_OK;
}

void users_h_keys_get(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    PGresult *res;

    IAS_UNUSED(arg);
    if (users_authenticate(r, &p) != IAS_OK ||
        load_key(r, w, &p, "keys:read", "keys:read_any", &res) != IAS_OK)
        return;
    users_tx_rollback(w);
    users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_keys_revoke(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    PGresult *res;

    IAS_UNUSED(arg);
    if (users_authenticate(r, &p) != IAS_OK ||
        load_key(r, w, &p, "keys:write", "keys:revoke_any", &res) != IAS_OK)
        return;
    const char *id = ias_pg_value(res, 0, 1), *org = ias_pg_value(res, 0, 2);
    if (ias_pg_value(res, 0, 5)[0] == 't') { /* already revoked: nothing changes */
        users_tx_rollback(w);
        ias_pg_clear(res);
        ias_reply(r, 204, NULL, NULL, 0);
        return;
    }
    const char *v[2] = {id, p.user_id};
    cJSON *ids = cJSON_CreateArray();
    cJSON_AddItemToArray(ids, cJSON_CreateString(id));
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "owner", ias_pg_value(res, 0, 3));
    if (users_audit(r, w, p.user_id, org, "api_key_revoked", "api_key", id, "success", d) !=
            IAS_OK ||
        users_config_changed(w, "keys", org, ids) != IAS_OK ||
        users_q(w, NULL, "UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE id = $1", 2,
                v) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "revoking the key");
        return;
    }
    users_redis_drop_keys(w, res, 4);
    ias_pg_clear(res);
    ias_reply(r, 204, NULL, NULL, 0);
}
