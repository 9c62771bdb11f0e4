/* Signed checkpoints: "the chain up to seq ends in hash", signed with Ed25519
 * (OpenSSL EVP), and the export a third party verifies offline. */
#include "audit.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ias/log.h"
#include "ias/query.h"

/* ---- the key ---------------------------------------------------------------- */

static EVP_PKEY *key_from_base64(const char *text)
{
    unsigned char raw[64];
    size_t n = strlen(text);
    int got;

    /* 32 bytes are 44 base64 characters ending in one '='. */
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ' || text[n - 1] == '\r'))
        n--;
    if (n != 44 || text[43] != '=' || text[42] == '=')
        return NULL;
    got = EVP_DecodeBlock(raw, (const unsigned char *)text, (int)n);
    if (got != 33) /* EVP_DecodeBlock counts the padding as a zero byte */
        return NULL;
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, 32);
}

int audit_key_load(audit_ctx *ctx, const char *text, char *why, size_t whylen)
{
    EVP_PKEY *key = NULL;
    unsigned char pub[32];
    size_t publen = sizeof(pub);
    BIO *bio;

    if (strncmp(text, "-----BEGIN", 10) == 0) {
        bio = BIO_new_mem_buf(text, -1);
        if (!bio)
            ias_die("out of memory");
        key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);
        if (!key) {
            snprintf(why, whylen, "not a readable PEM private key");
            return IAS_ERR;
        }
    } else {
        key = key_from_base64(text);
        if (!key) {
            snprintf(why, whylen,
                     "want a PEM Ed25519 private key or the base64 of a 32-byte "
                     "seed (openssl rand -base64 32)");
            return IAS_ERR;
        }
    }
    if (EVP_PKEY_id(key) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_public_key(key, pub, &publen) != 1 || publen != 32) {
        EVP_PKEY_free(key);
        snprintf(why, whylen, "the key is not an Ed25519 key");
        return IAS_ERR;
    }
    /* key_id: hex SHA-256 of the raw 32-byte public key. */
    ias_sha256_hex(pub, publen, ctx->key_id);
    bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_PUBKEY(bio, key) != 1)
        ias_die("cannot write the public key");
    {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        ctx->public_key_pem = ias_xstrndup(data, (size_t)n);
    }
    BIO_free(bio);
    ctx->key = key;
    return IAS_OK;
}

void audit_key_free(audit_ctx *ctx)
{
    EVP_PKEY_free(ctx->key);
    ctx->key = NULL;
    free(ctx->public_key_pem);
    ctx->public_key_pem = NULL;
}

int audit_checkpoint_statement(long long seq, const char *hash, const char *key_id, char *buf,
                               size_t len)
{
    /* Members already in canonical order; every value is ASCII without escapes. */
    int n = snprintf(buf, len, "{\"hash\":\"%s\",\"key_id\":\"%s\",\"seq\":%lld,\"type\":\"%s\"}",
                     hash, key_id, seq, AUDIT_CHECKPOINT_TYPE);
    return n > 0 && (size_t)n < len ? IAS_OK : IAS_ERR;
}

static int sign(const audit_ctx *ctx, const char *msg, char *out, size_t outlen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[64];
    size_t siglen = sizeof(sig);
    int ok;

    if (!md)
        ias_die("out of memory");
    ok = EVP_DigestSignInit(md, NULL, NULL, NULL, ctx->key) == 1 &&
         EVP_DigestSign(md, sig, &siglen, (const unsigned char *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(md);
    if (!ok || outlen < 4 * ((siglen + 2) / 3) + 1)
        return IAS_ERR;
    EVP_EncodeBlock((unsigned char *)out, sig, (int)siglen);
    return IAS_OK;
}

bool audit_signature_valid(const audit_ctx *ctx, const char *msg, const char *signature_b64)
{
    unsigned char sig[96];
    size_t n = strlen(signature_b64);
    EVP_MD_CTX *md;
    bool ok;

    if (n != 88 || signature_b64[86] != '=' || signature_b64[87] != '=')
        return false;
    if (EVP_DecodeBlock(sig, (const unsigned char *)signature_b64, (int)n) != 66)
        return false;
    md = EVP_MD_CTX_new();
    if (!md)
        ias_die("out of memory");
    ok = EVP_DigestVerifyInit(md, NULL, NULL, NULL, ctx->key) == 1 &&
         EVP_DigestVerify(md, sig, 64, (const unsigned char *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* ---- making checkpoints ----------------------------------------------------- */

int audit_checkpoint_maybe(audit_ctx *ctx, ias_pg *pg, bool force, bool *made)
{
    PGresult *res = NULL;
    long long head = 0, last = 0, age_ms = 0;
    char hash[IAS_SHA256_HEX_LEN + 1], stmt[256], sig[128], seqbuf[24];
    int rc = IAS_ERR;

    *made = false;
    /* Head, last checkpoint, and how long the oldest uncovered entry waited. */
    if (ias_pg_exec(pg,
                    "SELECT h.last_seq, h.last_hash, c.seq, "
                    "coalesce((extract(epoch FROM now() - l.created_at) * 1000)::bigint, 0) "
                    "FROM audit_chain_head h "
                    "CROSS JOIN (SELECT coalesce(max(seq), 0) AS seq FROM audit_checkpoints) c "
                    "LEFT JOIN audit_ledger l ON l.seq = c.seq + 1",
                    0, NULL, &res) != IAS_OK) {
        ias_warn(NULL, "checkpoint: %s", ias_pg_last_message(pg));
        return IAS_ERR;
    }
    if (ias_pg_nrows(res) != 1 || ias_pg_value_ll(res, 0, 0, &head) != IAS_OK ||
        ias_pg_value_ll(res, 0, 2, &last) != IAS_OK ||
        ias_pg_value_ll(res, 0, 3, &age_ms) != IAS_OK)
        goto out;
    snprintf(hash, sizeof(hash), "%s", ias_pg_value(res, 0, 1));
    ias_pg_clear(res);
    res = NULL;
    if (head <= last ||
        (!force && head - last < ctx->checkpoint_every && age_ms < ctx->checkpoint_interval_ms)) {
        rc = IAS_OK;
        goto out;
    }
    if (audit_checkpoint_statement(head, hash, ctx->key_id, stmt, sizeof(stmt)) != IAS_OK ||
        sign(ctx, stmt, sig, sizeof(sig)) != IAS_OK) {
        ias_error(NULL, "checkpoint: signing failed");
        goto out;
    }
    snprintf(seqbuf, sizeof(seqbuf), "%lld", head);
    {
        const char *p[] = {seqbuf, hash, ctx->key_id, sig};
        /* Several instances may sign the same head: the first one wins. */
        if (ias_pg_exec(pg,
                        "INSERT INTO audit_checkpoints (seq, hash, key_id, signature) "
                        "VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING",
                        4, p, &res) != IAS_OK) {
            ias_warn(NULL, "checkpoint: %s", ias_pg_last_message(pg));
            goto out;
        }
    }
    *made = ias_pg_affected(res) == 1;
    if (*made) {
        ias_counter_inc(ctx->m_checkpoints);
        ias_info(NULL, "checkpoint signed at seq %lld (%lld entries since seq %lld)", head,
                 head - last, last);
    }
    rc = IAS_OK;
out:
    ias_pg_clear(res);
    return rc;
}

void *audit_checkpoint_main(void *arg)
{
    audit_ctx *ctx = arg;
    ias_pg *pg = ias_pg_new(ctx->pg_dsn, 5000);
    uint64_t last_check = 0;

    if (!pg) {
        ias_error(NULL, "checkpoint thread: cannot create a PostgreSQL handle");
        return NULL;
    }
    ias_pg_set_application_name(pg, "ias-audit-checkpoint");
    while (!atomic_load(&ctx->stop)) {
        struct timespec until;
        bool woken;
        bool made;

        /* Woken by appends (count rule) or once a second (interval rule). */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_mutex_lock(&ctx->mu);
        while (!ctx->appended && !atomic_load(&ctx->stop)) {
            if (pthread_cond_timedwait(&ctx->cond, &ctx->mu, &until) == ETIMEDOUT)
                break;
        }
        woken = ctx->appended;
        ctx->appended = false;
        pthread_mutex_unlock(&ctx->mu);
        if (atomic_load(&ctx->stop))
            break;
        /* At most ten head reads a second however fast entries arrive. */
        if (woken && ias_now_ms() - last_check < 100) {
            struct timespec pause = {0, 100 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
        last_check = ias_now_ms();
        if (audit_checkpoint_maybe(ctx, pg, false, &made) != IAS_OK)
            ias_warn(NULL, "checkpoint check failed; will try again");
    }
    ias_pg_free(pg);
    return NULL;
}

/* ---- GET /api/v1/audit/checkpoints ------------------------------------------ */

static cJSON *checkpoint_json(const PGresult *res, int row)
{
    cJSON *o = cJSON_CreateObject();
    long long id = 0, seq = 0;
    char stmt[256];

    if (!o)
        ias_die("out of memory");
    if (ias_pg_value_ll(res, row, 0, &id) != IAS_OK || ias_pg_value_ll(res, row, 1, &seq) != IAS_OK)
        id = seq = 0;
    cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddStringToObject(o, "hash", ias_pg_value(res, row, 2));
    cJSON_AddStringToObject(o, "algorithm", ias_pg_value(res, row, 3));
    cJSON_AddStringToObject(o, "key_id", ias_pg_value(res, row, 4));
    cJSON_AddStringToObject(o, "signature", ias_pg_value(res, row, 5));
    if (audit_checkpoint_statement(seq, ias_pg_value(res, row, 2), ias_pg_value(res, row, 4), stmt,
                                   sizeof(stmt)) == IAS_OK)
        cJSON_AddStringToObject(o, "statement", stmt);
    cJSON_AddStringToObject(o, "created_at", ias_pg_value(res, row, 6));
    return o;
}

#define CHECKPOINT_COLS "id, seq, hash, algorithm, key_id, signature, " AUDIT_SQL_TS("created_at")

void audit_h_checkpoints(ias_req *r, void *arg)
{
    audit_ctx *ctx = arg;
    ias_principal p;
    long long limit = 100, cursor = 0;
    char lim[24], cur[24];
    PGresult *res = NULL;
    cJSON *out, *data;
    int n;

    if (audit_require_system_admin(r, ctx, &p) != IAS_OK)
        return;
    if (ias_query_get_ll(ias_req_query(r), "limit", 1, 1000, &limit) == IAS_QUERY_MALFORMED) {
        audit_problem(r, 400, "invalid-parameter", "limit must be an integer in [1, 1000]");
        return;
    }
    if (audit_query_seq(r, "cursor", &cursor) != IAS_OK)
        return;
    snprintf(lim, sizeof(lim), "%lld", limit + 1);
    snprintf(cur, sizeof(cur), "%lld", cursor);
    {
        const char *prm[] = {cur, lim};
        if (ias_pg_exec(audit_pg(r),
                        "SELECT " CHECKPOINT_COLS " FROM audit_checkpoints "
                        "WHERE ($1::bigint = 0 OR id < $1::bigint) ORDER BY id DESC LIMIT $2",
                        2, prm, &res) != IAS_OK) {
            audit_problem(r, 503, "database-unavailable", "the ledger database is unavailable");
            return;
        }
    }
    out = cJSON_CreateObject();
    data = cJSON_AddArrayToObject(out, "data");
    n = ias_pg_nrows(res);
    for (int i = 0; i < n && i < limit; i++)
        cJSON_AddItemToArray(data, checkpoint_json(res, i));
    if (n > limit) {
        long long last = 0;
        char next[24];
        if (ias_pg_value_ll(res, (int)limit - 1, 0, &last) == IAS_OK) {
            snprintf(next, sizeof(next), "%lld", last);
            cJSON_AddStringToObject(out, "next_cursor", next);
        }
    } else {
        cJSON_AddNullToObject(out, "next_cursor");
    }
    cJSON_AddStringToObject(out, "key_id", ctx->key_id);
    cJSON_AddStringToObject(out, "public_key_pem", ctx->public_key_pem);
    ias_pg_clear(res);
    ias_reply_json(r, 200, out);
    cJSON_Delete(out);
}

/* ---- GET /api/v1/audit/export ----------------------------------------------- */

typedef struct sbuf {
    char *data;
    size_t len, cap;
} sbuf;

static void sbuf_line(sbuf *b, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    size_t n;

    if (!s)
        ias_die("out of memory");
    n = strlen(s);
    if (b->cap - b->len < n + 2) {
        b->cap = (b->cap + n + 2) * 2;
        b->data = ias_xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len++] = '\n';
    free(s);
}

void audit_h_export(ias_req *r, void *arg)
{
    audit_ctx *ctx = arg;
    ias_principal p;
    long long from = 1, to = 0, head = 0;
    char fb[24], tb[24];
    PGresult *res = NULL;
    sbuf out = {0};
    cJSON *o;
    ias_pg *pg = audit_pg(r);

    if (audit_require_system_admin(r, ctx, &p) != IAS_OK)
        return;
    if (audit_query_seq(r, "from", &from) != IAS_OK || audit_query_seq(r, "to", &to) != IAS_OK)
        return;
    if (ias_pg_exec(pg, "SELECT last_seq FROM audit_chain_head", 0, NULL, &res) != IAS_OK ||
        ias_pg_nrows(res) != 1 || ias_pg_value_ll(res, 0, 0, &head) != IAS_OK) {
        ias_pg_clear(res);
        audit_problem(r, 503, "database-unavailable", "the ledger database is unavailable");
        return;
    }
    ias_pg_clear(res);
    res = NULL;
    if (to == 0)
        to = from + AUDIT_EXPORT_MAX - 1 < head ? from + AUDIT_EXPORT_MAX - 1 : head;
    if (to < from && !(head < from)) {
        audit_problem(r, 400, "invalid-range", "to (%lld) is before from (%lld)", to, from);
        return;
    }
    if (to - from + 1 > AUDIT_EXPORT_MAX) {
        audit_problem(r, 400, "range-too-large",
                      "at most %d entries per export; page with from and to", AUDIT_EXPORT_MAX);
        return;
    }

    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ias.audit.export.v1");
    cJSON_AddNumberToObject(o, "from", (double)from);
    cJSON_AddNumberToObject(o, "to", (double)to);
    cJSON_AddNumberToObject(o, "head_seq", (double)head);
    cJSON_AddStringToObject(o, "genesis_hash", AUDIT_GENESIS_HASH);
    cJSON_AddStringToObject(o, "key_id", ctx->key_id);
    cJSON_AddStringToObject(o, "public_key_pem", ctx->public_key_pem);
    cJSON_AddStringToObject(o, "hash_rule",
                            "hash = hex(sha256(prev_hash || RFC 8785 canonical JSON of entry))");
    {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddItemToObject(w, "export", o);
        sbuf_line(&out, w);
        cJSON_Delete(w);
    }

    snprintf(fb, sizeof(fb), "%lld", from);
    snprintf(tb, sizeof(tb), "%lld", to);
    {
        const char *prm[] = {fb, tb};
        if (ias_pg_exec(pg,
                        "SELECT " AUDIT_ENTRY_COLS " FROM audit_ledger "
                        "WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                        2, prm, &res) != IAS_OK)
            goto dberr;
    }
    for (int i = 0; i < ias_pg_nrows(res); i++) {
        audit_entry e;
        cJSON *line;

        if (audit_entry_from_row(res, i, &e) != IAS_OK)
            goto dberr;
        line = cJSON_CreateObject();
        cJSON_AddItemToObject(line, "entry", audit_entry_json(&e, false));
        cJSON_AddStringToObject(line, "prev_hash", e.prev_hash);
        cJSON_AddStringToObject(line, "hash", e.hash);
        sbuf_line(&out, line);
        cJSON_Delete(line);
        audit_entry_clear(&e);
    }
    ias_pg_clear(res);
    res = NULL;
    {
        const char *prm[] = {fb, tb};
        if (ias_pg_exec(pg,
                        "SELECT " CHECKPOINT_COLS " FROM audit_checkpoints "
                        "WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
                        2, prm, &res) != IAS_OK)
            goto dberr;
    }
    for (int i = 0; i < ias_pg_nrows(res); i++) {
        cJSON *line = cJSON_CreateObject();
        cJSON_AddItemToObject(line, "checkpoint", checkpoint_json(res, i));
        sbuf_line(&out, line);
        cJSON_Delete(line);
    }
    ias_pg_clear(res);
    ias_reply(r, 200, "application/x-ndjson", out.data, out.len);
    free(out.data);
    return;
dberr:
    ias_pg_clear(res);
    free(out.data);
    audit_problem(r, 503, "database-unavailable", "the ledger database is unavailable");
}
