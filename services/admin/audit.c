/* audit list|verify: the hash-chained audit ledger. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static int cmd_list(admin_ctx *ctx, const admin_parsed *a)
{
    char id[64];
    const char *org = admin_flag_value(a, "org");
    if (org && admin_resolve_org(ctx, org, id, sizeof(id)) != IAS_OK)
        return ADMIN_EXIT_API;
    const char *q[] = {"org_id",
                       org ? id : NULL,
                       "actor_id",
                       admin_flag_value(a, "actor"),
                       "action",
                       admin_flag_value(a, "action"),
                       "resource_type",
                       admin_flag_value(a, "resource-type"),
                       "service",
                       admin_flag_value(a, "service"),
                       "outcome",
                       admin_flag_value(a, "outcome"),
                       "from",
                       admin_flag_value(a, "from"),
                       "to",
                       admin_flag_value(a, "to"),
                       NULL};
    static const admin_col cols[] = {
        {"SEQ", "seq"},
        {"TIME", "occurred_at"},
        {"SERVICE", "service"},
        {"ACTION", "action"},
        {"OUTCOME", "outcome"},
        {"ACTOR", "actor.id"},
        {"RESOURCE", "resource.type"},
        {"RESOURCE ID", "resource.id"},
    };
    return admin_do_list(ctx, "/api/v1/audit", q, cols, IAS_ARRAY_LEN(cols));
}

static int cmd_verify(admin_ctx *ctx, const admin_parsed *a)
{
    admin_resp r;
    const char *q[] = {"from", admin_flag_value(a, "from"), "to", admin_flag_value(a, "to"), NULL};
    char *path = admin_path_query("/api/v1/audit/verify", q);
    int rc = admin_call(ctx, "GET", path, NULL, &r);
    free(path);
    if (rc != IAS_OK)
        return ADMIN_EXIT_API;
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r.json, "valid");
    if (!cJSON_IsBool(ok))
        ok = cJSON_GetObjectItemCaseSensitive(r.json, "ok");
    if (ctx->output == ADMIN_OUT_JSON || !cJSON_IsObject(r.json)) {
        if (r.json)
            admin_json(stdout, r.json);
    } else {
        admin_record(stdout, NULL, 0, r.json);
    }
    /* A broken chain is a failed check: scripts must notice. */
    rc = cJSON_IsFalse(ok) ? ADMIN_EXIT_API : ADMIN_EXIT_OK;
    if (rc != ADMIN_EXIT_OK)
        fprintf(stderr, "error: the audit chain does not verify\n");
    admin_resp_free(&r);
    return rc;
}

static int cmd_checkpoints(admin_ctx *ctx, const admin_parsed *a)
{
    IAS_UNUSED(a);
    static const admin_col cols[] = {
        {"ID", "id"},
        {"SEQ", "seq"},
        {"HASH", "hash"},
        {"KEY", "key_id"},
        {"CREATED", "created_at"},
    };
    return admin_do_list(ctx, "/api/v1/audit/checkpoints", NULL, cols, IAS_ARRAY_LEN(cols));
}

static const admin_flag list_flags[] = {
    {"org", 0, true, false, "ORG", "org id or name"},
    {"actor", 0, true, false, "USER", "actor id"},
    {"action", 0, true, false, "ACTION", "action name (key_created, ...)"},
    {"resource-type", 0, true, false, "TYPE", "resource type (org, user, key, ...)"},
    {"service", 0, true, false, "NAME", "emitting service"},
    {"outcome", 0, true, false, "OUTCOME", "success or denied"},
    {"from", 0, true, false, "TIME", "ISO 8601 UTC"},
    {"to", 0, true, false, "TIME", "ISO 8601 UTC"},
};

static const admin_flag verify_flags[] = {
    {"from", 0, true, false, "SEQ", "first sequence number to check"},
    {"to", 0, true, false, "SEQ", "last sequence number to check"},
};

static const admin_cmd cmds[] = {
    {"list", "list audit entries, newest first", NULL, 0, 0, list_flags, IAS_ARRAY_LEN(list_flags),
     cmd_list},
    {"verify", "recompute the hash chain; exit 1 when it is broken", NULL, 0, 0, verify_flags,
     IAS_ARRAY_LEN(verify_flags), cmd_verify},
    {"checkpoints", "signed checkpoints of the chain (system admin)", NULL, 0, 0, NULL, 0,
     cmd_checkpoints},
};

const admin_group admin_group_audit = {"audit", "the tamper-evident audit ledger", cmds,
                                       IAS_ARRAY_LEN(cmds)};
