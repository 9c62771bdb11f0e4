/* /api/v1/guardrails: versions of named guardrail profiles. Documents are
 * compiled with the same engine the router runs, so bad regexes, unknown
 * attributes and phrases longer than the hold-back window are refused here. */
#include "pdp.h"

#include "ias/log.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

void pdp_handle_guardrails_create(ias_req *r, void *arg)
{
    static const char *const keys[] = {"scope",    "org_id",  "name",
                                       "document", "comment", "activate"};
    pdp_ctx *ctx = arg;
    cJSON *body = ias_req_json(r);
    const cJSON *name, *doc, *comment, *activate, *it;
    ias_principal p;
    char org_id[PDP_ID_LEN], err[512];
    ias_guardrail *g = NULL;

    if (body == NULL)
        return;
    cJSON_ArrayForEach(it, body)
    {
        bool ok = false;
        for (size_t i = 0; i < IAS_ARRAY_LEN(keys) && !ok; i++)
            ok = strcmp(it->string, keys[i]) == 0;
        if (!ok) {
            ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "%s: unknown attribute",
                                    it->string);
            return;
        }
    }
    if (ias_principal_require(r, ctx->jwt_secret, ctx->jwt_secret_len, &p) != IAS_OK ||
        pdp_body_scope(r, body, &p, org_id, sizeof(org_id)) != IAS_OK ||
        pdp_authorize(r, ctx, org_id, true, &p) != IAS_OK)
        return;
    name = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (!cJSON_IsString(name) || !name_ok(name->valuestring)) {
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION,
                                "name: required, ^[a-z0-9][a-z0-9_-]{0,62}$");
        return;
    }
    doc = cJSON_GetObjectItemCaseSensitive(body, "document");
    if (doc == NULL) {
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "document: required object");
        return;
    }
    if (ias_guardrail_compile(doc, name->valuestring, ctx->holdback, &g, err, sizeof(err)) !=
        IAS_OK) {
        ias_reply_problem_typed(r, 400, PDP_PROBLEM_VALIDATION, "document.%s", err);
        return;
    }
    ias_guardrail_free(g);
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
    pdp_create_version(r, ctx, &pdp_kind_guardrail, &p, org_id, name->valuestring, doc,
                       comment != NULL ? comment->valuestring : "", !cJSON_IsFalse(activate));
}

void pdp_handle_guardrails_list(ias_req *r, void *arg)
{
    pdp_handle_list(r, arg, &pdp_kind_guardrail);
}

void pdp_handle_guardrails_get(ias_req *r, void *arg)
{
    pdp_handle_get(r, arg, &pdp_kind_guardrail);
}

void pdp_handle_guardrails_activate(ias_req *r, void *arg)
{
    pdp_handle_activate(r, arg, &pdp_kind_guardrail);
}

void pdp_handle_guardrails_delete(ias_req *r, void *arg)
{
    pdp_handle_delete(r, arg, &pdp_kind_guardrail);
}
