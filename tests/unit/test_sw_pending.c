/* The link's STAN table: put/get/del, full table, deletion keeps every other
 * entry reachable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>

#include "pending.h"

static void test_put_get_del(void **state)
{
    struct sw_pending *p = sw_pending_new(4);
    int a, b;
    enum sw_pending_kind k;
    assert_int_equal(sw_pending_put(p, 1, SW_PENDING_TXN, &a), 0);
    assert_int_equal(sw_pending_put(p, 999999, SW_PENDING_SAF, &b), 0);
    assert_int_equal(sw_pending_put(p, 1, SW_PENDING_TXN, &b), -1); /* already there */
    assert_int_equal(sw_pending_put(p, 0, SW_PENDING_TXN, &b), -1); /* STAN 0 never valid */
    assert_ptr_equal(sw_pending_get(p, 999999, &k), &b);
    assert_int_equal(k, SW_PENDING_SAF);
    assert_ptr_equal(sw_pending_del(p, 1), &a);
    assert_null(sw_pending_get(p, 1, NULL));
    assert_null(sw_pending_del(p, 1));
    assert_int_equal(sw_pending_count(p), 1);
    sw_pending_free(p);
}

static void test_capacity_enforced(void **state)
{
    struct sw_pending *p = sw_pending_new(3);
    int x;
    for (uint32_t s = 1; s <= 3; s++)
        assert_int_equal(sw_pending_put(p, s, SW_PENDING_TXN, &x), 0);
    assert_int_equal(sw_pending_put(p, 4, SW_PENDING_TXN, &x), -1);
    sw_pending_free(p);
}

static void test_churn_keeps_entries_reachable(void **state)
{
    enum { N = 5000 };
    static int vals[N];
    struct sw_pending *p = sw_pending_new(N);
    for (uint32_t s = 1; s <= N; s++)
        assert_int_equal(sw_pending_put(p, s * 7919 % 999999 + 1, SW_PENDING_TXN, &vals[s - 1]), 0);
    for (uint32_t s = 1; s <= N; s += 2) /* delete every other one */
        assert_ptr_equal(sw_pending_del(p, s * 7919 % 999999 + 1), &vals[s - 1]);
    for (uint32_t s = 1; s <= N; s++) {
        void *v = sw_pending_get(p, s * 7919 % 999999 + 1, NULL);
        if (s % 2)
            assert_null(v);
        else
            assert_ptr_equal(v, &vals[s - 1]);
    }
    assert_int_equal(sw_pending_count(p), N / 2);
    sw_pending_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_capacity_enforced),
        cmocka_unit_test(test_churn_keeps_entries_reachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
