/* The hot path's reads (docs/architecture/internal-contracts.md):
 * GET /internal/keys/{sha256} and GET /internal/models. */
#include "users.h"

#include "ias/crypto.h"
#include "ias/log.h"

#include <string.h>

/* X-Ias-Internal-Token when IAS_INTERNAL_TOKEN is set (constant time). */
static int internal_auth(ias_req *r, const users_ctx *ctx)
{
    size_t n = strlen(ctx->internal_token);
    const char *t;

    if (n == 0)
        return IAS_OK;
    t = ias_req_header(r, "X-Ias-Internal-Token");
    if (t && strlen(t) == n && ias_ct_equal(t, ctx->internal_token, n))
        return IAS_OK;
    users_problem(r, 401, "unauthorized", "a valid X-Ias-Internal-Token is required");
    return IAS_ERR;
}

static bool hex64(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

void users_h_internal_key(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    const char *hash = ias_req_param(r, "sha256");
    PGresult *res = NULL;

    if (internal_auth(r, arg) != IAS_OK)
        return;
    if (!hex64(hash)) {
        users_problem(r, 404, "not-found", "no key has that hash");
        return;
    }
    const char *v[1] = {hash};
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res,
                "SELECT json_build_object('key_id', k.id, 'prefix', k.prefix, 'name', k.name, "
                "'user_id', k.user_id, 'org_id', k.org_id, 'role', r.name, 'status', CASE "
                "WHEN o.deleted_at IS NOT NULL THEN 'org_deleted' "
                "WHEN k.revoked_at IS NOT NULL THEN 'revoked' "
                "WHEN u.deleted_at IS NOT NULL OR u.disabled THEN 'user_disabled' "
                "WHEN k.expires_at IS NOT NULL AND k.expires_at <= now() THEN 'expired' "
                "ELSE 'active' END, 'expires_at', " USERS_TS(
                    "k.expires_at") ", "
                                    "'org_monthly_token_limit', b.monthly_token_limit, "
                                    "'user_monthly_token_limit', u.monthly_token_limit, "
                                    "'org_rps_limit', o.rate_limit_rps, 'key_rps_limit', "
                                    "k.rate_limit_rps, "
                                    "'allowed_models', (SELECT coalesce(json_agg(m.name ORDER BY "
                                    "m.name), '[]') "
                                    "FROM org_allowed_models a JOIN models m ON m.id = a.model_id "
                                    "WHERE a.org_id = k.org_id AND m.enabled))::text "
                                    "FROM api_keys k JOIN users u ON u.id = k.user_id JOIN roles r "
                                    "ON r.id = u.role_id "
                                    "JOIN orgs o ON o.id = k.org_id LEFT JOIN org_budgets b ON "
                                    "b.org_id = k.org_id "
                                    "WHERE k.key_hash = $1",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "key lookup");
        return;
    }
    users_tx_rollback(w);
    if (ias_pg_nrows(res) == 0)
        users_problem(r, 404, "not-found", "no key has that hash");
    else
        users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}

void users_h_internal_models(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    PGresult *res = NULL;

    if (internal_auth(r, arg) != IAS_OK)
        return;
    /* version: the newest change anywhere in the registry; a removal leaves no
     * row behind, but its config.models.changed outbox row carries the time. */
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(
            w, &res,
            "SELECT json_build_object('version', " USERS_TS(
                "greatest((SELECT max(updated_at) FROM models), "
                "(SELECT max(updated_at) FROM model_backends), "
                "(SELECT max(created_at) FROM outbox WHERE routing_key = "
                "'config.models.changed'), 'epoch'::timestamptz)") ", "
                                                                   "'models', (SELECT "
                                                                   "coalesce(json_agg("
                                                                   "json_build_object("
                                                                   "'id', m.id, 'name', m.name, "
                                                                   "'context_length', "
                                                                   "m.context_length, "
                                                                   "'input_rate_per_1k', "
                                                                   "m.input_rate_per_1k::text, "
                                                                   "'output_rate_per_1k', "
                                                                   "m.output_rate_per_1k::text, "
                                                                   "'fallback_model', "
                                                                   "m.fallback_model, 'tags', "
                                                                   "m.tags, "
                                                                   "'backends', (SELECT "
                                                                   "coalesce(json_agg(json_build_"
                                                                   "object('id', b.id, 'url', "
                                                                   "b.url, "
                                                                   "'weight', b.weight, "
                                                                   "'upstream_model', "
                                                                   "b.upstream_model) ORDER BY "
                                                                   "b.created_at, "
                                                                   "b.id), '[]') FROM "
                                                                   "model_backends b WHERE "
                                                                   "b.model_id = m.id AND "
                                                                   "b.enabled)) "
                                                                   "ORDER BY m.name), '[]') FROM "
                                                                   "models m WHERE "
                                                                   "m.enabled))::text",
            0, NULL) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "model registry");
        return;
    }
    users_tx_rollback(w);
    users_reply_raw(r, 200, ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
}
