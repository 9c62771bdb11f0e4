/* Schema migration runner: file layout and state as golang-migrate, each file
 * in one transaction, an advisory lock between runners. See ias/migrate.h. */
#include "ias/migrate.h"
#include "ias/log.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FILES 10000

static void seterr(char *err, size_t errlen, const char *fmt, ...) IAS_PRINTF(3, 4);
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '-' || c == '.';
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

int ias_migrate_parse_filename(const char *fname, long long *version, ias_migrate_direction *dir,
                               char *name, size_t namelen)
{
    size_t len = strlen(fname), i = 0, nlen;
    long long v = 0;
    const char *nstart;

    if (len == 0 || !is_digit(fname[0]))
        return IAS_AGAIN;
    for (; i < len && is_digit(fname[i]); i++) {
        if (v > (LLONG_MAX - (fname[i] - '0')) / 10)
            return IAS_ERR; /* version overflows */
        v = v * 10 + (fname[i] - '0');
    }
    if (v <= 0 || i >= len || fname[i] != '_')
        return IAS_ERR;
    nstart = fname + i + 1;
    if (ends_with(fname, len, ".up.sql")) {
        *dir = IAS_MIGRATE_UP;
        nlen = (size_t)(fname + len - strlen(".up.sql") - nstart);
    } else if (ends_with(fname, len, ".down.sql")) {
        *dir = IAS_MIGRATE_DOWN;
        nlen = (size_t)(fname + len - strlen(".down.sql") - nstart);
    } else {
        return IAS_ERR;
    }
    if (nlen == 0 || nlen >= namelen)
        return IAS_ERR;
    for (size_t k = 0; k < nlen; k++) {
        if (!is_name_char(nstart[k]))
            return IAS_ERR;
    }
    memcpy(name, nstart, nlen);
    name[nlen] = '\0';
    *version = v;
    return IAS_OK;
}

long ias_migrate_find(const ias_migration_set *set, long long version)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->items[i].version == version)
            return (long)i;
    }
    return -1;
}

static int cmp_migration(const void *a, const void *b)
{
    const ias_migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

void ias_migration_set_free(ias_migration_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        free(set->items[i].up_path);
        free(set->items[i].down_path);
    }
    free(set->items);
    set->items = NULL;
    set->n = 0;
}

int ias_migrate_scan(const char *dir, ias_migration_set *set, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t cap = 0;

    set->items = NULL;
    set->n = 0;
    if (!d) {
        seterr(err, errlen, "cannot open migrations directory %s: %s", dir, strerror(errno));
        return IAS_ERR;
    }
    while ((de = readdir(d)) != NULL) {
        char name[IAS_MIGRATE_NAME_MAX];
        ias_migrate_direction mdir;
        long long version;
        ias_migration *m;
        char **slot;
        long idx;
        int rc = ias_migrate_parse_filename(de->d_name, &version, &mdir, name, sizeof(name));

        if (rc == IAS_AGAIN)
            continue;
        if (rc != IAS_OK) {
            seterr(err, errlen,
                   "%s/%s: not a migration file name (want NNNN_name.up.sql or "
                   "NNNN_name.down.sql)",
                   dir, de->d_name);
            goto fail;
        }
        idx = ias_migrate_find(set, version);
        if (idx < 0) {
            if (set->n >= MAX_FILES) {
                seterr(err, errlen, "%s: more than %d migrations", dir, MAX_FILES);
                goto fail;
            }
            if (set->n == cap) {
                cap = cap ? cap * 2 : 16;
                set->items = ias_xrealloc(set->items, cap * sizeof(*set->items));
            }
            m = &set->items[set->n++];
            memset(m, 0, sizeof(*m));
            m->version = version;
            (void)ias_strlcpy(m->name, name, sizeof(m->name));
        } else {
            m = &set->items[idx];
            if (strcmp(m->name, name) != 0) {
                seterr(err, errlen, "%s: version %lld has two names (%s, %s)", dir, version,
                       m->name, name);
                goto fail;
            }
        }
        slot = mdir == IAS_MIGRATE_UP ? &m->up_path : &m->down_path;
        if (*slot) {
            seterr(err, errlen, "%s: version %lld has two %s files", dir, version,
                   mdir == IAS_MIGRATE_UP ? "up" : "down");
            goto fail;
        }
        *slot = ias_xasprintf("%s/%s", dir, de->d_name);
    }
    closedir(d);
    if (set->n > 1)
        qsort(set->items, set->n, sizeof(*set->items), cmp_migration);
    return IAS_OK;
fail:
    closedir(d);
    ias_migration_set_free(set);
    return IAS_ERR;
}

int ias_migrate_plan(const ias_migration_set *set, long long current, ias_migrate_direction dir,
                     long long n, ias_migrate_step **steps, size_t *nsteps, char *err,
                     size_t errlen)
{
    long cur = -1;
    size_t count = 0;

    *steps = NULL;
    *nsteps = 0;
    if (current != IAS_MIGRATE_NIL_VERSION) {
        cur = ias_migrate_find(set, current);
        if (cur < 0) {
            seterr(err, errlen, "the database is at version %lld, which has no migration file",
                   current);
            return IAS_ERR;
        }
    }
    if (dir == IAS_MIGRATE_UP) {
        size_t pending = set->n - (size_t)(cur + 1);
        count = (n <= 0 || (unsigned long long)n > pending) ? pending : (size_t)n;
    } else {
        size_t applied = (size_t)(cur + 1);
        if (n < 0) {
            count = applied;
        } else if ((unsigned long long)n > applied) {
            seterr(err, errlen,
                   "cannot go down %lld: only %zu migrations are applied (use \"down all\")", n,
                   applied);
            return IAS_ERR;
        } else {
            count = (size_t)n;
        }
    }
    *steps = ias_xcalloc(count ? count : 1, sizeof(**steps));
    for (size_t k = 0; k < count; k++) {
        ias_migrate_step *s = &(*steps)[k];
        size_t i = dir == IAS_MIGRATE_UP ? (size_t)(cur + 1) + k : (size_t)cur - k;
        const ias_migration *m = &set->items[i];

        s->m = m;
        s->dir = dir;
        if (dir == IAS_MIGRATE_UP) {
            s->target = m->version;
            if (!m->up_path) {
                seterr(err, errlen, "version %lld (%s) has no .up.sql file", m->version, m->name);
                goto fail;
            }
        } else {
            s->target = i > 0 ? set->items[i - 1].version : IAS_MIGRATE_NIL_VERSION;
            if (!m->down_path) {
                seterr(err, errlen, "version %lld (%s) has no .down.sql file", m->version, m->name);
                goto fail;
            }
        }
    }
    *nsteps = count;
    return IAS_OK;
fail:
    free(*steps);
    *steps = NULL;
    return IAS_ERR;
}

int ias_migrate_line_of(const char *text, int pos)
{
    int line = 1, chars = 0;

    if (pos <= 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if ((*p & 0xC0) == 0x80)
            continue; /* UTF-8 continuation byte: same character */
        if (++chars >= pos)
            break;
        if (*p == '\n')
            line++;
    }
    return line;
}

int ias_migrate_read_file(const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    char *buf;

    *out = NULL;
    if (!f) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        return IAS_ERR;
    }
    buf = ias_xmalloc(cap);
    for (;;) {
        size_t got;
        if (len + 1 >= cap) {
            if (cap > IAS_MIGRATE_FILE_MAX) {
                seterr(err, errlen, "%s: larger than %d bytes", path, IAS_MIGRATE_FILE_MAX);
                goto fail;
            }
            cap *= 2;
            buf = ias_xrealloc(buf, cap);
        }
        got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        seterr(err, errlen, "%s: read error", path);
        goto fail;
    }
    if (len > IAS_MIGRATE_FILE_MAX) {
        seterr(err, errlen, "%s: larger than %d bytes", path, IAS_MIGRATE_FILE_MAX);
        goto fail;
    }
    if (memchr(buf, '\0', len)) {
        seterr(err, errlen, "%s: contains a NUL byte", path);
        goto fail;
    }
    buf[len] = '\0';
    fclose(f);
    *out = buf;
    return IAS_OK;
fail:
    fclose(f);
    free(buf);
    return IAS_ERR;
}

/* A decimal integer in [min, max], nothing else. */
static int parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (!s || !*s || (!is_digit(*s) && *s != '-'))
        return IAS_ERR;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return IAS_ERR;
    *out = v;
    return IAS_OK;
}

int ias_migrate_parse_args(int argc, char *const *argv, ias_migrate_cmd *cmd, char *err,
                           size_t errlen)
{
    const char *c = argc > 1 ? argv[1] : NULL;

    memset(cmd, 0, sizeof(*cmd));
    if (!c) {
        seterr(err, errlen, "missing command");
        return IAS_ERR;
    }
    if (strcmp(c, "help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0) {
        cmd->kind = IAS_MIGRATE_CMD_HELP;
        return argc == 2 ? IAS_OK : (seterr(err, errlen, "help takes no arguments"), IAS_ERR);
    }
    if (strcmp(c, "up") == 0) {
        cmd->kind = IAS_MIGRATE_CMD_UP;
        if (argc == 2)
            return IAS_OK;
        if (argc == 3 && parse_int(argv[2], 1, 1000000, &cmd->n) == IAS_OK)
            return IAS_OK;
        seterr(err, errlen, "up takes an optional positive count");
        return IAS_ERR;
    }
    if (strcmp(c, "down") == 0) {
        cmd->kind = IAS_MIGRATE_CMD_DOWN;
        if (argc == 3 && (strcmp(argv[2], "all") == 0 || strcmp(argv[2], "-all") == 0)) {
            cmd->n = -1;
            return IAS_OK;
        }
        if (argc == 3 && parse_int(argv[2], 1, 1000000, &cmd->n) == IAS_OK)
            return IAS_OK;
        seterr(err, errlen, "down takes a positive count or \"all\"");
        return IAS_ERR;
    }
    if (strcmp(c, "version") == 0) {
        cmd->kind = IAS_MIGRATE_CMD_VERSION;
        return argc == 2 ? IAS_OK : (seterr(err, errlen, "version takes no arguments"), IAS_ERR);
    }
    if (strcmp(c, "force") == 0) {
        cmd->kind = IAS_MIGRATE_CMD_FORCE;
        if (argc == 3 && parse_int(argv[2], -1, LLONG_MAX, &cmd->version) == IAS_OK)
            return IAS_OK;
        seterr(err, errlen, "force takes a version (a migration's number, or -1 for none)");
        return IAS_ERR;
    }
    seterr(err, errlen, "unknown command \"%.40s\"", c);
    return IAS_ERR;
}

/* ---- against the database ---- */

static int table_exists(ias_pg *pg, bool *exists)
{
    PGresult *res = NULL;

    if (ias_pg_exec(pg, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &res) !=
        IAS_OK)
        return IAS_ERR;
    if (ias_pg_value_bool(res, 0, 0, exists) != IAS_OK) {
        ias_pg_clear(res);
        return IAS_ERR;
    }
    ias_pg_clear(res);
    return IAS_OK;
}

int ias_migrate_version(ias_pg *pg, long long *version, bool *dirty)
{
    PGresult *res = NULL;
    bool exists = false;
    int rc = IAS_ERR;

    *version = IAS_MIGRATE_NIL_VERSION;
    *dirty = false;
    if (table_exists(pg, &exists) != IAS_OK)
        return IAS_ERR;
    if (!exists)
        return IAS_OK;
    if (ias_pg_exec(pg, "SELECT version, dirty FROM schema_migrations", 0, NULL, &res) != IAS_OK)
        return IAS_ERR;
    if (ias_pg_nrows(res) == 0) {
        rc = IAS_OK;
    } else if (ias_pg_nrows(res) == 1 && ias_pg_value_ll(res, 0, 0, version) == IAS_OK &&
               ias_pg_value_bool(res, 0, 1, dirty) == IAS_OK) {
        rc = IAS_OK;
    }
    ias_pg_clear(res);
    return rc;
}

static void pg_fail(FILE *errout, ias_pg *pg, const char *what)
{
    const char *st = ias_pg_last_sqlstate(pg);

    fprintf(errout, "ias-migrate: %s: %s%s%s%s\n", what, *st ? "ERROR " : "", st, *st ? ": " : "",
            ias_pg_last_message(pg));
}

/* Waits for the runner lock with try-lock polling, so the wait is bounded. */
static int take_lock(ias_pg *pg, long long timeout_ms, FILE *out, FILE *errout)
{
    char key[32];
    const char *params[1] = {key};
    uint64_t deadline = ias_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    bool said = false;

    snprintf(key, sizeof(key), "%lld", IAS_MIGRATE_LOCK_KEY);
    for (;;) {
        PGresult *res = NULL;
        bool got = false;
        struct timespec ts = {0, 200 * 1000000L};

        if (ias_pg_exec(pg, "SELECT pg_try_advisory_lock($1::bigint)", 1, params, &res) != IAS_OK) {
            pg_fail(errout, pg, "taking the migration lock");
            return IAS_ERR;
        }
        if (ias_pg_value_bool(res, 0, 0, &got) != IAS_OK)
            got = false;
        ias_pg_clear(res);
        if (got)
            return IAS_OK;
        if (ias_now_ms() >= deadline) {
            fprintf(errout,
                    "ias-migrate: another runner holds the migration lock; gave up after "
                    "%lld ms\n",
                    timeout_ms);
            return IAS_ERR;
        }
        if (!said) {
            fprintf(out, "waiting for another ias-migrate to finish\n");
            fflush(out);
            said = true;
        }
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

static void release_lock(ias_pg *pg)
{
    char key[32];
    const char *params[1] = {key};

    snprintf(key, sizeof(key), "%lld", IAS_MIGRATE_LOCK_KEY);
    /* Closing the session releases it too; a failure here is harmless. */
    if (ias_pg_exec(pg, "SELECT pg_advisory_unlock($1::bigint)", 1, params, NULL) != IAS_OK)
        ias_warn(NULL, "releasing the migration lock failed: %s", ias_pg_last_message(pg));
}

/* Creates golang-migrate's table (under the lock, so runners do not race). */
static int ensure_table(ias_pg *pg, FILE *errout)
{
    static const char *const ddl[] = {
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, "
        "dirty boolean NOT NULL)",
        "COMMENT ON TABLE schema_migrations IS 'Migration state in golang-migrate''s layout: at "
        "most one row, written by ias-migrate.'",
        "COMMENT ON COLUMN schema_migrations.version IS 'Version (file number) of the last "
        "applied migration.'",
        "COMMENT ON COLUMN schema_migrations.dirty IS 'True while a migration is being applied; "
        "true after a failure outside a transaction means manual repair and \"force\".'",
    };
    bool exists = false;

    if (table_exists(pg, &exists) != IAS_OK) {
        pg_fail(errout, pg, "reading schema_migrations");
        return IAS_ERR;
    }
    if (exists)
        return IAS_OK;
    if (ias_pg_begin(pg) != IAS_OK)
        goto fail;
    for (size_t i = 0; i < IAS_ARRAY_LEN(ddl); i++) {
        if (ias_pg_exec(pg, ddl[i], 0, NULL, NULL) != IAS_OK)
            goto fail;
    }
    if (ias_pg_commit(pg) != IAS_OK)
        goto fail;
    return IAS_OK;
fail:
    pg_fail(errout, pg, "creating schema_migrations");
    (void)ias_pg_rollback(pg);
    return IAS_ERR;
}

/* golang-migrate's SetVersion: replace the row; no row for "no version"
 * unless dirty. */
static int set_version(ias_pg *pg, long long version, bool dirty)
{
    char v[32];
    const char *params[2] = {v, dirty ? "true" : "false"};

    if (ias_pg_exec(pg, "DELETE FROM schema_migrations", 0, NULL, NULL) != IAS_OK)
        return IAS_ERR;
    if (version == IAS_MIGRATE_NIL_VERSION && !dirty)
        return IAS_OK;
    snprintf(v, sizeof(v), "%lld", version);
    return ias_pg_exec(pg, "INSERT INTO schema_migrations (version, dirty) VALUES ($1, $2)", 2,
                       params, NULL);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void version_text(long long v, char *buf, size_t len)
{
    if (v == IAS_MIGRATE_NIL_VERSION)
        snprintf(buf, len, "none");
    else
        snprintf(buf, len, "%lld", v);
}

static int run_step(ias_pg *pg, const ias_migrate_step *s, long long from, FILE *out, FILE *errout)
{
    const char *path = s->dir == IAS_MIGRATE_UP ? s->m->up_path : s->m->down_path;
    const char *file = base_name(path);
    char err[512], vfrom[32], vto[32];
    uint64_t t0 = ias_now_us();
    char *sql = NULL;

    version_text(from, vfrom, sizeof(vfrom));
    version_text(s->target, vto, sizeof(vto));
    if (ias_migrate_read_file(path, &sql, err, sizeof(err)) != IAS_OK) {
        fprintf(errout, "ias-migrate: %s\n", err);
        return IAS_ERR;
    }
    if (ias_pg_begin(pg) != IAS_OK) {
        pg_fail(errout, pg, "BEGIN");
        goto fail;
    }
    if (set_version(pg, s->target, true) != IAS_OK) {
        pg_fail(errout, pg, "marking schema_migrations dirty");
        goto fail_rollback;
    }
    if (ias_pg_exec_script(pg, sql) != IAS_OK) {
        int line = ias_migrate_line_of(sql, ias_pg_last_position(pg));
        const char *st = ias_pg_last_sqlstate(pg);

        if (line > 0)
            fprintf(errout, "ias-migrate: %s: line %d: ERROR %s: %s\n", file, line,
                    *st ? st : "?????", ias_pg_last_message(pg));
        else
            fprintf(errout, "ias-migrate: %s: ERROR %s: %s\n", file, *st ? st : "?????",
                    ias_pg_last_message(pg));
        if (!ias_pg_in_tx(pg)) {
            /* The file ran its own COMMIT: part of it may have stuck. */
            fprintf(errout,
                    "ias-migrate: %s ended the transaction itself; the database may be "
                    "dirty at version %s: repair it by hand, then \"force\"\n",
                    file, vto);
            goto fail;
        }
        fprintf(errout, "ias-migrate: %s rolled back; the database stays at version %s\n", file,
                vfrom);
        goto fail_rollback;
    }
    if (!ias_pg_in_tx(pg)) {
        fprintf(errout,
                "ias-migrate: %s ended the transaction itself (COMMIT or ROLLBACK in the "
                "file); the database is left dirty at version %s: repair it by hand, "
                "then \"force\"\n",
                file, vto);
        goto fail;
    }
    if (set_version(pg, s->target, false) != IAS_OK) {
        pg_fail(errout, pg, "updating schema_migrations");
        goto fail_rollback;
    }
    if (ias_pg_commit(pg) != IAS_OK) {
        pg_fail(errout, pg, file);
        goto fail;
    }
    fprintf(out, "%lld/%s %s (%.1f ms)\n", s->m->version, s->dir == IAS_MIGRATE_UP ? "u" : "d",
            s->m->name, (double)(ias_now_us() - t0) / 1000.0);
    fflush(out);
    free(sql);
    return IAS_OK;
fail_rollback:
    (void)ias_pg_rollback(pg);
fail:
    free(sql);
    return IAS_ERR;
}

static int do_migrate(ias_pg *pg, const ias_migration_set *set, const ias_migrate_cmd *cmd,
                      FILE *out, FILE *errout)
{
    ias_migrate_direction dir = cmd->kind == IAS_MIGRATE_CMD_UP ? IAS_MIGRATE_UP : IAS_MIGRATE_DOWN;
    ias_migrate_step *steps = NULL;
    size_t nsteps = 0;
    long long current;
    bool dirty;
    char err[512];

    if (ias_migrate_version(pg, &current, &dirty) != IAS_OK) {
        pg_fail(errout, pg, "reading schema_migrations");
        return IAS_ERR;
    }
    if (dirty) {
        fprintf(errout,
                "ias-migrate: the database is dirty at version %lld (a migration failed "
                "half-way): repair it by hand, then run \"force <version>\"\n",
                current);
        return IAS_ERR;
    }
    if (ias_migrate_plan(set, current, dir, cmd->n, &steps, &nsteps, err, sizeof(err)) != IAS_OK) {
        fprintf(errout, "ias-migrate: %s\n", err);
        return IAS_ERR;
    }
    if (nsteps == 0)
        fprintf(out, "no change\n");
    else if (dir == IAS_MIGRATE_UP && cmd->n > 0 && (size_t)cmd->n > nsteps)
        fprintf(out, "only %zu of %lld requested migrations are pending\n", nsteps, cmd->n);
    for (size_t i = 0; i < nsteps; i++) {
        if (run_step(pg, &steps[i], current, out, errout) != IAS_OK) {
            free(steps);
            return IAS_ERR;
        }
        current = steps[i].target;
    }
    free(steps);
    return IAS_OK;
}

static int do_force(ias_pg *pg, const ias_migration_set *set, long long version, FILE *out,
                    FILE *errout)
{
    if (version != IAS_MIGRATE_NIL_VERSION && ias_migrate_find(set, version) < 0) {
        fprintf(errout, "ias-migrate: version %lld has no migration file\n", version);
        return IAS_ERR;
    }
    if (ias_pg_begin(pg) != IAS_OK || set_version(pg, version, false) != IAS_OK ||
        ias_pg_commit(pg) != IAS_OK) {
        pg_fail(errout, pg, "force");
        (void)ias_pg_rollback(pg);
        return IAS_ERR;
    }
    if (version == IAS_MIGRATE_NIL_VERSION)
        fprintf(out, "forced to no version\n");
    else
        fprintf(out, "forced to version %lld\n", version);
    return IAS_OK;
}

int ias_migrate_run(ias_pg *pg, const ias_migration_set *set, const ias_migrate_cmd *cmd,
                    long long lock_timeout_ms, FILE *out, FILE *errout)
{
    int rc;

    if (ias_pg_ensure(pg) != IAS_OK) {
        pg_fail(errout, pg, "cannot connect to PostgreSQL");
        return IAS_ERR;
    }
    if (cmd->kind == IAS_MIGRATE_CMD_VERSION) {
        long long v;
        bool dirty;

        if (ias_migrate_version(pg, &v, &dirty) != IAS_OK) {
            pg_fail(errout, pg, "reading schema_migrations");
            return IAS_ERR;
        }
        if (v == IAS_MIGRATE_NIL_VERSION && !dirty)
            fprintf(out, "none\n");
        else
            fprintf(out, "%lld%s\n", v, dirty ? " dirty" : "");
        return IAS_OK;
    }
    if (cmd->kind != IAS_MIGRATE_CMD_UP && cmd->kind != IAS_MIGRATE_CMD_DOWN &&
        cmd->kind != IAS_MIGRATE_CMD_FORCE) {
        fprintf(errout, "ias-migrate: nothing to run\n");
        return IAS_ERR;
    }
    if (take_lock(pg, lock_timeout_ms, out, errout) != IAS_OK)
        return IAS_ERR;
    rc = ensure_table(pg, errout);
    if (rc == IAS_OK) {
        if (cmd->kind == IAS_MIGRATE_CMD_FORCE)
            rc = do_force(pg, set, cmd->version, out, errout);
        else
            rc = do_migrate(pg, set, cmd, out, errout);
    }
    release_lock(pg);
    return rc;
}
