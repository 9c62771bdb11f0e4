/* Fuzzes the router's reading of upstream chunks and its upstream request
 * body. The input is one chunk (the data of one SSE event), also read as a
 * request body:
 *   - whenever the byte-scan fast path accepts a chunk that is a JSON object,
 *     the full cJSON path counts exactly the same completion tokens;
 *   - a chunk read after another (the input split at its first 0xff byte, or
 *     the input twice), resuming from the memo the first left, is read as it
 *     is alone;
 *   - whenever the strict-scan reading (ias/json_scan.h) answers, it answers
 *     what the cJSON reading does (usage, counts, usage-only, errors);
 *   - whenever a body plan is found, the spliced upstream body is JSON whose
 *     tree is the client's with "model" renamed and, for a stream,
 *     stream_options.include_usage true. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/router/usage.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_scan(const char *d, size_t size)
{
    router_usage a = {0}, b = {0};
    bool only_a = false, only_b = false;
    int ra = usage_chunk_scan(&a, d, size, &only_a), rb;

    if (ra == IAS_AGAIN)
        return;
    rb = usage_chunk_cjson(&b, d, size, &only_b);
    if (ra != rb || a.have_usage != b.have_usage || a.prompt != b.prompt ||
        a.completion != b.completion || a.counted != b.counted || only_a != only_b)
        abort();
}

static void check_memo(const char *d, size_t size)
{
    const char *cut = memchr(d, 0xff, size);
    size_t alen = cut ? (size_t)(cut - d) : size;
    const char *b = cut ? cut + 1 : d;
    size_t blen = cut ? size - alen - 1 : size;
    router_usage *primed = calloc(1, sizeof(*primed)), *alone = calloc(1, sizeof(*alone));
    long long before;
    bool rp, ra;

    if (primed == NULL || alone == NULL)
        abort();
    (void)usage_chunk_fast(primed, d, alen);
    before = primed->counted;
    rp = usage_chunk_fast(primed, b, blen);
    ra = usage_chunk_fast(alone, b, blen);
    if (rp != ra || primed->counted - before != alone->counted)
        abort();
    free(primed);
    free(alone);
}

/* The spliced body and the client's tree edited the same way print alike. */
static void check_body(const char *d, size_t size, bool stream)
{
    router_body_plan p;
    char model[256 + 1], *owned = NULL, *pw, *pg;
    const char *out;
    size_t len;
    cJSON *want, *got, *opts;

    if (router_body_plan_scan(d, size, &p, model, sizeof(model)) != IAS_OK)
        return;
    out = router_body_build(d, size, &p, model, "up\"name", stream, &len, &owned);
    want = cJSON_ParseWithLength(d, size);
    got = cJSON_ParseWithLength(out, len);
    if (want == NULL || got == NULL || !ias_json_scan_document(out, len, NULL, NULL))
        abort();
    cJSON_ReplaceItemInObjectCaseSensitive(want, "model", cJSON_CreateString("up\"name"));
    if (stream) {
        opts = cJSON_GetObjectItemCaseSensitive(want, "stream_options");
        if (opts == NULL) {
            opts = cJSON_AddObjectToObject(want, "stream_options");
        } else if (!cJSON_IsObject(opts)) {
            opts = cJSON_CreateObject();
            cJSON_ReplaceItemInObjectCaseSensitive(want, "stream_options", opts);
        }
        if (cJSON_GetObjectItemCaseSensitive(opts, "include_usage") != NULL) {
            cJSON_ReplaceItemInObjectCaseSensitive(opts, "include_usage", cJSON_CreateTrue());
        } else {
            cJSON *t = cJSON_CreateTrue(); /* the splice puts it first */
            t->string = strdup("include_usage");
            if (t->string == NULL)
                abort();
            cJSON_InsertItemInArray(opts, 0, t);
        }
    }
    pw = cJSON_PrintUnformatted(want);
    pg = cJSON_PrintUnformatted(got);
    if (pw == NULL || pg == NULL || strcmp(pw, pg) != 0)
        abort();
    free(pw);
    free(pg);
    cJSON_Delete(want);
    cJSON_Delete(got);
    free(owned);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    router_usage fast = {0}, full = {0};
    const char *d = (const char *)data;
    bool usage_only;
    cJSON *root;

    if (size > 64 * 1024)
        return 0;
    (void)router_usage_chunk(&full, d, size, &usage_only); /* whichever path it takes */
    check_scan(d, size);
    check_memo(d, size);
    check_body(d, size, size > 0 && (data[size - 1] & 1));
    if (!usage_chunk_fast(&fast, d, size))
        return 0;
    root = cJSON_ParseWithLength(d, size);
    if (root != NULL && cJSON_IsObject(root)) {
        router_usage ref = {0};
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
        if (cJSON_IsArray(choices))
            count_choices(&ref, choices);
        if (ref.counted != fast.counted)
            abort();
    }
    cJSON_Delete(root);
    return 0;
}
