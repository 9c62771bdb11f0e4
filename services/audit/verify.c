/* GET /api/v1/audit/verify?from=&to=: recomputes the chain over a range and
 * reports the first entry that does not match. Checks, in seq order:
 *   - no seq is missing;
 *   - prev_hash equals the stored hash of the entry before (for from > 1 the
 *     entry before the range is read too);
 *   - hash equals SHA-256(prev_hash || canonical JSON) recomputed from the row;
 *   - every checkpoint in the range names the recomputed hash of its seq and
 *     carries a valid signature of this service's key (checkpoints of another
 *     key are reported as not checked);
 *   - when the range reaches the head, the head names the last entry's hash.
 * Rows are read in pages so memory stays bounded however long the chain. */
#include "audit.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/log.h"

/* Rows are read 1000 at a time (LIMIT in the query below). */

typedef struct mismatch {
    bool found;
    long long seq;
    const char *problem;
    char expected[IAS_SHA256_HEX_LEN + 32];
    char stored[IAS_SHA256_HEX_LEN + 32];
} mismatch;

static void report(mismatch *m, long long seq, const char *problem, const char *expected,
                   const char *stored)
{
    if (m->found)
        return;
    m->found = true;
    m->seq = seq;
    m->problem = problem;
    snprintf(m->expected, sizeof(m->expected), "%s", expected ? expected : "");
    snprintf(m->stored, sizeof(m->stored), "%s", stored ? stored : "");
}

void audit_h_verify(ias_req *r, void *arg)
{
    audit_ctx *ctx = arg;
    ias_principal p;
    ias_pg *pg = audit_pg(r);
    long long from = 1, to = 0, head = 0, next, checked = 0, cps = 0, cps_foreign = 0;
    char head_hash[IAS_SHA256_HEX_LEN + 1], prev[IAS_SHA256_HEX_LEN + 1];
    char fb[24], tb[24];
    PGresult *res = NULL, *cpres = NULL;
    int cpi = 0, ncp = 0;
    mismatch mm = {0};
    cJSON *out;

    if (audit_require_system_admin(r, ctx, &p) != IAS_OK)
        return;
    if (audit_query_seq(r, "from", &from) != IAS_OK || audit_query_seq(r, "to", &to) != IAS_OK)
        return;
    if (ias_pg_exec(pg, "SELECT last_seq, last_hash FROM audit_chain_head", 0, NULL, &res) !=
            IAS_OK ||
        ias_pg_nrows(res) != 1 || ias_pg_value_ll(res, 0, 0, &head) != IAS_OK)
        goto dberr;
    snprintf(head_hash, sizeof(head_hash), "%s", ias_pg_value(res, 0, 1));
    ias_pg_clear(res);
    res = NULL;
    if (to == 0 || to > head)
        to = head;
    if (from > to && head > 0 && from > head) {
        audit_problem(r, 400, "invalid-range", "from (%lld) is past the head (%lld)", from, head);
        return;
    }

    /* The link into the range. */
    snprintf(prev, sizeof(prev), "%s", AUDIT_GENESIS_HASH);
    if (from > 1) {
        const char *prm[1];
        snprintf(fb, sizeof(fb), "%lld", from - 1);
        prm[0] = fb;
        if (ias_pg_exec(pg, "SELECT hash FROM audit_ledger WHERE seq = $1", 1, prm, &res) != IAS_OK)
            goto dberr;
        if (ias_pg_nrows(res) == 1)
            snprintf(prev, sizeof(prev), "%s", ias_pg_value(res, 0, 0));
        else
            report(&mm, from - 1, "missing", NULL, NULL);
        ias_pg_clear(res);
        res = NULL;
    }

    snprintf(fb, sizeof(fb), "%lld", from);
    snprintf(tb, sizeof(tb), "%lld", to);
    {
        const char *prm[] = {fb, tb};
        if (ias_pg_exec(pg,
                        "SELECT seq, hash, key_id, signature FROM audit_checkpoints "
                        "WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                        2, prm, &cpres) != IAS_OK)
            goto dberr;
        ncp = ias_pg_nrows(cpres);
    }

    next = from;
    while (!mm.found && next <= to) {
        char nb[24];
        int n;

        snprintf(nb, sizeof(nb), "%lld", next);
        {
            const char *prm[] = {nb, tb};
            if (ias_pg_exec(pg,
                            "SELECT " AUDIT_ENTRY_COLS " FROM audit_ledger "
                            "WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT 1000",
                            2, prm, &res) != IAS_OK)
                goto dberr;
        }
        n = ias_pg_nrows(res);
        if (n == 0) {
            report(&mm, next, "missing", NULL, NULL);
            break;
        }
        for (int i = 0; i < n && !mm.found; i++) {
            audit_entry e;
            char *canon;
            size_t clen = 0;
            char hash[IAS_SHA256_HEX_LEN + 1];

            if (audit_entry_from_row(res, i, &e) != IAS_OK) {
                report(&mm, next, "unreadable", NULL, NULL);
                break;
            }
            if (e.seq != next) {
                report(&mm, next, "missing", NULL, NULL);
                audit_entry_clear(&e);
                break;
            }
            if (strcmp(e.prev_hash, prev) != 0) {
                report(&mm, e.seq, "prev_hash_mismatch", prev, e.prev_hash);
                audit_entry_clear(&e);
                break;
            }
            canon = audit_entry_canonical(&e, &clen);
            if (!canon) {
                report(&mm, e.seq, "unreadable", NULL, NULL);
                audit_entry_clear(&e);
                break;
            }
            /* Recomputed from the row's own prev_hash, which equals prev here. */
            audit_chain_hash(e.prev_hash, canon, clen, hash);
            free(canon);
            if (strcmp(hash, e.hash) != 0) {
                report(&mm, e.seq, "hash_mismatch", hash, e.hash);
                audit_entry_clear(&e);
                break;
            }
            while (cpi < ncp) {
                long long cps_seq = 0;
                if (ias_pg_value_ll(cpres, cpi, 0, &cps_seq) != IAS_OK || cps_seq > e.seq)
                    break;
                if (cps_seq == e.seq) {
                    char stmt[256];
                    const char *cph = ias_pg_value(cpres, cpi, 1);
                    const char *kid = ias_pg_value(cpres, cpi, 2);

                    if (strcmp(cph, hash) != 0) {
                        report(&mm, e.seq, "checkpoint_mismatch", hash, cph);
                    } else if (strcmp(kid, ctx->key_id) != 0) {
                        cps_foreign++;
                    } else if (audit_checkpoint_statement(e.seq, cph, kid, stmt, sizeof(stmt)) !=
                                   IAS_OK ||
                               !audit_signature_valid(ctx, stmt, ias_pg_value(cpres, cpi, 3))) {
                        report(&mm, e.seq, "checkpoint_bad_signature", NULL, NULL);
                    } else {
                        cps++;
                    }
                }
                cpi++;
            }
            snprintf(prev, sizeof(prev), "%s", e.hash);
            checked++;
            next = e.seq + 1;
            audit_entry_clear(&e);
        }
        ias_pg_clear(res);
        res = NULL;
    }
    if (!mm.found && to == head && head > 0 && strcmp(prev, head_hash) != 0)
        report(&mm, head, "head_mismatch", prev, head_hash);

    out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "ok", !mm.found);
    cJSON_AddNumberToObject(out, "from", (double)from);
    cJSON_AddNumberToObject(out, "to", (double)to);
    cJSON_AddNumberToObject(out, "head_seq", (double)head);
    cJSON_AddNumberToObject(out, "entries_checked", (double)checked);
    cJSON_AddNumberToObject(out, "checkpoints_checked", (double)cps);
    cJSON_AddNumberToObject(out, "checkpoints_other_key", (double)cps_foreign);
    if (mm.found) {
        cJSON *m = cJSON_AddObjectToObject(out, "first_mismatch");
        cJSON_AddNumberToObject(m, "seq", (double)mm.seq);
        cJSON_AddStringToObject(m, "problem", mm.problem);
        if (mm.expected[0])
            cJSON_AddStringToObject(m, "expected", mm.expected);
        else
            cJSON_AddNullToObject(m, "expected");
        if (mm.stored[0])
            cJSON_AddStringToObject(m, "stored", mm.stored);
        else
            cJSON_AddNullToObject(m, "stored");
        ias_warn(ias_req_log(r), "audit chain verification failed at seq %lld: %s", mm.seq,
                 mm.problem);
    } else {
        cJSON_AddNullToObject(out, "first_mismatch");
    }
    ias_pg_clear(cpres);
    ias_reply_json(r, 200, out);
    cJSON_Delete(out);
    return;
dberr:
    ias_pg_clear(res);
    ias_pg_clear(cpres);
    audit_problem(r, 503, "database-unavailable", "the ledger database is unavailable");
}
