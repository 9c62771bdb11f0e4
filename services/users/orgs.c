/* /api/v1/orgs: system admins create, update and (soft) delete orgs; everyone
 * reads the orgs in their scope. */
#include "users.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <string.h>

#define ORG_JSON                                                                                   \
    "json_build_object('id', o.id, 'name', o.name, 'display_name', o.display_name, "               \
    "'description', o.description, 'cost_center', o.cost_center, 'tags', o.tags, "                 \
    "'rate_limit_rps', o.rate_limit_rps, 'created_at', " USERS_TS(                                 \
        "o.created_at") ", "                                                                       \
                        "'updated_at', " USERS_TS("o.updated_at") ")::text"

static const users_field org_fields[] = {
    {"name", UF_STR, true, false, 63},           {"display_name", UF_STR, false, false, 200},
    {"description", UF_STR, false, false, 2000}, {"cost_center", UF_STR, false, true, 100},
    {"tags", UF_STR_ARRAY, false, false, 50},    {"rate_limit_rps", UF_INT, false, true, 0},
};

const char *users_org_param(ias_req *r)
{
    const char *id = ias_req_param(r, "id");
    if (!users_valid_uuid(id)) {
        users_problem(r, 404, "not-found", "not found");
        return NULL;
    }
    return id;
}

void users_h_orgs_create(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    users_params ps = {0};
    PGresult *res = NULL;
    cJSON *body;

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "orgs:write", NULL) != IAS_OK)
        return;
    body = users_body(r, org_fields, IAS_ARRAY_LEN(org_fields));
    if (body == NULL)
        return;
    for (size_t i = 0; i < IAS_ARRAY_LEN(org_fields); i++)
        users_params_json(&ps, cJSON_GetObjectItemCaseSensitive(body, org_fields[i].name));
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res,
                "INSERT INTO orgs AS o (name, display_name, description, cost_center, tags, "
                "rate_limit_rps) VALUES ($1, coalesce($2, ''), coalesce($3, ''), $4, "
                "coalesce(ARRAY(SELECT jsonb_array_elements_text($5::jsonb)), '{}'), $6::int) "
                "RETURNING " ORG_JSON ", o.id",
                ps.n, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "creating the org");
        return;
    }
    users_params_free(&ps);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", users_json_str(body, "name"));
    if (users_audit(r, w, p.user_id, ias_pg_value(res, 0, 1), "org_created", "org",
                    ias_pg_value(res, 0, 1), "success", d) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "creating the org");
        return;
    }
    users_reply_raw(r, 201, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_orgs_list(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    users_page pg;
    PGresult *res = NULL;

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "orgs:read", NULL) != IAS_OK ||
        users_page_parse(r, &pg) != IAS_OK)
        return;
    const char *v[4] = {users_scope(&p), pg.cursor_ts, pg.cursor_id, pg.limit_s};
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "SELECT " ORG_JSON ", " USERS_TS(
                    "o.created_at") ", o.id FROM orgs o "
                                    "WHERE o.deleted_at IS NULL AND ($1 = '*' OR o.id = nullif($1, "
                                    "'*')::uuid) "
                                    "AND (o.created_at, o.id) > ($2::timestamptz, $3::uuid) "
                                    "ORDER BY o.created_at, o.id LIMIT $4::int",
                4, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "listing orgs");
        return;
    }
    users_tx_rollback(w);
    users_reply_page(r, &pg, res);
    ias_pg_clear(res);
}

void users_h_orgs_get(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *id;
    ias_principal p;
    PGresult *res = NULL;

    if ((id = users_org_access(r, arg, "orgs:read", &p)) == NULL)
        return;
    const char *v[1] = {id};
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res, "SELECT " ORG_JSON " FROM orgs o WHERE o.id = $1 AND o.deleted_at IS NULL",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "reading the org");
        return;
    }
    users_tx_rollback(w);
    if (ias_pg_nrows(res) == 0)
        users_problem(r, 404, "not-found", "not found");
    else
        users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

static const users_field org_patch[] = {
    {"display_name", UF_STR, false, false, 200}, {"description", UF_STR, false, false, 2000},
    {"cost_center", UF_STR, false, true, 100},   {"tags", UF_STR_ARRAY, false, false, 50},
    {"rate_limit_rps", UF_INT, false, true, 0},
};

void users_h_orgs_update(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *id;
    ias_principal p;
    users_params ps = {0};
    PGresult *res = NULL;
    cJSON *body;

    if ((id = users_org_access(r, arg, "orgs:write", &p)) == NULL)
        return;
    body = users_body(r, org_patch, IAS_ARRAY_LEN(org_patch));
    if (body == NULL)
        return;
    users_params_add(&ps, id);
    for (size_t i = 0; i < IAS_ARRAY_LEN(org_patch); i++)
        users_params_field(&ps, body, org_patch[i].name);
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res,
                "UPDATE orgs o SET "
                "display_name = CASE WHEN $2 THEN $3 ELSE display_name END, "
                "description = CASE WHEN $4 THEN $5 ELSE description END, "
                "cost_center = CASE WHEN $6 THEN $7 ELSE cost_center END, "
                "tags = CASE WHEN $8 THEN ARRAY(SELECT jsonb_array_elements_text($9::jsonb)) "
                "ELSE tags END, "
                "rate_limit_rps = CASE WHEN $10 THEN $11::int ELSE rate_limit_rps END "
                "WHERE o.id = $1 AND o.deleted_at IS NULL RETURNING " ORG_JSON,
                ps.n, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "updating the org");
        return;
    }
    users_params_free(&ps);
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 404, "not-found", "not found");
        return;
    }
    cJSON *d = cJSON_CreateObject(), *f = cJSON_AddArrayToObject(d, "fields"), *it;
    cJSON_ArrayForEach(it, body)
    {
        cJSON_AddItemToArray(f, cJSON_CreateString(it->string));
    }
    if (users_audit(r, w, p.user_id, id, "org_updated", "org", id, "success", d) != IAS_OK ||
        (cJSON_GetObjectItemCaseSensitive(body, "rate_limit_rps") &&
         users_config_changed(w, "keys", id, NULL) != IAS_OK) ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "updating the org");
        return;
    }
    users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_orgs_delete(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *id;
    ias_principal p;
    PGresult *res = NULL, *keys = NULL;

    if ((id = users_org_access(r, arg, "orgs:write", &p)) == NULL)
        return;
    const char *v[1] = {id};
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res,
                "UPDATE orgs SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL "
                "RETURNING name",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "deleting the org");
        return;
    }
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 404, "not-found", "not found");
        return;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
    /* The org's sessions end with it; its keys stop at once (status org_deleted). */
    if (users_audit(r, w, p.user_id, id, "org_deleted", "org", id, "success", d) != IAS_OK ||
        users_q(w, NULL,
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE org_id = $1 AND revoked_at IS NULL",
                1, v) != IAS_OK ||
        users_q(w, &keys, "SELECT key_hash FROM api_keys WHERE org_id = $1", 1, v) != IAS_OK ||
        users_config_changed(w, "keys", id, NULL) != IAS_OK || users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(keys);
        users_db_error(r, w, "deleting the org");
        return;
    }
    users_redis_drop_keys(w, keys, 0);
    ias_pg_clear(keys);
    ias_reply(r, 204, NULL, NULL, 0);
}
