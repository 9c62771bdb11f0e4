/* PostgreSQL through libpq: one connection per thread, parameterised queries,
 * transactions with retry, reconnect.
 *
 * Threading: an ias_pg belongs to the thread that uses it; never share one
 * between threads (libpq connections are not safe for concurrent use). Off-path
 * services give each worker thread its own ias_pg.
 *
 * Values: every query that carries a value passes it as a text parameter ($1,
 * $2, ...) through ias_pg_exec; values are never interpolated into SQL. The one
 * non-parameterised path is ias_pg_exec_script, for trusted SQL files
 * (migrations) only.
 *
 * Reconnect: a call that finds the connection broken (never connected, the
 * server restarted, the socket died) opens a new one. The socket therefore
 * changes across calls: never cache PQsocket() of an ias_pg. A statement that
 * fails because the connection was lost is retried once on a fresh connection,
 * but only when it ran outside a transaction. Such a statement may already have
 * been applied by the server before the connection broke, so autocommit writes
 * that must not happen twice need an idempotency key (a unique event id).
 * Inside a transaction a lost connection fails the statement and every later
 * one until ias_pg_rollback (or ias_pg_commit) ends the transaction, so nothing
 * silently runs outside the transaction the caller opened. */
#ifndef IAS_PG_H
#define IAS_PG_H

#include "ias/common.h"

/* libpq's result type, declared here so this header needs no libpq-fe.h. */
typedef struct pg_result PGresult;

typedef struct ias_pg ias_pg;

/* What went wrong in the last failed call. */
typedef enum {
    IAS_PG_ERR_NONE = 0,
    IAS_PG_ERR_CONN,   /* could not connect, or the connection was lost */
    IAS_PG_ERR_UNIQUE, /* unique_violation (23505): see ias_pg_last_constraint */
    IAS_PG_ERR_RETRY,  /* serialization_failure (40001) or deadlock_detected (40P01) */
    IAS_PG_ERR_OTHER,  /* anything else: see ias_pg_last_sqlstate and the message */
} ias_pg_errkind;

typedef enum {
    IAS_PG_READ_COMMITTED = 0,
    IAS_PG_REPEATABLE_READ,
    IAS_PG_SERIALIZABLE,
} ias_pg_isolation;

/* A handle; nothing is connected until the first call that needs the server.
 * dsn is a libpq URI or keyword string (copied; it may hold a password and is
 * never logged). connect_timeout_ms bounds each connection attempt (name
 * resolution excepted), enforced here with poll(), not by libpq. */
ias_pg *ias_pg_new(const char *dsn, int connect_timeout_ms);
void ias_pg_free(ias_pg *pg);

/* Applied at the next connect (application_name only if the DSN sets none).
 * Defaults: "ias", and the server's statement_timeout. timeout_ms 0 disables
 * the timeout. A statement timeout set while connected is also applied at
 * once; IAS_ERR if that fails. */
void ias_pg_set_application_name(ias_pg *pg, const char *name);
int ias_pg_set_statement_timeout(ias_pg *pg, int timeout_ms) IAS_MUSTCHECK;

/* Connects if there is no healthy connection. IAS_OK or IAS_ERR (kind CONN). */
int ias_pg_ensure(ias_pg *pg) IAS_MUSTCHECK;
/* Connects if needed and runs "SELECT 1" (for /ready). */
int ias_pg_ping(ias_pg *pg) IAS_MUSTCHECK;

/* /ready answers: pings at most once per ttl_ms and remembers the result, so a
 * probe storm costs no queries. IAS_OK, or IAS_ERR with why filled. */
typedef struct ias_pg_ready_cache {
    uint64_t checked_ms;
    bool ok;
} ias_pg_ready_cache;
int ias_pg_ready_cached(ias_pg *pg, ias_pg_ready_cache *cache, uint64_t ttl_ms, char *why,
                        size_t whylen);

/* Runs sql with nparams text parameters (values[i] NULL means SQL NULL). On
 * IAS_OK and out != NULL, *out holds the result (free with ias_pg_clear);
 * otherwise *out is NULL. On IAS_ERR see ias_pg_last_error. */
int ias_pg_exec(ias_pg *pg, const char *sql, int nparams, const char *const *values,
                PGresult **out) IAS_MUSTCHECK;

/* Transactions. begin fails if one is already open; rollback always leaves
 * the handle outside a transaction (IAS_OK even when the connection is gone,
 * since the server has then rolled back). commit reports IAS_ERR when the
 * transaction had failed and the server rolled it back instead. */
int ias_pg_begin(ias_pg *pg) IAS_MUSTCHECK;
int ias_pg_begin_iso(ias_pg *pg, ias_pg_isolation iso) IAS_MUSTCHECK;
int ias_pg_commit(ias_pg *pg) IAS_MUSTCHECK;
int ias_pg_rollback(ias_pg *pg);
bool ias_pg_in_tx(const ias_pg *pg);

/* Runs fn inside BEGIN ... COMMIT. When fn or the commit fails with kind RETRY
 * (serialization failure, deadlock), or fn fails with kind CONN (the
 * connection dropped before the commit was sent), the transaction is rolled
 * back and fn runs again, up to max_retries more times, with a short growing
 * pause. A connection lost during COMMIT itself is not retried: the outcome is
 * unknown, and IAS_ERR with kind CONN is returned. fn must return IAS_OK to
 * commit; any other value rolls back and is returned (after retries). fn may
 * run several times, so it must not keep side effects outside the database. */
typedef int (*ias_pg_tx_fn)(ias_pg *pg, void *arg);
int ias_pg_tx(ias_pg *pg, ias_pg_tx_fn fn, void *arg, int max_retries) IAS_MUSTCHECK;
int ias_pg_tx_iso(ias_pg *pg, ias_pg_isolation iso, ias_pg_tx_fn fn, void *arg,
                  int max_retries) IAS_MUSTCHECK;

/* The single non-parameterised path: sends sql (possibly several statements)
 * as one simple query. Only for trusted SQL shipped with ias (migration files),
 * never for anything containing outside input. No reconnect, no retry. */
int ias_pg_exec_script(ias_pg *pg, const char *sql) IAS_MUSTCHECK;

/* The last error (reset by every call that talks to the server). */
ias_pg_errkind ias_pg_last_error(const ias_pg *pg);
const char *ias_pg_last_message(const ias_pg *pg);    /* "" when none */
const char *ias_pg_last_sqlstate(const ias_pg *pg);   /* 5 chars or "" */
const char *ias_pg_last_constraint(const ias_pg *pg); /* violated constraint or "" */
/* 1-based character offset into the statement text of the error, 0 if none. */
int ias_pg_last_position(const ias_pg *pg);
const char *ias_pg_errkind_name(ias_pg_errkind kind);

/* Backend process id of the current connection, 0 if none (for tests/logs). */
int ias_pg_backend_pid(const ias_pg *pg);

/* Reading results. Rows and columns are 0-based; out-of-range is a bug. */
int ias_pg_nrows(const PGresult *res);
int ias_pg_ncols(const PGresult *res);
/* The text value, or NULL for SQL NULL. Valid until ias_pg_clear(res). */
const char *ias_pg_value(const PGresult *res, int row, int col);
bool ias_pg_is_null(const PGresult *res, int row, int col);
/* Typed reads: IAS_ERR for SQL NULL or a value that does not parse. */
int ias_pg_value_ll(const PGresult *res, int row, int col, long long *out) IAS_MUSTCHECK;
int ias_pg_value_bool(const PGresult *res, int row, int col, bool *out) IAS_MUSTCHECK;
/* Column number by name, -1 if absent. */
int ias_pg_col(const PGresult *res, const char *name);
/* Rows affected by INSERT/UPDATE/DELETE (0 when not applicable). */
long long ias_pg_affected(const PGresult *res);
void ias_pg_clear(PGresult *res);

/* A copy of dsn with the database name replaced (keyword form, values
 * quoted), or NULL if dsn does not parse. For tools and tests that create
 * databases. Caller frees. */
char *ias_pg_dsn_with_dbname(const char *dsn, const char *dbname);

#endif
