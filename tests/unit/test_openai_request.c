/* Unit tests for the OpenAI request parser (libcommon/src/openai_request.c). */
#include "testlib.h"

#include "ias/openai.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parsed {
    cJSON *json;
    ias_openai_request req;
    ias_openai_error err;
    int rc;
} parsed;

static parsed parse(ias_openai_kind kind, const char *text)
{
    parsed p;

    memset(&p, 0, sizeof(p));
    p.json = cJSON_Parse(text);
    assert_non_null(p.json);
    if (kind == IAS_OPENAI_CHAT)
        p.rc = ias_openai_parse_chat(p.json, &p.req, &p.err);
    else if (kind == IAS_OPENAI_EMBEDDING)
        p.rc = ias_openai_parse_embedding(p.json, &p.req, &p.err);
    else
        p.rc = ias_openai_parse_completion(p.json, &p.req, &p.err);
    return p;
}

/* Asserts that text fails with exactly this param and message. */
static void expect_error(ias_openai_kind kind, const char *text, const char *param,
                         const char *message)
{
    parsed p = parse(kind, text);

    assert_int_equal(p.rc, IAS_ERR);
    assert_string_equal(p.err.param, param);
    assert_string_equal(p.err.message, message);
    cJSON_Delete(p.json);
}

static void expect_chat_error(const char *text, const char *param, const char *message)
{
    expect_error(IAS_OPENAI_CHAT, text, param, message);
}

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_chat_minimal(void **state)
{
    parsed p = parse(IAS_OPENAI_CHAT, "{\"model\":\"mock-gpt\"," MSGS "}");

    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.kind, IAS_OPENAI_CHAT);
    assert_string_equal(p.req.model, "mock-gpt");
    assert_int_equal(p.req.nmessages, 1);
    assert_int_equal(p.req.text_bytes, 2);
    assert_false(p.req.stream);
    assert_false(p.req.include_usage);
    assert_int_equal(p.req.max_tokens, 0);
    assert_false(p.req.has_temperature);
    assert_false(p.req.has_top_p);
    assert_int_equal(p.req.n, 1);
    assert_int_equal(p.req.nstop, 0);
    assert_null(p.req.user);
    assert_null(p.req.prompt);
    assert_ptr_equal(p.req.messages, cJSON_GetObjectItem(p.json, "messages"));
    cJSON_Delete(p.json);
}

static void test_chat_full(void **state)
{
    parsed p = parse(IAS_OPENAI_CHAT,
                     "{\"model\":\"m\",\"messages\":["
                     "{\"role\":\"system\",\"content\":\"be brief\"},"
                     "{\"role\":\"developer\",\"content\":\"dev\"},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"abc\"},"
                     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"http://x\"}},"
                     "{\"type\":\"text\",\"text\":\"defg\"}]},"
                     "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
                     "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c1\"}],"
                     "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                     "\"max_tokens\":100,\"temperature\":0.5,\"top_p\":1,\"n\":1,"
                     "\"stop\":[\"a\",\"b\",\"c\",\"d\"],\"user\":\"u-1\",\"seed\":7}");

    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nmessages, 5);
    assert_int_equal(p.req.text_bytes, 8 + 3 + 3 + 4 + 2);
    assert_true(p.req.stream);
    assert_true(p.req.include_usage);
    assert_int_equal(p.req.max_tokens, 100);
    assert_true(p.req.has_temperature);
    assert_true(p.req.temperature == 0.5);
    assert_true(p.req.has_top_p);
    assert_true(p.req.top_p == 1.0);
    assert_int_equal(p.req.nstop, 4);
    assert_string_equal(p.req.stop[0], "a");
    assert_string_equal(p.req.stop[3], "d");
    assert_string_equal(p.req.user, "u-1");
    assert_int_equal(ias_openai_message_role(cJSON_GetArrayItem(p.req.messages, 1)),
                     IAS_OPENAI_ROLE_DEVELOPER);
    assert_string_equal(ias_openai_role_name(IAS_OPENAI_ROLE_TOOL), "tool");
    cJSON_Delete(p.json);
}

static void test_unknown_fields_kept(void **state)
{
    const char *body = "{\"model\":\"m\"," MSGS ",\"logit_bias\":{\"50256\":-100},"
                       "\"x_custom\":[1,2,{\"deep\":true}],\"tools\":[]}";
    parsed p = parse(IAS_OPENAI_CHAT, body);
    char *before = cJSON_PrintUnformatted(p.json);

    assert_int_equal(p.rc, IAS_OK);
    /* The parser only reads: the tree (hence the forwarded body) is untouched. */
    cJSON *again = cJSON_Parse(body);
    char *after = cJSON_PrintUnformatted(again);
    assert_string_equal(before, after);
    free(before);
    free(after);
    cJSON_Delete(again);
    cJSON_Delete(p.json);
}

static void test_nulls_mean_absent(void **state)
{
    parsed p = parse(IAS_OPENAI_CHAT,
                     "{\"model\":\"m\"," MSGS ",\"stream\":null,\"stream_options\":null,"
                     "\"max_tokens\":null,\"max_completion_tokens\":null,\"temperature\":null,"
                     "\"top_p\":null,\"n\":null,\"stop\":null,\"user\":null}");

    assert_int_equal(p.rc, IAS_OK);
    assert_false(p.req.stream);
    assert_int_equal(p.req.max_tokens, 0);
    assert_int_equal(p.req.n, 1);
    cJSON_Delete(p.json);
}

static void test_max_completion_tokens_wins(void **state)
{
    parsed p = parse(IAS_OPENAI_CHAT,
                     "{\"model\":\"m\"," MSGS ",\"max_tokens\":10,\"max_completion_tokens\":20}");

    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.max_tokens, 20);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"max_completion_tokens\":3}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.max_tokens, 3);
    cJSON_Delete(p.json);
}

static void test_body_not_object(void **state)
{
    expect_chat_error("[1,2]", "",
                      "Invalid request body: expected a JSON object, but got an array.");
    expect_chat_error("\"x\"", "",
                      "Invalid request body: expected a JSON object, but got a string.");

    ias_openai_request req;
    ias_openai_error err;
    assert_int_equal(ias_openai_parse_chat(NULL, &req, &err), IAS_ERR);
    assert_string_equal(err.message,
                        "Invalid request body: expected a JSON object, but got nothing.");
    /* A NULL err is allowed: the caller only wants a yes/no. */
    assert_int_equal(ias_openai_parse_completion(NULL, &req, NULL), IAS_ERR);
}

static void test_model_errors(void **state)
{
    char body[600];

    expect_chat_error("{" MSGS "}", "model", "'model' is a required property");
    expect_chat_error("{\"model\":null," MSGS "}", "model", "'model' is a required property");
    expect_chat_error("{\"model\":5," MSGS "}", "model",
                      "Invalid type for 'model': expected a string, but got an integer instead.");
    expect_chat_error("{\"model\":\"\"," MSGS "}", "model",
                      "Invalid 'model': string too short. Expected a string with minimum length "
                      "1, but got an empty string instead.");
    snprintf(body, sizeof(body), "{\"model\":\"%0257d\"," MSGS "}", 0);
    expect_chat_error(body, "model",
                      "Invalid 'model': string too long. Expected a string with maximum length "
                      "256, but got a string with length 257 instead.");
    snprintf(body, sizeof(body), "{\"model\":\"%0256d\"," MSGS "}", 0);
    parsed p = parse(IAS_OPENAI_CHAT, body);
    assert_int_equal(p.rc, IAS_OK);
    cJSON_Delete(p.json);
}

static void test_duplicate_keys(void **state)
{
    /* cJSON keeps the first, Python backends the last: refuse rather than guess. */
    expect_chat_error("{\"model\":\"cheap\",\"model\":\"costly\"," MSGS "}", "model",
                      "Duplicate key 'model' in request body.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\","
                      "\"content\":\"b\"}]}",
                      "messages[0].content",
                      "Duplicate key 'messages[0].content' in request body.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                      "\"text\",\"text\":\"a\",\"text\":\"b\"}]}]}",
                      "messages[0].content[0].text",
                      "Duplicate key 'messages[0].content[0].text' in request body.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":{"
                      "\"include_usage\":false,\"include_usage\":true}}",
                      "stream_options.include_usage",
                      "Duplicate key 'stream_options.include_usage' in request body.");
    /* Duplicates of keys the parser does not interpret are left to the backend. */
    parsed p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"foo\":1,\"foo\":2}");
    assert_int_equal(p.rc, IAS_OK);
    cJSON_Delete(p.json);
}

static void test_messages_errors(void **state)
{
    expect_chat_error("{\"model\":\"m\"}", "messages", "'messages' is a required property");
    expect_chat_error("{\"model\":\"m\",\"messages\":\"hi\"}", "messages",
                      "Invalid type for 'messages': expected an array, but got a string instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[]}", "messages",
                      "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                      "but got an empty array instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},3]}",
                      "messages[1]",
                      "Invalid type for 'messages[1]': expected an object, but got an integer "
                      "instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"content\":\"a\"}]}", "messages[0].role",
                      "'messages[0].role' is a required property");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":true,\"content\":\"a\"}]}",
                      "messages[0].role",
                      "Invalid type for 'messages[0].role': expected a string, but got a boolean "
                      "instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"a\"}]}",
                      "messages[0].role",
                      "Invalid value for 'messages[0].role': expected one of 'system', 'user', "
                      "'assistant', 'tool', 'developer'.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content",
                      "'messages[0].content' is a required property");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":1.5}]}",
                      "messages[0].content",
                      "Invalid type for 'messages[0].content': expected a string or an array, "
                      "but got a decimal instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
                      "messages[0].content",
                      "Invalid 'messages[0].content': empty array. Expected an array with minimum "
                      "length 1, but got an empty array instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}",
                      "messages[0].content[0]",
                      "Invalid type for 'messages[0].content[0]': expected an object, but got a "
                      "string instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                      "\"x\"}]}]}",
                      "messages[0].content[0].type",
                      "'messages[0].content[0].type' is a required property");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                      "\"text\",\"text\":\"ok\"},{\"type\":\"text\"}]}]}",
                      "messages[0].content[1].text",
                      "'messages[0].content[1].text' is a required property");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                      "\"text\",\"text\":[]}]}]}",
                      "messages[0].content[0].text",
                      "Invalid type for 'messages[0].content[0].text': expected a string, but got "
                      "an array instead.");
    expect_chat_error("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                      "\"video\"}]}]}",
                      "messages[0].content[0].type",
                      "Invalid value for 'messages[0].content[0].type': expected one of 'text', "
                      "'image_url', 'input_audio', 'file', 'refusal'.");
}

static void test_too_many_messages(void **state)
{
    const char *one = "{\"role\":\"user\",\"content\":\"x\"},";
    size_t n = IAS_OPENAI_MAX_MESSAGES + 1, len = 64 + n * strlen(one);
    char *body = malloc(len);
    char *p;

    assert_non_null(body);
    p = body + sprintf(body, "{\"model\":\"m\",\"messages\":[");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", one);
    strcpy(p - 1, "]}");
    expect_chat_error(body, "messages",
                      "Invalid 'messages': array too long. Expected an array with maximum length "
                      "10000, but got an array with length 10001 instead.");
    free(body);
}

static void test_max_tokens_errors(void **state)
{
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"max_tokens\":\"10\"}", "max_tokens",
                      "Invalid type for 'max_tokens': expected an integer, but got a string "
                      "instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"max_tokens\":1.5}", "max_tokens",
                      "Invalid type for 'max_tokens': expected an integer, but got a decimal "
                      "instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"max_tokens\":0}", "max_tokens",
                      "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
                      "but got 0 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"max_tokens\":-3}", "max_tokens",
                      "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
                      "but got -3 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"max_tokens\":1048577}", "max_tokens",
                      "Invalid 'max_tokens': integer above maximum value. Expected a value <= "
                      "1048576, but got 1048577 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"max_tokens\":1e400}", "max_tokens",
                      "Invalid type for 'max_tokens': expected an integer, but got a decimal "
                      "instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"max_completion_tokens\":true}",
                      "max_completion_tokens",
                      "Invalid type for 'max_completion_tokens': expected an integer, but got a "
                      "boolean instead.");
    parsed p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":1048576}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.max_tokens, 1048576);
    cJSON_Delete(p.json);
    /* 2.0 is an integer in JSON's number model. */
    p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"max_tokens\":2.0}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.max_tokens, 2);
    cJSON_Delete(p.json);
}

static void test_sampling_errors(void **state)
{
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"temperature\":2.5}", "temperature",
                      "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
                      "but got 2.5 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"temperature\":-0.1}", "temperature",
                      "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, "
                      "but got -0.1 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"temperature\":\"hot\"}", "temperature",
                      "Invalid type for 'temperature': expected a number, but got a string "
                      "instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"top_p\":1.01}", "top_p",
                      "Invalid 'top_p': decimal above maximum value. Expected a value <= 1, but "
                      "got 1.01 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"n\":\"1\"}", "n",
                      "Invalid type for 'n': expected an integer, but got a string instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stream\":\"yes\"}", "stream",
                      "Invalid type for 'stream': expected a boolean, but got a string instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"user\":{}}", "user",
                      "Invalid type for 'user': expected a string, but got an object instead.");
}

static void test_stream_options(void **state)
{
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stream_options\":{\"include_usage\":true}}",
                      "stream_options",
                      "The 'stream_options' parameter is only allowed when 'stream' is enabled.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":[]}",
                      "stream_options",
                      "Invalid type for 'stream_options': expected an object, but got an array "
                      "instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stream\":true,\"stream_options\":"
                      "{\"include_usage\":1}}",
                      "stream_options.include_usage",
                      "Invalid type for 'stream_options.include_usage': expected a boolean, but "
                      "got an integer instead.");
    parsed p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"stream\":true,"
                                      "\"stream_options\":{\"continuous_usage_stats\":true}}");
    assert_int_equal(p.rc, IAS_OK);
    assert_true(p.req.stream);
    assert_false(p.req.include_usage);
    cJSON_Delete(p.json);
}

static void test_stop(void **state)
{
    parsed p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":\"END\"}");

    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nstop, 1);
    assert_string_equal(p.req.stop[0], "END");
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"stop\":[]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nstop, 0);
    cJSON_Delete(p.json);

    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop",
                      "Invalid 'stop': array too long. Expected an array with maximum length 4, "
                      "but got an array with length 5 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stop\":[\"a\",7]}", "stop[1]",
                      "Invalid type for 'stop[1]': expected a string, but got an integer "
                      "instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"stop\":7}", "stop",
                      "Invalid type for 'stop': expected a string or an array, but got an integer "
                      "instead.");
}

static void test_completion(void **state)
{
    parsed p = parse(IAS_OPENAI_COMPLETION,
                     "{\"model\":\"m\",\"prompt\":\"once upon\",\"max_tokens\":5,\"echo\":false}");

    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.kind, IAS_OPENAI_COMPLETION);
    assert_null(p.req.messages);
    assert_true(cJSON_IsString(p.req.prompt));
    assert_int_equal(p.req.nmessages, 1);
    assert_int_equal(p.req.text_bytes, 9);
    assert_int_equal(p.req.max_tokens, 5);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"ab\",\"cde\"]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_true(cJSON_IsArray(p.req.prompt));
    assert_int_equal(p.req.nmessages, 2);
    assert_int_equal(p.req.text_bytes, 5);
    cJSON_Delete(p.json);

    /* max_completion_tokens is a chat parameter: ignored (kept) here. */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"max_completion_tokens\":"
                                     "\"junk\"}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.max_tokens, 0);
    cJSON_Delete(p.json);

    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\"}", "prompt",
                 "'prompt' is a required property");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[]}", "prompt",
                 "Invalid 'prompt': empty array. Expected an array with minimum length 1, but got "
                 "an empty array instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",[1]]}", "prompt[1]",
                 "Invalid type for 'prompt[1]': expected a string, but got an array instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":{}}", "prompt",
                 "Invalid type for 'prompt': expected a string or an array, but got an object "
                 "instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":\"1\"}",
                 "max_tokens",
                 "Invalid type for 'max_tokens': expected an integer, but got a string instead.");
    /* A chat body is not a completion body. */
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\"," MSGS "}", "prompt",
                 "'prompt' is a required property");
}

static void test_n(void **state)
{
    parsed p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"n\":2}");

    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.n, 2);
    assert_int_equal(p.req.nprompts, 1);
    assert_int_equal(p.req.nchoices, 2);
    assert_false(p.req.prompt_token_ids);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"n\":128}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nchoices, 128);
    cJSON_Delete(p.json);

    /* absent and null: one choice */
    p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"n\":null}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.n, 1);
    assert_int_equal(p.req.nchoices, 1);
    cJSON_Delete(p.json);

    /* completions: n for every prompt */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\",\"c\"],\"n\":4}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 3);
    assert_int_equal(p.req.nchoices, 12);
    cJSON_Delete(p.json);

    expect_chat_error("{\"model\":\"m\"," MSGS ",\"n\":0}", "n",
                      "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 "
                      "instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"n\":-3}", "n",
                      "Invalid 'n': integer below minimum value. Expected a value >= 1, but got "
                      "-3 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"n\":129}", "n",
                      "Invalid 'n': integer above maximum value. Expected a value <= 128, but got "
                      "129 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"n\":1e300}", "n",
                      "Invalid 'n': integer above maximum value. Expected a value <= 128, but got "
                      "1.0000000000000001e+300 instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"n\":1.5}", "n",
                      "Invalid type for 'n': expected an integer, but got a decimal instead.");
    expect_chat_error("{\"model\":\"m\"," MSGS ",\"n\":true}", "n",
                      "Invalid type for 'n': expected an integer, but got a boolean instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":129}", "n",
                 "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 "
                 "instead.");
}

static void test_best_of(void **state)
{
    /* absent: as many generated as returned */
    parsed p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"n\":2}");

    (void)state;
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.best_of, 2);
    assert_int_equal(p.req.ngenerated, 4);
    cJSON_Delete(p.json);

    /* best_of candidates per prompt are generated (and billed), n returned */
    p = parse(IAS_OPENAI_COMPLETION,
              "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"n\":2,\"best_of\":5}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nchoices, 4);
    assert_int_equal(p.req.ngenerated, 10);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS ",\"best_of\":3}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nchoices, 1);
    assert_int_equal(p.req.ngenerated, 3);
    cJSON_Delete(p.json);

    /* streaming with best_of == n is plain streaming */
    p = parse(IAS_OPENAI_COMPLETION,
              "{\"model\":\"m\",\"prompt\":\"a\",\"stream\":true,\"n\":2,\"best_of\":2}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.ngenerated, 2);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_EMBEDDING, "{\"model\":\"m\",\"input\":\"a\"}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.ngenerated, 0);
    cJSON_Delete(p.json);

    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":3,\"best_of\":2}",
                 "best_of",
                 "Invalid 'best_of': best_of must be greater than or equal to n (3), but got 2 "
                 "instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":129}",
                 "best_of",
                 "Invalid 'best_of': integer above maximum value. Expected a value <= 128, but got "
                 "129 instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":\"2\"}",
                 "best_of",
                 "Invalid type for 'best_of': expected an integer, but got a string instead.");
    expect_error(IAS_OPENAI_COMPLETION,
                 "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":true,\"best_of\":2}", "best_of",
                 "best_of greater than n cannot be used with stream.");
}

static void test_prompt_forms(void **state)
{
    /* a string */
    parsed p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"abc\"}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 1);
    assert_int_equal(p.req.nchoices, 1);
    assert_false(p.req.prompt_token_ids);
    assert_int_equal(p.req.ntoken_ids, 0);
    assert_ptr_equal(ias_openai_prompt_at(&p.req, 0), p.req.prompt);
    assert_null(ias_openai_prompt_at(&p.req, 1));
    cJSON_Delete(p.json);

    /* an array of strings */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"ab\",\"\",\"cde\"]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 3);
    assert_false(p.req.prompt_token_ids);
    assert_int_equal(p.req.text_bytes, 5);
    assert_string_equal(ias_openai_prompt_at(&p.req, 2)->valuestring, "cde");
    assert_null(ias_openai_prompt_at(&p.req, 3));
    cJSON_Delete(p.json);

    /* an array of token ids: one prompt */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,0,2147483647],\"n\":2}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 1);
    assert_int_equal(p.req.nmessages, 1);
    assert_true(p.req.prompt_token_ids);
    assert_int_equal(p.req.ntoken_ids, 3);
    assert_int_equal(p.req.text_bytes, 0);
    assert_int_equal(p.req.nchoices, 2);
    assert_ptr_equal(ias_openai_prompt_at(&p.req, 0), p.req.prompt);
    assert_null(ias_openai_prompt_at(&p.req, 1));
    cJSON_Delete(p.json);

    /* an array of arrays of token ids: one prompt each */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1,2],[3],[4,5,6]]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 3);
    assert_true(p.req.prompt_token_ids);
    assert_int_equal(p.req.ntoken_ids, 6);
    assert_int_equal(p.req.nchoices, 3);
    assert_int_equal(cJSON_GetArraySize(ias_openai_prompt_at(&p.req, 2)), 3);
    cJSON_Delete(p.json);

    /* a single inner array is one prompt too */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[7,8]]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 1);
    assert_int_equal(cJSON_GetArraySize(ias_openai_prompt_at(&p.req, 0)), 2);
    cJSON_Delete(p.json);
}

static void test_prompt_errors(void **state)
{
    /* mixed arrays name the first element of another kind */
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\",3]}", "prompt[2]",
                 "Invalid type for 'prompt[2]': expected a string, but got an integer instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,\"a\"]}", "prompt[1]",
                 "Invalid type for 'prompt[1]': expected an integer, but got a string instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2.5]}", "prompt[1]",
                 "Invalid type for 'prompt[1]': expected an integer, but got a decimal instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,[2]]}", "prompt[1]",
                 "Invalid type for 'prompt[1]': expected an integer, but got an array instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1],2]}", "prompt[1]",
                 "Invalid type for 'prompt[1]': expected an array, but got an integer instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1],[2,\"x\"]]}",
                 "prompt[1][1]",
                 "Invalid type for 'prompt[1][1]': expected an integer, but got a string "
                 "instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1],[[2]]]}", "prompt[1][0]",
                 "Invalid type for 'prompt[1][0]': expected an integer, but got an array "
                 "instead.");
    /* the first element decides: neither text, id nor array */
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[null]}", "prompt[0]",
                 "Invalid type for 'prompt[0]': expected a string, an integer or an array, but "
                 "got null instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[{\"a\":1}]}", "prompt[0]",
                 "Invalid type for 'prompt[0]': expected a string, an integer or an array, but "
                 "got an object instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[1.5]}", "prompt[0]",
                 "Invalid type for 'prompt[0]': expected an integer, but got a decimal instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":7}", "prompt",
                 "Invalid type for 'prompt': expected a string or an array, but got an integer "
                 "instead.");
    /* empty inner arrays */
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[]]}", "prompt[0]",
                 "Invalid 'prompt[0]': empty array. Expected an array with minimum length 1, but "
                 "got an empty array instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1],[]]}", "prompt[1]",
                 "Invalid 'prompt[1]': empty array. Expected an array with minimum length 1, but "
                 "got an empty array instead.");
    /* token id range */
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[5,-1]}", "prompt[1]",
                 "Invalid 'prompt[1]': integer below minimum value. Expected a value >= 0, but "
                 "got -1 instead.");
    expect_error(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[2147483648]]}",
                 "prompt[0][0]",
                 "Invalid 'prompt[0][0]': integer above maximum value. Expected a value <= "
                 "2147483647, but got 2147483648 instead.");
}

/* A prompt array of count elements, each elem (a JSON value), as a body. */
static char *prompt_body(size_t count, const char *elem)
{
    size_t elen = strlen(elem), cap = 64 + count * (elen + 1), len;
    char *s = malloc(cap);

    assert_non_null(s);
    len = (size_t)snprintf(s, cap, "{\"model\":\"m\",\"prompt\":[");
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            s[len++] = ',';
        memcpy(s + len, elem, elen);
        len += elen;
    }
    memcpy(s + len, "]}", 3);
    return s;
}

static void test_prompt_limits(void **state)
{
    char *body;
    parsed p;

    /* IAS_OPENAI_MAX_PROMPTS prompts, of text or of ids */
    body = prompt_body(IAS_OPENAI_MAX_PROMPTS, "\"x\"");
    p = parse(IAS_OPENAI_COMPLETION, body);
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, IAS_OPENAI_MAX_PROMPTS);
    cJSON_Delete(p.json);
    free(body);
    body = prompt_body(IAS_OPENAI_MAX_PROMPTS + 1, "\"x\"");
    expect_error(IAS_OPENAI_COMPLETION, body, "prompt",
                 "Invalid 'prompt': array too long. Expected an array with maximum length 1024, "
                 "but got an array with length 1025 instead.");
    free(body);
    body = prompt_body(IAS_OPENAI_MAX_PROMPTS + 1, "[1]");
    expect_error(IAS_OPENAI_COMPLETION, body, "prompt",
                 "Invalid 'prompt': array too long. Expected an array with maximum length 1024, "
                 "but got an array with length 1025 instead.");
    free(body);

    /* one prompt of ids may be longer than IAS_OPENAI_MAX_PROMPTS... */
    body = prompt_body(5000, "7");
    p = parse(IAS_OPENAI_COMPLETION, body);
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 1);
    assert_int_equal(p.req.ntoken_ids, 5000);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 5000);
    cJSON_Delete(p.json);
    free(body);

    /* ...but ids over all prompts are bounded */
    body = prompt_body(IAS_OPENAI_MAX_TOKEN_IDS + 1, "7");
    expect_error(IAS_OPENAI_COMPLETION, body, "prompt",
                 "Invalid 'prompt': too many token ids. Expected at most 1000000 token ids over "
                 "all prompts.");
    free(body);
    {
        /* 1000 prompts of 1001 ids: the bound is crossed in the last prompt */
        char *inner = prompt_body(1001, "1");
        char *elem = strchr(inner, '[');

        elem[strlen(elem) - 1] = '\0'; /* "[1,1,...]" */
        body = prompt_body(1000, elem);
        expect_error(IAS_OPENAI_COMPLETION, body, "prompt",
                     "Invalid 'prompt': too many token ids. Expected at most 1000000 token ids "
                     "over all prompts.");
        free(body);
        body = prompt_body(999, elem);
        p = parse(IAS_OPENAI_COMPLETION, body);
        assert_int_equal(p.rc, IAS_OK);
        assert_int_equal(p.req.ntoken_ids, 999 * 1001);
        cJSON_Delete(p.json);
        free(body);
        free(inner);
    }
}

static void test_estimate(void **state)
{
    /* 2 bytes -> 1 token, + 4 for the message. */
    parsed p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\"," MSGS "}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 1 + 4);
    cJSON_Delete(p.json);

    /* 8 bytes -> 2, 9 bytes -> 3 (rounded up); two messages -> +8. */
    p = parse(IAS_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":"
                               "\"12345678\"},{\"role\":\"user\",\"content\":\"123456789\"}]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.text_bytes, 17);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 5 + 8);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":\"\"}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 4);
    cJSON_Delete(p.json);

    /* prompts are billed once whatever n: 4 bytes -> 1, + 4 per prompt */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"ab\",\"cd\"],\"n\":5}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 1 + 8);
    cJSON_Delete(p.json);

    /* token ids count exactly, one each, no framing */
    p = parse(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[[1,2,3],[4]]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 4);
    cJSON_Delete(p.json);
}

/* The bound of a body: parse it as kind, return ias_openai_prompt_tokens_max
 * of its length (and its estimate through *estimate when not NULL). */
static uint64_t bound_of(ias_openai_kind kind, const char *body, uint64_t *estimate)
{
    parsed p = parse(kind, body);
    uint64_t max;

    assert_int_equal(p.rc, IAS_OK);
    max = ias_openai_prompt_tokens_max(&p.req, strlen(body));
    if (estimate != NULL)
        *estimate = ias_openai_estimate_prompt_tokens(&p.req);
    cJSON_Delete(p.json);
    return max;
}

static void test_prompt_tokens_max(void **state)
{
    /* 20 CJK characters, 3 UTF-8 bytes each: about 20 tokens in real
     * tokenizers, where the estimate counts 60 / 4 = 15 (+ 4). */
    static const char cjk[] = "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xe4\xbd\xa0"
                              "\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xe4\xbd\xa0\xe5\xa5\xbd"
                              "\xe4\xb8\x96\xe7\x95\x8c\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96"
                              "\xe7\x95\x8c\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c";
    const char *text = "{\"model\":\"m\"," MSGS "}";
    const char *two = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                      "{\"role\":\"user\",\"content\":\"u\",\"name\":\"bob\"}]}";
    const char *tools = "{\"model\":\"m\"," MSGS ",\"tools\":[{\"type\":\"function\","
                        "\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
                        "\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]}";
    const char *functions = "{\"model\":\"m\"," MSGS ",\"functions\":[{\"name\":\"f\"}]}";
    const char *null_tools = "{\"model\":\"m\"," MSGS ",\"tools\":null}";
    const char *escaped = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                          "\"\\u4f60\\u597d\\n\"}]}";
    char body[512];
    uint64_t est;

    assert_int_equal(strlen(cjk), 60);
    /* text: the body's bytes, one message's allowance, the template's */
    assert_int_equal(bound_of(IAS_OPENAI_CHAT, text, &est), strlen(text) +
                                                                IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                                                                IAS_OPENAI_PROMPT_MAX_TEMPLATE);
    assert_true(est < strlen(text));
    assert_int_equal(bound_of(IAS_OPENAI_CHAT, two, NULL),
                     strlen(two) + 2 * IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                         IAS_OPENAI_PROMPT_MAX_TEMPLATE);

    /* CJK: at least a token per byte where the estimate is under one per
     * character */
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
             "\"%s\"}]}",
             cjk);
    assert_true(bound_of(IAS_OPENAI_CHAT, body, &est) >= 60);
    assert_int_equal(est, 15 + 4);
    assert_int_equal(bound_of(IAS_OPENAI_CHAT, body, NULL), strlen(body) +
                                                                IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                                                                IAS_OPENAI_PROMPT_MAX_TEMPLATE);
    /* escapes only shrink: the body's length still bounds the decoded text */
    assert_true(bound_of(IAS_OPENAI_CHAT, escaped, NULL) > strlen(escaped));

    /* tools or functions: the preamble allowance; their bytes are in the body,
     * where the estimate does not count them */
    assert_int_equal(bound_of(IAS_OPENAI_CHAT, tools, &est),
                     strlen(tools) + IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                         IAS_OPENAI_PROMPT_MAX_TOOLS_TEMPLATE);
    assert_int_equal(est, 1 + 4);
    assert_int_equal(bound_of(IAS_OPENAI_CHAT, functions, NULL),
                     strlen(functions) + IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                         IAS_OPENAI_PROMPT_MAX_TOOLS_TEMPLATE);
    assert_int_equal(bound_of(IAS_OPENAI_CHAT, null_tools, NULL),
                     strlen(null_tools) + IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                         IAS_OPENAI_PROMPT_MAX_TEMPLATE);

    /* completions: one allowance per prompt, billed once whatever n */
    snprintf(body, sizeof(body), "{\"model\":\"m\",\"prompt\":[\"ab\",\"cd\"],\"n\":5}");
    assert_int_equal(bound_of(IAS_OPENAI_COMPLETION, body, NULL),
                     strlen(body) + 2 * IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                         IAS_OPENAI_PROMPT_MAX_TEMPLATE);

    /* token ids: exactly one token each, whatever the body's length */
    assert_int_equal(bound_of(IAS_OPENAI_COMPLETION,
                              "{\"model\":\"m\",\"prompt\":[[1,2,3],[4]],\"echo\":true}", NULL),
                     4);
    assert_int_equal(
        bound_of(IAS_OPENAI_COMPLETION, "{\"model\":\"m\",\"prompt\":[100000,200000]}", NULL), 2);

    /* embeddings: text inputs as prompts, token-id inputs exactly */
    snprintf(body, sizeof(body), "{\"model\":\"e\",\"input\":[\"ab\",\"%s\"]}", cjk);
    assert_int_equal(bound_of(IAS_OPENAI_EMBEDDING, body, &est),
                     strlen(body) + 2 * IAS_OPENAI_PROMPT_MAX_PER_MESSAGE +
                         IAS_OPENAI_PROMPT_MAX_TEMPLATE);
    assert_int_equal(est, 16 + 2 * 4); /* ceil(62 / 4): fewer than the 21 characters */
    assert_int_equal(bound_of(IAS_OPENAI_EMBEDDING, "{\"model\":\"e\",\"input\":[1,2,3]}", NULL),
                     3);
    assert_int_equal(
        bound_of(IAS_OPENAI_EMBEDDING, "{\"model\":\"e\",\"input\":[[1,2],[3]]}", NULL), 3);
}

static void collect(const char *text, size_t len, void *arg)
{
    char *buf = arg;

    strncat(buf, text, len);
    strcat(buf, "|");
}

static void test_foreach_text(void **state)
{
    parsed p =
        parse(IAS_OPENAI_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
              "\"text\",\"text\":\"one\"},{\"type\":\"image_url\",\"image_url\":{}},{\"type\":"
              "\"text\",\"text\":\"two\"}]},{\"role\":\"assistant\",\"content\":\"three\"},"
              "{\"role\":\"assistant\"}]}");
    char buf[64] = "";
    const cJSON *msg;

    assert_int_equal(p.rc, IAS_OK);
    cJSON_ArrayForEach(msg, p.req.messages)
    {
        ias_openai_content_foreach_text(cJSON_GetObjectItem(msg, "content"), collect, buf);
    }
    assert_string_equal(buf, "one|two|three|");
    cJSON_Delete(p.json);
}

/* ---- embeddings ---- */

static void test_embedding_forms(void **state)
{
    parsed p = parse(IAS_OPENAI_EMBEDDING, "{\"model\":\"e\",\"input\":\"hello world\"}");

    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.kind, IAS_OPENAI_EMBEDDING);
    assert_string_equal(p.req.model, "e");
    assert_int_equal(p.req.nprompts, 1);
    assert_int_equal(p.req.text_bytes, 11);
    assert_false(p.req.prompt_token_ids);
    assert_false(p.req.stream);
    assert_false(p.req.encoding_base64);
    assert_int_equal(p.req.dimensions, 0);
    assert_int_equal(p.req.nchoices, 0);
    assert_int_equal(p.req.max_tokens, 0);
    assert_null(p.req.user);
    assert_string_equal(ias_openai_prompt_at(&p.req, 0)->valuestring, "hello world");
    /* 11 bytes -> 3, + 4 for the input */
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 3 + 4);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_EMBEDDING,
              "{\"model\":\"e\",\"input\":[\"ab\",\"cde\"],\"encoding_format\":"
              "\"base64\",\"dimensions\":8,\"user\":\"u-1\"}");
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, 2);
    assert_int_equal(p.req.text_bytes, 5);
    assert_true(p.req.encoding_base64);
    assert_int_equal(p.req.dimensions, 8);
    assert_string_equal(p.req.user, "u-1");
    assert_string_equal(ias_openai_prompt_at(&p.req, 1)->valuestring, "cde");
    assert_null(ias_openai_prompt_at(&p.req, 2));
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_EMBEDDING,
              "{\"model\":\"e\",\"input\":[1,2,3],\"encoding_format\":\"float\"}");
    assert_int_equal(p.rc, IAS_OK);
    assert_true(p.req.prompt_token_ids);
    assert_int_equal(p.req.nprompts, 1);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 3);
    assert_false(p.req.encoding_base64);
    cJSON_Delete(p.json);

    p = parse(IAS_OPENAI_EMBEDDING, "{\"model\":\"e\",\"input\":[[1,2],[3]]}");
    assert_int_equal(p.rc, IAS_OK);
    assert_true(p.req.prompt_token_ids);
    assert_int_equal(p.req.nprompts, 2);
    assert_int_equal(cJSON_GetArraySize(ias_openai_prompt_at(&p.req, 0)), 2);
    assert_int_equal(ias_openai_estimate_prompt_tokens(&p.req), 3);
    cJSON_Delete(p.json);

    /* Completion fields mean nothing here and pass through unread, as unknown
     * fields do; nulls are absent. */
    p = parse(IAS_OPENAI_EMBEDDING,
              "{\"model\":\"e\",\"input\":\"x\",\"stream\":\"yes\",\"max_tokens\":-1,\"n\":0,"
              "\"truncate_prompt_tokens\":5,\"encoding_format\":null,\"dimensions\":null}");
    assert_int_equal(p.rc, IAS_OK);
    assert_false(p.req.stream);
    assert_int_equal(p.req.max_tokens, 0);
    assert_int_equal(p.req.n, 1);
    assert_int_equal(p.req.nchoices, 0);
    assert_non_null(cJSON_GetObjectItem(p.json, "truncate_prompt_tokens"));
    cJSON_Delete(p.json);
}

static void test_embedding_errors(void **state)
{
    const ias_openai_kind e = IAS_OPENAI_EMBEDDING;

    expect_error(e, "{\"model\":\"e\"}", "input", "'input' is a required property");
    expect_error(e, "{\"model\":\"e\",\"input\":null}", "input", "'input' is a required property");
    expect_error(e, "{\"input\":\"x\"}", "model", "'model' is a required property");
    expect_error(e, "{\"model\":\"e\",\"prompt\":\"x\"}", "input",
                 "'input' is a required property");
    expect_error(e, "{\"model\":\"e\",\"input\":[]}", "input",
                 "Invalid 'input': empty array. Expected an array with minimum length 1, but got "
                 "an empty array instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":{}}", "input",
                 "Invalid type for 'input': expected a string or an array, but got an object "
                 "instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":[\"a\",3]}", "input[1]",
                 "Invalid type for 'input[1]': expected a string, but got an integer instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":[1,-2]}", "input[1]",
                 "Invalid 'input[1]': integer below minimum value. Expected a value >= 0, but got "
                 "-2 instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":[[1],[2,\"x\"]]}", "input[1][1]",
                 "Invalid type for 'input[1][1]': expected an integer, but got a string instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":[[1],[]]}", "input[1]",
                 "Invalid 'input[1]': empty array. Expected an array with minimum length 1, but "
                 "got an empty array instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":[null]}", "input[0]",
                 "Invalid type for 'input[0]': expected a string, an integer or an array, but got "
                 "null instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":\"x\",\"input\":\"y\"}", "input",
                 "Duplicate key 'input' in request body.");
    expect_error(e, "{\"model\":\"e\",\"input\":\"x\",\"encoding_format\":\"int8\"}",
                 "encoding_format",
                 "Invalid value for 'encoding_format': expected one of 'float', 'base64'.");
    expect_error(e, "{\"model\":\"e\",\"input\":\"x\",\"encoding_format\":1}", "encoding_format",
                 "Invalid type for 'encoding_format': expected a string, but got an integer "
                 "instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":\"x\",\"dimensions\":0}", "dimensions",
                 "Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but "
                 "got 0 instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":\"x\",\"dimensions\":1.5}", "dimensions",
                 "Invalid type for 'dimensions': expected an integer, but got a decimal instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":\"x\",\"dimensions\":65537}", "dimensions",
                 "Invalid 'dimensions': integer above maximum value. Expected a value <= 65536, "
                 "but got 65537 instead.");
    expect_error(e, "{\"model\":\"e\",\"input\":\"x\",\"user\":7}", "user",
                 "Invalid type for 'user': expected a string, but got an integer instead.");
}

/* {"model":"e","input":[elem x count]} */
static char *input_body(size_t count, const char *elem)
{
    size_t elen = strlen(elem), cap = 64 + count * (elen + 1), len;
    char *s = malloc(cap);

    assert_non_null(s);
    len = (size_t)snprintf(s, cap, "{\"model\":\"e\",\"input\":[");
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            s[len++] = ',';
        memcpy(s + len, elem, elen);
        len += elen;
    }
    memcpy(s + len, "]}", 3);
    return s;
}

static void test_embedding_limits(void **state)
{
    char *body;
    parsed p;

    /* OpenAI's 2048 inputs, more than a completion's 1024 prompts */
    body = input_body(IAS_OPENAI_MAX_INPUTS, "\"x\"");
    p = parse(IAS_OPENAI_EMBEDDING, body);
    assert_int_equal(p.rc, IAS_OK);
    assert_int_equal(p.req.nprompts, IAS_OPENAI_MAX_INPUTS);
    cJSON_Delete(p.json);
    free(body);
    body = input_body(IAS_OPENAI_MAX_INPUTS + 1, "\"x\"");
    expect_error(IAS_OPENAI_EMBEDDING, body, "input",
                 "Invalid 'input': array too long. Expected an array with maximum length 2048, "
                 "but got an array with length 2049 instead.");
    free(body);
    body = input_body(IAS_OPENAI_MAX_INPUTS + 1, "[1]");
    expect_error(IAS_OPENAI_EMBEDDING, body, "input",
                 "Invalid 'input': array too long. Expected an array with maximum length 2048, "
                 "but got an array with length 2049 instead.");
    free(body);
    body = input_body(IAS_OPENAI_MAX_TOKEN_IDS + 1, "7");
    expect_error(IAS_OPENAI_EMBEDDING, body, "input",
                 "Invalid 'input': too many token ids. Expected at most 1000000 token ids over "
                 "all prompts.");
    free(body);
}

static void test_kind_path(void **state)
{
    (void)state;
    assert_string_equal(ias_openai_kind_path(IAS_OPENAI_CHAT), "/v1/chat/completions");
    assert_string_equal(ias_openai_kind_path(IAS_OPENAI_COMPLETION), "/v1/completions");
    assert_string_equal(ias_openai_kind_path(IAS_OPENAI_EMBEDDING), "/v1/embeddings");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_minimal),
        cmocka_unit_test(test_chat_full),
        cmocka_unit_test(test_unknown_fields_kept),
        cmocka_unit_test(test_nulls_mean_absent),
        cmocka_unit_test(test_max_completion_tokens_wins),
        cmocka_unit_test(test_body_not_object),
        cmocka_unit_test(test_model_errors),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_messages_errors),
        cmocka_unit_test(test_too_many_messages),
        cmocka_unit_test(test_max_tokens_errors),
        cmocka_unit_test(test_sampling_errors),
        cmocka_unit_test(test_stream_options),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_completion),
        cmocka_unit_test(test_n),
        cmocka_unit_test(test_best_of),
        cmocka_unit_test(test_prompt_forms),
        cmocka_unit_test(test_prompt_errors),
        cmocka_unit_test(test_prompt_limits),
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_prompt_tokens_max),
        cmocka_unit_test(test_foreach_text),
        cmocka_unit_test(test_embedding_forms),
        cmocka_unit_test(test_embedding_errors),
        cmocka_unit_test(test_embedding_limits),
        cmocka_unit_test(test_kind_path),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
