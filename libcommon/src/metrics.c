/* Prometheus registry: families sorted by name, each with a small hash of series
 * keyed by label text. Creation and rendering take one mutex; updates are relaxed
 * atomics on objects that never move until ias_metrics_reset().
 *
 * Histogram sum: a double kept as its bit pattern in an atomic uint64 and updated
 * with a compare-and-swap loop, so sums of bytes, tokens and seconds stay exact to
 * double precision (micro-units would overflow or truncate depending on the unit).
 * Buckets are stored non-cumulative (one increment per observation) and summed
 * when rendering; _count is the sum of the buckets read, so it always equals the
 * +Inf bucket of the same scrape. */
#include "ias/metrics.h"
#include "ias/strbuf.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <stdarg.h>

#define METRICS_MAX_BOUNDS 64
#define METRICS_CACHELINE 64

const double ias_metrics_latency_bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
const size_t ias_metrics_latency_nbounds = IAS_ARRAY_LEN(ias_metrics_latency_bounds);

typedef enum {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
} metric_type;

/* Each hot value on its own cache line: series updated by different worker
 * threads must not share one. */
struct ias_counter {
    _Alignas(METRICS_CACHELINE) _Atomic uint64_t v;
};
struct ias_gauge {
    _Alignas(METRICS_CACHELINE) _Atomic int64_t v;
};
struct ias_histogram {
    _Alignas(METRICS_CACHELINE) _Atomic uint64_t sum_bits;
    const double *bounds; /* the family's copy */
    size_t nbounds;
    _Atomic uint64_t buckets[]; /* nbounds + 1, the last is +Inf; not cumulative */
};

typedef struct series {
    struct series *next; /* hash chain */
    char *labels;        /* "" when none */
    void *metric;        /* ias_counter / ias_gauge / ias_histogram */
} series;

typedef struct family {
    char *name;
    char *help;
    metric_type type;
    double *bounds; /* histograms only */
    size_t nbounds;
    series **slots;
    size_t nslots;
    size_t nseries;
} family;

static struct {
    pthread_mutex_t mu;
    family **fams; /* sorted by name */
    size_t nfams;
    size_t cap;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *type_name(metric_type t)
{
    switch (t) {
    case METRIC_COUNTER:
        return "counter";
    case METRIC_GAUGE:
        return "gauge";
    case METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static bool valid_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(p > s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void *aligned_xcalloc(size_t size)
{
    size_t rounded = (size + METRICS_CACHELINE - 1) / METRICS_CACHELINE * METRICS_CACHELINE;
    void *p = aligned_alloc(METRICS_CACHELINE, rounded);
    if (!p)
        ias_die("out of memory (%zu bytes)", rounded);
    memset(p, 0, rounded);
    return p;
}

/* Binary search; returns the index where name is or would be inserted. */
static size_t family_index(const char *name, bool *found)
{
    size_t lo = 0, hi = reg.nfams;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(reg.fams[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void check_bounds(const char *name, const double *bounds, size_t nbounds)
{
    if (nbounds == 0 || nbounds > METRICS_MAX_BOUNDS)
        ias_die("metrics: histogram %s: %zu bounds (1..%d allowed)", name, nbounds,
                METRICS_MAX_BOUNDS);
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            ias_die("metrics: histogram %s: bounds must be finite and strictly ascending", name);
    }
}

/* Caller holds reg.mu. */
static family *family_get(const char *name, const char *help, metric_type type,
                          const double *bounds, size_t nbounds)
{
    bool found;
    size_t idx;
    family *f;

    if (!valid_name(name))
        ias_die("metrics: invalid metric name \"%s\"", name ? name : "(null)");
    if (!help)
        help = "";
    idx = family_index(name, &found);
    if (found) {
        f = reg.fams[idx];
        if (f->type != type || strcmp(f->help, help) != 0)
            ias_die("metrics: %s registered twice with a different type or help", name);
        if (type == METRIC_HISTOGRAM &&
            (f->nbounds != nbounds || memcmp(f->bounds, bounds, nbounds * sizeof(double)) != 0))
            ias_die("metrics: histogram %s registered twice with different bounds", name);
        return f;
    }
    if (type == METRIC_HISTOGRAM)
        check_bounds(name, bounds, nbounds);

    f = ias_xcalloc(1, sizeof(*f));
    f->name = ias_xstrdup(name);
    f->help = ias_xstrdup(help);
    f->type = type;
    if (type == METRIC_HISTOGRAM) {
        f->bounds = ias_xmalloc(nbounds * sizeof(double));
        memcpy(f->bounds, bounds, nbounds * sizeof(double));
        f->nbounds = nbounds;
    }
    f->nslots = 16;
    f->slots = ias_xcalloc(f->nslots, sizeof(series *));

    if (reg.nfams == reg.cap) {
        reg.cap = reg.cap ? reg.cap * 2 : 32;
        reg.fams = ias_xrealloc(reg.fams, reg.cap * sizeof(family *));
    }
    memmove(&reg.fams[idx + 1], &reg.fams[idx], (reg.nfams - idx) * sizeof(family *));
    reg.fams[idx] = f;
    reg.nfams++;
    return f;
}

static void family_grow(family *f)
{
    size_t n = f->nslots * 2;
    series **slots = ias_xcalloc(n, sizeof(series *));
    for (size_t i = 0; i < f->nslots; i++) {
        series *s = f->slots[i];
        while (s) {
            series *next = s->next;
            size_t j = hash_str(s->labels) & (n - 1);
            s->next = slots[j];
            slots[j] = s;
            s = next;
        }
    }
    free(f->slots);
    f->slots = slots;
    f->nslots = n;
}

static void *new_metric(const family *f)
{
    struct ias_histogram *h;

    switch (f->type) {
    case METRIC_COUNTER:
        return aligned_xcalloc(sizeof(struct ias_counter));
    case METRIC_GAUGE:
        return aligned_xcalloc(sizeof(struct ias_gauge));
    case METRIC_HISTOGRAM:
        h = aligned_xcalloc(sizeof(*h) + (f->nbounds + 1) * sizeof(_Atomic uint64_t));
        h->bounds = f->bounds;
        h->nbounds = f->nbounds;
        return h;
    }
    ias_die("metrics: bad type");
}

static void *series_get(const char *name, const char *help, metric_type type, const double *bounds,
                        size_t nbounds, const char *labels)
{
    family *f;
    series *s;
    size_t slot;
    void *m;

    if (!labels)
        labels = "";
    if (pthread_mutex_lock(&reg.mu) != 0)
        ias_die("metrics: mutex lock failed");
    f = family_get(name, help, type, bounds, nbounds);
    slot = hash_str(labels) & (f->nslots - 1);
    for (s = f->slots[slot]; s; s = s->next) {
        if (strcmp(s->labels, labels) == 0)
            break;
    }
    if (!s) {
        if (f->nseries >= f->nslots) {
            family_grow(f);
            slot = hash_str(labels) & (f->nslots - 1);
        }
        s = ias_xcalloc(1, sizeof(*s));
        s->labels = ias_xstrdup(labels);
        s->metric = new_metric(f);
        s->next = f->slots[slot];
        f->slots[slot] = s;
        f->nseries++;
    }
    m = s->metric;
    pthread_mutex_unlock(&reg.mu);
    return m;
}

ias_counter *ias_metrics_counter(const char *name, const char *help, const char *labels)
{
    return series_get(name, help, METRIC_COUNTER, NULL, 0, labels);
}

ias_gauge *ias_metrics_gauge(const char *name, const char *help, const char *labels)
{
    return series_get(name, help, METRIC_GAUGE, NULL, 0, labels);
}

ias_histogram *ias_metrics_histogram(const char *name, const char *help, const char *labels,
                                     const double *bounds, size_t nbounds)
{
    if (!bounds) {
        bounds = ias_metrics_latency_bounds;
        nbounds = ias_metrics_latency_nbounds;
    }
    return series_get(name, help, METRIC_HISTOGRAM, bounds, nbounds, labels);
}

void ias_counter_add(ias_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void ias_gauge_set(ias_gauge *g, int64_t v)
{
    atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void ias_gauge_add(ias_gauge *g, int64_t delta)
{
    atomic_fetch_add_explicit(&g->v, delta, memory_order_relaxed);
}

static uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

void ias_histogram_observe(ias_histogram *h, double v)
{
    size_t lo = 0, hi = h->nbounds;
    uint64_t old;

    if (isnan(v))
        return; /* would poison _sum forever */
    /* First bound >= v ("le" is inclusive); nbounds means +Inf. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, dbl_bits(bits_dbl(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- rendering ---- */

typedef ias_strbuf outbuf;

static void out_mem(outbuf *o, const char *s, size_t n)
{
    ias_strbuf_put(o, s, n);
}

static void out_str(outbuf *o, const char *s)
{
    ias_strbuf_puts(o, s);
}

static void IAS_PRINTF(2, 3) out_fmt(outbuf *o, const char *fmt, ...)
{
    va_list ap;
    int n;
    char small[128];

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        ias_die("metrics: vsnprintf failed");
    if ((size_t)n < sizeof(small)) {
        out_mem(o, small, (size_t)n);
        return;
    }
    ias_strbuf_reserve(o, (size_t)n, 4096);
    va_start(ap, fmt);
    vsnprintf(o->p + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

/* Shortest text that reads back as the same double, Prometheus spelling for
 * the special values. */
static void format_double(double d, char *buf, size_t len)
{
    if (isnan(d)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, len, d > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* Like Go's FormatFloat(d, 'g', -1): shortest round-trip, but plain digits
     * (30, not 3e+01) for everyday magnitudes. */
    bool plain = fabs(d) >= 1e-4 && fabs(d) < 1e17;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d && !(plain && strchr(buf, 'e')))
            return;
    }
    snprintf(buf, len, "%.17g", d);
}

/* HELP text escapes backslash and newline (format 0.0.4). */
static void out_help(outbuf *o, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            out_str(o, "\\\\");
        else if (*p == '\n')
            out_str(o, "\\n");
        else
            out_mem(o, p, 1);
    }
}

static int series_cmp(const void *a, const void *b)
{
    const series *x = *(const series *const *)a;
    const series *y = *(const series *const *)b;
    return strcmp(x->labels, y->labels);
}

/* name{labels} or name{labels,extra} or name{extra} or name */
static void out_series_name(outbuf *o, const char *name, const char *suffix, const char *labels,
                            const char *extra)
{
    out_str(o, name);
    out_str(o, suffix);
    if (!*labels && !extra)
        return;
    out_str(o, "{");
    out_str(o, labels);
    if (extra) {
        if (*labels)
            out_str(o, ",");
        out_str(o, extra);
    }
    out_str(o, "}");
}

static void render_histogram(outbuf *o, const family *f, const series *s)
{
    const struct ias_histogram *h = s->metric;
    uint64_t cum = 0;
    char num[64], le[80];

    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->nbounds) {
            format_double(h->bounds[i], num, sizeof(num));
            snprintf(le, sizeof(le), "le=\"%s\"", num);
        } else {
            snprintf(le, sizeof(le), "le=\"+Inf\"");
        }
        out_series_name(o, f->name, "_bucket", s->labels, le);
        out_fmt(o, " %" PRIu64 "\n", cum);
    }
    format_double(bits_dbl(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)), num,
                  sizeof(num));
    out_series_name(o, f->name, "_sum", s->labels, NULL);
    out_fmt(o, " %s\n", num);
    out_series_name(o, f->name, "_count", s->labels, NULL);
    out_fmt(o, " %" PRIu64 "\n", cum);
}

static void render_family(outbuf *o, const family *f)
{
    series **list;
    size_t n = 0;

    list = ias_xmalloc((f->nseries ? f->nseries : 1) * sizeof(series *));
    for (size_t i = 0; i < f->nslots; i++) {
        for (series *s = f->slots[i]; s; s = s->next)
            list[n++] = s;
    }
    qsort(list, n, sizeof(series *), series_cmp);

    out_fmt(o, "# HELP %s ", f->name);
    out_help(o, f->help);
    out_fmt(o, "\n# TYPE %s %s\n", f->name, type_name(f->type));
    for (size_t i = 0; i < n; i++) {
        const series *s = list[i];
        switch (f->type) {
        case METRIC_COUNTER:
            out_series_name(o, f->name, "", s->labels, NULL);
            out_fmt(
                o, " %" PRIu64 "\n",
                atomic_load_explicit(&((struct ias_counter *)s->metric)->v, memory_order_relaxed));
            break;
        case METRIC_GAUGE:
            out_series_name(o, f->name, "", s->labels, NULL);
            out_fmt(
                o, " %" PRId64 "\n",
                atomic_load_explicit(&((struct ias_gauge *)s->metric)->v, memory_order_relaxed));
            break;
        case METRIC_HISTOGRAM:
            render_histogram(o, f, s);
            break;
        }
    }
    free(list);
}

char *ias_metrics_render(size_t *len)
{
    outbuf o = {0};

    ias_strbuf_reserve(&o, 0, 4096);
    if (pthread_mutex_lock(&reg.mu) != 0)
        ias_die("metrics: mutex lock failed");
    for (size_t i = 0; i < reg.nfams; i++)
        render_family(&o, reg.fams[i]);
    pthread_mutex_unlock(&reg.mu);
    if (len)
        *len = o.len;
    return o.p;
}

void ias_metrics_reset(void)
{
    if (pthread_mutex_lock(&reg.mu) != 0)
        ias_die("metrics: mutex lock failed");
    for (size_t i = 0; i < reg.nfams; i++) {
        family *f = reg.fams[i];
        for (size_t j = 0; j < f->nslots; j++) {
            series *s = f->slots[j];
            while (s) {
                series *next = s->next;
                free(s->metric);
                free(s->labels);
                free(s);
                s = next;
            }
        }
        free(f->slots);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
    }
    free(reg.fams);
    reg.fams = NULL;
    reg.nfams = reg.cap = 0;
    pthread_mutex_unlock(&reg.mu);
}
