/* The ias.events topology. Every declaration is idempotent: declaring the same
 * name with the same arguments is a no-op for RabbitMQ, so every process that
 * needs the topology simply declares it on connect. */
#include "ias/amqp.h"

#include <stdio.h>
#include <string.h>

#include <amqp.h>

#include "ias/log.h"

static int declare_exchange(ias_amqp_conn *c, const char *name)
{
    amqp_connection_state_t st = ias_amqp_conn_state(c);

    /* durable, not auto-delete, not internal */
    amqp_exchange_declare(st, 1, amqp_cstring_bytes(name), amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                          amqp_empty_table);
    return ias_amqp_conn_check_rpc(c, "exchange.declare");
}

static int bind_key(ias_amqp_conn *c, const char *queue, const char *exchange, const char *key)
{
    amqp_queue_bind(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(queue),
                    amqp_cstring_bytes(exchange), amqp_cstring_bytes(key), amqp_empty_table);
    return ias_amqp_conn_check_rpc(c, "queue.bind");
}

static int check_name(const char *name)
{
    if (!name || !*name || strlen(name) > IAS_AMQP_SHORTSTR_MAX) {
        ias_warn(NULL, "amqp: invalid queue name or binding key");
        return IAS_ERR;
    }
    return IAS_OK;
}

int ias_amqp_declare_queue(ias_amqp_conn *c, const char *name, const char *const *keys,
                           size_t nkeys)
{
    amqp_table_entry_t arg;
    amqp_table_t args;

    if (check_name(name) != IAS_OK)
        return IAS_ERR;
    arg.key = amqp_cstring_bytes("x-dead-letter-exchange");
    arg.value.kind = AMQP_FIELD_KIND_UTF8;
    arg.value.value.bytes = amqp_cstring_bytes(IAS_AMQP_DLX);
    args.num_entries = 1;
    args.entries = &arg;
    /* passive=0 durable=1 exclusive=0 auto_delete=0 */
    amqp_queue_declare(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(name), 0, 1, 0, 0, args);
    if (ias_amqp_conn_check_rpc(c, "queue.declare") != IAS_OK)
        return IAS_ERR;
    for (size_t i = 0; i < nkeys; i++) {
        if (check_name(keys[i]) != IAS_OK ||
            bind_key(c, name, IAS_AMQP_EXCHANGE, keys[i]) != IAS_OK)
            return IAS_ERR;
    }
    return IAS_OK;
}

int ias_amqp_declare_topology(ias_amqp_conn *c)
{
    static const char *const usage_keys[] = {IAS_AMQP_RK_USAGE};
    static const char *const audit_keys[] = {IAS_AMQP_BIND_AUDIT};
    amqp_connection_state_t st = ias_amqp_conn_state(c);

    if (declare_exchange(c, IAS_AMQP_EXCHANGE) != IAS_OK ||
        declare_exchange(c, IAS_AMQP_DLX) != IAS_OK)
        return IAS_ERR;
    /* ias.dead has no DLX of its own: a dead letter is kept until an operator
     * looks at it. */
    amqp_queue_declare(st, 1, amqp_cstring_bytes(IAS_AMQP_QUEUE_DEAD), 0, 1, 0, 0,
                       amqp_empty_table);
    if (ias_amqp_conn_check_rpc(c, "queue.declare ias.dead") != IAS_OK ||
        bind_key(c, IAS_AMQP_QUEUE_DEAD, IAS_AMQP_DLX, "#") != IAS_OK)
        return IAS_ERR;
    if (ias_amqp_declare_queue(c, IAS_AMQP_QUEUE_USAGE, usage_keys, 1) != IAS_OK ||
        ias_amqp_declare_queue(c, IAS_AMQP_QUEUE_AUDIT, audit_keys, 1) != IAS_OK)
        return IAS_ERR;
    return IAS_OK;
}

int ias_amqp_declare_instance_queue(ias_amqp_conn *c, const char *const *keys, size_t nkeys,
                                    char *name_out, size_t name_len)
{
    amqp_queue_declare_ok_t *ok;

    /* empty name: the broker picks one; durable=0 exclusive=1 auto_delete=1 */
    ok = amqp_queue_declare(ias_amqp_conn_state(c), 1, amqp_empty_bytes, 0, 0, 1, 1,
                            amqp_empty_table);
    if (ias_amqp_conn_check_rpc(c, "queue.declare (instance)") != IAS_OK)
        return IAS_ERR;
    if (!ok || ok->queue.len == 0 || ok->queue.len >= name_len) {
        ias_warn(NULL, "amqp: server-named queue does not fit the buffer");
        return IAS_ERR;
    }
    memcpy(name_out, ok->queue.bytes, ok->queue.len);
    name_out[ok->queue.len] = '\0';
    for (size_t i = 0; i < nkeys; i++) {
        if (check_name(keys[i]) != IAS_OK ||
            bind_key(c, name_out, IAS_AMQP_EXCHANGE, keys[i]) != IAS_OK)
            return IAS_ERR;
    }
    return IAS_OK;
}

int ias_amqp_delete_queue(ias_amqp_conn *c, const char *name)
{
    if (check_name(name) != IAS_OK)
        return IAS_ERR;
    amqp_queue_delete(ias_amqp_conn_state(c), 1, amqp_cstring_bytes(name), 0, 0);
    return ias_amqp_conn_check_rpc(c, "queue.delete");
}
