/* Monthly partitions of usage_events, kept ahead of time: at start and then
 * daily (maintenance thread) the current UTC month of the service clock and
 * the next ones are created by ias_ensure_usage_partitions (migration 0004).
 * A late event outside every partition is handled by the consumer, which
 * creates its month and retries. */
#include "accounting.h"

#include <stdio.h>
#include <time.h>

#include "ias/log.h"
#include "ias/pg.h"

int acct_partitions_ensure(ias_pg *pg, int64_t now_ms, int months)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    char day[48], n[16];
    const char *params[2] = {day, n};
    PGresult *res = NULL;
    long long created = 0;

    if (gmtime_r(&t, &tm) == NULL)
        return IAS_ERR;
    snprintf(day, sizeof(day), "%04d-%02d-01", tm.tm_year + 1900, tm.tm_mon + 1);
    snprintf(n, sizeof(n), "%d", months);
    if (ias_pg_exec(pg, "SELECT ias_ensure_usage_partitions($1::date, $2::integer)", 2, params,
                    &res) != IAS_OK) {
        ias_warn(NULL, "ensuring usage partitions from %s: %s", day, ias_pg_last_message(pg));
        return IAS_ERR;
    }
    if (ias_pg_value_ll(res, 0, 0, &created) == IAS_OK && created > 0)
        ias_info(NULL, "created %lld usage_events partition(s) from %s on", created, day);
    ias_pg_clear(res);
    return IAS_OK;
}

/* processed_events only has to outlive the longest redelivery window (a
 * router's spool replayed after an outage); older ids are deleted in slices so
 * no single statement holds locks for long. */
int acct_processed_prune(ias_pg *pg, int64_t retention_ms)
{
    char ms[32];
    const char *params[1] = {ms};
    long long total = 0;

    snprintf(ms, sizeof(ms), "%lld", (long long)retention_ms);
    for (int i = 0; i < 1000; i++) {
        PGresult *res = NULL;
        long long n;
        if (ias_pg_exec(pg,
                        "DELETE FROM processed_events WHERE event_id IN ("
                        " SELECT event_id FROM processed_events"
                        " WHERE processed_at < now() - $1::bigint * interval '1 millisecond'"
                        " LIMIT 10000)",
                        1, params, &res) != IAS_OK) {
            ias_warn(NULL, "pruning processed_events: %s", ias_pg_last_message(pg));
            return IAS_ERR;
        }
        n = ias_pg_affected(res);
        ias_pg_clear(res);
        total += n;
        if (n < 10000)
            break;
    }
    if (total > 0)
        ias_info(NULL, "pruned %lld processed_events ids older than the redelivery window", total);
    return IAS_OK;
}
