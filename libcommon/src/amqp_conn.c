/* RabbitMQ connections: URL parsing, login with heartbeats, RPC timeout, and
 * turning librabbitmq's three kinds of failure into one error string. */
#include "ias/amqp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "ias/log.h"

struct ias_amqp_conn {
    amqp_connection_state_t st;
    bool ok;       /* connection and channel 1 usable */
    bool sock_ok;  /* a polite connection.close is still possible */
    char err[256]; /* last error */
};

static bool key_part_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

int ias_amqp_audit_key(char *buf, size_t len, const char *service, const char *action)
{
    int n;

    if (!key_part_ok(service) || !key_part_ok(action))
        return IAS_ERR;
    n = snprintf(buf, len, "audit.%s.%s", service, action);
    if (n < 0 || (size_t)n >= len || n > IAS_AMQP_SHORTSTR_MAX)
        return IAS_ERR;
    return IAS_OK;
}

int ias_amqp_config_key(char *buf, size_t len, const char *kind)
{
    int n;

    if (!key_part_ok(kind))
        return IAS_ERR;
    n = snprintf(buf, len, "config.%s.changed", kind);
    if (n < 0 || (size_t)n >= len || n > IAS_AMQP_SHORTSTR_MAX)
        return IAS_ERR;
    return IAS_OK;
}

static void ms_to_tv(int ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

void ias_amqp_reply_str(const amqp_rpc_reply_t *r, char *buf, size_t len)
{
    switch (r->reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(buf, len, "ok");
        return;
    case AMQP_RESPONSE_NONE:
        snprintf(buf, len, "missing RPC reply");
        return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(buf, len, "%s", amqp_error_string2(r->library_error));
        return;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r->reply.id == AMQP_CONNECTION_CLOSE_METHOD && r->reply.decoded) {
            const amqp_connection_close_t *m = r->reply.decoded;
            snprintf(buf, len, "server closed the connection: %u %.*s", m->reply_code,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else if (r->reply.id == AMQP_CHANNEL_CLOSE_METHOD && r->reply.decoded) {
            const amqp_channel_close_t *m = r->reply.decoded;
            snprintf(buf, len, "server closed the channel: %u %.*s", m->reply_code,
                     (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        } else {
            snprintf(buf, len, "unexpected server method 0x%08x", (unsigned)r->reply.id);
        }
        return;
    }
    snprintf(buf, len, "unknown reply type %d", (int)r->reply_type);
}

static void conn_fail(ias_amqp_conn *c, const char *what, const char *why)
{
    snprintf(c->err, sizeof(c->err), "%s: %s", what, why);
    c->ok = false;
    ias_warn(NULL, "amqp: %s", c->err);
}

bool ias_amqp_conn_on_close(ias_amqp_conn *c, uint16_t channel, const amqp_method_t *m)
{
    char why[200];

    if (m->id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_connection_close_ok_t ok = {0};
        const amqp_connection_close_t *cl = m->decoded;
        snprintf(why, sizeof(why), "%u %.*s", cl ? cl->reply_code : 0,
                 cl ? (int)cl->reply_text.len : 0, cl ? (const char *)cl->reply_text.bytes : "");
        /* Best effort: the broker closes the socket after close-ok anyway. */
        (void)amqp_send_method(c->st, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        c->sock_ok = false;
        conn_fail(c, "server closed the connection", why);
        return true;
    }
    if (m->id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        const amqp_channel_close_t *cl = m->decoded;
        snprintf(why, sizeof(why), "channel %u: %u %.*s", channel, cl ? cl->reply_code : 0,
                 cl ? (int)cl->reply_text.len : 0, cl ? (const char *)cl->reply_text.bytes : "");
        if (amqp_send_method(c->st, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
            c->sock_ok = false;
        conn_fail(c, "server closed a channel", why);
        return true;
    }
    return false;
}

int ias_amqp_conn_check_rpc(ias_amqp_conn *c, const char *what)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(c->st);
    char why[200];

    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return IAS_OK;
    ias_amqp_reply_str(&r, why, sizeof(why));
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
        /* Answer close-ok so the broker and we agree on the state. */
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_ok_t ok = {0};
            (void)amqp_send_method(c->st, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            c->sock_ok = false;
        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_ok_t ok = {0};
            if (amqp_send_method(c->st, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != AMQP_STATUS_OK)
                c->sock_ok = false;
        }
    } else {
        c->sock_ok = false;
    }
    conn_fail(c, what, why);
    return IAS_ERR;
}

int ias_amqp_conn_check_status(ias_amqp_conn *c, int status, const char *what)
{
    if (status == AMQP_STATUS_OK)
        return IAS_OK;
    c->sock_ok = false;
    conn_fail(c, what, amqp_error_string2(status));
    return IAS_ERR;
}

int ias_amqp_connect(const ias_amqp_conn_opts *opts, ias_amqp_conn **out, char *err, size_t errlen)
{
    struct amqp_connection_info ci;
    amqp_socket_t *sock;
    ias_amqp_conn *c = NULL;
    char *url = NULL;
    struct timeval tv;
    amqp_rpc_reply_t r;
    char why[200];
    int heartbeat, rc;

    *out = NULL;
    if (!opts || !opts->url) {
        snprintf(err, errlen, "amqp: no URL");
        return IAS_ERR;
    }
    url = ias_xstrdup(opts->url); /* amqp_parse_url writes into it */
    if (amqp_parse_url(url, &ci) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "amqp: malformed URL (expected amqp://user:pass@host:port/vhost)");
        goto fail;
    }
    if (ci.ssl) {
        snprintf(err, errlen, "amqp: amqps:// is not supported");
        goto fail;
    }
    heartbeat = opts->heartbeat_s == 0 ? 30 : (opts->heartbeat_s < 0 ? 0 : opts->heartbeat_s);

    c = ias_xcalloc(1, sizeof(*c));
    c->st = amqp_new_connection();
    if (!c->st)
        ias_die("amqp_new_connection: out of memory");
    sock = amqp_tcp_socket_new(c->st);
    if (!sock) {
        snprintf(err, errlen, "amqp: cannot create socket");
        goto fail;
    }
    ms_to_tv(opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 5000, &tv);
    errno = 0;
    rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        int e = errno;
        snprintf(err, errlen, "amqp: connect %s:%d: %s%s%s", ci.host, ci.port,
                 amqp_error_string2(rc), e ? ": " : "", e ? strerror(e) : "");
        goto fail;
    }
    if (amqp_set_handshake_timeout(c->st, &tv) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "amqp: cannot set handshake timeout");
        goto fail;
    }
    r = amqp_login(c->st, ci.vhost, 0, 131072, heartbeat, AMQP_SASL_METHOD_PLAIN, ci.user,
                   ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        ias_amqp_reply_str(&r, why, sizeof(why));
        snprintf(err, errlen, "amqp: login to %s:%d vhost %s as %s: %s", ci.host, ci.port, ci.vhost,
                 ci.user, why);
        goto fail;
    }
    c->sock_ok = true;
    /* Every synchronous call (declare, qos, tx.commit...) gets a deadline:
     * without it a broker that stops answering blocks the thread forever. */
    ms_to_tv(opts->rpc_timeout_ms > 0 ? opts->rpc_timeout_ms : 10000, &tv);
    if (amqp_set_rpc_timeout(c->st, &tv) != AMQP_STATUS_OK) {
        snprintf(err, errlen, "amqp: cannot set RPC timeout");
        goto fail;
    }
    amqp_channel_open(c->st, 1);
    r = amqp_get_rpc_reply(c->st);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        ias_amqp_reply_str(&r, why, sizeof(why));
        snprintf(err, errlen, "amqp: channel.open: %s", why);
        goto fail;
    }
    c->ok = true;
    free(url);
    *out = c;
    return IAS_OK;

fail:
    if (c) {
        if (c->sock_ok)
            (void)amqp_connection_close(c->st, AMQP_REPLY_SUCCESS);
        amqp_destroy_connection(c->st);
        free(c);
    }
    free(url);
    return IAS_ERR;
}

void ias_amqp_conn_free(ias_amqp_conn *c)
{
    struct timeval tv = {2, 0};

    if (!c)
        return;
    /* A broker that stopped answering must not hold up shutdown for long. */
    if (c->sock_ok)
        (void)amqp_set_rpc_timeout(c->st, &tv);
    if (c->ok)
        (void)amqp_channel_close(c->st, 1, AMQP_REPLY_SUCCESS);
    if (c->sock_ok)
        (void)amqp_connection_close(c->st, AMQP_REPLY_SUCCESS);
    /* Also closes the socket. */
    amqp_destroy_connection(c->st);
    free(c);
}

bool ias_amqp_conn_ok(const ias_amqp_conn *c)
{
    return c && c->ok;
}

const char *ias_amqp_conn_error(const ias_amqp_conn *c)
{
    return c ? c->err : "";
}

amqp_connection_state_t ias_amqp_conn_state(ias_amqp_conn *c)
{
    return c->st;
}

int ias_amqp_publish_raw(ias_amqp_conn *c, uint16_t channel, const char *exchange,
                         const char *routing_key, const ias_amqp_props *p, const void *body,
                         size_t len)
{
    amqp_basic_properties_t props;
    amqp_table_entry_t hdr[3];
    amqp_field_value_t *ids = NULL;
    int nhdr = 0, rc;

    if (p->npack > IAS_AMQP_PACK_MAX)
        return IAS_ERR;
    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type =
        amqp_cstring_bytes(p->npack > 0 ? IAS_AMQP_CONTENT_TYPE_PACK : IAS_AMQP_CONTENT_TYPE_JSON);
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    if (p->message_id && *p->message_id) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = amqp_cstring_bytes(p->message_id);
    }
    if (p->type && *p->type) {
        props._flags |= AMQP_BASIC_TYPE_FLAG;
        props.type = amqp_cstring_bytes(p->type);
    }
    if (p->timestamp_ms > 0) {
        props._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        props.timestamp = (uint64_t)(p->timestamp_ms / 1000);
    }
    if (p->attempts > 0) {
        hdr[nhdr].key = amqp_cstring_bytes(IAS_AMQP_HDR_ATTEMPTS);
        hdr[nhdr].value.kind = AMQP_FIELD_KIND_I32;
        hdr[nhdr].value.value.i32 = p->attempts;
        nhdr++;
    }
    if (p->orig_key) {
        hdr[nhdr].key = amqp_cstring_bytes(IAS_AMQP_HDR_ROUTING_KEY);
        hdr[nhdr].value.kind = AMQP_FIELD_KIND_UTF8;
        hdr[nhdr].value.value.bytes = amqp_cstring_bytes(p->orig_key);
        nhdr++;
    }
    if (p->npack > 0) {
        /* One array of long strings: the consumer gives line i message id i. */
        ids = ias_xmalloc(p->npack * sizeof(*ids));
        for (size_t i = 0; i < p->npack; i++) {
            ids[i].kind = AMQP_FIELD_KIND_UTF8;
            ids[i].value.bytes = amqp_cstring_bytes(p->pack_ids[i]);
        }
        hdr[nhdr].key = amqp_cstring_bytes(IAS_AMQP_HDR_MESSAGE_IDS);
        hdr[nhdr].value.kind = AMQP_FIELD_KIND_ARRAY;
        hdr[nhdr].value.value.array.num_entries = (int)p->npack;
        hdr[nhdr].value.value.array.entries = ids;
        nhdr++;
    }
    if (nhdr > 0) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        props.headers.num_entries = nhdr;
        props.headers.entries = hdr;
    }
    rc = amqp_basic_publish(c->st, channel, amqp_cstring_bytes(exchange),
                            amqp_cstring_bytes(routing_key), 0, 0, &props,
                            (amqp_bytes_t){.len = len, .bytes = (void *)body});
    free(ids);
    return ias_amqp_conn_check_status(c, rc, "basic.publish");
}
