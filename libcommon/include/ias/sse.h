/* Incremental Server-Sent Events parser (WHATWG HTML, "event stream
 * interpretation"), fed arbitrary pieces of a stream.
 *
 * Lines end in CRLF, LF or CR, also when the pair is split across feeds; one
 * leading UTF-8 BOM is dropped. "data:" lines (one optional leading space
 * removed) are joined with LF; "event:", "id:" (ignored when it contains NUL)
 * and "retry:" (digits only) fields are kept; lines starting with ':' are
 * comments; other fields are ignored. A blank line dispatches the event unless
 * no data line was seen. The stream's end discards a partial event
 * (ias_sse_parser_pending tells whether there was one).
 *
 * Bounded: when the event being built (its data, type and the current line)
 * would exceed max_event_bytes, parsing stops with IAS_SSE_ERR_TOO_LARGE. Errors
 * are sticky until ias_sse_parser_reset. Bytes are not UTF-8 validated. */
#ifndef IAS_SSE_H
#define IAS_SSE_H

#include "ias/common.h"

typedef struct ias_sse_event {
    const char *type; /* "message" when the event had no event: field */
    size_t type_len;
    const char *data; /* data lines joined with LF, NUL-terminated (may hold NULs) */
    size_t data_len;
    const char *id; /* the stream's last event id ("" if none), persists across events */
    size_t id_len;
    int64_t retry_ms; /* last valid retry: value, -1 if none */
} ias_sse_event;

/* Called for each event; the strings live until the callback returns. Return
 * IAS_OK to continue; anything else stops parsing (IAS_SSE_ERR_STOPPED). The
 * callback must not feed or free the parser. */
typedef int (*ias_sse_cb)(const ias_sse_event *ev, void *arg);

typedef enum {
    IAS_SSE_ERR_NONE = 0,
    IAS_SSE_ERR_TOO_LARGE,
    IAS_SSE_ERR_STOPPED,
} ias_sse_err;

typedef struct ias_sse_parser ias_sse_parser;

/* max_event_bytes 0: 1 MiB. */
ias_sse_parser *ias_sse_parser_new(size_t max_event_bytes, ias_sse_cb cb, void *arg);
void ias_sse_parser_free(ias_sse_parser *p);
/* IAS_OK, or IAS_ERR once an error happened (see ias_sse_parser_error). */
int ias_sse_parser_feed(ias_sse_parser *p, const char *data, size_t len) IAS_MUSTCHECK;
/* True when bytes of an undispatched event (or an unterminated line) are buffered:
 * at end of stream it means the stream was cut mid-event. */
bool ias_sse_parser_pending(const ias_sse_parser *p);
ias_sse_err ias_sse_parser_error(const ias_sse_parser *p);
/* Forgets everything (including last event id and retry) for a new stream. */
void ias_sse_parser_reset(ias_sse_parser *p);

#endif
