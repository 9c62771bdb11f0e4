/* ias-pdp: policy decision point. Decisions come from an immutable in-memory
 * snapshot of the active policies and guardrail profiles (no database on the
 * decide path); management writes go to PostgreSQL and every instance reloads
 * its snapshot on config.policies.changed / config.guardrails.changed. */
#ifndef PDP_H
#define PDP_H

#include "ias/amqp.h"
#include "ias/guardrail.h"
#include "ias/http_server.h"
#include "ias/metrics.h"
#include "ias/pg.h"
#include "ias/policy.h"
#include "ias/principal.h"

#include <pthread.h>
#include <stdatomic.h>

#define PDP_ID_LEN 37 /* UUID + NUL */
#define PDP_TTL_MS 1000
#define PDP_MAX_BATCH 100

typedef struct pdp_org_policy {
    char org_id[PDP_ID_LEN];
    ias_policy *policy;
} pdp_org_policy;

typedef struct pdp_profile {
    char id[PDP_ID_LEN];
    char org_id[PDP_ID_LEN]; /* "" for global */
    char name[64];
    int version;
    char *json; /* the /internal/guardrails/{id} answer */
    ias_guardrail *compiled;
} pdp_profile;

/* Immutable once published; freed when the last reader drops it. */
typedef struct pdp_snapshot {
    atomic_int refs;
    ias_policy *global;
    pdp_org_policy *orgs; /* sorted by org_id */
    size_t norgs;
    pdp_profile *profiles; /* sorted by (org_id, name) */
    size_t nprofiles;
    int64_t loaded_ms;
} pdp_snapshot;

typedef struct pdp_ctx {
    const char *pg_dsn;
    const char *amqp_url;
    const char *internal_token; /* "" disables the check */
    const char *jwt_secret;
    size_t jwt_secret_len;
    size_t holdback;
    const char *spool_dir;

    pthread_mutex_t snap_mu; /* guards the snap pointer only */
    pdp_snapshot *snap;
    pthread_mutex_t reload_mu; /* one reload at a time, so snapshots never go back */
    ias_publisher *pub;        /* NULL without IAS_AMQP_URL */
    atomic_bool consumer_stop;
    pthread_t consumer;
    bool consumer_running;

    ias_counter *decisions_allow, *decisions_deny, *reloads, *reload_failures;
    ias_histogram *decide_seconds;
    ias_gauge *snapshot_age;
} pdp_ctx;

/* store.c */
pdp_snapshot *pdp_snapshot_get(pdp_ctx *ctx); /* takes a reference */
void pdp_snapshot_put(pdp_snapshot *s);
/* Loads every active version with pg and swaps the snapshot in. */
int pdp_reload(pdp_ctx *ctx, ias_pg *pg) IAS_MUSTCHECK;
const ias_policy *pdp_snapshot_org(const pdp_snapshot *s, const char *org_id);
const pdp_profile *pdp_snapshot_profile(const pdp_snapshot *s, const char *org_id,
                                        const char *name);
const pdp_profile *pdp_snapshot_profile_by_id(const pdp_snapshot *s, const char *id);
void pdp_snapshot_free(pdp_snapshot *s);
/* Starts the config-event consumer thread (needs ctx->amqp_url). */
int pdp_consumer_start(pdp_ctx *ctx) IAS_MUSTCHECK;
void pdp_consumer_stop(pdp_ctx *ctx);

/* decide.c */
void pdp_handle_decide(ias_req *r, void *arg);
void pdp_handle_internal_guardrail(ias_req *r, void *arg);
bool pdp_internal_auth(ias_req *r, pdp_ctx *ctx);
/* Evaluates one parsed request against global/org (either may be NULL) and
 * resolves obligations in snap; returns the decision JSON. */
cJSON *pdp_decide_json(const pdp_snapshot *snap, const ias_policy *global, const ias_policy *org,
                       const ias_policy_request *req, bool *allow);

/* policies.c */
void pdp_handle_policies_list(ias_req *r, void *arg);
void pdp_handle_policies_create(ias_req *r, void *arg);
void pdp_handle_policies_get(ias_req *r, void *arg);
void pdp_handle_policies_activate(ias_req *r, void *arg);
void pdp_handle_policies_delete(ias_req *r, void *arg);
void pdp_handle_policies_dry_run(ias_req *r, void *arg);

/* guardrails.c */
void pdp_handle_guardrails_list(ias_req *r, void *arg);
void pdp_handle_guardrails_create(ias_req *r, void *arg);
void pdp_handle_guardrails_get(ias_req *r, void *arg);
void pdp_handle_guardrails_activate(ias_req *r, void *arg);
void pdp_handle_guardrails_delete(ias_req *r, void *arg);

/* mgmt.c: shared by policies.c and guardrails.c */
typedef struct pdp_mgmt_kind {
    const char *table;         /* "policies" or "guardrail_profiles" */
    const char *kind;          /* config kind: "policies" / "guardrails" */
    const char *resource;      /* audit resource type: "policy" / "guardrail" */
    const char *action_prefix; /* "policy" / "guardrail" */
} pdp_mgmt_kind;
extern const pdp_mgmt_kind pdp_kind_policy, pdp_kind_guardrail;

ias_pg *pdp_worker_pg(ias_req *r);
/* Authenticates the caller and checks it may manage (write=true) or read the
 * scope; answers 401/403/404 itself and returns IAS_ERR. org_id "" = global. */
int pdp_authorize(ias_req *r, pdp_ctx *ctx, const char *org_id, bool write,
                  ias_principal *p) IAS_MUSTCHECK;
/* Audit event + config event after a committed change; then reloads. */
/* Publishes one audit.recorded.v1 event (built by ias_audit_event_new) as
 * audit.pdp.<action>; a publish failure is logged, never returned. */
void pdp_publish_audit(pdp_ctx *ctx, const ias_log_ctx *log, const cJSON *ev, const char *eid,
                       const char *action);
void pdp_after_change(ias_req *r, pdp_ctx *ctx, const pdp_mgmt_kind *k, const ias_principal *p,
                      const char *action, const char *org_id, const char *id, cJSON *details);
/* Reads the scope/org_id pair of a create or dry-run body; answers 400 itself. */
int pdp_body_scope(ias_req *r, const cJSON *body, const ias_principal *p, char *org_id,
                   size_t org_len) IAS_MUSTCHECK;
void pdp_reply_pg_error(ias_req *r, ias_pg *pg);
void pdp_handle_activate(ias_req *r, pdp_ctx *ctx, const pdp_mgmt_kind *k);
void pdp_handle_get(ias_req *r, pdp_ctx *ctx, const pdp_mgmt_kind *k);
void pdp_handle_list(ias_req *r, pdp_ctx *ctx, const pdp_mgmt_kind *k);
/* Inserts a new version (number = max + 1 in its scope), activates it if asked,
 * audits, publishes, reloads and answers 201 with the object. */
void pdp_create_version(ias_req *r, pdp_ctx *ctx, const pdp_mgmt_kind *k, const ias_principal *p,
                        const char *org_id, const char *name, const cJSON *doc, const char *comment,
                        bool activate);
void pdp_handle_delete(ias_req *r, pdp_ctx *ctx, const pdp_mgmt_kind *k);

#define PDP_PROBLEM_VALIDATION "https://ias.dev/problems/validation-error"
#define PDP_PROBLEM_FORBIDDEN "https://ias.dev/problems/forbidden"
#define PDP_PROBLEM_NOT_FOUND "https://ias.dev/problems/not-found"
#define PDP_PROBLEM_CONFLICT "https://ias.dev/problems/conflict"
#define PDP_PROBLEM_INTERNAL "https://ias.dev/problems/internal"

#endif
