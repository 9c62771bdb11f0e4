/* Incremental HTTP/1.x response parser and http:// URL parser. See http_parse.h. */
#include "ias/http_parse.h"

#include "ias/common.h"
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    DEFAULT_MAX_HEADER_BYTES = 16 * 1024,
    DEFAULT_MAX_HEADERS = 100,
    MIN_HEADER_BYTES = 64,
    CHUNK_LINE_MAX = 1024,   /* chunk size + extensions */
    MAX_LEADING_BLANKS = 4,  /* stray CRLFs some servers send after a body */
    HEAD_1XX_CONTINUE = 100, /* internal: an interim response was skipped */
};

enum pstate {
    S_HEAD,
    S_BODY_LEN,
    S_BODY_EOF,
    S_CHUNK_SIZE,
    S_CHUNK_EXT,
    S_CHUNK_SIZE_LF,
    S_CHUNK_DATA,
    S_CHUNK_DATA_END,
    S_CHUNK_DATA_LF,
    S_TRAILER,
    S_DONE,
    S_ERROR,
};

struct ias_http_parser {
    enum pstate state;
    ias_http_parse_limits lim;
    bool head_request;
    bool started;

    /* Response head, copied (it may arrive in many pieces). */
    char *hbuf;
    size_t hlen, hcap;
    size_t line_start; /* offset of the line being accumulated */
    size_t status_len; /* bytes of the status line incl. its LF, 0 until seen */
    size_t reason_off;
    int blanks;
    ias_http_header *hdrs;
    size_t hdrcap;
    ias_http_response resp;

    /* Body. */
    uint64_t remaining; /* Content-Length left, or current chunk left / size being read */
    size_t chunk_line;
    bool chunk_digits;
    bool chunk_semi;
    uint64_t body_bytes;

    /* Trailers. */
    char *tbuf;
    size_t tlen, tcap, tline_start;
    ias_http_header *trs;
    size_t ntrs, trcap;

    ias_http_perr err;
    char errmsg[128];
};

/* RFC 9110 tchar, as a table: header names are scanned byte by byte on every
 * request and response. */
#define TC(c) [(unsigned char)(c)] = 1
const unsigned char ias_http_tchar[256] = {
    TC('!'), TC('#'), TC('$'), TC('%'), TC('&'), TC('\''), TC('*'), TC('+'), TC('-'), TC('.'),
    TC('^'), TC('_'), TC('`'), TC('|'), TC('~'), TC('0'),  TC('1'), TC('2'), TC('3'), TC('4'),
    TC('5'), TC('6'), TC('7'), TC('8'), TC('9'), TC('a'),  TC('b'), TC('c'), TC('d'), TC('e'),
    TC('f'), TC('g'), TC('h'), TC('i'), TC('j'), TC('k'),  TC('l'), TC('m'), TC('n'), TC('o'),
    TC('p'), TC('q'), TC('r'), TC('s'), TC('t'), TC('u'),  TC('v'), TC('w'), TC('x'), TC('y'),
    TC('z'), TC('A'), TC('B'), TC('C'), TC('D'), TC('E'),  TC('F'), TC('G'), TC('H'), TC('I'),
    TC('J'), TC('K'), TC('L'), TC('M'), TC('N'), TC('O'),  TC('P'), TC('Q'), TC('R'), TC('S'),
    TC('T'), TC('U'), TC('V'), TC('W'), TC('X'), TC('Y'),  TC('Z'),
};
#undef TC

static bool is_tchar(unsigned char c)
{
    return ias_http_tchar[c] != 0;
}

bool ias_http_is_tchar(unsigned char c)
{
    return ias_http_tchar[c] != 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

IAS_PRINTF(3, 4)
static ias_http_ev fail(ias_http_parser *p, ias_http_perr err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
    va_end(ap);
    p->err = err;
    p->state = S_ERROR;
    return IAS_HTTP_EV_ERROR;
}

const char *ias_http_header_get(const ias_http_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

bool ias_http_header_has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *s = value;
    while (s && *s) {
        while (is_ows(*s) || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *end = e;
        while (end > s && is_ows(end[-1]))
            end--;
        if ((size_t)(end - s) == tlen && strncasecmp(s, token, tlen) == 0)
            return true;
        s = e;
    }
    return false;
}

ias_http_parser *ias_http_parser_new(void)
{
    ias_http_parser *p = ias_xcalloc(1, sizeof(*p));
    ias_http_parser_begin(p, NULL, false);
    return p;
}

void ias_http_parser_free(ias_http_parser *p)
{
    if (!p)
        return;
    free(p->hbuf);
    free(p->hdrs);
    free(p->tbuf);
    free(p->trs);
    free(p);
}

static void head_reset(ias_http_parser *p)
{
    p->hlen = 0;
    p->line_start = 0;
    p->status_len = 0;
    p->reason_off = 0;
    p->blanks = 0;
}

void ias_http_parser_begin(ias_http_parser *p, const ias_http_parse_limits *limits,
                           bool head_request)
{
    p->lim.max_header_bytes =
        limits && limits->max_header_bytes ? limits->max_header_bytes : DEFAULT_MAX_HEADER_BYTES;
    p->lim.max_headers = limits && limits->max_headers ? limits->max_headers : DEFAULT_MAX_HEADERS;
    if (p->lim.max_header_bytes < MIN_HEADER_BYTES)
        p->lim.max_header_bytes = MIN_HEADER_BYTES;
    p->head_request = head_request;
    p->state = S_HEAD;
    p->started = false;
    head_reset(p);
    memset(&p->resp, 0, sizeof(p->resp));
    p->resp.content_length = -1;
    p->remaining = 0;
    p->chunk_line = 0;
    p->chunk_digits = false;
    p->chunk_semi = false;
    p->body_bytes = 0;
    p->tlen = p->tline_start = 0;
    p->ntrs = 0;
    p->err = IAS_HTTP_PERR_NONE;
    p->errmsg[0] = '\0';
}

/* Appends to a buffer that the caller has already bounded. */
static void buf_append(char **buf, size_t *len, size_t *cap, const char *d, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 1024;
        while (ncap < *len + n + 1)
            ncap *= 2;
        *buf = ias_xrealloc(*buf, ncap);
        *cap = ncap;
    }
    memcpy(*buf + *len, d, n);
    *len += n;
}

/* "HTTP/1.x DDD[ reason]" (line without its line end). */
static ias_http_ev parse_status_line(ias_http_parser *p, char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ')
        return fail(p, IAS_HTTP_PERR_PROTOCOL, "malformed status line");
    for (int i = 9; i < 12; i++)
        if (line[i] < '0' || line[i] > '9')
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "malformed status code");
    int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (status < 100 || status > 599)
        return fail(p, IAS_HTTP_PERR_PROTOCOL, "status code %d out of range", status);
    size_t roff = 12;
    if (len > 12) {
        if (line[12] != ' ')
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "malformed status line");
        roff = 13;
    }
    for (size_t i = roff; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "control byte in reason phrase");
    }
    line[len] = '\0';
    p->resp.status = status;
    p->resp.minor_version = line[7] - '0';
    p->reason_off = (size_t)(line - p->hbuf) + roff;
    return IAS_HTTP_EV_NEED_MORE;
}

const char *ias_http_field_line(char *s, size_t len, char **value)
{
    char *le = s + len;

    if (len > 0 && is_ows(*s))
        return "obsolete header line folding";
    char *colon = s;
    while (colon < le && is_tchar((unsigned char)*colon))
        colon++;
    if (colon == s || colon == le || *colon != ':')
        return "malformed header name";
    char *v = colon + 1;
    while (v < le && is_ows(*v))
        v++;
    char *ve = le;
    while (ve > v && is_ows(ve[-1]))
        ve--;
    for (char *q = v; q < ve; q++) {
        unsigned char c = (unsigned char)*q;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return "control byte in header value";
    }
    *colon = '\0';
    *ve = '\0';
    *value = v;
    return NULL;
}

/* Parses "name: value" lines in s[0..len) (each ending in LF; the final blank
 * line included) in place into arr. */
static ias_http_ev parse_fields(ias_http_parser *p, char *s, size_t len, ias_http_header **arr,
                                size_t *cap, size_t *n)
{
    char *end = s + len;
    *n = 0;
    while (s < end) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "unterminated header line");
        char *le = nl;
        if (le > s && le[-1] == '\r')
            le--;
        if (le == s)
            break; /* the blank line */
        char *v = NULL;
        const char *err = ias_http_field_line(s, (size_t)(le - s), &v);
        if (err)
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "%s", err);
        if (*n >= p->lim.max_headers)
            return fail(p, IAS_HTTP_PERR_TOO_LARGE, "more than %zu header lines",
                        p->lim.max_headers);
        if (*n >= *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *arr = ias_xrealloc(*arr, *cap * sizeof(**arr));
        }
        (*arr)[*n].name = s;
        (*arr)[*n].value = v;
        (*n)++;
        s = nl + 1;
    }
    return IAS_HTTP_EV_NEED_MORE;
}

/* Content-Length: digits, possibly a list of identical values ("5, 5"). */
static int parse_content_length(const char *v, int64_t *out)
{
    int64_t seen = -1;
    const char *s = v;
    for (;;) {
        while (is_ows(*s))
            s++;
        if (*s < '0' || *s > '9')
            return IAS_ERR;
        int64_t n = 0;
        while (*s >= '0' && *s <= '9') {
            int d = *s - '0';
            if (n > (INT64_MAX - d) / 10)
                return IAS_ERR;
            n = n * 10 + d;
            s++;
        }
        while (is_ows(*s))
            s++;
        if (seen >= 0 && n != seen)
            return IAS_ERR;
        seen = n;
        if (*s == '\0')
            break;
        if (*s != ',')
            return IAS_ERR;
        s++;
    }
    *out = seen;
    return IAS_OK;
}

/* Last non-empty coding of a Transfer-Encoding value into *last (or keeps it). */
static void te_last_token(const char *v, const char **last, size_t *last_len)
{
    const char *s = v;
    while (*s) {
        while (is_ows(*s) || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *te = e;
        while (te > s && is_ows(te[-1]))
            te--;
        if (te > s) {
            *last = s;
            *last_len = (size_t)(te - s);
        }
        s = e;
    }
}

static ias_http_ev head_complete(ias_http_parser *p)
{
    ias_http_response *r = &p->resp;
    size_t nh = 0;
    ias_http_ev ev = parse_fields(p, p->hbuf + p->status_len, p->hlen - p->status_len, &p->hdrs,
                                  &p->hdrcap, &nh);
    if (ev == IAS_HTTP_EV_ERROR)
        return ev;
    if (r->status >= 100 && r->status < 200) {
        if (r->status == 101)
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "unexpected 101 Switching Protocols");
        head_reset(p); /* interim response: the final one follows */
        return (ias_http_ev)HEAD_1XX_CONTINUE;
    }
    r->reason = p->hbuf + p->reason_off;
    r->headers = p->hdrs;
    r->nheaders = nh;

    int64_t cl = -1;
    bool has_te = false, conn_close = false, ka = false;
    const char *te_last = NULL;
    size_t te_last_len = 0;
    for (size_t i = 0; i < nh; i++) {
        const char *name = p->hdrs[i].name, *v = p->hdrs[i].value;
        if (strcasecmp(name, "Content-Length") == 0) {
            int64_t n;
            if (parse_content_length(v, &n) != IAS_OK || (cl >= 0 && n != cl))
                return fail(p, IAS_HTTP_PERR_PROTOCOL, "invalid Content-Length");
            cl = n;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            has_te = true;
            te_last_token(v, &te_last, &te_last_len);
        } else if (strcasecmp(name, "Connection") == 0) {
            conn_close = conn_close || ias_http_header_has_token(v, "close");
            ka = ka || ias_http_header_has_token(v, "keep-alive");
        }
    }
    r->keep_alive = !conn_close && (r->minor_version >= 1 || ka);

    if (p->head_request || r->status == 204 || r->status == 304) {
        r->content_length = cl;
        p->state = S_DONE;
        return IAS_HTTP_EV_HEADERS;
    }
    if (has_te) {
        if (!te_last)
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "empty Transfer-Encoding");
        if (r->minor_version == 0)
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "Transfer-Encoding in an HTTP/1.0 response");
        r->content_length = -1;
        if (cl >= 0)
            r->keep_alive = false; /* smuggling-shaped framing: never reuse */
        if (te_last_len == 7 && strncasecmp(te_last, "chunked", 7) == 0) {
            r->chunked = true;
            p->state = S_CHUNK_SIZE;
            p->remaining = 0;
        } else {
            r->until_close = true;
            r->keep_alive = false;
            p->state = S_BODY_EOF;
        }
        return IAS_HTTP_EV_HEADERS;
    }
    if (cl >= 0) {
        r->content_length = cl;
        p->remaining = (uint64_t)cl;
        p->state = cl == 0 ? S_DONE : S_BODY_LEN;
        return IAS_HTTP_EV_HEADERS;
    }
    r->until_close = true;
    r->keep_alive = false;
    p->state = S_BODY_EOF;
    return IAS_HTTP_EV_HEADERS;
}

/* The status line being accumulated (buffered bytes, then n more) can still
 * start with "HTTP/", or is an empty line (tolerated before the status line). */
static bool status_prefix_ok(const ias_http_parser *p, const char *more, size_t n)
{
    char first[5];
    size_t have = 0;
    for (size_t i = 0; i < p->hlen && have < 5; i++)
        first[have++] = p->hbuf[i];
    for (size_t i = 0; i < n && have < 5; i++)
        first[have++] = more[i];
    if (have == 0 || first[0] == '\n')
        return true;
    if (first[0] == '\r')
        return have < 2 || first[1] == '\n';
    return memcmp(first, "HTTP/", have) == 0;
}

static ias_http_ev run_head(ias_http_parser *p, const char *data, size_t len, size_t *pos)
{
    while (*pos < len) {
        const char *start = data + *pos;
        size_t avail = len - *pos;
        const char *nl = memchr(start, '\n', avail);
        size_t n = nl ? (size_t)(nl - start) + 1 : avail;
        /* Fail fast on something that is not HTTP at all; checked before the
         * size so the verdict does not depend on how the input is split. */
        if (p->status_len == 0 && !status_prefix_ok(p, start, n))
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "malformed status line");
        if (p->hlen + n > p->lim.max_header_bytes)
            return fail(p, IAS_HTTP_PERR_TOO_LARGE, "response head over %zu bytes",
                        p->lim.max_header_bytes);
        buf_append(&p->hbuf, &p->hlen, &p->hcap, start, n);
        *pos += n;
        p->started = true;
        if (!nl)
            break;
        size_t ll = p->hlen - p->line_start;
        char *line = p->hbuf + p->line_start;
        size_t content = ll - 1;
        if (content > 0 && line[content - 1] == '\r')
            content--;
        if (content == 0) {
            if (p->status_len == 0) {
                if (++p->blanks > MAX_LEADING_BLANKS)
                    return fail(p, IAS_HTTP_PERR_PROTOCOL, "empty lines instead of a response");
                p->hlen = p->line_start = 0;
                continue;
            }
            ias_http_ev ev = head_complete(p);
            if ((int)ev == HEAD_1XX_CONTINUE)
                continue;
            return ev;
        }
        if (p->status_len == 0) {
            if (parse_status_line(p, line, content) == IAS_HTTP_EV_ERROR)
                return IAS_HTTP_EV_ERROR;
            p->status_len = p->hlen;
        }
        p->line_start = p->hlen;
    }
    return IAS_HTTP_EV_NEED_MORE;
}

static ias_http_ev run_trailer(ias_http_parser *p, const char *data, size_t len, size_t *pos)
{
    while (*pos < len) {
        const char *start = data + *pos;
        size_t avail = len - *pos;
        const char *nl = memchr(start, '\n', avail);
        size_t n = nl ? (size_t)(nl - start) + 1 : avail;
        if (p->tlen + n > p->lim.max_header_bytes)
            return fail(p, IAS_HTTP_PERR_TOO_LARGE, "trailers over %zu bytes",
                        p->lim.max_header_bytes);
        buf_append(&p->tbuf, &p->tlen, &p->tcap, start, n);
        *pos += n;
        if (!nl)
            break;
        size_t ll = p->tlen - p->tline_start;
        if (ll == 1 || (ll == 2 && p->tbuf[p->tline_start] == '\r')) {
            if (parse_fields(p, p->tbuf, p->tlen, &p->trs, &p->trcap, &p->ntrs) ==
                IAS_HTTP_EV_ERROR)
                return IAS_HTTP_EV_ERROR;
            p->state = S_DONE;
            return IAS_HTTP_EV_DONE;
        }
        p->tline_start = p->tlen;
    }
    return IAS_HTTP_EV_NEED_MORE;
}

static void chunk_line_end(ias_http_parser *p)
{
    p->chunk_line = 0;
    p->chunk_digits = false;
    p->chunk_semi = false;
    if (p->remaining == 0) {
        p->state = S_TRAILER;
        p->tlen = p->tline_start = 0;
        p->ntrs = 0;
    } else {
        p->state = S_CHUNK_DATA;
    }
}

ias_http_ev ias_http_parser_run(ias_http_parser *p, const char *data, size_t len, size_t *consumed,
                                const char **body, size_t *body_len)
{
    size_t pos = 0;
    *consumed = 0;
    *body = NULL;
    *body_len = 0;
    for (;;) {
        switch (p->state) {
        case S_ERROR:
            return IAS_HTTP_EV_ERROR;
        case S_DONE:
            *consumed = pos;
            return IAS_HTTP_EV_DONE;
        case S_HEAD: {
            ias_http_ev ev = run_head(p, data, len, &pos);
            *consumed = pos;
            return ev;
        }
        case S_TRAILER: {
            ias_http_ev ev = run_trailer(p, data, len, &pos);
            *consumed = pos;
            return ev;
        }
        case S_BODY_LEN:
        case S_BODY_EOF:
        case S_CHUNK_DATA: {
            if (pos == len) {
                *consumed = pos;
                return IAS_HTTP_EV_NEED_MORE;
            }
            size_t n = len - pos;
            if (p->state != S_BODY_EOF && p->remaining < n)
                n = (size_t)p->remaining;
            *body = data + pos;
            *body_len = n;
            pos += n;
            p->body_bytes += n;
            if (p->state != S_BODY_EOF) {
                p->remaining -= n;
                if (p->remaining == 0)
                    p->state = p->state == S_BODY_LEN ? S_DONE : S_CHUNK_DATA_END;
            }
            *consumed = pos;
            return IAS_HTTP_EV_BODY;
        }
        case S_CHUNK_SIZE:
        case S_CHUNK_EXT:
        case S_CHUNK_SIZE_LF:
        case S_CHUNK_DATA_END:
        case S_CHUNK_DATA_LF:
            break;
        }

        /* Byte-at-a-time states: chunk size lines and the CRLF after data. */
        if (pos == len) {
            *consumed = pos;
            return IAS_HTTP_EV_NEED_MORE;
        }
        unsigned char c = (unsigned char)data[pos++];
        switch (p->state) {
        case S_CHUNK_SIZE:
        case S_CHUNK_EXT:
            if (++p->chunk_line > CHUNK_LINE_MAX)
                return fail(p, IAS_HTTP_PERR_TOO_LARGE, "chunk size line too long");
            if (c == '\r' || c == '\n') {
                if (!p->chunk_digits)
                    return fail(p, IAS_HTTP_PERR_PROTOCOL, "missing chunk size");
                if (c == '\r')
                    p->state = S_CHUNK_SIZE_LF;
                else
                    chunk_line_end(p);
            } else if (p->state == S_CHUNK_SIZE && ias_hex_digit(c) >= 0) {
                if (p->remaining >= ((uint64_t)1 << 56)) /* over 15 hex digits */
                    return fail(p, IAS_HTTP_PERR_PROTOCOL, "chunk size too large");
                p->remaining = p->remaining * 16 + (uint64_t)ias_hex_digit(c);
                p->chunk_digits = true;
            } else if (p->chunk_digits && (c == ';' || is_ows((char)c))) {
                p->state = S_CHUNK_EXT;
                if (c == ';')
                    p->chunk_semi = true;
            } else if (p->state == S_CHUNK_EXT && p->chunk_semi && c >= 0x20 && c != 0x7f) {
                /* extension text: ignored */
            } else if (p->state == S_CHUNK_EXT && c == '\t') {
                /* whitespace inside extensions */
            } else {
                return fail(p, IAS_HTTP_PERR_PROTOCOL, "malformed chunk size line");
            }
            break;
        case S_CHUNK_SIZE_LF:
            if (c != '\n')
                return fail(p, IAS_HTTP_PERR_PROTOCOL, "malformed chunk size line");
            chunk_line_end(p);
            break;
        case S_CHUNK_DATA_END:
            if (c == '\r')
                p->state = S_CHUNK_DATA_LF;
            else if (c == '\n')
                p->state = S_CHUNK_SIZE;
            else
                return fail(p, IAS_HTTP_PERR_PROTOCOL, "missing CRLF after chunk data");
            break;
        case S_CHUNK_DATA_LF:
            if (c != '\n')
                return fail(p, IAS_HTTP_PERR_PROTOCOL, "missing CRLF after chunk data");
            p->state = S_CHUNK_SIZE;
            break;
        default:
            return fail(p, IAS_HTTP_PERR_PROTOCOL, "internal parser state");
        }
    }
}

ias_http_ev ias_http_parser_eof(ias_http_parser *p)
{
    switch (p->state) {
    case S_BODY_EOF:
        p->state = S_DONE;
        return IAS_HTTP_EV_DONE;
    case S_DONE:
        return IAS_HTTP_EV_DONE;
    case S_ERROR:
        return IAS_HTTP_EV_ERROR;
    case S_HEAD:
        if (!p->started)
            return fail(p, IAS_HTTP_PERR_TRUNCATED, "connection closed before any response byte");
        return fail(p, IAS_HTTP_PERR_TRUNCATED, "connection closed inside the response head");
    default:
        return fail(p, IAS_HTTP_PERR_TRUNCATED, "connection closed inside the response body");
    }
}

const ias_http_response *ias_http_parser_response(const ias_http_parser *p)
{
    return &p->resp;
}

const ias_http_header *ias_http_parser_trailers(const ias_http_parser *p, size_t *n)
{
    *n = p->state == S_DONE ? p->ntrs : 0;
    return p->trs;
}

bool ias_http_parser_done(const ias_http_parser *p)
{
    return p->state == S_DONE;
}

bool ias_http_parser_started(const ias_http_parser *p)
{
    return p->started;
}

bool ias_http_parser_keep_alive(const ias_http_parser *p)
{
    return p->state == S_DONE && p->resp.keep_alive;
}

uint64_t ias_http_parser_body_bytes(const ias_http_parser *p)
{
    return p->body_bytes;
}

ias_http_perr ias_http_parser_error(const ias_http_parser *p)
{
    return p->err;
}

const char *ias_http_parser_errmsg(const ias_http_parser *p)
{
    return p->errmsg;
}

static bool is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* The socket path of a unix URL, already free of control bytes and spaces;
 * percent-decoded for http+unix. The Host header names no host: "localhost". */
static int url_set_unix(ias_http_url *out, const char *s, size_t n, bool pct)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = s[i];

        if (pct && ch == '%') {
            int hi = i + 2 < n ? ias_hex_digit((unsigned char)s[i + 1]) : -1,
                lo = i + 2 < n ? ias_hex_digit((unsigned char)s[i + 2]) : -1;

            if (hi < 0 || lo < 0)
                return IAS_ERR;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        /* a decoded NUL or control byte would cut or smuggle the path */
        if ((unsigned char)ch < 0x20 || ch == 0x7f || o + 1 >= sizeof(out->unix_path))
            return IAS_ERR;
        out->unix_path[o++] = ch;
    }
    if (o == 0)
        return IAS_ERR;
    out->unix_path[o] = '\0';
    memcpy(out->host, "localhost", sizeof("localhost"));
    out->port = 80;
    return IAS_OK;
}

/* unix:/sock[:/path?query] and http+unix://%2Fsock[/path?query]. */
static int url_parse_unix(const char *url, ias_http_url *out)
{
    const char *end, *rest;

    if (strncasecmp(url, "unix:", 5) == 0) {
        const char *a = url + 5;
        const char *colon = strchr(a, ':');

        end = colon ? colon : a + strcspn(a, "#");
        rest = colon ? colon + 1 : end;
        if (url_set_unix(out, a, (size_t)(end - a), false) != IAS_OK)
            return IAS_ERR;
        /* after the socket: a path, a query or nothing */
        if (*rest != '\0' && *rest != '/' && *rest != '?' && *rest != '#')
            return IAS_ERR;
    } else {
        const char *a = url + 12; /* "http+unix://" */

        end = a + strcspn(a, "/?#");
        rest = end;
        if (memchr(a, '@', (size_t)(end - a)) || memchr(a, ':', (size_t)(end - a)))
            return IAS_ERR; /* userinfo or a port: neither means anything here */
        if (url_set_unix(out, a, (size_t)(end - a), true) != IAS_OK)
            return IAS_ERR;
    }
    out->path = rest;
    out->path_len = strcspn(rest, "#");
    return IAS_OK;
}

int ias_http_url_parse(const char *url, ias_http_url *out)
{
    memset(out, 0, sizeof(*out));
    if (!url)
        return IAS_ERR;
    for (const unsigned char *q = (const unsigned char *)url; *q; q++)
        if (*q <= 0x20 || *q == 0x7f)
            return IAS_ERR;
    if (strncasecmp(url, "unix:", 5) == 0 || strncasecmp(url, "http+unix://", 12) == 0) {
        if (url_parse_unix(url, out) == IAS_OK)
            return IAS_OK;
        memset(out, 0, sizeof(*out));
        return IAS_ERR;
    }
    if (strncasecmp(url, "http://", 7) != 0)
        return IAS_ERR;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    const char *aend = a + alen;
    if (memchr(a, '@', alen))
        return IAS_ERR; /* userinfo: never sent, so never accepted */
    const char *p;
    if (alen > 0 && *a == '[') {
        const char *rb = memchr(a, ']', alen);
        size_t hl = rb ? (size_t)(rb - a - 1) : 0;
        if (!rb || hl == 0 || hl >= sizeof(out->host))
            return IAS_ERR;
        memcpy(out->host, a + 1, hl);
        out->host[hl] = '\0';
        struct in6_addr in6;
        if (inet_pton(AF_INET6, out->host, &in6) != 1)
            return IAS_ERR;
        out->host_is_ipv6 = true;
        p = rb + 1;
    } else {
        const char *colon = memchr(a, ':', alen);
        p = colon ? colon : aend;
        size_t hl = (size_t)(p - a);
        if (hl == 0 || hl >= sizeof(out->host))
            return IAS_ERR;
        for (size_t i = 0; i < hl; i++)
            if (!is_host_char((unsigned char)a[i]))
                return IAS_ERR;
        memcpy(out->host, a, hl);
        out->host[hl] = '\0';
    }
    out->port = 80;
    if (p < aend) {
        if (*p != ':' || p + 1 == aend || aend - (p + 1) > 5)
            return IAS_ERR;
        unsigned port = 0;
        for (const char *d = p + 1; d < aend; d++) {
            if (*d < '0' || *d > '9')
                return IAS_ERR;
            port = port * 10 + (unsigned)(*d - '0');
        }
        if (port == 0 || port > 65535)
            return IAS_ERR;
        out->port = (uint16_t)port;
    }
    out->path = aend;
    out->path_len = strcspn(aend, "#");
    return IAS_OK;
}
