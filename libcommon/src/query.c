/* Query strings and percent-decoding; pure, bounded, no allocation. */
#include "ias/query.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int ias_url_decode(const char *src, size_t srclen, bool plus_space, char *dst, size_t dstlen)
{
    size_t o = 0;
    bool toolong = false;

    /* One pass: a malformed escape anywhere wins over "too long", so the answer
     * does not depend on the buffer size. */
    for (size_t i = 0; i < srclen; i++) {
        unsigned char c = (unsigned char)src[i];

        if (c == '%') {
            int hi, lo;

            if (srclen - i < 3)
                goto malformed;
            hi = ias_hex_digit((unsigned char)src[i + 1]);
            lo = ias_hex_digit((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto malformed;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c == '\0') {
            goto malformed; /* an embedded NUL is as bad as %00 */
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (o + 1 < dstlen && o < INT_MAX)
            dst[o] = (char)c;
        else
            toolong = true;
        o++;
    }
    if (toolong || dstlen == 0) {
        if (dstlen > 0)
            dst[0] = '\0';
        return IAS_QUERY_TOOLONG;
    }
    dst[o] = '\0';
    return (int)o;

malformed:
    if (dstlen > 0)
        dst[0] = '\0';
    return IAS_QUERY_MALFORMED;
}

ias_query_rc ias_query_get(const char *query, const char *name, char *buf, size_t buflen)
{
    size_t namelen = strlen(name);
    const char *p = query;

    if (buflen > 0)
        buf[0] = '\0';
    if (!p)
        return IAS_QUERY_MISSING;
    while (*p) {
        const char *end = strchr(p, '&');
        const char *eq;
        size_t pairlen, keylen;
        char key[256];
        int klen;

        pairlen = end ? (size_t)(end - p) : strlen(p);
        eq = memchr(p, '=', pairlen);
        keylen = eq ? (size_t)(eq - p) : pairlen;
        if (pairlen == 0)
            goto next;
        klen = ias_url_decode(p, keylen, true, key, sizeof(key));
        if (klen == IAS_QUERY_MALFORMED)
            return IAS_QUERY_MALFORMED;
        /* a key longer than any name we could be asked for cannot match */
        if (klen >= 0 && (size_t)klen == namelen && memcmp(key, name, namelen) == 0) {
            int vlen;

            if (!eq) {
                if (buflen == 0)
                    return IAS_QUERY_TOOLONG;
                return IAS_QUERY_FOUND;
            }
            vlen = ias_url_decode(eq + 1, pairlen - keylen - 1, true, buf, buflen);
            if (vlen < 0)
                return (ias_query_rc)vlen;
            return IAS_QUERY_FOUND;
        }
    next:
        if (!end)
            break;
        p = end + 1;
    }
    return IAS_QUERY_MISSING;
}

ias_query_rc ias_query_get_ll(const char *query, const char *name, long long min, long long max,
                              long long *out)
{
    char buf[32];
    char *endp;
    long long v;
    ias_query_rc rc = ias_query_get(query, name, buf, sizeof(buf));

    if (rc == IAS_QUERY_TOOLONG)
        return IAS_QUERY_MALFORMED;
    if (rc != IAS_QUERY_FOUND)
        return rc;
    if (buf[0] == '\0' || buf[0] == ' ' || buf[0] == '+')
        return IAS_QUERY_MALFORMED;
    errno = 0;
    v = strtoll(buf, &endp, 10);
    if (errno != 0 || *endp != '\0' || v < min || v > max)
        return IAS_QUERY_MALFORMED;
    *out = v;
    return IAS_QUERY_FOUND;
}
