/* Pure parts of the router's accounting: SSE event framing on raw bytes, usage
 * extraction from chunks and bodies, and the usage.recorded.v1 document. No I/O,
 * so tests/unit/test_router_usage.c exercises them directly. */
#ifndef IAS_ROUTER_USAGE_H
#define IAS_ROUTER_USAGE_H

#include "ias/common.h"

/* What a response told us about tokens. */
typedef struct router_usage {
    bool have_usage;      /* upstream reported usage */
    long long prompt;     /* from upstream usage */
    long long completion; /* from upstream usage */
    long long counted;    /* chunks with non-empty text (our own count) */
    bool done;            /* "data: [DONE]" seen */
} router_usage;

/* Length of the first complete SSE event in buf (up to and including the blank
 * line that ends it; CRLF, LF or CR line ends), or 0 when none is complete. */
size_t router_sse_event_end(const char *buf, size_t len);

/* Inspects one SSE event's data. Sets *usage_only when the chunk carries usage and
 * no choices (the final usage chunk a client may not have asked for). Counts a
 * token per choice whose delta.content / text is a non-empty string. IAS_ERR when
 * the data is neither [DONE] nor a JSON object (left for the caller to forward). */
int router_usage_chunk(router_usage *u, const char *data, size_t len, bool *usage_only);
/* Reads "usage" of a non-streaming JSON body; counts choices' text if absent. */
int router_usage_body(router_usage *u, const char *body, size_t len);

/* The completion tokens to bill: upstream's count when it reported one and the
 * response completed, else our own count. */
long long router_usage_completion(const router_usage *u, bool complete);

/* Fields of a usage.recorded.v1 event. NULL strings become JSON null. */
typedef struct router_usage_event {
    const char *event_id, *request_id, *org_id, *user_id, *api_key_id, *model, *backend;
    int64_t occurred_wall_ms;
    long long prompt_tokens, completion_tokens;
    int status;
    long long ttft_ms; /* < 0: null */
    long long duration_ms;
    bool stream, aborted;
} router_usage_event;

/* malloc'd JSON text (free()). */
char *router_usage_event_json(const router_usage_event *e);

#endif
