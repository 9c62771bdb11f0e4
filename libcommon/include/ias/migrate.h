/* Schema migrations in golang-migrate's layout, applied by ias-migrate.
 *
 * Files: <dir>/NNNN_name.up.sql and NNNN_name.down.sql (NNNN a positive
 * decimal version, name of [A-Za-z0-9_.-]). State: golang-migrate's table
 * schema_migrations(version bigint not null primary key, dirty boolean not
 * null) holding at most one row; no row means no migration applied.
 *
 * Each file runs in its own transaction: BEGIN, version set to the target with
 * dirty = true, the whole file sent as one multi-statement simple query
 * (ias_pg_exec_script: the file is ours, not outside input), dirty = false,
 * COMMIT. A file that fails is rolled back whole, so the version stays where
 * it was and is not dirty. Files therefore must not contain BEGIN/COMMIT or
 * statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY); a
 * file that ends the transaction itself is reported and leaves the database
 * dirty, as golang-migrate would.
 *
 * A session advisory lock (IAS_MIGRATE_LOCK_KEY) serialises runners: a second
 * runner waits, then finds the work done. */
#ifndef IAS_MIGRATE_H
#define IAS_MIGRATE_H

#include <stdio.h>

#include "ias/common.h"
#include "ias/pg.h"

#define IAS_MIGRATE_NIL_VERSION (-1LL) /* no migration applied */
#define IAS_MIGRATE_NAME_MAX 128
#define IAS_MIGRATE_FILE_MAX (16 * 1024 * 1024)   /* bytes per SQL file */
#define IAS_MIGRATE_LOCK_KEY 0x6961732d6d696772LL /* "ias-migr" */

typedef enum {
    IAS_MIGRATE_UP = 0,
    IAS_MIGRATE_DOWN,
} ias_migrate_direction;

typedef struct ias_migration {
    long long version;
    char name[IAS_MIGRATE_NAME_MAX]; /* "tenancy" of 0001_tenancy.up.sql */
    char *up_path;                   /* NULL when the file is missing */
    char *down_path;
} ias_migration;

typedef struct ias_migration_set {
    ias_migration *items; /* ascending by version */
    size_t n;
} ias_migration_set;

/* One planned file run: migration m in direction dir, after which the
 * database is at version target (IAS_MIGRATE_NIL_VERSION below the first). */
typedef struct ias_migrate_step {
    const ias_migration *m;
    ias_migrate_direction dir;
    long long target;
} ias_migrate_step;

typedef enum {
    IAS_MIGRATE_CMD_UP = 0,
    IAS_MIGRATE_CMD_DOWN,
    IAS_MIGRATE_CMD_VERSION,
    IAS_MIGRATE_CMD_FORCE,
    IAS_MIGRATE_CMD_HELP,
} ias_migrate_cmd_kind;

typedef struct ias_migrate_cmd {
    ias_migrate_cmd_kind kind;
    long long n;       /* up: 0 = all pending; down: -1 = all applied */
    long long version; /* force: target, >= -1 */
} ias_migrate_cmd;

/* Splits a file name. IAS_OK for a migration file; IAS_AGAIN for a name that
 * is not one and is ignored (README.md, dotfiles); IAS_ERR for a name that
 * starts with a digit but does not follow the layout. name gets the part
 * between "NNNN_" and ".up.sql"/".down.sql". */
int ias_migrate_parse_filename(const char *fname, long long *version, ias_migrate_direction *dir,
                               char *name, size_t namelen) IAS_MUSTCHECK;

/* Reads a directory into set (sorted). IAS_ERR with a message in err for an
 * unreadable directory, malformed names, a version given twice, or up and down
 * files of one version with different names. */
int ias_migrate_scan(const char *dir, ias_migration_set *set, char *err,
                     size_t errlen) IAS_MUSTCHECK;
void ias_migration_set_free(ias_migration_set *set);
/* Index of version in set, or -1. */
long ias_migrate_find(const ias_migration_set *set, long long version);

/* The steps that take the database from version current in direction dir: up
 * n files (n <= 0: all pending; fewer if fewer are pending), or down n files
 * (n < 0: all applied; more than are applied is an error). *steps is
 * allocated (free it) and may be empty. IAS_ERR with err when current is not
 * in set or a needed file is missing. */
int ias_migrate_plan(const ias_migration_set *set, long long current, ias_migrate_direction dir,
                     long long n, ias_migrate_step **steps, size_t *nsteps, char *err,
                     size_t errlen) IAS_MUSTCHECK;

/* 1-based line of a 1-based character (not byte) position in UTF-8 text, as
 * PostgreSQL reports error positions; 0 if pos is 0. */
int ias_migrate_line_of(const char *text, int pos);

/* Reads a whole SQL file: at most IAS_MIGRATE_FILE_MAX bytes, no NUL bytes. */
int ias_migrate_read_file(const char *path, char **out, char *err, size_t errlen) IAS_MUSTCHECK;

/* Parses "up [N] | down N|all | version | force V | help" (argv[0] is the
 * program). IAS_ERR with err on bad usage. */
int ias_migrate_parse_args(int argc, char *const *argv, ias_migrate_cmd *cmd, char *err,
                           size_t errlen) IAS_MUSTCHECK;

/* Reads the state: *version is IAS_MIGRATE_NIL_VERSION when nothing is
 * applied (or the table does not exist). */
int ias_migrate_version(ias_pg *pg, long long *version, bool *dirty) IAS_MUSTCHECK;

/* Runs cmd (up, down, force; version prints the state) against pg. Progress
 * goes to out, errors to errout. lock_timeout_ms bounds the wait for another
 * runner's lock. IAS_OK or IAS_ERR. */
int ias_migrate_run(ias_pg *pg, const ias_migration_set *set, const ias_migrate_cmd *cmd,
                    long long lock_timeout_ms, FILE *out, FILE *errout) IAS_MUSTCHECK;

#endif
