/* ias-users: the management API (auth, orgs, users, roles, API keys, budgets,
 * model registry), the internal key/model lookups for the hot path, and the
 * transactional outbox relay. */
#ifndef IAS_USERS_H
#define IAS_USERS_H

#include <pthread.h>
#include <stdatomic.h>

#include "ias/common.h"
#include "ias/http_server.h"
#include "ias/metrics.h"
#include "ias/pg.h"
#include "ias/principal.h"
#include "ias/redis.h"

typedef struct cJSON cJSON;

#define USERS_PROBLEM "https://ias.dev/problems/"
#define USERS_ACCESS_TTL_S 3600
#define USERS_REFRESH_TTL_S (7 * 24 * 3600)
#define USERS_PAGE_DEFAULT 50
#define USERS_PAGE_MAX 200
#define USERS_PERM_MAX 64

/* The service context: config and process-wide handles, read-only after start
 * except the relay's stop flag. */
typedef struct users_ctx {
    const char *pg_dsn;
    const char *redis_url;
    const char *amqp_url;
    const char *jwt_secret;
    size_t jwt_secret_len;
    const char *bootstrap_token; /* "" when unset */
    const char *internal_token;  /* "" when unset */
    int login_max_failures;      /* per account, per window */
    int login_max_failures_addr; /* per source address, per window */
    int login_window_s;
    int rbac_ttl_ms;
    int relay_backoff_max_ms;
    pthread_t relay_thread;
    atomic_bool relay_stop;
    bool relay_started;
    ias_counter *m_logins_failed;
    ias_counter *m_outbox_sent;
    ias_gauge *m_outbox_connected;
} users_ctx;

/* A role's permission set, cached per worker (rbac.c). */
typedef struct users_role_perms {
    char role[IAS_JWT_ROLE_BUFSZ];
    size_t n;
    char perms[USERS_PERM_MAX][48];
} users_role_perms;

/* Per-worker state (one libpq connection and one Redis client per thread). */
typedef struct users_worker {
    ias_pg *pg;
    ias_redis_sync *redis;
    users_role_perms *roles;
    size_t nroles;
    uint64_t roles_loaded_ms;
    ias_pg_ready_cache ready; /* /ready answer, cached for a second */
    /* The last failed statement's error, kept across the rollback that follows. */
    ias_pg_errkind err_kind;
    char err_state[8];
    char err_constraint[64];
    char err_msg[256];
} users_worker;

users_worker *users_worker_of(ias_req *r);

/* ---- util.c: JSON, problems, validation, transactions, pagination ---- */

/* One accepted body field. */
typedef enum {
    UF_STR,
    UF_INT,
    UF_BOOL,
    UF_STR_ARRAY,
    UF_INT_ARRAY,
    UF_DECIMAL, /* string or number, non-negative decimal */
    UF_TIME,    /* ISO 8601 string */
    UF_OBJ_ARRAY,
} users_field_type;

typedef struct users_field {
    const char *name;
    users_field_type type;
    bool required;
    bool nullable;
    size_t max_len; /* strings: bytes; arrays: items; 0 = 256 / 100 */
} users_field;

/* Parses the body as a JSON object and checks every field: unknown, missing,
 * wrong type or over-long fields get a 400 naming the field. NULL when it
 * answered. */
/* The prologue of every /orgs/{id}/... handler: an authenticated caller holding
 * perm inside the path's org. Returns the org id, or NULL after answering. */
const char *users_org_access(ias_req *r, void *arg, const char *perm, ias_principal *p);
/* Opens the caller's scoped transaction and locks the one row sql selects for
 * the path's {id} ($1). IAS_OK with the transaction open and *res holding the row;
 * otherwise the answer (404 when invisible) is sent and nothing stays open. */
int users_lock_row(ias_req *r, users_worker *w, const ias_principal *p, const char *sql,
                   const char *what, PGresult **res);
cJSON *users_body(ias_req *r, const users_field *fields, size_t n);
/* The same for a nested object; where prefixes field names ("backends[0]."). */
int users_check_obj(ias_req *r, const cJSON *obj, const users_field *fields, size_t n,
                    const char *where) IAS_MUSTCHECK;

/* Text parameters for one statement; JSON values are rendered as PostgreSQL
 * accepts them (strings as is, numbers, booleans, arrays/objects as JSON). */
#define USERS_PARAMS_MAX 40
typedef struct users_params {
    const char *v[USERS_PARAMS_MAX];
    int n;
    char *owned[USERS_PARAMS_MAX];
    int nowned;
} users_params;
void users_params_add(users_params *p, const char *v);
void users_params_json(users_params *p, const cJSON *it); /* absent/null -> NULL */
/* Two parameters: "t"/"f" (present) and the value, for PATCH-style updates. */
void users_params_field(users_params *p, const cJSON *body, const char *name);
void users_params_free(users_params *p);
int users_problem(ias_req *r, int status, const char *slug, const char *fmt, ...) IAS_PRINTF(4, 5);
int users_reply_json(ias_req *r, int status, cJSON *json); /* frees json */
int users_reply_raw(ias_req *r, int status, const char *json);
int users_internal_error(ias_req *r, users_worker *w, const char *what);
/* Maps the worker's last PostgreSQL error to a reply (409 on unique, 400 on
 * check/foreign key violations, 503 on connection loss, else 500). */
int users_db_error(ias_req *r, users_worker *w, const char *what);

/* BEGIN and scope the transaction for row-level security: org_id, or "*" for
 * every org (system admins and pre-auth lookups). */
int users_tx_begin(users_worker *w, const char *org_scope) IAS_MUSTCHECK;
/* The same for reading one keyset page ("(created_at, id) > cursor ORDER BY
 * created_at, id LIMIT n") off an index that yields that order: bitmap scans
 * are off for the transaction, so the plan walks the index and stops at the
 * LIMIT even when the statistics are stale (see util.c). */
int users_tx_begin_page(users_worker *w, const char *org_scope) IAS_MUSTCHECK;
int users_tx_commit(users_worker *w) IAS_MUSTCHECK;
void users_tx_rollback(users_worker *w);
/* Scope of a principal: "*" for system admins, else its org. */
const char *users_scope(const ias_principal *p);

/* Runs a parameterised statement; IAS_ERR leaves the error in w->pg. */
int users_q(users_worker *w, PGresult **out, const char *sql, int n,
            const char *const *vals) IAS_MUSTCHECK;

/* Pagination: ?limit=&cursor=. On a bad value answers 400 and returns IAS_ERR.
 * Without a cursor, cursor_ts/cursor_id are -infinity and the nil UUID, so
 * "(created_at, id) > ($ts::timestamptz, $id::uuid)" works either way. */
typedef struct users_page {
    int limit;
    char limit_s[16];
    char cursor_ts[40];
    char cursor_id[40];
} users_page;
int users_page_parse(ias_req *r, users_page *pg) IAS_MUSTCHECK;
/* Replies {"data":[rows...],"next_cursor":...} from a result whose column 0 is
 * the item JSON, 1 its created_at (microsecond text) and 2 its id, with up to
 * limit + 1 rows (the extra one means another page exists). */
int users_reply_page(ias_req *r, const users_page *pg, PGresult *res);
/* SQL for an ISO 8601 UTC rendering of a timestamptz expression. */
#define USERS_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

bool users_valid_uuid(const char *s);
/* The {id} path parameter when it is a UUID; otherwise answers 404, NULL. */
const char *users_org_param(ias_req *r);
const char *users_json_str(const cJSON *obj, const char *name); /* NULL if absent/null */

/* ---- rbac.c ---- */

/* Requires a valid access token (401 otherwise) and fills *p. */
int users_authenticate(ias_req *r, ias_principal *p) IAS_MUSTCHECK;
/* The one permission check: the principal's role must grant perm, and unless
 * it is a system admin, target_org (if not NULL) must be its own org. A
 * missing permission answers 403; another org's object answers 404 (so ids
 * cannot be probed). IAS_OK when allowed. */
int users_authorize(users_ctx *ctx, ias_req *r, const ias_principal *p, const char *perm,
                    const char *target_org) IAS_MUSTCHECK;
/* True when the role grants perm (no reply). */
bool users_has_perm(ias_req *r, const ias_principal *p, const char *perm);

/* ---- outbox.c ---- */

/* Audit event for the current transaction (w->pg). actor_id NULL means
 * anonymous. details is consumed (may be NULL). */
int users_audit(ias_req *r, users_worker *w, const char *actor_id, const char *org_id,
                const char *action, const char *resource_type, const char *resource_id,
                const char *outcome, cJSON *details) IAS_MUSTCHECK;
/* config.<kind>.changed for the current transaction; ids consumed (NULL = []). */
int users_config_changed(users_worker *w, const char *kind, const char *org_id,
                         cJSON *ids) IAS_MUSTCHECK;
/* Deletes ias:key:{sha256} for every hash in res column col (after commit). */
void users_redis_drop_keys(users_worker *w, PGresult *res, int col);
int users_relay_start(users_ctx *ctx) IAS_MUSTCHECK;
void users_relay_stop(users_ctx *ctx);

/* ---- handlers ---- */
void users_h_login(ias_req *r, void *ctx);
void users_h_refresh(ias_req *r, void *ctx);
void users_h_logout(ias_req *r, void *ctx);
void users_h_bootstrap(ias_req *r, void *ctx);

void users_h_orgs_create(ias_req *r, void *ctx);
void users_h_orgs_list(ias_req *r, void *ctx);
void users_h_orgs_get(ias_req *r, void *ctx);
void users_h_orgs_update(ias_req *r, void *ctx);
void users_h_orgs_delete(ias_req *r, void *ctx);

void users_h_users_create(ias_req *r, void *ctx);
void users_h_users_list(ias_req *r, void *ctx);
void users_h_users_get(ias_req *r, void *ctx);
void users_h_users_update(ias_req *r, void *ctx);
void users_h_users_delete(ias_req *r, void *ctx);
void users_h_users_password(ias_req *r, void *ctx);

void users_h_keys_create(ias_req *r, void *ctx);
void users_h_keys_list(ias_req *r, void *ctx);
void users_h_keys_get(ias_req *r, void *ctx);
void users_h_keys_revoke(ias_req *r, void *ctx);

void users_h_budget_get(ias_req *r, void *ctx);
void users_h_budget_put(ias_req *r, void *ctx);
void users_h_budget_delete(ias_req *r, void *ctx);

void users_h_models_create(ias_req *r, void *ctx);
void users_h_models_list(ias_req *r, void *ctx);
void users_h_models_get(ias_req *r, void *ctx);
void users_h_models_update(ias_req *r, void *ctx);
void users_h_models_delete(ias_req *r, void *ctx);
void users_h_allowed_get(ias_req *r, void *ctx);
void users_h_allowed_put(ias_req *r, void *ctx);

void users_h_internal_key(ias_req *r, void *ctx);
void users_h_internal_models(ias_req *r, void *ctx);

#endif
