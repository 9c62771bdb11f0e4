/* HTTP/1.x request parser for the server (pure: no I/O, no allocation but the
 * caller's field array). Private to libcommon's server and its fuzz target.
 *
 * The head (request line and header fields) is parsed in place in the
 * connection's read buffer once it is complete: names, values, the method and
 * the target are NUL-terminated where they lie and referred to by offsets, so
 * the buffer may move (grow) while a body is read. Bodies are framed by
 * Content-Length (repeated values must agree) or Transfer-Encoding: chunked,
 * decoded in place (the data is moved down over the chunk framing).
 *
 * Leniencies: bare LF line ends; up to four empty lines before the request
 * line. Strictness (as the response parser, shared field-line rules):
 * obs-fold, bare CR, control bytes, whitespace before ':' are 400, as are a
 * target that is not origin-form, Transfer-Encoding with Content-Length or in
 * HTTP/1.0, and malformed lengths. */
#ifndef IAS_HTTP_REQPARSE_H
#define IAS_HTTP_REQPARSE_H

#include "ias/common.h"

enum {
    IAS_HS_METHOD_OTHER = 7, /* a valid token outside the methods served: 501 */
    IAS_HS_MAX_BLANKS = 4,
};

typedef struct ias_hs_field {
    uint32_t name, value; /* offsets of NUL-terminated strings in the buffer */
} ias_hs_field;

typedef struct ias_hs_head {
    bool has_method, has_target; /* parsed (an error may come later) */
    int method_idx;              /* 0 GET 1 HEAD 2 POST 3 PUT 4 PATCH 5 DELETE 6 OPTIONS, 7 other */
    uint32_t method;             /* offsets of NUL-terminated strings */
    uint32_t target;
    size_t target_len;
    int minor;       /* HTTP/1.<minor>, 0 or 1 */
    size_t head_len; /* bytes of the head, final empty line included */
    size_t nfields;
    int64_t content_length; /* -1 none */
    bool chunked;
    bool keep_alive;
    bool expect_continue;
    int error; /* 0, or the status to answer with (400 413 417 431 501 505) */
    const char *why;
} ias_hs_head;

/* Looks for the end of the head in buf[0..len) from *scan (kept between calls
 * so each byte is scanned once; 0 for a new request). 0: need more bytes (if
 * len already exceeds max_header_bytes, h->error is 431); 1: a complete head
 * was parsed into h (check h->error). fields has room for max_fields entries;
 * more fields is 431 as well. */
int ias_hs_head_parse(char *buf, size_t len, size_t *scan, size_t max_header_bytes,
                      ias_hs_field *fields, size_t max_fields, ias_hs_head *h);

/* Best effort after an error (431 on an incomplete head): parses the request
 * line if it is complete, in place, into h's method and target without
 * touching h->error. True if the target is known. */
bool ias_hs_request_line(char *buf, size_t len, ias_hs_head *h);

/* Case-insensitive lookup in a parsed head; NULL if absent. */
const char *ias_hs_field_get(const char *buf, const ias_hs_field *f, size_t n, const char *name);

/* Incremental in-place chunked body decoder. */
typedef struct ias_hs_chunked {
    int state;
    uint64_t remaining; /* of the current chunk */
    uint64_t total;     /* decoded bytes so far */
    size_t line;        /* bytes of the size line or trailer line so far */
    size_t trailer;     /* bytes of complete trailer lines */
    bool digits;
} ias_hs_chunked;

enum {
    IAS_HS_CHUNK_MORE = 0,
    IAS_HS_CHUNK_DONE = 1,
    IAS_HS_CHUNK_BAD = -1,   /* 400 */
    IAS_HS_CHUNK_LARGE = -2, /* 413: total over max_body */
};

void ias_hs_chunked_init(ias_hs_chunked *d);
/* Consumes buf[*rpos..end) and appends the decoded data at buf + *wpos
 * (*wpos <= *rpos always). Returns IAS_HS_CHUNK_*; on DONE *rpos is just past
 * the body (trailers included; they are checked and dropped). max_trailer
 * bounds the size lines and trailers. */
int ias_hs_chunked_run(ias_hs_chunked *d, char *buf, size_t *rpos, size_t end, size_t *wpos,
                       uint64_t max_body, size_t max_trailer);

#endif
