/* OpenAI request validation: chat completions and legacy completions.
 *
 * The parser only validates and extracts. It never rebuilds the body: callers
 * that forward the request (router) send the original bytes, so unknown fields
 * survive untouched. The extracted struct borrows from the cJSON tree it was
 * parsed from (strings and sub-trees point into it) and allocates nothing, so
 * it lives exactly as long as that tree and needs no free.
 *
 * Errors follow OpenAI's wording and name the offending parameter
 * ("messages[2].content"), so an HTTP handler can answer
 * 400 {"error":{"message":..., "type":"invalid_request_error", "param":...}}. */
#ifndef IAS_OPENAI_H
#define IAS_OPENAI_H

#include "ias/common.h"

typedef struct cJSON cJSON;

enum {
    IAS_OPENAI_MAX_MODEL_LEN = 256,       /* bytes in "model" */
    IAS_OPENAI_MAX_MESSAGES = 10000,      /* entries in "messages" */
    IAS_OPENAI_MAX_PROMPTS = 1024,        /* entries in an array "prompt" */
    IAS_OPENAI_MAX_CONTENT_PARTS = 1024,  /* parts in one message's content array */
    IAS_OPENAI_MAX_STOP = 4,              /* entries in an array "stop" */
    IAS_OPENAI_MAX_TOKENS_LIMIT = 1048576 /* upper bound for max_tokens */
};

typedef enum {
    IAS_OPENAI_CHAT = 0,   /* POST /v1/chat/completions */
    IAS_OPENAI_COMPLETION, /* POST /v1/completions (legacy) */
} ias_openai_kind;

typedef enum {
    IAS_OPENAI_ROLE_SYSTEM = 0,
    IAS_OPENAI_ROLE_USER,
    IAS_OPENAI_ROLE_ASSISTANT,
    IAS_OPENAI_ROLE_TOOL,
    IAS_OPENAI_ROLE_DEVELOPER,
} ias_openai_role;

typedef struct ias_openai_request {
    ias_openai_kind kind;
    const char *model; /* non-empty, <= IAS_OPENAI_MAX_MODEL_LEN bytes */

    /* Chat: the "messages" array (every entry validated), else NULL. */
    const cJSON *messages;
    /* Completion: the "prompt" string or array of strings, else NULL. */
    const cJSON *prompt;
    size_t nmessages;  /* chat: messages; completion: prompts (1 for a string) */
    size_t text_bytes; /* bytes of all message text parts, or of all prompts */

    bool stream;
    bool include_usage; /* stream_options.include_usage */

    /* Effective generation limit: max_completion_tokens if given (chat), else
     * max_tokens; 0 when the client gave neither (the server picks). */
    long max_tokens;
    bool has_temperature;
    double temperature; /* [0, 2] */
    bool has_top_p;
    double top_p; /* [0, 1] */
    int n;        /* always 1: other values are rejected */

    size_t nstop;
    const char *stop[IAS_OPENAI_MAX_STOP];
    const char *user; /* NULL when absent */
} ias_openai_request;

typedef struct ias_openai_error {
    char param[96];    /* "max_tokens", "messages[3].role"; "" when not about one param */
    char message[256]; /* OpenAI-style sentence */
} ias_openai_error;

/* Validate a chat completion / completion body. On success fill *out and return
 * IAS_OK; on invalid input fill *err and return IAS_ERR (out is then unspecified).
 * body may be any cJSON value (a non-object is an error) or NULL. */
int ias_openai_parse_chat(const cJSON *body, ias_openai_request *out,
                          ias_openai_error *err) IAS_MUSTCHECK;
int ias_openai_parse_completion(const cJSON *body, ias_openai_request *out,
                                ias_openai_error *err) IAS_MUSTCHECK;

/* A rough prompt size for budget reservation, not a tokenizer: one token per
 * four bytes of text (rounded up) plus four per message (role and framing) or
 * per prompt. It overestimates English by design; settle on the real usage. */
uint64_t ias_openai_estimate_prompt_tokens(const ias_openai_request *req);

/* Walk a message "content" value (string, array of parts, or NULL) and call fn
 * for every text fragment: the string itself, or each {"type":"text"} part's
 * text. Non-text parts are skipped. Only meaningful on validated requests. */
typedef void (*ias_openai_text_fn)(const char *text, size_t len, void *arg);
void ias_openai_content_foreach_text(const cJSON *content, ias_openai_text_fn fn, void *arg);

/* The role of a validated message entry, and role names ("user"). */
ias_openai_role ias_openai_message_role(const cJSON *message);
const char *ias_openai_role_name(ias_openai_role role);

#endif
