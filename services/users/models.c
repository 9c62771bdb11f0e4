/* Model registry: system admins add, update, disable and remove models with
 * their backends; org admins choose the models their org may use. Writes
 * publish config.models.changed. */
#include "users.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define MODEL_JSON                                                                                 \
    "json_build_object('id', m.id, 'name', m.name, 'context_length', m.context_length, "           \
    "'input_rate_per_1k', m.input_rate_per_1k::text, "                                             \
    "'output_rate_per_1k', m.output_rate_per_1k::text, 'enabled', m.enabled, "                     \
    "'fallback_model', m.fallback_model, 'tags', m.tags, "                                         \
    "'created_at', " USERS_TS("m.created_at") ", 'updated_at', " USERS_TS(                         \
        "m.updated_at") ", 'backends', (SELECT coalesce(json_agg(json_build_object("               \
                        "'id', b.id, 'url', b.url, 'weight', b.weight, 'enabled', b.enabled, "     \
                        "'upstream_model', b.upstream_model) ORDER BY b.created_at, b.id), "       \
                        "'[]'::json) FROM model_backends b WHERE b.model_id = m.id))::text"

static const users_field model_fields[] = {
    {"name", UF_STR, true, false, 128},
    {"context_length", UF_INT, true, false, 0},
    {"input_rate_per_1k", UF_DECIMAL, false, false, 0},
    {"output_rate_per_1k", UF_DECIMAL, false, false, 0},
    {"enabled", UF_BOOL, false, false, 0},
    {"fallback_model", UF_STR, false, true, 128},
    {"tags", UF_STR_ARRAY, false, false, 50},
    {"backends", UF_OBJ_ARRAY, false, false, 64},
};

static const users_field backend_fields[] = {
    {"url", UF_STR, true, false, 2048},
    {"weight", UF_INT, false, false, 0},
    {"enabled", UF_BOOL, false, false, 0},
    {"upstream_model", UF_STR, false, true, 256},
};

static int check_backends(ias_req *r, const cJSON *body)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, "backends"), *b;
    int i = 0;

    cJSON_ArrayForEach(b, arr)
    {
        char where[32];
        snprintf(where, sizeof(where), "backends[%d].", i++);
        if (users_check_obj(r, b, backend_fields, IAS_ARRAY_LEN(backend_fields), where) != IAS_OK)
            return IAS_ERR;
    }
    return IAS_OK;
}

static int replace_backends(users_worker *w, const char *model_id, const cJSON *body)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, "backends");
    users_params ps = {0};
    int rc;

    if (arr == NULL)
        return IAS_OK;
    users_params_add(&ps, model_id);
    users_params_json(&ps, arr);
    rc = users_q(w, NULL, "DELETE FROM model_backends WHERE model_id = $1", 1, ps.v);
    if (rc == IAS_OK)
        rc = users_q(w, NULL,
                     "INSERT INTO model_backends (model_id, url, weight, enabled, upstream_model) "
                     "SELECT $1, x.url, coalesce(x.weight, 1), coalesce(x.enabled, true), "
                     "x.upstream_model FROM jsonb_to_recordset($2::jsonb) AS x(url text, "
                     "weight int, enabled boolean, upstream_model text)",
                     2, ps.v);
    users_params_free(&ps);
    return rc;
}

static int models_event(ias_req *r, users_worker *w, const ias_principal *p, const char *action,
                        const char *id, const char *name, cJSON *details)
{
    cJSON *ids = cJSON_CreateArray();
    cJSON_AddItemToArray(ids, cJSON_CreateString(name));
    if (users_audit(r, w, p->user_id, NULL, action, "model", id, "success", details) != IAS_OK) {
        cJSON_Delete(ids);
        return IAS_ERR;
    }
    return users_config_changed(w, "models", NULL, ids);
}

static void reply_model(ias_req *r, users_worker *w, const char *id, int status)
{
    PGresult *res = NULL;
    const char *v[1] = {id};

    if (users_q(w, &res, "SELECT " MODEL_JSON " FROM models m WHERE m.id = $1", 1, v) != IAS_OK ||
        ias_pg_nrows(res) != 1) {
        ias_pg_clear(res);
        users_tx_rollback(w);
        users_db_error(r, w, "reading the model");
        return;
    }
    if (users_tx_commit(w) != IAS_OK) {
        ias_pg_clear(res);
        users_db_error(r, w, "writing the model");
        return;
    }
    users_reply_raw(r, status, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_models_create(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    users_params ps = {0};
    PGresult *res = NULL;
    cJSON *body;
    char id[40];

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "models:write", NULL) != IAS_OK)
        return;
    body = users_body(r, model_fields, IAS_ARRAY_LEN(model_fields));
    if (body == NULL || check_backends(r, body) != IAS_OK)
        return;
    for (size_t i = 0; i < IAS_ARRAY_LEN(model_fields) - 1; i++)
        users_params_json(&ps, cJSON_GetObjectItemCaseSensitive(body, model_fields[i].name));
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res,
                "INSERT INTO models (name, context_length, input_rate_per_1k, output_rate_per_1k, "
                "enabled, fallback_model, tags) VALUES ($1, $2::int, coalesce($3::numeric, 0), "
                "coalesce($4::numeric, 0), coalesce($5::boolean, true), $6, "
                "coalesce(ARRAY(SELECT jsonb_array_elements_text($7::jsonb)), '{}')) RETURNING id",
                ps.n, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "creating the model");
        return;
    }
    users_params_free(&ps);
    (void)ias_strlcpy(id, ias_pg_value(res, 0, 0), sizeof(id));
    ias_pg_clear(res);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", users_json_str(body, "name"));
    if (replace_backends(w, id, body) != IAS_OK ||
        models_event(r, w, &p, "model_created", id, users_json_str(body, "name"), d) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "creating the model");
        return;
    }
    reply_model(r, w, id, 201);
}

/* "id" may be the model's UUID or its name. */
static const char *model_param(ias_req *r)
{
    return ias_req_param(r, "id");
}

void users_h_models_list(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    users_page pg;
    PGresult *res = NULL;

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "models:read", NULL) != IAS_OK ||
        users_page_parse(r, &pg) != IAS_OK)
        return;
    /* System admins see the registry; everyone else the enabled models their org may use. */
    const char *v[4] = {users_scope(&p), pg.cursor_ts, pg.cursor_id, pg.limit_s};
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(
            w, &res,
            "SELECT " MODEL_JSON ", " USERS_TS(
                "m.created_at") ", m.id FROM models m "
                                "WHERE ($1 = '*' OR (m.enabled AND EXISTS (SELECT 1 FROM "
                                "org_allowed_models a "
                                "WHERE a.model_id = m.id AND a.org_id = nullif($1, '*')::uuid))) "
                                "AND (m.created_at, m.id) > ($2::timestamptz, $3::uuid) "
                                "ORDER BY m.created_at, m.id LIMIT $4::int",
            4, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "listing models");
        return;
    }
    users_tx_rollback(w);
    users_reply_page(r, &pg, res);
    ias_pg_clear(res);
}

void users_h_models_get(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    PGresult *res = NULL;

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "models:read", NULL) != IAS_OK)
        return;
    const char *v[2] = {model_param(r), users_scope(&p)};
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "SELECT " MODEL_JSON " FROM models m WHERE (m.id::text = $1 OR m.name = $1) "
                "AND ($2 = '*' OR (m.enabled AND EXISTS (SELECT 1 FROM org_allowed_models a "
                "WHERE a.model_id = m.id AND a.org_id = nullif($2, '*')::uuid)))",
                2, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "reading the model");
        return;
    }
    users_tx_rollback(w);
    if (ias_pg_nrows(res) == 0)
        users_problem(r, 404, "not-found", "not found");
    else
        users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_models_update(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    users_params ps = {0};
    PGresult *res = NULL;
    cJSON *body;
    char id[40], name[160];

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "models:write", NULL) != IAS_OK)
        return;
    /* Same fields as create, none required. */
    users_field f[IAS_ARRAY_LEN(model_fields)];
    memcpy(f, model_fields, sizeof(f));
    for (size_t i = 0; i < IAS_ARRAY_LEN(f); i++)
        f[i].required = false;
    body = users_body(r, f, IAS_ARRAY_LEN(f));
    if (body == NULL || check_backends(r, body) != IAS_OK)
        return;
    users_params_add(&ps, model_param(r));
    for (size_t i = 0; i < IAS_ARRAY_LEN(model_fields) - 1; i++)
        users_params_field(&ps, body, model_fields[i].name);
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res,
                "UPDATE models SET name = CASE WHEN $2 THEN $3 ELSE name END, "
                "context_length = CASE WHEN $4 THEN $5::int ELSE context_length END, "
                "input_rate_per_1k = CASE WHEN $6 THEN $7::numeric ELSE input_rate_per_1k END, "
                "output_rate_per_1k = CASE WHEN $8 THEN $9::numeric ELSE output_rate_per_1k END, "
                "enabled = CASE WHEN $10 THEN $11::boolean ELSE enabled END, "
                "fallback_model = CASE WHEN $12 THEN $13 ELSE fallback_model END, "
                "tags = CASE WHEN $14 THEN ARRAY(SELECT jsonb_array_elements_text($15::jsonb)) "
                "ELSE tags END, updated_at = now() "
                "WHERE id::text = $1 OR name = $1 RETURNING id, name",
                ps.n, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "updating the model");
        return;
    }
    users_params_free(&ps);
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 404, "not-found", "not found");
        return;
    }
    (void)ias_strlcpy(id, ias_pg_value(res, 0, 0), sizeof(id));
    (void)ias_strlcpy(name, ias_pg_value(res, 0, 1), sizeof(name));
    ias_pg_clear(res);
    cJSON *d = cJSON_CreateObject(), *fl = cJSON_AddArrayToObject(d, "fields"), *it;
    cJSON_ArrayForEach(it, body)
    {
        cJSON_AddItemToArray(fl, cJSON_CreateString(it->string));
    }
    if (replace_backends(w, id, body) != IAS_OK ||
        models_event(r, w, &p, "model_updated", id, name, d) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "updating the model");
        return;
    }
    reply_model(r, w, id, 200);
}

void users_h_models_delete(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    ias_principal p;
    PGresult *res = NULL;

    if (users_authenticate(r, &p) != IAS_OK ||
        users_authorize(arg, r, &p, "models:write", NULL) != IAS_OK)
        return;
    const char *v[1] = {model_param(r)};
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res, "DELETE FROM models WHERE id::text = $1 OR name = $1 RETURNING id, name",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "removing the model");
        return;
    }
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 404, "not-found", "not found");
        return;
    }
    if (models_event(r, w, &p, "model_removed", ias_pg_value(res, 0, 0), ias_pg_value(res, 0, 1),
                     NULL) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "removing the model");
        return;
    }
    ias_pg_clear(res);
    ias_reply(r, 204, NULL, NULL, 0);
}

void users_h_allowed_get(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *org;
    ias_principal p;
    users_page pg;
    PGresult *res = NULL;

    if ((org = users_org_access(r, arg, "models:read", &p)) == NULL ||
        users_page_parse(r, &pg) != IAS_OK)
        return;
    const char *v[4] = {org, pg.cursor_ts, pg.cursor_id, pg.limit_s};
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "SELECT json_build_object('model_id', m.id, 'name', m.name, 'enabled', m.enabled, "
                "'allowed_at', " USERS_TS("a.created_at") ")::text, " USERS_TS(
                    "a.created_at") ", m.id FROM org_allowed_models a JOIN models m ON m.id = "
                                    "a.model_id "
                                    "WHERE a.org_id = $1 AND (a.created_at, m.id) > "
                                    "($2::timestamptz, $3::uuid) "
                                    "ORDER BY a.created_at, m.id LIMIT $4::int",
                4, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "listing allowed models");
        return;
    }
    users_tx_rollback(w);
    users_reply_page(r, &pg, res);
    ias_pg_clear(res);
}

static const users_field allowed_fields[] = {
    {"models", UF_STR_ARRAY, true, false, 1000},
};

void users_h_allowed_put(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *org;
    ias_principal p;
    users_params ps = {0};
    PGresult *res = NULL;
    cJSON *body;

    if ((org = users_org_access(r, arg, "models:allow", &p)) == NULL)
        return;
    body = users_body(r, allowed_fields, IAS_ARRAY_LEN(allowed_fields));
    if (body == NULL)
        return;
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(body, "models");
    users_params_add(&ps, org);
    users_params_json(&ps, names);
    users_params_add(&ps, p.user_id);
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "SELECT n FROM jsonb_array_elements_text($2::jsonb) AS n "
                "WHERE NOT EXISTS (SELECT 1 FROM models WHERE name = n) "
                "UNION ALL SELECT '' WHERE NOT EXISTS "
                "(SELECT 1 FROM orgs WHERE id = $1 AND deleted_at IS NULL) AND $3 <> ''",
                3, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "setting allowed models");
        return;
    }
    if (ias_pg_nrows(res) > 0) {
        bool no_org = ias_pg_value(res, 0, 0)[0] == '\0';
        users_tx_rollback(w);
        users_params_free(&ps);
        if (no_org)
            users_problem(r, 404, "not-found", "not found");
        else
            users_problem(r, 400, "validation", "field 'models': unknown model '%.128s'",
                          ias_pg_value(res, 0, 0));
        ias_pg_clear(res);
        return;
    }
    ias_pg_clear(res);
    if (users_q(w, NULL, "DELETE FROM org_allowed_models WHERE org_id = $1", 1, ps.v) != IAS_OK ||
        users_q(w, NULL,
                "INSERT INTO org_allowed_models (org_id, model_id, created_by) "
                "SELECT $1, id, $3 FROM models WHERE name IN "
                "(SELECT jsonb_array_elements_text($2::jsonb))",
                3, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "setting allowed models");
        return;
    }
    users_params_free(&ps);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "models", cJSON_Duplicate(names, true));
    if (users_audit(r, w, p.user_id, org, "allowed_models_updated", "org", org, "success", d) !=
            IAS_OK ||
        users_config_changed(w, "models", org, cJSON_Duplicate(names, true)) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "setting allowed models");
        return;
    }
    users_reply_raw(r, 200, "{\"ok\":true}");
}
