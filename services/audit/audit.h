/* ias-audit: the tamper-evident audit ledger (docs/architecture/audit.md).
 *
 * consumer.c  ias.audit consumer: validate an audit.recorded.v1 event, append it
 * chain.c     the entry, its canonical JSON and hash, the append under the head lock
 * query.c     GET /api/v1/audit
 * verify.c    GET /api/v1/audit/verify
 * checkpoint.c Ed25519 checkpoints, GET /api/v1/audit/checkpoints and /export */
#ifndef IAS_AUDIT_H
#define IAS_AUDIT_H

#include <pthread.h>
#include <stdatomic.h>

#include "ias/common.h"
#include "ias/crypto.h"
#include "ias/http_server.h"
#include "ias/metrics.h"
#include "ias/pg.h"
#include "ias/principal.h"

typedef struct evp_pkey_st EVP_PKEY;

#define AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define AUDIT_CHECKPOINT_TYPE "ias.audit.checkpoint.v1"
#define AUDIT_PROBLEM_BASE "https://ias.dev/problems/"
#define AUDIT_EXPORT_MAX 20000 /* entries per export request */
#define AUDIT_TS_LEN 27        /* 2026-11-22T10:15:00.120000Z */

/* Times are always rendered like this (UTC, microseconds), in SQL and in C. */
#define AUDIT_SQL_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* Columns of an entry read back from audit_ledger, in audit_entry_from_row order. */
#define AUDIT_ENTRY_COLS                                                                           \
    "seq, event_id::text, " AUDIT_SQL_TS("occurred_at") ", " AUDIT_SQL_TS(                         \
        "created_at") ", service, org_id::text, actor_type, actor_id, action, resource_type, "     \
                      "resource_id, request_id, outcome, details::text, prev_hash, hash"

/* ---- the service context (main.c) ---- */

typedef struct audit_ctx {
    const char *pg_dsn;
    const char *amqp_url;
    const char *jwt_secret;
    size_t jwt_secret_len;
    long long checkpoint_every;       /* IAS_CHECKPOINT_EVERY: entries */
    long long checkpoint_interval_ms; /* IAS_CHECKPOINT_INTERVAL */
    EVP_PKEY *key;                    /* Ed25519 signing key */
    char key_id[IAS_SHA256_HEX_LEN + 1];
    char *public_key_pem;
    atomic_bool stop;
    /* The consumer wakes the checkpoint thread after each append. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool appended;
    ias_counter *m_appended, *m_duplicate, *m_rejected, *m_checkpoints;
    ias_gauge *m_head_seq;
} audit_ctx;

typedef struct audit_worker {
    ias_pg *pg;
    ias_pg_ready_cache ready; /* /ready answer, cached for a second */
} audit_worker;

ias_pg *audit_pg(ias_req *r);

/* 403/400/500 with a stable problem type (slug appended to AUDIT_PROBLEM_BASE). */
void audit_problem(ias_req *r, int status, const char *slug, const char *fmt, ...) IAS_PRINTF(4, 5);
/* Bearer JWT of a system admin (401/403 answered otherwise). */
int audit_require_system_admin(ias_req *r, const audit_ctx *ctx, ias_principal *p) IAS_MUSTCHECK;

/* ---- chain.c ---- */

/* One ledger entry. Strings are borrowed (NULL is JSON null); details is a
 * JSON object (owned by whoever filled the entry). */
typedef struct audit_entry {
    long long seq;
    const char *event_id;
    const char *occurred_at; /* AUDIT_TS_LEN characters */
    const char *created_at;
    const char *service;
    const char *org_id;
    const char *actor_type, *actor_id;
    const char *action;
    const char *resource_type, *resource_id;
    const char *request_id;
    const char *outcome;
    cJSON *details;
    const char *prev_hash, *hash; /* only for entries read back */
} audit_entry;

/* The entry as a JSON object: the hashed fields, plus prev_hash and hash when
 * with_hashes (and they are set). */
cJSON *audit_entry_json(const audit_entry *e, bool with_hashes);
/* RFC 8785 canonical JSON of the hashed fields (malloc'd), NULL on failure. */
char *audit_entry_canonical(const audit_entry *e, size_t *len);
/* hash = lower-hex SHA-256(prev_hash (64 ASCII hex characters) || canonical). */
void audit_chain_hash(const char *prev_hash, const char *canon, size_t len,
                      char out[IAS_SHA256_HEX_LEN + 1]);
/* Fills e from an AUDIT_ENTRY_COLS row; e->details is parsed (audit_entry_clear). */
int audit_entry_from_row(const PGresult *res, int row, audit_entry *e) IAS_MUSTCHECK;
void audit_entry_clear(audit_entry *e);

/* A validated audit.recorded.v1 event. */
typedef struct audit_event {
    cJSON *root; /* owns every string of entry */
    char occurred_at[AUDIT_TS_LEN + 1];
    audit_entry entry; /* seq, created_at, hashes unset */
} audit_event;

/* Validates body against audit.recorded.v1 (unknown top-level fields are
 * ignored, as events.md allows). IAS_ERR with why on a malformed event. */
int audit_event_parse(const void *body, size_t len, audit_event *ev, char *why,
                      size_t whylen) IAS_MUSTCHECK;
void audit_event_free(audit_event *ev);

typedef enum {
    AUDIT_APPENDED = 0,
    AUDIT_DUPLICATE, /* event_id already in the ledger: nothing done */
    AUDIT_FAIL_RETRY,
    AUDIT_FAIL_REJECT, /* the database refused the entry itself (bad date, check) */
} audit_append_rc;

/* Appends ev in one transaction: locks audit_chain_head FOR UPDATE, skips a
 * known event_id, inserts with prev_hash = head hash, moves the head. On
 * success *seq is the entry's position. why gets the failure. */
audit_append_rc audit_chain_append(ias_pg *pg, const audit_event *ev, long long *seq, char *why,
                                   size_t whylen);
/* Appends evs[0..n) in order in one transaction under one head lock (one
 * commit for the batch). On AUDIT_APPENDED seqs[i] is each entry's position,
 * or 0 for an event_id already in the ledger. On a failure nothing is
 * appended; why gets the failure. */
audit_append_rc audit_chain_append_batch(ias_pg *pg, const audit_event *const *evs, size_t n,
                                         long long *seqs, char *why, size_t whylen);

/* ---- consumer.c ---- */

void *audit_consumer_main(void *ctx);

/* ---- checkpoint.c ---- */

/* IAS_AUDIT_SIGNING_KEY: a PEM private key ("-----BEGIN PRIVATE KEY-----",
 * `openssl genpkey -algorithm ed25519`) or the standard base64 of a raw 32-byte
 * Ed25519 seed (`openssl rand -base64 32`). Fills key, key_id, public_key_pem. */
int audit_key_load(audit_ctx *ctx, const char *text, char *why, size_t whylen) IAS_MUSTCHECK;
void audit_key_free(audit_ctx *ctx);
/* The signed message of a checkpoint: canonical JSON
 * {"hash":"<hex>","key_id":"<hex>","seq":<n>,"type":"ias.audit.checkpoint.v1"}. */
int audit_checkpoint_statement(long long seq, const char *hash, const char *key_id, char *buf,
                               size_t len) IAS_MUSTCHECK;
/* True when signature (standard base64) is a valid signature of msg under ctx's key. */
bool audit_signature_valid(const audit_ctx *ctx, const char *msg, const char *signature_b64);
/* Signs a checkpoint of the current head when due (or always when force and
 * the head moved). *made tells whether one was written. */
int audit_checkpoint_maybe(audit_ctx *ctx, ias_pg *pg, bool force, bool *made) IAS_MUSTCHECK;
void *audit_checkpoint_main(void *ctx);

/* ---- handlers ---- */

void audit_h_list(ias_req *r, void *ctx);
void audit_h_verify(ias_req *r, void *ctx);
void audit_h_checkpoints(ias_req *r, void *ctx);
void audit_h_export(ias_req *r, void *ctx);

/* ---- shared helpers for handlers ---- */

/* A seq query parameter in [1, 2^53]; missing leaves *out. 400 answered on error. */
int audit_query_seq(ias_req *r, const char *name, long long *out) IAS_MUSTCHECK;

#endif
