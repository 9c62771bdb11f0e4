/* OpenAI request validation: chat completions, legacy completions and embeddings.
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
    IAS_OPENAI_MAX_MODEL_LEN = 256,  /* bytes in "model" */
    IAS_OPENAI_MAX_MESSAGES = 10000, /* entries in "messages" */
    IAS_OPENAI_MAX_PROMPTS = 1024,   /* prompts in an array "prompt" */
    IAS_OPENAI_MAX_INPUTS = 2048,    /* inputs in an array "input" (embeddings), as OpenAI */
    /* "dimensions" of an embedding: no model has vectors near this; it bounds
     * what a backend is asked to produce per input. */
    IAS_OPENAI_MAX_DIMENSIONS = 65536,
    IAS_OPENAI_MAX_N = 128, /* choices per prompt ("n"), as OpenAI */
    /* Token ids over all prompts of one request. An id takes at least two
     * body bytes ("1,"), so the default IAS_MAX_BODY_BYTES (1 MiB) admits about
     * 500k; this bounds the work of a service whose body limit was raised. */
    IAS_OPENAI_MAX_TOKEN_IDS = 1000000,
    IAS_OPENAI_MAX_CONTENT_PARTS = 1024,  /* parts in one message's content array */
    IAS_OPENAI_MAX_STOP = 4,              /* entries in an array "stop" */
    IAS_OPENAI_MAX_TOKENS_LIMIT = 1048576 /* upper bound for max_tokens */
};

/* Allowances of ias_openai_prompt_tokens_max() for the tokens a chat template
 * or tokenizer adds that are not bytes of the body (see there). */
enum {
    /* Per message (chat) or per prompt/input: turn markers such as Llama 3's
     * <|start_header_id|> <|end_header_id|> "\n\n" <|eot_id|> (4), ChatML's
     * <|im_start|> "\n" <|im_end|> "\n" (4), BOS/EOS or CLS/SEP (2). */
    IAS_OPENAI_PROMPT_MAX_PER_MESSAGE = 8,
    /* Once per request without tools: BOS, the generation prompt
     * ("<|start_header_id|>assistant<|end_header_id|>\n\n") and the system
     * text some templates add unasked (Llama 3.1's "Cutting Knowledge Date..."
     * header, about 25; Qwen 2.5's "You are Qwen, created by Alibaba Cloud...",
     * about 20). */
    IAS_OPENAI_PROMPT_MAX_TEMPLATE = 64,
    /* Once per request with "tools" or "functions": the tool-calling preamble
     * templates write around the definitions (Qwen 2.5 and Llama 3.1 about 100,
     * Hermes 2 Pro's pydantic call schema about 200) plus the above. */
    IAS_OPENAI_PROMPT_MAX_TOOLS_TEMPLATE = 512,
};

typedef enum {
    IAS_OPENAI_CHAT = 0,   /* POST /v1/chat/completions */
    IAS_OPENAI_COMPLETION, /* POST /v1/completions (legacy) */
    IAS_OPENAI_EMBEDDING,  /* POST /v1/embeddings */
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
    /* Completion: the "prompt" value; embedding: the "input" value; else NULL.
     * One of: a string; an array of strings; an array of token ids (one
     * prompt); an array of arrays of token ids (one prompt each). Token ids are
     * integers in [0, 2^31 - 1]. Below, "prompts" are an embedding's inputs. */
    const cJSON *prompt;
    size_t nmessages;      /* chat: messages; completion/embedding: prompts (1 for a string) */
    size_t text_bytes;     /* bytes of all message text parts, or of all prompts */
    size_t nprompts;       /* completion: prompts (embedding: inputs); chat: 1 */
    bool prompt_token_ids; /* completion/embedding: the prompt(s) are token ids, not text */
    size_t ntoken_ids;     /* token ids over all prompts (0 for text) */
    /* Completions the request asks for: n per prompt, so n x nprompts
     * (completion) or n (chat); at most IAS_OPENAI_MAX_N x IAS_OPENAI_MAX_PROMPTS.
     * Embedding: 0 (nothing generated). */
    size_t nchoices;
    /* Completions the backend generates and bills: best_of (>= n) per prompt,
     * so ngenerated >= nchoices. Budgets reserve for these. Embedding: 0. */
    size_t ngenerated;

    bool stream;
    bool include_usage; /* stream_options.include_usage */

    /* Effective generation limit: max_completion_tokens if given (chat), else
     * max_tokens; 0 when the client gave neither (the server picks). */
    long max_tokens;
    bool has_temperature;
    double temperature; /* [0, 2] */
    bool has_top_p;
    double top_p; /* [0, 1] */
    int n;        /* choices per prompt, 1..IAS_OPENAI_MAX_N (1 when absent) */
    int best_of;  /* candidates per prompt, n..IAS_OPENAI_MAX_N (n when absent) */
    /* Chat: "tools" or "functions" is given (not null), so the backend's
     * template adds a tool-calling preamble. Not validated: it passes through. */
    bool tools;

    size_t nstop;
    const char *stop[IAS_OPENAI_MAX_STOP];
    const char *user; /* NULL when absent */

    /* Embedding only. */
    bool encoding_base64; /* encoding_format "base64" (else "float", the default) */
    int dimensions;       /* 1..IAS_OPENAI_MAX_DIMENSIONS; 0 when absent (the model's size) */
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
/* An embeddings body: model, "input" (the four forms of a completion's prompt,
 * at most IAS_OPENAI_MAX_INPUTS inputs, errors naming "input[i]"),
 * encoding_format, dimensions, user. Other fields pass through unread (stream,
 * max_tokens, n... mean nothing here: stream stays false, n 1, nchoices 0). */
int ias_openai_parse_embedding(const cJSON *body, ias_openai_request *out,
                               ias_openai_error *err) IAS_MUSTCHECK;

/* A rough prompt size, not a tokenizer: one token per four bytes of text
 * (rounded up) plus four per message (role and framing) or per prompt.
 * Token-id prompts are counted exactly: one token per id. Prompts are billed
 * once however many choices (n) each one gets. An estimate, for what should be
 * near the truth (billing when a backend reports no usage, the router's
 * X-Ias-Prompt-Tokens); it is no bound: CJK text takes about one token per
 * three bytes, and tools, tool_calls, names and response_format schemas are
 * rendered into the prompt but not counted. Budget reserves use
 * ias_openai_prompt_tokens_max(). */
uint64_t ias_openai_estimate_prompt_tokens(const ias_openai_request *req);

/* An upper bound of the prompt tokens any backend can bill for the validated
 * request whose JSON body is body_len bytes, for budget reserves that must not
 * be overshot. Token-id prompts: exactly the number of ids (a backend
 * tokenizes nothing and adds no special tokens to them). Text: body_len, plus
 * IAS_OPENAI_PROMPT_MAX_PER_MESSAGE per message (prompt, input), plus
 * IAS_OPENAI_PROMPT_MAX_TEMPLATE, or IAS_OPENAI_PROMPT_MAX_TOOLS_TEMPLATE
 * when tools are given.
 *
 * Why that bounds: byte-level BPE tokenizers (GPT, Llama 3, Qwen, Mistral's
 * tekken) and SentencePiece with byte fallback never make more tokens than
 * input bytes, and every byte a chat template renders comes from the body
 * except the template's own text, which the allowances cover. JSON escapes
 * only shrink when decoded; the keys and punctuation of the body's own JSON
 * are never rendered, which leaves room for the separators and indentation a
 * template adds when it re-serialises tools.
 *
 * Assumptions: a template renders body text about once; one that repeats it
 * (Hermes 2 Pro writes tool descriptions twice) stays within the bound while
 * the tokenizer averages two bytes or more per token there, as it does for
 * English and CJK. Numbers a template prints longer than the client wrote
 * them (1e9 in a tool schema as 1000000000.0) can exceed it: a client writing
 * its schemas so on purpose overshoots by a fraction of those bytes.
 *
 * Not bounded: images, audio and files in content parts cost tokens that no
 * byte count bounds (an image URL of 50 bytes may be 2,000 tokens); there the
 * caller's cap at the model's context is the only hard bound. */
uint64_t ias_openai_prompt_tokens_max(const ias_openai_request *req, size_t body_len);

/* For a validated completion (embedding) request: the i-th prompt (input), i < nprompts, as a
 * cJSON string (text) or array of integers (token ids). */
const cJSON *ias_openai_prompt_at(const ias_openai_request *req, size_t i);

/* Walk a message "content" value (string, array of parts, or NULL) and call fn
 * for every text fragment: the string itself, or each {"type":"text"} part's
 * text. Non-text parts are skipped. Only meaningful on validated requests. */
typedef void (*ias_openai_text_fn)(const char *text, size_t len, void *arg);
void ias_openai_content_foreach_text(const cJSON *content, ias_openai_text_fn fn, void *arg);

/* The role of a validated message entry, and role names ("user"). */
ias_openai_role ias_openai_message_role(const cJSON *message);
const char *ias_openai_role_name(ias_openai_role role);
/* The OpenAI path of a kind ("/v1/chat/completions", ...): the client's, the
 * router's and the backend's alike. */
const char *ias_openai_kind_path(ias_openai_kind kind);

#endif
