/* ias_pg against a real PostgreSQL (IAS_PG_DSN): parameters, transactions,
 * retries, error kinds, timeouts and reconnects. Skips without IAS_PG_DSN. */
#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ias/common.h"
#include "ias/pg.h"

static const char *dsn;
static char table[96];

/* SQL with the test table's name (a generated identifier, not a value). */
static char *sqlf(const char *fmt)
{
    char *out = NULL;
    const char *p = strstr(fmt, "%T");
    assert_non_null(p);
    out = ias_xasprintf("%.*s%s%s", (int)(p - fmt), fmt, table, p + 2);
    return out;
}

static void exec_ok(ias_pg *pg, const char *sql, int n, const char *const *v, PGresult **out)
{
    if (ias_pg_exec(pg, sql, n, v, out) != IAS_OK)
        fail_msg("%s: %s (%s)", sql, ias_pg_last_message(pg), ias_pg_last_sqlstate(pg));
}

static void exec_t(ias_pg *pg, const char *fmt, int n, const char *const *v, PGresult **out)
{
    char *sql = sqlf(fmt);
    exec_ok(pg, sql, n, v, out);
    free(sql);
}

static long long count_rows(ias_pg *pg, const char *where_v)
{
    const char *p[1] = {where_v};
    PGresult *res = NULL;
    long long n = -1;

    exec_t(pg, "SELECT count(*) FROM %T WHERE v = $1", 1, p, &res);
    assert_int_equal(ias_pg_value_ll(res, 0, 0, &n), IAS_OK);
    ias_pg_clear(res);
    return n;
}

/* Kills pg's backend from another connection and waits until it is gone. */
static void terminate_backend(ias_pg *pg)
{
    char pid[32];
    const char *p[1] = {pid};
    ias_pg *killer = ias_pg_new(dsn, 5000);
    PGresult *res = NULL;

    snprintf(pid, sizeof(pid), "%d", ias_pg_backend_pid(pg));
    assert_int_not_equal(ias_pg_backend_pid(pg), 0);
    exec_ok(killer, "SELECT pg_terminate_backend($1::int, 5000)", 1, p, &res);
    assert_string_equal(ias_pg_value(res, 0, 0), "t");
    ias_pg_clear(res);
    ias_pg_free(killer);
}

static int group_setup(void **state)
{
    ias_pg *pg;
    char *sql;

    dsn = ias_test_env("IAS_PG_DSN");
    if (!dsn)
        return 0;
    ias_test_unique("ias_test_pg", table, sizeof(table));
    pg = ias_pg_new(dsn, 5000);
    sql = sqlf("CREATE TABLE %T (id bigserial PRIMARY KEY, v text, n bigint, b boolean, "
               "k text UNIQUE)");
    if (ias_pg_exec(pg, sql, 0, NULL, NULL) != IAS_OK) {
        fprintf(stderr, "setup: %s\n", ias_pg_last_message(pg));
        free(sql);
        ias_pg_free(pg);
        return -1;
    }
    free(sql);
    ias_pg_free(pg);
    return 0;
}

static int group_teardown(void **state)
{
    ias_pg *pg;
    char *sql;

    if (!dsn)
        return 0;
    pg = ias_pg_new(dsn, 5000);
    sql = sqlf("DROP TABLE IF EXISTS %T");
    if (ias_pg_exec(pg, sql, 0, NULL, NULL) != IAS_OK)
        fprintf(stderr, "teardown: %s\n", ias_pg_last_message(pg));
    free(sql);
    ias_pg_free(pg);
    return 0;
}

static void need_pg(void)
{
    if (!dsn)
        skip();
}

static void test_params_roundtrip(void **state)
{
    need_pg();
    char big[100001];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *odd[] = {
        "O'Reilly",
        "\"double\" and 'single' quotes",
        "back\\slash \\' \\\\",
        "$1 $2 ?",
        "'); DROP TABLE users; --",
        "ünïcödé ✓ 😀 中文 עברית",
        "line\nbreak\ttab\r",
        "",
        big,
    };
    ias_pg *pg = ias_pg_new(dsn, 5000);

    for (size_t i = 0; i < IAS_ARRAY_LEN(odd); i++) {
        char nbuf[32];
        const char *ins[3] = {odd[i], nbuf, i % 2 ? "true" : "false"};
        const char *sel[1];
        PGresult *res = NULL;
        long long id = 0, n = 0;
        bool b = false;

        snprintf(nbuf, sizeof(nbuf), "%lld", -9000000000000000000LL + (long long)i);
        exec_t(pg, "INSERT INTO %T (v, n, b) VALUES ($1, $2, $3) RETURNING id", 3, ins, &res);
        assert_int_equal(ias_pg_nrows(res), 1);
        assert_int_equal(ias_pg_affected(res), 1);
        assert_int_equal(ias_pg_value_ll(res, 0, 0, &id), IAS_OK);
        ias_pg_clear(res);

        char idbuf[32];
        snprintf(idbuf, sizeof(idbuf), "%lld", id);
        sel[0] = idbuf;
        exec_t(pg, "SELECT v, n, b, length(v) FROM %T WHERE id = $1", 1, sel, &res);
        assert_int_equal(ias_pg_nrows(res), 1);
        assert_int_equal(ias_pg_ncols(res), 4);
        assert_string_equal(ias_pg_value(res, 0, ias_pg_col(res, "v")), odd[i]);
        assert_false(ias_pg_is_null(res, 0, 0));
        assert_int_equal(ias_pg_value_ll(res, 0, 1, &n), IAS_OK);
        assert_int_equal(n, -9000000000000000000LL + (long long)i);
        assert_int_equal(ias_pg_value_bool(res, 0, 2, &b), IAS_OK);
        assert_true(b == (i % 2 == 1));
        assert_int_equal(ias_pg_col(res, "nope"), -1);
        ias_pg_clear(res);

        /* The value is matched as data, never as SQL. */
        assert_int_equal(count_rows(pg, odd[i]), 1);
    }

    /* NULL is not the empty string. */
    {
        const char *ins[1] = {NULL};
        PGresult *res = NULL;
        long long n;
        bool b;

        exec_t(pg, "INSERT INTO %T (v) VALUES ($1) RETURNING v, n, b", 1, ins, &res);
        assert_null(ias_pg_value(res, 0, 0));
        assert_true(ias_pg_is_null(res, 0, 0));
        assert_int_equal(ias_pg_value_ll(res, 0, 1, &n), IAS_ERR);
        assert_int_equal(ias_pg_value_bool(res, 0, 2, &b), IAS_ERR);
        ias_pg_clear(res);
        assert_int_equal(count_rows(pg, ""), 1);
    }

    /* UPDATE reports the rows it changed; out may be NULL. */
    {
        const char *p[1] = {"O'Reilly"};
        PGresult *res = NULL;
        exec_t(pg, "UPDATE %T SET n = 0 WHERE v = $1", 1, p, &res);
        assert_int_equal(ias_pg_affected(res), 1);
        ias_pg_clear(res);
        exec_t(pg, "UPDATE %T SET n = 1 WHERE v = $1", 1, p, NULL);
    }
    assert_int_equal(ias_pg_ping(pg), IAS_OK);
    ias_pg_free(pg);
}

static void test_transactions(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    const char *p[1] = {"tx-rolled-back"};
    const char *q[1] = {"tx-committed"};
    const char *r[1] = {"tx-failed"};

    assert_false(ias_pg_in_tx(pg));
    assert_int_equal(ias_pg_begin(pg), IAS_OK);
    assert_true(ias_pg_in_tx(pg));
    exec_t(pg, "INSERT INTO %T (v) VALUES ($1)", 1, p, NULL);
    assert_int_equal(ias_pg_rollback(pg), IAS_OK);
    assert_false(ias_pg_in_tx(pg));
    assert_int_equal(count_rows(pg, p[0]), 0);

    assert_int_equal(ias_pg_begin_iso(pg, IAS_PG_SERIALIZABLE), IAS_OK);
    exec_t(pg, "INSERT INTO %T (v) VALUES ($1)", 1, q, NULL);
    /* Nested begin is a caller bug, reported as an error. */
    assert_int_equal(ias_pg_begin(pg), IAS_ERR);
    assert_int_equal(ias_pg_commit(pg), IAS_OK);
    assert_int_equal(count_rows(pg, q[0]), 1);

    /* Commit without a transaction. */
    assert_int_equal(ias_pg_commit(pg), IAS_ERR);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_OTHER);

    /* A failed statement poisons the transaction; COMMIT then rolls back and
     * says so instead of pretending success. */
    assert_int_equal(ias_pg_begin(pg), IAS_OK);
    exec_t(pg, "INSERT INTO %T (v) VALUES ($1)", 1, r, NULL);
    assert_int_equal(ias_pg_exec(pg, "SELECT 1/0", 0, NULL, NULL), IAS_ERR);
    assert_string_equal(ias_pg_last_sqlstate(pg), "22012");
    assert_int_equal(ias_pg_commit(pg), IAS_ERR);
    assert_false(ias_pg_in_tx(pg));
    assert_int_equal(count_rows(pg, r[0]), 0);
    ias_pg_free(pg);
}

static void test_error_kinds(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    const char *p[2] = {"uniq", "same-key"};
    char *constraint = ias_xasprintf("%s_k_key", table);
    PGresult *res = NULL;

    exec_t(pg, "INSERT INTO %T (v, k) VALUES ($1, $2)", 2, p, NULL);
    char *sql = sqlf("INSERT INTO %T (v, k) VALUES ($1, $2)");
    assert_int_equal(ias_pg_exec(pg, sql, 2, p, &res), IAS_ERR);
    free(sql);
    assert_null(res);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_UNIQUE);
    assert_string_equal(ias_pg_last_sqlstate(pg), "23505");
    assert_string_equal(ias_pg_last_constraint(pg), constraint);
    assert_true(strstr(ias_pg_last_message(pg), "duplicate key") != NULL);
    /* The message carries no key values (no DETAIL), so logging it leaks nothing. */
    assert_null(strstr(ias_pg_last_message(pg), "same-key"));
    free(constraint);

    /* Syntax error: OTHER, with the position of the error. */
    assert_int_equal(ias_pg_exec(pg, "SELECT 1 FROMM nowhere", 0, NULL, NULL), IAS_ERR);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_OTHER);
    assert_string_equal(ias_pg_last_sqlstate(pg), "42601");
    assert_true(ias_pg_last_position(pg) > 0);

    /* A bad parameter value is an error, not a crash or a string. */
    const char *bad[1] = {"not-a-number"};
    assert_int_equal(ias_pg_exec(pg, "SELECT $1::bigint", 1, bad, NULL), IAS_ERR);
    assert_string_equal(ias_pg_last_sqlstate(pg), "22P02");

    /* COPY is refused without leaving the connection stuck in copy mode. */
    assert_int_equal(ias_pg_exec(pg, "COPY (SELECT 1) TO STDOUT", 0, NULL, NULL), IAS_ERR);
    assert_false(ias_pg_in_tx(pg));

    /* The next good statement clears the error. */
    exec_ok(pg, "SELECT 1", 0, NULL, NULL);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_NONE);
    assert_string_equal(ias_pg_last_message(pg), "");
    assert_string_equal(ias_pg_errkind_name(IAS_PG_ERR_UNIQUE), "unique_violation");
    ias_pg_free(pg);
}

typedef struct conflict_arg {
    ias_pg *other;
    int calls;
    int conflict_calls; /* how many first calls meet a concurrent update */
    const char *id;
} conflict_arg;

/* REPEATABLE READ: read the row, let another connection update it, then
 * update it here -> serialization failure (40001) while conflicts last. */
static int conflicting_update(ias_pg *pg, void *argp)
{
    conflict_arg *a = argp;
    const char *p[1] = {a->id};
    char *sel = sqlf("SELECT n FROM %T WHERE id = $1");
    char *upd = sqlf("UPDATE %T SET n = n + 1 WHERE id = $1");
    int rc = IAS_OK;

    a->calls++;
    if (ias_pg_exec(pg, sel, 1, p, NULL) != IAS_OK)
        rc = IAS_ERR;
    if (rc == IAS_OK && a->calls <= a->conflict_calls)
        exec_ok(a->other, upd, 1, p, NULL);
    if (rc == IAS_OK && ias_pg_exec(pg, upd, 1, p, NULL) != IAS_OK)
        rc = IAS_ERR;
    free(sel);
    free(upd);
    return rc;
}

static void test_tx_retry_serialization(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    ias_pg *other = ias_pg_new(dsn, 5000);
    const char *p[1] = {"counter"};
    PGresult *res = NULL;
    long long n = -1;
    char id[32];

    exec_t(pg, "INSERT INTO %T (v, n) VALUES ($1, 0) RETURNING id", 1, p, &res);
    snprintf(id, sizeof(id), "%s", ias_pg_value(res, 0, 0));
    ias_pg_clear(res);

    /* One conflict, retried once: the transaction's own +1 lands on top of
     * the concurrent +1. */
    conflict_arg a = {other, 0, 1, id};
    assert_int_equal(ias_pg_tx_iso(pg, IAS_PG_REPEATABLE_READ, conflicting_update, &a, 3), IAS_OK);
    assert_int_equal(a.calls, 2);
    const char *q[1] = {id};
    exec_t(pg, "SELECT n FROM %T WHERE id = $1", 1, q, &res);
    assert_int_equal(ias_pg_value_ll(res, 0, 0, &n), IAS_OK);
    ias_pg_clear(res);
    assert_int_equal(n, 2);

    /* Conflicts every time: gives up after max_retries, reporting RETRY. */
    conflict_arg b = {other, 0, 100, id};
    assert_int_equal(ias_pg_tx_iso(pg, IAS_PG_REPEATABLE_READ, conflicting_update, &b, 2), IAS_ERR);
    assert_int_equal(b.calls, 3);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_RETRY);
    assert_string_equal(ias_pg_last_sqlstate(pg), "40001");
    assert_false(ias_pg_in_tx(pg));

    ias_pg_free(other);
    ias_pg_free(pg);
}

typedef struct insert_arg {
    const char *v;
    int calls;
    int fail_calls;    /* return IAS_ERR (no db error) on these first calls */
    int kill_on_calls; /* lose the connection on these first calls */
} insert_arg;

static int insert_fn(ias_pg *pg, void *argp)
{
    insert_arg *a = argp;
    const char *p[1] = {a->v};
    char *sql = sqlf("INSERT INTO %T (v) VALUES ($1)");
    int rc;

    a->calls++;
    rc = ias_pg_exec(pg, sql, 1, p, NULL);
    free(sql);
    if (rc != IAS_OK)
        return rc;
    if (a->calls <= a->kill_on_calls) {
        terminate_backend(pg);
        /* The next statement finds the connection gone: kind CONN. */
        if (ias_pg_exec(pg, "SELECT 1", 0, NULL, NULL) == IAS_OK)
            fail_msg("a statement on a killed connection succeeded");
        assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_CONN);
        return IAS_ERR;
    }
    if (a->calls <= a->fail_calls)
        return IAS_ERR;
    return IAS_OK;
}

static void test_tx_fn_error_not_retried(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    insert_arg a = {"fn-error", 0, 100, 0};

    assert_int_equal(ias_pg_tx(pg, insert_fn, &a, 5), IAS_ERR);
    assert_int_equal(a.calls, 1);
    assert_false(ias_pg_in_tx(pg));
    assert_int_equal(count_rows(pg, "fn-error"), 0);

    insert_arg ok = {"fn-ok", 0, 0, 0};
    assert_int_equal(ias_pg_tx(pg, insert_fn, &ok, 5), IAS_OK);
    assert_int_equal(ok.calls, 1);
    assert_int_equal(count_rows(pg, "fn-ok"), 1);
    ias_pg_free(pg);
}

static void test_tx_retry_connection_lost(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    insert_arg a = {"conn-lost-retried", 0, 0, 1};

    assert_int_equal(ias_pg_tx(pg, insert_fn, &a, 3), IAS_OK);
    assert_int_equal(a.calls, 2);
    /* Exactly once: the first attempt died with its connection. */
    assert_int_equal(count_rows(pg, "conn-lost-retried"), 1);
    ias_pg_free(pg);
}

static void test_conn_lost_inside_tx(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    const char *p[1] = {"lost-in-tx"};
    int pid;

    assert_int_equal(ias_pg_begin(pg), IAS_OK);
    exec_t(pg, "INSERT INTO %T (v) VALUES ($1)", 1, p, NULL);
    pid = ias_pg_backend_pid(pg);
    terminate_backend(pg);

    /* Not retried inside a transaction ... */
    char *sql = sqlf("INSERT INTO %T (v) VALUES ($1)");
    assert_int_equal(ias_pg_exec(pg, sql, 1, p, NULL), IAS_ERR);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_CONN);
    /* ... and nothing runs in autocommit until the caller ends it. */
    assert_int_equal(ias_pg_exec(pg, sql, 1, p, NULL), IAS_ERR);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_CONN);
    free(sql);
    assert_true(ias_pg_in_tx(pg));
    assert_int_equal(ias_pg_rollback(pg), IAS_OK);
    assert_false(ias_pg_in_tx(pg));

    assert_int_equal(count_rows(pg, "lost-in-tx"), 0);
    assert_int_not_equal(ias_pg_backend_pid(pg), pid);

    /* Same through commit: reported as a lost connection. */
    assert_int_equal(ias_pg_begin(pg), IAS_OK);
    terminate_backend(pg);
    assert_int_equal(ias_pg_exec(pg, "SELECT 1", 0, NULL, NULL), IAS_ERR);
    assert_int_equal(ias_pg_commit(pg), IAS_ERR);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_CONN);
    assert_false(ias_pg_in_tx(pg));
    exec_ok(pg, "SELECT 1", 0, NULL, NULL);
    ias_pg_free(pg);
}

static void test_idle_conn_lost_is_retried(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    PGresult *res = NULL;
    int pid;

    assert_int_equal(ias_pg_ensure(pg), IAS_OK);
    pid = ias_pg_backend_pid(pg);
    terminate_backend(pg);
    /* Outside a transaction the statement is retried once on a new connection. */
    exec_ok(pg, "SELECT pg_backend_pid()", 0, NULL, &res);
    assert_int_not_equal(atoi(ias_pg_value(res, 0, 0)), pid);
    assert_int_equal(atoi(ias_pg_value(res, 0, 0)), ias_pg_backend_pid(pg));
    ias_pg_clear(res);
    ias_pg_free(pg);
}

static void test_server_restart(void **state)
{
    need_pg();
    if (!ias_test_env("IAS_STACK_CTL"))
        skip();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    PGresult *res = NULL;
    int pid;

    ias_pg_set_application_name(pg, "ias-test-pg");
    assert_int_equal(ias_pg_ensure(pg), IAS_OK);
    pid = ias_pg_backend_pid(pg);
    assert_int_equal(ias_test_stack("restart postgres"), 0);

    /* The first statement after the restart succeeds without the caller
     * doing anything: the dead connection is replaced and the statement retried. */
    exec_ok(pg, "SELECT current_setting('application_name')", 0, NULL, &res);
    assert_string_equal(ias_pg_value(res, 0, 0), "ias-test-pg");
    ias_pg_clear(res);
    assert_int_not_equal(ias_pg_backend_pid(pg), pid);
    assert_int_equal(ias_pg_ping(pg), IAS_OK);

    /* Transactions work on the new connection too. */
    insert_arg a = {"after-restart", 0, 0, 0};
    assert_int_equal(ias_pg_tx(pg, insert_fn, &a, 3), IAS_OK);
    assert_int_equal(count_rows(pg, "after-restart"), 1);
    ias_pg_free(pg);
}

static void test_connect_timeout(void **state)
{
    need_pg();
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *bad_dsn;
    uint64_t t0;
    ias_pg *pg;

    /* A listener that never answers: the TCP handshake completes in the
     * kernel, then libpq waits forever for the server's reply. */
    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    bad_dsn =
        ias_xasprintf("host=127.0.0.1 port=%d user=nobody dbname=nothing", ntohs(sa.sin_port));

    pg = ias_pg_new(bad_dsn, 300);
    t0 = ias_now_ms();
    assert_int_equal(ias_pg_ensure(pg), IAS_ERR);
    uint64_t took = ias_now_ms() - t0;
    assert_true(took >= 250);
    assert_true(took < 2000);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_CONN);
    assert_true(strstr(ias_pg_last_message(pg), "timed out") != NULL);
    assert_int_equal(ias_pg_ping(pg), IAS_ERR);
    assert_int_equal(ias_pg_backend_pid(pg), 0);
    ias_pg_free(pg);
    free(bad_dsn);
    close(fd);

    /* Nobody listening: fails at once, same kind. */
    pg = ias_pg_new("host=127.0.0.1 port=1 user=nobody dbname=nothing", 5000);
    t0 = ias_now_ms();
    assert_int_equal(ias_pg_exec(pg, "SELECT 1", 0, NULL, NULL), IAS_ERR);
    assert_true(ias_now_ms() - t0 < 2000);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_CONN);
    ias_pg_free(pg);
}

static void test_statement_timeout(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    PGresult *res = NULL;
    uint64_t t0;

    assert_int_equal(ias_pg_set_statement_timeout(pg, 200), IAS_OK); /* applied at connect */
    t0 = ias_now_ms();
    assert_int_equal(ias_pg_exec(pg, "SELECT pg_sleep(3)", 0, NULL, NULL), IAS_ERR);
    assert_true(ias_now_ms() - t0 < 2000);
    assert_string_equal(ias_pg_last_sqlstate(pg), "57014");
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_OTHER);

    /* Changing it while connected applies at once. */
    assert_int_equal(ias_pg_set_statement_timeout(pg, 0), IAS_OK);
    exec_ok(pg, "SELECT current_setting('statement_timeout')", 0, NULL, &res);
    assert_string_equal(ias_pg_value(res, 0, 0), "0");
    ias_pg_clear(res);
    exec_ok(pg, "SELECT pg_sleep(0.3)", 0, NULL, NULL);
    ias_pg_free(pg);
}

static void test_script(void **state)
{
    need_pg();
    ias_pg *pg = ias_pg_new(dsn, 5000);
    char *script = sqlf("CREATE TEMP TABLE s1 (a int); INSERT INTO s1 VALUES (1), (2);\n"
                        "INSERT INTO %T (v) SELECT 'script-' || a FROM s1;");

    assert_int_equal(ias_pg_exec_script(pg, script), IAS_OK);
    free(script);
    assert_int_equal(count_rows(pg, "script-2"), 1);
    assert_int_equal(ias_pg_exec_script(pg, "-- only a comment\n"), IAS_OK);
    assert_int_equal(ias_pg_exec_script(pg, "SELECT 1;\nSELEC 2;"), IAS_ERR);
    assert_int_equal(ias_pg_last_position(pg), 11);
    /* Parameterised path: several statements are refused by the server. */
    assert_int_equal(ias_pg_exec(pg, "SELECT 1; SELECT 2", 0, NULL, NULL), IAS_ERR);
    ias_pg_free(pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_roundtrip),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_error_kinds),
        cmocka_unit_test(test_tx_retry_serialization),
        cmocka_unit_test(test_tx_fn_error_not_retried),
        cmocka_unit_test(test_tx_retry_connection_lost),
        cmocka_unit_test(test_conn_lost_inside_tx),
        cmocka_unit_test(test_idle_conn_lost_is_retried),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_statement_timeout),
        cmocka_unit_test(test_script),
        cmocka_unit_test(test_server_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
