/* Fuzzes the SSE parser: no crash, bounded, and the events (and the outcome)
 * are the same whether the stream is fed at once, byte by byte, or in pieces
 * whose sizes come from the input.
 *
 * Input layout: byte 0 = (limit selector << 3) | number of split sizes (0..7),
 * byte 1 = stop after this many events (0: never), then the split sizes (one
 * byte each, 0 read as 1), then the stream. */
#include "ias/sse.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct rec {
    char *out;
    size_t len, cap;
    int n;
    int stop_after;
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

static int on_event(const ias_sse_event *ev, void *arg)
{
    rec *r = arg;
    if (ev->data[ev->data_len] != '\0' || ev->type_len == 0)
        abort();
    size_t lens[3] = {ev->type_len, ev->id_len, ev->data_len};
    rec_add(r, lens, sizeof(lens));
    rec_add(r, &ev->retry_ms, sizeof(ev->retry_ms));
    rec_add(r, ev->type, ev->type_len);
    rec_add(r, ev->id, ev->id_len);
    rec_add(r, ev->data, ev->data_len);
    r->n++;
    return r->stop_after && r->n >= r->stop_after ? IAS_ERR : IAS_OK;
}

typedef struct outcome {
    rec r;
    int rc;
    ias_sse_err err;
    bool pending;
} outcome;

static void run(const uint8_t *s, size_t len, size_t max, int stop_after, const uint8_t *splits,
                size_t nsplits, outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->r.stop_after = stop_after;
    ias_sse_parser *p = ias_sse_parser_new(max, on_event, &o->r);
    size_t off = 0, i = 0;
    o->rc = IAS_OK;
    while (off < len && o->rc == IAS_OK) {
        size_t n = len - off;
        if (nsplits) {
            size_t want = splits[i++ % nsplits];
            if (want == 0)
                want = 1;
            if (want < n)
                n = want;
        }
        /* Each piece in its own allocation: ASan sees any read past it. */
        char *piece = malloc(n);
        if (!piece)
            abort();
        memcpy(piece, s + off, n);
        o->rc = ias_sse_parser_feed(p, piece, n);
        free(piece);
        off += n;
    }
    o->err = ias_sse_parser_error(p);
    o->pending = ias_sse_parser_pending(p);
    if ((o->rc == IAS_OK) != (o->err == IAS_SSE_ERR_NONE))
        abort();
    ias_sse_parser_free(p);
}

static void same(const outcome *a, const outcome *b)
{
    if (a->rc != b->rc || a->err != b->err || a->r.n != b->r.n || a->r.len != b->r.len ||
        (a->r.len && memcmp(a->r.out, b->r.out, a->r.len) != 0))
        abort();
    if (a->rc == IAS_OK && a->pending != b->pending)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 16384)
        return 0;
    size_t nsplits = data[0] & 7;
    size_t max = (size_t)(data[0] >> 3) * 24 + 8; /* 8 .. 752 bytes: limits get hit */
    int stop_after = data[1] % 16;
    if (size < 2 + nsplits)
        return 0;
    const uint8_t *splits = data + 2;
    const uint8_t *s = data + 2 + nsplits;
    size_t len = size - 2 - nsplits;

    outcome whole, split, bytes;
    run(s, len, max, stop_after, NULL, 0, &whole);
    run(s, len, max, stop_after, splits, nsplits, &split);
    static const uint8_t one[1] = {1};
    run(s, len, max, stop_after, one, 1, &bytes);
    same(&whole, &split);
    same(&whole, &bytes);
    /* Every event fits the limit: type + data <= max (plus the default
     * "message"), the id <= max, and 32 bytes of lengths and retry. */
    if (whole.r.n > 0 && whole.r.len > (size_t)whole.r.n * (2 * max + 7 + 32))
        abort();
    free(whole.r.out);
    free(split.r.out);
    free(bytes.r.out);
    return 0;
}
