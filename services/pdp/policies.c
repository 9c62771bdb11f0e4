/* /api/v1/policies: versions of the policy document of a scope, validation
 * with field-named 400s, and dry-run of a draft against sample requests. */
#include "pdp.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* Body keys other than the allowed ones are refused, naming the first. */
static int body_keys(ias_req *r, const cJSON *body, const char *const *keys, size_t n)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, body)
    {
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++)
            ok = strcmp(it->string, keys[i]) == 0;
        if (!ok) {
            ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "%s: unknown attribute",
                                    it->string);
            return IAS_ERR;
        }
    }
    return IAS_OK;
}

/* Common to create and dry-run: principal, scope, RBAC, compiled document. */
static int prepare(ias_req *r, pdp_ctx *ctx, const cJSON *body, ias_principal *p, char *org_id,
                   ias_policy **out)
{
    const cJSON *doc = cJSON_GetObjectItemCaseSensitive(body, "document");
    char err[512];

    if (ias_principal_require(r, ctx->jwt_secret, ctx->jwt_secret_len, p) != IAS_OK)
        return IAS_ERR;
    if (pdp_body_scope(r, body, p, org_id, PDP_ID_LEN) != IAS_OK)
        return IAS_ERR;
    if (pdp_authorize(r, ctx, org_id, true, p) != IAS_OK)
        return IAS_ERR;
    if (doc == NULL) {
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "document: required object");
        return IAS_ERR;
    }
    if (ias_policy_compile(doc, org_id[0] ? IAS_POLICY_ORG : IAS_POLICY_GLOBAL, "draft", 0, out,
                           err, sizeof(err)) != IAS_OK) {
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "document.%s", err);
        return IAS_ERR;
    }
    return IAS_OK;
}

void pdp_handle_policies_create(ias_req *r, void *arg)
{
    static const char *const keys[] = {"scope", "org_id", "document", "comment", "activate"};
    pdp_ctx *ctx = arg;
    cJSON *body = ias_req_json(r);
    const cJSON *comment, *activate;
    ias_principal p;
    char org_id[PDP_ID_LEN];
    ias_policy *pol = NULL;

    if (body == NULL || body_keys(r, body, keys, IAS_ARRAY_LEN(keys)) != IAS_OK)
        return;
    if (prepare(r, ctx, body, &p, org_id, &pol) != IAS_OK)
        return;
    ias_policy_free(pol);
    comment = cJSON_GetObjectItemCaseSensitive(body, "comment");
    activate = cJSON_GetObjectItemCaseSensitive(body, "activate");
    if (comment != NULL && (!cJSON_IsString(comment) || strlen(comment->valuestring) > 1000)) {
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION,
                                "comment: a string of at most 1000 characters");
        return;
    }
    if (activate != NULL && !cJSON_IsBool(activate)) {
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "activate: true or false");
        return;
    }
    pdp_create_version(r, ctx, &pdp_kind_policy, &p, org_id, NULL,
                       cJSON_GetObjectItemCaseSensitive(body, "document"),
                       comment != NULL ? comment->valuestring : "", !cJSON_IsFalse(activate));
}

/* Evaluates the draft in place of its scope's active version (the other scope
 * as it is live) against each sample request. Nothing is stored. */
void pdp_handle_policies_dry_run(ias_req *r, void *arg)
{
    static const char *const keys[] = {"scope", "org_id", "document", "requests"};
    pdp_ctx *ctx = arg;
    cJSON *body = ias_req_json(r), *out, *results;
    const cJSON *reqs, *it;
    ias_principal p;
    char org_id[PDP_ID_LEN];
    ias_policy *draft = NULL;
    pdp_snapshot *snap;
    size_t i = 0;

    if (body == NULL || body_keys(r, body, keys, IAS_ARRAY_LEN(keys)) != IAS_OK)
        return;
    if (prepare(r, ctx, body, &p, org_id, &draft) != IAS_OK)
        return;
    reqs = cJSON_GetObjectItemCaseSensitive(body, "requests");
    if (!cJSON_IsArray(reqs) || cJSON_GetArraySize(reqs) == 0 ||
        cJSON_GetArraySize(reqs) > PDP_MAX_BATCH) {
        ias_policy_free(draft);
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION,
                                "requests: required, an array of 1..%d decision requests",
                                PDP_MAX_BATCH);
        return;
    }
    snap = pdp_snapshot_get(ctx);
    if (snap == NULL) {
        ias_policy_free(draft);
        ias_reply_problem(r, 503, "no policy snapshot loaded yet");
        return;
    }
    out = cJSON_CreateObject();
    results = cJSON_AddArrayToObject(out, "results");
    cJSON_ArrayForEach(it, reqs)
    {
        ias_policy_request req;
        ias_policy_req_scratch scratch;
        char err[256];
        const ias_policy *global = snap->global, *org;
        bool allow;

        if (ias_policy_request_parse(it, &req, &scratch, err, sizeof(err)) != IAS_OK) {
            ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "requests[%zu].%s", i, err);
            goto done;
        }
        if (org_id[0] && (req.org_id == NULL || strcmp(req.org_id, org_id) != 0)) {
            ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION,
                                    "requests[%zu].subject.org_id: must be the draft's org %s", i,
                                    org_id);
            goto done;
        }
        org = pdp_snapshot_org(snap, req.org_id);
        if (org_id[0])
            org = draft;
        else
            global = draft;
        cJSON_AddItemToArray(results, pdp_decide_json(snap, global, org, &req, &allow));
        i++;
    }
    ias_reply_json(r, 200, out);
done:
    cJSON_Delete(out);
    pdp_snapshot_put(snap);
    ias_policy_free(draft);
}

void pdp_handle_policies_list(ias_req *r, void *arg)
{
    pdp_handle_list(r, arg, &pdp_kind_policy);
}

void pdp_handle_policies_get(ias_req *r, void *arg)
{
    pdp_handle_get(r, arg, &pdp_kind_policy);
}

void pdp_handle_policies_activate(ias_req *r, void *arg)
{
    pdp_handle_activate(r, arg, &pdp_kind_policy);
}

void pdp_handle_policies_delete(ias_req *r, void *arg)
{
    pdp_handle_delete(r, arg, &pdp_kind_policy);
}
