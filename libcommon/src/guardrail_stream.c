/* Output-side stream matcher. Text that arrives is appended to a pending
 * buffer; every output rule is matched against it; everything but the last
 * `holdback` characters may then go out. A phrase of at most `holdback`
 * characters that straddles chunk boundaries is therefore always entirely in
 * the pending buffer before any of it is released, and the added latency is
 * bounded by the window. The release point is always a UTF-8 character start. */
#include "guardrail_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct ref {
    const ias_guardrail *g;
    const gr_rule *r;
} ref;

struct ias_gr_stream {
    ref *rules;
    size_t nrules;
    size_t holdback;
    char *buf; /* pending text, NUL-terminated */
    size_t len, cap;
    char *out;
    size_t outlen, outcap;
    bool started; /* some text was released before buf[0] */
    bool stopped;
    ias_gr_violation v[IAS_GR_MAX_VIOLATIONS];
    size_t nv;
};

ias_gr_stream *ias_gr_stream_new(const ias_guardrail *const *profiles, size_t nprofiles,
                                 size_t max_holdback)
{
    ias_gr_stream *s = ias_xcalloc(1, sizeof(*s));
    size_t total = 0;

    for (size_t i = 0; i < nprofiles; i++)
        total += profiles[i]->noutput;
    s->rules = ias_xcalloc(total > 0 ? total : 1, sizeof(ref));
    for (size_t i = 0; i < nprofiles; i++) {
        for (size_t j = 0; j < profiles[i]->noutput; j++)
            s->rules[s->nrules++] = (ref){profiles[i], &profiles[i]->output[j]};
        if (profiles[i]->noutput > 0 && profiles[i]->holdback > s->holdback)
            s->holdback = profiles[i]->holdback;
    }
    if (s->holdback > max_holdback)
        s->holdback = max_holdback;
    s->cap = 256;
    s->buf = ias_xmalloc(s->cap);
    s->buf[0] = '\0';
    return s;
}

void ias_gr_stream_free(ias_gr_stream *s)
{
    if (s == NULL)
        return;
    free(s->rules);
    free(s->buf);
    free(s->out);
    free(s);
}

size_t ias_gr_stream_holdback(const ias_gr_stream *s)
{
    return s->holdback;
}

size_t ias_gr_stream_held(const ias_gr_stream *s)
{
    return s->len;
}

size_t ias_gr_stream_violations(const ias_gr_stream *s, const ias_gr_violation **v)
{
    *v = s->v;
    return s->nv;
}

static void emit(ias_gr_stream *s, const char *p, size_t n)
{
    if (s->outlen + n + 1 > s->outcap) {
        size_t cap = s->outcap ? s->outcap : 256;
        while (cap < s->outlen + n + 1)
            cap *= 2;
        s->out = ias_xrealloc(s->out, cap);
        s->outcap = cap;
    }
    memcpy(s->out + s->outlen, p, n);
    s->outlen += n;
    s->out[s->outlen] = '\0';
}

static void record(ias_gr_stream *s, const ref *r)
{
    if (s->nv < IAS_GR_MAX_VIOLATIONS)
        s->v[s->nv++] = (ias_gr_violation){r->g->name, r->r->id, r->r->deny};
}

static bool is_cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

static size_t chars_in(const char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += !is_cont((unsigned char)p[i]);
    return c;
}

/* Start of a trailing incomplete UTF-8 sequence in buf[from, len), or len. */
static size_t complete_end(const char *buf, size_t from, size_t len)
{
    size_t i = len, need;
    unsigned char c;
    while (i > from && len - i < 4 && is_cont((unsigned char)buf[i - 1]))
        i--;
    if (i == from)
        return len;
    c = (unsigned char)buf[i - 1];
    need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return len - (i - 1) < need ? i - 1 : len;
}

/* Earliest match of any rule in buf[pos, len); deny wins ties, then longer. */
static const ref *find_first(ias_gr_stream *s, size_t pos, size_t *so, size_t *eo)
{
    const ref *best = NULL;
    bool notbol = s->started || pos > 0;
    for (size_t i = 0; i < s->nrules; i++) {
        size_t a, b;
        if (!gr_regex_find(&s->rules[i].r->re, s->buf, pos, s->len, notbol, &a, &b) || b == a)
            continue;
        if (best == NULL || a < *so ||
            (a == *so && ((s->rules[i].r->deny && !best->r->deny) ||
                          (s->rules[i].r->deny == best->r->deny && b > *eo)))) {
            best = &s->rules[i];
            *so = a;
            *eo = b;
        }
    }
    return best;
}

ias_gr_status ias_gr_stream_feed(ias_gr_stream *s, const char *data, size_t len, bool final,
                                 const char **out, size_t *outlen)
{
    size_t pos = 0, hold_from, so = 0, eo = 0;

    s->outlen = 0;
    *out = "";
    *outlen = 0;
    if (s->stopped)
        return IAS_GR_STOP;
    if (s->len + len + 1 > s->cap) {
        while (s->cap < s->len + len + 1)
            s->cap *= 2;
        s->buf = ias_xrealloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    s->buf[s->len] = '\0';
    hold_from = s->len;

    for (;;) {
        const ref *r = find_first(s, pos, &so, &eo);
        if (r == NULL)
            break;
        /* Byte regexes may start or end inside a character: widen to whole ones. */
        while (so > pos && is_cont((unsigned char)s->buf[so]))
            so--;
        while (eo < s->len && is_cont((unsigned char)s->buf[eo]))
            eo++;
        if (r->r->deny) {
            emit(s, s->buf + pos, so - pos);
            record(s, r);
            s->stopped = true;
            s->len = 0;
            *out = s->out ? s->out : "";
            *outlen = s->outlen;
            return IAS_GR_STOP;
        }
        if (eo == s->len && !final && chars_in(s->buf + so, eo - so) < s->holdback) {
            /* The match might grow with the next chunk: hold it back whole
             * (only while it fits in the window, so the hold-back stays bounded). */
            hold_from = so;
            break;
        }
        emit(s, s->buf + pos, so - pos);
        emit(s, r->r->replacement, strlen(r->r->replacement));
        record(s, r);
        pos = eo;
    }

    if (final) {
        emit(s, s->buf + pos, s->len - pos);
        s->len = 0;
    } else {
        /* Keep the last `holdback` characters (and any incomplete character). */
        size_t end = complete_end(s->buf, pos, s->len), i = end, n = 0;
        while (i > pos && n < s->holdback) {
            i--;
            while (i > pos && is_cont((unsigned char)s->buf[i]))
                i--;
            n++;
        }
        if (hold_from < i)
            i = hold_from;
        emit(s, s->buf + pos, i - pos);
        if (i > 0)
            s->started = true;
        memmove(s->buf, s->buf + i, s->len - i);
        s->len -= i;
        s->buf[s->len] = '\0';
    }
    *out = s->out ? s->out : "";
    *outlen = s->outlen;
    return IAS_GR_CONTINUE;
}
