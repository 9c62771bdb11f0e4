/* PostgreSQL through libpq: see ias/pg.h for the rules (one thread per handle,
 * parameters only, reconnect and retry policy). */
#include "ias/pg.h"
#include "ias/log.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define PG_MSG_MAX 1024
#define PG_NAME_MAX 128

typedef struct pg_err {
    ias_pg_errkind kind;
    int position;
    char sqlstate[6];
    char constraint[PG_NAME_MAX];
    char msg[PG_MSG_MAX];
} pg_err;

struct ias_pg {
    char *dsn;
    int connect_timeout_ms;
    int statement_timeout_ms; /* -1: leave the server's setting */
    char app_name[64];
    PGconn *conn;
    /* The connection died inside a transaction: refuse statements until the
     * caller ends the transaction, so none runs in autocommit by accident. */
    bool tx_lost;
    pg_err err;
};

static void err_clear(ias_pg *pg)
{
    pg->err.kind = IAS_PG_ERR_NONE;
    pg->err.position = 0;
    pg->err.sqlstate[0] = '\0';
    pg->err.constraint[0] = '\0';
    pg->err.msg[0] = '\0';
}

/* libpq messages end with a newline and may span lines; keep one line with
 * single spaces. */
static void copy_msg(char *dst, size_t len, const char *src)
{
    size_t o = 0;

    for (; src && *src && o + 1 < len; src++) {
        char c = *src;
        if (c == '\n' || c == '\r' || c == '\t')
            c = ' ';
        if (c == ' ' && (o == 0 || dst[o - 1] == ' '))
            continue;
        dst[o++] = c;
    }
    while (o > 0 && dst[o - 1] == ' ')
        o--;
    dst[o] = '\0';
}

static void err_set(ias_pg *pg, ias_pg_errkind kind, const char *sqlstate, const char *msg)
{
    err_clear(pg);
    pg->err.kind = kind;
    if (sqlstate)
        (void)ias_strlcpy(pg->err.sqlstate, sqlstate, sizeof(pg->err.sqlstate));
    copy_msg(pg->err.msg, sizeof(pg->err.msg), msg && *msg ? msg : "unknown error");
}

static bool sqlstate_is_conn(const char *st)
{
    /* Class 08 (connection exception) and the shutdown codes of class 57. */
    return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
           strcmp(st, "57P03") == 0;
}

/* Fills pg->err from a failed result (res may be NULL). */
static void err_from_result(ias_pg *pg, const PGresult *res)
{
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
    const char *con = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    ias_pg_errkind kind = IAS_PG_ERR_OTHER;

    if (!st)
        st = "";
    if (!msg || !*msg)
        msg = res ? PQresultErrorMessage(res) : NULL;
    if ((!msg || !*msg) && pg->conn)
        msg = PQerrorMessage(pg->conn);

    if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD || sqlstate_is_conn(st))
        kind = IAS_PG_ERR_CONN;
    else if (strcmp(st, "23505") == 0)
        kind = IAS_PG_ERR_UNIQUE;
    else if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
        kind = IAS_PG_ERR_RETRY;
    err_set(pg, kind, st, msg);
    if (pos)
        pg->err.position = atoi(pos);
    if (con)
        (void)ias_strlcpy(pg->err.constraint, con, sizeof(pg->err.constraint));
}

static void notice_cb(void *arg, const char *message)
{
    char line[PG_MSG_MAX];

    IAS_UNUSED(arg);
    copy_msg(line, sizeof(line), message);
    ias_debug(NULL, "postgres: %s", line);
}

static void drop_conn(ias_pg *pg)
{
    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }
}

ias_pg *ias_pg_new(const char *dsn, int connect_timeout_ms)
{
    ias_pg *pg = ias_xcalloc(1, sizeof(*pg));

    pg->dsn = ias_xstrdup(dsn);
    pg->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 5000;
    pg->statement_timeout_ms = -1;
    (void)ias_strlcpy(pg->app_name, "ias", sizeof(pg->app_name));
    err_clear(pg);
    return pg;
}

void ias_pg_free(ias_pg *pg)
{
    if (!pg)
        return;
    drop_conn(pg);
    /* The DSN may hold a password: do not leave it in freed memory. */
    explicit_bzero(pg->dsn, strlen(pg->dsn));
    free(pg->dsn);
    free(pg);
}

void ias_pg_set_application_name(ias_pg *pg, const char *name)
{
    if (name && *name)
        (void)ias_strlcpy(pg->app_name, name, sizeof(pg->app_name));
}

/* Runs set_config for the statement timeout on the current connection. */
static int apply_statement_timeout(ias_pg *pg)
{
    char val[32];
    const char *params[1] = {val};
    PGresult *res;
    int rc = IAS_OK;

    if (pg->statement_timeout_ms < 0)
        return IAS_OK;
    snprintf(val, sizeof(val), "%d", pg->statement_timeout_ms);
    res = PQexecParams(pg->conn, "SELECT set_config('statement_timeout', $1, false)", 1, NULL,
                       params, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        err_from_result(pg, res);
        rc = IAS_ERR;
    }
    PQclear(res);
    return rc;
}

/* One connection attempt bounded by connect_timeout_ms: PQconnectStartParams
 * and PQconnectPoll driven by poll() with a deadline, because libpq's own
 * connect_timeout only applies to its blocking connect. */
static int pg_connect(ias_pg *pg)
{
    /* dbname comes last so that whatever the DSN sets overrides these. */
    const char *kw[] = {"keepalives",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "fallback_application_name",
                        "dbname",
                        NULL};
    const char *val[] = {"1", "30", "10", "3", pg->app_name, pg->dsn, NULL};
    uint64_t deadline = ias_now_ms() + (uint64_t)pg->connect_timeout_ms;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    PGconn *c;

    drop_conn(pg);
    c = PQconnectStartParams(kw, val, 1);
    if (!c)
        ias_die("fatal: out of memory creating a PostgreSQL connection");
    if (PQstatus(c) == CONNECTION_BAD) {
        err_set(pg, IAS_PG_ERR_CONN, "08001", PQerrorMessage(c));
        PQfinish(c);
        return IAS_ERR;
    }
    while (st != PGRES_POLLING_OK) {
        struct pollfd pfd;
        uint64_t now = ias_now_ms();
        int sock, r;

        if (st == PGRES_POLLING_FAILED) {
            err_set(pg, IAS_PG_ERR_CONN, "08001", PQerrorMessage(c));
            PQfinish(c);
            return IAS_ERR;
        }
        if (now >= deadline) {
            char msg[96];
            snprintf(msg, sizeof(msg), "connection timed out after %d ms", pg->connect_timeout_ms);
            err_set(pg, IAS_PG_ERR_CONN, "08001", msg);
            PQfinish(c);
            return IAS_ERR;
        }
        /* The socket may change between polls (several hosts, SSL retry). */
        sock = PQsocket(c);
        if (sock < 0) {
            err_set(pg, IAS_PG_ERR_CONN, "08001", "connection has no socket");
            PQfinish(c);
            return IAS_ERR;
        }
        pfd.fd = sock;
        pfd.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        pfd.revents = 0;
        r = poll(&pfd, 1, (int)(deadline - now));
        if (r < 0 && errno != EINTR) {
            err_set(pg, IAS_PG_ERR_CONN, "08001", strerror(errno));
            PQfinish(c);
            return IAS_ERR;
        }
        if (r <= 0)
            continue;
        st = PQconnectPoll(c);
    }
    pg->conn = c;
    pg->tx_lost = false;
    PQsetNoticeProcessor(c, notice_cb, pg);
    if (apply_statement_timeout(pg) != IAS_OK) {
        drop_conn(pg);
        return IAS_ERR;
    }
    return IAS_OK;
}

int ias_pg_ensure(ias_pg *pg)
{
    err_clear(pg);
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        return IAS_OK;
    if (pg->conn)
        ias_warn(NULL, "postgres connection is broken; reconnecting");
    return pg_connect(pg);
}

int ias_pg_set_statement_timeout(ias_pg *pg, int timeout_ms)
{
    pg->statement_timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
    err_clear(pg);
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK)
        return IAS_OK;
    return apply_statement_timeout(pg);
}

/* Runs one statement (params may be 0) and classifies the outcome. script
 * selects the simple-query protocol (several statements, no parameters). */
static int run(ias_pg *pg, const char *sql, int nparams, const char *const *values, PGresult **out,
               bool script)
{
    if (out)
        *out = NULL;
    for (int attempt = 0;; attempt++) {
        PGTransactionStatusType before;
        ExecStatusType status;
        PGresult *res;

        if (pg->tx_lost) {
            err_set(pg, IAS_PG_ERR_CONN, "08006",
                    "connection lost inside a transaction; roll it back first");
            return IAS_ERR;
        }
        if (ias_pg_ensure(pg) != IAS_OK)
            return IAS_ERR;
        before = PQtransactionStatus(pg->conn);
        if (script)
            res = PQexec(pg->conn, sql);
        else
            res = PQexecParams(pg->conn, sql, nparams, NULL, values, NULL, NULL, 0);
        status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        /* A script of only comments is a valid (empty) migration. */
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ||
            (script && status == PGRES_EMPTY_QUERY)) {
            if (out)
                *out = res;
            else
                PQclear(res);
            return IAS_OK;
        }
        if (status == PGRES_FATAL_ERROR || status == PGRES_NONFATAL_ERROR) {
            err_from_result(pg, res);
        } else if (status == PGRES_EMPTY_QUERY) {
            err_set(pg, IAS_PG_ERR_OTHER, "", "empty query");
        } else {
            /* COPY would leave the connection in copy mode: start afresh. */
            err_set(pg, IAS_PG_ERR_OTHER, "", "unsupported result (COPY is not supported)");
            PQclear(res);
            drop_conn(pg);
            pg->tx_lost = before != PQTRANS_IDLE;
            return IAS_ERR;
        }
        PQclear(res);
        if (pg->err.kind != IAS_PG_ERR_CONN)
            return IAS_ERR;
        ias_warn(NULL, "postgres connection lost: %s", pg->err.msg);
        drop_conn(pg);
        if (before != PQTRANS_IDLE) {
            pg->tx_lost = true;
            return IAS_ERR;
        }
        /* Outside a transaction: one retry on a fresh connection. */
        if (script || attempt > 0)
            return IAS_ERR;
    }
}

int ias_pg_exec(ias_pg *pg, const char *sql, int nparams, const char *const *values, PGresult **out)
{
    if (nparams < 0 || (nparams > 0 && !values))
        ias_die("bug: ias_pg_exec called with %d parameters and no values", nparams);
    return run(pg, sql, nparams, values, out, false);
}

int ias_pg_exec_script(ias_pg *pg, const char *sql)
{
    return run(pg, sql, 0, NULL, NULL, true);
}

bool ias_pg_in_tx(const ias_pg *pg)
{
    if (pg->tx_lost)
        return true;
    return pg->conn && PQstatus(pg->conn) == CONNECTION_OK &&
           PQtransactionStatus(pg->conn) != PQTRANS_IDLE;
}

int ias_pg_begin_iso(ias_pg *pg, ias_pg_isolation iso)
{
    static const char *const begin_sql[] = {
        [IAS_PG_READ_COMMITTED] = "BEGIN ISOLATION LEVEL READ COMMITTED",
        [IAS_PG_REPEATABLE_READ] = "BEGIN ISOLATION LEVEL REPEATABLE READ",
        [IAS_PG_SERIALIZABLE] = "BEGIN ISOLATION LEVEL SERIALIZABLE",
    };

    if ((unsigned)iso >= IAS_ARRAY_LEN(begin_sql))
        ias_die("bug: unknown isolation level %d", (int)iso);
    if (ias_pg_in_tx(pg)) {
        err_set(pg, IAS_PG_ERR_OTHER, "25001", "a transaction is already open");
        return IAS_ERR;
    }
    return run(pg, begin_sql[iso], 0, NULL, NULL, false);
}

int ias_pg_begin(ias_pg *pg)
{
    return ias_pg_begin_iso(pg, IAS_PG_READ_COMMITTED);
}

int ias_pg_commit(ias_pg *pg)
{
    PGresult *res = NULL;
    bool rolled_back;

    if (pg->tx_lost) {
        pg->tx_lost = false;
        err_set(pg, IAS_PG_ERR_CONN, "08006", "connection lost inside the transaction");
        return IAS_ERR;
    }
    if (!ias_pg_in_tx(pg)) {
        err_set(pg, IAS_PG_ERR_OTHER, "25P01", "no transaction is open");
        return IAS_ERR;
    }
    if (run(pg, "COMMIT", 0, NULL, &res, false) != IAS_OK) {
        /* A connection lost during COMMIT leaves the outcome unknown. */
        pg->tx_lost = false;
        return IAS_ERR;
    }
    /* COMMIT of a failed transaction "succeeds" with the tag ROLLBACK. */
    rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
    PQclear(res);
    if (rolled_back) {
        err_set(pg, IAS_PG_ERR_OTHER, "25P02",
                "the transaction had failed and was rolled back instead of committed");
        return IAS_ERR;
    }
    return IAS_OK;
}

int ias_pg_rollback(ias_pg *pg)
{
    if (pg->tx_lost) {
        pg->tx_lost = false;
        return IAS_OK;
    }
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK ||
        PQtransactionStatus(pg->conn) == PQTRANS_IDLE)
        return IAS_OK;
    if (run(pg, "ROLLBACK", 0, NULL, NULL, false) != IAS_OK) {
        /* The server rolls back when the connection goes; start clean. */
        pg->tx_lost = false;
        drop_conn(pg);
    }
    return IAS_OK;
}

static void tx_backoff(int attempt)
{
    long ms = 5L << (attempt < 6 ? attempt : 6);
    struct timespec ts;

    if (ms > 200)
        ms = 200;
    ms += (long)(ias_now_us() % 7); /* de-synchronise competing retriers */
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int ias_pg_tx_iso(ias_pg *pg, ias_pg_isolation iso, ias_pg_tx_fn fn, void *arg, int max_retries)
{
    for (int attempt = 0;; attempt++) {
        bool more = attempt < max_retries;
        pg_err saved;
        int rc;

        if (ias_pg_begin_iso(pg, iso) != IAS_OK) {
            if (pg->err.kind == IAS_PG_ERR_CONN && more) {
                tx_backoff(attempt);
                continue;
            }
            return IAS_ERR;
        }
        rc = fn(pg, arg);
        if (rc == IAS_OK) {
            if (ias_pg_commit(pg) == IAS_OK)
                return IAS_OK;
            if (pg->err.kind == IAS_PG_ERR_RETRY && more) {
                ias_debug(NULL, "postgres transaction retried after commit failure: %s",
                          pg->err.msg);
                tx_backoff(attempt);
                continue;
            }
            return IAS_ERR;
        }
        saved = pg->err;
        (void)ias_pg_rollback(pg);
        pg->err = saved;
        if ((saved.kind == IAS_PG_ERR_RETRY || saved.kind == IAS_PG_ERR_CONN) && more) {
            ias_debug(NULL, "postgres transaction retried: %s", saved.msg);
            tx_backoff(attempt);
            continue;
        }
        return rc;
    }
}

int ias_pg_tx(ias_pg *pg, ias_pg_tx_fn fn, void *arg, int max_retries)
{
    return ias_pg_tx_iso(pg, IAS_PG_READ_COMMITTED, fn, arg, max_retries);
}

int ias_pg_ping(ias_pg *pg)
{
    return ias_pg_exec(pg, "SELECT 1", 0, NULL, NULL);
}

ias_pg_errkind ias_pg_last_error(const ias_pg *pg)
{
    return pg->err.kind;
}

const char *ias_pg_last_message(const ias_pg *pg)
{
    return pg->err.msg;
}

const char *ias_pg_last_sqlstate(const ias_pg *pg)
{
    return pg->err.sqlstate;
}

const char *ias_pg_last_constraint(const ias_pg *pg)
{
    return pg->err.constraint;
}

int ias_pg_last_position(const ias_pg *pg)
{
    return pg->err.position;
}

const char *ias_pg_errkind_name(ias_pg_errkind kind)
{
    switch (kind) {
    case IAS_PG_ERR_NONE:
        return "none";
    case IAS_PG_ERR_CONN:
        return "connection";
    case IAS_PG_ERR_UNIQUE:
        return "unique_violation";
    case IAS_PG_ERR_RETRY:
        return "serialization";
    case IAS_PG_ERR_OTHER:
        return "other";
    }
    return "unknown";
}

int ias_pg_backend_pid(const ias_pg *pg)
{
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK)
        return 0;
    return PQbackendPID(pg->conn);
}

static void check_cell(const PGresult *res, int row, int col)
{
    if (!res || row < 0 || col < 0 || row >= PQntuples(res) || col >= PQnfields(res))
        ias_die("bug: result cell (%d,%d) out of range", row, col);
}

int ias_pg_nrows(const PGresult *res)
{
    return res ? PQntuples(res) : 0;
}

int ias_pg_ncols(const PGresult *res)
{
    return res ? PQnfields(res) : 0;
}

const char *ias_pg_value(const PGresult *res, int row, int col)
{
    check_cell(res, row, col);
    if (PQgetisnull(res, row, col))
        return NULL;
    return PQgetvalue(res, row, col);
}

bool ias_pg_is_null(const PGresult *res, int row, int col)
{
    check_cell(res, row, col);
    return PQgetisnull(res, row, col) != 0;
}

int ias_pg_value_ll(const PGresult *res, int row, int col, long long *out)
{
    const char *v = ias_pg_value(res, row, col);
    char *end;
    long long n;

    if (!v || !*v)
        return IAS_ERR;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno != 0 || *end != '\0')
        return IAS_ERR;
    *out = n;
    return IAS_OK;
}

int ias_pg_value_bool(const PGresult *res, int row, int col, bool *out)
{
    const char *v = ias_pg_value(res, row, col);

    if (!v)
        return IAS_ERR;
    if (strcmp(v, "t") == 0)
        *out = true;
    else if (strcmp(v, "f") == 0)
        *out = false;
    else
        return IAS_ERR;
    return IAS_OK;
}

int ias_pg_col(const PGresult *res, const char *name)
{
    return res ? PQfnumber(res, name) : -1;
}

long long ias_pg_affected(const PGresult *res)
{
    const char *v = res ? PQcmdTuples((PGresult *)res) : "";

    return (v && *v) ? strtoll(v, NULL, 10) : 0;
}

void ias_pg_clear(PGresult *res)
{
    PQclear(res);
}

/* Appends "key='value' " with libpq's quoting (backslash and quote escaped). */
static void append_kv(char **buf, size_t *len, size_t *cap, const char *key, const char *val)
{
    size_t need = strlen(key) + 2 * strlen(val) + 5;

    if (*len + need + 1 > *cap) {
        *cap = (*len + need + 1) * 2;
        *buf = ias_xrealloc(*buf, *cap);
    }
    *len += (size_t)sprintf(*buf + *len, "%s%s='", *len ? " " : "", key);
    for (const char *p = val; *p; p++) {
        if (*p == '\'' || *p == '\\')
            (*buf)[(*len)++] = '\\';
        (*buf)[(*len)++] = *p;
    }
    (*buf)[(*len)++] = '\'';
    (*buf)[*len] = '\0';
}

char *ias_pg_dsn_with_dbname(const char *dsn, const char *dbname)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &errmsg);
    char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!opts) {
        PQfreemem(errmsg);
        return NULL;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "dbname") == 0 || !o->val)
            continue;
        append_kv(&buf, &len, &cap, o->keyword, o->val);
    }
    append_kv(&buf, &len, &cap, "dbname", dbname);
    PQconninfoFree(opts);
    return buf;
}

int ias_pg_ready_cached(ias_pg *pg, ias_pg_ready_cache *cache, uint64_t ttl_ms, char *why,
                        size_t whylen)
{
    uint64_t now = ias_now_ms();

    if (cache->checked_ms == 0 || now - cache->checked_ms > ttl_ms) {
        cache->ok = ias_pg_ping(pg) == IAS_OK;
        cache->checked_ms = now;
    }
    if (!cache->ok) {
        snprintf(why, whylen, "postgresql unreachable");
        return IAS_ERR;
    }
    return IAS_OK;
}
