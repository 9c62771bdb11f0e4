/* Pure parts of the router's request and accounting work: the upstream body
 * spliced from the client's bytes, SSE event framing on raw bytes, usage
 * extraction from chunks and bodies, and the usage.recorded.v1 document. No
 * I/O, so tests/unit/test_router_usage.c exercises them directly. */
#ifndef IAS_ROUTER_USAGE_H
#define IAS_ROUTER_USAGE_H

#include "ias/common.h"
#include "ias/json_scan.h"

enum { ROUTER_MEMO_PREFIX_MAX = 384, ROUTER_MEMO_DEPTH = 16 };

/* Where the chunk scan stood when it reached the first "content" key of a
 * delta: the bytes before that point and the scan's state there. The chunks of
 * one stream repeat those bytes (id, object, created, model, the choice's
 * index), so a chunk that starts with the same bytes resumes the scan from that
 * state instead of reading them again. Exact by construction: the state is a
 * function of the bytes before the point only. All zero: nothing remembered. */
typedef struct router_chunk_memo {
    size_t len; /* bytes of prefix; 0: none */
    size_t key_off, keylen;
    size_t nchoices, nchoices_keys, ndelta_keys;
    int depth;
    bool key_set;
    unsigned char role[ROUTER_MEMO_DEPTH];
    char prefix[ROUTER_MEMO_PREFIX_MAX];
} router_chunk_memo;

/* What a response told us about tokens. */
typedef struct router_usage {
    bool have_usage;        /* upstream reported usage */
    long long prompt;       /* from upstream usage */
    long long completion;   /* from upstream usage */
    long long counted;      /* chunks with non-empty text (our own count) */
    bool done;              /* "data: [DONE]" seen */
    router_chunk_memo memo; /* the stream's repeated chunk prefix (router_usage_chunk) */
} router_usage;

/* Length of the first complete SSE event in buf (up to and including the blank
 * line that ends it; CRLF, LF or CR line ends), or 0 when none is complete. */
size_t router_sse_event_end(const char *buf, size_t len);
/* The same for a buf known to hold no CR (line ends are LFs only). */
size_t router_sse_event_end_lf(const char *buf, size_t len);

/* Inspects one SSE event's data. Sets *usage_only when the chunk carries usage and
 * no choices (the final usage chunk a client may not have asked for). Counts a
 * token per choice whose delta.content / text is a non-empty string. IAS_ERR when
 * the data is neither [DONE] nor a JSON object (left for the caller to forward). */
int router_usage_chunk(router_usage *u, const char *data, size_t len, bool *usage_only);
/* Reads "usage" of a non-streaming JSON body; counts choices' text if absent. */
int router_usage_body(router_usage *u, const char *body, size_t len);
/* Reads "usage.prompt_tokens" of an embeddings body (there is no completion:
 * completion stays 0). No usage: have_usage stays false and the caller bills
 * its own prompt estimate. IAS_ERR when the body is no JSON object. */
int router_usage_embedding(router_usage *u, const char *body, size_t len);

/* The completion tokens to bill: upstream's count when it reported one and the
 * response completed, else our own count. */
long long router_usage_completion(const router_usage *u, bool complete);

/* Where the upstream body differs from the client's: found by one strict scan
 * of the body, kept as offsets into it. */
typedef struct router_body_plan {
    ias_json_span model;     /* the top-level "model" string token */
    ias_json_span opts;      /* the top-level "stream_options" value; len 0: absent */
    ias_json_type opts_type; /* its type */
    ias_json_span incl; /* "include_usage" value inside an object stream_options; len 0: none */
    bool opts_empty;    /* stream_options is an object without members */
    size_t close;       /* offset of the body's closing brace */
} router_body_plan;

/* Scans a request body for the plan and decodes "model" into model[0..cap).
 * IAS_ERR when the strict scan refuses the bytes, the body is no object,
 * "model" is missing, no string, empty, too long for cap or has a NUL in it,
 * or "model", "stream_options" or its "include_usage" occur twice (cJSON reads
 * the first of duplicates, backends may read the last): the caller then works
 * on a cJSON tree. */
int router_body_plan_scan(const char *body, size_t len, router_body_plan *p, char *model,
                          size_t cap) IAS_MUSTCHECK;

/* The upstream body: the client's bytes with the "model" value replaced by name
 * when that differs from client_model (the decoded value), and for a stream
 * stream_options.include_usage set to true (other stream_options members stay;
 * a stream_options that is no object, i.e. null, becomes {"include_usage":true};
 * a missing one is appended). Returns body itself when nothing changes (*owned
 * NULL), else a malloc'd copy, also in *owned for the caller to free. */
const char *router_body_build(const char *body, size_t len, const router_body_plan *p,
                              const char *client_model, const char *name, bool stream,
                              size_t *outlen, char **owned);

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
