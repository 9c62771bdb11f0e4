/* HTTP/1.x request head parser and chunked body decoder. See http_reqparse.h. */
#include "http_reqparse.h"

#include "ias/http_parse.h"

#include <string.h>
#include <strings.h>

enum {
    CHUNK_LINE_MAX = 1024, /* chunk size + extensions */
};

enum cstate {
    C_SIZE,
    C_EXT,
    C_SIZE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TRAILER,
    C_DONE,
};

static const struct {
    const char *name;
    size_t len;
} methods[IAS_HS_METHOD_OTHER] = {
    {"GET", 3}, {"HEAD", 4}, {"POST", 4}, {"PUT", 3}, {"PATCH", 5}, {"DELETE", 6}, {"OPTIONS", 7},
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int set_error(ias_hs_head *h, int status, const char *why)
{
    h->error = status;
    h->why = why;
    return 1;
}

/* Content-Length: digits, possibly a list of identical values ("5, 5"). */
static bool parse_length(const char *s, int64_t *out)
{
    int64_t seen = -1;

    for (;;) {
        int64_t n = 0;

        while (is_ows(*s))
            s++;
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9') {
            int d = *s - '0';
            if (n > (INT64_MAX - d) / 10)
                return false;
            n = n * 10 + d;
            s++;
        }
        while (is_ows(*s))
            s++;
        if (seen >= 0 && n != seen)
            return false;
        seen = n;
        if (*s == '\0')
            break;
        if (*s != ',')
            return false;
        s++;
    }
    *out = seen;
    return true;
}

/* True when a comma-separated value is exactly one token equal to tok. */
static bool only_token(const char *v, const char *tok)
{
    size_t n = strlen(tok);

    while (is_ows(*v))
        v++;
    if (strncasecmp(v, tok, n) != 0)
        return false;
    v += n;
    while (is_ows(*v))
        v++;
    return *v == '\0';
}

/* "METHOD SP origin-form SP HTTP/1.x" in line[0..len), in place. */
static int parse_request_line(char *buf, size_t start, size_t len, ias_hs_head *h)
{
    char *line = buf + start, *end = line + len, *p = line, *t;

    while (p < end && ias_http_is_tchar((unsigned char)*p))
        p++;
    if (p == line || p == end || *p != ' ')
        return set_error(h, 400, "malformed request line");
    *p = '\0';
    h->has_method = true;
    h->method = (uint32_t)start;
    h->method_idx = IAS_HS_METHOD_OTHER;
    for (int i = 0; i < IAS_HS_METHOD_OTHER; i++) {
        if ((size_t)(p - line) == methods[i].len &&
            memcmp(line, methods[i].name, methods[i].len) == 0) {
            h->method_idx = i;
            break;
        }
    }
    t = ++p;
    if (p == end || *p != '/')
        return set_error(h, 400, "the request target must be an absolute path");
    while (p < end && *p != ' ') {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f || c == '#')
            return set_error(h, 400, "invalid byte in the request target");
        p++;
    }
    if (p == end)
        return set_error(h, 400, "malformed request line");
    *p++ = '\0';
    h->has_target = true;
    h->target = (uint32_t)(t - buf);
    h->target_len = (size_t)(p - 1 - t);
    if (end - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' ||
        p[7] < '0' || p[7] > '9')
        return set_error(h, 400, "malformed HTTP version");
    if (p[5] != '1')
        return set_error(h, 505, "only HTTP/1.x is supported");
    h->minor = p[7] == '0' ? 0 : 1;
    return 0;
}

bool ias_hs_request_line(char *buf, size_t len, ias_hs_head *h)
{
    size_t start = 0, s;
    const char *nl;
    int error = h->error;
    const char *why = h->why;

    while (start < len && (buf[start] == '\r' || buf[start] == '\n'))
        start++;
    nl = memchr(buf + start, '\n', len - start);
    if (!nl)
        return false;
    s = (size_t)(nl - buf);
    if (s > start && buf[s - 1] == '\r')
        s--;
    (void)parse_request_line(buf, start, s - start, h);
    h->error = error;
    h->why = why;
    return h->has_target;
}

const char *ias_hs_field_get(const char *buf, const ias_hs_field *f, size_t n, const char *name)
{
    /* names are tokens: ASCII case folding by bit 5 is enough to skip most
     * fields on their first byte before the full comparison */
    char first = (char)(name[0] | 0x20);

    for (size_t i = 0; i < n; i++) {
        const char *fn = buf + f[i].name;

        if ((char)(fn[0] | 0x20) == first && strcasecmp(fn, name) == 0)
            return buf + f[i].value;
    }
    return NULL;
}

/* Framing and connection semantics once every field is known. */
static int head_semantics(char *buf, ias_hs_field *fields, ias_hs_head *h)
{
    bool te = false, te_chunked = true, conn_close = false, conn_ka = false;
    const char *expect = NULL;

    h->content_length = -1;
    for (size_t i = 0; i < h->nfields; i++) {
        const char *name = buf + fields[i].name, *v = buf + fields[i].value;

        switch (name[0] | 0x20) {
        case 'c':
            if (strcasecmp(name, "Content-Length") == 0) {
                int64_t n;
                if (!parse_length(v, &n) || (h->content_length >= 0 && n != h->content_length))
                    return set_error(h, 400, "invalid Content-Length");
                h->content_length = n;
            } else if (strcasecmp(name, "Connection") == 0) {
                conn_close = conn_close || ias_http_header_has_token(v, "close");
                conn_ka = conn_ka || ias_http_header_has_token(v, "keep-alive");
            }
            break;
        case 't':
            if (strcasecmp(name, "Transfer-Encoding") == 0) {
                /* only "chunked", once: any other coding is 501 */
                te_chunked = !te && only_token(v, "chunked");
                te = true;
            }
            break;
        case 'e':
            if (strcasecmp(name, "Expect") == 0)
                expect = v;
            break;
        default:
            break;
        }
    }
    h->keep_alive = !conn_close && (h->minor >= 1 || conn_ka);
    if (te) {
        /* request smuggling shapes: never guess which framing the sender meant */
        if (h->minor == 0)
            return set_error(h, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (h->content_length >= 0)
            return set_error(h, 400, "both Transfer-Encoding and Content-Length");
        if (!te_chunked)
            return set_error(h, 501, "unsupported Transfer-Encoding");
        h->chunked = true;
    }
    if (expect && h->minor >= 1) {
        if (!only_token(expect, "100-continue"))
            return set_error(h, 417, "unsupported expectation");
        h->expect_continue = true;
    }
    if (h->method_idx == IAS_HS_METHOD_OTHER)
        return set_error(h, 501, "method not implemented");
    return 0;
}

int ias_hs_head_parse(char *buf, size_t len, size_t *scan, size_t max_header_bytes,
                      ias_hs_field *fields, size_t max_fields, ias_hs_head *h)
{
    size_t start = 0, pos, end = 0, line_end, s;
    int blanks = 0;
    bool found = false;

    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    h->method_idx = IAS_HS_METHOD_OTHER;
    /* RFC 9112 2.2: empty lines before the request line are ignored */
    while (start < len && blanks <= IAS_HS_MAX_BLANKS) {
        if (buf[start] == '\n') {
            start++;
        } else if (buf[start] == '\r') {
            if (start + 1 >= len)
                return 0;
            if (buf[start + 1] != '\n')
                return set_error(h, 400, "bare CR before the request line");
            start += 2;
        } else {
            break;
        }
        blanks++;
    }
    if (blanks > IAS_HS_MAX_BLANKS)
        return set_error(h, 400, "too many empty lines before the request line");
    pos = *scan > start ? *scan : start;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);

        if (!nl) {
            pos = len; /* nothing before here needs a second look */
            break;
        }
        pos = (size_t)(nl - buf);
        if (pos + 1 >= len)
            break;
        if (buf[pos + 1] == '\n') {
            end = pos + 2;
            found = true;
            break;
        }
        if (buf[pos + 1] == '\r') {
            if (pos + 2 >= len)
                break;
            if (buf[pos + 2] == '\n') {
                end = pos + 3;
                found = true;
                break;
            }
        }
        pos++;
    }
    if (!found) {
        *scan = pos < len ? pos : len;
        if (len > max_header_bytes) {
            h->error = 431;
            h->why = "request header fields too large";
        }
        return 0;
    }
    if (end > max_header_bytes)
        return set_error(h, 431, "request header fields too large");
    h->head_len = end;

    line_end = (size_t)((char *)memchr(buf + start, '\n', end - start) - buf);
    s = line_end;
    if (s > start && buf[s - 1] == '\r')
        s--;
    if (parse_request_line(buf, start, s - start, h))
        return 1;
    pos = line_end + 1;
    for (;;) {
        const char *nl = memchr(buf + pos, '\n', end - pos);
        size_t le = (size_t)(nl - buf);
        char *v = NULL;
        const char *err;

        s = le;
        if (s > pos && buf[s - 1] == '\r')
            s--;
        if (s == pos)
            break; /* the empty line */
        err = ias_http_field_line(buf + pos, s - pos, &v);
        if (err)
            return set_error(h, 400, err);
        if (h->nfields >= max_fields)
            return set_error(h, 431, "too many header fields");
        fields[h->nfields].name = (uint32_t)pos;
        fields[h->nfields].value = (uint32_t)(v - buf);
        h->nfields++;
        pos = le + 1;
    }
    head_semantics(buf, fields, h);
    return 1;
}

/* ---- chunked bodies ---- */

void ias_hs_chunked_init(ias_hs_chunked *d)
{
    memset(d, 0, sizeof(*d));
    d->state = C_SIZE;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int ias_hs_chunked_run(ias_hs_chunked *d, char *buf, size_t *rpos, size_t end, size_t *wpos,
                       uint64_t max_body, size_t max_trailer)
{
    size_t r = *rpos, w = *wpos;
    int rc = IAS_HS_CHUNK_MORE;

    while (r < end && rc == IAS_HS_CHUNK_MORE) {
        char c = buf[r];

        switch (d->state) {
        case C_SIZE: {
            int v = hexval(c);

            if (v >= 0) {
                if (d->remaining > (UINT64_MAX >> 4)) {
                    rc = IAS_HS_CHUNK_LARGE;
                    break;
                }
                d->remaining = (d->remaining << 4) | (uint64_t)v;
                d->digits = true;
                /* refuse as soon as the announced size is over the limit */
                if (d->total + d->remaining > max_body) {
                    rc = IAS_HS_CHUNK_LARGE;
                    break;
                }
                r++;
                if (++d->line > CHUNK_LINE_MAX)
                    rc = IAS_HS_CHUNK_BAD;
                break;
            }
            if (!d->digits) {
                rc = IAS_HS_CHUNK_BAD;
                break;
            }
            d->state = C_EXT;
            break; /* c is looked at again */
        }
        case C_EXT:
            r++;
            if (++d->line > CHUNK_LINE_MAX) {
                rc = IAS_HS_CHUNK_BAD;
            } else if (c == '\r') {
                d->state = C_SIZE_LF;
            } else if (c == '\n') {
                d->state = C_SIZE_LF;
                r--; /* handled there */
            } else if (((unsigned char)c < 0x20 && c != '\t') || c == 0x7f) {
                rc = IAS_HS_CHUNK_BAD;
            }
            break;
        case C_SIZE_LF:
            if (c != '\n') {
                rc = IAS_HS_CHUNK_BAD;
                break;
            }
            r++;
            d->line = 0;
            d->digits = false;
            if (d->remaining == 0) {
                d->state = C_TRAILER;
            } else {
                d->state = C_DATA;
            }
            break;
        case C_DATA: {
            size_t n = end - r;

            if ((uint64_t)n > d->remaining)
                n = (size_t)d->remaining;
            if (w != r)
                memmove(buf + w, buf + r, n);
            w += n;
            r += n;
            d->remaining -= n;
            d->total += n;
            if (d->remaining == 0)
                d->state = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            r++;
            if (c == '\r')
                d->state = C_DATA_LF;
            else if (c == '\n')
                d->state = C_SIZE;
            else
                rc = IAS_HS_CHUNK_BAD;
            break;
        case C_DATA_LF:
            r++;
            if (c == '\n')
                d->state = C_SIZE;
            else
                rc = IAS_HS_CHUNK_BAD;
            break;
        case C_TRAILER: {
            /* the trailer line being read is buf[r - d->line .. ): find its end */
            const char *nl = memchr(buf + r, '\n', end - r);
            size_t ls, le, s;
            char *v;

            if (!nl) {
                d->line += end - r;
                r = end;
                if (d->trailer + d->line > max_trailer)
                    rc = IAS_HS_CHUNK_BAD;
                break;
            }
            le = (size_t)(nl - buf);
            ls = r - d->line;
            d->trailer += le + 1 - ls;
            d->line = 0;
            r = le + 1;
            if (d->trailer > max_trailer) {
                rc = IAS_HS_CHUNK_BAD;
                break;
            }
            s = le;
            if (s > ls && buf[s - 1] == '\r')
                s--;
            if (s == ls) {
                d->state = C_DONE;
                rc = IAS_HS_CHUNK_DONE;
            } else if (ias_http_field_line(buf + ls, s - ls, &v) != NULL) {
                rc = IAS_HS_CHUNK_BAD; /* checked like a header field, then dropped */
            }
            break;
        }
        default:
            rc = IAS_HS_CHUNK_DONE;
            break;
        }
    }
    if (rc == IAS_HS_CHUNK_MORE && d->state == C_DONE)
        rc = IAS_HS_CHUNK_DONE;
    *rpos = r;
    *wpos = w;
    return rc;
}
