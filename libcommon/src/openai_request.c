/* OpenAI chat/completion/embedding request validation (see ias/openai.h). */
#include "ias/openai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const role_names[] = {
    [IAS_OPENAI_ROLE_SYSTEM] = "system",       [IAS_OPENAI_ROLE_USER] = "user",
    [IAS_OPENAI_ROLE_ASSISTANT] = "assistant", [IAS_OPENAI_ROLE_TOOL] = "tool",
    [IAS_OPENAI_ROLE_DEVELOPER] = "developer",
};

static int fail(ias_openai_error *err, const char *param, const char *fmt, ...) IAS_PRINTF(3, 4);

static int fail(ias_openai_error *err, const char *param, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return IAS_ERR;
    (void)ias_strlcpy(err->param, param != NULL ? param : "", sizeof(err->param));
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return IAS_ERR;
}

static bool is_integral(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && floor(v->valuedouble) == v->valuedouble;
}

/* "a string", "an integer", ... as OpenAI words it in type errors. */
static const char *type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    if (is_integral(v))
        return "an integer";
    if (cJSON_IsNumber(v))
        return "a decimal";
    return "an unknown type";
}

static int type_error(ias_openai_error *err, const char *param, const char *expected,
                      const cJSON *got)
{
    return fail(err, param, "Invalid type for '%s': expected %s, but got %s instead.", param,
                expected, type_name(got));
}

/* Finds key in obj, refusing duplicates: cJSON keeps the first occurrence while
 * most backends keep the last, so a duplicated key we act on (model, messages,
 * content...) could make us validate one value and forward another. */
static int get_unique(const cJSON *obj, const char *key, const char *prefix, const cJSON **out,
                      ias_openai_error *err)
{
    const cJSON *it, *found = NULL;
    char param[128];

    cJSON_ArrayForEach(it, obj)
    {
        if (it->string == NULL || strcmp(it->string, key) != 0)
            continue;
        if (found != NULL) {
            snprintf(param, sizeof(param), "%s%s", prefix, key);
            return fail(err, param, "Duplicate key '%s' in request body.", param);
        }
        found = it;
    }
    *out = found;
    return IAS_OK;
}

/* Absent and JSON null both mean "not given" for optional parameters. */
static bool given(const cJSON *v)
{
    return v != NULL && !cJSON_IsNull(v);
}

static int parse_bool(const cJSON *obj, const char *key, const char *prefix, bool *out,
                      ias_openai_error *err)
{
    const cJSON *v;
    char param[96];

    if (get_unique(obj, key, prefix, &v, err) != IAS_OK)
        return IAS_ERR;
    *out = false;
    if (!given(v))
        return IAS_OK;
    snprintf(param, sizeof(param), "%s%s", prefix, key);
    if (!cJSON_IsBool(v))
        return type_error(err, param, "a boolean", v);
    *out = cJSON_IsTrue(v);
    return IAS_OK;
}

/* v is an integer in [lo, hi], or the 400 OpenAI answers (param names it). */
static int check_int(const cJSON *v, const char *param, long lo, long hi, ias_openai_error *err)
{
    if (!is_integral(v))
        return type_error(err, param, "an integer", v);
    if (v->valuedouble < (double)lo)
        return fail(err, param,
                    "Invalid '%s': integer below minimum value. Expected a value >= %ld, but got "
                    "%.17g instead.",
                    param, lo, v->valuedouble);
    if (v->valuedouble > (double)hi)
        return fail(err, param,
                    "Invalid '%s': integer above maximum value. Expected a value <= %ld, but got "
                    "%.17g instead.",
                    param, hi, v->valuedouble);
    return IAS_OK;
}

/* An optional integer field in [lo, hi]; *out is 0 when absent or null. */
static int parse_int(const cJSON *body, const char *key, long lo, long hi, long *out,
                     ias_openai_error *err)
{
    const cJSON *v;

    *out = 0;
    if (get_unique(body, key, "", &v, err) != IAS_OK)
        return IAS_ERR;
    if (!given(v))
        return IAS_OK;
    if (check_int(v, key, lo, hi, err) != IAS_OK)
        return IAS_ERR;
    *out = (long)v->valuedouble;
    return IAS_OK;
}

static int parse_max_tokens(const cJSON *body, const char *key, long *out, ias_openai_error *err)
{
    return parse_int(body, key, 1, IAS_OPENAI_MAX_TOKENS_LIMIT, out, err);
}

static int parse_range(const cJSON *body, const char *key, double lo, double hi, bool *has,
                       double *out, ias_openai_error *err)
{
    const cJSON *v;

    if (get_unique(body, key, "", &v, err) != IAS_OK)
        return IAS_ERR;
    *has = false;
    if (!given(v))
        return IAS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return type_error(err, key, "a number", v);
    if (v->valuedouble < lo)
        return fail(err, key,
                    "Invalid '%s': decimal below minimum value. Expected a value >= %g, but got "
                    "%g instead.",
                    key, lo, v->valuedouble);
    if (v->valuedouble > hi)
        return fail(err, key,
                    "Invalid '%s': decimal above maximum value. Expected a value <= %g, but got "
                    "%g instead.",
                    key, hi, v->valuedouble);
    *has = true;
    *out = v->valuedouble;
    return IAS_OK;
}

static int parse_model(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    const cJSON *v;
    size_t len;

    if (get_unique(body, "model", "", &v, err) != IAS_OK)
        return IAS_ERR;
    if (!given(v))
        return fail(err, "model", "'model' is a required property");
    if (!cJSON_IsString(v))
        return type_error(err, "model", "a string", v);
    len = strlen(v->valuestring);
    if (len == 0)
        return fail(err, "model",
                    "Invalid 'model': string too short. Expected a string with minimum length "
                    "1, but got an empty string instead.");
    if (len > IAS_OPENAI_MAX_MODEL_LEN)
        return fail(err, "model",
                    "Invalid 'model': string too long. Expected a string with maximum length "
                    "%d, but got a string with length %zu instead.",
                    IAS_OPENAI_MAX_MODEL_LEN, len);
    out->model = v->valuestring;
    return IAS_OK;
}

static int parse_stream(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    const cJSON *opts;

    if (parse_bool(body, "stream", "", &out->stream, err) != IAS_OK)
        return IAS_ERR;
    if (get_unique(body, "stream_options", "", &opts, err) != IAS_OK)
        return IAS_ERR;
    out->include_usage = false;
    if (!given(opts))
        return IAS_OK;
    if (!cJSON_IsObject(opts))
        return type_error(err, "stream_options", "an object", opts);
    /* OpenAI refuses stream_options on a non-streaming request. */
    if (!out->stream)
        return fail(err, "stream_options",
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    return parse_bool(opts, "include_usage", "stream_options.", &out->include_usage, err);
}

static int parse_n(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    long n;

    if (parse_int(body, "n", 1, IAS_OPENAI_MAX_N, &n, err) != IAS_OK)
        return IAS_ERR;
    out->n = n > 0 ? (int)n : 1;
    return IAS_OK;
}

/* best_of (completions in OpenAI, any sampling request in vLLM): candidates
 * generated server-side per prompt, of which n are returned. Every candidate is
 * billed, so budgets must reserve for best_of, not n. */
static int parse_best_of(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    long best_of;

    if (parse_int(body, "best_of", 1, IAS_OPENAI_MAX_N, &best_of, err) != IAS_OK)
        return IAS_ERR;
    out->best_of = out->n;
    if (best_of == 0)
        return IAS_OK;
    if (best_of < out->n)
        return fail(err, "best_of",
                    "Invalid 'best_of': best_of must be greater than or equal to n (%d), but got "
                    "%ld instead.",
                    out->n, best_of);
    if (out->stream && best_of > out->n)
        return fail(err, "best_of", "best_of greater than n cannot be used with stream.");
    out->best_of = (int)best_of;
    return IAS_OK;
}

static int parse_stop(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    const cJSON *v, *it;
    size_t count;
    char param[32];

    if (get_unique(body, "stop", "", &v, err) != IAS_OK)
        return IAS_ERR;
    out->nstop = 0;
    if (!given(v))
        return IAS_OK;
    if (cJSON_IsString(v)) {
        out->stop[out->nstop++] = v->valuestring;
        return IAS_OK;
    }
    if (!cJSON_IsArray(v))
        return type_error(err, "stop", "a string or an array", v);
    count = (size_t)cJSON_GetArraySize(v);
    if (count > IAS_OPENAI_MAX_STOP)
        return fail(err, "stop",
                    "Invalid 'stop': array too long. Expected an array with maximum length %d, "
                    "but got an array with length %zu instead.",
                    IAS_OPENAI_MAX_STOP, count);
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it)) {
            snprintf(param, sizeof(param), "stop[%zu]", out->nstop);
            return type_error(err, param, "a string", it);
        }
        out->stop[out->nstop++] = it->valuestring;
    }
    return IAS_OK;
}

static int parse_user(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    const cJSON *v;

    if (get_unique(body, "user", "", &v, err) != IAS_OK)
        return IAS_ERR;
    out->user = NULL;
    if (!given(v))
        return IAS_OK;
    if (!cJSON_IsString(v))
        return type_error(err, "user", "a string", v);
    out->user = v->valuestring;
    return IAS_OK;
}

/* Fields shared by both endpoints, after the endpoint-specific ones. */
static int parse_common(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    if (parse_stream(body, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_max_tokens(body, "max_tokens", &out->max_tokens, err) != IAS_OK)
        return IAS_ERR;
    if (parse_range(body, "temperature", 0.0, 2.0, &out->has_temperature, &out->temperature, err) !=
        IAS_OK)
        return IAS_ERR;
    if (parse_range(body, "top_p", 0.0, 1.0, &out->has_top_p, &out->top_p, err) != IAS_OK)
        return IAS_ERR;
    if (parse_n(body, out, err) != IAS_OK || parse_best_of(body, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_stop(body, out, err) != IAS_OK)
        return IAS_ERR;
    return parse_user(body, out, err);
}

static int parse_role(const cJSON *msg, const char *prefix, ias_openai_role *role,
                      ias_openai_error *err)
{
    const cJSON *v;
    char param[64];

    if (get_unique(msg, "role", prefix, &v, err) != IAS_OK)
        return IAS_ERR;
    snprintf(param, sizeof(param), "%srole", prefix);
    if (!given(v))
        return fail(err, param, "'%s' is a required property", param);
    if (!cJSON_IsString(v))
        return type_error(err, param, "a string", v);
    for (size_t i = 0; i < IAS_ARRAY_LEN(role_names); i++) {
        if (strcmp(v->valuestring, role_names[i]) == 0) {
            *role = (ias_openai_role)i;
            return IAS_OK;
        }
    }
    return fail(err, param,
                "Invalid value for '%s': expected one of 'system', 'user', 'assistant', 'tool', "
                "'developer'.",
                param);
}

static int parse_part(const cJSON *part, const char *prefix, size_t *text_bytes,
                      ias_openai_error *err)
{
    static const char *const other_types[] = {"image_url", "input_audio", "file", "refusal"};
    const cJSON *type, *text;
    char param[96]; /* prefix is at most 80 bytes (see parse_content) */

    if (!cJSON_IsObject(part)) {
        snprintf(param, sizeof(param), "%.*s", (int)strlen(prefix) - 1, prefix);
        return type_error(err, param, "an object", part);
    }
    if (get_unique(part, "type", prefix, &type, err) != IAS_OK)
        return IAS_ERR;
    snprintf(param, sizeof(param), "%stype", prefix);
    if (!given(type))
        return fail(err, param, "'%s' is a required property", param);
    if (!cJSON_IsString(type))
        return type_error(err, param, "a string", type);
    if (strcmp(type->valuestring, "text") == 0) {
        if (get_unique(part, "text", prefix, &text, err) != IAS_OK)
            return IAS_ERR;
        snprintf(param, sizeof(param), "%stext", prefix);
        if (!given(text))
            return fail(err, param, "'%s' is a required property", param);
        if (!cJSON_IsString(text))
            return type_error(err, param, "a string", text);
        *text_bytes += strlen(text->valuestring);
        return IAS_OK;
    }
    /* Non-text parts pass through for multimodal backends; they add no text. */
    for (size_t i = 0; i < IAS_ARRAY_LEN(other_types); i++) {
        if (strcmp(type->valuestring, other_types[i]) == 0)
            return IAS_OK;
    }
    return fail(err, param,
                "Invalid value for '%s': expected one of 'text', 'image_url', 'input_audio', "
                "'file', 'refusal'.",
                param);
}

static int parse_content(const cJSON *msg, const char *prefix, ias_openai_role role,
                         size_t *text_bytes, ias_openai_error *err)
{
    const cJSON *v, *part;
    char param[48], part_prefix[80];
    size_t count, i = 0;

    if (get_unique(msg, "content", prefix, &v, err) != IAS_OK)
        return IAS_ERR;
    snprintf(param, sizeof(param), "%scontent", prefix);
    if (!given(v)) {
        /* An assistant turn that only carried tool_calls has no content. */
        if (role == IAS_OPENAI_ROLE_ASSISTANT)
            return IAS_OK;
        return fail(err, param, "'%s' is a required property", param);
    }
    if (cJSON_IsString(v)) {
        *text_bytes += strlen(v->valuestring);
        return IAS_OK;
    }
    if (!cJSON_IsArray(v))
        return type_error(err, param, "a string or an array", v);
    count = (size_t)cJSON_GetArraySize(v);
    if (count == 0)
        return fail(err, param,
                    "Invalid '%s': empty array. Expected an array with minimum length 1, but "
                    "got an empty array instead.",
                    param);
    if (count > IAS_OPENAI_MAX_CONTENT_PARTS)
        return fail(err, param,
                    "Invalid '%s': array too long. Expected an array with maximum length %d, "
                    "but got an array with length %zu instead.",
                    param, IAS_OPENAI_MAX_CONTENT_PARTS, count);
    cJSON_ArrayForEach(part, v)
    {
        snprintf(part_prefix, sizeof(part_prefix), "%s[%zu].", param, i++);
        if (parse_part(part, part_prefix, text_bytes, err) != IAS_OK)
            return IAS_ERR;
    }
    return IAS_OK;
}

static int parse_messages(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    const cJSON *v, *msg;
    size_t count, i = 0;
    char prefix[32];

    if (get_unique(body, "messages", "", &v, err) != IAS_OK)
        return IAS_ERR;
    if (!given(v))
        return fail(err, "messages", "'messages' is a required property");
    if (!cJSON_IsArray(v))
        return type_error(err, "messages", "an array", v);
    count = (size_t)cJSON_GetArraySize(v);
    if (count == 0)
        return fail(err, "messages",
                    "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                    "but got an empty array instead.");
    if (count > IAS_OPENAI_MAX_MESSAGES)
        return fail(err, "messages",
                    "Invalid 'messages': array too long. Expected an array with maximum length "
                    "%d, but got an array with length %zu instead.",
                    IAS_OPENAI_MAX_MESSAGES, count);
    cJSON_ArrayForEach(msg, v)
    {
        ias_openai_role role = IAS_OPENAI_ROLE_USER;

        snprintf(prefix, sizeof(prefix), "messages[%zu].", i);
        if (!cJSON_IsObject(msg)) {
            snprintf(prefix, sizeof(prefix), "messages[%zu]", i);
            return type_error(err, prefix, "an object", msg);
        }
        if (parse_role(msg, prefix, &role, err) != IAS_OK)
            return IAS_ERR;
        if (parse_content(msg, prefix, role, &out->text_bytes, err) != IAS_OK)
            return IAS_ERR;
        i++;
    }
    out->messages = v;
    out->nmessages = count;
    return IAS_OK;
}

static int empty_array(ias_openai_error *err, const char *param)
{
    return fail(err, param,
                "Invalid '%s': empty array. Expected an array with minimum length 1, but got an "
                "empty array instead.",
                param);
}

static int too_many_prompts(ias_openai_error *err, const char *key, size_t max, size_t count)
{
    return fail(err, key,
                "Invalid '%s': array too long. Expected an array with maximum length %zu, but "
                "got an array with length %zu instead.",
                key, max, count);
}

static int too_many_token_ids(ias_openai_error *err, const char *key)
{
    return fail(err, key,
                "Invalid '%s': too many token ids. Expected at most %d token ids over all "
                "prompts.",
                key, IAS_OPENAI_MAX_TOKEN_IDS);
}

/* One token id: an integer in [0, 2^31 - 1], as vLLM and OpenAI take them. */
static int check_token_id(const cJSON *v, const char *param, ias_openai_error *err)
{
    return check_int(v, param, 0, 2147483647L, err);
}

/* key[i] of an array of token-id arrays: a non-empty array of token ids. */
static int parse_token_prompt(const cJSON *v, const char *key, size_t i, ias_openai_request *out,
                              ias_openai_error *err)
{
    const cJSON *it;
    size_t count, j = 0;
    char param[48];

    snprintf(param, sizeof(param), "%s[%zu]", key, i);
    if (!cJSON_IsArray(v))
        return type_error(err, param, "an array", v);
    count = (size_t)cJSON_GetArraySize(v);
    if (count == 0)
        return empty_array(err, param);
    if (count > IAS_OPENAI_MAX_TOKEN_IDS - out->ntoken_ids)
        return too_many_token_ids(err, key);
    cJSON_ArrayForEach(it, v)
    {
        snprintf(param, sizeof(param), "%s[%zu][%zu]", key, i, j++);
        if (check_token_id(it, param, err) != IAS_OK)
            return IAS_ERR;
    }
    out->ntoken_ids += count;
    return IAS_OK;
}

/* Completions' "prompt" and embeddings' "input" (key), as OpenAI and vLLM take
 * them: a string, an array of strings, an array of token ids (one prompt), or
 * an array of arrays of token ids (one prompt each); at most max prompts. The
 * first element of an array decides which; an element of another kind is an
 * error naming it, so a prompt is never half text, half ids. */
static int parse_prompt(const cJSON *body, const char *key, size_t max, ias_openai_request *out,
                        ias_openai_error *err)
{
    const cJSON *v, *first, *it;
    size_t count, i = 0;
    char param[48];

    if (get_unique(body, key, "", &v, err) != IAS_OK)
        return IAS_ERR;
    if (!given(v))
        return fail(err, key, "'%s' is a required property", key);
    out->prompt = v;
    if (cJSON_IsString(v)) {
        out->nmessages = out->nprompts = 1;
        out->text_bytes = strlen(v->valuestring);
        return IAS_OK;
    }
    if (!cJSON_IsArray(v))
        return type_error(err, key, "a string or an array", v);
    count = (size_t)cJSON_GetArraySize(v);
    if (count == 0)
        return empty_array(err, key);
    first = v->child;
    if (cJSON_IsString(first)) {
        if (count > max)
            return too_many_prompts(err, key, max, count);
        cJSON_ArrayForEach(it, v)
        {
            if (!cJSON_IsString(it)) {
                snprintf(param, sizeof(param), "%s[%zu]", key, i);
                return type_error(err, param, "a string", it);
            }
            out->text_bytes += strlen(it->valuestring);
            i++;
        }
        out->nmessages = out->nprompts = count;
        return IAS_OK;
    }
    if (cJSON_IsNumber(first)) {
        /* One prompt of token ids. */
        if (count > IAS_OPENAI_MAX_TOKEN_IDS)
            return too_many_token_ids(err, key);
        cJSON_ArrayForEach(it, v)
        {
            snprintf(param, sizeof(param), "%s[%zu]", key, i++);
            if (check_token_id(it, param, err) != IAS_OK)
                return IAS_ERR;
        }
        out->prompt_token_ids = true;
        out->ntoken_ids = count;
        out->nmessages = out->nprompts = 1;
        return IAS_OK;
    }
    if (cJSON_IsArray(first)) {
        if (count > max)
            return too_many_prompts(err, key, max, count);
        cJSON_ArrayForEach(it, v)
        {
            if (parse_token_prompt(it, key, i++, out, err) != IAS_OK)
                return IAS_ERR;
        }
        out->prompt_token_ids = true;
        out->nmessages = out->nprompts = count;
        return IAS_OK;
    }
    snprintf(param, sizeof(param), "%s[0]", key);
    return type_error(err, param, "a string, an integer or an array", first);
}

/* Embeddings' "encoding_format": "float" (the default) or "base64". */
static int parse_encoding_format(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    const cJSON *v;

    if (get_unique(body, "encoding_format", "", &v, err) != IAS_OK)
        return IAS_ERR;
    out->encoding_base64 = false;
    if (!given(v))
        return IAS_OK;
    if (!cJSON_IsString(v))
        return type_error(err, "encoding_format", "a string", v);
    if (strcmp(v->valuestring, "base64") == 0)
        out->encoding_base64 = true;
    else if (strcmp(v->valuestring, "float") != 0)
        return fail(err, "encoding_format",
                    "Invalid value for 'encoding_format': expected one of 'float', 'base64'.");
    return IAS_OK;
}

/* Embeddings' "dimensions": a positive integer (models that support it cut
 * their vectors to that size; the others refuse it themselves). */
static int parse_dimensions(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    long d;

    if (parse_int(body, "dimensions", 1, IAS_OPENAI_MAX_DIMENSIONS, &d, err) != IAS_OK)
        return IAS_ERR;
    out->dimensions = (int)d;
    return IAS_OK;
}

static int begin(const cJSON *body, ias_openai_kind kind, ias_openai_request *out,
                 ias_openai_error *err)
{
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->n = 1;
    out->best_of = 1;
    if (err != NULL) {
        err->param[0] = '\0';
        err->message[0] = '\0';
    }
    if (!cJSON_IsObject(body))
        return fail(err, NULL, "Invalid request body: expected a JSON object, but got %s.",
                    body == NULL ? "nothing" : type_name(body));
    return parse_model(body, out, err);
}

/* "tools" or "functions" given with a value (any key occurrence: a backend
 * keeps the last of duplicated keys). Neither is validated; both pass through. */
static bool has_tools(const cJSON *body)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, body)
    {
        if (it->string != NULL && given(it) &&
            (strcmp(it->string, "tools") == 0 || strcmp(it->string, "functions") == 0))
            return true;
    }
    return false;
}

int ias_openai_parse_chat(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    long max_completion_tokens;

    if (begin(body, IAS_OPENAI_CHAT, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_messages(body, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_common(body, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_max_tokens(body, "max_completion_tokens", &max_completion_tokens, err) != IAS_OK)
        return IAS_ERR;
    out->nprompts = 1;
    out->nchoices = (size_t)out->n;
    out->ngenerated = (size_t)out->best_of;
    out->tools = has_tools(body);
    /* As vLLM and OpenAI: max_completion_tokens supersedes the deprecated max_tokens. */
    if (max_completion_tokens > 0)
        out->max_tokens = max_completion_tokens;
    return IAS_OK;
}

int ias_openai_parse_completion(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    if (begin(body, IAS_OPENAI_COMPLETION, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_prompt(body, "prompt", IAS_OPENAI_MAX_PROMPTS, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_common(body, out, err) != IAS_OK)
        return IAS_ERR;
    /* As OpenAI: n completions for every prompt, best_of generated. */
    out->nchoices = (size_t)out->n * out->nprompts;
    out->ngenerated = (size_t)out->best_of * out->nprompts;
    return IAS_OK;
}

int ias_openai_parse_embedding(const cJSON *body, ias_openai_request *out, ias_openai_error *err)
{
    if (begin(body, IAS_OPENAI_EMBEDDING, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_prompt(body, "input", IAS_OPENAI_MAX_INPUTS, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_encoding_format(body, out, err) != IAS_OK)
        return IAS_ERR;
    if (parse_dimensions(body, out, err) != IAS_OK)
        return IAS_ERR;
    /* Nothing is generated: no stream, no max_tokens, no choices. */
    return parse_user(body, out, err);
}

uint64_t ias_openai_estimate_prompt_tokens(const ias_openai_request *req)
{
    if (req->prompt_token_ids)
        return (uint64_t)req->ntoken_ids;
    return ((uint64_t)req->text_bytes + 3) / 4 + 4 * (uint64_t)req->nmessages;
}

uint64_t ias_openai_prompt_tokens_max(const ias_openai_request *req, size_t body_len)
{
    uint64_t fixed =
        req->tools ? IAS_OPENAI_PROMPT_MAX_TOOLS_TEMPLATE : IAS_OPENAI_PROMPT_MAX_TEMPLATE;

    if (req->prompt_token_ids)
        return (uint64_t)req->ntoken_ids;
    /* No overflow: nmessages <= IAS_OPENAI_MAX_MESSAGES and body_len is a
     * buffer's length. */
    return (uint64_t)body_len + IAS_OPENAI_PROMPT_MAX_PER_MESSAGE * (uint64_t)req->nmessages +
           fixed;
}

const cJSON *ias_openai_prompt_at(const ias_openai_request *req, size_t i)
{
    if (req->prompt == NULL || i >= req->nprompts)
        return NULL;
    /* a string, or one prompt of token ids: the value itself */
    if (cJSON_IsString(req->prompt) ||
        (req->prompt_token_ids && req->nprompts == 1 && cJSON_IsNumber(req->prompt->child)))
        return req->prompt;
    return cJSON_GetArrayItem(req->prompt, (int)i);
}

void ias_openai_content_foreach_text(const cJSON *content, ias_openai_text_fn fn, void *arg)
{
    const cJSON *part, *type, *text;

    if (cJSON_IsString(content)) {
        fn(content->valuestring, strlen(content->valuestring), arg);
        return;
    }
    if (!cJSON_IsArray(content))
        return;
    cJSON_ArrayForEach(part, content)
    {
        type = cJSON_GetObjectItemCaseSensitive(part, "type");
        text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(type) && strcmp(type->valuestring, "text") == 0 && cJSON_IsString(text))
            fn(text->valuestring, strlen(text->valuestring), arg);
    }
}

ias_openai_role ias_openai_message_role(const cJSON *message)
{
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(message, "role");

    if (cJSON_IsString(role)) {
        for (size_t i = 0; i < IAS_ARRAY_LEN(role_names); i++) {
            if (strcmp(role->valuestring, role_names[i]) == 0)
                return (ias_openai_role)i;
        }
    }
    return IAS_OPENAI_ROLE_USER;
}

const char *ias_openai_role_name(ias_openai_role role)
{
    if ((size_t)role >= IAS_ARRAY_LEN(role_names))
        return "user";
    return role_names[role];
}

const char *ias_openai_kind_path(ias_openai_kind kind)
{
    switch (kind) {
    case IAS_OPENAI_CHAT:
        return "/v1/chat/completions";
    case IAS_OPENAI_COMPLETION:
        return "/v1/completions";
    case IAS_OPENAI_EMBEDDING:
        return "/v1/embeddings";
    }
    return "/v1/completions"; /* unreachable: every kind is listed */
}
