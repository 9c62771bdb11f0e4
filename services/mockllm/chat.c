/* POST /v1/chat/completions and /v1/completions, streaming and not, shaped
 * like vLLM's OpenAI server (vllm/entrypoints/openai: chat_completion/serving.py,
 * completion/serving.py, protocol.py), plus GET /v1/models.
 *
 * Token accounting mirrors vLLM: a reply cut by max_tokens ends with its last
 * word, finish_reason "length"; a reply that ends by itself ends with an EOS
 * token that carries no text (an empty delta with finish_reason "stop") and
 * counts as a completion token, as vLLM counts EOS.
 *
 * Several choices: n per prompt, and completions take an array of prompts.
 * Choice i answers prompt i / n (sample i % n), OpenAI's and vLLM's order.
 * Streams interleave them as vLLM does (every choice's role event first for
 * chat, then one token of each unfinished choice per round); usage counts
 * every prompt once and sums the completion tokens of all choices. */
#include "mockllm.h"

#include "ias/crypto.h"
#include "ias/log.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    STREAM_HIGH_WATER = 64 * 1024, /* stop producing above this many pending bytes */
    STREAM_LOW_WATER = 16 * 1024,  /* resume at or below this */
    STREAM_BATCH = 64,             /* tokens per loop pass when unthrottled */
};

/* One choice of the reply. */
typedef struct mock_choice {
    mock_textgen text;
    bool stop;       /* ends with EOS ("stop") rather than at the limit ("length") */
    long long words; /* words of text */
    long long total; /* completion tokens: words, + 1 for EOS when stop */
    long long sent;  /* tokens streamed so far */
} mock_choice;

typedef struct mock_gen {
    ias_req *r; /* NULL once the client left */
    mock_ctx *ctx;
    struct event *timer;
    mock_params params;
    mock_prompt *prompts; /* nprompts (chat: 1) */
    size_t nprompts;
    mock_choice *choices; /* n per prompt */
    size_t nchoices, n;
    bool chat, stream, include_usage;
    long long prompt_tokens; /* every prompt once */
    long long total;         /* completion tokens of all choices */
    long long longest;       /* completion tokens of the longest choice */
    long long sent;          /* tokens streamed so far, all choices */
    size_t roles_sent;       /* chat: role events sent (every choice's comes first) */
    size_t cursor;           /* the choice whose token goes next */
    bool round_done;         /* every unfinished choice had a token since the last wait */
    bool counted;            /* included in mockllm_streams_active */
    bool in_pump;            /* on the stack: on_close must not free */
    bool closed;             /* the client left */
    bool done;               /* the reply ended; free when unwinding */
    int64_t created;
    char id[48];
    mock_buf prefix; /* "data: {\"id\":...,\"model\":...," */
    mock_buf chunk;  /* scratch for one event */
    mock_buf token;  /* scratch for one token's text */
} mock_gen;

static void pump(mock_gen *g);

/* ---- errors, as vLLM shapes them: {"error":{"message","type","param","code":<int>}} ---- */

void mock_reply_error(ias_req *r, int status, const char *type, const char *param, const char *fmt,
                      ...)
{
    cJSON *root = cJSON_CreateObject(), *err = cJSON_CreateObject();
    char msg[512];
    va_list ap;

    if (root == NULL || err == NULL)
        ias_die("mockllm: out of memory");
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cJSON_AddItemToObject(root, "error", err);
    cJSON_AddStringToObject(err, "message", msg);
    cJSON_AddStringToObject(err, "type", type);
    if (param != NULL && param[0] != '\0')
        cJSON_AddStringToObject(err, "param", param);
    else
        cJSON_AddNullToObject(err, "param");
    cJSON_AddNumberToObject(err, "code", status);
    (void)ias_reply_json(r, status, root);
    cJSON_Delete(root);
}

const char *mock_error_type(int status)
{
    switch (status) {
    case 400:
        return "BadRequestError";
    case 401:
        return "AuthenticationError";
    case 403:
        return "PermissionDeniedError";
    case 404:
        return "NotFoundError";
    case 408:
        return "RequestTimeoutError";
    case 409:
        return "ConflictError";
    case 422:
        return "UnprocessableEntityError";
    case 429:
        return "RateLimitError";
    case 501:
        return "NotImplementedError";
    case 503:
        return "ServiceUnavailableError";
    default:
        return status >= 500 ? "InternalServerError" : "BadRequestError";
    }
}

/* ---- generation state ---- */

static void gen_free(mock_gen *g)
{
    if (g->timer != NULL)
        event_free(g->timer);
    if (g->counted)
        ias_gauge_add(g->ctx->streams_active, -1);
    for (size_t i = 0; i < g->nprompts; i++)
        mock_prompt_free(&g->prompts[i]);
    free(g->prompts);
    free(g->choices);
    mock_buf_free(&g->prefix);
    mock_buf_free(&g->chunk);
    mock_buf_free(&g->token);
    free(g);
}

/* The client left: cancel timers and free, unless a pass of ours is on the stack. */
static void on_close(ias_req *r, void *arg)
{
    mock_gen *g = arg;

    g->closed = true;
    g->r = NULL;
    if (!g->in_pump)
        gen_free(g);
}

/* Ends our interest in the request before its final reply, so on_close cannot
 * fire for a generation that is being freed. */
static ias_req *detach(mock_gen *g)
{
    ias_req *r = g->r;

    ias_req_on_close(r, NULL, NULL);
    g->done = true;
    return r;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

static void arm(mock_gen *g, long long usec)
{
    struct timeval tv = {.tv_sec = (time_t)(usec / 1000000),
                         .tv_usec = (suseconds_t)(usec % 1000000)};

    if (g->timer == NULL) {
        g->timer = evtimer_new(ias_req_base(g->r), timer_cb, g);
        if (g->timer == NULL)
            ias_die("mockllm: evtimer_new failed");
    }
    if (evtimer_add(g->timer, &tv) != 0)
        ias_die("mockllm: evtimer_add failed");
}

static void drained(ias_req *r, void *arg)
{
    pump(arg);
}

/* Close the client's connection mid-reply: the server shuts its write side
 * (FIN after what is already written), so the client reads a truncated
 * chunked body (no terminating chunk, no [DONE]); ending the reply afterwards
 * only lets the server close the connection. */
static void cut_connection(mock_gen *g)
{
    ias_req *r;

    if (ias_req_cut(g->r) != IAS_OK)
        ias_warn(ias_req_log(g->r), "mock fault cut-after: cannot shut the connection down");
    else
        ias_info(ias_req_log(g->r), "mock fault: connection cut after %lld tokens", g->sent);
    r = detach(g);
    if (g->stream)
        ias_reply_stream_end(r);
    else
        (void)ias_reply(r, 500, "text/plain", "", 0);
}

/* ---- non-streaming ---- */

static cJSON *usage_json(const mock_gen *g, bool details)
{
    cJSON *u = cJSON_CreateObject();

    if (u == NULL)
        ias_die("mockllm: out of memory");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)g->prompt_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(g->prompt_tokens + g->total));
    cJSON_AddNumberToObject(u, "completion_tokens", (double)g->total);
    if (details)
        cJSON_AddNullToObject(u, "prompt_tokens_details");
    return u;
}

static void add_choice(mock_gen *g, cJSON *choices, size_t index)
{
    mock_choice *ch = &g->choices[index];
    cJSON *choice = cJSON_CreateObject(), *msg;
    mock_buf content = {0};
    const char *word;
    size_t len;

    if (choice == NULL)
        ias_die("mockllm: out of memory");
    mock_buf_add(&content, "", 0);
    for (long long i = 0; i < ch->words && mock_textgen_next(&ch->text, &word, &len); i++) {
        if (i > 0)
            mock_buf_add(&content, " ", 1);
        mock_buf_add(&content, word, len);
    }
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddNumberToObject(choice, "index", (double)index);
    if (g->chat) {
        msg = cJSON_AddObjectToObject(choice, "message");
        if (msg == NULL)
            ias_die("mockllm: out of memory");
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddNullToObject(msg, "reasoning_content");
        cJSON_AddStringToObject(msg, "content", content.data);
        cJSON_AddArrayToObject(msg, "tool_calls");
    } else {
        cJSON_AddStringToObject(choice, "text", content.data);
    }
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", ch->stop ? "stop" : "length");
    cJSON_AddNullToObject(choice, "stop_reason");
    if (!g->chat)
        cJSON_AddNullToObject(choice, "prompt_logprobs");
    mock_buf_free(&content);
}

static void reply_full(mock_gen *g)
{
    cJSON *root = cJSON_CreateObject(), *choices;

    if (root == NULL)
        ias_die("mockllm: out of memory");
    cJSON_AddStringToObject(root, "id", g->id);
    cJSON_AddStringToObject(root, "object", g->chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)g->created);
    cJSON_AddStringToObject(root, "model", g->ctx->model);
    choices = cJSON_AddArrayToObject(root, "choices");
    if (choices == NULL)
        ias_die("mockllm: out of memory");
    for (size_t i = 0; i < g->nchoices; i++)
        add_choice(g, choices, i);
    cJSON_AddItemToObject(root, "usage", usage_json(g, true));
    if (g->chat)
        cJSON_AddNullToObject(root, "prompt_logprobs");
    cJSON_AddNullToObject(root, "kv_transfer_params");

    ias_counter_add(g->ctx->tokens_generated, (uint64_t)g->total);
    (void)ias_reply_json(detach(g), 200, root);
    cJSON_Delete(root);
}

/* ---- streaming ---- */

static int send_event(mock_gen *g)
{
    if (ias_reply_stream_chunk(g->r, g->chunk.data, g->chunk.len) != IAS_OK) {
        if (!g->closed) {
            ias_warn(ias_req_log(g->r), "mockllm: stream chunk refused");
            ias_reply_stream_end(detach(g));
        }
        return IAS_ERR;
    }
    return IAS_OK;
}

static void begin_choice(mock_gen *g, size_t index)
{
    g->chunk.len = 0;
    mock_buf_add(&g->chunk, g->prefix.data, g->prefix.len);
    /* One choice is the common case, and every benchmark's: no formatting. */
    if (index == 0)
        mock_buf_adds(&g->chunk, "\"choices\":[{\"index\":0,");
    else
        mock_buf_addf(&g->chunk, "\"choices\":[{\"index\":%zu,", index);
}

static int send_role(mock_gen *g, size_t index)
{
    begin_choice(g, index);
    mock_buf_adds(&g->chunk, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                             "\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    return send_event(g);
}

/* One token: a word (with a leading space after the first) or, last when
 * stop, the EOS token with empty text. The last token carries finish_reason. */
static int send_token(mock_gen *g, size_t index)
{
    mock_choice *ch = &g->choices[index];
    bool last = ch->sent + 1 == ch->total;
    const char *word;
    size_t len;

    g->token.len = 0;
    mock_buf_add(&g->token, "", 0);
    if (ch->sent < ch->words && mock_textgen_next(&ch->text, &word, &len)) {
        if (ch->sent > 0)
            mock_buf_add(&g->token, " ", 1);
        mock_buf_add(&g->token, word, len);
    }
    begin_choice(g, index);
    mock_buf_adds(&g->chunk, g->chat ? "\"delta\":{\"content\":" : "\"text\":");
    mock_buf_add_json_str(&g->chunk, g->token.data, g->token.len);
    mock_buf_adds(&g->chunk, g->chat ? "},\"logprobs\":null," : ",\"logprobs\":null,");
    if (!last)
        mock_buf_adds(&g->chunk, g->chat ? "\"finish_reason\":null}]}\n\n"
                                         : "\"finish_reason\":null,\"stop_reason\":null}]}\n\n");
    else
        mock_buf_addf(&g->chunk, "\"finish_reason\":\"%s\",\"stop_reason\":null}]}\n\n",
                      ch->stop ? "stop" : "length");
    if (send_event(g) != IAS_OK)
        return IAS_ERR;
    ch->sent++;
    g->sent++;
    ias_counter_inc(g->ctx->tokens_generated);
    return IAS_OK;
}

/* Optional usage chunk (choices empty, as vLLM with include_usage), [DONE], end. */
static void finish_stream(mock_gen *g)
{
    if (g->include_usage) {
        g->chunk.len = 0;
        mock_buf_add(&g->chunk, g->prefix.data, g->prefix.len);
        mock_buf_addf(&g->chunk,
                      "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld,"
                      "\"completion_tokens\":%lld}}\n\n",
                      g->prompt_tokens, g->prompt_tokens + g->total, g->total);
        if (send_event(g) != IAS_OK)
            return;
    }
    g->chunk.len = 0;
    mock_buf_adds(&g->chunk, "data: [DONE]\n\n");
    if (send_event(g) != IAS_OK)
        return;
    ias_reply_stream_end(detach(g));
}

/* The first unfinished choice at or after from, or nchoices when none. */
static size_t next_unfinished(const mock_gen *g, size_t from)
{
    while (from < g->nchoices && g->choices[from].sent == g->choices[from].total)
        from++;
    return from;
}

/* One pass of the producer: sends what timing and backpressure allow, then
 * arms the timer or on_drain to come back. Tokens go round robin over the
 * unfinished choices; with a rate, each choice gets one token per 1/rate s (a
 * round), as a batch of sequences decodes in step. */
static void stream_pass(mock_gen *g)
{
    bool cut = g->params.fault.kind == MOCK_FAULT_CUT_AFTER;
    int batch = 0;
    size_t i;

    for (;;) {
        if (g->chat && g->roles_sent < g->nchoices) {
            /* vLLM sends the roles with the first output, not with the headers. */
            if (batch >= STREAM_BATCH) {
                arm(g, 0);
                return;
            }
            if (send_role(g, g->roles_sent) != IAS_OK)
                return;
            g->roles_sent++;
            batch++;
            continue;
        }
        if (cut && (g->sent == g->params.fault.arg || g->sent == g->total)) {
            /* Let everything queued reach the kernel first, then cut. */
            if (ias_reply_stream_pending(g->r) > 0)
                ias_reply_stream_on_drain(g->r, 0, drained, g);
            else
                cut_connection(g);
            return;
        }
        if (g->sent == g->total) {
            finish_stream(g);
            return;
        }
        if (ias_reply_stream_pending(g->r) > STREAM_HIGH_WATER) {
            ias_reply_stream_on_drain(g->r, STREAM_LOW_WATER, drained, g);
            return;
        }
        if (g->params.tokens_per_s > 0 && g->round_done) {
            g->round_done = false;
            arm(g, 1000000 / g->params.tokens_per_s);
            return;
        }
        if (batch >= STREAM_BATCH) {
            arm(g, 0); /* yield the loop to other connections */
            return;
        }
        /* one choice (the common case, and every benchmark's): no search */
        i = g->nchoices == 1 ? 0 : next_unfinished(g, g->cursor);
        if (i == g->nchoices)
            i = next_unfinished(g, 0); /* some choice is unfinished: sent < total */
        if (send_token(g, i) != IAS_OK)
            return;
        g->cursor = g->nchoices == 1 ? 1 : next_unfinished(g, i + 1);
        if (g->cursor == g->nchoices) {
            g->cursor = 0;
            g->round_done = true;
        }
        batch++;
    }
}

static void pump(mock_gen *g)
{
    g->in_pump = true;
    if (g->params.fault.kind == MOCK_FAULT_HANG) {
        /* nothing: wait for on_close */
    } else if (!g->stream) {
        if (g->params.fault.kind == MOCK_FAULT_CUT_AFTER)
            cut_connection(g);
        else
            reply_full(g);
    } else {
        stream_pass(g);
    }
    g->in_pump = false;
    if (g->closed || g->done)
        gen_free(g);
}

/* ---- handlers ---- */

static mock_gen *gen_new(ias_req *r, mock_ctx *ctx, bool chat, const mock_params *params,
                         const uint8_t rnd[16])
{
    mock_gen *g = ias_xcalloc(1, sizeof(*g));
    char hex[33];

    g->r = r;
    g->ctx = ctx;
    g->chat = chat;
    g->params = *params;
    g->created = ias_wall_ms() / 1000;
    if (ias_hex_encode(rnd, 16, hex, sizeof(hex)) < 0)
        ias_die("mockllm: hex encoding failed");
    snprintf(g->id, sizeof(g->id), "%s%s", chat ? "chatcmpl-" : "cmpl-", hex);
    ias_req_on_close(r, on_close, g);
    return g;
}

/* Fills every choice's limits from the request and the model's context;
 * IAS_ERR after answering 400 (vLLM's wording, about the first prompt that
 * does not fit). */
static int plan(mock_gen *g, const ias_openai_request *req)
{
    mock_ctx *ctx = g->ctx;
    long long prompt, limit, natural;

    for (size_t i = 0; i < g->nprompts; i++) {
        prompt = g->prompts[i].prompt_tokens;
        if (prompt >= ctx->context_len) {
            mock_reply_error(g->r, 400, "BadRequestError", "input_tokens",
                             "This model's maximum context length is %lld tokens. However, your "
                             "request has %lld input tokens. Please reduce the length of the "
                             "input messages.",
                             ctx->context_len, prompt);
            return IAS_ERR;
        }
        if (req->max_tokens > 0 && prompt + req->max_tokens > ctx->context_len) {
            mock_reply_error(g->r, 400, "BadRequestError", "max_tokens",
                             "'max_tokens' or 'max_completion_tokens' is too large: %ld. This "
                             "model's maximum context length is %lld tokens and your request "
                             "has %lld input tokens (%ld > %lld - %lld).",
                             req->max_tokens, ctx->context_len, prompt, req->max_tokens,
                             ctx->context_len, prompt);
            return IAS_ERR;
        }
    }
    for (size_t c = 0; c < g->nchoices; c++) {
        const mock_prompt *p = &g->prompts[c / g->n];
        mock_choice *ch = &g->choices[c];

        prompt = p->prompt_tokens;
        limit = req->max_tokens > 0 ? req->max_tokens : ctx->max_tokens_default;
        if (limit > ctx->context_len - prompt)
            limit = ctx->context_len - prompt;
        natural = g->params.echo ? p->echo_words : g->params.natural_tokens;
        if (natural >= 0 && natural < limit) {
            ch->stop = true;
            ch->words = natural;
            ch->total = natural + 1; /* EOS */
        } else {
            ch->stop = false;
            ch->words = limit;
            ch->total = limit;
        }
        g->total += ch->total;
        if (ch->total > g->longest)
            g->longest = ch->total;
    }
    return IAS_OK;
}

static void start(mock_gen *g)
{
    mock_ctx *ctx = g->ctx;
    long long delay_ms = g->params.ttft_ms;

    for (size_t c = 0; c < g->nchoices; c++)
        mock_textgen_init(&g->choices[c].text, &g->prompts[c / g->n], c % g->n);
    if (!g->stream) {
        /* A non-streaming answer takes as long as the stream would have: the
         * choices decode together, so as long as the longest. */
        if (g->params.tokens_per_s > 0)
            delay_ms += g->longest * 1000 / g->params.tokens_per_s;
        if (delay_ms > 0)
            arm(g, delay_ms * 1000);
        else
            pump(g);
        return;
    }
    mock_buf_adds(&g->prefix, "data: {\"id\":\"");
    mock_buf_adds(&g->prefix, g->id);
    mock_buf_addf(&g->prefix, "\",\"object\":\"%s\",\"created\":%lld,\"model\":",
                  g->chat ? "chat.completion.chunk" : "text_completion", (long long)g->created);
    mock_buf_add_json_str(&g->prefix, ctx->model, strlen(ctx->model));
    mock_buf_add(&g->prefix, ",", 1);
    /* Headers go out now, the first token after TTFT, as vLLM's StreamingResponse. */
    if (ias_reply_stream_start(g->r, 200, "text/event-stream; charset=utf-8") != IAS_OK) {
        /* still inside the handler, so on_close cannot have run: free here */
        ias_warn(ias_req_log(g->r), "mockllm: cannot start the stream");
        (void)detach(g);
        gen_free(g);
        return;
    }
    ias_gauge_add(ctx->streams_active, 1);
    g->counted = true;
    if (delay_ms > 0)
        arm(g, delay_ms * 1000);
    else
        pump(g);
}

int mock_parse_request(const mock_ctx *ctx, ias_req *r, ias_openai_kind kind,
                       ias_openai_request *req, cJSON **json)
{
    ias_openai_error perr;
    int rc;

    *json = ias_req_json(r);
    if (*json == NULL)
        return IAS_ERR; /* answered 400 */
    rc = kind == IAS_OPENAI_CHAT         ? ias_openai_parse_chat(*json, req, &perr)
         : kind == IAS_OPENAI_COMPLETION ? ias_openai_parse_completion(*json, req, &perr)
                                         : ias_openai_parse_embedding(*json, req, &perr);
    if (rc != IAS_OK) {
        mock_reply_error(r, 400, "BadRequestError", perr.param, "%s", perr.message);
        return IAS_ERR;
    }
    if (strcmp(req->model, ctx->model) != 0) {
        mock_reply_error(r, 404, "NotFoundError", "model", "The model `%s` does not exist.",
                         req->model);
        return IAS_ERR;
    }
    return IAS_OK;
}

static void handle(ias_req *r, mock_ctx *ctx, bool chat)
{
    ias_openai_request req;
    mock_params params;
    uint8_t rnd[24];
    cJSON *body;
    mock_gen *g;

    if (mock_faults_begin(&ctx->defaults, r, &params, rnd) != IAS_OK)
        return; /* answered: bad X-Mock-* header, status fault or injected error */
    if (params.fault.kind == MOCK_FAULT_HANG) {
        (void)gen_new(r, ctx, chat, &params, rnd); /* freed by on_close */
        return;
    }

    if (mock_parse_request(ctx, r, chat ? IAS_OPENAI_CHAT : IAS_OPENAI_COMPLETION, &req, &body) !=
        IAS_OK)
        return; /* answered */

    g = gen_new(r, ctx, chat, &params, rnd);
    g->stream = req.stream;
    g->include_usage = req.include_usage;
    g->n = (size_t)req.n;
    g->nprompts = req.nprompts;
    g->nchoices = req.nchoices;
    g->prompts = ias_xcalloc(g->nprompts, sizeof(*g->prompts));
    g->choices = ias_xcalloc(g->nchoices, sizeof(*g->choices));
    if (chat) {
        mock_prompt_chat(&req, ctx->model, params.seed, params.echo, &g->prompts[0]);
    } else {
        for (size_t i = 0; i < g->nprompts; i++) {
            const cJSON *p = ias_openai_prompt_at(&req, i);

            if (cJSON_IsString(p))
                mock_prompt_completion(p->valuestring, ctx->model, params.seed, params.echo,
                                       &g->prompts[i]);
            else
                mock_prompt_token_ids(p, ctx->model, params.seed, params.echo, &g->prompts[i]);
        }
    }
    for (size_t i = 0; i < g->nprompts; i++)
        g->prompt_tokens += g->prompts[i].prompt_tokens;
    if (plan(g, &req) != IAS_OK) {
        (void)detach(g);
        gen_free(g);
        return;
    }
    start(g);
}

void mock_handle_chat(ias_req *r, void *ctx)
{
    handle(r, ctx, true);
}

void mock_handle_completions(ias_req *r, void *ctx)
{
    handle(r, ctx, false);
}

/* GET /v1/models: one card, as vLLM's ModelCard. */
void mock_handle_models(ias_req *r, void *arg)
{
    mock_ctx *ctx = arg;
    cJSON *root = cJSON_CreateObject(), *data, *card, *perms, *perm;
    int64_t now = ias_wall_ms() / 1000;
    char uuid[IAS_UUID_STR_LEN + 1], permid[64];
    size_t j = 0;

    if (root == NULL)
        ias_die("mockllm: out of memory");
    cJSON_AddStringToObject(root, "object", "list");
    data = cJSON_AddArrayToObject(root, "data");
    card = cJSON_CreateObject();
    perm = cJSON_CreateObject();
    if (data == NULL || card == NULL || perm == NULL)
        ias_die("mockllm: out of memory");
    cJSON_AddItemToArray(data, card);
    cJSON_AddStringToObject(card, "id", ctx->model);
    cJSON_AddStringToObject(card, "object", "model");
    cJSON_AddNumberToObject(card, "created", (double)now);
    cJSON_AddStringToObject(card, "owned_by", "ias-mock");
    cJSON_AddStringToObject(card, "root", ctx->model);
    cJSON_AddNullToObject(card, "parent");
    cJSON_AddNumberToObject(card, "max_model_len", (double)ctx->context_len);
    perms = cJSON_AddArrayToObject(card, "permission");
    if (perms == NULL)
        ias_die("mockllm: out of memory");
    cJSON_AddItemToArray(perms, perm);
    ias_uuid_v4(uuid);
    j = (size_t)snprintf(permid, sizeof(permid), "modelperm-");
    for (const char *p = uuid; *p && j + 1 < sizeof(permid); p++) {
        if (*p != '-')
            permid[j++] = *p;
    }
    permid[j] = '\0';
    cJSON_AddStringToObject(perm, "id", permid);
    cJSON_AddStringToObject(perm, "object", "model_permission");
    cJSON_AddNumberToObject(perm, "created", (double)now);
    cJSON_AddFalseToObject(perm, "allow_create_engine");
    cJSON_AddTrueToObject(perm, "allow_sampling");
    cJSON_AddTrueToObject(perm, "allow_logprobs");
    cJSON_AddFalseToObject(perm, "allow_search_indices");
    cJSON_AddTrueToObject(perm, "allow_view");
    cJSON_AddFalseToObject(perm, "allow_fine_tuning");
    cJSON_AddStringToObject(perm, "organization", "*");
    cJSON_AddNullToObject(perm, "group");
    cJSON_AddFalseToObject(perm, "is_blocking");
    (void)ias_reply_json(r, 200, root);
    cJSON_Delete(root);
}
