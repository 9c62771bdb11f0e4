/* JSON log lines on stderr: one write(2) per line, never a secret.
 *
 * {"time":"...Z","level":"info","service":"router","msg":"...","request_id":"...",
 *  "traceparent":"00-..."}
 * The message is scrubbed of API keys (ias_<prefix>.<secret>), bearer tokens and
 * JWT-looking strings before it is written. */
#ifndef IAS_LOG_H
#define IAS_LOG_H

#include "ias/common.h"

typedef enum {
    IAS_LOG_DEBUG = 0,
    IAS_LOG_INFO,
    IAS_LOG_WARN,
    IAS_LOG_ERROR,
} ias_log_level;

/* Per-request context carried into every line (either field may be NULL). */
typedef struct ias_log_ctx {
    const char *request_id;
    const char *traceparent;
} ias_log_ctx;

/* Configuration, set once at start (service name is copied). */
void ias_log_init(const char *service, ias_log_level min_level);
int ias_log_level_parse(const char *s, ias_log_level *out) IAS_MUSTCHECK;
bool ias_log_enabled(ias_log_level level);
/* Redirect output (tests); fd -1 restores stderr. */
void ias_log_set_fd(int fd);

void ias_log_write(ias_log_level level, const ias_log_ctx *ctx, const char *fmt, ...)
    IAS_PRINTF(3, 4);

/* Masks secrets in place-safe fashion: writes the scrubbed copy of src into dst. */
void ias_log_scrub(const char *src, char *dst, size_t dstlen);

/* Level checked before formatting (pgbouncer slog_*). ctx may be NULL. */
#define ias_log(level, ctx, ...)                                                                   \
    do {                                                                                           \
        if (ias_log_enabled(level))                                                                \
            ias_log_write(level, ctx, __VA_ARGS__);                                                \
    } while (0)
#define ias_debug(ctx, ...) ias_log(IAS_LOG_DEBUG, ctx, __VA_ARGS__)
#define ias_info(ctx, ...) ias_log(IAS_LOG_INFO, ctx, __VA_ARGS__)
#define ias_warn(ctx, ...) ias_log(IAS_LOG_WARN, ctx, __VA_ARGS__)
#define ias_error(ctx, ...) ias_log(IAS_LOG_ERROR, ctx, __VA_ARGS__)

#endif
