/* Token budgets in Redis: reserve the worst case before a request, settle the
 * actual usage after it. Layout (docs/architecture/internal-contracts.md):
 *
 *   ias:budget:{org}:{yyyymm}            hash used, reserved
 *   ias:budget:{org}:{yyyymm}:u:{user}   hash used, reserved
 *   ias:resv:{reservation_id}            string "state:tokens:expires_ms:org:yyyymm:user"
 *   ias:resvq:{org}:{yyyymm}             zset reservation id -> expiry ms
 *
 * Every operation runs inside one Lua script, so the org and user counters move
 * together. Reserve purges the org's expired reservations first (their tokens stop
 * counting), then grants want, or less down to min, when used + reserved + grant
 * fits both limits. Settle is idempotent: it moves the reservation out of reserved
 * and adds the actual tokens to used once; a settle that arrives after the
 * reservation expired still adds the tokens (they were consumed), a second settle
 * does nothing. A settled reservation is remembered IAS_BUDGET_SETTLED_KEEP_MS.
 * Time comes from the Redis server (TIME), so instances with skewed clocks agree.
 *
 * Batching: the async calls made on one ias_redis_async during one event-loop
 * iteration are sent together, at the end of that iteration (no timer: nothing
 * waits when the load is low), as one script call of up to IAS_BUDGET_BATCH_MAX
 * items that runs them in call order, each as if alone; every call still gets its
 * own result and callback. A script call costs Redis more than the commands of one
 * reserve, so this is what keeps Redis cheap under load. Settles may wait longer
 * (ias_budget_set_settle_wait): until then their reservations still count in
 * `reserved`, which only keeps the budget stricter, so a client that only settles
 * (the router) trades a few ms of delay for far fewer script calls. */
#ifndef IAS_BUDGET_H
#define IAS_BUDGET_H

#include "ias/common.h"

typedef struct ias_redis_async ias_redis_async;
typedef struct ias_redis_sync ias_redis_sync;

enum {
    IAS_BUDGET_OK = 0,
    IAS_BUDGET_OVER = 1,  /* refused: less than min tokens left */
    IAS_BUDGET_ERROR = 2, /* Redis unreachable or failed: fail closed */
};

#define IAS_BUDGET_ID_MAX 128                       /* org, user, reservation ids */
#define IAS_BUDGET_DEFAULT_TTL_MS (10 * 60 * 1000)  /* unsettled reservation lifetime */
#define IAS_BUDGET_SETTLED_KEEP_MS (10 * 60 * 1000) /* settle idempotency window */
#define IAS_BUDGET_BATCH_MAX 256                    /* items per script call */
/* Bound of ias_budget_set_settle_wait (no comment on the line: the config doc
 * generator reads the value). */
#define IAS_BUDGET_SETTLE_WAIT_MAX_MS 1000

/* "yyyymm" of a wall-clock time, UTC. */
void ias_budget_month(int64_t wall_ms, char out[7]);

typedef struct ias_budget_reserve_req {
    const char *org_id;
    const char *user_id; /* may be NULL or "": no per-user counter */
    int64_t org_limit;   /* -1 = none */
    int64_t user_limit;  /* -1 = none */
    int64_t want;        /* grant in [min, want] or refuse */
    int64_t min;         /* 0 < min <= want */
    const char *month;   /* "yyyymm"; NULL = now (UTC) */
    const char *reservation_id;
    int64_t ttl_ms; /* <= 0: IAS_BUDGET_DEFAULT_TTL_MS */
} ias_budget_reserve_req;

typedef struct ias_budget_result {
    int status;      /* IAS_BUDGET_OK, IAS_BUDGET_OVER, IAS_BUDGET_ERROR */
    int64_t granted; /* reserve: tokens reserved; settle: tokens added to used */
    /* Reserve: tokens left after this grant (or before a refusal); -1 = no limit.
     * Settle: -1. */
    int64_t org_remaining, user_remaining;
    const char *error; /* IAS_BUDGET_ERROR: why (valid during the callback only) */
} ias_budget_result;

typedef void (*ias_budget_cb)(const ias_budget_result *res, void *arg);

/* Async (hot path). The callback fires exactly once, never inside the call,
 * with status ERROR when Redis did not answer (then every call of the same batch
 * gets that error), when the reservation id is already used, or when the Redis
 * data of this item is unreadable (those two fail this call alone). Calls still
 * queued when the client is freed get ERROR from ias_redis_async_free(). IAS_ERR
 * (and no callback) for an invalid request (missing or over-long ids, min/want out
 * of range). */
int ias_budget_reserve(ias_redis_async *r, const ias_budget_reserve_req *q, ias_budget_cb cb,
                       void *arg) IAS_MUSTCHECK;
/* actual_tokens 0 = release. Unknown or already settled ids answer OK with granted 0. */
int ias_budget_settle(ias_redis_async *r, const char *reservation_id, int64_t actual_tokens,
                      ias_budget_cb cb, void *arg) IAS_MUSTCHECK;

/* Settles queued on r from now on wait up to wait_ms (0, the default: the end of
 * the loop iteration, like reserves) for more items to share their script call;
 * they leave earlier with any reserve queued on r or when IAS_BUDGET_BATCH_MAX
 * items are queued. IAS_ERR when wait_ms > IAS_BUDGET_SETTLE_WAIT_MAX_MS or the
 * client is being freed. Call from r's thread. */
int ias_budget_set_settle_wait(ias_redis_async *r, unsigned wait_ms) IAS_MUSTCHECK;
/* For a worker that stops: sends what is queued on r now, then runs r's event
 * base until every budget call made on r has had its callback (each sent batch
 * ends by its reply or the client's command timeout). IAS_OK when nothing is left
 * owed; IAS_ERR when timeout_ms passed first (what is left fails when the client
 * is freed). Runs other events of that base too; call it before tearing down
 * what they use, and no callback may free r meanwhile. */
int ias_budget_drain(ias_redis_async *r, unsigned timeout_ms) IAS_MUSTCHECK;

/* Blocking variants (accounting, tests). IAS_ERR only for an invalid request;
 * otherwise IAS_OK with out->status telling the outcome (ERROR when Redis failed;
 * out->error then points to a static string). */
int ias_budget_reserve_sync(ias_redis_sync *r, const ias_budget_reserve_req *q,
                            ias_budget_result *out) IAS_MUSTCHECK;
int ias_budget_settle_sync(ias_redis_sync *r, const char *reservation_id, int64_t actual_tokens,
                           ias_budget_result *out) IAS_MUSTCHECK;

#endif
