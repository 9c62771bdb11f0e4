/* Query strings, percent-decoding and pagination cursors; pure, bounded, no
 * allocation. */
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

/* ---- pagination cursors ---- */

static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z with every field in range: checked here rather
 * than left to PostgreSQL so a tampered cursor is a 400, never a query error. */
static bool cursor_ts_ok(const char *s, size_t n)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec;
    size_t frac;

    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[n - 1] != 'Z')
        return false;
    y = digits(s, 4);
    mo = digits(s + 5, 2);
    d = digits(s + 8, 2);
    h = digits(s + 11, 2);
    mi = digits(s + 14, 2);
    sec = digits(s + 17, 2);
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || sec < 0 || sec > 59)
        return false;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return false;
    if (n == 20)
        return true;
    frac = n - 21; /* digits between '.' and 'Z' */
    return s[19] == '.' && frac >= 1 && frac <= 6 && digits(s + 20, frac) >= 0;
}

int ias_cursor_encode(const char *ts, const char *id, char *out, size_t outlen)
{
    char raw[IAS_CURSOR_TS_LEN + IAS_UUID_STR_LEN + 1];
    size_t tn = ts != NULL ? strnlen(ts, IAS_CURSOR_TS_LEN) : IAS_CURSOR_TS_LEN;

    if (tn >= IAS_CURSOR_TS_LEN || !cursor_ts_ok(ts, tn) || !ias_uuid_valid(id))
        return IAS_ERR;
    memcpy(raw, ts, tn);
    raw[tn] = '|';
    memcpy(raw + tn + 1, id, IAS_UUID_STR_LEN);
    return ias_b64url_encode(raw, tn + 1 + IAS_UUID_STR_LEN, out, outlen) < 0 ? IAS_ERR : IAS_OK;
}

int ias_cursor_decode(const char *cursor, ias_cursor *out)
{
    char raw[IAS_CURSOR_TS_LEN + IAS_UUID_STR_LEN + 1];
    size_t cn = cursor != NULL ? strnlen(cursor, IAS_CURSOR_MAX) : IAS_CURSOR_MAX;
    ssize_t n;
    const char *bar;
    size_t tn;

    memset(out, 0, sizeof(*out));
    if (cn == 0 || cn >= IAS_CURSOR_MAX)
        return IAS_ERR;
    n = ias_b64url_decode(cursor, cn, raw, sizeof(raw) - 1);
    if (n <= 0)
        return IAS_ERR;
    raw[n] = '\0';
    bar = memchr(raw, '|', (size_t)n);
    if (bar == NULL)
        return IAS_ERR;
    tn = (size_t)(bar - raw);
    /* The id must be exactly the rest: a NUL inside would hide trailing bytes. */
    if (tn >= IAS_CURSOR_TS_LEN || (size_t)n - tn - 1 != IAS_UUID_STR_LEN ||
        memchr(raw, '\0', (size_t)n) != NULL || !cursor_ts_ok(raw, tn) || !ias_uuid_valid(bar + 1))
        return IAS_ERR;
    memcpy(out->ts, raw, tn);
    out->ts[tn] = '\0';
    memcpy(out->id, bar + 1, IAS_UUID_STR_LEN + 1);
    return IAS_OK;
}
