/* BIN routing: longest prefix wins, 6..11 digits, bad tables refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "router.h"

static void test_longest_prefix_wins(void **state)
{
    const struct sw_route routes[] = {
        { "476173", 1, 0, 0 },
        { "47617390", 2, 0, 0 },
        { "47617390011", 3, 0, 0 },
        { "522222", 4, 0, 0 },
    };
    struct sw_router *r;
    char err[128];
    assert_int_equal(sw_router_build(routes, 4, &r, err, sizeof err), 0);
    assert_int_equal(sw_router_count(r), 4);
    assert_int_equal(sw_router_lookup(r, "4761739001010119", 16), 2);
    assert_int_equal(sw_router_lookup(r, "4761739001110119", 16), 3);
    assert_int_equal(sw_router_lookup(r, "4761731234567890", 16), 1);
    assert_int_equal(sw_router_lookup(r, "5222220000000007", 16), 4);
    assert_int_equal(sw_router_lookup(r, "4000000000000002", 16), -1);
    /* A PAN shorter than the prefix does not match it. */
    assert_int_equal(sw_router_lookup(r, "47617", 5), -1);
    /* Only len digits are read. */
    assert_int_equal(sw_router_lookup(r, "4761739001110119", 8), 2);
    sw_router_free(r);
}

/* The route that wins also names the billing currency of its cards (0: none) and its card
 * authentication keys. */
static void test_match_answers_billing_currency(void **state)
{
    const struct sw_route routes[] = {
        { "489001", 0, 504, 0 },
        { "48900199", 1, 952, 7 },
        { "489002", 2, 0, 0 },
    };
    struct sw_router *r;
    struct sw_route_match m;
    char err[128];
    assert_int_equal(sw_router_build(routes, 3, &r, err, sizeof err), 0);
    assert_true(sw_router_match(r, "4890010000000012", 16, &m));
    assert_int_equal(m.issuer, 0);
    assert_int_equal(m.billing_currency, 504);
    assert_true(sw_router_match(r, "4890019900000012", 16, &m));
    assert_int_equal(m.issuer, 1);
    assert_int_equal(m.billing_currency, 952);
    assert_int_equal(m.card_keys, 7); /* the route's card authentication keys (emv) */
    assert_true(sw_router_match(r, "4890020000000029", 16, &m));
    assert_int_equal(m.billing_currency, 0);
    assert_false(sw_router_match(r, "4999990000000098", 16, &m));
    sw_router_free(r);
}

static void test_bad_tables_refused(void **state)
{
    struct sw_router *r = NULL;
    char err[128];
    const struct sw_route short_prefix[] = { { "47617", 1, 0, 0 } };
    assert_int_equal(sw_router_build(short_prefix, 1, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "6 to 11 digits"));
    const struct sw_route letters[] = { { "4761A3", 1, 0, 0 } };
    assert_int_equal(sw_router_build(letters, 1, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "non-digit"));
    const struct sw_route twice[] = { { "476173", 1, 0, 0 }, { "476173", 2, 0, 0 } };
    assert_int_equal(sw_router_build(twice, 2, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "twice"));
    assert_null(r);
}

static void test_empty_router_matches_nothing(void **state)
{
    struct sw_router *r;
    char err[128];
    assert_int_equal(sw_router_build(NULL, 0, &r, err, sizeof err), 0);
    assert_int_equal(sw_router_lookup(r, "4761739001010119", 16), -1);
    sw_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_longest_prefix_wins),
        cmocka_unit_test(test_match_answers_billing_currency),
        cmocka_unit_test(test_bad_tables_refused),
        cmocka_unit_test(test_empty_router_matches_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
