/* Configuration from IAS_* environment variables, declared as a table of rows
 * (Redis createIntConfig, pgbouncer CF_ABS). Loading checks every row and reports
 * every missing or malformed variable in one message. */
#ifndef IAS_CONFIG_H
#define IAS_CONFIG_H

#include "ias/common.h"

typedef enum {
    IAS_CFG_STR,    /* any string */
    IAS_CFG_SECRET, /* string never printed */
    IAS_CFG_INT,    /* long long within [min, max] */
    IAS_CFG_BOOL,   /* true/false/1/0/yes/no/on/off */
    IAS_CFG_MS,     /* duration: "250ms", "5s", "2m", "1h" or plain ms; within [min, max] ms */
    IAS_CFG_BYTES,  /* size: "512", "64k", "8M", "1G"; within [min, max] bytes */
    IAS_CFG_URL,    /* string that must contain "://" */
} ias_cfg_type;

typedef struct ias_cfg_row {
    const char *name; /* full variable name, e.g. "IAS_PORT" */
    ias_cfg_type type;
    const char *def;    /* default as text; NULL means required */
    long long min, max; /* bounds for INT/MS/BYTES; both 0 means unbounded */
    const char *help;   /* one line, printed on error */
} ias_cfg_row;

typedef struct ias_config ias_config;

/* Builds a config from the environment. On any problem returns NULL and writes
 * "invalid configuration:\n  IAS_X: missing\n  IAS_Y: ..." into err. */
ias_config *ias_config_load(const ias_cfg_row *rows, size_t nrows, char *err, size_t errlen);
/* As above, but prints the message to stderr and exits with status 2. */
ias_config *ias_config_load_or_exit(const char *service, const ias_cfg_row *rows, size_t nrows);
void ias_config_free(ias_config *cfg);

/* Typed getters; asking for an undeclared name or the wrong type is a bug (abort). */
const char *ias_config_str(const ias_config *cfg, const char *name);
long long ias_config_int(const ias_config *cfg, const char *name);
bool ias_config_bool(const ias_config *cfg, const char *name);
long long ias_config_ms(const ias_config *cfg, const char *name);
long long ias_config_bytes(const ias_config *cfg, const char *name);

/* Parsers used by the loader, exposed for tests. */
int ias_parse_ll(const char *s, long long *out) IAS_MUSTCHECK;
int ias_parse_bool(const char *s, bool *out) IAS_MUSTCHECK;
int ias_parse_duration_ms(const char *s, long long *out) IAS_MUSTCHECK;
int ias_parse_bytes(const char *s, long long *out) IAS_MUSTCHECK;

/* Default worker count: the number of online cores (at least 1). */
int ias_config_default_workers(void);

#endif
