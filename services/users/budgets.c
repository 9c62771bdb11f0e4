/* /api/v1/orgs/{id}/budget: the org's monthly token budget and alert
 * thresholds (per-user limits are PATCH /api/v1/users/{id}). Writes publish
 * config.budgets.changed. */
#include "users.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <string.h>

#define BUDGET_JSON                                                                                \
    "json_build_object('org_id', o.id, 'monthly_token_limit', b.monthly_token_limit, "             \
    "'alert_thresholds', coalesce(b.alert_thresholds, '{80,90}'), "                                \
    "'updated_at', " USERS_TS("b.updated_at") ")::text"

void users_h_budget_get(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *org;
    ias_principal p;
    PGresult *res = NULL;

    if ((org = users_org_access(r, arg, "budgets:read", &p)) == NULL)
        return;
    const char *v[1] = {org};
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res,
                "SELECT " BUDGET_JSON " FROM orgs o LEFT JOIN org_budgets b ON b.org_id = o.id "
                "WHERE o.id = $1 AND o.deleted_at IS NULL",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "reading the budget");
        return;
    }
    users_tx_rollback(w);
    if (ias_pg_nrows(res) == 0)
        users_problem(r, 404, "not-found", "not found");
    else
        users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

static const users_field put_fields[] = {
    {"monthly_token_limit", UF_INT, true, false, 0},
    {"alert_thresholds", UF_INT_ARRAY, false, false, 10},
};

static int publish(ias_req *r, users_worker *w, const ias_principal *p, const char *org,
                   const char *action, cJSON *details)
{
    cJSON *ids = cJSON_CreateArray();
    cJSON_AddItemToArray(ids, cJSON_CreateString(org));
    if (users_audit(r, w, p->user_id, org, action, "budget", org, "success", details) != IAS_OK) {
        cJSON_Delete(ids);
        return IAS_ERR;
    }
    return users_config_changed(w, "budgets", org, ids);
}

void users_h_budget_put(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *org;
    ias_principal p;
    users_params ps = {0};
    PGresult *res = NULL;
    cJSON *body;

    if ((org = users_org_access(r, arg, "budgets:write", &p)) == NULL)
        return;
    body = users_body(r, put_fields, IAS_ARRAY_LEN(put_fields));
    if (body == NULL)
        return;
    users_params_add(&ps, org);
    users_params_json(&ps, cJSON_GetObjectItemCaseSensitive(body, "monthly_token_limit"));
    users_params_json(&ps, cJSON_GetObjectItemCaseSensitive(body, "alert_thresholds"));
    users_params_add(&ps, p.user_id);
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(
            w, &res,
            "WITH b AS (INSERT INTO org_budgets (org_id, monthly_token_limit, "
            "alert_thresholds, updated_by) SELECT id, $2::bigint, CASE WHEN $3::jsonb IS NULL "
            "THEN '{80,90}'::int[] ELSE ARRAY(SELECT jsonb_array_elements_text($3::jsonb)::int) "
            "END, $4 FROM orgs "
            "WHERE id = $1 AND deleted_at IS NULL "
            "ON CONFLICT (org_id) DO UPDATE SET monthly_token_limit = EXCLUDED."
            "monthly_token_limit, alert_thresholds = EXCLUDED.alert_thresholds, "
            "updated_by = EXCLUDED.updated_by RETURNING *) "
            "SELECT " BUDGET_JSON " FROM b JOIN orgs o ON o.id = b.org_id",
            ps.n, ps.v) != IAS_OK) {
        users_tx_rollback(w);
        users_params_free(&ps);
        users_db_error(r, w, "writing the budget");
        return;
    }
    users_params_free(&ps);
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 404, "not-found", "not found");
        return;
    }
    if (publish(r, w, &p, org, "budget_updated", cJSON_Duplicate(body, true)) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "writing the budget");
        return;
    }
    users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_budget_delete(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *org;
    ias_principal p;
    PGresult *res = NULL;

    if ((org = users_org_access(r, arg, "budgets:write", &p)) == NULL)
        return;
    const char *v[1] = {org};
    if (users_tx_begin(w, users_scope(&p)) != IAS_OK ||
        users_q(w, &res, "DELETE FROM org_budgets WHERE org_id = $1 RETURNING org_id", 1, v) !=
            IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "deleting the budget");
        return;
    }
    if (ias_pg_nrows(res) == 0) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 404, "not-found", "not found");
        return;
    }
    ias_pg_clear(res);
    if (publish(r, w, &p, org, "budget_deleted", NULL) != IAS_OK || users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "deleting the budget");
        return;
    }
    ias_reply(r, 204, NULL, NULL, 0);
}
