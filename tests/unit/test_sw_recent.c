/* Recent-request store: duplicates found, bounded by count and age, and the
 * table stays consistent through many evictions (backward-shift deletion). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "recent.h"

static const uint8_t key[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static struct sw_recent_txn make(unsigned stan, const char *terminal)
{
    struct sw_recent_txn t;
    char buf[16];
    memset(&t, 0, sizeof t);
    memcpy(t.id.acquirer, "ACQ001", 6);
    memcpy(t.id.terminal, terminal, 8);
    snprintf(buf, sizeof buf, "%06u", stan % 1000000);
    memcpy(t.id.stan, buf, 6);
    memcpy(t.id.tx_time, "1126150615", 10);
    t.amount_minor = stan;
    return t;
}

static void test_duplicate_detected(void **state)
{
    struct sw_recent *r = sw_recent_new(16, 60000, key, 1000);
    struct sw_recent_txn *dup, a = make(1, "TERM0001"), b = make(1, "TERM0002");
    assert_non_null(sw_recent_insert(r, &a, 1000, &dup));
    assert_null(dup);
    assert_non_null(sw_recent_insert(r, &b, 1000, &dup)); /* other terminal: not a dup */
    a.amount_minor = 999;
    assert_null(sw_recent_insert(r, &a, 1001, &dup));
    assert_non_null(dup);
    assert_int_equal(dup->amount_minor, 1); /* the first one is kept */
    assert_non_null(sw_recent_find(r, &b.id, 1002));
    sw_recent_free(r);
}

static void test_entries_expire(void **state)
{
    struct sw_recent *r = sw_recent_new(16, 500, key, 1000);
    struct sw_recent_txn *dup, a = make(7, "TERM0001");
    assert_non_null(sw_recent_insert(r, &a, 1000, &dup));
    assert_non_null(sw_recent_find(r, &a.id, 1499));
    assert_null(sw_recent_find(r, &a.id, 1500));
    assert_non_null(sw_recent_insert(r, &a, 1600, &dup)); /* forgotten, so accepted again */
    assert_int_equal(sw_recent_count(r), 1);
    sw_recent_free(r);
}

static void test_capacity_evicts_oldest_and_table_stays_consistent(void **state)
{
    enum { CAP = 1000, N = 20000 };
    struct sw_recent *r = sw_recent_new(CAP, 1000000, key, 1);
    struct sw_recent_txn *dup;
    for (unsigned i = 0; i < N; i++) {
        struct sw_recent_txn t = make(i, i % 2 ? "TERM0001" : "TERM0002");
        assert_non_null(sw_recent_insert(r, &t, 1, &dup));
    }
    assert_int_equal(sw_recent_count(r), CAP);
    /* Exactly the newest CAP are findable, each with its own payload. */
    for (unsigned i = 0; i < N; i++) {
        struct sw_recent_txn t = make(i, i % 2 ? "TERM0001" : "TERM0002");
        struct sw_recent_txn *f = sw_recent_find(r, &t.id, 2);
        if (i < N - CAP) {
            assert_null(f);
        } else {
            assert_non_null(f);
            assert_int_equal(f->amount_minor, i);
        }
    }
    sw_recent_free(r);
}

/* The horizon: since when every identity inserted is still known. It starts
 * at creation and moves to the insertion time of each entry forgotten. */
static void test_horizon_follows_what_was_forgotten(void **state)
{
    struct sw_recent *r = sw_recent_new(2, 500, key, 100);
    struct sw_recent_txn *dup, a = make(1, "TERM0001"), b = make(2, "TERM0001"),
                               c = make(3, "TERM0001");
    assert_int_equal(sw_recent_horizon_ms(r), 100);
    assert_non_null(sw_recent_insert(r, &a, 200, &dup));
    assert_non_null(sw_recent_insert(r, &b, 300, &dup));
    assert_int_equal(sw_recent_horizon_ms(r), 100);      /* nothing forgotten yet */
    assert_non_null(sw_recent_insert(r, &c, 400, &dup)); /* full: a (seen at 200) goes */
    assert_int_equal(sw_recent_horizon_ms(r), 200);
    assert_null(sw_recent_find(r, &a.id, 401));
    struct sw_recent_txn d = make(4, "TERM0001");
    assert_non_null(sw_recent_insert(r, &d, 900, &dup)); /* b and c expired (500 ms) */
    assert_int_equal(sw_recent_horizon_ms(r), 400);
    sw_recent_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicate_detected),
        cmocka_unit_test(test_entries_expire),
        cmocka_unit_test(test_capacity_evicts_oldest_and_table_stays_consistent),
        cmocka_unit_test(test_horizon_follows_what_was_forgotten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
