/* /metrics rendering: Prometheus names, cumulative buckets, label hygiene. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(const struct sw_metrics *m)
{
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(sw_metrics_render(m, b), 0);
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static void test_counts_by_mti_and_rc(void **state)
{
    static struct sw_metrics m;
    sw_metrics_init(&m);
    sw_metrics_count_txn(&m, "0210", "00");
    sw_metrics_count_txn(&m, "0210", "00");
    sw_metrics_count_txn(&m, "0210", "51");
    sw_metrics_count_txn(&m, "0\n1\"", "5\\"); /* hostile bytes never reach the output */
    char *s = render(&m);
    assert_non_null(strstr(s, "atlas_transactions_total{mti=\"0210\",rc=\"00\"} 2\n"));
    assert_non_null(strstr(s, "atlas_transactions_total{mti=\"0210\",rc=\"51\"} 1\n"));
    assert_non_null(strstr(s, "atlas_transactions_total{mti=\"0?1?\",rc=\"5?\"} 1\n"));
    assert_non_null(strstr(s, "# TYPE atlas_request_duration_seconds histogram\n"));
    free(s);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
    static struct sw_metrics m;
    sw_metrics_init(&m);
    at_hist_record(&m.hop[SW_HOP_TOTAL], 300000);     /* 0.3 ms */
    at_hist_record(&m.hop[SW_HOP_TOTAL], 3000000);    /* 3 ms */
    at_hist_record(&m.hop[SW_HOP_TOTAL], 7000000000); /* 7 s */
    char *s = render(&m);
    assert_non_null(
        strstr(s, "atlas_request_duration_seconds_bucket{hop=\"total\",le=\"0.0005\"} 1\n"));
    assert_non_null(
        strstr(s, "atlas_request_duration_seconds_bucket{hop=\"total\",le=\"0.005\"} 2\n"));
    assert_non_null(strstr(s, "atlas_request_duration_seconds_bucket{hop=\"total\",le=\"5\"} 2\n"));
    assert_non_null(
        strstr(s, "atlas_request_duration_seconds_bucket{hop=\"total\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(s, "atlas_request_duration_seconds_count{hop=\"total\"} 3\n"));
    assert_non_null(strstr(s, "atlas_request_duration_seconds_count{hop=\"hsm\"} 0\n"));
    free(s);
}

static void test_label_table_overflow_is_counted(void **state)
{
    static struct sw_metrics m;
    sw_metrics_init(&m);
    char rc[3];
    for (int i = 0; i < SW_METRICS_MAX_RC + 5; i++) {
        char mti[5];
        snprintf(mti, sizeof mti, "%04d", i);
        snprintf(rc, sizeof rc, "00");
        sw_metrics_count_txn(&m, mti, rc);
    }
    assert_int_equal(m.n_txn, SW_METRICS_MAX_RC);
    assert_int_equal(m.txn_unlabelled, 5);
    char *s = render(&m);
    assert_non_null(strstr(s, "{mti=\"other\",rc=\"other\"} 5\n"));
    free(s);
}

static void test_connection_defence_counters(void **state)
{
    static struct sw_metrics m;
    sw_metrics_init(&m);
    m.conns_refused_total = 3;
    m.conns_refused_per_address_total = 2;
    m.closed[SW_CLOSE_IDLE] = 4;
    m.closed[SW_CLOSE_OUTPUT_CAP] = 1;
    m.accept_pauses_total = 1;
    m.accept_errors_total = 6;
    char *s = render(&m);
    assert_non_null(strstr(s, "\natlas_connections_refused_total 3\n"));
    assert_non_null(strstr(s, "\natlas_connections_refused_per_address_total 2\n"));
    assert_non_null(strstr(s, "# TYPE atlas_connections_closed_total counter\n"));
    assert_non_null(strstr(s, "\natlas_connections_closed_total{reason=\"idle_timeout\"} 4\n"));
    assert_non_null(strstr(s, "\natlas_connections_closed_total{reason=\"frame_timeout\"} 0\n"));
    assert_non_null(strstr(s, "\natlas_connections_closed_total{reason=\"write_timeout\"} 0\n"));
    assert_non_null(strstr(s, "\natlas_connections_closed_total{reason=\"output_cap\"} 1\n"));
    assert_non_null(strstr(s, "\natlas_accept_pauses_total 1\n"));
    assert_non_null(strstr(s, "\natlas_accept_errors_total 6\n"));
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_by_mti_and_rc),
        cmocka_unit_test(test_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_label_table_overflow_is_counted),
        cmocka_unit_test(test_connection_defence_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
