/* The hash chain: what an entry is, its canonical form and hash, validation of
 * incoming events, and the append under the chain-head row lock.
 *
 * An entry's canonical JSON (RFC 8785) holds exactly these members:
 *   action, actor {id, type}, created_at, details, event_id, occurred_at,
 *   org_id, outcome, request_id, resource {id, type}, seq, service
 * (nulls included, times as YYYY-MM-DDTHH:MM:SS.ffffffZ in UTC), and
 *   hash = hex(SHA-256(prev_hash as 64 ASCII hex characters || canonical JSON)),
 * prev_hash being the previous entry's hash (64 zeros before the first). */
#include "audit.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ias/canonjson.h"
#include "ias/crypto.h"
#include "ias/log.h"

/* ---- entries ---------------------------------------------------------------- */

static void add_str(cJSON *o, const char *name, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

cJSON *audit_entry_json(const audit_entry *e, bool with_hashes)
{
    cJSON *o = cJSON_CreateObject(), *actor, *res;

    if (!o)
        ias_die("out of memory");
    add_str(o, "action", e->action);
    actor = cJSON_AddObjectToObject(o, "actor");
    add_str(actor, "id", e->actor_id);
    add_str(actor, "type", e->actor_type);
    add_str(o, "created_at", e->created_at);
    if (e->details)
        cJSON_AddItemToObject(o, "details", cJSON_Duplicate(e->details, true));
    else
        cJSON_AddObjectToObject(o, "details");
    add_str(o, "event_id", e->event_id);
    add_str(o, "occurred_at", e->occurred_at);
    add_str(o, "org_id", e->org_id);
    add_str(o, "outcome", e->outcome);
    add_str(o, "request_id", e->request_id);
    res = cJSON_AddObjectToObject(o, "resource");
    add_str(res, "id", e->resource_id);
    add_str(res, "type", e->resource_type);
    cJSON_AddNumberToObject(o, "seq", (double)e->seq);
    add_str(o, "service", e->service);
    if (with_hashes && e->prev_hash && e->hash) {
        cJSON_AddStringToObject(o, "prev_hash", e->prev_hash);
        cJSON_AddStringToObject(o, "hash", e->hash);
    }
    return o;
}

char *audit_entry_canonical(const audit_entry *e, size_t *len)
{
    cJSON *o = audit_entry_json(e, false);
    char *text = cJSON_PrintUnformatted(o), *canon = NULL, err[160];

    cJSON_Delete(o);
    if (!text)
        return NULL;
    /* cJSON prints doubles with enough digits to round-trip, so canonicalising
     * its output gives the same bytes as canonicalising the original text. */
    if (ias_canonjson(text, strlen(text), 0, &canon, len, err, sizeof(err)) != IAS_OK)
        ias_error(NULL, "canonical form of entry %lld: %s", e->seq, err);
    free(text);
    return canon;
}

void audit_chain_hash(const char *prev_hash, const char *canon, size_t len,
                      char out[IAS_SHA256_HEX_LEN + 1])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char dig[IAS_SHA256_LEN];
    unsigned int dlen = 0;

    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, prev_hash, IAS_SHA256_HEX_LEN) != 1 ||
        EVP_DigestUpdate(md, canon, len) != 1 || EVP_DigestFinal_ex(md, dig, &dlen) != 1)
        ias_die("SHA-256 failed");
    EVP_MD_CTX_free(md);
    if (ias_hex_encode(dig, sizeof(dig), out, IAS_SHA256_HEX_LEN + 1) != IAS_SHA256_HEX_LEN)
        ias_die("hex encode failed");
}

int audit_entry_from_row(const PGresult *res, int row, audit_entry *e)
{
    const char *details;

    memset(e, 0, sizeof(*e));
    if (ias_pg_ncols(res) < 16 || ias_pg_value_ll(res, row, 0, &e->seq) != IAS_OK)
        return IAS_ERR;
    e->event_id = ias_pg_value(res, row, 1);
    e->occurred_at = ias_pg_value(res, row, 2);
    e->created_at = ias_pg_value(res, row, 3);
    e->service = ias_pg_value(res, row, 4);
    e->org_id = ias_pg_value(res, row, 5);
    e->actor_type = ias_pg_value(res, row, 6);
    e->actor_id = ias_pg_value(res, row, 7);
    e->action = ias_pg_value(res, row, 8);
    e->resource_type = ias_pg_value(res, row, 9);
    e->resource_id = ias_pg_value(res, row, 10);
    e->request_id = ias_pg_value(res, row, 11);
    e->outcome = ias_pg_value(res, row, 12);
    details = ias_pg_value(res, row, 13);
    e->prev_hash = ias_pg_value(res, row, 14);
    e->hash = ias_pg_value(res, row, 15);
    e->details = details ? cJSON_Parse(details) : NULL;
    if (!e->details || !cJSON_IsObject(e->details)) {
        audit_entry_clear(e);
        return IAS_ERR;
    }
    return IAS_OK;
}

void audit_entry_clear(audit_entry *e)
{
    cJSON_Delete(e->details);
    e->details = NULL;
}

/* ---- validation of audit.recorded.v1 --------------------------------------- */

static bool matches(const char *s, size_t min, size_t max, const char *extra)
{
    size_t n = strlen(s);

    if (n < min || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (extra && strchr(extra, c))))
            return false;
    }
    return true;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static bool lower_uuid(const char *s)
{
    if (!ias_uuid_valid(s) || strlen(s) != IAS_UUID_STR_LEN)
        return false;
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'F')
            return false;
    return true;
}

/* "YYYY-MM-DDTHH:MM:SS(.f{1,6})?Z" -> the same instant with six fraction digits.
 * Field ranges are checked so PostgreSQL can never roll a value over (24:00,
 * :60) into one that would read back differently; day-of-month validity is
 * left to PostgreSQL, which refuses Feb 30 (the event is then rejected). */
static int normalise_ts(const char *s, char out[AUDIT_TS_LEN + 1])
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t n = strlen(s), i, frac = 0;
    int mon, day, hh, mm, ss;

    if (n < 20 || n > 27)
        return IAS_ERR;
    for (i = 0; i < 19; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return IAS_ERR;
    }
    if (s[19] == '.') {
        for (i = 20; s[i] >= '0' && s[i] <= '9'; i++)
            frac++;
        if (frac < 1 || frac > 6)
            return IAS_ERR;
    } else {
        i = 19;
    }
    if (s[i] != 'Z' || s[i + 1] != '\0')
        return IAS_ERR;
    mon = (s[5] - '0') * 10 + (s[6] - '0');
    day = (s[8] - '0') * 10 + (s[9] - '0');
    hh = (s[11] - '0') * 10 + (s[12] - '0');
    mm = (s[14] - '0') * 10 + (s[15] - '0');
    ss = (s[17] - '0') * 10 + (s[18] - '0');
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 59 ||
        memcmp(s, "0000", 4) == 0)
        return IAS_ERR;
    memcpy(out, s, 19);
    out[19] = '.';
    for (i = 0; i < 6; i++)
        out[20 + i] = i < frac ? s[20 + i] : '0';
    out[26] = 'Z';
    out[27] = '\0';
    return IAS_OK;
}

/* Member name of obj that must be present: a string, or null when nullable. */
static int get_str(const cJSON *obj, const char *name, bool nullable, const char **out, char *why,
                   size_t whylen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    *out = NULL;
    if (!v) {
        snprintf(why, whylen, "%s is missing", name);
        return IAS_ERR;
    }
    if (cJSON_IsNull(v) && nullable)
        return IAS_OK;
    if (!cJSON_IsString(v)) {
        snprintf(why, whylen, "%s must be a string%s", name, nullable ? " or null" : "");
        return IAS_ERR;
    }
    *out = v->valuestring;
    return IAS_OK;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        goto fail;                                                                                 \
    } while (0)

int audit_event_parse(const void *body, size_t len, audit_event *ev, char *why, size_t whylen)
{
    char *canon = NULL, err[160];
    const cJSON *actor, *res, *details;
    audit_entry *e = &ev->entry;
    size_t clen = 0;

    memset(ev, 0, sizeof(*ev));
    /* Strict parse first: no duplicate names, valid UTF-8, no U+0000, bounded
     * depth -- so what cJSON sees is exactly what will be hashed. */
    if (ias_canonjson(body, len, IAS_CANONJSON_NO_NUL, &canon, &clen, err, sizeof(err)) != IAS_OK)
        BAD("not canonicalisable JSON: %s", err);
    ev->root = cJSON_ParseWithLength(canon, clen);
    free(canon);
    if (!ev->root || !cJSON_IsObject(ev->root))
        BAD("the event must be a JSON object");

    if (get_str(ev->root, "event_id", false, &e->event_id, why, whylen) != IAS_OK)
        goto fail;
    if (!lower_uuid(e->event_id))
        BAD("event_id must be a lower-case UUID");
    if (get_str(ev->root, "occurred_at", false, &e->occurred_at, why, whylen) != IAS_OK)
        goto fail;
    if (normalise_ts(e->occurred_at, ev->occurred_at) != IAS_OK)
        BAD("occurred_at must be an ISO 8601 UTC time like 2026-11-22T10:15:00.120Z");
    e->occurred_at = ev->occurred_at;
    if (get_str(ev->root, "service", false, &e->service, why, whylen) != IAS_OK)
        goto fail;
    if (!matches(e->service, 1, 32, "_-"))
        BAD("service must match ^[a-z0-9_-]{1,32}$");

    actor = cJSON_GetObjectItemCaseSensitive(ev->root, "actor");
    if (!cJSON_IsObject(actor))
        BAD("actor must be an object");
    if (get_str(actor, "type", false, &e->actor_type, why, whylen) != IAS_OK)
        goto fail;
    if (strcmp(e->actor_type, "user") != 0 && strcmp(e->actor_type, "api_key") != 0 &&
        strcmp(e->actor_type, "service") != 0 && strcmp(e->actor_type, "system") != 0 &&
        strcmp(e->actor_type, "anonymous") != 0)
        BAD("actor.type must be user, api_key, service, system or anonymous");
    if (get_str(actor, "id", true, &e->actor_id, why, whylen) != IAS_OK)
        goto fail;
    if (e->actor_id && (e->actor_id[0] == '\0' || utf8_chars(e->actor_id) > 256))
        BAD("actor.id must have 1 to 256 characters");

    if (get_str(ev->root, "org_id", true, &e->org_id, why, whylen) != IAS_OK)
        goto fail;
    if (e->org_id && !lower_uuid(e->org_id))
        BAD("org_id must be a lower-case UUID or null");
    if (get_str(ev->root, "action", false, &e->action, why, whylen) != IAS_OK)
        goto fail;
    if (!matches(e->action, 1, 64, "_-"))
        BAD("action must match ^[a-z0-9_-]{1,64}$");

    res = cJSON_GetObjectItemCaseSensitive(ev->root, "resource");
    if (!cJSON_IsObject(res))
        BAD("resource must be an object");
    if (get_str(res, "type", false, &e->resource_type, why, whylen) != IAS_OK)
        goto fail;
    if (!matches(e->resource_type, 1, 64, "_"))
        BAD("resource.type must match ^[a-z0-9_]{1,64}$");
    if (get_str(res, "id", true, &e->resource_id, why, whylen) != IAS_OK)
        goto fail;
    if (e->resource_id && (e->resource_id[0] == '\0' || utf8_chars(e->resource_id) > 256))
        BAD("resource.id must have 1 to 256 characters");

    if (get_str(ev->root, "request_id", true, &e->request_id, why, whylen) != IAS_OK)
        goto fail;
    if (e->request_id) {
        const char *s = e->request_id;
        size_t n = strlen(s);
        if (n < 1 || n > 128 ||
            strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789._:-") != n)
            BAD("request_id must match ^[A-Za-z0-9._:-]{1,128}$ or be null");
    }
    if (get_str(ev->root, "outcome", false, &e->outcome, why, whylen) != IAS_OK)
        goto fail;
    if (strcmp(e->outcome, "success") != 0 && strcmp(e->outcome, "failure") != 0 &&
        strcmp(e->outcome, "denied") != 0)
        BAD("outcome must be success, failure or denied");

    details = cJSON_GetObjectItemCaseSensitive(ev->root, "details");
    if (!cJSON_IsObject(details))
        BAD("details must be an object");
    if (cJSON_GetArraySize(details) > 64)
        BAD("details has more than 64 members");
    e->details = (cJSON *)details;
    return IAS_OK;
fail:
    audit_event_free(ev);
    return IAS_ERR;
}

void audit_event_free(audit_event *ev)
{
    cJSON_Delete(ev->root);
    memset(ev, 0, sizeof(*ev));
}

/* ---- append ----------------------------------------------------------------- */

typedef struct append_arg {
    const audit_event *const *evs;
    size_t n;
    long long *seqs;     /* per event: its position, 0 for a redelivery */
    bool local_fail;     /* failed before the database had a say */
    ias_pg_errkind kind; /* of the failed statement */
    char sqlstate[6];
    char *why;
    size_t whylen;
} append_arg;

static int note_pg(ias_pg *pg, append_arg *a, const char *what)
{
    a->kind = ias_pg_last_error(pg);
    snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", ias_pg_last_sqlstate(pg));
    snprintf(a->why, a->whylen, "%s: %s", what, ias_pg_last_message(pg));
    return IAS_ERR;
}

/* Appends one event after prev (updated to the new hash) at *seq + 1; sets
 * *dup instead when the event_id is already in the ledger (also earlier in
 * this transaction). */
static int append_one(ias_pg *pg, append_arg *a, const audit_event *ev, const char *now,
                      long long *seq, char *prev, bool *dup)
{
    audit_entry e = ev->entry;
    PGresult *res = NULL;
    char seqbuf[24], hash[IAS_SHA256_HEX_LEN + 1];
    char *canon = NULL, *details = NULL;
    size_t clen = 0;
    int rc = IAS_ERR;

    *dup = false;
    {
        const char *p[] = {e.event_id};
        if (ias_pg_exec(pg, "SELECT 1 FROM audit_ledger WHERE event_id = $1", 1, p, &res) != IAS_OK)
            return note_pg(pg, a, "look up event_id");
        if (ias_pg_nrows(res) > 0) {
            *dup = true; /* a redelivery: nothing to append */
            rc = IAS_OK;
            goto out;
        }
        ias_pg_clear(res);
        res = NULL;
    }

    e.seq = *seq + 1;
    e.created_at = now;
    e.prev_hash = prev;
    canon = audit_entry_canonical(&e, &clen);
    details = cJSON_PrintUnformatted(e.details);
    if (!canon || !details) {
        snprintf(a->why, a->whylen, "cannot serialise the entry");
        a->local_fail = true;
        goto out;
    }
    audit_chain_hash(prev, canon, clen, hash);
    snprintf(seqbuf, sizeof(seqbuf), "%lld", e.seq);
    {
        const char *p[] = {seqbuf,    e.event_id,      e.occurred_at, e.created_at,
                           e.service, e.org_id,        e.actor_type,  e.actor_id,
                           e.action,  e.resource_type, e.resource_id, e.request_id,
                           e.outcome, details,         prev,          hash};
        if (ias_pg_exec(pg,
                        "INSERT INTO audit_ledger (seq, event_id, occurred_at, created_at, "
                        "service, org_id, actor_type, actor_id, action, resource_type, "
                        "resource_id, request_id, outcome, details, prev_hash, hash) VALUES "
                        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                        16, p, NULL) != IAS_OK) {
            note_pg(pg, a, "insert entry");
            goto out;
        }
    }
    *seq = e.seq;
    memcpy(prev, hash, sizeof(hash));
    rc = IAS_OK;
out:
    ias_pg_clear(res);
    free(canon);
    free(details);
    return rc;
}

static int append_tx(ias_pg *pg, void *arg)
{
    append_arg *a = arg;
    PGresult *res = NULL;
    long long seq, first;
    char seqbuf[24], prev[IAS_SHA256_HEX_LEN + 1], now[40];

    a->local_fail = false;
    a->kind = IAS_PG_ERR_NONE;
    a->sqlstate[0] = '\0';
    /* The row lock serialises every appender, so the chain cannot fork. The
     * whole batch is chained under it and commits once. */
    if (ias_pg_exec(pg,
                    "SELECT last_seq, last_hash, " AUDIT_SQL_TS(
                        "now()") " FROM audit_chain_head WHERE id FOR UPDATE",
                    0, NULL, &res) != IAS_OK)
        return note_pg(pg, a, "lock chain head");
    if (ias_pg_nrows(res) != 1 || ias_pg_value_ll(res, 0, 0, &seq) != IAS_OK) {
        snprintf(a->why, a->whylen, "audit_chain_head has no row"); /* retried */
        ias_pg_clear(res);
        return IAS_ERR;
    }
    snprintf(prev, sizeof(prev), "%s", ias_pg_value(res, 0, 1));
    snprintf(now, sizeof(now), "%s", ias_pg_value(res, 0, 2));
    ias_pg_clear(res);

    first = seq;
    for (size_t i = 0; i < a->n; i++) {
        bool dup;
        if (append_one(pg, a, a->evs[i], now, &seq, prev, &dup) != IAS_OK)
            return IAS_ERR;
        a->seqs[i] = dup ? 0 : seq;
    }
    if (seq == first)
        return IAS_OK; /* only redeliveries: the empty transaction commits */
    snprintf(seqbuf, sizeof(seqbuf), "%lld", seq);
    {
        const char *p[] = {seqbuf, prev};
        if (ias_pg_exec(pg,
                        "UPDATE audit_chain_head SET last_seq = $1, last_hash = $2, "
                        "updated_at = now() WHERE id",
                        2, p, NULL) != IAS_OK)
            return note_pg(pg, a, "move chain head");
    }
    return IAS_OK;
}

audit_append_rc audit_chain_append_batch(ias_pg *pg, const audit_event *const *evs, size_t n,
                                         long long *seqs, char *why, size_t whylen)
{
    append_arg a = {.evs = evs, .n = n, .seqs = seqs, .why = why, .whylen = whylen};

    why[0] = '\0';
    if (ias_pg_tx(pg, append_tx, &a, 3) == IAS_OK)
        return AUDIT_APPENDED;
    if (why[0] == '\0')
        snprintf(why, whylen, "commit: %s", ias_pg_last_message(pg));
    if (a.local_fail)
        return AUDIT_FAIL_REJECT;
    /* Data exceptions (22xxx: a date PostgreSQL refuses) and integrity
     * violations (23xxx: a CHECK) will fail again on every delivery. A unique
     * violation cannot happen under the head lock; retrying finds the entry. */
    if (a.kind == IAS_PG_ERR_OTHER &&
        (strncmp(a.sqlstate, "22", 2) == 0 || strncmp(a.sqlstate, "23", 2) == 0))
        return AUDIT_FAIL_REJECT;
    return AUDIT_FAIL_RETRY;
}

audit_append_rc audit_chain_append(ias_pg *pg, const audit_event *ev, long long *seq, char *why,
                                   size_t whylen)
{
    const audit_event *one[1] = {ev};
    long long s = 0;
    audit_append_rc rc = audit_chain_append_batch(pg, one, 1, &s, why, whylen);

    if (rc != AUDIT_APPENDED)
        return rc;
    *seq = s;
    return s == 0 ? AUDIT_DUPLICATE : AUDIT_APPENDED;
}
