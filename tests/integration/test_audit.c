/* ias-audit, the real binary ($IAS_BIN_DIR/ias-audit), against the real stack:
 * events published with ias_publisher land in the hash chain of a fresh
 * database; a redelivered event is a no-op; a malformed one goes to ias.dead
 * and the consumer keeps going; query filters, pagination and RBAC; the export
 * recomputed here like a third party would, checkpoint signatures checked with
 * `openssl pkeyutl -verify`; a row tampered with (trigger disabled, as the DB
 * owner) is reported by verify at exactly that entry. Skips without
 * IAS_PG_DSN / IAS_AMQP_URL. */
#include "testlib.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "ias/amqp.h"
#include "ias/canonjson.h"
#include "ias/common.h"
#include "ias/crypto.h"
#include "ias/jwt.h"
#include "ias/log.h"
#include "ias/migrate.h"
#include "ias/pg.h"

#define SECRET "audit-test-secret-0123456789abcdef-0123456789"
#define ORG_A "0a000000-0000-4000-8000-00000000000a"
#define ORG_B "0b000000-0000-4000-8000-00000000000b"
#define NA 8
#define NB 4

static const char *base_dsn, *amqp_url;
static char dbname[128], *dsn, workdir[256], logpath[512];
static pid_t audit_pid;
static int port;
static ias_publisher *pub;
static ias_pg *pg;
static char ids_a[NA][IAS_UUID_STR_LEN + 1], ids_b[NB][IAS_UUID_STR_LEN + 1];
static char tok_sys[1024], tok_admin_a[1024], tok_user_a[1024];
static char *resp; /* 1 MiB HTTP response buffer */
#define RESP_LEN (1024 * 1024)

/* ---- helpers ------------------------------------------------------------------ */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), p;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    p = ntohs(sa.sin_port);
    close(fd);
    return p;
}

static long long query_ll(const char *sql, int n, const char *const *params)
{
    PGresult *res = NULL;
    long long v = -1;

    if (ias_pg_exec(pg, sql, n, params, &res) != IAS_OK)
        fail_msg("%s: %s", sql, ias_pg_last_message(pg));
    if (ias_pg_nrows(res) != 1 || ias_pg_value_ll(res, 0, 0, &v) != IAS_OK)
        fail_msg("%s: no value", sql);
    ias_pg_clear(res);
    return v;
}

static void exec_sql(const char *sql)
{
    if (ias_pg_exec(pg, sql, 0, NULL, NULL) != IAS_OK)
        fail_msg("%s: %s", sql, ias_pg_last_message(pg));
}

static long long rows_with_id(const char *id)
{
    const char *p[] = {id};
    return query_ll("SELECT count(*) FROM audit_ledger WHERE event_id = $1", 1, p);
}

/* Waits (up to 20 s) until the event is in the ledger. */
static void wait_for(const char *id)
{
    for (int i = 0; i < 400; i++) {
        if (rows_with_id(id) > 0)
            return;
        sleep_ms(50);
    }
    fail_msg("event %s never reached the ledger (log: %s)", id, logpath);
}

static void publish_body(const char *event_id, const char *rk, const char *body)
{
    assert_int_equal(
        ias_publisher_publish(pub, rk, event_id, IAS_EVENT_AUDIT_V1, body, strlen(body)), IAS_OK);
}

/* An audit.recorded.v1 event; occurred_at is 2026-11-0<day>T10:00:00.5Z. */
static void publish_event(const char *id, const char *org, const char *actor, const char *action,
                          const char *rtype, const char *rid, int day, const char *details)
{
    char body[2048], rk[300];

    snprintf(body, sizeof(body),
             "{\"event_id\":\"%s\",\"occurred_at\":\"2026-11-0%dT10:00:00.5Z\",\"service\":"
             "\"users\",\"actor\":{\"type\":\"user\",\"id\":\"%s\"},\"org_id\":%s%s%s,"
             "\"action\":\"%s\",\"resource\":{\"type\":\"%s\",\"id\":\"%s\"},"
             "\"request_id\":\"req-%d\",\"outcome\":\"success\",\"details\":%s}",
             id, day, actor, org ? "\"" : "", org ? org : "null", org ? "\"" : "", action, rtype,
             rid, day, details);
    assert_int_equal(ias_amqp_audit_key(rk, sizeof(rk), "users", action), IAS_OK);
    publish_body(id, rk, body);
}

static long queue_depth(const char *queue)
{
    ias_amqp_conn_opts o = {.url = amqp_url};
    ias_amqp_conn *c = NULL;
    amqp_queue_declare_ok_t *ok;
    char err[300];
    long n;

    if (ias_amqp_connect(&o, &c, err, sizeof(err)) != IAS_OK)
        fail_msg("connect: %s", err);
    ok = amqp_queue_declare(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(queue), 1, 0, 0, 0,
                            amqp_empty_table);
    assert_int_equal(ias_amqp_conn_check_rpc(c, "passive declare"), IAS_OK);
    n = (long)ok->message_count;
    ias_amqp_conn_free(c);
    return n;
}

static void purge_audit_queue(void)
{
    ias_amqp_conn_opts o = {.url = amqp_url};
    ias_amqp_conn *c = NULL;
    char err[300];

    if (ias_amqp_connect(&o, &c, err, sizeof(err)) != IAS_OK)
        fail_msg("connect: %s", err);
    assert_int_equal(ias_amqp_declare_topology(c), IAS_OK);
    amqp_queue_purge(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(IAS_AMQP_QUEUE_AUDIT));
    assert_int_equal(ias_amqp_conn_check_rpc(c, "purge"), IAS_OK);
    ias_amqp_conn_free(c);
}

/* GET path with a bearer token (NULL: none); returns the status, body in *json
 * when it parses (caller deletes). */
static int get(const char *path, const char *token, cJSON **json)
{
    char hdr[1200] = "";
    int status;
    char *body;

    if (token)
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", token);
    status = ias_test_http(port, "GET", path, hdr, NULL, resp, RESP_LEN);
    body = strstr(resp, "\r\n\r\n");
    if (json)
        *json = body ? cJSON_Parse(body + 4) : NULL;
    return status;
}

static const char *body_of(void)
{
    char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

static void issue(const char *role, const char *org, char *out)
{
    ias_jwt_claims c = {0};
    char *t = NULL;

    snprintf(c.sub, sizeof(c.sub), "%s", "5f000000-0000-4000-8000-000000000001");
    snprintf(c.org, sizeof(c.org), "%s", org);
    snprintf(c.role, sizeof(c.role), "%s", role);
    snprintf(c.typ, sizeof(c.typ), "%s", IAS_JWT_TYP_ACCESS);
    assert_int_equal(ias_jwt_issue(SECRET, strlen(SECRET), &c, 3600, &t), IAS_OK);
    snprintf(out, 1024, "%s", t);
    free(t);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* ---- setup / teardown ----------------------------------------------------------- */

static int create_db(void)
{
    ias_pg *admin = ias_pg_new(base_dsn, 5000);
    ias_migration_set set;
    ias_migrate_cmd cmd = {.kind = IAS_MIGRATE_CMD_UP};
    char sql[200], err[512], dir[600];
    FILE *devnull;
    int rc;

    ias_test_unique("audit", dbname, sizeof(dbname));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
    if (ias_pg_exec(admin, sql, 0, NULL, NULL) != IAS_OK) {
        fprintf(stderr, "create database: %s\n", ias_pg_last_message(admin));
        ias_pg_free(admin);
        return -1;
    }
    ias_pg_free(admin);
    dsn = ias_pg_dsn_with_dbname(base_dsn, dbname);
    pg = ias_pg_new(dsn, 5000);
    snprintf(dir, sizeof(dir), "%s/migrations", ias_test_repo_root());
    if (ias_migrate_scan(dir, &set, err, sizeof(err)) != IAS_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    devnull = fopen("/dev/null", "w");
    if (!devnull) {
        ias_migration_set_free(&set);
        return -1;
    }
    rc = ias_migrate_run(pg, &set, &cmd, 30000, devnull, stderr);
    ias_migration_set_free(&set);
    fclose(devnull);
    return rc == IAS_OK ? 0 : -1;
}

static int start_audit(void)
{
    const char *bindir = ias_test_env("IAS_BIN_DIR");
    char bin[512], seed_b64[64], portbuf[16];
    unsigned char seed[32];

    snprintf(bin, sizeof(bin), "%s/ias-audit", bindir ? bindir : "build/asan/bin");
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s is not built\n", bin);
        return -1;
    }
    if (ias_random_bytes(seed, sizeof(seed)) != IAS_OK)
        return -1;
    EVP_EncodeBlock((unsigned char *)seed_b64, seed, sizeof(seed));
    port = free_port();
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    snprintf(logpath, sizeof(logpath), "%s/audit.log", workdir);
    audit_pid = fork();
    if (audit_pid < 0)
        return -1;
    if (audit_pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("IAS_PORT", portbuf, 1);
        setenv("IAS_WORKERS", "2", 1);
        setenv("IAS_LOG_LEVEL", "info", 1);
        setenv("IAS_PG_DSN", dsn, 1);
        setenv("IAS_AMQP_URL", amqp_url, 1);
        setenv("IAS_JWT_SECRET", SECRET, 1);
        setenv("IAS_AUDIT_SIGNING_KEY", seed_b64, 1);
        setenv("IAS_CHECKPOINT_EVERY", "5", 1);
        setenv("IAS_CHECKPOINT_INTERVAL", "1s", 1);
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        int st;
        if (waitpid(audit_pid, &st, WNOHANG) == audit_pid) {
            fprintf(stderr, "ias-audit exited early, see %s\n", logpath);
            audit_pid = 0;
            return -1;
        }
        if (ias_test_http(port, "GET", "/ready", NULL, NULL, resp, RESP_LEN) == 200)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "ias-audit not ready, see %s\n", logpath);
    return -1;
}

static int group_setup(void **state)
{
    ias_publisher_opts po = {0};
    char spool[300];

    base_dsn = ias_test_env("IAS_PG_DSN");
    amqp_url = ias_test_env("IAS_AMQP_URL");
    if (!base_dsn || !amqp_url)
        return 0;
    ias_log_init("test_audit", IAS_LOG_WARN);
    resp = ias_xmalloc(RESP_LEN);
    snprintf(workdir, sizeof(workdir), "/tmp/ias_test_audit_XXXXXX");
    if (!mkdtemp(workdir))
        return -1;
    if (create_db() != 0)
        return -1;
    purge_audit_queue();
    if (start_audit() != 0)
        return -1;
    snprintf(spool, sizeof(spool), "%s/spool", workdir);
    po.url = amqp_url;
    po.spool_dir = spool;
    po.name = "test_audit";
    pub = ias_publisher_new(&po);
    if (!pub)
        return -1;
    issue("system_admin", "", tok_sys);
    issue("org_admin", ORG_A, tok_admin_a);
    issue("org_user", ORG_A, tok_user_a);
    return 0;
}

static int group_teardown(void **state)
{
    int st = 0;
    bool sanitizer = false;

    ias_publisher_free(pub);
    if (audit_pid > 0) {
        kill(audit_pid, SIGTERM);
        waitpid(audit_pid, &st, 0);
        FILE *f = fopen(logpath, "r");
        if (f) {
            char line[4096];
            while (fgets(line, sizeof(line), f))
                if (strstr(line, "ERROR: AddressSanitizer") || strstr(line, "LeakSanitizer") ||
                    strstr(line, "runtime error:"))
                    sanitizer = true;
            fclose(f);
        }
    }
    ias_pg_free(pg);
    if (base_dsn && dbname[0]) {
        ias_pg *admin = ias_pg_new(base_dsn, 5000);
        char sql[200];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
        (void)!ias_pg_exec(admin, sql, 0, NULL, NULL);
        ias_pg_free(admin);
    }
    free(dsn);
    free(resp);
    if (sanitizer || (audit_pid > 0 && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))) {
        fprintf(stderr, "ias-audit: sanitizer report or bad exit (status %d), see %s\n", st,
                logpath);
        return -1;
    }
    if (workdir[0] && !getenv("IAS_TEST_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
        (void)!system(cmd);
    }
    return 0;
}

static void need_stack(void)
{
    if (!base_dsn || !amqp_url)
        skip();
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_append(void **state)
{
    need_stack();
    for (int i = 0; i < NA; i++) {
        char actor[40], rid[40];
        ias_uuid_v7(ids_a[i]);
        snprintf(actor, sizeof(actor), "actor-%d", i % 2);
        snprintf(rid, sizeof(rid), "key-%d", i);
        publish_event(ids_a[i], ORG_A, actor, i < 3 ? "api_key_created" : "user_updated",
                      i < 3 ? "api_key" : "user", rid, 1 + i % 5,
                      "{\"b\":1.50,\"a\":[1e2,\"\\u00e9\\n\"],\"nested\":{\"z\":null,\"y\":true}}");
    }
    for (int i = 0; i < NB; i++) {
        ias_uuid_v7(ids_b[i]);
        publish_event(ids_b[i], ORG_B, "actor-b", "policy_denied", "policy", "p1", 2, "{}");
    }
    for (int i = 0; i < NA; i++)
        wait_for(ids_a[i]);
    for (int i = 0; i < NB; i++)
        wait_for(ids_b[i]);
    /* Contiguous seqs, each linked to its predecessor, head at the last. */
    assert_int_equal(query_ll("SELECT count(*) FROM audit_ledger l LEFT JOIN audit_ledger p "
                              "ON p.seq = l.seq - 1 WHERE l.prev_hash <> coalesce(p.hash, "
                              "repeat('0', 64))",
                              0, NULL),
                     0);
    assert_int_equal(query_ll("SELECT max(seq) - count(*) FROM audit_ledger", 0, NULL), 0);
    assert_int_equal(query_ll("SELECT count(*) FROM audit_chain_head h JOIN audit_ledger l "
                              "ON l.seq = h.last_seq AND l.hash = h.last_hash",
                              0, NULL),
                     1);
    /* the trigger refuses changes without the owner disabling it */
    assert_int_equal(ias_pg_exec(pg, "UPDATE audit_ledger SET outcome = 'failure'", 0, NULL, NULL),
                     IAS_ERR);
    assert_int_equal(ias_pg_exec(pg, "DELETE FROM audit_ledger", 0, NULL, NULL), IAS_ERR);
}

static void test_redelivery_is_noop(void **state)
{
    need_stack();
    char sentinel[IAS_UUID_STR_LEN + 1];
    long long before = query_ll("SELECT last_seq FROM audit_chain_head", 0, NULL);

    /* the same event twice more (as the outbox relay would after a crash) */
    publish_event(ids_a[0], ORG_A, "actor-0", "api_key_created", "api_key", "key-0", 1, "{}");
    publish_event(ids_a[0], ORG_A, "actor-0", "api_key_created", "api_key", "key-0", 1, "{}");
    ias_uuid_v7(sentinel);
    publish_event(sentinel, ORG_A, "actor-9", "login", "session", "s1", 3, "{}");
    wait_for(sentinel);
    assert_int_equal(rows_with_id(ids_a[0]), 1);
    assert_int_equal(query_ll("SELECT last_seq FROM audit_chain_head", 0, NULL), before + 1);
    assert_int_equal(get("/metrics", NULL, NULL), 200);
    assert_non_null(strstr(body_of(), "audit_events_duplicate_total 2"));
}

static void test_malformed_dead_lettered(void **state)
{
    need_stack();
    static const char *bad[] = {
        "{\"event_id\":\"@\",\"service\":\"users\"}", /* fields missing */
        "not json at all @",                          /* not JSON */
        "{\"event_id\":\"@\",\"event_id\":\"@\"}",    /* duplicate member */
        "{\"event_id\":\"@\",\"occurred_at\":\"2026-02-30T10:00:00Z\",\"service\":\"users\","
        "\"actor\":{\"type\":\"user\",\"id\":\"u\"},\"org_id\":null,\"action\":\"x\","
        "\"resource\":{\"type\":\"user\",\"id\":null},\"request_id\":null,\"outcome\":"
        "\"success\",\"details\":{}}", /* a date PostgreSQL refuses */
    };
    char id[IAS_UUID_STR_LEN + 1], body[1024], after[IAS_UUID_STR_LEN + 1];
    long dead0 = queue_depth(IAS_AMQP_QUEUE_DEAD), dead = dead0;

    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++) {
        ias_uuid_v7(id);
        size_t o = 0;
        for (const char *c = bad[i]; *c && o + 40 < sizeof(body); c++) {
            if (*c == '@') {
                memcpy(body + o, id, IAS_UUID_STR_LEN);
                o += IAS_UUID_STR_LEN;
            } else {
                body[o++] = *c;
            }
        }
        body[o] = '\0';
        publish_body(id, "audit.users.broken", body);
    }
    ias_uuid_v7(after);
    publish_event(after, ORG_B, "actor-b", "login", "session", "s2", 4, "{}");
    wait_for(after); /* the consumer kept going */
    for (int i = 0; i < 200 && dead < dead0 + (long)IAS_ARRAY_LEN(bad); i++) {
        sleep_ms(50);
        dead = queue_depth(IAS_AMQP_QUEUE_DEAD);
    }
    assert_int_equal(dead, dead0 + (long)IAS_ARRAY_LEN(bad));
    assert_int_equal(query_ll("SELECT count(*) FROM audit_ledger WHERE action = 'x'", 0, NULL), 0);
}

static int data_len(cJSON *j)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(j, "data"));
}

static void test_query_rbac(void **state)
{
    need_stack();
    cJSON *j = NULL;
    char path[512];
    long long prev_seq = 1LL << 60;
    int total = 0;
    const char *cursor = NULL;
    char cur[64] = "";

    assert_int_equal(get("/api/v1/audit", NULL, NULL), 401);
    assert_int_equal(get("/api/v1/audit", tok_user_a, NULL), 403);
    assert_int_equal(get("/api/v1/audit?org_id=" ORG_B, tok_admin_a, NULL), 403);

    /* org admin: only org A (8 events + the sentinel), whatever the filter */
    assert_int_equal(get("/api/v1/audit", tok_admin_a, &j), 200);
    assert_int_equal(data_len(j), NA + 1);
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "data"))
    {
        assert_string_equal(cJSON_GetObjectItem(e, "org_id")->valuestring, ORG_A);
        assert_int_equal(strlen(cJSON_GetObjectItem(e, "hash")->valuestring), 64);
    }
    cJSON_Delete(j);

    /* system admin: pages of 3, newest first, no entry twice */
    do {
        snprintf(path, sizeof(path), "/api/v1/audit?org_id=" ORG_A "&limit=3%s%s",
                 cursor ? "&cursor=" : "", cursor ? cur : "");
        assert_int_equal(get(path, tok_sys, &j), 200);
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "data"))
        {
            long long s = (long long)cJSON_GetObjectItem(e, "seq")->valuedouble;
            assert_true(s < prev_seq);
            prev_seq = s;
            total++;
        }
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        cursor = cJSON_IsString(nc) ? nc->valuestring : NULL;
        if (cursor)
            snprintf(cur, sizeof(cur), "%s", cursor);
        cJSON_Delete(j);
    } while (cursor);
    assert_int_equal(total, NA + 1);

    /* filters */
    assert_int_equal(get("/api/v1/audit?action=api_key_created", tok_sys, &j), 200);
    assert_int_equal(data_len(j), 3);
    cJSON_Delete(j);
    assert_int_equal(get("/api/v1/audit?action=policy_denied&org_id=" ORG_B, tok_sys, &j), 200);
    assert_int_equal(data_len(j), NB);
    cJSON_Delete(j);
    assert_int_equal(get("/api/v1/audit?actor_id=actor-1", tok_admin_a, &j), 200);
    assert_int_equal(data_len(j), NA / 2);
    cJSON_Delete(j);
    assert_int_equal(get("/api/v1/audit?resource_type=api_key&resource_id=key-2", tok_sys, &j),
                     200);
    assert_int_equal(data_len(j), 1);
    cJSON_Delete(j);
    /* days 1..5 by i % 5 for org A: days 2 and 3 hold i = 1, 2, 6, 7 (+ sentinel, day 3) */
    assert_int_equal(
        get("/api/v1/audit?from=2026-11-02T00:00:00Z&to=2026-11-04T00:00:00Z", tok_admin_a, &j),
        200);
    assert_int_equal(data_len(j), 5);
    cJSON_Delete(j);
    assert_int_equal(get("/api/v1/audit?from=yesterday", tok_sys, NULL), 400);
    assert_int_equal(get("/api/v1/audit?limit=0", tok_sys, NULL), 400);
    assert_int_equal(get("/api/v1/audit?org_id=nope", tok_sys, NULL), 400);
    assert_int_equal(get("/api/v1/audit/verify", tok_admin_a, NULL), 403);
    assert_int_equal(get("/api/v1/audit/export", tok_admin_a, NULL), 403);
}

/* What a third party does with an export: recompute every hash, follow the
 * links, and check each checkpoint's signature with the openssl command line. */
static void test_export_offline_verification(void **state)
{
    need_stack();
    char *copy, *line,
        *save = NULL, prev[65] = "0000000000000000000000000000000000000000000000000000000000000000";
    char pem[600], msg[600], sigf[600], cmd[3000];
    int entries = 0, checkpoints = 0, status;

    /* a checkpoint exists (every 5 entries, or after 1 s) */
    for (int i = 0; i < 100 && query_ll("SELECT count(*) FROM audit_checkpoints", 0, NULL) == 0;
         i++)
        sleep_ms(100);
    assert_int_equal(get("/api/v1/audit/export", tok_sys, NULL), 200);
    copy = ias_xstrdup(body_of());
    {
        char path[600];
        snprintf(path, sizeof(path), "%s/export.ndjson", workdir);
        write_file(path, copy, strlen(copy));
    }
    snprintf(pem, sizeof(pem), "%s/pub.pem", workdir);
    snprintf(msg, sizeof(msg), "%s/statement", workdir);
    snprintf(sigf, sizeof(sigf), "%s/sig", workdir);
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line), *x;
        assert_non_null(j);
        if ((x = cJSON_GetObjectItem(j, "export"))) {
            const char *k = cJSON_GetObjectItem(x, "public_key_pem")->valuestring;
            write_file(pem, k, strlen(k));
        } else if ((x = cJSON_GetObjectItem(j, "entry"))) {
            char *text = cJSON_PrintUnformatted(x), *canon = NULL, err[100], hex[65];
            size_t clen = 0;
            unsigned char dig[32];
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            unsigned int dl = 0;

            assert_string_equal(cJSON_GetObjectItem(j, "prev_hash")->valuestring, prev);
            assert_int_equal(ias_canonjson(text, strlen(text), 0, &canon, &clen, err, sizeof(err)),
                             IAS_OK);
            assert_true(EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
            assert_true(EVP_DigestUpdate(md, prev, 64) == 1);
            assert_true(EVP_DigestUpdate(md, canon, clen) == 1);
            assert_true(EVP_DigestFinal_ex(md, dig, &dl) == 1);
            EVP_MD_CTX_free(md);
            assert_int_equal(ias_hex_encode(dig, 32, hex, sizeof(hex)), 64);
            assert_string_equal(hex, cJSON_GetObjectItem(j, "hash")->valuestring);
            snprintf(prev, sizeof(prev), "%s", hex);
            free(text);
            free(canon);
            entries++;
        } else if ((x = cJSON_GetObjectItem(j, "checkpoint"))) {
            const char *st = cJSON_GetObjectItem(x, "statement")->valuestring;
            const char *sig = cJSON_GetObjectItem(x, "signature")->valuestring;
            unsigned char raw[100];

            assert_int_equal(EVP_DecodeBlock(raw, (const unsigned char *)sig, (int)strlen(sig)),
                             66);
            write_file(msg, st, strlen(st));
            write_file(sigf, raw, 64);
            snprintf(cmd, sizeof(cmd),
                     "openssl pkeyutl -verify -pubin -inkey %s -rawin -in %s -sigfile %s "
                     ">/dev/null 2>&1",
                     pem, msg, sigf);
            status = system(cmd);
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            /* a statement for another hash does not verify */
            {
                char forged[512];
                snprintf(forged, sizeof(forged), "%s", st);
                char *h = strstr(forged, "\"hash\":\"");
                assert_non_null(h);
                h[8] = h[8] == '0' ? '1' : '0';
                write_file(msg, forged, strlen(forged));
                status = system(cmd);
                assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            }
            checkpoints++;
        }
        cJSON_Delete(j);
    }
    free(copy);
    assert_int_equal(entries, query_ll("SELECT count(*) FROM audit_ledger", 0, NULL));
    assert_true(checkpoints >= 1);
    assert_int_equal(checkpoints, query_ll("SELECT count(*) FROM audit_checkpoints", 0, NULL));

    /* the checkpoints API lists them with the public key */
    cJSON *j = NULL;
    assert_int_equal(get("/api/v1/audit/checkpoints", tok_sys, &j), 200);
    assert_int_equal(data_len(j), checkpoints);
    assert_non_null(strstr(cJSON_GetObjectItem(j, "public_key_pem")->valuestring, "PUBLIC KEY"));
    cJSON_Delete(j);
}

static void test_tamper_detected(void **state)
{
    need_stack();
    cJSON *j = NULL, *m;
    long long target;
    char stored[65], sql[300];
    const char *p[1];
    PGresult *res = NULL;

    assert_int_equal(get("/api/v1/audit/verify", tok_sys, &j), 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    assert_int_equal((long long)cJSON_GetObjectItem(j, "entries_checked")->valuedouble,
                     query_ll("SELECT count(*) FROM audit_ledger", 0, NULL));
    assert_true(cJSON_GetObjectItem(j, "checkpoints_checked")->valuedouble >= 1);
    cJSON_Delete(j);

    /* the owner rewrites one entry's details behind the trigger's back */
    target = query_ll("SELECT seq FROM audit_ledger WHERE event_id = $1", 1,
                      (const char *const[]){ids_a[4]});
    snprintf(sql, sizeof(sql), "%lld", target);
    p[0] = sql;
    assert_int_equal(ias_pg_exec(pg, "SELECT hash FROM audit_ledger WHERE seq = $1", 1, p, &res),
                     IAS_OK);
    snprintf(stored, sizeof(stored), "%s", ias_pg_value(res, 0, 0));
    ias_pg_clear(res);
    exec_sql("ALTER TABLE audit_ledger DISABLE TRIGGER audit_ledger_no_update_delete");
    assert_int_equal(
        ias_pg_exec(pg, "UPDATE audit_ledger SET details = '{\"b\":2}' WHERE seq = $1", 1, p, NULL),
        IAS_OK);
    exec_sql("ALTER TABLE audit_ledger ENABLE TRIGGER audit_ledger_no_update_delete");

    assert_int_equal(get("/api/v1/audit/verify", tok_sys, &j), 200);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    m = cJSON_GetObjectItem(j, "first_mismatch");
    assert_non_null(m);
    assert_int_equal((long long)cJSON_GetObjectItem(m, "seq")->valuedouble, target);
    assert_string_equal(cJSON_GetObjectItem(m, "problem")->valuestring, "hash_mismatch");
    assert_string_equal(cJSON_GetObjectItem(m, "stored")->valuestring, stored);
    assert_string_not_equal(cJSON_GetObjectItem(m, "expected")->valuestring, stored);
    cJSON_Delete(j);

    /* a range after the damaged entry still verifies; one ending before it too */
    snprintf(sql, sizeof(sql), "/api/v1/audit/verify?from=%lld", target + 1);
    assert_int_equal(get(sql, tok_sys, &j), 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
    snprintf(sql, sizeof(sql), "/api/v1/audit/verify?from=1&to=%lld", target - 1);
    assert_int_equal(get(sql, tok_sys, &j), 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_redelivery_is_noop),
        cmocka_unit_test(test_malformed_dead_lettered),
        cmocka_unit_test(test_query_rbac),
        cmocka_unit_test(test_export_offline_verification),
        cmocka_unit_test(test_tamper_detected),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
