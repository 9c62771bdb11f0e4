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
        cmocka_unit_test(test_event_end),       cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_chunk_fast_path), cmocka_unit_test(test_body),
        cmocka_unit_test(test_event_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
