/* The router's pure accounting code: SSE framing on raw bytes, usage chunks,
 * token counting and the usage event document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <string.h>

#include "../../services/router/usage.c"

static void test_event_end(void **state)
{
    const char *two = "data: a\n\ndata: b\n\n";

    assert_int_equal(router_sse_event_end(two, strlen(two)), 9);
    assert_int_equal(router_sse_event_end("data: a\n", 8), 0);
    assert_int_equal(router_sse_event_end("data: a\r\n\r\nx", 12), 11);
    assert_int_equal(router_sse_event_end("data: a\r\r", 9), 0); /* CR may start CRLF */
    assert_int_equal(router_sse_event_end("data: a\r\rx", 10), 9);
    assert_int_equal(router_sse_event_end(": c\n\n", 5), 5);
    assert_int_equal(router_sse_event_end("", 0), 0);
    /* the LF-only scan */
    assert_int_equal(router_sse_event_end("\n", 1), 1);
    assert_int_equal(router_sse_event_end("a\nb\n", 4), 0);
    assert_int_equal(router_sse_event_end("a\nb\n\nc\n\n", 9), 5);
    assert_int_equal(router_sse_event_end("data: a\n\r\n", 10), 10);
    assert_int_equal(router_sse_event_end_lf(two, strlen(two)), 9);
    assert_int_equal(router_sse_event_end_lf("data: a\n", 8), 0);
    assert_int_equal(router_sse_event_end_lf("a\nb\n\nc\n\n", 9), 5);
}

static void test_chunks(void **state)
{
    router_usage u = {0};
    bool only;
    const char *tok = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}";
    const char *role =
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}";
    const char *usage = "{\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":3}}";
    const char *text = "{\"choices\":[{\"index\":0,\"text\":\" there\"}]}";

    assert_int_equal(router_usage_chunk(&u, role, strlen(role), &only), IAS_OK);
    assert_false(only);
    assert_int_equal(router_usage_chunk(&u, tok, strlen(tok), &only), IAS_OK);
    assert_int_equal(router_usage_chunk(&u, text, strlen(text), &only), IAS_OK);
    assert_int_equal(u.counted, 2);
    assert_int_equal(router_usage_completion(&u, true), 2); /* no usage reported */
    assert_int_equal(router_usage_chunk(&u, usage, strlen(usage), &only), IAS_OK);
    assert_true(only);
    assert_true(u.have_usage);
    assert_int_equal(u.prompt, 8);
    assert_int_equal(router_usage_completion(&u, true), 3);
    assert_int_equal(router_usage_completion(&u, false), 2); /* aborted: what was delivered */
    assert_false(u.done);
    assert_int_equal(router_usage_chunk(&u, "[DONE]", 6, &only), IAS_OK);
    assert_true(u.done);
    assert_int_equal(router_usage_chunk(&u, "nope", 4, &only), IAS_ERR);
}

/* The cJSON-free path for plain content chunks counts exactly what the full
 * parse counts, and declines (false) whatever it cannot vouch for. */
static void test_chunk_fast_path(void **state)
{
    static const struct {
        const char *chunk;
        bool fast; /* expected to take the fast path */
    } cases[] = {
        {"{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi \"},"
         "\"finish_reason\":null}]}",
         true},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}", true},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}", true},
        {"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", true},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"say \\\"content\\\":\\\"x\"}}]}",
         true},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\": \"spaced\"}}]}", true},
        {"{\"choices\": [{\"index\":0,\"delta\":{\"content\":\"a\"}}]}", true},
        {"{\"delta\":{\"content\":\"a\"},\"choices\":[{\"index\":0}]}", true},
        {"{\"choices\":[{\"index\":0,\"deltd\":{\"content\":\"a\"}}]}", true},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"say \\\"content\":\"a\"}}]}", false},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"con\\u0074ent\":\"a\"}}]}", false},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\u0000\"}}]}", false},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}},"
         "{\"index\":1,\"delta\":{\"content\":\"b\"}}]}",
         false},
        {"{\"choices\":[{\"index\":0,\"text\":\"t\"}]}", false},
        {"{\"choices\":[{\"index\":0,\"message\":{\"content\":\"m\"}}]}", false},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"logprobs\":{\"content\":[]}}]"
         "}",
         true},
        {"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":null}", false},
        {"{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        router_usage fast = {0}, full = {0};
        const char *d = cases[i].chunk;
        cJSON *root = cJSON_Parse(d);
        bool took = usage_chunk_fast(&fast, d, strlen(d));

        assert_non_null(root);
        count_choices(&full, cJSON_GetObjectItemCaseSensitive(root, "choices"));
        cJSON_Delete(root);
        if (took != cases[i].fast)
            fail_msg("case %zu: fast path %s", i, took ? "taken" : "declined");
        if (took && fast.counted != full.counted)
            fail_msg("case %zu: fast counted %lld, full %lld", i, fast.counted, full.counted);
    }
}

/* Chunks of one stream repeat the bytes before their content: the scan
 * resumes from the state it remembered there, and reads every chunk exactly as
 * it reads it alone (through router_usage_chunk, declines included). */
static void test_chunk_memo(void **state)
{
#define PRE "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    static const char *const chunks[] = {
        PRE "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}",
        PRE "\"delta\":{\"content\":\"one\"},\"finish_reason\":null}]}",
        PRE "\"delta\":{\"content\":\"\"},\"finish_reason\":null}]}",
        PRE "\"delta\":{\"content\":\" two\"},\"finish_reason\":null}]}",
        PRE "\"delta\":{\"content\":\"\\u0000\"},\"finish_reason\":null}]}",
        PRE "\"delta\":{\"content\":\"x\",\"content\":\"\"}}]}",
        PRE "\"delta\":{\"content\":\"y\"}},{\"index\":1,\"delta\":{\"content\":\"z\"}}]}",
        PRE "\"delta\":{\"content\":\"w\"}}],\"usage\":{\"prompt_tokens\":4,"
            "\"completion_tokens\":9}}",
        PRE "\"delta\":{\"content\":\"three\"}}]}",
        PRE "\"delta\":{},\"finish_reason\":\"stop\"}]}",
        "{\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
        "\"completion_tokens\":5}}",
        PRE "\"delta\":{\"content\":\"four\"}}]}",
    };
#undef PRE
    router_usage stream = {0};
    bool memo_taken = false;

    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        router_usage alone = {0};
        bool only_s = false, only_a = false;
        long long before = stream.counted;
        int rs = router_usage_chunk(&stream, chunks[i], strlen(chunks[i]), &only_s);
        int ra = router_usage_chunk(&alone, chunks[i], strlen(chunks[i]), &only_a);

        memo_taken = memo_taken || stream.memo.len > 0;
        if (rs != ra || only_s != only_a || stream.counted - before != alone.counted)
            fail_msg("chunk %zu: in the stream %d/%d/%lld, alone %d/%d/%lld", i, rs, only_s,
                     stream.counted - before, ra, only_a, alone.counted);
        if (alone.have_usage &&
            (stream.prompt != alone.prompt || stream.completion != alone.completion))
            fail_msg("chunk %zu: usage differs", i);
    }
    assert_true(memo_taken);
    assert_int_equal(stream.counted, 8); /* one, two, x, y, z, w, three, four */
}

static void test_body(void **state)
{
    router_usage u = {0};
    const char *b =
        "{\"choices\":[{\"message\":{\"content\":\"a b\"}}],\"usage\":{\"prompt_tokens\":5,"
        "\"completion_tokens\":2}}";

    assert_int_equal(router_usage_body(&u, b, strlen(b)), IAS_OK);
    assert_true(u.done);
    assert_int_equal(router_usage_completion(&u, true), 2);
    assert_int_equal(router_usage_body(&u, "[", 1), IAS_ERR);
}

/* Embeddings: usage.prompt_tokens alone is usage; completion is 0. */
static void test_embedding(void **state)
{
    static const char vllm[] =
        "{\"id\":\"embd-1\",\"object\":\"list\",\"data\":[{\"index\":0,\"object\":\"embedding\","
        "\"embedding\":[0.25,-1e-3,{\"x\":[1]}]}],\"usage\":{\"prompt_tokens\":7,"
        "\"total_tokens\":7,\"completion_tokens\":0}}";
    static const char openai[] =
        "{\"data\":[],\"usage\":{\"prompt_tokens\":12,\"total_tokens\":12}}";
    static const char none[] = "{\"data\":[]}";
    static const char negative[] = "{\"usage\":{\"prompt_tokens\":-1}}";
    static const char lenient[] = "{\"id\":\"a\tb\",\"usage\":{\"prompt_tokens\":3}}";
    router_usage u;

    /* OpenAI's usage: prompt_tokens and total_tokens only */
    memset(&u, 0, sizeof(u));
    assert_int_equal(router_usage_embedding(&u, openai, strlen(openai)), IAS_OK);
    assert_true(u.have_usage && u.done);
    assert_int_equal(u.prompt, 12);
    assert_int_equal(router_usage_completion(&u, true), 0);

    /* vLLM's, with completion_tokens 0 */
    memset(&u, 0, sizeof(u));
    assert_int_equal(router_usage_embedding(&u, vllm, strlen(vllm)), IAS_OK);
    assert_true(u.have_usage);
    assert_int_equal(u.prompt, 7);
    assert_int_equal(router_usage_completion(&u, true), 0);

    /* no usage, or none usable: the caller bills its estimate */
    memset(&u, 0, sizeof(u));
    assert_int_equal(router_usage_embedding(&u, none, strlen(none)), IAS_OK);
    assert_false(u.have_usage);
    assert_true(u.done);
    memset(&u, 0, sizeof(u));
    assert_int_equal(router_usage_embedding(&u, negative, strlen(negative)), IAS_OK);
    assert_false(u.have_usage);

    /* bytes only cJSON reads (a raw control byte in a string) take its path */
    memset(&u, 0, sizeof(u));
    assert_int_equal(router_usage_embedding(&u, lenient, strlen(lenient)), IAS_OK);
    assert_true(u.have_usage);
    assert_int_equal(u.prompt, 3);

    memset(&u, 0, sizeof(u));
    assert_int_equal(router_usage_embedding(&u, "[1]", 3), IAS_ERR);
    assert_int_equal(router_usage_embedding(&u, "not json", 8), IAS_ERR);
    assert_false(u.have_usage);
}

/* Reading usage and counting choices without a tree gives what the cJSON
 * reading gives, including its quirks (first of duplicate keys, escaped keys,
 * "\u0000..." as empty text, out-of-range counts); bytes the strict scan
 * refuses go to cJSON. */
static void test_scan_matches_cjson(void **state)
{
    static const char *const docs[] = {
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":3}}",
        "{\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":3},\"choices\":[{\"text\":\"a\"}]}",
        "{\"choices\":[{\"text\":\"a\"},{\"text\":\"\"},{\"text\":\"\\u0000x\"},{\"text\":1}]}",
        "{\"choices\":[{\"message\":{\"content\":\"m\",\"content\":\"\"}},"
        "{\"delta\":{\"content\":\"\"},\"delta\":{\"content\":\"d\"}},"
        "{\"message\":[{\"content\":\"x\"}]},7,null,{\"te\\u0078t\":\"e\"}]}",
        "{\"choices\":{\"text\":\"x\"},\"usage\":{\"prompt_tokens\":1}}",
        "{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":3}}",
        "{\"usage\":{\"prompt_tokens\":1e13,\"completion_tokens\":3}}",
        "{\"usage\":{\"prompt_tokens\":2.9,\"completion_tokens\":\"3\"}}",
        "{\"usage\":{\"prompt_tokens\":2.9,\"completion_tokens\":3.5}}",
        "{\"usage\":{\"prompt_tokens\":\"1\",\"prompt_tokens\":2,\"completion_tokens\":3}}",
        "{\"usage\":null,\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
        "{\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5},\"choices\":[]}",
        "{\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5},\"choices\":null}",
        "{\"choices\":[{\"text\":\"tab\there\"}]}",  /* refused by the scan: cJSON reads it */
        "{\"choices\":[{\"text\":\"a\"}]} trailing", /* likewise */
        "[1]",
        "\"str\"",
    };

    for (size_t i = 0; i < IAS_ARRAY_LEN(docs); i++) {
        router_usage a = {0}, b = {0};
        bool only_a = false, only_b = false;
        int ra, rb;
        const char *d = docs[i];

        ra = usage_chunk_scan(&a, d, strlen(d), &only_a);
        rb = usage_chunk_cjson(&b, d, strlen(d), &only_b);
        if (ra == IAS_AGAIN)
            ra = usage_chunk_cjson(&a, d, strlen(d), &only_a);
        if (ra != rb || a.have_usage != b.have_usage || a.prompt != b.prompt ||
            a.completion != b.completion || a.counted != b.counted || only_a != only_b)
            fail_msg("doc %zu: scan rc %d usage %d %lld/%lld counted %lld only %d; cJSON rc %d "
                     "usage %d %lld/%lld counted %lld only %d",
                     i, ra, a.have_usage, a.prompt, a.completion, a.counted, only_a, rb,
                     b.have_usage, b.prompt, b.completion, b.counted, only_b);
    }
    /* the strict scan refuses these, cJSON takes them */
    router_usage u = {0};
    bool only;
    assert_int_equal(usage_chunk_scan(&u, "{\"a\":01}", 8, &only), IAS_AGAIN);
    assert_int_equal(usage_chunk_scan(&u, "[1]", 3, &only), IAS_ERR);
}

/* The upstream body from the client's bytes, checked through cJSON. */
static cJSON *built(const char *in, const char *client, const char *name, bool stream, bool *same)
{
    router_body_plan p;
    char model[257], *owned = NULL;
    size_t len;
    const char *out;
    cJSON *j;

    assert_int_equal(router_body_plan_scan(in, strlen(in), &p, model, sizeof(model)), IAS_OK);
    assert_string_equal(model, client);
    out = router_body_build(in, strlen(in), &p, model, name, stream, &len, &owned);
    *same = out == in;
    assert_true(*same == (owned == NULL));
    j = cJSON_ParseWithLength(out, len);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, name);
    free(owned);
    return j;
}

static void test_body_plan(void **state)
{
    cJSON *j, *o;
    bool same;
    router_body_plan p;
    char model[8];

    /* nothing to change: the client's bytes go upstream as they are */
    j = built("{\"model\":\"m\",\"stream\":false}", "m", "m", false, &same);
    assert_true(same);
    cJSON_Delete(j);
    /* an escaped but equal name is equal */
    j = built("{\"model\":\"\\u006d\"}", "m", "m", false, &same);
    assert_true(same);
    cJSON_Delete(j);
    /* renamed, with a name that needs escaping */
    j = built(" {\"model\" : \"m\", \"n\":1} ", "m", "up\"stream\\\n", false, &same);
    assert_false(same);
    assert_int_equal(cJSON_GetObjectItem(j, "n")->valueint, 1);
    cJSON_Delete(j);
    /* stream without stream_options: appended */
    j = built("{\"model\":\"m\",\"stream\":true}", "m", "m", true, &same);
    o = cJSON_GetObjectItem(j, "stream_options");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "include_usage")));
    assert_int_equal(cJSON_GetArraySize(o), 1);
    cJSON_Delete(j);
    /* stream_options null: replaced; empty object: filled */
    j = built("{\"stream_options\":null,\"model\":\"m\"}", "m", "x", true, &same);
    o = cJSON_GetObjectItem(j, "stream_options");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "include_usage")));
    cJSON_Delete(j);
    j = built("{\"stream_options\":{ },\"model\":\"m\"}", "m", "m", true, &same);
    o = cJSON_GetObjectItem(j, "stream_options");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "include_usage")));
    cJSON_Delete(j);
    /* other members stay; include_usage false becomes true; true stays as is */
    j = built("{\"model\":\"m\",\"stream_options\":{\"continuous_usage_stats\":true,"
              "\"include_usage\":false}}",
              "m", "n", true, &same);
    o = cJSON_GetObjectItem(j, "stream_options");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "include_usage")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "continuous_usage_stats")));
    assert_int_equal(cJSON_GetArraySize(o), 2);
    cJSON_Delete(j);
    j = built("{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}", "m", "m", true,
              &same);
    assert_true(same);
    cJSON_Delete(j);
    j = built("{\"model\":\"m\",\"stream_options\":{\"x\":1}}", "m", "m", true, &same);
    o = cJSON_GetObjectItem(j, "stream_options");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "include_usage")));
    assert_int_equal(cJSON_GetObjectItem(o, "x")->valueint, 1);
    cJSON_Delete(j);

    /* refused: the caller prints a tree instead */
    static const char *const bad[] = {
        "{\"model\":\"m\",\"model\":\"m\"}",
        "{\"model\":1}",
        "{\"model\":\"\"}",
        "{\"model\":\"a\\u0000b\"}",
        "{\"model\":\"toolongforcap\"}",
        "{\"n\":1}",
        "{\"model\":\"m\",\"stream_options\":{},\"stream_options\":{}}",
        "{\"model\":\"m\",\"stream_options\":{\"include_usage\":1,\"include_usage\":2}}",
        "{\"model\":\"m\",\"x\":01}",
        "[\"model\"]",
        "{\"model\":\"m\"} x",
    };
    for (size_t i = 0; i < IAS_ARRAY_LEN(bad); i++)
        if (router_body_plan_scan(bad[i], strlen(bad[i]), &p, model, sizeof(model)) != IAS_ERR)
            fail_msg("accepted: %s", bad[i]);
}

static void test_event_json(void **state)
{
    router_usage_event e = {.event_id = "0190f5a0-0000-7000-8000-000000000001",
                            .request_id = "req-1",
                            .org_id = "0190f5a0-0000-7000-8000-000000000002",
                            .user_id = NULL,
                            .api_key_id = "",
                            .model = "mock-gpt",
                            .backend = "b1",
                            .occurred_wall_ms = 1795325909123LL,
                            .prompt_tokens = 8,
                            .completion_tokens = 3,
                            .status = 200,
                            .ttft_ms = -1,
                            .duration_ms = 12,
                            .stream = true,
                            .aborted = false};
    char *json = router_usage_event_json(&e);
    cJSON *o = cJSON_Parse(json);

    assert_non_null(o);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "user_id")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "api_key_id")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "ttft_ms")));
    assert_string_equal(cJSON_GetObjectItem(o, "occurred_at")->valuestring,
                        "2026-11-22T05:38:29.123Z");
    assert_int_equal(cJSON_GetObjectItem(o, "completion_tokens")->valueint, 3);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "stream")));
    assert_int_equal(cJSON_GetArraySize(o), 15);
    cJSON_Delete(o);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_end),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_chunk_fast_path),
        cmocka_unit_test(test_chunk_memo),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_event_json),
        cmocka_unit_test(test_scan_matches_cjson),
        cmocka_unit_test(test_body_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
