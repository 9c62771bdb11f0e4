/* ias-admin: the operator's command line client of the management API.
 * It only speaks REST (never SQL). main.c dispatches "<group> <command>";
 * each command group lives in its own file; args.c, output.c and creds.c are
 * pure enough to be unit-tested without a server. */
#ifndef IAS_ADMIN_H
#define IAS_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ias/common.h"

typedef struct cJSON cJSON;

/* Exit codes (documented in docs/cli.md). */
enum {
    ADMIN_EXIT_OK = 0,
    ADMIN_EXIT_API = 1,   /* the API (or the network) said no */
    ADMIN_EXIT_USAGE = 2, /* unknown command or flag, missing argument */
};

#define ADMIN_DEFAULT_BASE_URL "http://127.0.0.1:8080"
#define ADMIN_MAX_FLAGS 16
#define ADMIN_MAX_POS 4
#define ADMIN_URL_MAX 512
#define ADMIN_SECRET_MAX 1024 /* passwords and tokens read from a prompt or stdin */
#define ADMIN_RESPONSE_MAX (16u << 20)

typedef enum { ADMIN_OUT_TABLE, ADMIN_OUT_JSON } admin_output;

/* ---- args.c: command tables and the argument parser (pure) ---- */

typedef struct admin_flag {
    const char *name;  /* long name without dashes: "email" */
    char short_name;   /* 'f' for -f, or 0 */
    bool takes_value;  /* false: a boolean switch */
    bool required;     /* a usage error when absent */
    const char *value; /* placeholder in help: "EMAIL" */
    const char *help;
} admin_flag;

typedef struct admin_ctx admin_ctx;
typedef struct admin_parsed admin_parsed;

typedef struct admin_cmd {
    const char *name;
    const char *summary;
    const char *pos_usage; /* "ORG" or NULL */
    int pos_min, pos_max;
    const admin_flag *flags;
    size_t nflags;
    int (*run)(admin_ctx *ctx, const admin_parsed *a);
} admin_cmd;

typedef struct admin_group {
    const char *name;
    const char *summary;
    const admin_cmd *cmds;
    size_t ncmds;
} admin_group;

/* The outcome of parsing one command's arguments. values[i] belongs to
 * cmd->flags[i]: the value, "" for a boolean switch that is set, or NULL. */
struct admin_parsed {
    const admin_cmd *cmd;
    const char *values[ADMIN_MAX_FLAGS];
    const char *pos[ADMIN_MAX_POS];
    int npos;
    /* Global flags, accepted anywhere on the line. */
    const char *output;   /* --output / -o */
    const char *base_url; /* --base-url */
    bool help;            /* --help / -h */
};

/* Global flags only, from argv[*i] while they are flags; stops at the first
 * word. IAS_OK, or IAS_ERR with a message in err. */
int admin_parse_globals(int argc, char **argv, int *i, admin_parsed *out, char *err,
                        size_t errlen) IAS_MUSTCHECK;
/* Parses the arguments of cmd (argv[0] is the first word after the command
 * name). Checks unknown flags, missing values, required flags (unless --help)
 * and the number of positional arguments. IAS_OK or IAS_ERR with err set. */
int admin_parse(const admin_cmd *cmd, int argc, char **argv, admin_parsed *out, char *err,
                size_t errlen) IAS_MUSTCHECK;
/* The value of a flag by long name, or NULL when absent. */
const char *admin_flag_value(const admin_parsed *a, const char *name);
bool admin_flag_set(const admin_parsed *a, const char *name);

const admin_group *admin_group_find(const admin_group *const *groups, size_t n, const char *name);
const admin_cmd *admin_cmd_find(const admin_group *g, const char *name);
void admin_usage_root(FILE *f, const admin_group *const *groups, size_t n);
void admin_usage_group(FILE *f, const admin_group *g);
void admin_usage_cmd(FILE *f, const admin_group *g, const admin_cmd *c);
/* True for a canonical UUID (8-4-4-4-12 hex). */
bool admin_is_uuid(const char *s);
/* Parses a non-negative decimal integer (no sign, no junk) into *out. */
int admin_parse_u64(const char *s, uint64_t *out) IAS_MUSTCHECK;

/* ---- output.c: tables and JSON (pure) ---- */

typedef struct admin_col {
    const char *header; /* "NAME" */
    const char *field;  /* JSON member, "a.b" for nested objects */
} admin_col;

/* Renders one cell of an object: strings as they are (control characters
 * replaced so nothing can drive the terminal), integers without a fraction,
 * null/absent as "-", arrays joined by ",", objects as compact JSON.
 * Returns a malloc'd string. */
char *admin_cell(const cJSON *obj, const char *field);
/* Aligned columns with a header row, two spaces between columns, no trailing
 * blanks; widths count UTF-8 characters. rows is a JSON array of objects. */
void admin_table(FILE *f, const admin_col *cols, size_t ncols, const cJSON *rows);
/* One object as aligned "key  value" lines, in the given order, then any other
 * members when all is set. */
void admin_record(FILE *f, const admin_col *cols, size_t ncols, const cJSON *obj);
/* Pretty JSON followed by a newline. */
void admin_json(FILE *f, const cJSON *json);
/* Lists come as {"data":[...]} or a bare array: the array, or NULL. */
const cJSON *admin_list_items(const cJSON *body);
/* Prints a problem (RFC 7807) or any error body to f: "error: <title>: <detail>". */
void admin_print_problem(FILE *f, long status, const char *body, size_t len);

/* ---- creds.c: ~/.config/ias/credentials (pure file handling) ---- */

typedef struct admin_creds {
    char base_url[ADMIN_URL_MAX];
    char email[256];
    char *access_token;  /* NULL when none */
    char *refresh_token; /* NULL when none */
    int64_t expires_at;  /* access token expiry, unix seconds; 0 unknown */
} admin_creds;

/* The credentials path: $IAS_CONFIG_DIR/credentials, else
 * $XDG_CONFIG_HOME/ias/credentials, else $HOME/.config/ias/credentials. */
int admin_creds_path(char *buf, size_t len) IAS_MUSTCHECK;
/* Loads the profile of base_url (or, when base_url is NULL, the current one:
 * the base URL of the last login). IAS_OK with *c filled, IAS_AGAIN when the
 * file or profile does not exist, IAS_ERR on a broken file (message printed). */
int admin_creds_load(const char *path, const char *base_url, admin_creds *c) IAS_MUSTCHECK;
/* Writes c as the profile of c->base_url and makes it current; the file is
 * replaced atomically with mode 0600, its directory created 0700. */
int admin_creds_save(const char *path, const admin_creds *c) IAS_MUSTCHECK;
/* Removes the profile of base_url. */
int admin_creds_forget(const char *path, const char *base_url) IAS_MUSTCHECK;
void admin_creds_clear(admin_creds *c); /* wipes and frees the tokens */

/* ---- prompt.c ---- */

/* Reads a secret: from stdin when from_stdin or stdin is not a terminal (one
 * line, newline stripped), else from the terminal with echo off. confirm asks
 * twice on a terminal. IAS_OK or IAS_ERR (message printed). */
int admin_read_secret(const char *prompt, bool from_stdin, bool confirm, char *buf,
                      size_t len) IAS_MUSTCHECK;

/* ---- http.c: libcurl wrapper ---- */

struct admin_ctx {
    char base_url[ADMIN_URL_MAX]; /* no trailing slash */
    admin_output output;
    char creds_path[1024];
    admin_creds creds;
    bool have_creds;          /* creds belong to base_url */
    void *curl;               /* CURL*, reused for keep-alive */
    const char *extra_header; /* one more "Name: value" header, or NULL */
};

typedef struct admin_resp {
    long status;
    char *body; /* NUL-terminated, may be NULL */
    size_t len;
    cJSON *json; /* parsed body or NULL */
} admin_resp;

void admin_resp_free(admin_resp *r);

/* Sends method path (under base_url) with an optional JSON body. With auth,
 * attaches the stored access token, refreshing it first when it expired and
 * once more after a 401. Returns IAS_OK when a response arrived (any status),
 * IAS_ERR on a transport failure (printed). */
int admin_http(admin_ctx *ctx, const char *method, const char *path, const cJSON *body, bool auth,
               admin_resp *out) IAS_MUSTCHECK;
/* admin_http plus the usual outcome: 2xx -> IAS_OK with *out filled; anything
 * else prints the problem and returns IAS_ERR (out freed). */
int admin_call(admin_ctx *ctx, const char *method, const char *path, const cJSON *body,
               admin_resp *out) IAS_MUSTCHECK;
/* Stores the tokens of a login answer as the profile of ctx->base_url. */
int admin_store_login(admin_ctx *ctx, const char *email, const cJSON *tokens) IAS_MUSTCHECK;
/* Appends ?k=v&... with URL escaping, skipping NULL values; pairs end at NULL key. */
char *admin_path_query(const char *path, const char *const *kv);
/* URL-escapes one path segment; malloc'd. */
char *admin_escape(const char *s);

/* ---- shared command helpers (main.c) ---- */

/* Prints a list response as a table or JSON. */
int admin_show_list(admin_ctx *ctx, const admin_resp *r, const admin_col *cols, size_t ncols);
/* Prints one object response as a record or JSON. */
int admin_show_record(admin_ctx *ctx, const admin_resp *r, const admin_col *cols, size_t ncols);
/* Resolves an org given by id or by name to its id (buf >= 64). */
int admin_resolve_org(admin_ctx *ctx, const char *ref, char *buf, size_t len) IAS_MUSTCHECK;
/* Follows next_cursor over a list endpoint and merges every page's items into
 * one array (for tables and name lookups). NULL on error (printed). */
cJSON *admin_list_all(admin_ctx *ctx, const char *path, const char *const *query);

/* Maps flags to members of a JSON body. Types: 's' string, 'i' integer
 * ("none" sends null), 'b' boolean (true/false), 'l' comma-separated list of
 * strings, 'n' comma-separated list of integers, 'd' decimal sent as a string. */
typedef struct admin_field {
    const char *flag;
    const char *json;
    char type;
} admin_field;
/* Adds every given flag to body. IAS_ERR (message printed) on a bad value. */
int admin_body_fields(const admin_parsed *a, const admin_field *f, size_t n,
                      cJSON *body) IAS_MUSTCHECK;
/* Runs one request and shows the answer as a record (or nothing on 204). */
int admin_do_record(admin_ctx *ctx, const char *method, const char *path, const cJSON *body,
                    const admin_col *cols, size_t ncols);
/* The outcome of a write without a useful body (DELETE, 204): the body as
 * JSON, or {"ok": true}, or the message in table mode. */
void admin_show_done(admin_ctx *ctx, const admin_resp *r, const char *fmt, ...) IAS_PRINTF(3, 4);
/* Fetches every page of a list and shows it. */
int admin_do_list(admin_ctx *ctx, const char *path, const char *const *query, const admin_col *cols,
                  size_t ncols);

extern const admin_group admin_group_bootstrap, admin_group_auth, admin_group_orgs,
    admin_group_users, admin_group_keys, admin_group_models, admin_group_budgets,
    admin_group_policies, admin_group_usage, admin_group_audit;

#endif
