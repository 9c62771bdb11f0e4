/* Query-string lookup and percent-decoding.
 * Input: <buflen byte><name>\n<query>. */
#include "ias/query.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in, *nl, *name, *query;
    char big[4096], small[65], dec[8192];
    size_t smalllen;
    ias_query_rc a, b;
    long long v = 0;
    int n;

    if (size < 1)
        return 0;
    smalllen = (size_t)(data[0] % 65);
    in = malloc(size);
    if (!in)
        return 0;
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';

    /* decoding straight from the raw bytes (NULs included) */
    for (int plus = 0; plus < 2; plus++) {
        n = ias_url_decode((const char *)data + 1, size - 1, plus, dec, sizeof(dec));
        if (n >= 0) {
            if ((size_t)n > size - 1 || strlen(dec) != (size_t)n)
                abort();
        } else if (n != IAS_QUERY_MALFORMED && n != IAS_QUERY_TOOLONG) {
            abort();
        } else if (dec[0] != '\0') {
            abort();
        }
    }

    nl = strchr(in, '\n');
    name = in;
    query = nl ? nl + 1 : NULL;
    if (nl)
        *nl = '\0';

    a = ias_query_get(query, name, big, sizeof(big));
    b = ias_query_get(query, name, small, smalllen);
    if (a == IAS_QUERY_FOUND) {
        size_t len = strlen(big);

        /* the same answer whatever the buffer, unless it does not fit */
        if (len < smalllen) {
            if (b != IAS_QUERY_FOUND || strcmp(big, small) != 0)
                abort();
        } else if (b != IAS_QUERY_TOOLONG) {
            abort();
        }
    } else if (a == IAS_QUERY_MISSING || a == IAS_QUERY_MALFORMED) {
        if (b != a && !(smalllen == 0 && b == IAS_QUERY_TOOLONG))
            abort();
        if (big[0] != '\0')
            abort();
    } else if (a != IAS_QUERY_TOOLONG) {
        abort();
    }
    if (smalllen > 0 && strnlen(small, smalllen) >= smalllen)
        abort();
    (void)ias_query_get_ll(query, name, -1000, 1000, &v);
    if (v < -1000 || v > 1000)
        abort();
    free(in);
    return 0;
}
