/* The migration runner's pure parts: file names, directory scan, plans, error
 * lines, arguments; plus the shipped migrations directory itself. No database. */
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ias/migrate.h"
#include "ias/pg.h"

static void test_parse_filename(void **state)
{
    char name[IAS_MIGRATE_NAME_MAX];
    ias_migrate_direction dir;
    long long v;

    assert_int_equal(
        ias_migrate_parse_filename("0001_tenancy.up.sql", &v, &dir, name, sizeof(name)), IAS_OK);
    assert_int_equal(v, 1);
    assert_int_equal(dir, IAS_MIGRATE_UP);
    assert_string_equal(name, "tenancy");

    assert_int_equal(ias_migrate_parse_filename("20240101120000_add-x.v2.down.sql", &v, &dir, name,
                                                sizeof(name)),
                     IAS_OK);
    assert_int_equal(v, 20240101120000LL);
    assert_int_equal(dir, IAS_MIGRATE_DOWN);
    assert_string_equal(name, "add-x.v2");

    /* Not migration files at all: ignored. */
    assert_int_equal(ias_migrate_parse_filename("README.md", &v, &dir, name, sizeof(name)),
                     IAS_AGAIN);
    assert_int_equal(ias_migrate_parse_filename(".", &v, &dir, name, sizeof(name)), IAS_AGAIN);
    assert_int_equal(ias_migrate_parse_filename("", &v, &dir, name, sizeof(name)), IAS_AGAIN);

    /* Look like migrations but are malformed: errors, never silently skipped. */
    const char *bad[] = {
        "0001_x.sql",         "0001_x.up.sq",
        "0001.up.sql",        "0001_.up.sql",
        "0000_zero.up.sql",   "0001-x.up.sql",
        "0001_a b.up.sql",    "0001_x.UP.sql",
        "0001_x.up.sql~",     "99999999999999999999_overflow.up.sql",
        "0001_x;drop.up.sql",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++) {
        if (ias_migrate_parse_filename(bad[i], &v, &dir, name, sizeof(name)) != IAS_ERR)
            fail_msg("accepted %s", bad[i]);
    }

    /* Name longer than the buffer. */
    char small[4];
    assert_int_equal(
        ias_migrate_parse_filename("0001_toolong.up.sql", &v, &dir, small, sizeof(small)), IAS_ERR);
}

static char tmpdir[256];

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

static void rm_dir(void)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
}

static void make_dir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ias_test_migrate_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
}

static void test_scan(void **state)
{
    ias_migration_set set;
    char err[512];

    make_dir();
    put_file("0010_third.up.sql", "select 1;");
    put_file("0002_second.up.sql", "select 1;");
    put_file("0002_second.down.sql", "select 1;");
    put_file("0001_first.up.sql", "select 1;");
    put_file("0001_first.down.sql", "select 1;");
    put_file("README.md", "not a migration");
    assert_int_equal(ias_migrate_scan(tmpdir, &set, err, sizeof(err)), IAS_OK);
    assert_int_equal(set.n, 3);
    assert_int_equal(set.items[0].version, 1);
    assert_int_equal(set.items[1].version, 2);
    assert_int_equal(set.items[2].version, 10);
    assert_string_equal(set.items[2].name, "third");
    assert_non_null(set.items[0].up_path);
    assert_non_null(set.items[0].down_path);
    assert_null(set.items[2].down_path);
    assert_true(strstr(set.items[1].up_path, "/0002_second.up.sql") != NULL);
    assert_int_equal(ias_migrate_find(&set, 10), 2);
    assert_int_equal(ias_migrate_find(&set, 3), -1);
    ias_migration_set_free(&set);

    /* Same version, two names. */
    put_file("0002_other.down.sql", "select 1;");
    assert_int_equal(ias_migrate_scan(tmpdir, &set, err, sizeof(err)), IAS_ERR);
    assert_true(strstr(err, "version 2") != NULL);
    assert_null(set.items);
    rm_dir();

    /* A malformed name is named in the error. */
    make_dir();
    put_file("0001_ok.up.sql", "select 1;");
    put_file("0002_bad.up", "select 1;");
    assert_int_equal(ias_migrate_scan(tmpdir, &set, err, sizeof(err)), IAS_ERR);
    assert_true(strstr(err, "0002_bad.up") != NULL);
    rm_dir();

    assert_int_equal(ias_migrate_scan("/nonexistent/ias/migrations", &set, err, sizeof(err)),
                     IAS_ERR);
    assert_true(strstr(err, "cannot open") != NULL);
}

/* A set of versions 1, 2, 5 with every file present except 5's down. */
static void fake_set(ias_migration_set *set)
{
    static const long long versions[] = {1, 2, 5};

    set->n = 3;
    set->items = calloc(3, sizeof(*set->items));
    assert_non_null(set->items);
    for (size_t i = 0; i < 3; i++) {
        set->items[i].version = versions[i];
        snprintf(set->items[i].name, sizeof(set->items[i].name), "m%lld", versions[i]);
        set->items[i].up_path = strdup("up");
        set->items[i].down_path = i == 2 ? NULL : strdup("down");
    }
}

static void test_plan(void **state)
{
    ias_migration_set set;
    ias_migrate_step *steps;
    size_t n;
    char err[256];

    fake_set(&set);

    /* Up from nothing: everything, in order. */
    assert_int_equal(ias_migrate_plan(&set, IAS_MIGRATE_NIL_VERSION, IAS_MIGRATE_UP, 0, &steps, &n,
                                      err, sizeof(err)),
                     IAS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(steps[0].target, 1);
    assert_int_equal(steps[2].target, 5);
    assert_int_equal(steps[2].m->version, 5);
    free(steps);

    /* Up 1 from 1. */
    assert_int_equal(ias_migrate_plan(&set, 1, IAS_MIGRATE_UP, 1, &steps, &n, err, sizeof(err)),
                     IAS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(steps[0].target, 2);
    free(steps);

    /* Up 10 when 2 are pending: the 2. */
    assert_int_equal(ias_migrate_plan(&set, 1, IAS_MIGRATE_UP, 10, &steps, &n, err, sizeof(err)),
                     IAS_OK);
    assert_int_equal(n, 2);
    free(steps);

    /* Nothing pending. */
    assert_int_equal(ias_migrate_plan(&set, 5, IAS_MIGRATE_UP, 0, &steps, &n, err, sizeof(err)),
                     IAS_OK);
    assert_int_equal(n, 0);
    free(steps);

    /* Down from 2: to 1, then to none. */
    assert_int_equal(ias_migrate_plan(&set, 2, IAS_MIGRATE_DOWN, -1, &steps, &n, err, sizeof(err)),
                     IAS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(steps[0].m->version, 2);
    assert_int_equal(steps[0].target, 1);
    assert_int_equal(steps[1].m->version, 1);
    assert_int_equal(steps[1].target, IAS_MIGRATE_NIL_VERSION);
    free(steps);

    /* Down more than applied is refused. */
    assert_int_equal(ias_migrate_plan(&set, 2, IAS_MIGRATE_DOWN, 3, &steps, &n, err, sizeof(err)),
                     IAS_ERR);
    assert_true(strstr(err, "only 2") != NULL);

    /* Version 5 has no down file. */
    assert_int_equal(ias_migrate_plan(&set, 5, IAS_MIGRATE_DOWN, 1, &steps, &n, err, sizeof(err)),
                     IAS_ERR);
    assert_true(strstr(err, ".down.sql") != NULL);

    /* The database is at a version we have no file for. */
    assert_int_equal(ias_migrate_plan(&set, 3, IAS_MIGRATE_UP, 0, &steps, &n, err, sizeof(err)),
                     IAS_ERR);
    assert_true(strstr(err, "version 3") != NULL);

    /* Down from nothing: nothing to do, and "down 1" is refused. */
    assert_int_equal(ias_migrate_plan(&set, IAS_MIGRATE_NIL_VERSION, IAS_MIGRATE_DOWN, -1, &steps,
                                      &n, err, sizeof(err)),
                     IAS_OK);
    assert_int_equal(n, 0);
    free(steps);
    assert_int_equal(ias_migrate_plan(&set, IAS_MIGRATE_NIL_VERSION, IAS_MIGRATE_DOWN, 1, &steps,
                                      &n, err, sizeof(err)),
                     IAS_ERR);

    ias_migration_set_free(&set);
}

static void test_line_of(void **state)
{
    const char *sql = "-- c\nselect 1;\n\nCREAT x;";
    const char *uni = "-- é€😀\nselect 'ü';\nbad";

    assert_int_equal(ias_migrate_line_of(sql, 0), 0);
    assert_int_equal(ias_migrate_line_of(sql, 1), 1);
    assert_int_equal(ias_migrate_line_of(sql, 5), 1); /* the newline ends line 1 */
    assert_int_equal(ias_migrate_line_of(sql, 6), 2);
    assert_int_equal(ias_migrate_line_of(sql, (int)(strstr(sql, "CREAT") - sql) + 1), 4);
    /* Positions count characters, not bytes: "bad" is character 20. */
    assert_int_equal(ias_migrate_line_of(uni, 20), 3);
    assert_int_equal(ias_migrate_line_of(uni, 19), 2);
    /* Past the end: the last line. */
    assert_int_equal(ias_migrate_line_of(sql, 1000), 4);
}

static void test_read_file(void **state)
{
    char err[512], path[600];
    char *sql = NULL;
    FILE *f;

    make_dir();
    put_file("0001_a.up.sql", "create table t(id int);\n");
    snprintf(path, sizeof(path), "%s/0001_a.up.sql", tmpdir);
    assert_int_equal(ias_migrate_read_file(path, &sql, err, sizeof(err)), IAS_OK);
    assert_string_equal(sql, "create table t(id int);\n");
    free(sql);

    /* An embedded NUL would silently cut the script: refused. */
    snprintf(path, sizeof(path), "%s/nul.sql", tmpdir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("select 1;\0drop", 1, 14, f), 14);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(ias_migrate_read_file(path, &sql, err, sizeof(err)), IAS_ERR);
    assert_null(sql);
    assert_true(strstr(err, "NUL") != NULL);

    /* Over the size cap. */
    snprintf(path, sizeof(path), "%s/big.sql", tmpdir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fseek(f, IAS_MIGRATE_FILE_MAX + 10, SEEK_SET), 0);
    assert_int_equal(fputc(' ', f), ' ');
    assert_int_equal(fclose(f), 0);
    assert_int_equal(ias_migrate_read_file(path, &sql, err, sizeof(err)), IAS_ERR);
    assert_true(strstr(err, "larger than") != NULL);

    snprintf(path, sizeof(path), "%s/missing.sql", tmpdir);
    assert_int_equal(ias_migrate_read_file(path, &sql, err, sizeof(err)), IAS_ERR);
    rm_dir();
}

static int parse(ias_migrate_cmd *cmd, const char *a1, const char *a2, const char *a3)
{
    char *argv[5] = {(char *)"ias-migrate", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a1 && a2) + (a1 && a2 && a3);
    char err[256];

    return ias_migrate_parse_args(argc, argv, cmd, err, sizeof(err));
}

static void test_parse_args(void **state)
{
    ias_migrate_cmd c;

    assert_int_equal(parse(&c, "up", NULL, NULL), IAS_OK);
    assert_int_equal(c.kind, IAS_MIGRATE_CMD_UP);
    assert_int_equal(c.n, 0);
    assert_int_equal(parse(&c, "up", "2", NULL), IAS_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(parse(&c, "down", "1", NULL), IAS_OK);
    assert_int_equal(c.kind, IAS_MIGRATE_CMD_DOWN);
    assert_int_equal(c.n, 1);
    assert_int_equal(parse(&c, "down", "all", NULL), IAS_OK);
    assert_int_equal(c.n, -1);
    assert_int_equal(parse(&c, "down", "-all", NULL), IAS_OK);
    assert_int_equal(c.n, -1);
    assert_int_equal(parse(&c, "version", NULL, NULL), IAS_OK);
    assert_int_equal(c.kind, IAS_MIGRATE_CMD_VERSION);
    assert_int_equal(parse(&c, "force", "3", NULL), IAS_OK);
    assert_int_equal(c.kind, IAS_MIGRATE_CMD_FORCE);
    assert_int_equal(c.version, 3);
    assert_int_equal(parse(&c, "force", "-1", NULL), IAS_OK);
    assert_int_equal(c.version, -1);
    assert_int_equal(parse(&c, "--help", NULL, NULL), IAS_OK);
    assert_int_equal(c.kind, IAS_MIGRATE_CMD_HELP);

    assert_int_equal(parse(&c, NULL, NULL, NULL), IAS_ERR);
    assert_int_equal(parse(&c, "sideways", NULL, NULL), IAS_ERR);
    assert_int_equal(parse(&c, "down", NULL, NULL), IAS_ERR); /* down needs a count */
    assert_int_equal(parse(&c, "down", "0", NULL), IAS_ERR);
    assert_int_equal(parse(&c, "down", "-2", NULL), IAS_ERR);
    assert_int_equal(parse(&c, "up", "0", NULL), IAS_ERR);
    assert_int_equal(parse(&c, "up", "2x", NULL), IAS_ERR);
    assert_int_equal(parse(&c, "up", "1", "2"), IAS_ERR);
    assert_int_equal(parse(&c, "force", NULL, NULL), IAS_ERR);
    assert_int_equal(parse(&c, "force", "-2", NULL), IAS_ERR);
    assert_int_equal(parse(&c, "version", "1", NULL), IAS_ERR);
}

/* The migrations we ship: well formed, contiguous from 1, each with both
 * directions, and none ends the runner's transaction by itself. */
static void test_shipped_migrations(void **state)
{
    char dir[600], err[512];
    ias_migration_set set;

    snprintf(dir, sizeof(dir), "%s/migrations", ias_test_repo_root());
    assert_int_equal(ias_migrate_scan(dir, &set, err, sizeof(err)), IAS_OK);
    assert_true(set.n >= 5);
    for (size_t i = 0; i < set.n; i++) {
        const char *paths[2] = {set.items[i].up_path, set.items[i].down_path};

        if (set.items[i].version != (long long)i + 1)
            fail_msg("migration versions are not contiguous at %s", set.items[i].name);
        if (!paths[0] || !paths[1])
            fail_msg("version %lld lacks an up or a down file", set.items[i].version);
        for (int k = 0; k < 2; k++) {
            char *sql = NULL;

            assert_int_equal(ias_migrate_read_file(paths[k], &sql, err, sizeof(err)), IAS_OK);
            for (char *p = sql; *p; p++)
                *p = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
            if (strstr(sql, "\nCOMMIT") || strstr(sql, "\nBEGIN;") ||
                strstr(sql, "INDEX CONCURRENTLY"))
                fail_msg("%s must not control transactions itself", paths[k]);
            free(sql);
        }
    }
    ias_migration_set_free(&set);
}

static void test_dsn_with_dbname(void **state)
{
    char *s;

    s = ias_pg_dsn_with_dbname("postgresql://ias:p%27w@127.0.0.1:55432/ias?sslmode=disable",
                               "other_db");
    assert_non_null(s);
    assert_true(strstr(s, "dbname='other_db'") != NULL);
    assert_true(strstr(s, "host='127.0.0.1'") != NULL);
    assert_true(strstr(s, "port='55432'") != NULL);
    assert_true(strstr(s, "password='p\\'w'") != NULL); /* quote escaped */
    assert_true(strstr(s, "sslmode='disable'") != NULL);
    assert_null(strstr(s, "dbname='ias'"));
    free(s);

    s = ias_pg_dsn_with_dbname("host=localhost dbname=a user=u", "b");
    assert_non_null(s);
    assert_true(strstr(s, "dbname='b'") != NULL);
    assert_null(strstr(s, "dbname='a'"));
    free(s);

    assert_null(ias_pg_dsn_with_dbname("host='unterminated", "b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_filename),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_line_of),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_parse_args),
        cmocka_unit_test(test_shipped_migrations),
        cmocka_unit_test(test_dsn_with_dbname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
