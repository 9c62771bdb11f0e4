/* policies list|get|apply -f FILE|dry-run -f FILE|activate|delete: versioned
 * ABAC policy documents per scope (global or one org), served by the pdp.
 * FILE holds the policy document as JSON ("-" reads stdin). */
#include "admin.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define POLICY_FILE_MAX (1u << 20)

static const admin_col policy_cols[] = {
    {"ID", "id"},         {"SCOPE", "scope"},     {"ORG", "org_id"},         {"VERSION", "version"},
    {"ACTIVE", "active"}, {"COMMENT", "comment"}, {"CREATED", "created_at"},
};

/* Reads and parses a JSON file (or stdin for "-"); NULL with a message. */
static cJSON *read_json_any(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ias-admin: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = ias_xmalloc(POLICY_FILE_MAX + 1);
    size_t n = fread(buf, 1, POLICY_FILE_MAX + 1, f);
    bool err = ferror(f) != 0;
    if (f != stdin)
        fclose(f);
    cJSON *j = NULL;
    if (err)
        fprintf(stderr, "ias-admin: cannot read %s\n", path);
    else if (n > POLICY_FILE_MAX)
        fprintf(stderr, "ias-admin: %s is larger than 1 MiB\n", path);
    else if (!(j = cJSON_ParseWithLength(buf, n)))
        fprintf(stderr, "ias-admin: %s is not valid JSON\n", path);
    free(buf);
    return j;
}

static cJSON *read_json_file(const char *path)
{
    cJSON *j = read_json_any(path);
    if (j && !cJSON_IsObject(j)) {
        fprintf(stderr, "ias-admin: %s is not a JSON object\n", path);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* The org filter/scope of a command as an id, or "" for global. */
static int scope_of(admin_ctx *ctx, const admin_parsed *a, char *id, size_t len)
{
    const char *org = admin_flag_value(a, "org");
    id[0] = '\0';
    if (!org)
        return IAS_OK;
    return admin_resolve_org(ctx, org, id, len);
}

static int cmd_list(admin_ctx *ctx, const admin_parsed *a)
{
    char id[64];
    if (scope_of(ctx, a, id, sizeof(id)) != IAS_OK)
        return ADMIN_EXIT_API;
    const char *scope = admin_flag_value(a, "scope");
    const char *q[] = {"scope",  scope,
                       "org_id", id[0] ? id : NULL,
                       "active", admin_flag_set(a, "active") ? "true" : NULL,
                       NULL};
    return admin_do_list(ctx, "/api/v1/policies", q, policy_cols, IAS_ARRAY_LEN(policy_cols));
}

static int cmd_get(admin_ctx *ctx, const admin_parsed *a)
{
    if (!admin_is_uuid(a->pos[0])) {
        fprintf(stderr, "ias-admin: POLICY must be a policy id\n");
        return ADMIN_EXIT_USAGE;
    }
    char *path = ias_xasprintf("/api/v1/policies/%s", a->pos[0]);
    int rc = admin_do_record(ctx, "GET", path, NULL, policy_cols, IAS_ARRAY_LEN(policy_cols));
    free(path);
    return rc;
}

/* {"scope", "org_id"?, "document", "comment"?}. FILE is the policy document
 * itself, or a wrapper object with "document" (and, for dry runs,
 * "requests"), so one file can carry a draft and its test cases. */
static cJSON *policy_body(admin_ctx *ctx, const admin_parsed *a, cJSON **requests, int *rc)
{
    char id[64];
    const char *scope = admin_flag_value(a, "scope");
    cJSON *doc = read_json_file(admin_flag_value(a, "file"));
    if (!doc) {
        *rc = ADMIN_EXIT_USAGE;
        return NULL;
    }
    if (scope && strcmp(scope, "global") != 0 && strcmp(scope, "org") != 0) {
        fprintf(stderr, "ias-admin: --scope must be global or org\n");
        cJSON_Delete(doc);
        *rc = ADMIN_EXIT_USAGE;
        return NULL;
    }
    if (scope_of(ctx, a, id, sizeof(id)) != IAS_OK) {
        cJSON_Delete(doc);
        *rc = ADMIN_EXIT_API;
        return NULL;
    }
    if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "document"))) {
        cJSON *wrapper = doc;
        doc = cJSON_DetachItemFromObjectCaseSensitive(wrapper, "document");
        if (requests)
            *requests = cJSON_DetachItemFromObjectCaseSensitive(wrapper, "requests");
        cJSON_Delete(wrapper);
    }
    /* An org admin's "org" scope defaults to their own org on the server. */
    if (!scope)
        scope = id[0] ? "org" : "global";
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "scope", scope);
    if (id[0])
        cJSON_AddStringToObject(body, "org_id", id);
    cJSON_AddItemToObject(body, "document", doc);
    const char *comment = admin_flag_value(a, "comment");
    if (comment)
        cJSON_AddStringToObject(body, "comment", comment);
    return body;
}

static int cmd_apply(admin_ctx *ctx, const admin_parsed *a)
{
    int rc = ADMIN_EXIT_OK;
    cJSON *body = policy_body(ctx, a, NULL, &rc);
    if (!body)
        return rc;
    cJSON_AddBoolToObject(body, "activate", !admin_flag_set(a, "no-activate"));
    rc = admin_do_record(ctx, "POST", "/api/v1/policies", body, policy_cols,
                         IAS_ARRAY_LEN(policy_cols));
    cJSON_Delete(body);
    return rc;
}

static int cmd_dry_run(admin_ctx *ctx, const admin_parsed *a)
{
    int rc = ADMIN_EXIT_OK;
    cJSON *requests = NULL;
    cJSON *body = policy_body(ctx, a, &requests, &rc);
    if (!body)
        return rc;
    const char *req = admin_flag_value(a, "requests");
    if (req) {
        cJSON *r = read_json_any(req);
        if (!r) {
            cJSON_Delete(requests);
            cJSON_Delete(body);
            return ADMIN_EXIT_USAGE;
        }
        cJSON_Delete(requests);
        requests = cJSON_IsArray(r) ? r : cJSON_DetachItemFromObjectCaseSensitive(r, "requests");
        if (requests != r)
            cJSON_Delete(r);
    }
    if (!cJSON_IsArray(requests)) {
        fprintf(stderr, "ias-admin: a dry run needs sample requests: --requests FILE with "
                        "[{...}] or {\"requests\":[...]}, or \"requests\" beside \"document\" "
                        "in -f FILE\n");
        cJSON_Delete(requests);
        cJSON_Delete(body);
        return ADMIN_EXIT_USAGE;
    }
    cJSON_AddItemToObject(body, "requests", requests);
    admin_resp resp;
    if (admin_call(ctx, "POST", "/api/v1/policies/dry-run", body, &resp) != IAS_OK) {
        cJSON_Delete(body);
        return ADMIN_EXIT_API;
    }
    cJSON_Delete(body);
    /* A dry run's answer has no fixed table shape: show it as JSON either way. */
    if (resp.json)
        admin_json(stdout, resp.json);
    admin_resp_free(&resp);
    return ADMIN_EXIT_OK;
}

static int cmd_activate(admin_ctx *ctx, const admin_parsed *a)
{
    if (!admin_is_uuid(a->pos[0])) {
        fprintf(stderr, "ias-admin: POLICY must be a policy id\n");
        return ADMIN_EXIT_USAGE;
    }
    char *path = ias_xasprintf("/api/v1/policies/%s/activate", a->pos[0]);
    int rc = admin_do_record(ctx, "POST", path, NULL, policy_cols, IAS_ARRAY_LEN(policy_cols));
    free(path);
    return rc;
}

static int cmd_delete(admin_ctx *ctx, const admin_parsed *a)
{
    if (!admin_is_uuid(a->pos[0])) {
        fprintf(stderr, "ias-admin: POLICY must be a policy id\n");
        return ADMIN_EXIT_USAGE;
    }
    char *path = ias_xasprintf("/api/v1/policies/%s", a->pos[0]);
    int rc = admin_do_record(ctx, "DELETE", path, NULL, policy_cols, IAS_ARRAY_LEN(policy_cols));
    free(path);
    return rc;
}

static const admin_flag list_flags[] = {
    {"org", 0, true, false, "ORG", "only this org's policies (id or name)"},
    {"scope", 0, true, false, "global|org", "only this scope"},
    {"active", 0, false, false, NULL, "only the active versions"},
};

static const admin_flag apply_flags[] = {
    {"file", 'f', true, true, "FILE", "policy document, JSON (- for stdin)"},
    {"org", 0, true, false, "ORG", "the org scope (default: global)"},
    {"scope", 0, true, false, "global|org", "scope; org without --org means your own org"},
    {"comment", 0, true, false, "TEXT", "why this version"},
    {"no-activate", 0, false, false, NULL, "store the version without activating it"},
};

static const admin_flag dry_flags[] = {
    {"file", 'f', true, true, "FILE", "policy document, JSON (- for stdin)"},
    {"org", 0, true, false, "ORG", "the org scope (default: global)"},
    {"scope", 0, true, false, "global|org", "scope; org without --org means your own org"},
    {"requests", 0, true, false, "FILE",
     "decision requests to evaluate: [...] or {\"requests\":[...]}"},
};

static const admin_cmd cmds[] = {
    {"list", "list policy versions", NULL, 0, 0, list_flags, IAS_ARRAY_LEN(list_flags), cmd_list},
    {"get", "show a policy version with its document", "POLICY", 1, 1, NULL, 0, cmd_get},
    {"apply", "store a new policy version and activate it", NULL, 0, 0, apply_flags,
     IAS_ARRAY_LEN(apply_flags), cmd_apply},
    {"dry-run", "evaluate a policy document without storing it", NULL, 0, 0, dry_flags,
     IAS_ARRAY_LEN(dry_flags), cmd_dry_run},
    {"activate", "make a stored version the active one (rollback)", "POLICY", 1, 1, NULL, 0,
     cmd_activate},
    {"delete", "delete an inactive policy version", "POLICY", 1, 1, NULL, 0, cmd_delete},
};

const admin_group admin_group_policies = {"policies", "manage ABAC policies (pdp)", cmds,
                                          IAS_ARRAY_LEN(cmds)};
