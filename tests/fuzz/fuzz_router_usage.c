/* Fuzzes the router's usage counting of stream chunks: no crash, and whenever
 * the byte-scan fast path accepts a chunk that is a JSON object, the full cJSON
 * path counts exactly the same completion tokens. The input is one chunk (the
 * data of one SSE event). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/router/usage.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    router_usage fast = {0}, full = {0};
    const char *d = (const char *)data;
    bool usage_only;
    cJSON *root;

    if (size > 64 * 1024)
        return 0;
    (void)router_usage_chunk(&full, d, size, &usage_only); /* whichever path it takes */
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
