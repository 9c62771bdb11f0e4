/* RabbitMQ: connections, the ias.events topology, the spooling publisher and a
 * consumer loop (librabbitmq-c 0.11).
 *
 * A librabbitmq connection is blocking and belongs to one thread. Hot-path
 * services never touch one: they hand events to an ias_publisher, whose own
 * thread owns the connection (publisher confirms always on) and spills to an
 * fsync'd local spool while the broker is away or the queue overflows. Off-path consumers run
 * ias_consumer_run() on a dedicated thread. See docs/architecture/events.md for
 * the topology and the delivery guarantees. */
#ifndef IAS_AMQP_H
#define IAS_AMQP_H

#include <stdatomic.h>

#include "ias/common.h"

/* librabbitmq types, forward-declared so users of this header need not include
 * <amqp.h>. */
struct amqp_connection_state_t_;
struct amqp_rpc_reply_t_;
struct amqp_method_t_;

/* ---- topology names ---------------------------------------------------- */

#define IAS_AMQP_EXCHANGE "ias.events"         /* durable topic exchange */
#define IAS_AMQP_DLX "ias.events.dlx"          /* dead letters, topic */
#define IAS_AMQP_QUEUE_DEAD "ias.dead"         /* bound to the DLX with "#" */
#define IAS_AMQP_QUEUE_USAGE "ias.usage"       /* usage.recorded */
#define IAS_AMQP_QUEUE_AUDIT "ias.audit"       /* audit.# */
#define IAS_AMQP_RK_USAGE "usage.recorded"     /* routing key of usage events */
#define IAS_AMQP_BIND_AUDIT "audit.#"          /* every audit.<service>.<action> */
#define IAS_EVENT_USAGE_V1 "usage.recorded.v1" /* AMQP "type" property values */
#define IAS_EVENT_AUDIT_V1 "audit.recorded.v1"
#define IAS_EVENT_CONFIG_V1 "config.changed.v1"
/* Header the consumer uses to count delivery attempts across RETRY. */
#define IAS_AMQP_HDR_ATTEMPTS "x-ias-attempts"
/* Original routing key of a message republished to its queue for RETRY. */
#define IAS_AMQP_HDR_ROUTING_KEY "x-ias-routing-key"
/* A pack: several events of one routing key and type in one message. Its
 * content_type is IAS_AMQP_CONTENT_TYPE_PACK, the body is the events' JSON
 * bodies joined by '\n' (none contains one), and this header is an array of
 * their message ids, one per line, in order. See docs/architecture/events.md. */
#define IAS_AMQP_CONTENT_TYPE_JSON "application/json"
#define IAS_AMQP_CONTENT_TYPE_PACK "application/x-ndjson"
#define IAS_AMQP_HDR_MESSAGE_IDS "x-ias-message-ids"
/* On an event of a pack that the consumer dead-lettered alone (published to
 * ias.events.dlx itself): the handler's reason and the queue it came from. */
#define IAS_AMQP_HDR_DEAD_REASON "x-ias-dead-reason"
#define IAS_AMQP_HDR_DEAD_QUEUE "x-ias-dead-queue"
/* Most events in one pack (publisher option pack_max is clamped to it). */
#define IAS_AMQP_PACK_MAX 1024

/* AMQP short strings (routing keys, message ids, types) are at most 255 bytes. */
#define IAS_AMQP_SHORTSTR_MAX 255
/* Largest event body the publisher accepts (and the consumer default). */
#define IAS_AMQP_BODY_MAX (1024 * 1024)

/* Routing keys: "audit.<service>.<action>" and "config.<kind>.changed". Each
 * part must be non-empty [a-z0-9_-]. IAS_ERR on bad input or a short buffer. */
int ias_amqp_audit_key(char *buf, size_t len, const char *service,
                       const char *action) IAS_MUSTCHECK;
int ias_amqp_config_key(char *buf, size_t len, const char *kind) IAS_MUSTCHECK;

/* ---- connections (amqp_conn.c) ----------------------------------------- */

typedef struct ias_amqp_conn ias_amqp_conn;

typedef struct ias_amqp_conn_opts {
    const char *url;        /* amqp://user:pass@host:port/vhost (%2f = "/") */
    int heartbeat_s;        /* 0 -> 30; negative disables heartbeats */
    int rpc_timeout_ms;     /* 0 -> 10000: every synchronous AMQP call */
    int connect_timeout_ms; /* 0 -> 5000: TCP connect + AMQP handshake */
} ias_amqp_conn_opts;

/* Connects, logs in and opens channel 1. On failure returns IAS_ERR with a
 * message in err (the password is never included). */
int ias_amqp_connect(const ias_amqp_conn_opts *opts, ias_amqp_conn **out, char *err,
                     size_t errlen) IAS_MUSTCHECK;
/* Closes channel and connection politely when they are still usable. NULL ok. */
void ias_amqp_conn_free(ias_amqp_conn *c);
/* False once the connection (or its channel 1) failed: free it and reconnect. */
bool ias_amqp_conn_ok(const ias_amqp_conn *c);
/* Last error on this connection ("" if none). */
const char *ias_amqp_conn_error(const ias_amqp_conn *c);
/* The underlying librabbitmq state, for callers that include <amqp.h>. */
struct amqp_connection_state_t_ *ias_amqp_conn_state(ias_amqp_conn *c);

/* Checks the reply of the last synchronous call (amqp_get_rpc_reply); on error
 * records "<what>: <reason>", marks the connection broken and logs. */
int ias_amqp_conn_check_rpc(ias_amqp_conn *c, const char *what) IAS_MUSTCHECK;
/* Same for a plain librabbitmq status code (amqp_basic_publish, amqp_basic_ack...). */
int ias_amqp_conn_check_status(ias_amqp_conn *c, int status, const char *what) IAS_MUSTCHECK;
/* Handles an unsolicited channel.close / connection.close method received on
 * `channel`: answers close-ok, records the server's reason and marks the
 * connection broken. Returns true if m was such a method. */
bool ias_amqp_conn_on_close(ias_amqp_conn *c, uint16_t channel, const struct amqp_method_t_ *m);
/* Human-readable text for a librabbitmq reply (server code and text included). */
void ias_amqp_reply_str(const struct amqp_rpc_reply_t_ *r, char *buf, size_t len);

/* Properties of a published event: persistent, application/json. */
typedef struct ias_amqp_props {
    const char *message_id; /* the event's event_id */
    const char *type;       /* e.g. usage.recorded.v1 */
    int64_t timestamp_ms;   /* wall clock; sent as AMQP seconds */
    int attempts;           /* > 0 adds the x-ias-attempts header */
    const char *orig_key;   /* non-NULL adds the x-ias-routing-key header */
    /* npack > 0: the body is a pack of npack events and pack_ids their message
     * ids (content_type application/x-ndjson, header x-ias-message-ids). */
    const char *const *pack_ids;
    size_t npack;
} ias_amqp_props;

/* amqp_basic_publish with ias properties (delivery_mode 2, content_type
 * application/json or, for a pack, application/x-ndjson, message_id, type,
 * timestamp) on `channel`, mandatory off. */
int ias_amqp_publish_raw(ias_amqp_conn *c, uint16_t channel, const char *exchange,
                         const char *routing_key, const ias_amqp_props *props, const void *body,
                         size_t len) IAS_MUSTCHECK;

/* ---- topology (amqp_topology.c) ---------------------------------------- */

/* Declares ias.events, ias.events.dlx, ias.dead, ias.usage and ias.audit with
 * their bindings. Idempotent; IAS_ERR (connection then unusable) if something
 * exists with different arguments. */
int ias_amqp_declare_topology(ias_amqp_conn *c) IAS_MUSTCHECK;
/* A durable queue with x-dead-letter-exchange=ias.events.dlx bound to ias.events
 * with each key. Idempotent. */
int ias_amqp_declare_queue(ias_amqp_conn *c, const char *name, const char *const *keys,
                           size_t nkeys) IAS_MUSTCHECK;
/* A per-instance queue for config events: server-named, exclusive, auto-delete
 * (it disappears with the connection), bound to ias.events with each key. The
 * name is written to name_out. */
int ias_amqp_declare_instance_queue(ias_amqp_conn *c, const char *const *keys, size_t nkeys,
                                    char *name_out, size_t name_len) IAS_MUSTCHECK;
/* Deletes a queue (tests, tooling). */
int ias_amqp_delete_queue(ias_amqp_conn *c, const char *name) IAS_MUSTCHECK;

/* ---- spool (amqp_spool.c) ---------------------------------------------- */

/* An append-only on-disk queue of events in segment files
 * <dir>/seg-<20-digit id>.spool. A segment starts with the 8-byte magic
 * "IASSPL1\n" followed by records:
 *
 *   u32 magic 0x52534149 ("IASR") | u32 payload_len | u32 crc32(payload) | payload
 *   payload = i64 timestamp_ms | u16 rk_len | u16 mid_len | u16 type_len |
 *             u32 body_len | rk \0 | message_id \0 | type \0 | body
 *
 * all integers little-endian, CRC-32 as in zlib/IEEE 802.3. A record whose
 * length runs past the end of the file or whose CRC does not match (a torn
 * write after a crash) is skipped with a warning; reading resumes at the next
 * valid record magic. Segments are only appended to by the process that
 * created them and never after they are sealed; a segment is deleted once
 * every record in it was confirmed by the broker (or copied into a newer
 * segment). */
typedef struct ias_spool ias_spool;
typedef struct ias_spool_reader ias_spool_reader;

typedef struct ias_spool_rec {
    int64_t timestamp_ms;
    const char *routing_key; /* NUL-terminated, <= 255 bytes */
    const char *message_id;  /* NUL-terminated, <= 255 bytes */
    const char *type;        /* NUL-terminated, <= 255 bytes */
    const void *body;
    size_t body_len; /* <= IAS_AMQP_BODY_MAX */
} ias_spool_rec;

/* CRC-32 (IEEE, reflected, as zlib's crc32()); start with crc = 0. */
uint32_t ias_spool_crc32(uint32_t crc, const void *data, size_t len);

/* Opens (creating it if needed) a spool directory. segment_bytes: soft size at
 * which a new segment is started (0 -> 4 MiB); max_bytes: cap on the whole
 * spool, appends beyond it fail (0 -> 1 GiB). Thread-safe. */
int ias_spool_open(const char *dir, size_t segment_bytes, uint64_t max_bytes,
                   ias_spool **out) IAS_MUSTCHECK;
void ias_spool_free(ias_spool *s);
/* Appends n records with one write and one fsync. IAS_OK only once the data
 * is on disk. */
int ias_spool_append(ias_spool *s, const ias_spool_rec *recs, size_t n) IAS_MUSTCHECK;
/* Appends with one write() and no fsync: IAS_OK means the records are in the
 * kernel's page cache (they survive a crash of this process, not of the
 * machine) until ias_spool_sync, the next synced append, sealing the segment
 * (ias_spool_list) or ias_spool_free makes them durable. */
int ias_spool_append_nosync(ias_spool *s, const ias_spool_rec *recs, size_t n) IAS_MUSTCHECK;
/* Makes s a crash journal (call right after ias_spool_open): it never fsyncs
 * (segment creation, appends, sealing, removal), so what it holds survives a
 * crash of this process (the page cache) but not of the machine. */
void ias_spool_set_journal(ias_spool *s);
/* Appends one record with write() only and returns the id of the segment it
 * went to (a later append may start a new one). */
int ias_spool_journal_append(ias_spool *s, const ias_spool_rec *rec,
                             uint64_t *seg_id) IAS_MUSTCHECK;
/* Seals the segment being written: the next append starts a new one. */
void ias_spool_seal(ias_spool *s);
/* fdatasync of the segment being written if it has unsynced appends. */
int ias_spool_sync(ias_spool *s) IAS_MUSTCHECK;
/* Seals the segment being written (the next append starts a new one) and
 * returns every segment id on disk, oldest first (*ids malloc'd, free() it). */
int ias_spool_list(ias_spool *s, uint64_t **ids, size_t *n) IAS_MUSTCHECK;
int ias_spool_remove(ias_spool *s, uint64_t id) IAS_MUSTCHECK;
/* Renames an unreadable segment to <name>.bad and forgets it. */
int ias_spool_quarantine(ias_spool *s, uint64_t id) IAS_MUSTCHECK;
/* Number of segment files on disk and their total size. */
size_t ias_spool_segments(ias_spool *s);
uint64_t ias_spool_bytes(ias_spool *s);
const char *ias_spool_dir(const ias_spool *s);

/* Reads one sealed segment (loaded whole into memory). */
int ias_spool_reader_open(ias_spool *s, uint64_t id, ias_spool_reader **out) IAS_MUSTCHECK;
/* IAS_OK and *rec (pointing into the reader, valid until the reader is freed),
 * or IAS_AGAIN at the end. Damaged bytes are skipped with a warning. */
int ias_spool_reader_next(ias_spool_reader *r, ias_spool_rec *rec) IAS_MUSTCHECK;
/* Bytes skipped as damaged so far. */
size_t ias_spool_reader_skipped(const ias_spool_reader *r);
void ias_spool_reader_free(ias_spool_reader *r);

/* ---- publisher (amqp_publisher.c) -------------------------------------- */

typedef struct ias_publisher ias_publisher;

typedef struct ias_publisher_opts {
    const char *url;            /* broker URL (required) */
    const char *spool_dir;      /* spool directory (required; one publisher per dir) */
    const char *name;           /* metrics label publisher="..."; NULL -> "default" */
    size_t queue_capacity;      /* in-memory events; 0 -> 4096 */
    size_t queue_max_bytes;     /* and their total size; 0 -> 64 MiB */
    size_t batch_max;           /* events published per burst; 0 -> 256 */
    size_t inflight_max;        /* published, unconfirmed events (several bursts
                                   pipelined); 0 -> 4 * batch_max */
    size_t overflow_capacity;   /* events beyond the queue, spooled in bulk by the
                                   publisher thread; 0 -> 4 * queue_capacity */
    int confirm_timeout_ms;     /* wait for broker acks; 0 -> 5000 */
    int drain_timeout_ms;       /* ias_publisher_free publishing budget; 0 -> 3000 */
    int heartbeat_s;            /* 0 -> 30 */
    int reconnect_min_ms;       /* first backoff; 0 -> 200 */
    int reconnect_max_ms;       /* backoff cap; 0 -> 15000 */
    size_t spool_segment_bytes; /* 0 -> 4 MiB */
    uint64_t spool_max_bytes;   /* 0 -> 1 GiB */
    bool no_topology;           /* skip ias_amqp_declare_topology on connect */
    /* 0 or 1: one event per message. N > 1: up to N consecutive queued events
     * with the same routing key and type (bodies without '\n') go out as one
     * pack message, at most pack_max_bytes of body (0 -> 256 KiB). Clamped to
     * IAS_AMQP_PACK_MAX. Packs form from what queued up while earlier messages
     * were being confirmed and, with pack_wait_ms > 0 (at most 1000), while the
     * oldest queued event is younger than that: the broker's cost is per
     * message, and at moderate rates only such a wait makes packs of more
     * than a few events. Spool replay packs too. */
    size_t pack_max;
    size_t pack_max_bytes;
    int pack_wait_ms;
    /* Crash journal: ias_publisher_publish also appends each event (write()
     * only, no fsync) to <spool_dir>/journal/seg-*.spool, deleted once its
     * events are confirmed or spooled, so a crash of the process (SIGKILL,
     * abort, OOM kill) loses none of the events it held in memory or in
     * flight. A machine crash can still lose the unsynced tail. A journal left
     * by a crashed process is moved into the spool by the next
     * ias_publisher_new (whatever this option says); events confirmed before
     * the crash are then published again (consumers dedupe by event id). */
    bool journal;
} ias_publisher_opts;

/* Every count is in events, whether they travelled alone or packed. */
typedef struct ias_publisher_stats {
    uint64_t published;    /* accepted by ias_publisher_publish */
    uint64_t confirmed;    /* acked by the broker (live and replayed) */
    uint64_t spooled;      /* records written to the spool */
    uint64_t replayed;     /* spool records acked by the broker */
    uint64_t nacked;       /* basic.nack received */
    uint64_t connects;     /* successful connections */
    uint64_t messages;     /* AMQP messages confirmed (a pack is one) */
    size_t queue_depth;    /* events in memory, not yet handed to the broker */
    size_t inflight;       /* published, waiting for confirms */
    size_t spool_segments; /* segment files on disk */
    bool connected;
} ias_publisher_stats;

/* Starts the publisher thread. Returns NULL (logged) on bad options or when the
 * spool directory cannot be opened. The broker need not be reachable. */
ias_publisher *ias_publisher_new(const ias_publisher_opts *opts);
/* Non-blocking and thread-safe; the caller never waits for the disk or the
 * broker. The event is copied into the bounded in-memory queue; when that is
 * full, into a second bounded overflow buffer that the publisher thread writes
 * to the spool in bulk (one write + fdatasync per batch); when that is full too
 * (or the publisher thread is gone), it is appended to the spool with write()
 * only and the publisher thread fdatasyncs it within IDLE_POLL_MS (200 ms).
 *
 * What survives: without opts.journal, an event in the queue, the overflow
 * buffer or in flight to the broker is lost if the process dies (as any unsent
 * in-memory data); with it, such an event survives a process crash (not a
 * machine crash) through its journal copy; one
 * appended with write() only survives a process crash but not a machine crash
 * until the publisher's next fdatasync; one in the spool after the publisher
 * thread's fdatasync, or confirmed by the broker, survives both (see the table
 * in docs/architecture/events.md). IAS_OK means "handed to the publisher".
 * IAS_ERR on invalid input (over-long strings, body over IAS_AMQP_BODY_MAX) or
 * if even the spool write failed. */
int ias_publisher_publish(ias_publisher *p, const char *routing_key, const char *message_id,
                          const char *type, const void *body, size_t len) IAS_MUSTCHECK;
/* Waits until nothing is queued, in flight or spooled (IAS_OK), or the timeout
 * passes (IAS_AGAIN). For tests and orderly shutdowns. */
int ias_publisher_wait_idle(ias_publisher *p, int timeout_ms) IAS_MUSTCHECK;
void ias_publisher_stats_get(ias_publisher *p, ias_publisher_stats *out);
/* Stops the thread: publishes what is queued for at most drain_timeout_ms,
 * spools the rest (fsync'd), closes the connection. NULL ok. */
void ias_publisher_free(ias_publisher *p);

/* ---- consumer (amqp_consumer.c) ---------------------------------------- */

typedef enum {
    IAS_CONSUME_ACK = 0, /* effect committed: ack */
    IAS_CONSUME_RETRY,   /* transient failure: redeliver later, up to max_attempts */
    IAS_CONSUME_REJECT,  /* never processable: dead-letter now */
} ias_consume_result;

/* One event. A pack delivery is handed over as one ias_amqp_msg per event,
 * each with its own message_id and body; they share the delivery's routing
 * key, type, timestamp, attempt and redelivered flag. */
typedef struct ias_amqp_msg {
    const char *queue;
    const char *routing_key; /* original key, also after RETRY */
    const char *message_id;  /* "" if absent */
    const char *type;        /* "" if absent */
    const void *body;
    size_t body_len;
    int64_t timestamp_s; /* AMQP timestamp, 0 if absent */
    int attempt;         /* 1 on the first delivery, +1 per RETRY */
    bool redelivered;    /* broker redelivery (the previous try was not acked) */
    /* The handler may write why it returned RETRY/REJECT here; it is logged. */
    char *reason;
    size_t reason_len;
} ias_amqp_msg;

typedef ias_consume_result (*ias_consume_fn)(const ias_amqp_msg *msg, void *arg);
/* Batch mode: msgs[0..n) are handed over together and results[i] decides msgs[i]
 * exactly as a handler's return value would (ACK only after the effect committed). */
typedef void (*ias_consume_batch_fn)(const ias_amqp_msg *msgs, size_t n,
                                     ias_consume_result *results, void *arg);
/* Called after every (re)connect once the consumer is subscribed, with the
 * queue name: a service reloads state it may have missed while disconnected. */
typedef void (*ias_consume_ready_fn)(const char *queue, void *arg);

typedef struct ias_consumer_opts {
    const char *url;
    const char *name; /* for logs and metrics; NULL -> queue or "instance" */
    /* A durable queue to consume, or NULL for a per-instance exclusive queue
     * bound to bind_keys (config events). */
    const char *queue;
    const char *const *bind_keys;
    size_t nbind_keys;
    uint16_t prefetch;    /* basic.qos in deliveries (a pack is one); 0 -> 16 */
    int max_attempts;     /* RETRY up to this many deliveries; 0 -> 5 */
    int retry_delay_ms;   /* pause before a RETRY republish, doubled per attempt
                             (cap 5 s); 0 -> 200, negative -> none */
    size_t max_body;      /* larger messages are dead-lettered; 0 -> IAS_AMQP_BODY_MAX */
    int heartbeat_s;      /* 0 -> 30 */
    int reconnect_min_ms; /* 0 -> 200 */
    int reconnect_max_ms; /* 0 -> 15000 */
    bool no_topology;     /* skip ias_amqp_declare_topology on connect */
    ias_consume_fn handler;
    /* Optional instead of handler: gathers deliveries until they carry batch_max
     * events (0 -> prefetch; a pack is never split, so a batch can exceed it by
     * less than one pack), waiting at most batch_wait_ms (0 -> 20) after the
     * first, and calls batch_handler once for them, so a consumer can apply many
     * events in one transaction. A RETRY pause is taken once per batch. */
    ias_consume_batch_fn batch_handler;
    size_t batch_max;
    int batch_wait_ms;
    ias_consume_ready_fn on_ready; /* optional */
    void *arg;
    atomic_bool *stop; /* set to true to make ias_consumer_run return (required) */
} ias_consumer_opts;

/* Blocking loop for a dedicated thread: connects (with capped, jittered
 * backoff), consumes with manual acks and calls handler for each event (a pack
 * delivery is unpacked into its events). ACK acks; RETRY republishes the
 * message to its queue with x-ias-attempts + 1 (in a transaction, then acks the
 * original) until max_attempts, then rejects it; REJECT rejects without requeue
 * so it goes to ias.events.dlx / ias.dead. In a pack only the events that were
 * not ACKed are republished (RETRY, as one copy) or published alone to
 * ias.events.dlx (REJECT, with x-ias-dead-reason), in one transaction, before
 * the pack is acked. The
 * stop flag is checked every 250 ms while consuming and during backoff; a
 * connect or RPC in progress finishes first (5 s / 10 s timeouts). Handlers
 * should return well within two heartbeat intervals. Returns IAS_OK once
 * stopped, IAS_ERR on invalid options. */
int ias_consumer_run(const ias_consumer_opts *opts) IAS_MUSTCHECK;

#endif
