/* Async Redis client on a libevent base, for hot paths.
 *
 * hiredis 0.14 has no connect or command timeouts and no way to cancel a queued
 * command, so every command is an "op" that we own:
 * - the op is hiredis's privdata and carries a timer; whichever comes first
 *   (reply, timeout, disconnect) delivers the user callback, exactly once;
 * - the op stays allocated until hiredis has called back too (inflight == 0), so a
 *   late reply finds a live op marked done and is dropped.
 *
 * Freeing: hiredis may be on the stack (inside redisProcessCallbacks) when a user
 * callback frees the client. Every entry point from the loop brackets its work with
 * enter()/leave(); the client is released by the last leave() once hiredis has
 * also let go of its context (a->ac == NULL, no op inflight). */
#include "ias/redis.h"
#include "ias/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

typedef struct op op;
struct op {
    op *prev, *next; /* a->ops */
    ias_redis_async *a;
    ias_redis_async_cb cb;
    void *arg;
    struct event timer;             /* command timeout, or deferred failure when fail != NULL */
    const char *fail;               /* static message for a failure decided at submit time */
    int inflight;                   /* hiredis callbacks still owed to us */
    int pinned;                     /* a function on the stack still uses the op */
    bool done;                      /* user callback delivered */
    const ias_redis_script *script; /* eval: retry as EVAL on NOSCRIPT */
    bool retried;
    int argc; /* eval copy of the arguments, in the same allocation */
    const char **argv;
    size_t *argvlen;
};

struct ias_redis_async {
    struct event_base *base;
    ias_redis_url url;
    char name[IAS_REDIS_URL_MAX]; /* redacted URL for logs */
    redisAsyncContext *ac;        /* current connection, NULL while disconnected */
    bool ac_closing;              /* hiredis is tearing a->ac down; send nothing */
    _Atomic bool connected;       /* handshake done on a->ac */
    bool freeing;
    bool loss_logged; /* one warning per outage, not one per attempt */
    int busy;         /* enter()/leave() depth */
    int ninflight;    /* ops hiredis still holds, all connections */
    unsigned timeout_ms;
    unsigned backoff_ms;
    unsigned stall; /* consecutive command timeouts with no reply in between */
    struct event *reconnect_ev;
    struct event *connect_timeout_ev;
    op *ops; /* every live op */
    struct {
        const void *tag; /* NULL = free slot */
        void *data;
        ias_redis_async_ext_free_fn free_fn;
    } ext[IAS_REDIS_ASYNC_EXT_MAX];
};

static void maybe_finish_free(ias_redis_async *a);
static void schedule_reconnect(ias_redis_async *a);
static void on_op_timer(evutil_socket_t fd, short what, void *arg);

static void enter(ias_redis_async *a)
{
    a->busy++;
}

/* May release a: touch nothing of it afterwards. */
static void leave(ias_redis_async *a)
{
    a->busy--;
    maybe_finish_free(a);
}

static void set_connected(ias_redis_async *a, bool v)
{
    atomic_store_explicit(&a->connected, v, memory_order_relaxed);
}

bool ias_redis_async_connected(const ias_redis_async *a)
{
    return atomic_load_explicit(&a->connected, memory_order_relaxed);
}

static void ms_to_tv(unsigned ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

/* ---- ops ---- */

static op *op_new(ias_redis_async *a, ias_redis_async_cb cb, void *arg, size_t extra)
{
    op *o = ias_xcalloc(1, sizeof(*o) + extra);

    o->a = a;
    o->cb = cb;
    o->arg = arg;
    if (event_assign(&o->timer, a->base, -1, 0, on_op_timer, o) != 0)
        ias_die("redis: event_assign failed");
    o->next = a->ops;
    if (a->ops)
        a->ops->prev = o;
    a->ops = o;
    return o;
}

static void op_maybe_free(op *o)
{
    ias_redis_async *a = o->a;

    if (!o->done || o->inflight > 0 || o->pinned > 0)
        return;
    event_del(&o->timer);
    if (o->prev)
        o->prev->next = o->next;
    else
        a->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
    free(o);
}

static void op_deliver(op *o, const redisReply *reply, const char *err)
{
    o->done = true;
    event_del(&o->timer);
    o->pinned++;
    o->cb(reply, err, o->arg);
    o->pinned--;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Hands argv to hiredis on the current connection. The RESP bytes are built
 * here (what redisAsyncCommandArgv would send, byte for byte) and passed with
 * redisAsyncFormattedCommand: hiredis formats each argument through
 * sdscatfmt, several hundred instructions an argument on every budget call. */
static int op_submit(op *o, int argc, const char **argv, const size_t *argvlen)
{
    ias_redis_async *a = o->a;
    char stackbuf[2048], *buf, *p;
    size_t total = 32;
    int rc;

    if (!a->ac || a->ac_closing)
        return IAS_ERR;
    for (int i = 0; i < argc; i++)
        total += (argvlen ? argvlen[i] : strlen(argv[i])) + 32; /* "$<len>\r\n" + "\r\n" */
    buf = total <= sizeof(stackbuf) ? stackbuf : ias_xmalloc(total);
    p = buf;
    *p++ = '*';
    p += ias_put_u64(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        *p++ = '$';
        p += ias_put_u64(p, n);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    /* hiredis reads the command name back with strchr: a C string, like the
     * sds redisAsyncCommandArgv passes (total leaves room for the NUL) */
    *p = '\0';
    rc = redisAsyncFormattedCommand(a->ac, on_reply, o, buf, (size_t)(p - buf));
    if (buf != stackbuf)
        free(buf);
    if (rc != REDIS_OK)
        return IAS_ERR;
    o->inflight++;
    a->ninflight++;
    return IAS_OK;
}

/* Fails the op on the next loop turn, never from inside the caller's call. */
static void op_fail_later(op *o, const char *why)
{
    struct timeval zero = {0, 0};

    o->fail = why;
    if (event_add(&o->timer, &zero) != 0)
        ias_die("redis: event_add failed");
}

static bool is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Commands whose replies do not map one-to-one onto requests would break the
 * op bookkeeping. */
static bool unsupported(const char *cmd, size_t len)
{
    static const char *const bad[] = {"SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
                                      "MONITOR"};
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++) {
        if (len == strlen(bad[i]) && strncasecmp(cmd, bad[i], len) == 0)
            return true;
    }
    return false;
}

static void op_start(op *o, int argc, const char **argv, const size_t *argvlen)
{
    ias_redis_async *a = o->a;
    struct timeval tv;

    if (argc < 1 || !argv || !argv[0])
        ias_die("redis: command without arguments");
    if (a->freeing) {
        op_fail_later(o, "redis client closed");
    } else if (!ias_redis_async_connected(a) || a->ac_closing) {
        op_fail_later(o, "redis not connected");
    } else if (unsupported(argv[0], argvlen ? argvlen[0] : strlen(argv[0]))) {
        op_fail_later(o, "redis command not supported by this client");
    } else if (op_submit(o, argc, argv, argvlen) != IAS_OK) {
        op_fail_later(o, "redis not connected");
    } else {
        ms_to_tv(a->timeout_ms, &tv);
        if (event_add(&o->timer, &tv) != 0)
            ias_die("redis: event_add failed");
    }
}

/* ---- connection ---- */

/* Lets go of the current connection. Inside a hiredis reply callback hiredis
 * frees it after the callback returns and on_disconnect finishes the job;
 * otherwise it is freed now and pending ops are called back with NULL. */
static void drop_ac(ias_redis_async *a)
{
    redisAsyncContext *ac = a->ac;

    if (!ac || a->ac_closing)
        return;
    set_connected(a, false);
    if (ac->c.flags & REDIS_IN_CALLBACK) {
        a->ac_closing = true;
        redisAsyncFree(ac);
        return;
    }
    a->ac = NULL;
    redisAsyncFree(ac);
    schedule_reconnect(a);
}

static void log_loss(ias_redis_async *a, const char *why)
{
    if (a->freeing)
        return;
    if (!a->loss_logged) {
        ias_warn(NULL, "redis %s: %s; reconnecting", a->name, why);
        a->loss_logged = true;
    } else {
        ias_debug(NULL, "redis %s: %s", a->name, why);
    }
}

static void on_handshake(const redisReply *reply, const char *err, void *arg)
{
    ias_redis_async *a = arg;

    if (err) {
        log_loss(a, err);
        drop_ac(a);
        return;
    }
    /* PING is sent last: its PONG means AUTH and SELECT went through. */
    if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0 && a->ac &&
        !a->ac_closing) {
        event_del(a->connect_timeout_ev);
        a->backoff_ms = IAS_REDIS_BACKOFF_MIN_MS;
        a->stall = 0;
        a->loss_logged = false;
        set_connected(a, true);
        ias_info(NULL, "redis %s: connected", a->name);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    ias_redis_async *a = ac->data;

    if (status == REDIS_OK)
        return; /* connected means "answered PING", see on_handshake */
    enter(a);
    if (a->ac == ac) {
        /* hiredis frees ac right after this callback. */
        a->ac = NULL;
        a->ac_closing = false;
        set_connected(a, false);
        log_loss(a, ac->errstr[0] ? ac->errstr : "connect failed");
        schedule_reconnect(a);
    }
    leave(a);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    ias_redis_async *a = ac->data;

    enter(a);
    if (a->ac == ac) {
        a->ac = NULL;
        a->ac_closing = false;
        set_connected(a, false);
        log_loss(a, status == REDIS_OK ? "connection closed"
                                       : (ac->errstr[0] ? ac->errstr : "connection lost"));
        schedule_reconnect(a);
    }
    leave(a);
}

typedef struct hs_cmd {
    int argc;
    const char *argv[3];
} hs_cmd;

static void start_connect(ias_redis_async *a)
{
    redisAsyncContext *ac;
    struct timeval tv;
    char db[16];

    ac = redisAsyncConnect(a->url.host, a->url.port);
    if (!ac)
        ias_die("redis: out of memory allocating a context");
    if (ac->err) {
        log_loss(a, ac->errstr);
        redisAsyncFree(ac);
        schedule_reconnect(a);
        return;
    }
    ac->data = a;
    if (redisLibeventAttach(ac, a->base) != REDIS_OK)
        ias_die("redis: attaching to libevent failed");
    if (redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK)
        ias_die("redis: setting connection callbacks failed");
    a->ac = ac;
    a->ac_closing = false;
    a->stall = 0;

    /* Pipelined now; hiredis writes them once the socket connects. */
    hs_cmd hs[3];
    int n = 0;
    if (a->url.password[0]) {
        if (a->url.user[0])
            hs[n++] = (hs_cmd){3, {"AUTH", a->url.user, a->url.password}};
        else
            hs[n++] = (hs_cmd){2, {"AUTH", a->url.password, NULL}};
    }
    if (a->url.db != 0) {
        snprintf(db, sizeof(db), "%d", a->url.db);
        hs[n++] = (hs_cmd){2, {"SELECT", db, NULL}};
    }
    hs[n++] = (hs_cmd){1, {"PING", NULL, NULL}};
    for (int i = 0; i < n; i++) {
        /* Sent straight to hiredis: the connected check does not apply. */
        op *o = op_new(a, on_handshake, a, 0);
        if (op_submit(o, hs[i].argc, hs[i].argv, NULL) != IAS_OK) {
            o->done = true;
            op_maybe_free(o);
            log_loss(a, "queueing the handshake failed");
            drop_ac(a);
            return;
        }
    }
    ms_to_tv(IAS_REDIS_CONNECT_TIMEOUT_MS, &tv);
    if (event_add(a->connect_timeout_ev, &tv) != 0)
        ias_die("redis: event_add failed");
}

static void schedule_reconnect(ias_redis_async *a)
{
    struct timeval tv;

    if (a->freeing || a->ac || evtimer_pending(a->reconnect_ev, NULL))
        return;
    event_del(a->connect_timeout_ev);
    ms_to_tv(a->backoff_ms, &tv);
    a->backoff_ms =
        a->backoff_ms * 2 > IAS_REDIS_BACKOFF_MAX_MS ? IAS_REDIS_BACKOFF_MAX_MS : a->backoff_ms * 2;
    if (event_add(a->reconnect_ev, &tv) != 0)
        ias_die("redis: event_add failed");
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    ias_redis_async *a = arg;

    enter(a);
    if (!a->freeing && !a->ac)
        start_connect(a);
    leave(a);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    ias_redis_async *a = arg;

    enter(a);
    if (a->ac && !ias_redis_async_connected(a)) {
        log_loss(a, "connect timed out");
        drop_ac(a);
    }
    leave(a);
}

/* ---- hiredis and timer callbacks for ops ---- */

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    op *o = privdata;
    ias_redis_async *a = o->a;
    const redisReply *reply = r;

    enter(a);
    o->pinned++;
    o->inflight--;
    a->ninflight--;
    if (!reply) {
        /* hiredis is tearing this connection down: nothing more may be queued. */
        if (ac == a->ac) {
            a->ac_closing = true;
            set_connected(a, false);
        }
    } else {
        a->stall = 0; /* even a late reply proves the link is alive */
    }
    if (!o->done) {
        if (reply && o->script && !o->retried && is_noscript(reply)) {
            /* Not cached (restart or SCRIPT FLUSH): EVAL runs and caches it. */
            o->retried = true;
            o->argv[0] = "EVAL";
            o->argv[1] = o->script->source;
            o->argvlen[0] = 4;
            o->argvlen[1] = strlen(o->script->source);
            if (op_submit(o, o->argc, o->argv, o->argvlen) != IAS_OK)
                op_deliver(o, NULL, "redis not connected");
        } else if (!reply) {
            op_deliver(o, NULL, a->freeing ? "redis client closed" : "redis connection lost");
        } else if (reply->type == REDIS_REPLY_ERROR) {
            op_deliver(o, reply, reply->str);
        } else {
            op_deliver(o, reply, NULL);
        }
    }
    o->pinned--;
    op_maybe_free(o);
    leave(a);
}

static void on_op_timer(evutil_socket_t fd, short what, void *arg)
{
    op *o = arg;
    ias_redis_async *a = o->a;

    enter(a);
    o->pinned++;
    if (!o->done) {
        if (o->fail) {
            op_deliver(o, NULL, o->fail);
        } else {
            a->stall++;
            op_deliver(o, NULL, "redis command timed out");
            if (a->stall >= IAS_REDIS_STALL_TIMEOUTS && a->ac && !a->ac_closing) {
                a->stall = 0;
                log_loss(a, "commands keep timing out");
                drop_ac(a);
            }
        }
    }
    o->pinned--;
    op_maybe_free(o);
    leave(a);
}

/* ---- public ---- */

ias_redis_async *ias_redis_async_new(struct event_base *base, const char *url)
{
    ias_redis_async *a;
    char err[256];
    ias_redis_url u;

    if (ias_redis_url_parse(url, &u, err, sizeof(err)) != IAS_OK) {
        ias_error(NULL, "%s", err);
        return NULL;
    }
    a = ias_xcalloc(1, sizeof(*a));
    a->base = base;
    a->url = u;
    ias_redis_url_redact(&u, a->name, sizeof(a->name));
    a->timeout_ms = IAS_REDIS_ASYNC_TIMEOUT_MS;
    a->backoff_ms = IAS_REDIS_BACKOFF_MIN_MS;
    a->reconnect_ev = evtimer_new(base, on_reconnect_timer, a);
    a->connect_timeout_ev = evtimer_new(base, on_connect_timeout, a);
    if (!a->reconnect_ev || !a->connect_timeout_ev)
        ias_die("redis: evtimer_new failed");
    enter(a);
    start_connect(a);
    leave(a);
    return a;
}

struct event_base *ias_redis_async_base(const ias_redis_async *a)
{
    return a->base;
}

void *ias_redis_async_ext_get(const ias_redis_async *a, const void *tag)
{
    for (size_t i = 0; i < IAS_ARRAY_LEN(a->ext); i++) {
        if (a->ext[i].tag == tag)
            return a->ext[i].data;
    }
    return NULL;
}

int ias_redis_async_ext_set(ias_redis_async *a, const void *tag, void *data,
                            ias_redis_async_ext_free_fn free_fn)
{
    size_t slot = IAS_ARRAY_LEN(a->ext);

    if (!tag || a->freeing)
        return IAS_ERR;
    for (size_t i = 0; i < IAS_ARRAY_LEN(a->ext); i++) {
        if (a->ext[i].tag == tag)
            return IAS_ERR;
        if (!a->ext[i].tag && slot == IAS_ARRAY_LEN(a->ext))
            slot = i;
    }
    if (slot == IAS_ARRAY_LEN(a->ext))
        return IAS_ERR;
    a->ext[slot].tag = tag;
    a->ext[slot].data = data;
    a->ext[slot].free_fn = free_fn;
    return IAS_OK;
}

void ias_redis_async_set_timeout(ias_redis_async *a, unsigned timeout_ms)
{
    a->timeout_ms = timeout_ms ? timeout_ms : 1;
}

void ias_redis_async_cmd_argv(ias_redis_async *a, int argc, const char **argv,
                              const size_t *argvlen, ias_redis_async_cb cb, void *arg)
{
    op *o = op_new(a, cb, arg, 0);

    enter(a);
    op_start(o, argc, argv, argvlen);
    leave(a);
}

void ias_redis_async_eval(ias_redis_async *a, const ias_redis_script *script, int nkeys,
                          const char *const *keys, int nargs, const char *const *args,
                          ias_redis_async_cb cb, void *arg)
{
    size_t argc, bytes, off;
    char *text;
    op *o;

    if (nkeys < 0 || nargs < 0 || script->sha[0] == '\0')
        ias_die("redis: bad eval call (script not initialised or negative counts)");
    argc = 3 + (size_t)nkeys + (size_t)nargs;
    /* One block: argv, argvlen, then the nkeys digits and every key and arg, so a
     * NOSCRIPT retry can resend them after the caller's buffers are gone. */
    bytes = argc * (sizeof(char *) + sizeof(size_t)) + 16;
    for (int i = 0; i < nkeys; i++)
        bytes += strlen(keys[i]) + 1;
    for (int i = 0; i < nargs; i++)
        bytes += strlen(args[i]) + 1;
    o = op_new(a, cb, arg, bytes);
    o->script = script;
    o->argc = (int)argc;
    o->argv = (const char **)(o + 1);
    o->argvlen = (size_t *)(o->argv + argc);
    text = (char *)(o->argvlen + argc);
    o->argv[0] = "EVALSHA";
    o->argv[1] = script->sha;
    o->argv[2] = text;
    off = (size_t)snprintf(text, 16, "%d", nkeys) + 1;
    for (size_t i = 3; i < argc; i++) {
        const char *s = i < 3 + (size_t)nkeys ? keys[i - 3] : args[i - 3 - (size_t)nkeys];
        size_t n = strlen(s);
        memcpy(text + off, s, n + 1);
        o->argv[i] = text + off;
        off += n + 1;
    }
    for (size_t i = 0; i < argc; i++)
        o->argvlen[i] = strlen(o->argv[i]);

    enter(a);
    op_start(o, o->argc, o->argv, o->argvlen);
    leave(a);
}

static void maybe_finish_free(ias_redis_async *a)
{
    if (!a->freeing || a->busy > 0 || a->ac || a->ninflight > 0)
        return;
    /* Only ops that never reached hiredis are left (deferred failures); a callback
     * may queue more, which land here too. */
    a->busy++;
    while (a->ops) {
        op *o = a->ops;
        if (!o->done)
            op_deliver(o, NULL, "redis client closed");
        if (o->inflight || o->pinned)
            ias_die("redis: op still in use while freeing the client");
        op_maybe_free(o);
    }
    a->busy--;
    event_free(a->reconnect_ev);
    event_free(a->connect_timeout_ev);
    explicit_bzero(a->url.password, sizeof(a->url.password));
    free(a);
}

void ias_redis_async_free(ias_redis_async *a)
{
    if (!a || a->freeing)
        return;
    a->freeing = true;
    enter(a);
    /* Modules first, while the client still stands: what they queued fails now,
     * and anything they send from here fails like any command after free. */
    for (size_t i = 0; i < IAS_ARRAY_LEN(a->ext); i++) {
        void *data = a->ext[i].data;
        ias_redis_async_ext_free_fn fn = a->ext[i].free_fn;

        if (!a->ext[i].tag)
            continue;
        a->ext[i].tag = NULL;
        a->ext[i].data = NULL;
        a->ext[i].free_fn = NULL;
        if (fn)
            fn(data);
    }
    set_connected(a, false);
    event_del(a->reconnect_ev);
    event_del(a->connect_timeout_ev);
    drop_ac(a);
    leave(a);
}
