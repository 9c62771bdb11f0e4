/* Argument parsing and help text, kept free of I/O beyond the FILE* given so
 * unit tests can drive it. Flags: --name value, --name=value, -x value; the
 * global flags (--output/-o, --base-url, --help/-h) are accepted anywhere;
 * "--" ends the flags. */
#include "admin.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int args_fail(char *err, size_t errlen, const char *fmt, ...) IAS_PRINTF(3, 4);
static int args_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return IAS_ERR;
}

/* Global flags: returns 1 when argv[*i] was one (consumed), 0 when not, or
 * IAS_ERR on a missing value. */
static int take_global(int argc, char **argv, int *i, admin_parsed *out, char *err, size_t errlen)
{
    const char *a = argv[*i];
    const char *eq = NULL;
    const char **slot = NULL;

    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        out->help = true;
        return 1;
    }
    if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 || strncmp(a, "--output=", 9) == 0) {
        slot = &out->output;
        eq = strncmp(a, "--output=", 9) == 0 ? a + 9 : NULL;
    } else if (strcmp(a, "--base-url") == 0 || strncmp(a, "--base-url=", 11) == 0) {
        slot = &out->base_url;
        eq = strncmp(a, "--base-url=", 11) == 0 ? a + 11 : NULL;
    } else {
        return 0;
    }
    if (eq) {
        *slot = eq;
    } else {
        if (*i + 1 >= argc)
            return args_fail(err, errlen, "flag %s needs a value", a);
        *slot = argv[++*i];
    }
    return 1;
}

int admin_parse_globals(int argc, char **argv, int *i, admin_parsed *out, char *err, size_t errlen)
{
    while (*i < argc && argv[*i][0] == '-' && strcmp(argv[*i], "--") != 0) {
        int rc = take_global(argc, argv, i, out, err, errlen);
        if (rc == IAS_ERR)
            return IAS_ERR;
        if (rc == 0)
            return args_fail(err, errlen, "unknown flag %s", argv[*i]);
        ++*i;
    }
    return IAS_OK;
}

static int find_flag(const admin_cmd *cmd, const char *name, size_t nlen, char short_name)
{
    for (size_t k = 0; k < cmd->nflags; k++) {
        const admin_flag *f = &cmd->flags[k];
        if (short_name) {
            if (f->short_name == short_name)
                return (int)k;
        } else if (strlen(f->name) == nlen && strncmp(f->name, name, nlen) == 0) {
            return (int)k;
        }
    }
    return -1;
}

int admin_parse(const admin_cmd *cmd, int argc, char **argv, admin_parsed *out, char *err,
                size_t errlen)
{
    bool only_pos = false;

    if (cmd->nflags > ADMIN_MAX_FLAGS)
        return args_fail(err, errlen, "internal: too many flags for %s", cmd->name);
    out->cmd = cmd;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (out->npos >= ADMIN_MAX_POS || out->npos >= cmd->pos_max)
                return args_fail(err, errlen, "unexpected argument '%s'", a);
            out->pos[out->npos++] = a;
            continue;
        }
        int g = take_global(argc, argv, &i, out, err, errlen);
        if (g == IAS_ERR)
            return IAS_ERR;
        if (g == 1)
            continue;

        int k;
        const char *val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            k = find_flag(cmd, name, nlen, 0);
            if (eq)
                val = eq + 1;
        } else {
            k = a[2] == '\0' ? find_flag(cmd, "", 0, a[1]) : -1;
        }
        if (k < 0)
            return args_fail(err, errlen, "unknown flag %s", a);
        const admin_flag *f = &cmd->flags[k];
        if (!f->takes_value) {
            if (val)
                return args_fail(err, errlen, "flag --%s takes no value", f->name);
            out->values[k] = "";
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return args_fail(err, errlen, "flag --%s needs a value", f->name);
            val = argv[++i];
        }
        out->values[k] = val;
    }
    if (out->help)
        return IAS_OK;
    for (size_t k = 0; k < cmd->nflags; k++) {
        if (cmd->flags[k].required && !out->values[k])
            return args_fail(err, errlen, "missing required flag --%s", cmd->flags[k].name);
    }
    if (out->npos < cmd->pos_min)
        return args_fail(err, errlen, "missing argument %s", cmd->pos_usage ? cmd->pos_usage : "");
    return IAS_OK;
}

const char *admin_flag_value(const admin_parsed *a, const char *name)
{
    for (size_t k = 0; a->cmd && k < a->cmd->nflags; k++) {
        if (strcmp(a->cmd->flags[k].name, name) == 0)
            return a->values[k];
    }
    return NULL;
}

bool admin_flag_set(const admin_parsed *a, const char *name)
{
    return admin_flag_value(a, name) != NULL;
}

const admin_group *admin_group_find(const admin_group *const *groups, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(groups[i]->name, name) == 0)
            return groups[i];
    }
    return NULL;
}

const admin_cmd *admin_cmd_find(const admin_group *g, const char *name)
{
    for (size_t i = 0; i < g->ncmds; i++) {
        if (strcmp(g->cmds[i].name, name) == 0)
            return &g->cmds[i];
    }
    return NULL;
}

static const char GLOBAL_HELP[] = "Global flags:\n"
                                  "  -o, --output table|json  output format (default table)\n"
                                  "      --base-url URL       API base URL (env IAS_BASE_URL, "
                                  "default " ADMIN_DEFAULT_BASE_URL ")\n"
                                  "  -h, --help               show help\n";

void admin_usage_root(FILE *f, const admin_group *const *groups, size_t n)
{
    fprintf(f, "ias-admin: manage an ias gateway through its REST API.\n\n"
               "Usage:\n  ias-admin [flags] <command> [subcommand] [args]\n\nCommands:\n");
    fprintf(f, "  %-10s %s\n", "login", "log in and store tokens in the credentials file");
    fprintf(f, "  %-10s %s\n", "logout", "revoke the refresh token and forget the credentials");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(groups[i]->name, "auth") == 0)
            continue;
        fprintf(f, "  %-10s %s\n", groups[i]->name, groups[i]->summary);
    }
    fprintf(f, "  %-10s %s\n\n%s\n", "help", "help about any command", GLOBAL_HELP);
    fprintf(f, "Run 'ias-admin <command> --help' for more. Exit codes: 0 ok, 1 API error, 2 usage "
               "error.\n");
}

void admin_usage_group(FILE *f, const admin_group *g)
{
    fprintf(f, "%s\n\nUsage:\n  ias-admin %s <subcommand> [flags]\n\nSubcommands:\n", g->summary,
            g->name);
    int w = 16;
    for (size_t i = 0; i < g->ncmds; i++) {
        if ((int)strlen(g->cmds[i].name) > w)
            w = (int)strlen(g->cmds[i].name);
    }
    for (size_t i = 0; i < g->ncmds; i++)
        fprintf(f, "  %-*s %s\n", w, g->cmds[i].name, g->cmds[i].summary);
    fprintf(f, "\n%s", GLOBAL_HELP);
}

void admin_usage_cmd(FILE *f, const admin_group *g, const admin_cmd *c)
{
    bool top = strcmp(g->name, "auth") == 0;
    fprintf(f, "%s\n\nUsage:\n  ias-admin %s%s%s", c->summary, top ? "" : g->name, top ? "" : " ",
            c->name);
    if (c->pos_usage)
        fprintf(f, " %s", c->pos_usage);
    for (size_t k = 0; k < c->nflags; k++) {
        const admin_flag *fl = &c->flags[k];
        if (fl->required)
            fprintf(f, " --%s %s", fl->name, fl->value ? fl->value : "");
    }
    fprintf(f, " [flags]\n");
    if (c->nflags > 0) {
        fprintf(f, "\nFlags:\n");
        for (size_t k = 0; k < c->nflags; k++) {
            const admin_flag *fl = &c->flags[k];
            char left[64];
            snprintf(left, sizeof(left), "--%s%s%s", fl->name, fl->takes_value ? " " : "",
                     fl->takes_value && fl->value ? fl->value : "");
            if (fl->short_name)
                fprintf(f, "  -%c, %-24s %s%s\n", fl->short_name, left, fl->help,
                        fl->required ? " (required)" : "");
            else
                fprintf(f, "      %-24s %s%s\n", left, fl->help, fl->required ? " (required)" : "");
        }
    }
    fprintf(f, "\n%s", GLOBAL_HELP);
}

bool admin_is_uuid(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};
    size_t d = 0;
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (d < IAS_ARRAY_LEN(dash) && i == dash[d]) {
            if (s[i] != '-')
                return false;
            d++;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

int admin_parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (!s || !isdigit((unsigned char)s[0]))
        return IAS_ERR;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return IAS_ERR;
    *out = (uint64_t)v;
    return IAS_OK;
}
