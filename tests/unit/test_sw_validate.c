/* Request validation: message classes, mandatory fields, PAN checks, and the
 * response code each failure gets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "parse.h"
#include "validate.h"

static const uint8_t mac[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

static void base_0200(struct iso_msg *m, uint8_t *arena, size_t cap)
{
    iso_msg_init(m, arena, cap);
    assert_int_equal(iso_set_mti(m, "0200"), 0);
    assert_int_equal(iso_set_str(m, 2, "4890010000000012"), 0);
    assert_int_equal(iso_set_str(m, 3, "000000"), 0);
    assert_int_equal(iso_set_str(m, 4, "000000001250"), 0);
    assert_int_equal(iso_set_str(m, 7, "1126150615"), 0);
    assert_int_equal(iso_set_str(m, 11, "000123"), 0);
    assert_int_equal(iso_set_str(m, 41, "TERM0001"), 0);
    assert_int_equal(iso_set_str(m, 49, "504"), 0);
    assert_int_equal(iso_set(m, 64, mac, 8), 0);
}

static void test_valid_purchase(void **state)
{
    struct iso_msg m;
    uint8_t arena[512];
    struct sw_validation v;
    base_0200(&m, arena, sizeof arena);
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_int_equal(v.kind, SW_KIND_FINANCIAL);
    assert_int_equal(v.proc, 0);
    assert_string_equal(v.rc, "00");
    assert_int_equal(v.pan_len, 16);
    assert_false(v.has_pin);
}

static void expect(struct iso_msg *m, const char *rc, int field)
{
    struct sw_validation v;
    assert_int_equal(sw_validate(m, &v), -1);
    assert_string_equal(v.rc, rc);
    assert_int_equal(v.field, field);
    assert_non_null(v.reason);
}

static void test_failures_and_codes(void **state)
{
    struct iso_msg m;
    uint8_t arena[512];

    base_0200(&m, arena, sizeof arena);
    iso_unset(&m, 11);
    expect(&m, "30", 11);

    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_str(&m, 2, "4890010000000013"), 0); /* Luhn */
    expect(&m, "14", 2);

    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_str(&m, 3, "990000"), 0);
    expect(&m, "12", 3);

    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_str(&m, 4, "000000000000"), 0);
    expect(&m, "13", 4);

    base_0200(&m, arena, sizeof arena);
    iso_unset(&m, 64);
    expect(&m, "30", 64);

    base_0200(&m, arena, sizeof arena);
    iso_unset(&m, 49);
    expect(&m, "30", 49);

    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0300"), 0);
    expect(&m, "12", 0);

    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0210"), 0);
    struct sw_validation v;
    assert_int_equal(sw_validate(&m, &v), -1);
    assert_int_equal(v.kind, SW_KIND_RESPONSE);
}

static void test_track2_pan_and_balance(void **state)
{
    struct iso_msg m;
    uint8_t arena[512];
    struct sw_validation v;
    base_0200(&m, arena, sizeof arena);
    iso_unset(&m, 2);
    assert_int_equal(iso_set_str(&m, 35, "4890010000000012=28121010000000000"), 0);
    assert_int_equal(iso_set_str(&m, 3, "310000"), 0);
    iso_unset(&m, 4); /* balance inquiries carry no amount */
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_int_equal(v.pan_len, 16);
    assert_memory_equal(v.pan, "4890010000000012", 16);
}

static void test_netmgmt_and_reversal(void **state)
{
    struct iso_msg m;
    uint8_t arena[512];
    struct sw_validation v;
    iso_msg_init(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0800"), 0);
    assert_int_equal(iso_set_str(&m, 11, "000001"), 0);
    expect(&m, "30", 70);
    assert_int_equal(iso_set_str(&m, 70, "301"), 0);
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_int_equal(v.kind, SW_KIND_NETMGMT);

    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0420"), 0);
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_int_equal(v.kind, SW_KIND_REVERSAL);
    assert_int_equal(iso_set(&m, 52, mac, 8), 0);
    expect(&m, "30", 52);
}

/* Pre-authorization: an 0220 is a completion only with DE 90, which names an 0100; an 0100
 * with DE 90 is an increment; both are purchases (00, 01, 09); a completion carries no PIN. */
static void test_completion_and_increment(void **state)
{
    struct iso_msg m;
    uint8_t arena[512];
    struct sw_validation v;
    const char *preauth = "010000012311261506150000010000100000000000";
    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0220"), 0);
    expect(&m, "12", 90);
    assert_int_equal(iso_set_str(&m, 90, preauth), 0);
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_int_equal(v.kind, SW_KIND_FINANCIAL);
    assert_true(v.completion && v.names_original);
    assert_int_equal(iso_set_mti(&m, "0221"), 0);
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_true(v.completion);
    assert_int_equal(iso_set(&m, 52, mac, 8), 0);
    expect(&m, "30", 52);
    iso_unset(&m, 52);
    assert_int_equal(iso_set_str(&m, 3, "200000"), 0);
    expect(&m, "12", 3);
    assert_int_equal(iso_set_str(&m, 3, "000000"), 0);
    assert_int_equal(iso_set_str(&m, 90, "020000012311261506150000010000100000000000"), 0);
    expect(&m, "12", 90); /* names an 0200 */
    assert_int_equal(iso_set_str(&m, 90, "010000012311321506150000010000100000000000"), 0);
    expect(&m, "30", 90); /* 32 November */

    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0100"), 0);
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_false(v.names_original || v.completion);
    assert_int_equal(iso_set_str(&m, 90, preauth), 0);
    assert_int_equal(iso_set(&m, 52, mac, 8), 0); /* an increment may carry a PIN */
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_int_equal(v.kind, SW_KIND_AUTH);
    assert_true(v.names_original);
    assert_false(v.completion);

    base_0200(&m, arena, sizeof arena); /* an 0200 with DE 90 is not one of them */
    assert_int_equal(iso_set_str(&m, 90, preauth), 0);
    assert_int_equal(sw_validate(&m, &v), 0);
    assert_false(v.names_original);
}

/* (The response MTI rule moved to isonet: tests/unit/test_isonet.c.) */
static void test_luhn(void **state)
{
    assert_true(at_luhn_ok("79927398713", 11));
    assert_false(at_luhn_ok("79927398710", 11));
}

/* DE 7 is a real MMDDhhmmss: month 13 or February 30 would journal the
 * request on a made-up day (and once were accepted). */
static void test_transmission_time_is_a_real_date(void **state)
{
    static const char *const bad[] = { "1301120000", "0001120000", "0230120000", "0431120000",
                                       "1231240000", "1231236000", "1231235960", "12312359" };
    static const char *const good[] = { "0229120000", "1231235959", "0101000000" };
    struct iso_msg m;
    uint8_t arena[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        base_0200(&m, arena, sizeof arena);
        assert_int_equal(iso_set_str(&m, 7, bad[i]), 0);
        expect(&m, "30", 7);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct sw_validation v;
        base_0200(&m, arena, sizeof arena);
        assert_int_equal(iso_set_str(&m, 7, good[i]), 0);
        assert_int_equal(sw_validate(&m, &v), 0);
    }
    /* A reversal's DE 90 carries its original's DE 7: the same rule. */
    base_0200(&m, arena, sizeof arena);
    assert_int_equal(iso_set_mti(&m, "0420"), 0);
    assert_int_equal(iso_set_str(&m, 90, "020012345613011200000000010000100000000000"), 0);
    expect(&m, "30", 90);
    /* Not 42 digits (a dialect's n 42 would refuse them; a spec file's may not). */
    assert_int_equal(iso_set_str(&m, 90, "02001234561201120000000001000010000000000"), 0);
    expect(&m, "30", 90);
    assert_int_equal(iso_set_str(&m, 90, "0200123456120112000000000100001000000000 0"), 0);
    expect(&m, "30", 90);
    struct sw_validation v;
    assert_int_equal(iso_set_str(&m, 90, "020012345612011200000000010000100000000000"), 0);
    assert_int_equal(sw_validate(&m, &v), 0);
}

/* DE 7 to wall-clock time: the year is the one nearest now. */
static void test_de7_to_wall_clock(void **state)
{
    uint64_t now = 1796083200000ull; /* 2026-12-01T00:00:00Z */
    uint64_t t;
    assert_true(sw_de7_wall_ms((const uint8_t *)"1201000001", 10, now, &t));
    assert_int_equal(t, now + 1000);
    assert_true(sw_de7_wall_ms((const uint8_t *)"0101000000", 10, now, &t));
    assert_int_equal(t, 1798761600000ull); /* 2027-01-01: a month ahead, not eleven back */
    assert_true(sw_de7_wall_ms((const uint8_t *)"1130235959", 10, now, &t));
    assert_int_equal(t, now - 1000);
    assert_false(sw_de7_wall_ms((const uint8_t *)"1301000000", 10, now, &t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_purchase),
        cmocka_unit_test(test_failures_and_codes),
        cmocka_unit_test(test_track2_pan_and_balance),
        cmocka_unit_test(test_netmgmt_and_reversal),
        cmocka_unit_test(test_completion_and_increment),
        cmocka_unit_test(test_luhn),
        cmocka_unit_test(test_transmission_time_is_a_real_date),
        cmocka_unit_test(test_de7_to_wall_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
