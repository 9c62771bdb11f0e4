/* Blocking Redis client for off-path services: connect and command timeouts,
 * AUTH/SELECT on every (re)connect, one retry when a connection turns out dead. */
#include "ias/redis.h"
#include "ias/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

struct ias_redis_sync {
    ias_redis_url url;
    char name[IAS_REDIS_URL_MAX]; /* redacted URL for logs */
    struct timeval tv;
    redisContext *c; /* NULL while disconnected */
};

static void drop(ias_redis_sync *s)
{
    if (s->c) {
        redisFree(s->c);
        s->c = NULL;
    }
}

/* One handshake command on a fresh context; IAS_OK when the reply is +OK. */
static int handshake_cmd(ias_redis_sync *s, int argc, const char **argv, const char *what)
{
    redisReply *r = redisCommandArgv(s->c, argc, argv, NULL);
    int rc = IAS_ERR;

    if (!r) {
        ias_warn(NULL, "redis %s: %s failed: %s", s->name, what, s->c->errstr);
        return IAS_ERR;
    }
    if (r->type == REDIS_REPLY_STATUS && strcasecmp(r->str, "OK") == 0)
        rc = IAS_OK;
    else
        ias_warn(NULL, "redis %s: %s refused: %s", s->name, what,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return rc;
}

static int sync_connect(ias_redis_sync *s)
{
    char db[16];

    drop(s);
    s->c = redisConnectWithTimeout(s->url.host, s->url.port, s->tv);
    if (!s->c)
        ias_die("redis: out of memory allocating a context");
    if (s->c->err) {
        ias_warn(NULL, "redis %s: connect failed: %s", s->name, s->c->errstr);
        goto fail;
    }
    if (redisSetTimeout(s->c, s->tv) != REDIS_OK) {
        ias_warn(NULL, "redis %s: setting the command timeout failed: %s", s->name, s->c->errstr);
        goto fail;
    }
    /* Dead peers are found by the command timeout; keepalive only helps idle links. */
    if (redisEnableKeepAlive(s->c) != REDIS_OK)
        ias_debug(NULL, "redis %s: SO_KEEPALIVE failed", s->name);
    if (s->url.password[0]) {
        const char *argv[3] = {"AUTH", s->url.user, s->url.password};
        if (s->url.user[0]) {
            if (handshake_cmd(s, 3, argv, "AUTH") != IAS_OK)
                goto fail;
        } else {
            argv[1] = s->url.password;
            if (handshake_cmd(s, 2, argv, "AUTH") != IAS_OK)
                goto fail;
        }
    }
    if (s->url.db != 0) {
        const char *argv[2] = {"SELECT", db};
        snprintf(db, sizeof(db), "%d", s->url.db);
        if (handshake_cmd(s, 2, argv, "SELECT") != IAS_OK)
            goto fail;
    }
    return IAS_OK;
fail:
    drop(s);
    return IAS_ERR;
}

ias_redis_sync *ias_redis_sync_new(const char *url, unsigned timeout_ms)
{
    ias_redis_sync *s;
    char err[256];
    ias_redis_url u;

    if (ias_redis_url_parse(url, &u, err, sizeof(err)) != IAS_OK) {
        ias_error(NULL, "%s", err);
        return NULL;
    }
    if (timeout_ms == 0)
        timeout_ms = 1;
    s = ias_xcalloc(1, sizeof(*s));
    s->url = u;
    ias_redis_url_redact(&u, s->name, sizeof(s->name));
    s->tv.tv_sec = timeout_ms / 1000;
    s->tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
    /* A server that is down now is not fatal: the next command reconnects. */
    (void)sync_connect(s);
    return s;
}

void ias_redis_sync_free(ias_redis_sync *s)
{
    if (!s)
        return;
    drop(s);
    explicit_bzero(s->url.password, sizeof(s->url.password));
    free(s);
}

/* The connection was found closed before our command could have been read:
 * EOF, reset or broken pipe. A timeout (EAGAIN) is not: the command may run. */
static bool dead_link(const redisContext *c, int saved_errno)
{
    if (c->err == REDIS_ERR_EOF)
        return true;
    return c->err == REDIS_ERR_IO &&
           (saved_errno == ECONNRESET || saved_errno == EPIPE || saved_errno == ENOTCONN);
}

int ias_redis_sync_cmd(ias_redis_sync *s, int argc, const char **argv, const size_t *argvlen,
                       redisReply **out)
{
    redisReply *r;
    int saved_errno;
    bool fresh = false;

    *out = NULL;
    if (argc < 1 || !argv)
        ias_die("redis: command without arguments");
    if (!s->c) {
        if (sync_connect(s) != IAS_OK)
            return IAS_ERR;
        fresh = true;
    }
    for (int attempt = 0;; attempt++) {
        errno = 0;
        r = redisCommandArgv(s->c, argc, argv, argvlen);
        saved_errno = errno;
        if (r) {
            *out = r;
            return IAS_OK;
        }
        ias_warn(NULL, "redis %s: command failed: %s", s->name, s->c->errstr);
        if (attempt > 0 || fresh || !dead_link(s->c, saved_errno)) {
            drop(s);
            return IAS_ERR;
        }
        if (sync_connect(s) != IAS_OK)
            return IAS_ERR;
    }
}

static bool is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

int ias_redis_sync_eval(ias_redis_sync *s, const ias_redis_script *script, int nkeys,
                        const char *const *keys, int nargs, const char *const *args,
                        redisReply **out)
{
    const char **argv;
    char nk[16];
    int argc, rc;

    *out = NULL;
    if (nkeys < 0 || nargs < 0 || script->sha[0] == '\0')
        ias_die("redis: bad eval call (script not initialised or negative counts)");
    argc = 3 + nkeys + nargs;
    argv = ias_xmalloc((size_t)argc * sizeof(*argv));
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = script->sha;
    argv[2] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[3 + nkeys + i] = args[i];

    rc = ias_redis_sync_cmd(s, argc, argv, NULL, out);
    if (rc == IAS_OK && is_noscript(*out)) {
        /* Not cached (restart or SCRIPT FLUSH): EVAL runs it and caches it. */
        freeReplyObject(*out);
        *out = NULL;
        argv[0] = "EVAL";
        argv[1] = script->source;
        rc = ias_redis_sync_cmd(s, argc, argv, NULL, out);
    }
    free(argv);
    return rc;
}

int ias_redis_sync_ping(ias_redis_sync *s)
{
    const char *argv[1] = {"PING"};
    redisReply *r;
    int rc;

    if (ias_redis_sync_cmd(s, 1, argv, NULL, &r) != IAS_OK)
        return IAS_ERR;
    rc = (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) ? IAS_OK : IAS_ERR;
    freeReplyObject(r);
    return rc;
}
