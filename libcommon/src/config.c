/* Configuration from the environment, declared as a table of rows and validated whole. */
#include "ias/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct cfg_value {
    const ias_cfg_row *row;
    char *str;    /* the text as given (or the default) */
    long long ll; /* INT, MS, BYTES */
    bool b;       /* BOOL */
} cfg_value;

struct ias_config {
    size_t n;
    cfg_value *v;
};

int ias_parse_ll(const char *s, long long *out)
{
    char *end;
    long long v;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return IAS_ERR;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s)
        return IAS_ERR;
    while (isspace((unsigned char)*end))
        end++;
    if (*end != '\0')
        return IAS_ERR;
    *out = v;
    return IAS_OK;
}

int ias_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < IAS_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return IAS_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return IAS_OK;
        }
    }
    return IAS_ERR;
}

/* Number followed by an optional unit from a table; overflow-checked. */
static int parse_with_unit(const char *s, const char *const *units, const long long *mult,
                           size_t nunits, long long *out)
{
    char *end;
    long long v;

    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return IAS_ERR;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0)
        return IAS_ERR;
    if (*end == '\0') {
        *out = v;
        return IAS_OK;
    }
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(end, units[i]) == 0) {
            if (v > 0 && mult[i] > 0 && v > __LONG_LONG_MAX__ / mult[i])
                return IAS_ERR;
            *out = v * mult[i];
            return IAS_OK;
        }
    }
    return IAS_ERR;
}

int ias_parse_duration_ms(const char *s, long long *out)
{
    static const char *const units[] = {"ms", "s", "m", "h"};
    static const long long mult[] = {1, 1000, 60000, 3600000};
    return parse_with_unit(s, units, mult, IAS_ARRAY_LEN(units), out);
}

int ias_parse_bytes(const char *s, long long *out)
{
    static const char *const units[] = {"k", "K", "KiB", "m", "M", "MiB", "g", "G", "GiB", "B"};
    static const long long mult[] = {1024LL,    1024LL,    1024LL,    1048576LL, 1048576LL,
                                     1048576LL, 1LL << 30, 1LL << 30, 1LL << 30, 1};
    return parse_with_unit(s, units, mult, IAS_ARRAY_LEN(units), out);
}

int ias_config_default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static const char *type_name(ias_cfg_type t)
{
    switch (t) {
    case IAS_CFG_INT:
        return "an integer";
    case IAS_CFG_BOOL:
        return "a boolean (true/false)";
    case IAS_CFG_MS:
        return "a duration (e.g. 250ms, 5s, 2m)";
    case IAS_CFG_BYTES:
        return "a size (e.g. 512, 64k, 8M)";
    case IAS_CFG_URL:
        return "a URL";
    default:
        return "a string";
    }
}

/* Appends one problem line; the message stays bounded whatever the count. */
static void add_problem(char *err, size_t errlen, size_t *o, const ias_cfg_row *row,
                        const char *what)
{
    int n;

    if (*o + 1 >= errlen)
        return;
    if (row->help)
        n = snprintf(err + *o, errlen - *o, "  %s: %s (%s)\n", row->name, what, row->help);
    else
        n = snprintf(err + *o, errlen - *o, "  %s: %s\n", row->name, what);
    if (n < 0)
        return;
    *o += (size_t)n < errlen - *o ? (size_t)n : errlen - *o - 1;
}

static int check_value(const ias_cfg_row *row, cfg_value *v, char *why, size_t whylen)
{
    int rc = IAS_OK;
    bool bounded = row->min != 0 || row->max != 0;

    switch (row->type) {
    case IAS_CFG_STR:
    case IAS_CFG_SECRET:
        return IAS_OK;
    case IAS_CFG_URL:
        if (!strstr(v->str, "://")) {
            snprintf(why, whylen, "must be %s", type_name(row->type));
            return IAS_ERR;
        }
        return IAS_OK;
    case IAS_CFG_BOOL:
        rc = ias_parse_bool(v->str, &v->b);
        break;
    case IAS_CFG_INT:
        rc = ias_parse_ll(v->str, &v->ll);
        break;
    case IAS_CFG_MS:
        rc = ias_parse_duration_ms(v->str, &v->ll);
        break;
    case IAS_CFG_BYTES:
        rc = ias_parse_bytes(v->str, &v->ll);
        break;
    }
    if (rc != IAS_OK) {
        snprintf(why, whylen, "must be %s", type_name(row->type));
        return IAS_ERR;
    }
    if (row->type != IAS_CFG_BOOL && bounded && (v->ll < row->min || v->ll > row->max)) {
        snprintf(why, whylen, "must be between %lld and %lld", row->min, row->max);
        return IAS_ERR;
    }
    return IAS_OK;
}

ias_config *ias_config_load(const ias_cfg_row *rows, size_t nrows, char *err, size_t errlen)
{
    ias_config *cfg = ias_xcalloc(1, sizeof(*cfg));
    size_t o = 0;
    int problems = 0;

    if (errlen > 0) {
        o = (size_t)snprintf(err, errlen, "invalid configuration:\n");
        if (o >= errlen)
            o = errlen - 1;
    }
    cfg->n = nrows;
    cfg->v = ias_xcalloc(nrows ? nrows : 1, sizeof(cfg_value));
    for (size_t i = 0; i < nrows; i++) {
        const ias_cfg_row *row = &rows[i];
        const char *env = getenv(row->name);
        char why[128];

        cfg->v[i].row = row;
        if (env && *env == '\0')
            env = NULL;
        if (!env && !row->def) {
            add_problem(err, errlen, &o, row, "missing");
            problems++;
            continue;
        }
        cfg->v[i].str = ias_xstrdup(env ? env : row->def);
        if (check_value(row, &cfg->v[i], why, sizeof(why)) != IAS_OK) {
            char what[192];
            /* Secrets are never echoed back, even when malformed. */
            if (row->type == IAS_CFG_SECRET)
                snprintf(what, sizeof(what), "%s", why);
            else
                snprintf(what, sizeof(what), "%s, got \"%.40s\"", why, cfg->v[i].str);
            add_problem(err, errlen, &o, row, what);
            problems++;
        }
    }
    if (problems) {
        ias_config_free(cfg);
        return NULL;
    }
    if (errlen > 0)
        err[0] = '\0';
    return cfg;
}

ias_config *ias_config_load_or_exit(const char *service, const ias_cfg_row *rows, size_t nrows)
{
    char err[4096];
    ias_config *cfg = ias_config_load(rows, nrows, err, sizeof(err));

    if (!cfg) {
        fprintf(stderr, "%s: %s", service ? service : "ias", err);
        exit(2);
    }
    return cfg;
}

void ias_config_free(ias_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++)
        free(cfg->v[i].str);
    free(cfg->v);
    free(cfg);
}

static const cfg_value *find(const ias_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if (strcmp(cfg->v[i].row->name, name) == 0)
            return &cfg->v[i];
    }
    ias_die("bug: configuration variable %s was not declared", name);
}

static const cfg_value *find_typed(const ias_config *cfg, const char *name, ias_cfg_type t1,
                                   ias_cfg_type t2)
{
    const cfg_value *v = find(cfg, name);

    if (v->row->type != t1 && v->row->type != t2)
        ias_die("bug: configuration variable %s read with the wrong type", name);
    return v;
}

const char *ias_config_str(const ias_config *cfg, const char *name)
{
    return find(cfg, name)->str;
}

long long ias_config_int(const ias_config *cfg, const char *name)
{
    return find_typed(cfg, name, IAS_CFG_INT, IAS_CFG_INT)->ll;
}

bool ias_config_bool(const ias_config *cfg, const char *name)
{
    return find_typed(cfg, name, IAS_CFG_BOOL, IAS_CFG_BOOL)->b;
}

long long ias_config_ms(const ias_config *cfg, const char *name)
{
    return find_typed(cfg, name, IAS_CFG_MS, IAS_CFG_MS)->ll;
}

long long ias_config_bytes(const ias_config *cfg, const char *name)
{
    return find_typed(cfg, name, IAS_CFG_BYTES, IAS_CFG_BYTES)->ll;
}
