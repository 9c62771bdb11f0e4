/* Incremental HTTP/1.x response parser and http:// URL parser (pure: no I/O).
 *
 * The parser is pulled, one event per call: the caller hands it whatever bytes
 * it has and gets back how many it consumed and what happened. Body pieces
 * point into the caller's input (no copy); only the response head and trailers
 * are copied, into buffers bounded by the limits.
 *
 *     for (;;) {
 *         ev = ias_http_parser_run(p, data, len, &used, &body, &blen);
 *         data += used; len -= used;
 *         switch (ev) { case IAS_HTTP_EV_NEED_MORE: read more; ... }
 *     }
 *
 * Framing follows RFC 9112 section 6.3: no body for HEAD, 1xx, 204 and 304;
 * Transfer-Encoding ending in "chunked" (wins over Content-Length, and then the
 * connection is not reused); Content-Length (repeated values must agree);
 * otherwise read until close. Interim 1xx responses (not 101) are skipped.
 * Leniencies: bare LF line ends; up to four empty lines before a status line.
 * Strictness: obs-fold, bare CR, control bytes, whitespace before ':' and
 * malformed lengths are protocol errors. */
#ifndef IAS_HTTP_PARSE_H
#define IAS_HTTP_PARSE_H

#include "ias/common.h"

typedef struct ias_http_header {
    const char *name; /* NUL-terminated */
    const char *value;
} ias_http_header;

/* Case-insensitive lookup of the first header with this name, or NULL. */
const char *ias_http_header_get(const ias_http_header *h, size_t n, const char *name);
/* True when a comma-separated header value holds token (case-insensitive). */
bool ias_http_header_has_token(const char *value, const char *token);

/* One field line "name: value" without its line end, s[0..len), by the rules
 * both parsers share (RFC 9112 section 5): a token name directly followed by
 * ':', no leading whitespace (obs-fold), no control bytes (bare CR included)
 * in the value. On success NUL-terminates the name (at the ':') and the value
 * (after its trailing whitespace) in place, points *value at the value and
 * returns NULL; otherwise returns what is wrong and changes nothing. */
const char *ias_http_field_line(char *s, size_t len, char **value);
/* RFC 9110 token character (header names, methods); the table is for loops
 * that check every byte of a name and should not pay a call per byte. */
bool ias_http_is_tchar(unsigned char c);
extern const unsigned char ias_http_tchar[256];

typedef struct ias_http_response {
    int status;        /* 100..599 */
    int minor_version; /* HTTP/1.<minor> */
    const char *reason;
    const ias_http_header *headers;
    size_t nheaders;
    int64_t content_length; /* -1 when absent or overridden by chunked */
    bool chunked;
    bool until_close; /* body delimited by connection close */
    bool keep_alive;  /* connection may be reused once this response completes */
} ias_http_response;

typedef struct ias_http_parse_limits {
    size_t max_header_bytes; /* status line + headers; trailers separately; 0: 16 KiB, min 64 */
    size_t max_headers;      /* header lines (and trailer lines); 0: 100 */
} ias_http_parse_limits;

typedef enum {
    IAS_HTTP_EV_NEED_MORE = 0, /* everything given was consumed; feed more (or call eof) */
    IAS_HTTP_EV_HEADERS,       /* final response head complete: ias_http_parser_response() */
    IAS_HTTP_EV_BODY,          /* a decoded body piece in *body / *body_len (points into input) */
    IAS_HTTP_EV_DONE,          /* response complete; further bytes are not consumed */
    IAS_HTTP_EV_ERROR,         /* see ias_http_parser_error(); sticky */
} ias_http_ev;

typedef enum {
    IAS_HTTP_PERR_NONE = 0,
    IAS_HTTP_PERR_PROTOCOL,  /* malformed response */
    IAS_HTTP_PERR_TOO_LARGE, /* head or trailers over the limits */
    IAS_HTTP_PERR_TRUNCATED, /* eof before the response was complete */
} ias_http_perr;

typedef struct ias_http_parser ias_http_parser;

ias_http_parser *ias_http_parser_new(void);
void ias_http_parser_free(ias_http_parser *p);
/* Prepares for the next response. head_request: the request was HEAD (no body).
 * limits may be NULL for defaults. Keeps allocated buffers for reuse. */
void ias_http_parser_begin(ias_http_parser *p, const ias_http_parse_limits *limits,
                           bool head_request);
/* Consumes a prefix of data[0..len) (len may be 0) and reports one event. */
ias_http_ev ias_http_parser_run(ias_http_parser *p, const char *data, size_t len, size_t *consumed,
                                const char **body, size_t *body_len);
/* The peer closed: DONE for a read-until-close body or an already complete
 * response, otherwise ERROR (TRUNCATED). */
ias_http_ev ias_http_parser_eof(ias_http_parser *p);

/* Valid from the HEADERS event until the next ias_http_parser_begin. */
const ias_http_response *ias_http_parser_response(const ias_http_parser *p);
/* Chunked trailers, valid after DONE until the next begin. */
const ias_http_header *ias_http_parser_trailers(const ias_http_parser *p, size_t *n);
bool ias_http_parser_done(const ias_http_parser *p);
/* Any byte of this response consumed (including skipped 1xx responses). */
bool ias_http_parser_started(const ias_http_parser *p);
/* After DONE: whether the connection may carry another request. */
bool ias_http_parser_keep_alive(const ias_http_parser *p);
uint64_t ias_http_parser_body_bytes(const ias_http_parser *p); /* decoded body bytes so far */
ias_http_perr ias_http_parser_error(const ias_http_parser *p);
const char *ias_http_parser_errmsg(const ias_http_parser *p); /* "" when none */

/* http://host[:port][/path][?query][#fragment]; host is a name, IPv4 or [IPv6].
 * Rejects other schemes, userinfo, empty or out-of-range ports, spaces and
 * control bytes. path points into url (fragment excluded) and may be empty or
 * start with '?': send "/" before it then.
 *
 * Unix stream sockets (a co-located server, e.g. ingress -> router in one pod):
 *   unix:/run/ias/router.sock                the socket, request path "/"
 *   unix:/run/ias/router.sock:/v1/x?y        nginx's form: the socket path ends at
 *                                            the first ':' (so it cannot hold one)
 *   http+unix://%2Frun%2Fias%2Frouter.sock/v1/x   the socket percent-encoded as host
 * give unix_path (non-empty, shorter than IAS_HTTP_UNIX_PATH_MAX), host
 * "localhost" (the Host header) and port 80. A base URL "unix:/path" becomes a
 * prefix for "<base>:<path>". */
enum { IAS_HTTP_UNIX_PATH_MAX = 108 }; /* sizeof(sockaddr_un.sun_path) on Linux */

typedef struct ias_http_url {
    char host[256]; /* without brackets */
    bool host_is_ipv6;
    uint16_t port; /* default 80 */
    const char *path;
    size_t path_len;
    char unix_path[IAS_HTTP_UNIX_PATH_MAX]; /* "" for TCP */
} ias_http_url;

int ias_http_url_parse(const char *url, ias_http_url *out) IAS_MUSTCHECK;

#endif
