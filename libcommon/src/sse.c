/* Incremental Server-Sent Events parser. See sse.h. */
#include "ias/sse.h"
#include "ias/strbuf.h"

#include <stdlib.h>
#include <string.h>

enum { DEFAULT_MAX_EVENT_BYTES = 1024 * 1024 };

typedef ias_strbuf sbuf;

struct ias_sse_parser {
    size_t max;
    ias_sse_cb cb;
    void *arg;
    sbuf line; /* a line split across feeds */
    sbuf data;
    sbuf type;
    sbuf id;
    int64_t retry_ms;
    bool cr_pending; /* the last line ended in CR: a following LF belongs to it */
    bool dirty;      /* a field line was seen since the last blank line */
    bool bom_done;
    size_t bom_len; /* BOM bytes matched so far at stream start */
    ias_sse_err err;
};

static const unsigned char bom_bytes[3] = {0xEF, 0xBB, 0xBF};

static void sbuf_append(sbuf *b, const char *d, size_t n)
{
    ias_strbuf_put(b, d, n);
}

static void sbuf_set(sbuf *b, const char *d, size_t n)
{
    b->len = 0;
    sbuf_append(b, d, n);
}

ias_sse_parser *ias_sse_parser_new(size_t max_event_bytes, ias_sse_cb cb, void *arg)
{
    ias_sse_parser *p = ias_xcalloc(1, sizeof(*p));
    p->max = max_event_bytes ? max_event_bytes : DEFAULT_MAX_EVENT_BYTES;
    p->cb = cb;
    p->arg = arg;
    p->retry_ms = -1;
    return p;
}

void ias_sse_parser_free(ias_sse_parser *p)
{
    if (!p)
        return;
    free(p->line.p);
    free(p->data.p);
    free(p->type.p);
    free(p->id.p);
    free(p);
}

void ias_sse_parser_reset(ias_sse_parser *p)
{
    p->line.len = p->data.len = p->type.len = p->id.len = 0;
    p->retry_ms = -1;
    p->cr_pending = p->dirty = p->bom_done = false;
    p->bom_len = 0;
    p->err = IAS_SSE_ERR_NONE;
}

bool ias_sse_parser_pending(const ias_sse_parser *p)
{
    return p->line.len > 0 || p->dirty || (!p->bom_done && p->bom_len > 0);
}

ias_sse_err ias_sse_parser_error(const ias_sse_parser *p)
{
    return p->err;
}

/* Everything the event under construction holds, plus a line of n bytes. */
static bool over_limit(const ias_sse_parser *p, size_t n)
{
    size_t have = p->data.len + p->type.len + p->line.len;
    return n > p->max || have > p->max - n;
}

static int dispatch(ias_sse_parser *p)
{
    p->dirty = false;
    if (p->data.len == 0) {
        p->type.len = 0;
        return IAS_OK;
    }
    p->data.len--; /* the LF after the last data line */
    p->data.p[p->data.len] = '\0';
    ias_sse_event ev = {
        .type = p->type.len ? p->type.p : "message",
        .type_len = p->type.len ? p->type.len : 7,
        .data = p->data.p,
        .data_len = p->data.len,
        .id = p->id.len ? p->id.p : "",
        .id_len = p->id.len,
        .retry_ms = p->retry_ms,
    };
    int rc = p->cb ? p->cb(&ev, p->arg) : IAS_OK;
    p->data.len = 0;
    p->type.len = 0;
    if (rc != IAS_OK) {
        p->err = IAS_SSE_ERR_STOPPED;
        return IAS_ERR;
    }
    return IAS_OK;
}

static bool field_is(const char *f, size_t flen, const char *name)
{
    return strlen(name) == flen && memcmp(f, name, flen) == 0;
}

static int process_line(ias_sse_parser *p, const char *line, size_t n)
{
    if (n == 0)
        return dispatch(p);
    if (line[0] == ':')
        return IAS_OK; /* comment (keep-alive pings) */
    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vlen = colon ? n - flen - 1 : 0;
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    p->dirty = true;
    if (field_is(line, flen, "data")) {
        ias_strbuf_reserve(&p->data, vlen + 1, 0);
        sbuf_append(&p->data, v, vlen);
        sbuf_append(&p->data, "\n", 1);
    } else if (field_is(line, flen, "event")) {
        sbuf_set(&p->type, v, vlen);
    } else if (field_is(line, flen, "id")) {
        if (!memchr(v, '\0', vlen))
            sbuf_set(&p->id, v, vlen);
    } else if (field_is(line, flen, "retry")) {
        int64_t ms = 0;
        size_t i = 0;
        for (; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
            ms = ms > (INT64_MAX - 9) / 10 ? INT64_MAX : ms * 10 + (v[i] - '0');
        if (vlen > 0 && i == vlen)
            p->retry_ms = ms;
    }
    return IAS_OK;
}

static int fail_too_large(ias_sse_parser *p)
{
    p->err = IAS_SSE_ERR_TOO_LARGE;
    return IAS_ERR;
}

static int feed_bytes(ias_sse_parser *p, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (p->cr_pending) {
            p->cr_pending = false;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        const char *s = data + i;
        size_t n = len - i, k;
        /* memchr is vectorised; a CR before the LF (or without one) ends the line too */
        const char *lf = memchr(s, '\n', n);
        const char *cr = memchr(s, '\r', lf ? (size_t)(lf - s) : n);
        k = cr ? (size_t)(cr - s) : lf ? (size_t)(lf - s) : n;
        if (over_limit(p, k))
            return fail_too_large(p);
        if (k == n) {
            sbuf_append(&p->line, s, k);
            return IAS_OK;
        }
        p->cr_pending = s[k] == '\r';
        i += k + 1;
        int rc;
        if (p->line.len == 0) {
            rc = process_line(p, s, k); /* whole line in this feed: no copy */
        } else {
            sbuf_append(&p->line, s, k);
            rc = process_line(p, p->line.p, p->line.len);
            p->line.len = 0;
        }
        if (rc != IAS_OK)
            return rc;
    }
    return IAS_OK;
}

int ias_sse_parser_feed(ias_sse_parser *p, const char *data, size_t len)
{
    if (p->err != IAS_SSE_ERR_NONE)
        return IAS_ERR;
    if (!p->bom_done) {
        /* One leading BOM is dropped; it may arrive split across feeds. */
        while (len > 0 && p->bom_len < 3 && (unsigned char)*data == bom_bytes[p->bom_len]) {
            p->bom_len++;
            data++;
            len--;
        }
        if (p->bom_len < 3 && len == 0)
            return IAS_OK;
        p->bom_done = true;
        if (p->bom_len < 3) {
            int rc = feed_bytes(p, (const char *)bom_bytes, p->bom_len);
            if (rc != IAS_OK)
                return rc;
        }
    }
    return feed_bytes(p, data, len);
}
