/* Redis clients over hiredis 0.14: a URL parser, a blocking client for off-path
 * services, a libevent client for hot paths, and Lua scripts called by SHA.
 *
 * Rules that come from hiredis:
 * - A reply lives only while the callback that receives it runs; copy what you need.
 * - An async client belongs to the thread running its event_base.
 * - Writing to a socket the server closed raises SIGPIPE: every ias service ignores
 *   SIGPIPE (the HTTP server sets SIG_IGN at start); other programs using these
 *   clients must do the same.
 * - Host names are resolved with a blocking getaddrinfo() at (re)connect time; on
 *   hot paths use an IP address or a name from /etc/hosts. */
#ifndef IAS_REDIS_H
#define IAS_REDIS_H

#include "ias/common.h"

#include <hiredis/hiredis.h>

struct event_base;

/* ---- URL: redis://[[user]:password@]host[:port][/db] ----
 * user and password may be percent-encoded; host may be [IPv6]; port defaults to
 * 6379, db to 0. rediss:// (TLS), query strings and fragments are rejected. */
#define IAS_REDIS_URL_MAX 1024
#define IAS_REDIS_HOST_MAX 256
#define IAS_REDIS_USER_MAX 128
#define IAS_REDIS_PASSWORD_MAX 256
#define IAS_REDIS_DB_MAX 65535

typedef struct ias_redis_url {
    char host[IAS_REDIS_HOST_MAX]; /* without IPv6 brackets */
    int port;
    char user[IAS_REDIS_USER_MAX];         /* "" = default user (AUTH password) */
    char password[IAS_REDIS_PASSWORD_MAX]; /* "" = no AUTH */
    int db;
} ias_redis_url;

/* IAS_OK, or IAS_ERR with a reason in err (never containing the password). */
int ias_redis_url_parse(const char *url, ias_redis_url *out, char *err,
                        size_t errlen) IAS_MUSTCHECK;
/* "redis://host:port/db" with credentials masked ("redis://user:***@..."), for logs. */
void ias_redis_url_redact(const ias_redis_url *u, char *buf, size_t len);

/* ---- Lua scripts, called by SHA1 with a NOSCRIPT fallback ---- */
typedef struct ias_redis_script {
    const char *source; /* not copied: must outlive the script (usually a literal) */
    char sha[41];       /* lowercase hex SHA1 of source */
} ias_redis_script;

/* Computes the SHA1 locally so the very first call can use EVALSHA. Call once at
 * start; afterwards the struct is read-only and may be shared between threads. */
void ias_redis_script_init(ias_redis_script *s, const char *source);

/* ---- Blocking client (off-path services; one per thread) ---- */
typedef struct ias_redis_sync ias_redis_sync;

/* Parses the URL (NULL and an error log if invalid) and tries to connect; if the
 * server is down the client is still returned and reconnects on the next command.
 * timeout_ms bounds the connect and every command (read or write). */
ias_redis_sync *ias_redis_sync_new(const char *url, unsigned timeout_ms);
void ias_redis_sync_free(ias_redis_sync *s);
/* Runs one command. IAS_OK: Redis answered and *out is the reply (possibly of type
 * REDIS_REPLY_ERROR), to be released with freeReplyObject(). IAS_ERR: no answer
 * (not connected, I/O error, timeout), *out is NULL. When a connection the server
 * closed is found dead (EOF, reset, broken pipe) it reconnects and retries once;
 * a timeout is never retried, since the command may have run. */
int ias_redis_sync_cmd(ias_redis_sync *s, int argc, const char **argv, const size_t *argvlen,
                       redisReply **out) IAS_MUSTCHECK;
/* EVALSHA, then EVAL with the source on NOSCRIPT (which also loads it). Same
 * result rules as ias_redis_sync_cmd. */
int ias_redis_sync_eval(ias_redis_sync *s, const ias_redis_script *script, int nkeys,
                        const char *const *keys, int nargs, const char *const *args,
                        redisReply **out) IAS_MUSTCHECK;
/* PING; IAS_OK when the server answered PONG (for /ready). */
int ias_redis_sync_ping(ias_redis_sync *s) IAS_MUSTCHECK;

/* ---- Async client on a libevent base (hot paths) ---- */
typedef struct ias_redis_async ias_redis_async;

/* Called exactly once per command, never from inside the call that queued it.
 * reply: the answer, or NULL when none came (disconnected, timeout, client freed).
 * err: NULL on success; otherwise why it failed: a transport message when reply is
 * NULL, or the server's error text (reply->str) when reply is REDIS_REPLY_ERROR.
 * So "if (err) fail closed" covers every failure. */
typedef void (*ias_redis_async_cb)(const redisReply *reply, const char *err, void *arg);

#define IAS_REDIS_ASYNC_TIMEOUT_MS 1000   /* default per-command timeout */
#define IAS_REDIS_CONNECT_TIMEOUT_MS 2000 /* connect + AUTH/SELECT/PING */
#define IAS_REDIS_BACKOFF_MIN_MS 50       /* reconnect delay, doubled per failure */
#define IAS_REDIS_BACKOFF_MAX_MS 2000
#define IAS_REDIS_STALL_TIMEOUTS 3 /* consecutive timeouts that drop the link */

/* Parses the URL (NULL and an error log if invalid) and starts connecting in the
 * background; reconnects with backoff whenever the link drops. */
ias_redis_async *ias_redis_async_new(struct event_base *base, const char *url);
/* Pending commands get their callback with reply NULL. Safe to call from inside
 * one of this client's callbacks: the memory is released once hiredis has
 * unwound. Call it before freeing the event_base. */
void ias_redis_async_free(ias_redis_async *a);
/* Connected and past AUTH/SELECT/PING. Readable from any thread (relaxed). */
bool ias_redis_async_connected(const ias_redis_async *a);
/* Per-command timeout for commands queued from now on (>= 1 ms). */
void ias_redis_async_set_timeout(ias_redis_async *a, unsigned timeout_ms);

/* Queues one command. Not connected: the callback fires on the next loop turn
 * with reply NULL ("redis not connected") instead of waiting for a reconnect.
 * No reply within the timeout: the callback fires with reply NULL ("redis command
 * timed out") and the late reply is dropped. After IAS_REDIS_STALL_TIMEOUTS
 * timeouts in a row with no reply in between, the connection is considered stuck
 * and is dropped and re-established. */
void ias_redis_async_cmd_argv(ias_redis_async *a, int argc, const char **argv,
                              const size_t *argvlen, ias_redis_async_cb cb, void *arg);
/* EVALSHA; on NOSCRIPT, EVAL with the source, whose result is delivered. One
 * timeout covers both. script must outlive the call. */
void ias_redis_async_eval(ias_redis_async *a, const ias_redis_script *script, int nkeys,
                          const char *const *keys, int nargs, const char *const *args,
                          ias_redis_async_cb cb, void *arg);

/* The event_base the client runs on (for modules that defer work to the end of
 * the current loop iteration, e.g. the budget batcher). */
struct event_base *ias_redis_async_base(const ias_redis_async *a);

/* Per-client state of a module layered on the client, found by a tag (the
 * address of a static object of that module), so the module needs no global
 * map. free_fn runs once, from ias_redis_async_free(), before anything else is
 * torn down; the client is still usable, but commands queued from there on fail
 * ("redis client closed"). A module queueing work of its own must fail it there:
 * every callback it owes still fires exactly once. */
#define IAS_REDIS_ASYNC_EXT_MAX 4
typedef void (*ias_redis_async_ext_free_fn)(void *data);
/* NULL when the tag has no state on this client. */
void *ias_redis_async_ext_get(const ias_redis_async *a, const void *tag);
/* IAS_ERR (nothing stored) when the client is being freed, the tag is already
 * set, or all IAS_REDIS_ASYNC_EXT_MAX slots are taken. */
int ias_redis_async_ext_set(ias_redis_async *a, const void *tag, void *data,
                            ias_redis_async_ext_free_fn free_fn) IAS_MUSTCHECK;

#endif
