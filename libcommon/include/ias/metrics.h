/* Prometheus metrics: counters, gauges and histograms with labels.
 *
 * The registry is process-global (allowed: metrics). Look a series up once
 * (get-or-create takes a lock), keep the pointer, and update it on the hot path
 * with relaxed atomics only. */
#ifndef IAS_METRICS_H
#define IAS_METRICS_H

#include "ias/common.h"

typedef struct ias_counter ias_counter;
typedef struct ias_gauge ias_gauge;
typedef struct ias_histogram ias_histogram;

/* labels: Prometheus label text without braces, e.g. "method=\"GET\",status=\"200\"",
 * or NULL/"" for none. Same name + labels returns the same series. A name registered
 * with a different type or help is a bug (abort). */
ias_counter *ias_metrics_counter(const char *name, const char *help, const char *labels);
ias_gauge *ias_metrics_gauge(const char *name, const char *help, const char *labels);
/* bounds: ascending upper bounds (the +Inf bucket is implicit); NULL uses
 * ias_metrics_latency_bounds (seconds, 0.5ms .. 60s). */
ias_histogram *ias_metrics_histogram(const char *name, const char *help, const char *labels,
                                     const double *bounds, size_t nbounds);
extern const double ias_metrics_latency_bounds[];
extern const size_t ias_metrics_latency_nbounds;

void ias_counter_add(ias_counter *c, uint64_t n);
static inline void ias_counter_inc(ias_counter *c)
{
    ias_counter_add(c, 1);
}
void ias_gauge_set(ias_gauge *g, int64_t v);
void ias_gauge_add(ias_gauge *g, int64_t delta);
void ias_histogram_observe(ias_histogram *h, double v);

/* Text exposition format 0.0.4; caller frees. Families sorted by name. */
char *ias_metrics_render(size_t *len);
/* Forget every series (tests only). */
void ias_metrics_reset(void);

#endif
