/* What every ias service shares at start: the common configuration rows and the
 * server options they map to, so a service's main.c lists only its own rows. */
#ifndef IAS_SERVICE_H
#define IAS_SERVICE_H

#include "ias/config.h"
#include "ias/http_server.h"

/* Rows every HTTP service declares first; default_port is a string literal.
 *   IAS_PORT, IAS_BIND, IAS_WORKERS, IAS_LOG_LEVEL, IAS_DRAIN_TIMEOUT,
 *   IAS_MAX_BODY_BYTES, IAS_MAX_HEADER_BYTES, IAS_READ_TIMEOUT */
#define IAS_SERVICE_CFG_ROWS(default_port)                                                         \
    {"IAS_PORT", IAS_CFG_INT, default_port, 0, 65535, "TCP port to listen on"},                    \
        {"IAS_BIND", IAS_CFG_STR, "127.0.0.1", 0, 0, "address to bind (0.0.0.0 in containers)"},   \
        {"IAS_WORKERS", IAS_CFG_INT, "0", 0, 256, "event-loop threads (0: one per core)"},         \
        {"IAS_LOG_LEVEL", IAS_CFG_STR, "info", 0, 0, "debug, info, warn or error"},                \
        {"IAS_DRAIN_TIMEOUT",                                                                      \
         IAS_CFG_MS,                                                                               \
         "25s",                                                                                    \
         0,                                                                                        \
         3600000,                                                                                  \
         "how long SIGTERM waits for in-flight requests and streams"},                             \
        {"IAS_MAX_BODY_BYTES",                                                                     \
         IAS_CFG_BYTES,                                                                            \
         "1M",                                                                                     \
         1024,                                                                                     \
         1LL << 30,                                                                                \
         "largest request body accepted (413 above)"},                                             \
        {"IAS_MAX_HEADER_BYTES",                                                                   \
         IAS_CFG_BYTES,                                                                            \
         "16k",                                                                                    \
         1024,                                                                                     \
         1LL << 20,                                                                                \
         "largest request header block accepted"},                                                 \
    {                                                                                              \
        "IAS_READ_TIMEOUT", IAS_CFG_MS, "30s", 100, 3600000,                                       \
            "idle connection / slow request timeout"                                               \
    }

/* Initialises logging for service from IAS_LOG_LEVEL and fills the listening,
 * worker, limit and drain fields of opts from the common rows (other fields are
 * left as they are). Prints the problem and returns IAS_ERR on a bad level. */
int ias_service_init(const ias_config *cfg, const char *service,
                     ias_server_opts *opts) IAS_MUSTCHECK;

#endif
