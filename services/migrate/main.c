/* ias-migrate: applies migrations/NNNN_name.{up,down}.sql to PostgreSQL.
 *
 *   ias-migrate up [N] | down N|all | version | force V
 *
 * Exit status: 0 done, 1 failed (the database is left at the last good
 * version), 2 bad usage or configuration (including a migrations directory
 * that cannot be read or holds a malformed file name). The runner lives in libcommon
 * (ias/migrate.h) so it can be tested without this binary. */
#include "ias/common.h"
#include "ias/config.h"
#include "ias/log.h"
#include "ias/migrate.h"
#include "ias/pg.h"

#include <stdio.h>
#include <stdlib.h>

static const ias_cfg_row config_rows[] = {
    {"IAS_PG_DSN", IAS_CFG_SECRET, NULL, 0, 0, "PostgreSQL connection string (URI or key=value)"},
    {"IAS_MIGRATIONS_DIR", IAS_CFG_STR, "./migrations", 0, 0,
     "directory holding NNNN_name.up.sql / .down.sql"},
    {"IAS_PG_CONNECT_TIMEOUT", IAS_CFG_MS, "5s", 100, 600000, "timeout of one connect attempt"},
    {"IAS_MIGRATE_LOCK_TIMEOUT", IAS_CFG_MS, "10m", 0, 86400000,
     "how long to wait for another runner's lock"},
    {"IAS_LOG_LEVEL", IAS_CFG_STR, "warn", 0, 0, "debug, info, warn or error"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ias-migrate <command>\n"
               "  up [N]        apply all pending migrations, or the next N\n"
               "  down N|all    revert the last N applied migrations, or all of them\n"
               "  version       print the current version (\"none\" if nothing is applied;\n"
               "                followed by \"dirty\" after a failed non-transactional change)\n"
               "  force V       set the version to V without running anything (-1: none)\n"
               "environment: IAS_PG_DSN (required), IAS_MIGRATIONS_DIR (./migrations),\n"
               "  IAS_PG_CONNECT_TIMEOUT (5s), IAS_MIGRATE_LOCK_TIMEOUT (10m), IAS_LOG_LEVEL\n"
               "exit status: 0 ok, 1 failure, 2 usage or configuration error\n");
}

int main(int argc, char **argv)
{
    ias_migration_set set = {0};
    ias_migrate_cmd cmd;
    ias_log_level level;
    ias_config *cfg;
    ias_pg *pg;
    char err[512];
    int rc;

    if (ias_migrate_parse_args(argc, argv, &cmd, err, sizeof(err)) != IAS_OK) {
        fprintf(stderr, "ias-migrate: %s\n", err);
        usage(stderr);
        return 2;
    }
    if (cmd.kind == IAS_MIGRATE_CMD_HELP) {
        usage(stdout);
        return 0;
    }
    cfg = ias_config_load_or_exit("ias-migrate", config_rows, IAS_ARRAY_LEN(config_rows));
    if (ias_log_level_parse(ias_config_str(cfg, "IAS_LOG_LEVEL"), &level) != IAS_OK) {
        fprintf(stderr, "ias-migrate: invalid configuration:\n  IAS_LOG_LEVEL: want debug, info, "
                        "warn or error\n");
        ias_config_free(cfg);
        return 2;
    }
    ias_log_init("migrate", level);

    if (cmd.kind != IAS_MIGRATE_CMD_VERSION &&
        ias_migrate_scan(ias_config_str(cfg, "IAS_MIGRATIONS_DIR"), &set, err, sizeof(err)) !=
            IAS_OK) {
        fprintf(stderr, "ias-migrate: %s\n", err);
        ias_config_free(cfg);
        return 2;
    }

    pg = ias_pg_new(ias_config_str(cfg, "IAS_PG_DSN"),
                    (int)ias_config_ms(cfg, "IAS_PG_CONNECT_TIMEOUT"));
    ias_pg_set_application_name(pg, "ias-migrate");
    /* Migrations may legitimately run long (index builds): no statement timeout. */
    if (ias_pg_set_statement_timeout(pg, 0) != IAS_OK)
        ias_die("bug: setting a timeout before connecting cannot fail");
    rc = ias_migrate_run(pg, &set, &cmd, ias_config_ms(cfg, "IAS_MIGRATE_LOCK_TIMEOUT"), stdout,
                         stderr);

    ias_pg_free(pg);
    ias_migration_set_free(&set);
    ias_config_free(cfg);
    return rc == IAS_OK ? 0 : 1;
}
