/* ias-mockllm: an OpenAI-compatible stand-in for vLLM with deterministic text,
 * exact token counts, and timing and fault knobs (docs/development/mockllm.md). */
#ifndef IAS_MOCKLLM_H
#define IAS_MOCKLLM_H

#include "ias/common.h"
#include "ias/http_server.h"
#include "ias/metrics.h"
#include "ias/openai.h"

/* ---- faults.c: timing and fault parameters ---- */

typedef enum {
    MOCK_FAULT_NONE = 0,
    MOCK_FAULT_CUT_AFTER, /* arg: tokens delivered before the connection drops */
    MOCK_FAULT_HANG,      /* never answer; wait for the client to leave */
    MOCK_FAULT_STATUS,    /* arg: HTTP status answered with an OpenAI-shaped error */
} mock_fault_kind;

typedef struct mock_fault {
    mock_fault_kind kind;
    long arg;
} mock_fault;

/* What one request asks of the mock: process defaults (IAS_MOCK_*) overridden
 * by X-Mock-* request headers. */
typedef struct mock_params {
    long long ttft_ms;      /* delay before the first token / the whole answer */
    long long tokens_per_s; /* 0: as fast as the client reads */
    double error_rate;      /* probability of an injected 500 */
    mock_fault fault;
    long long natural_tokens; /* X-Mock-Tokens: words before the model stops; -1 unlimited */
    uint64_t seed;            /* X-Mock-Seed: varies the text for the same prompt */
    bool echo;                /* X-Mock-Echo: repeat the last user message */
} mock_params;

enum {
    MOCK_MAX_TTFT_MS = 600000,
    MOCK_MAX_TOKENS_PER_S = 1000000,
};

/* "none", "hang", "cut-after=<n>", "status=<400..599>" (surrounding blanks ok). */
int mock_fault_parse(const char *s, mock_fault *out, char *err, size_t errlen) IAS_MUSTCHECK;
/* A probability in [0, 1] ("0", "0.25", "1"). */
int mock_rate_parse(const char *s, double *out) IAS_MUSTCHECK;
/* Applies the request's X-Mock-* headers on top of defaults. On a malformed
 * header returns IAS_ERR with a message naming it. */
int mock_params_for_request(const mock_params *defaults, ias_req *r, mock_params *out, char *err,
                            size_t errlen) IAS_MUSTCHECK;
/* The start of every generating handler: the request's parameters, then the
 * faults that answer before the body is read (a bad X-Mock-* header 400, a
 * status fault, an injected error). IAS_ERR: answered. Fills rnd with fresh
 * random bytes for the handler's ids. */
int mock_faults_begin(const mock_params *defaults, ias_req *r, mock_params *params,
                      uint8_t rnd[24]) IAS_MUSTCHECK;

/* ---- text.c: deterministic prompts, words and JSON text ---- */

/* A growable byte buffer (dies on OOM like ias_xmalloc). */
typedef struct mock_buf {
    char *data;
    size_t len, cap;
} mock_buf;

void mock_buf_add(mock_buf *b, const void *data, size_t len);
void mock_buf_adds(mock_buf *b, const char *s);
void mock_buf_addf(mock_buf *b, const char *fmt, ...) IAS_PRINTF(2, 3);
/* Appends s as a JSON string literal, quotes included. */
void mock_buf_add_json_str(mock_buf *b, const char *s, size_t len);
void mock_buf_free(mock_buf *b);

/* What the mock "saw" of a prompt: the seed of its text, its token count and,
 * for echo mode, the words to repeat. */
typedef struct mock_prompt {
    uint64_t hash;
    long long prompt_tokens;
    char *echo; /* owned copy of the text to echo, or NULL */
    long long echo_words;
} mock_prompt;

/* prompt_tokens = words of every message's text + 3 per message + 3. */
void mock_prompt_chat(const ias_openai_request *req, const char *model, uint64_t seed, bool echo,
                      mock_prompt *out);
/* prompt_tokens = words of the prompt + 1 (a BOS token). One prompt of a
 * request's prompt array (each is counted on its own, as vLLM does). */
void mock_prompt_completion(const char *prompt, const char *model, uint64_t seed, bool echo,
                            mock_prompt *out);
/* A prompt of token ids (a validated JSON array of integers): prompt_tokens =
 * the number of ids (no BOS added, as vLLM takes ids as they are); the text is
 * seeded from the ids; echo repeats them as decimal words. */
void mock_prompt_token_ids(const cJSON *ids, const char *model, uint64_t seed, bool echo,
                           mock_prompt *out);
void mock_prompt_free(mock_prompt *p);
/* Whitespace-separated words in s[0..len). */
long long mock_count_words(const char *s, size_t len);

/* Produces the words of a reply, one per call; identical for an identical
 * prompt and sample. Sample j is the j-th of a request's n choices for that
 * prompt: sample 0 is the text n = 1 would get, the others differ from it. */
typedef struct mock_textgen {
    uint64_t state;
    const char *echo; /* next echo word, or NULL when not echoing */
    bool echoing;
} mock_textgen;

void mock_textgen_init(mock_textgen *g, const mock_prompt *p, uint64_t sample);
/* Next word (no spaces). Returns false when an echo has no more words. */
bool mock_textgen_next(mock_textgen *g, const char **word, size_t *len);

/* ---- main.c: the service context ---- */

typedef struct mock_ctx {
    char model[IAS_OPENAI_MAX_MODEL_LEN + 1];
    long long context_len;        /* IAS_MOCK_CONTEXT: max_model_len */
    long long max_tokens_default; /* IAS_MOCK_MAX_TOKENS_DEFAULT */
    mock_params defaults;
    ias_counter *tokens_generated;
    ias_gauge *streams_active;
} mock_ctx;

/* ---- chat.c: handlers ---- */

void mock_handle_models(ias_req *r, void *ctx);
void mock_handle_chat(ias_req *r, void *ctx);
void mock_handle_completions(ias_req *r, void *ctx);
/* An error as vLLM shapes it: {"error":{"message","type","param","code":<status>}}. */
void mock_reply_error(ias_req *r, int status, const char *type, const char *param, const char *fmt,
                      ...) IAS_PRINTF(5, 6);
/* vLLM's error type for a status ("BadRequestError", "NotFoundError", ...). */
const char *mock_error_type(int status);
/* Reads and validates the body of a kind's request (400 in vLLM's shape) and
 * checks it names this mock's model (404). IAS_ERR: answered. *json belongs to
 * the request (freed with it), as ias_req_json's. */
int mock_parse_request(const mock_ctx *ctx, ias_req *r, ias_openai_kind kind,
                       ias_openai_request *req, cJSON **json) IAS_MUSTCHECK;

/* ---- embed.c: POST /v1/embeddings ---- */

enum {
    MOCK_EMBED_DIMS = 16,       /* vector size when the request gives no "dimensions" */
    MOCK_EMBED_MAX_DIMS = 4096, /* largest "dimensions" the mock produces */
};

void mock_handle_embeddings(ias_req *r, void *ctx);

#endif
