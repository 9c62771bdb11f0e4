/* libFuzzer target: arbitrary bytes -> cJSON -> the three OpenAI request parsers.
 * Checks no crash, no leak, and the invariants the handlers rely on. */
#include "ias/openai.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void count_text(const char *text, size_t len, void *arg)
{
    size_t *total = arg;

    if (strlen(text) != len)
        abort();
    *total += len;
}

/* body_len: the JSON the request was parsed from. */
static void check_ok(const ias_openai_request *req, size_t body_len)
{
    size_t total = 0;
    const cJSON *msg;

    if (req->model == NULL || req->model[0] == '\0' ||
        strlen(req->model) > IAS_OPENAI_MAX_MODEL_LEN)
        abort();
    if (req->n < 1 || req->n > IAS_OPENAI_MAX_N || req->nstop > IAS_OPENAI_MAX_STOP)
        abort();
    /* Budgets reserve for nchoices completions: it must be n per prompt (none
     * for an embedding, which generates nothing). */
    if (req->nprompts < 1 ||
        req->nprompts >
            (req->kind == IAS_OPENAI_EMBEDDING ? IAS_OPENAI_MAX_INPUTS : IAS_OPENAI_MAX_PROMPTS) ||
        req->nchoices != (req->kind == IAS_OPENAI_EMBEDDING ? 0 : (size_t)req->n * req->nprompts) ||
        req->best_of < req->n || req->best_of > IAS_OPENAI_MAX_N ||
        req->ngenerated !=
            (req->kind == IAS_OPENAI_EMBEDDING ? 0 : (size_t)req->best_of * req->nprompts) ||
        req->ntoken_ids > IAS_OPENAI_MAX_TOKEN_IDS ||
        (req->prompt_token_ids ? req->ntoken_ids < req->nprompts || req->text_bytes != 0
                               : req->ntoken_ids != 0))
        abort();
    if (req->max_tokens < 0 || req->max_tokens > IAS_OPENAI_MAX_TOKENS_LIMIT)
        abort();
    if (req->include_usage && !req->stream)
        abort();
    if (req->kind == IAS_OPENAI_EMBEDDING
            ? req->stream || req->max_tokens != 0 || req->n != 1 || req->dimensions < 0 ||
                  req->dimensions > IAS_OPENAI_MAX_DIMENSIONS
            : req->dimensions != 0 || req->encoding_base64)
        abort();
    for (size_t i = 0; i < req->nstop; i++) {
        if (req->stop[i] == NULL)
            abort();
    }
    if (req->kind == IAS_OPENAI_CHAT) {
        if (req->messages == NULL || req->nmessages == 0)
            abort();
        cJSON_ArrayForEach(msg, req->messages)
        {
            (void)ias_openai_role_name(ias_openai_message_role(msg));
            ias_openai_content_foreach_text(cJSON_GetObjectItemCaseSensitive(msg, "content"),
                                            count_text, &total);
        }
        /* The walker and the parser must agree on what counts as text. */
        if (total != req->text_bytes)
            abort();
    } else {
        if (req->prompt == NULL || req->nmessages != req->nprompts)
            abort();
        /* Every prompt is a string, or a non-empty array of token ids. */
        for (size_t i = 0; i < req->nprompts; i++) {
            const cJSON *p = ias_openai_prompt_at(req, i);
            if (req->prompt_token_ids ? !cJSON_IsArray(p) || cJSON_GetArraySize(p) < 1
                                      : !cJSON_IsString(p))
                abort();
        }
        if (ias_openai_prompt_at(req, req->nprompts) != NULL)
            abort();
    }
    /* The reserve's bound covers every byte of text (a decoded JSON string is
     * never longer than its escaped form) and is never below the estimate. */
    uint64_t bound = ias_openai_prompt_tokens_max(req, body_len);
    if (bound < ias_openai_estimate_prompt_tokens(req) ||
        (!req->prompt_token_ids && bound < req->text_bytes) ||
        (req->prompt_token_ids && bound != req->ntoken_ids))
        abort();
}

static void check_err(const ias_openai_error *err)
{
    if (memchr(err->param, '\0', sizeof(err->param)) == NULL ||
        memchr(err->message, '\0', sizeof(err->message)) == NULL || err->message[0] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ias_openai_request req;
    ias_openai_error err;
    cJSON *json = cJSON_ParseWithLength((const char *)data, size);

    if (json == NULL)
        return 0;
    if (ias_openai_parse_chat(json, &req, &err) == IAS_OK)
        check_ok(&req, size);
    else
        check_err(&err);
    if (ias_openai_parse_completion(json, &req, &err) == IAS_OK)
        check_ok(&req, size);
    else
        check_err(&err);
    if (ias_openai_parse_embedding(json, &req, &err) == IAS_OK)
        check_ok(&req, size);
    else
        check_err(&err);
    cJSON_Delete(json);
    return 0;
}
