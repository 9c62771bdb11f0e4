/* ias-migrate, the real binary ($IAS_BIN_DIR/ias-migrate, default
 * build/asan/bin), against fresh databases created on the IAS_PG_DSN server:
 * up -> version -> down all -> up, each down undoing exactly its up, every
 * table and column commented, two concurrent runners, a broken migration.
 * Skips without IAS_PG_DSN. */
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ias/common.h"
#include "ias/migrate.h"
#include "ias/pg.h"

static const char *dsn;
static char bin[512];
static char migrations[512];
static long long latest; /* highest version shipped */

typedef struct run_result {
    int status; /* exit status, -1 if it did not exit normally */
    char out[8192];
    char err[8192];
} run_result;

static void read_all(int fd, char *buf, size_t len)
{
    size_t o = 0;
    ssize_t n;

    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    while (o + 1 < len && (n = read(fd, buf + o, len - 1 - o)) > 0)
        o += (size_t)n;
    buf[o] = '\0';
    close(fd);
}

static int tmp_fd(void)
{
    char path[] = "/tmp/ias_test_migrate_out_XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* Starts ias-migrate with IAS_PG_DSN=db_dsn and IAS_MIGRATIONS_DIR=dir. */
static pid_t start(const char *db_dsn, const char *dir, const char *a1, const char *a2, int outfd,
                   int errfd)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[4] = {bin, (char *)a1, (char *)a2, NULL};

        if (db_dsn)
            setenv("IAS_PG_DSN", db_dsn, 1);
        else
            unsetenv("IAS_PG_DSN");
        setenv("IAS_MIGRATIONS_DIR", dir, 1);
        setenv("IAS_MIGRATE_LOCK_TIMEOUT", "60s", 1);
        setenv("IAS_LOG_LEVEL", "warn", 1);
        dup2(outfd, STDOUT_FILENO);
        dup2(errfd, STDERR_FILENO);
        execv(bin, argv);
        _exit(127);
    }
    return pid;
}

static void finish(pid_t pid, int outfd, int errfd, run_result *r)
{
    int st;

    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    read_all(outfd, r->out, sizeof(r->out));
    read_all(errfd, r->err, sizeof(r->err));
}

static void run(const char *db_dsn, const char *dir, const char *a1, const char *a2, run_result *r)
{
    int outfd = tmp_fd(), errfd = tmp_fd();
    pid_t pid = start(db_dsn, dir, a1, a2, outfd, errfd);

    finish(pid, outfd, errfd, r);
}

/* Runs and insists on exit status want, showing the output otherwise. */
static void run_expect(const char *db_dsn, const char *dir, const char *a1, const char *a2,
                       int want, run_result *r)
{
    run(db_dsn, dir, a1, a2, r);
    if (r->status != want)
        fail_msg("ias-migrate %s %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", a1, a2 ? a2 : "",
                 r->status, want, r->out, r->err);
}

static void expect_version(const char *db_dsn, const char *want)
{
    run_result r;

    run_expect(db_dsn, migrations, "version", NULL, 0, &r);
    if (strcmp(r.out, want) != 0)
        fail_msg("version printed \"%s\", want \"%s\"", r.out, want);
}

/* The database and directory of the running test, removed by its teardown
 * even when an assertion ends the test early. */
static char current_db[128];
static char tmpdir[256];

/* A fresh database on the test server; returns its DSN (free it). */
static char *create_db(char *name, size_t len)
{
    ias_pg *admin = ias_pg_new(dsn, 5000);
    char *sql, *db_dsn;

    ias_test_unique("ias_test_migrate", name, len);
    for (const char *p = name; *p; p++)
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
    /* An identifier cannot be a parameter; the name is generated above. */
    sql = ias_xasprintf("CREATE DATABASE %s", name);
    if (ias_pg_exec(admin, sql, 0, NULL, NULL) != IAS_OK)
        fail_msg("%s: %s", sql, ias_pg_last_message(admin));
    free(sql);
    ias_pg_free(admin);
    (void)ias_strlcpy(current_db, name, sizeof(current_db));
    db_dsn = ias_pg_dsn_with_dbname(dsn, name);
    assert_non_null(db_dsn);
    return db_dsn;
}

static void drop_db(const char *name)
{
    ias_pg *admin = ias_pg_new(dsn, 5000);
    char *sql = ias_xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name);

    if (ias_pg_exec(admin, sql, 0, NULL, NULL) != IAS_OK)
        fprintf(stderr, "%s: %s\n", sql, ias_pg_last_message(admin));
    free(sql);
    ias_pg_free(admin);
    if (strcmp(name, current_db) == 0)
        current_db[0] = '\0';
}

static int test_teardown(void **state)
{
    if (current_db[0])
        drop_db(current_db);
    if (tmpdir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
        tmpdir[0] = '\0';
    }
    return 0;
}

/* Prints the lines only one of two signatures has. */
static void print_diff(const char *got, const char *want)
{
    const char *sides[2][2] = {{got, want}, {want, got}};

    for (int k = 0; k < 2; k++) {
        const char *a = sides[k][0], *b = sides[k][1];
        while (*a) {
            const char *nl = strchr(a, '\n');
            size_t n = nl ? (size_t)(nl - a) : strlen(a);
            char *line = ias_xstrndup(a, n);
            const char *f = strstr(b, line);
            bool found = false;
            /* whole-line match */
            while (f && !found) {
                found = (f == b || f[-1] == '\n') && (f[n] == '\n' || f[n] == '\0');
                if (!found)
                    f = strstr(f + 1, line);
            }
            if (!found)
                fprintf(stderr, "  %s %s\n", k == 0 ? "extra:  " : "missing:", line);
            free(line);
            a += n + (nl ? 1 : 0);
        }
    }
}

/* One text value from a query on db_dsn (caller frees). */
static char *query1(const char *db_dsn, const char *sql)
{
    ias_pg *pg = ias_pg_new(db_dsn, 5000);
    PGresult *res = NULL;
    char *out;

    if (ias_pg_exec(pg, sql, 0, NULL, &res) != IAS_OK)
        fail_msg("%s in: %.200s", ias_pg_last_message(pg), sql);
    assert_int_equal(ias_pg_nrows(res), 1);
    out = ias_xstrdup(ias_pg_value(res, 0, 0) ? ias_pg_value(res, 0, 0) : "");
    ias_pg_clear(res);
    ias_pg_free(pg);
    return out;
}

/* Everything a migration can create in schema public, one name per line,
 * except golang-migrate's own table. Two equal signatures mean equal schemas
 * (as far as names, kinds, columns and definitions go; a function by its body
 * too, so a migration may redefine one). */
static const char *const signature_sql =
    "SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM ("
    " SELECT 'rel ' || c.relname || ' ' || c.relkind::text FROM pg_class c"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = 'public' AND c.relname NOT LIKE 'schema_migrations%'"
    " UNION ALL"
    " SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
    "  || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END"
    "  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    "  JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0"
    "  AND NOT a.attisdropped AND c.relname <> 'schema_migrations'"
    " UNION ALL"
    " SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p"
    "  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
    " UNION ALL"
    " SELECT 'trg ' || t.tgrelid::regclass::text || '.' || t.tgname FROM pg_trigger t"
    "  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = 'public' AND NOT t.tgisinternal"
    " UNION ALL"
    " SELECT 'con ' || co.conname || ' ' || pg_get_constraintdef(co.oid) FROM pg_constraint co"
    "  JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = 'public'"
    "  AND co.conname NOT LIKE 'schema_migrations%'"
    " UNION ALL"
    " SELECT 'type ' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    "  WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'r', 'm')"
    "  OR (n.nspname = 'public' AND t.typtype = 'c' AND NOT EXISTS"
    "      (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c'))"
    ") s(x)";

/* Tables (not partitions), columns, views and functions without a comment. */
static const char *const uncommented_sql =
    "SELECT coalesce(string_agg(x, ', ' ORDER BY x), '') FROM ("
    " SELECT 'table ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition"
    "  AND obj_description(c.oid, 'pg_class') IS NULL"
    " UNION ALL"
    " SELECT 'column ' || c.relname || '.' || a.attname FROM pg_attribute a"
    "  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition"
    "  AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL"
    " UNION ALL"
    " SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p"
    "  JOIN pg_namespace n ON n.oid = p.pronamespace"
    "  WHERE n.nspname = 'public' AND obj_description(p.oid, 'pg_proc') IS NULL"
    ") s(x)";

static int group_setup(void **state)
{
    const char *bindir;
    ias_migration_set set;
    char err[512];

    dsn = ias_test_env("IAS_PG_DSN");
    if (!dsn)
        return 0;
    bindir = ias_test_env("IAS_BIN_DIR");
    snprintf(bin, sizeof(bin), "%s/ias-migrate", bindir ? bindir : "build/asan/bin");
    snprintf(migrations, sizeof(migrations), "%s/migrations", ias_test_repo_root());
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s is not built\n", bin);
        return -1;
    }
    if (ias_migrate_scan(migrations, &set, err, sizeof(err)) != IAS_OK || set.n == 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    latest = set.items[set.n - 1].version;
    ias_migration_set_free(&set);
    return 0;
}

static void need_pg(void)
{
    if (!dsn)
        skip();
}

static void test_up_down_up(void **state)
{
    need_pg();
    char name[128], want[64], vbuf[32];
    char *db = create_db(name, sizeof(name));
    char **sig = ias_xcalloc((size_t)latest + 1, sizeof(char *));
    run_result r;
    char *s;

    expect_version(db, "none\n");
    sig[0] = query1(db, signature_sql);
    assert_string_equal(sig[0], "");

    /* Up one at a time, recording the schema after each version. */
    for (long long v = 1; v <= latest; v++) {
        run_expect(db, migrations, "up", "1", 0, &r);
        snprintf(want, sizeof(want), "%lld\n", v);
        expect_version(db, want);
        sig[v] = query1(db, signature_sql);
        assert_string_not_equal(sig[v], sig[v - 1]);
    }
    run_expect(db, migrations, "up", NULL, 0, &r);
    assert_string_equal(r.out, "no change\n");

    /* Every table, column and function carries a COMMENT. */
    s = query1(db, uncommented_sql);
    if (*s)
        fail_msg("not commented: %s", s);
    free(s);

    /* Down one at a time: each down restores exactly the schema before its up. */
    for (long long v = latest; v >= 1; v--) {
        run_expect(db, migrations, "down", "1", 0, &r);
        s = query1(db, signature_sql);
        if (strcmp(s, sig[v - 1]) != 0) {
            print_diff(s, sig[v - 1]);
            fail_msg("down of version %lld left a different schema (above)", v);
        }
        free(s);
    }
    expect_version(db, "none\n");
    run_expect(db, migrations, "down", "1", 1, &r); /* nothing left to revert */

    /* Up all at once, down all at once, up again: same schema as before. */
    run_expect(db, migrations, "up", NULL, 0, &r);
    snprintf(vbuf, sizeof(vbuf), "%lld/u", latest);
    assert_non_null(strstr(r.out, vbuf));
    run_expect(db, migrations, "down", "all", 0, &r);
    expect_version(db, "none\n");
    s = query1(db, signature_sql);
    assert_string_equal(s, "");
    free(s);
    run_expect(db, migrations, "up", NULL, 0, &r);
    snprintf(want, sizeof(want), "%lld\n", latest);
    expect_version(db, want);
    s = query1(db, signature_sql);
    if (strcmp(s, sig[latest]) != 0) {
        print_diff(s, sig[latest]);
        fail_msg("up after down all made a different schema (above)");
    }
    free(s);

    /* golang-migrate's table: one row, not dirty. */
    s = query1(db, "SELECT count(*) || ' ' || bool_or(dirty) FROM schema_migrations");
    assert_string_equal(s, "1 false");
    free(s);

    for (long long v = 0; v <= latest; v++)
        free(sig[v]);
    free(sig);
    free(db);
    drop_db(name);
}

/* The schema does what the services rely on. */
static void test_schema_rules(void **state)
{
    need_pg();
    char name[128];
    char *db = create_db(name, sizeof(name));
    run_result r;
    ias_pg *pg;
    char *s;

    run_expect(db, migrations, "up", NULL, 0, &r);
    pg = ias_pg_new(db, 5000);
    /* Users tables have row-level security (0006_users_rls): see every org. */
    assert_int_equal(ias_pg_exec(pg, "SELECT set_config('ias.org_id', '*', false)", 0, NULL, NULL),
                     IAS_OK);

    /* Seeded roles and permission sets. */
    s = query1(db, "SELECT string_agg(r.name || '=' || (SELECT count(*) FROM role_permissions rp "
                   "WHERE rp.role_id = r.id), ',' ORDER BY r.name) FROM roles r");
    assert_string_equal(s, "org_admin=19,org_user=8,system_admin=20");
    free(s);
    s = query1(db,
               "SELECT count(*) FROM role_permissions rp JOIN roles r ON r.id = rp.role_id "
               "WHERE r.name = 'system_admin' AND rp.permission IN ('keys:write', 'inference')");
    assert_string_equal(s, "0"); /* system admins create no keys */
    free(s);

    /* Usage partitions: this month and the next two exist; the function is idempotent. */
    s = query1(db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage_events'::regclass");
    assert_string_equal(s, "3");
    free(s);
    s = query1(db, "SELECT ias_ensure_usage_partitions((now() AT TIME ZONE 'UTC')::date, 4)");
    assert_string_equal(s, "1");
    free(s);
    const char *ev[3] = {"00000000-0000-0000-0000-0000000000e1", "req-1",
                         "00000000-0000-0000-0000-0000000000a1"};
    const char *ins =
        "INSERT INTO usage_events (event_id, created_at, request_id, org_id, model, "
        "status, prompt_tokens, completion_tokens, duration_ms) VALUES ($1, "
        "date_trunc('month', now()) + interval '1 month 1 day', $2, $3, 'mock-gpt', 200, 10, 20, "
        "5)";
    assert_int_equal(ias_pg_exec(pg, ins, 3, ev, NULL), IAS_OK);
    assert_int_equal(ias_pg_exec(pg, ins, 3, ev, NULL), IAS_ERR);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_UNIQUE);

    /* The audit ledger refuses UPDATE and DELETE. */
    const char *au[1] = {"00000000-0000-0000-0000-0000000000b1"};
    assert_int_equal(ias_pg_exec(pg,
                                 "INSERT INTO audit_ledger (event_id, occurred_at, service, "
                                 "actor_type, action, resource_type, outcome, prev_hash, hash) "
                                 "VALUES ($1, now(), 'users', 'system', 'test', 'org', 'success', "
                                 "repeat('0', 64), repeat('a', 64))",
                                 1, au, NULL),
                     IAS_OK);
    assert_int_equal(ias_pg_exec(pg, "UPDATE audit_ledger SET actor_id = 'mallory'", 0, NULL, NULL),
                     IAS_ERR);
    assert_string_equal(ias_pg_last_sqlstate(pg), "42501");
    assert_int_equal(ias_pg_exec(pg, "DELETE FROM audit_ledger", 0, NULL, NULL), IAS_ERR);
    assert_string_equal(ias_pg_last_sqlstate(pg), "42501");

    /* A system admin has no org; an org user needs one; keys stay in their user's org. */
    assert_int_equal(
        ias_pg_exec(pg,
                    "INSERT INTO users (email, password_hash, role_id) VALUES "
                    "('root@example.com', 'x', '00000000-0000-0000-0000-000000000001')",
                    0, NULL, NULL),
        IAS_OK);
    assert_int_equal(ias_pg_exec(pg,
                                 "INSERT INTO users (email, password_hash, role_id) VALUES "
                                 "('dev@example.com', 'x', '00000000-0000-0000-0000-000000000003')",
                                 0, NULL, NULL),
                     IAS_ERR);
    assert_string_equal(ias_pg_last_sqlstate(pg), "23514");
    assert_int_equal(ias_pg_exec(pg,
                                 "INSERT INTO users (email, password_hash, role_id) VALUES "
                                 "('ROOT@example.com', 'x', "
                                 "'00000000-0000-0000-0000-000000000001')",
                                 0, NULL, NULL),
                     IAS_ERR);
    assert_int_equal(ias_pg_last_error(pg), IAS_PG_ERR_UNIQUE); /* email is case-insensitive */

    ias_pg_free(pg);
    free(db);
    drop_db(name);
}

static void test_concurrent_runners(void **state)
{
    need_pg();
    char name[128], want[64];
    char *db = create_db(name, sizeof(name));
    int o1 = tmp_fd(), e1 = tmp_fd(), o2 = tmp_fd(), e2 = tmp_fd();
    run_result r1, r2;
    pid_t p1, p2;
    char *s;

    p1 = start(db, migrations, "up", NULL, o1, e1);
    p2 = start(db, migrations, "up", NULL, o2, e2);
    finish(p1, o1, e1, &r1);
    finish(p2, o2, e2, &r2);
    if (r1.status != 0 || r2.status != 0)
        fail_msg("runner 1: %d %s %s\nrunner 2: %d %s %s", r1.status, r1.out, r1.err, r2.status,
                 r2.out, r2.err);
    snprintf(want, sizeof(want), "%lld\n", latest);
    expect_version(db, want);

    /* Each migration ran once in total: its line appears in one output only. */
    for (long long v = 1; v <= latest; v++) {
        char tag[32];
        int seen;

        snprintf(tag, sizeof(tag), "%lld/u ", v);
        seen = (strstr(r1.out, tag) != NULL) + (strstr(r2.out, tag) != NULL);
        if (seen != 1)
            fail_msg("%s seen %d times\n1: %s\n2: %s", tag, seen, r1.out, r2.out);
    }
    s = query1(db, "SELECT count(*) FROM roles");
    assert_string_equal(s, "3"); /* seeds inserted once */
    free(s);
    free(db);
    drop_db(name);
}

static void put_file(const char *name, const char *content)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

static void test_broken_migration(void **state)
{
    need_pg();
    char name[128];
    char *db = create_db(name, sizeof(name));
    run_result r;
    char *s;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ias_test_migrate_dir_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    put_file("0001_ok.up.sql", "CREATE TABLE ok_t (id int);\n");
    put_file("0001_ok.down.sql", "DROP TABLE ok_t;\n");
    put_file("0002_bad.up.sql", "-- creates a table, then fails\n"
                                "CREATE TABLE bad_t (id int);\n"
                                "INSERT INTO ok_t VALUES (1);\n"
                                "CREAT TABLE oops ();\n");
    put_file("0002_bad.down.sql", "DROP TABLE bad_t;\n");

    run_expect(db, tmpdir, "up", NULL, 1, &r);
    assert_non_null(strstr(r.out, "1/u ok"));
    assert_non_null(strstr(r.err, "0002_bad.up.sql"));
    assert_non_null(strstr(r.err, "line 4"));
    assert_non_null(strstr(r.err, "syntax error"));
    /* Rolled back whole: previous version, not dirty, nothing of 0002 left. */
    expect_version(db, "1\n");
    s = query1(db, "SELECT (to_regclass('bad_t') IS NULL) || ' ' || (SELECT count(*) FROM ok_t)");
    assert_string_equal(s, "true 0");
    free(s);

    /* A runtime error (no position) is reported too, and also rolled back. */
    put_file("0002_bad.up.sql", "CREATE TABLE bad_t (id int);\nSELECT 1 / 0;\n");
    run_expect(db, tmpdir, "up", NULL, 1, &r);
    assert_non_null(strstr(r.err, "0002_bad.up.sql: ERROR 22012"));
    expect_version(db, "1\n");

    /* Fixed file: goes through. */
    put_file("0002_bad.up.sql", "CREATE TABLE bad_t (id int);\n");
    run_expect(db, tmpdir, "up", NULL, 0, &r);
    expect_version(db, "2\n");

    /* A file that commits by itself breaks atomicity: reported, left dirty,
     * and further runs refuse until "force". */
    put_file("0003_commits.up.sql", "CREATE TABLE c_t (id int);\nCOMMIT;\nSELECT 1;\n");
    put_file("0003_commits.down.sql", "DROP TABLE c_t;\n");
    run_expect(db, tmpdir, "up", NULL, 1, &r);
    assert_non_null(strstr(r.err, "ended the transaction itself"));
    expect_version(db, "3 dirty\n");
    run_expect(db, tmpdir, "up", NULL, 1, &r);
    assert_non_null(strstr(r.err, "dirty"));
    run_expect(db, tmpdir, "force", "2", 0, &r);
    expect_version(db, "2\n");
    run_expect(db, tmpdir, "force", "9", 1, &r); /* no such version */
    run_expect(db, tmpdir, "force", "-1", 0, &r);
    expect_version(db, "none\n");

    free(db);
    drop_db(name);
}

static void test_usage_and_config_errors(void **state)
{
    need_pg();
    run_result r;

    run_expect(dsn, migrations, NULL, NULL, 2, &r);
    assert_non_null(strstr(r.err, "usage"));
    run_expect(dsn, migrations, "sideways", NULL, 2, &r);
    run_expect(dsn, migrations, "down", NULL, 2, &r);
    run_expect(dsn, migrations, "--help", NULL, 0, &r);
    run_expect(NULL, migrations, "up", NULL, 2, &r);
    assert_non_null(strstr(r.err, "IAS_PG_DSN"));
    run_expect(dsn, "/nonexistent/ias/migrations", "up", NULL, 2, &r);
    assert_non_null(strstr(r.err, "cannot open"));
    run_expect("postgresql://ias:wrong@127.0.0.1:1/ias", migrations, "up", NULL, 1, &r);
    assert_non_null(strstr(r.err, "cannot connect"));
    /* The password never reaches the output. */
    assert_null(strstr(r.err, "wrong"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_up_down_up, test_teardown),
        cmocka_unit_test_teardown(test_schema_rules, test_teardown),
        cmocka_unit_test_teardown(test_concurrent_runners, test_teardown),
        cmocka_unit_test_teardown(test_broken_migration, test_teardown),
        cmocka_unit_test(test_usage_and_config_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
