/* Fuzzes the server's HTTP request parser (libcommon/src/http_reqparse.c):
 * heads parsed in place and chunked bodies decoded in place, requests back to
 * back as on a keep-alive connection. No crash, sane results (offsets inside
 * the head, NUL-terminated strings, decoded body never ahead of the input),
 * and the same requests, bodies and verdicts whether the bytes arrive at once
 * or in pieces of an input-chosen size.
 *
 * Input layout: byte 0 = flags (bits 0-1: header byte limit; bits 2-7: piece
 * size - 1), then the bytes from the client. */
#include "../../libcommon/src/http_reqparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    MAX_FIELDS = 64,
    MAX_BODY = 4096,
};

typedef struct rec {
    char *out;
    size_t len, cap;
} rec;

static void rec_add(rec *r, const void *d, size_t n)
{
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n)
            cap *= 2;
        r->out = realloc(r->out, cap);
        if (!r->out)
            abort();
        r->cap = cap;
    }
    memcpy(r->out + r->len, d, n);
    r->len += n;
}

static void rec_str(rec *r, const char *s)
{
    rec_add(r, s, strlen(s) + 1);
}

static void rec_int(rec *r, long long v)
{
    char b[32];
    snprintf(b, sizeof(b), "%lld|", v);
    rec_add(r, b, strlen(b));
}

static void check_str(const char *buf, size_t head_len, uint32_t off)
{
    if (off >= head_len || memchr(buf + off, '\0', head_len - off) == NULL)
        abort();
}

/* Parses the whole input arriving piece bytes at a time; records what the
 * server would see. */
static void run(const uint8_t *in, size_t size, size_t piece, size_t max_header, rec *out)
{
    char *buf = malloc(size + 1);
    size_t have = 0, got = 0; /* bytes in buf; bytes of the input delivered */
    ias_hs_field fields[MAX_FIELDS];

    if (!buf)
        abort();
    for (;;) {
        ias_hs_head h;
        size_t scan = 0;
        int rc;

        /* the head */
        for (;;) {
            rc = ias_hs_head_parse(buf, have, &scan, max_header, fields, MAX_FIELDS, &h);
            if (scan > have)
                abort();
            if (rc == 1 || h.error || got == size)
                break;
            size_t n = size - got < piece ? size - got : piece;
            memcpy(buf + have, in + got, n);
            have += n;
            got += n;
        }
        if (rc == 0 && !h.error) {
            rec_str(out, "eof-in-head");
            break;
        }
        rec_int(out, h.error);
        if (h.error) {
            if (rc == 0 && !h.has_target)
                (void)ias_hs_request_line(buf, have, &h);
            if (h.has_target)
                rec_str(out, buf + h.target);
            break;
        }
        if (h.head_len > have || h.head_len > max_header)
            abort();
        check_str(buf, h.head_len, h.method);
        check_str(buf, h.head_len, h.target);
        if (strlen(buf + h.target) != h.target_len || buf[h.target] != '/')
            abort();
        rec_int(out, h.method_idx);
        rec_str(out, buf + h.target);
        rec_int(out, h.minor);
        rec_int(out, h.keep_alive);
        rec_int(out, h.expect_continue);
        for (size_t i = 0; i < h.nfields; i++) {
            check_str(buf, h.head_len, fields[i].name);
            check_str(buf, h.head_len, fields[i].value);
            rec_str(out, buf + fields[i].name);
            rec_str(out, buf + fields[i].value);
        }
        (void)ias_hs_field_get(buf, fields, h.nfields, "content-length");

        /* the body */
        size_t next;
        if (h.chunked) {
            ias_hs_chunked d;
            size_t rpos = h.head_len, wpos = h.head_len;

            ias_hs_chunked_init(&d);
            for (;;) {
                rc = ias_hs_chunked_run(&d, buf, &rpos, have, &wpos, MAX_BODY, max_header);
                if (wpos > rpos || rpos > have || wpos - h.head_len != d.total ||
                    d.total > MAX_BODY)
                    abort();
                if (rc != IAS_HS_CHUNK_MORE || got == size)
                    break;
                size_t n = size - got < piece ? size - got : piece;
                memcpy(buf + have, in + got, n);
                have += n;
                got += n;
            }
            rec_int(out, rc);
            if (rc != IAS_HS_CHUNK_DONE)
                break;
            rec_add(out, buf + h.head_len, wpos - h.head_len);
            next = rpos;
        } else {
            size_t cl = h.content_length > 0 ? (size_t)h.content_length : 0;

            if (h.content_length > MAX_BODY) {
                rec_str(out, "413");
                break;
            }
            while (have < h.head_len + cl && got < size) {
                size_t n = size - got < piece ? size - got : piece;
                memcpy(buf + have, in + got, n);
                have += n;
                got += n;
            }
            if (have < h.head_len + cl) {
                rec_str(out, "eof-in-body");
                break;
            }
            rec_add(out, buf + h.head_len, cl);
            next = h.head_len + cl;
        }
        if (!h.keep_alive)
            break;
        /* the next request moves to the front, as the connection does */
        memmove(buf, buf + next, have - next);
        have -= next;
        if (have == 0 && got == size)
            break;
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[4] = {64, 256, 1024, 16384};
    rec whole = {0}, pieces = {0};

    if (size < 1)
        return 0;
    size_t max_header = limits[data[0] & 3];
    size_t piece = (size_t)(data[0] >> 2) + 1;
    data++;
    size--;

    run(data, size, size ? size : 1, max_header, &whole);
    run(data, size, piece, max_header, &pieces);
    /* A head over the limit is found on the way in pieces but may be complete
     * (and then judged on its own) at once: compare only when neither saw 431
     * first. */
    if (whole.len != pieces.len || (whole.len && memcmp(whole.out, pieces.out, whole.len) != 0)) {
        bool limit = (whole.len && memmem(whole.out, whole.len, "431|", 4)) ||
                     (pieces.len && memmem(pieces.out, pieces.len, "431|", 4));
        if (!limit)
            abort();
    }
    free(whole.out);
    free(pieces.out);
    return 0;
}
