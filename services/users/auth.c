/* POST /api/v1/auth/login, /refresh, /logout.
 *
 * Access tokens are HS256 JWTs (1 h); refresh tokens are 32 random bytes,
 * stored as SHA-256, rotated on use within a family; presenting a rotated
 * token again revokes the whole family. Failed logins are counted in Redis per
 * account and per source address; the answer never says which part was wrong. */
#include "users.h"

#include "ias/crypto.h"
#include "ias/jwt.h"
#include "ias/log.h"
#include "ias/password.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A valid bcrypt hash (cost 12) of a random string: verifying against it when
 * the account does not exist costs the same time as a real check. */
static const char dummy_hash[] = "$2b$12$g1L6/d5vXbfowgkL46YOFu7EoeeLy8C1mxjwF2Mw34BcCa/JluOaa";

static const users_field login_fields[] = {
    {"email", UF_STR, true, false, 254},
    {"password", UF_STR, true, false, 256},
};

static void failkey(char *buf, size_t len, const char *kind, const char *who)
{
    size_t n = (size_t)snprintf(buf, len, "ias:loginfail:%s:", kind);
    for (; *who && n + 1 < len; who++)
        buf[n++] = (char)tolower((unsigned char)*who);
    buf[n] = '\0';
}

/* Seconds until the window of a key over the limit ends; 0 when under it. */
static long long over_limit(users_worker *w, const char *key, int max)
{
    const char *argv[2] = {"GET", key};
    size_t lens[2] = {3, strlen(key)};
    redisReply *rep = NULL;
    long long count = 0, ttl = 0;

    if (ias_redis_sync_cmd(w->redis, 2, argv, lens, &rep) != IAS_OK)
        return 0; /* Redis down: do not lock everyone out */
    if (rep->type == REDIS_REPLY_STRING)
        count = strtoll(rep->str, NULL, 10);
    freeReplyObject(rep);
    if (count < max)
        return 0;
    argv[0] = "TTL";
    if (ias_redis_sync_cmd(w->redis, 2, argv, lens, &rep) == IAS_OK) {
        if (rep->type == REDIS_REPLY_INTEGER)
            ttl = rep->integer;
        freeReplyObject(rep);
    }
    return ttl > 0 ? ttl : 1;
}

static void count_failure(users_worker *w, const char *key, int window_s)
{
    char win[24];
    const char *argv[4] = {"INCR", key, win, "NX"};
    size_t lens[4] = {4, strlen(key), 0, 2};
    redisReply *rep = NULL;
    bool first = false;

    snprintf(win, sizeof(win), "%d", window_s);
    lens[2] = strlen(win);
    if (ias_redis_sync_cmd(w->redis, 2, argv, lens, &rep) != IAS_OK) {
        ias_warn(NULL, "redis: cannot count a failed login");
        return;
    }
    first = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    if (!first)
        return;
    argv[0] = "EXPIRE";
    lens[0] = 6;
    if (ias_redis_sync_cmd(w->redis, 3, argv, lens, &rep) == IAS_OK)
        freeReplyObject(rep);
}

static void del_key(users_worker *w, const char *key)
{
    const char *argv[2] = {"DEL", key};
    size_t lens[2] = {3, strlen(key)};
    redisReply *rep = NULL;

    if (ias_redis_sync_cmd(w->redis, 2, argv, lens, &rep) == IAS_OK)
        freeReplyObject(rep);
}

/* Issues an access JWT and a fresh refresh token in family (NULL: new family)
 * inside the open transaction; replies 200. IAS_ERR: nothing replied. */
static int issue_tokens(ias_req *r, users_worker *w, const char *user_id, const char *org_id,
                        const char *role, const char *family, char **access, char refresh[64],
                        char refresh_id[IAS_UUID_STR_LEN + 1])
{
    users_ctx *ctx = ias_req_ctx(r);
    ias_jwt_claims c;
    uint8_t raw[32];
    char hash[IAS_SHA256_HEX_LEN + 1], ttl[24];
    PGresult *res = NULL;

    memset(&c, 0, sizeof(c));
    (void)ias_strlcpy(c.sub, user_id, sizeof(c.sub));
    (void)ias_strlcpy(c.org, org_id ? org_id : "", sizeof(c.org));
    (void)ias_strlcpy(c.role, role, sizeof(c.role));
    (void)ias_strlcpy(c.typ, IAS_JWT_TYP_ACCESS, sizeof(c.typ));
    if (ias_random_bytes(raw, sizeof(raw)) != IAS_OK ||
        ias_b64url_encode(raw, sizeof(raw), refresh, 64) < 0)
        return IAS_ERR;
    ias_sha256_hex(refresh, strlen(refresh), hash);
    snprintf(ttl, sizeof(ttl), "%d", USERS_REFRESH_TTL_S);
    const char *v[5] = {user_id, org_id && org_id[0] ? org_id : NULL, family, hash, ttl};
    if (users_q(w, &res,
                "INSERT INTO refresh_tokens (user_id, org_id, family_id, token_hash, expires_at) "
                "VALUES ($1, $2, coalesce($3::uuid, gen_random_uuid()), $4, "
                "now() + make_interval(secs => $5::int)) RETURNING id",
                5, v) != IAS_OK)
        return IAS_ERR;
    (void)ias_strlcpy(refresh_id, ias_pg_value(res, 0, 0), IAS_UUID_STR_LEN + 1);
    ias_pg_clear(res);
    if (ias_jwt_issue(ctx->jwt_secret, ctx->jwt_secret_len, &c, USERS_ACCESS_TTL_S, access) !=
        IAS_OK)
        return IAS_ERR;
    return IAS_OK;
}

static void reply_tokens(ias_req *r, const char *access, const char *refresh)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "access_token", access);
    cJSON_AddStringToObject(o, "refresh_token", refresh);
    cJSON_AddStringToObject(o, "token_type", "Bearer");
    cJSON_AddNumberToObject(o, "expires_in", USERS_ACCESS_TTL_S);
    cJSON_AddNumberToObject(o, "refresh_expires_in", USERS_REFRESH_TTL_S);
    users_reply_json(r, 200, o);
}

void users_h_login(ias_req *r, void *arg)
{
    users_ctx *ctx = arg;
    users_worker *w = users_worker_of(r);
    cJSON *body = users_body(r, login_fields, IAS_ARRAY_LEN(login_fields));
    char acct[320], addr[128], *access = NULL, refresh[64], rid[IAS_UUID_STR_LEN + 1];
    const char *email, *password;
    PGresult *res = NULL;
    long long wait;
    bool ok;

    if (body == NULL)
        return;
    email = users_json_str(body, "email");
    password = users_json_str(body, "password");
    failkey(acct, sizeof(acct), "acct", email);
    failkey(addr, sizeof(addr), "addr", ias_req_peer(r));
    wait = over_limit(w, acct, ctx->login_max_failures);
    if (wait == 0)
        wait = over_limit(w, addr, ctx->login_max_failures_addr);
    if (wait > 0) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "email", email);
        cJSON_AddStringToObject(d, "source", ias_req_peer(r));
        cJSON_AddStringToObject(d, "reason", "rate_limited");
        if (users_tx_begin(w, "*") == IAS_OK &&
            users_audit(r, w, NULL, NULL, "login_failed", "session", NULL, "denied", d) == IAS_OK)
            if (users_tx_commit(w) != IAS_OK)
                ias_warn(ias_req_log(r), "cannot record a blocked login");
        users_tx_rollback(w);
        (void)ias_reply_retry_after(r, (unsigned)wait);
        users_problem(r, 429, "too-many-login-failures", "too many failed logins; try again later");
        return;
    }
    if (users_tx_begin(w, "*") != IAS_OK) {
        users_db_error(r, w, "login");
        return;
    }
    const char *v[1] = {email};
    if (users_q(w, &res,
                "SELECT u.id, u.org_id, r.name, u.password_hash, "
                "u.disabled OR coalesce(o.deleted_at IS NOT NULL, false) "
                "FROM users u JOIN roles r ON r.id = u.role_id LEFT JOIN orgs o ON o.id = u.org_id "
                "WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "login");
        return;
    }
    if (ias_pg_nrows(res) == 1) {
        bool blocked = strcmp(ias_pg_value(res, 0, 4), "t") == 0;
        ok = ias_password_verify(password, ias_pg_value(res, 0, 3)) && !blocked;
    } else {
        (void)ias_password_verify(password, dummy_hash);
        ok = false;
    }
    if (!ok) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "email", email);
        cJSON_AddStringToObject(d, "source", ias_req_peer(r));
        ias_counter_inc(ctx->m_logins_failed);
        count_failure(w, acct, ctx->login_window_s);
        count_failure(w, addr, ctx->login_window_s);
        if (users_audit(r, w, ias_pg_nrows(res) == 1 ? ias_pg_value(res, 0, 0) : NULL,
                        ias_pg_nrows(res) == 1 ? ias_pg_value(res, 0, 1) : NULL, "login_failed",
                        "session", NULL, "failure", d) != IAS_OK ||
            users_tx_commit(w) != IAS_OK) {
            users_tx_rollback(w);
            ias_pg_clear(res);
            users_db_error(r, w, "login");
            return;
        }
        ias_pg_clear(res);
        users_problem(r, 401, "invalid-credentials", "invalid email or password");
        return;
    }
    const char *uid = ias_pg_value(res, 0, 0), *org = ias_pg_value(res, 0, 1),
               *role = ias_pg_value(res, 0, 2);
    const char *uv[1] = {uid};
    if (issue_tokens(r, w, uid, org, role, NULL, &access, refresh, rid) != IAS_OK ||
        users_q(w, NULL, "UPDATE users SET last_login_at = now() WHERE id = $1", 1, uv) != IAS_OK ||
        users_audit(r, w, uid, org, "login", "session", rid, "success", NULL) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        free(access);
        users_db_error(r, w, "login");
        return;
    }
    ias_pg_clear(res);
    del_key(w, acct);
    reply_tokens(r, access, refresh);
    free(access);
}

static const users_field refresh_fields[] = {
    {"refresh_token", UF_STR, true, false, 128},
};

void users_h_refresh(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    cJSON *body = users_body(r, refresh_fields, IAS_ARRAY_LEN(refresh_fields));
    char hash[IAS_SHA256_HEX_LEN + 1], *access = NULL, refresh[64], rid[IAS_UUID_STR_LEN + 1];
    PGresult *res = NULL;
    const char *tok;

    IAS_UNUSED(arg);
    if (body == NULL)
        return;
    tok = users_json_str(body, "refresh_token");
    ias_sha256_hex(tok, strlen(tok), hash);
    if (users_tx_begin(w, "*") != IAS_OK) {
        users_db_error(r, w, "refresh");
        return;
    }
    const char *v[1] = {hash};
    if (users_q(w, &res,
                "SELECT t.id, t.user_id, t.org_id, t.family_id, t.revoked_at IS NOT NULL, "
                "t.replaced_by IS NOT NULL, t.expires_at <= now(), r.name, "
                "u.deleted_at IS NULL AND NOT u.disabled AND "
                "coalesce(o.deleted_at IS NULL, true) "
                "FROM refresh_tokens t JOIN users u ON u.id = t.user_id "
                "JOIN roles r ON r.id = u.role_id LEFT JOIN orgs o ON o.id = u.org_id "
                "WHERE t.token_hash = $1 FOR UPDATE OF t",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "refresh");
        return;
    }
    if (ias_pg_nrows(res) != 1) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_problem(r, 401, "invalid-refresh-token", "invalid refresh token");
        return;
    }
    const char *tid = ias_pg_value(res, 0, 0), *uid = ias_pg_value(res, 0, 1),
               *org = ias_pg_value(res, 0, 2), *fam = ias_pg_value(res, 0, 3),
               *role = ias_pg_value(res, 0, 7);
    bool revoked = ias_pg_value(res, 0, 4)[0] == 't', rotated = ias_pg_value(res, 0, 5)[0] == 't',
         expired = ias_pg_value(res, 0, 6)[0] == 't', live = ias_pg_value(res, 0, 8)[0] == 't';
    if (revoked || expired || !live) {
        int rc = IAS_OK;
        if (revoked && rotated) {
            /* A rotated token came back: someone holds a copy. End the session. */
            const char *fv[1] = {fam};
            cJSON *d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "family_id", fam);
            rc = users_q(w, NULL,
                         "UPDATE refresh_tokens SET revoked_at = now() "
                         "WHERE family_id = $1 AND revoked_at IS NULL",
                         1, fv);
            if (rc == IAS_OK)
                rc = users_audit(r, w, uid, org, "refresh_token_reused", "session", tid, "denied",
                                 d);
            else
                cJSON_Delete(d);
        }
        if (rc != IAS_OK || users_tx_commit(w) != IAS_OK) {
            users_tx_rollback(w);
            ias_pg_clear(res);
            users_db_error(r, w, "refresh");
            return;
        }
        ias_pg_clear(res);
        users_problem(r, 401, "invalid-refresh-token", "invalid refresh token");
        return;
    }
    if (issue_tokens(r, w, uid, org, role, fam, &access, refresh, rid) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "refresh");
        return;
    }
    const char *uv[2] = {tid, rid};
    if (users_q(w, NULL,
                "UPDATE refresh_tokens SET revoked_at = now(), replaced_by = $2 WHERE id = $1", 2,
                uv) != IAS_OK ||
        users_tx_commit(w) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        free(access);
        users_db_error(r, w, "refresh");
        return;
    }
    ias_pg_clear(res);
    reply_tokens(r, access, refresh);
    free(access);
}

void users_h_logout(ias_req *r, void *arg)
{
    users_worker *w = users_worker_of(r);
    cJSON *body = users_body(r, refresh_fields, IAS_ARRAY_LEN(refresh_fields));
    char hash[IAS_SHA256_HEX_LEN + 1];
    PGresult *res = NULL;
    const char *tok;

    IAS_UNUSED(arg);
    if (body == NULL)
        return;
    tok = users_json_str(body, "refresh_token");
    ias_sha256_hex(tok, strlen(tok), hash);
    const char *v[1] = {hash};
    if (users_tx_begin(w, "*") != IAS_OK ||
        users_q(w, &res,
                "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) "
                "RETURNING user_id, org_id",
                1, v) != IAS_OK) {
        users_tx_rollback(w);
        users_db_error(r, w, "logout");
        return;
    }
    if (ias_pg_nrows(res) > 0 &&
        users_audit(r, w, ias_pg_value(res, 0, 0), ias_pg_value(res, 0, 1), "logout", "session",
                    NULL, "success", NULL) != IAS_OK) {
        users_tx_rollback(w);
        ias_pg_clear(res);
        users_db_error(r, w, "logout");
        return;
    }
    ias_pg_clear(res);
    if (users_tx_commit(w) != IAS_OK) {
        users_db_error(r, w, "logout");
        return;
    }
    ias_reply(r, 204, NULL, NULL, 0);
}
