#include "testlib.h"

#include "ias/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int reset(void **state)
{
    ias_metrics_reset();
    return 0;
}

static void assert_render(const char *want)
{
    size_t len = 0;
    char *got = ias_metrics_render(&len);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
}

static void test_empty(void **state)
{
    assert_render("");
}

static void test_counter_gauge_text(void **state)
{
    ias_counter *get200 = ias_metrics_counter("ias_http_requests_total", "HTTP requests.",
                                              "method=\"GET\",status=\"200\"");
    ias_counter *post500 = ias_metrics_counter("ias_http_requests_total", "HTTP requests.",
                                               "method=\"POST\",status=\"500\"");
    ias_counter *again = ias_metrics_counter("ias_http_requests_total", "HTTP requests.",
                                             "method=\"GET\",status=\"200\"");
    ias_gauge *inflight = ias_metrics_gauge("ias_inflight", "In flight\nwith \\ escapes.", NULL);
    ias_counter *bare = ias_metrics_counter("a_first_total", "Sorted first.", "");

    assert_ptr_equal(get200, again);
    assert_ptr_not_equal(get200, post500);
    assert_ptr_equal(bare, ias_metrics_counter("a_first_total", "Sorted first.", NULL));

    ias_counter_inc(get200);
    ias_counter_add(get200, 41);
    ias_counter_inc(post500);
    ias_gauge_set(inflight, 10);
    ias_gauge_add(inflight, -13);

    assert_render("# HELP a_first_total Sorted first.\n"
                  "# TYPE a_first_total counter\n"
                  "a_first_total 0\n"
                  "# HELP ias_http_requests_total HTTP requests.\n"
                  "# TYPE ias_http_requests_total counter\n"
                  "ias_http_requests_total{method=\"GET\",status=\"200\"} 42\n"
                  "ias_http_requests_total{method=\"POST\",status=\"500\"} 1\n"
                  "# HELP ias_inflight In flight\\nwith \\\\ escapes.\n"
                  "# TYPE ias_inflight gauge\n"
                  "ias_inflight -3\n");
}

static void test_series_sorted_by_labels(void **state)
{
    /* Created out of order, more than the initial hash size, rendered sorted. */
    char labels[64];
    for (int i = 39; i >= 0; i--) {
        snprintf(labels, sizeof(labels), "k=\"%02d\"", i);
        ias_counter_add(ias_metrics_counter("m_total", "h", labels), (uint64_t)i);
    }
    size_t len;
    char *out = ias_metrics_render(&len);
    const char *p = out;
    for (int i = 0; i < 40; i++) {
        char line[64];
        snprintf(line, sizeof(line), "m_total{k=\"%02d\"} %d\n", i, i);
        const char *q = strstr(p, line);
        assert_non_null(q);
        p = q + strlen(line);
    }
    free(out);
}

static void test_histogram_text(void **state)
{
    /* Binary-exact values so the expected _sum is exact. */
    static const double bounds[] = {0.25, 1, 2.5};
    ias_histogram *h = ias_metrics_histogram("ias_tokens", "Tokens.", "model=\"m\"", bounds, 3);
    ias_histogram *plain = ias_metrics_histogram("ias_plain", "Plain.", NULL, bounds, 3);

    ias_histogram_observe(h, 0.125); /* bucket 0.25 */
    ias_histogram_observe(h, 0.25);  /* le is inclusive: bucket 0.25 */
    ias_histogram_observe(h, 0.5);   /* bucket 1 */
    ias_histogram_observe(h, 2.5);   /* bucket 2.5 */
    ias_histogram_observe(h, 8);     /* +Inf */
    ias_histogram_observe(h, NAN);   /* ignored */
    ias_histogram_observe(plain, 3);

    assert_render("# HELP ias_plain Plain.\n"
                  "# TYPE ias_plain histogram\n"
                  "ias_plain_bucket{le=\"0.25\"} 0\n"
                  "ias_plain_bucket{le=\"1\"} 0\n"
                  "ias_plain_bucket{le=\"2.5\"} 0\n"
                  "ias_plain_bucket{le=\"+Inf\"} 1\n"
                  "ias_plain_sum 3\n"
                  "ias_plain_count 1\n"
                  "# HELP ias_tokens Tokens.\n"
                  "# TYPE ias_tokens histogram\n"
                  "ias_tokens_bucket{model=\"m\",le=\"0.25\"} 2\n"
                  "ias_tokens_bucket{model=\"m\",le=\"1\"} 3\n"
                  "ias_tokens_bucket{model=\"m\",le=\"2.5\"} 4\n"
                  "ias_tokens_bucket{model=\"m\",le=\"+Inf\"} 5\n"
                  "ias_tokens_sum{model=\"m\"} 11.375\n"
                  "ias_tokens_count{model=\"m\"} 5\n");
}

static void test_histogram_latency_bounds(void **state)
{
    ias_histogram *h = ias_metrics_histogram("lat_seconds", "Latency.", NULL, NULL, 0);
    assert_int_equal(ias_metrics_latency_nbounds, 16);
    assert_true(ias_metrics_latency_bounds[0] == 0.0005);
    assert_true(ias_metrics_latency_bounds[ias_metrics_latency_nbounds - 1] == 60);
    for (size_t i = 1; i < ias_metrics_latency_nbounds; i++)
        assert_true(ias_metrics_latency_bounds[i] > ias_metrics_latency_bounds[i - 1]);

    ias_histogram_observe(h, 0.0001);
    ias_histogram_observe(h, 0.0005);
    ias_histogram_observe(h, 0.0006);
    ias_histogram_observe(h, 59.9);
    ias_histogram_observe(h, 61);
    char *out = ias_metrics_render(NULL);
    assert_non_null(strstr(out, "lat_seconds_bucket{le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{le=\"0.001\"} 3\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{le=\"30\"} 3\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{le=\"60\"} 4\n"));
    assert_non_null(strstr(out, "lat_seconds_bucket{le=\"+Inf\"} 5\n"));
    assert_non_null(strstr(out, "lat_seconds_count 5\n"));
    /* The same name with explicit identical bounds is the same family. */
    assert_ptr_equal(h, ias_metrics_histogram("lat_seconds", "Latency.", NULL,
                                              ias_metrics_latency_bounds,
                                              ias_metrics_latency_nbounds));
    free(out);
}

/* Misuse is a bug: the child must abort. */
static void assert_dies(void (*fn)(void))
{
    int status;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(STDERR_FILENO); /* keep the expected message out of the test log */
        fn();
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void die_bad_name(void)
{
    ias_metrics_counter("9starts_with_digit", "h", NULL);
}
static void die_bad_char(void)
{
    ias_metrics_gauge("has-dash", "h", NULL);
}
static void die_type_clash(void)
{
    ias_metrics_counter("clash", "h", NULL);
    ias_metrics_gauge("clash", "h", NULL);
}
static void die_help_clash(void)
{
    ias_metrics_counter("clash", "h", NULL);
    ias_metrics_counter("clash", "other", "a=\"b\"");
}
static void die_bounds_unsorted(void)
{
    static const double b[] = {1, 0.5};
    ias_metrics_histogram("h_unsorted", "h", NULL, b, 2);
}
static void die_bounds_clash(void)
{
    static const double b[] = {1, 2};
    ias_metrics_histogram("h_clash", "h", NULL, NULL, 0);
    ias_metrics_histogram("h_clash", "h", "x=\"y\"", b, 2);
}

static void test_misuse_aborts(void **state)
{
    assert_non_null(ias_metrics_counter("ok:name_with_colon_1", "h", NULL));
    assert_dies(die_bad_name);
    assert_dies(die_bad_char);
    assert_dies(die_type_clash);
    assert_dies(die_help_clash);
    assert_dies(die_bounds_unsorted);
    assert_dies(die_bounds_clash);
}

enum { NTHREADS = 4, NITER = 100000 };

/* cmocka asserts must not run off the main thread: count mismatches instead. */
static _Atomic int hammer_mismatch;

static void *hammer(void *arg)
{
    ias_counter *shared = arg;
    for (int i = 0; i < NITER; i++) {
        /* Get-or-create races with other threads and must return the same series. */
        ias_counter *c =
            (i % 1000 == 0) ? ias_metrics_counter("conc_total", "Concurrency.", "k=\"v\"") : shared;
        if (c != shared)
            hammer_mismatch++;
        ias_counter_inc(c);
        ias_gauge_add(ias_metrics_gauge("conc_gauge", "G.", NULL), (i % 2) ? 1 : -1);
        ias_histogram_observe(ias_metrics_histogram("conc_hist", "H.", NULL, NULL, 0), 0.5);
        if (i % 20000 == 0)
            free(ias_metrics_render(NULL)); /* rendering while updating */
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    pthread_t t[NTHREADS];
    ias_counter *c = ias_metrics_counter("conc_total", "Concurrency.", "k=\"v\"");
    char line[128];

    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, c), 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(hammer_mismatch, 0);

    char *out = ias_metrics_render(NULL);
    snprintf(line, sizeof(line), "conc_total{k=\"v\"} %d\n", NTHREADS * NITER);
    assert_non_null(strstr(out, line));
    assert_non_null(strstr(out, "conc_gauge 0\n"));
    snprintf(line, sizeof(line), "conc_hist_count %d\n", NTHREADS * NITER);
    assert_non_null(strstr(out, line));
    /* 0.5 is exact in binary, so the CAS-loop sum must be exact too. */
    snprintf(line, sizeof(line), "conc_hist_sum %d\n", NTHREADS * NITER / 2);
    assert_non_null(strstr(out, line));
    snprintf(line, sizeof(line), "conc_hist_bucket{le=\"0.25\"} 0\n");
    assert_non_null(strstr(out, line));
    snprintf(line, sizeof(line), "conc_hist_bucket{le=\"0.5\"} %d\n", NTHREADS * NITER);
    assert_non_null(strstr(out, line));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty, reset),
        cmocka_unit_test_setup(test_counter_gauge_text, reset),
        cmocka_unit_test_setup(test_series_sorted_by_labels, reset),
        cmocka_unit_test_setup(test_histogram_text, reset),
        cmocka_unit_test_setup(test_histogram_latency_bounds, reset),
        cmocka_unit_test_setup(test_misuse_aborts, reset),
        cmocka_unit_test_setup(test_concurrency, reset),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ias_metrics_reset();
    return rc;
}
