/* POST /internal/decide (single and batch) and GET /internal/guardrails/{id}:
 * served from the snapshot, never from the database. */
#include "pdp.h"

#include "ias/audit_event.h"
#include "ias/crypto.h"
#include "ias/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

bool pdp_internal_auth(ias_req *r, pdp_ctx *ctx)
{
    const char *got;
    size_t want_len = strlen(ctx->internal_token);
    if (want_len == 0)
        return true;
    got = ias_req_header(r, "X-Ias-Internal-Token");
    if (got != NULL && strlen(got) == want_len && ias_ct_equal(got, ctx->internal_token, want_len))
        return true;
    ias_reply_problem_typed(r, 401, "https://ias.dev/problems/unauthorized",
                            "missing or wrong X-Ias-Internal-Token");
    return false;
}

static void add_reason(cJSON *arr, const char *rule_id, const char *policy_id, bool deny,
                       const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "rule_id", rule_id);
    if (policy_id != NULL)
        cJSON_AddStringToObject(o, "policy_id", policy_id);
    else
        cJSON_AddNullToObject(o, "policy_id");
    cJSON_AddStringToObject(o, "effect", deny ? "deny" : "allow");
    cJSON_AddStringToObject(o, "message", message != NULL ? message : "");
    cJSON_AddItemToArray(arr, o);
}

cJSON *pdp_decide_json(const pdp_snapshot *snap, const ias_policy *global, const ias_policy *org,
                       const ias_policy_request *req, bool *allow)
{
    ias_policy_decision d;
    cJSON *o = cJSON_CreateObject(), *reasons, *obl, *ids;
    const char *ids_v[IAS_POLICY_MAX_OBLIGATIONS];
    size_t nids = 0;
    char version[64], msg[160];
    const char *missing = NULL;

    ias_policy_evaluate(global, org, req, &d);
    /* Resolve profile names to the active version ids: org rules see their
     * org's profiles first, global rules only global ones (an org cannot
     * weaken a global obligation by shadowing its name). Fail closed. */
    for (size_t i = 0; d.allow && i < d.nobligations; i++) {
        const pdp_profile *p = NULL;
        if (d.obligation_scope[i] == IAS_POLICY_ORG && req->org_id != NULL)
            p = pdp_snapshot_profile(snap, req->org_id, d.obligations[i]);
        if (p == NULL)
            p = pdp_snapshot_profile(snap, "", d.obligations[i]);
        if (p == NULL) {
            missing = d.obligations[i];
            break;
        }
        bool dup = false;
        for (size_t k = 0; k < nids && !dup; k++)
            dup = strcmp(ids_v[k], p->id) == 0;
        if (!dup)
            ids_v[nids++] = p->id;
    }
    *allow = d.allow && missing == NULL;
    cJSON_AddStringToObject(o, "decision", *allow ? "allow" : "deny");
    reasons = cJSON_AddArrayToObject(o, "reasons");
    if (missing != NULL) {
        snprintf(msg, sizeof(msg), "guardrail profile \"%s\" required by the policy is not active",
                 missing);
        add_reason(reasons, "builtin:guardrails", NULL, true, msg);
    } else {
        for (size_t i = 0; i < d.nreasons; i++)
            add_reason(reasons, d.reasons[i].rule_id, d.reasons[i].policy_id,
                       d.reasons[i].effect == IAS_EFFECT_DENY, d.reasons[i].message);
    }
    snprintf(version, sizeof(version), "g%d.o%d", global ? ias_policy_version(global) : 0,
             org ? ias_policy_version(org) : 0);
    cJSON_AddStringToObject(o, "policy_version", version);
    obl = cJSON_AddObjectToObject(o, "obligations");
    ids = cJSON_AddArrayToObject(obl, "guardrails");
    for (size_t i = 0; *allow && i < nids; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(ids_v[i]));
    cJSON_AddNumberToObject(o, "ttl_ms", PDP_TTL_MS);
    return o;
}

/* A deny is a security fact: it goes to the audit ledger as policy_denied.
 * Each evaluated deny is one entry; callers cache decisions for ttl_ms, so a
 * client retrying a denied model is recorded about once per ttl, not per call. */
static void audit_denial(pdp_ctx *ctx, ias_req *r, const ias_policy_request *req,
                         const cJSON *decision)
{
    char eid[IAS_UUID_STR_LEN + 1];
    cJSON *details = cJSON_CreateObject(), *ev;
    const cJSON *reasons = cJSON_GetObjectItemCaseSensitive(decision, "reasons");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(decision, "policy_version");
    bool user = req->user_id != NULL && ias_uuid_valid(req->user_id);

    if (ctx->pub == NULL)
        return;
    cJSON_AddStringToObject(details, "policy_action", req->action);
    if (cJSON_IsString(version))
        cJSON_AddStringToObject(details, "policy_version", version->valuestring);
    if (req->role != NULL)
        cJSON_AddStringToObject(details, "role", req->role);
    if (req->source_ip != NULL)
        cJSON_AddStringToObject(details, "source_ip", req->source_ip);
    if (reasons != NULL)
        cJSON_AddItemToObject(details, "reasons", cJSON_Duplicate(reasons, true));
    ev = ias_audit_event_new(
        &(ias_audit_fields){
            .service = "pdp",
            .actor_type = user ? "user" : "anonymous",
            .actor_id = user ? req->user_id : NULL,
            .org_id = req->org_id != NULL && ias_uuid_valid(req->org_id) ? req->org_id : NULL,
            .action = "policy_denied",
            .resource_type = req->model != NULL ? "model" : "operation",
            .resource_id = req->model != NULL ? req->model : req->action,
            .request_id = ias_req_id(r),
            .outcome = "denied"},
        details, eid);
    pdp_publish_audit(ctx, ias_req_log(r), ev, eid, "policy_denied");
    cJSON_Delete(ev);
}

static cJSON *decide_one(pdp_ctx *ctx, ias_req *r, const pdp_snapshot *snap, const cJSON *item,
                         const char *prefix, char *err, size_t errlen)
{
    ias_policy_request req;
    ias_policy_req_scratch scratch;
    char why[256];
    bool allow;
    cJSON *out;

    if (ias_policy_request_parse(item, &req, &scratch, why, sizeof(why)) != IAS_OK) {
        snprintf(err, errlen, "%s%s", prefix, why);
        return NULL;
    }
    out = pdp_decide_json(snap, snap->global, pdp_snapshot_org(snap, req.org_id), &req, &allow);
    ias_counter_inc(allow ? ctx->decisions_allow : ctx->decisions_deny);
    if (!allow)
        audit_denial(ctx, r, &req, out);
    return out;
}

void pdp_handle_decide(ias_req *r, void *arg)
{
    pdp_ctx *ctx = arg;
    uint64_t t0 = ias_now_us();
    cJSON *body, *reqs, *out = NULL;
    pdp_snapshot *snap;
    char err[320];

    if (!pdp_internal_auth(r, ctx))
        return;
    body = ias_req_json(r);
    if (body == NULL)
        return;
    snap = pdp_snapshot_get(ctx);
    if (snap == NULL) {
        ias_reply_problem(r, 503, "no policy snapshot loaded yet");
        return;
    }
    reqs = cJSON_GetObjectItemCaseSensitive(body, "requests");
    if (reqs != NULL) {
        cJSON *results, *it;
        size_t i = 0;
        if (!cJSON_IsArray(reqs) || cJSON_GetArraySize(reqs) > PDP_MAX_BATCH) {
            ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION,
                                    "requests: must be an array of at most %d requests",
                                    PDP_MAX_BATCH);
            goto done;
        }
        /* Validate every item first: a refused batch decides (and audits) nothing. */
        cJSON_ArrayForEach(it, reqs)
        {
            ias_policy_request pr;
            ias_policy_req_scratch scratch;
            char why[256];
            if (ias_policy_request_parse(it, &pr, &scratch, why, sizeof(why)) != IAS_OK) {
                ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "requests[%zu].%s", i, why);
                goto done;
            }
            i++;
        }
        i = 0;
        out = cJSON_CreateObject();
        results = cJSON_AddArrayToObject(out, "results");
        cJSON_ArrayForEach(it, reqs)
        {
            char prefix[32];
            cJSON *one;
            snprintf(prefix, sizeof(prefix), "requests[%zu].", i++);
            one = decide_one(ctx, r, snap, it, prefix, err, sizeof(err));
            if (one == NULL) {
                ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "%s", err);
                goto done;
            }
            cJSON_AddItemToArray(results, one);
        }
    } else {
        out = decide_one(ctx, r, snap, body, "", err, sizeof(err));
        if (out == NULL) {
            ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "%s", err);
            goto done;
        }
    }
    ias_histogram_observe(ctx->decide_seconds, (double)(ias_now_us() - t0) / 1e6);
    ias_reply_json(r, 200, out);
done:
    cJSON_Delete(out);
    pdp_snapshot_put(snap);
}

void pdp_handle_internal_guardrail(ias_req *r, void *arg)
{
    pdp_ctx *ctx = arg;
    const char *id = ias_req_param(r, "id");
    pdp_snapshot *snap;
    const pdp_profile *p;

    if (!pdp_internal_auth(r, ctx))
        return;
    if (!ias_uuid_valid(id)) {
        ias_reply_problem_typed(r, 404, PDP_PROBLEM_NOT_FOUND, "no active guardrail profile %s",
                                id);
        return;
    }
    snap = pdp_snapshot_get(ctx);
    p = snap != NULL ? pdp_snapshot_profile_by_id(snap, id) : NULL;
    if (p != NULL)
        ias_reply_json_str(r, 200, p->json);
    else
        ias_reply_problem_typed(r, 404, PDP_PROBLEM_NOT_FOUND, "no active guardrail profile %s",
                                id);
    pdp_snapshot_put(snap);
}
