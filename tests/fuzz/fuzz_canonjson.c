/* Canonical JSON: whatever is accepted canonicalises to a fixed point that
 * cJSON can read back; whatever is refused comes with a message. Input: the
 * JSON text (the first byte's low bit selects IAS_CANONJSON_NO_NUL). */
#include "ias/canonjson.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = NULL, *again = NULL, err[200];
    size_t len = 0, len2 = 0;
    unsigned flags;

    if (size < 1)
        return 0;
    flags = (data[0] & 1) ? IAS_CANONJSON_NO_NUL : 0;
    if (ias_canonjson((const char *)data + 1, size - 1, flags, &out, &len, err, sizeof(err)) !=
        IAS_OK) {
        if (out != NULL || err[0] == '\0')
            abort();
        return 0;
    }
    if (strlen(out) != len && !memchr(out, '\0', len))
        abort();
    if (ias_canonjson(out, len, flags, &again, &len2, err, sizeof(err)) != IAS_OK)
        abort();
    if (len2 != len || memcmp(out, again, len) != 0)
        abort();
    /* the output is plain JSON (cJSON stops at a NUL, which only \u0000 escapes
     * could produce, and those stay escaped) */
    {
        cJSON *j = cJSON_ParseWithLength(out, len);
        if (!j)
            abort();
        cJSON_Delete(j);
    }
    free(out);
    free(again);
    return 0;
}
