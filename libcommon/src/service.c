/* Common start-up of every service: logging and server options from the shared rows. */
#include "ias/service.h"

#include <stdio.h>

int ias_service_init(const ias_config *cfg, const char *service, ias_server_opts *opts)
{
    ias_log_level level;

    if (ias_log_level_parse(ias_config_str(cfg, "IAS_LOG_LEVEL"), &level) != IAS_OK) {
        fprintf(stderr,
                "ias-%s: invalid configuration:\n  IAS_LOG_LEVEL: want debug, info, warn "
                "or error\n",
                service);
        return IAS_ERR;
    }
    ias_log_init(service, level);
    opts->service = service;
    opts->bind_addr = ias_config_str(cfg, "IAS_BIND");
    opts->port = (int)ias_config_int(cfg, "IAS_PORT");
    opts->workers = (int)ias_config_int(cfg, "IAS_WORKERS");
    opts->drain_timeout_ms = (int)ias_config_ms(cfg, "IAS_DRAIN_TIMEOUT");
    opts->max_body_bytes = (size_t)ias_config_bytes(cfg, "IAS_MAX_BODY_BYTES");
    opts->max_header_bytes = (size_t)ias_config_bytes(cfg, "IAS_MAX_HEADER_BYTES");
    opts->read_timeout_ms = (int)ias_config_ms(cfg, "IAS_READ_TIMEOUT");
    opts->handle_signals = true;
    return IAS_OK;
}
