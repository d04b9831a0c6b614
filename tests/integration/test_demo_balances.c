/* `acquirer-sim run` with balances= against the four-issuer world (sw_stack: switchd, hsm-sim,
 * four issuer-sims, the demo rates and a mobile number in the alias directory): the demo's
 * transfer lines and its foreign-currency purchase, each printed with both sides' balances
 * before -> after, and these are the wallets' balances in the issuers' databases before and
 * after the run; after the transfer whose OCT is declined, the sender's balance is back (the
 * AFT reversed); the wallet that cannot be asked (blocked) shows "?"; the inquiries are not
 * lines and use up no limit. Amounts worked by hand as in test_transfers.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;

#define MAD_CARD    "4890010000000012" /* WALLET1, 1,000.00 MAD */
#define MAD_BLOCKED "4890010000000053" /* WALLET1, blocked: its inquiries are declined 05 */
#define XOF_CARD    "4890020000000029" /* WALLET2, 500,000 XOF */
#define XAF_CARD    "4890030000000036" /* WALLET3, 1,000 XAF */
#define XAF_MSISDN  "+237690000036"

static int setup(void **state)
{
    return stack_setup_demo_world(state, &S);
}

static int teardown(void **state)
{
    return stack_teardown(state);
}

/* minor units of a currency with `decimals` minor digits, as acquirer-sim prints them. */
static const char *amt(long long v, int decimals, char *out, size_t cap)
{
    if (decimals == 2)
        snprintf(out, cap, "%lld.%02lld", v / 100, v % 100);
    else
        snprintf(out, cap, "%lld", v);
    return out;
}

/* The output's line that starts with `prefix` ("PASS line 3 "), NUL-terminated in line. */
static bool output_line(const char *out, const char *prefix, char *line, size_t cap)
{
    const char *p = strstr(out, prefix);
    if (!p)
        return false;
    size_t n = strcspn(p, "\n");
    snprintf(line, cap, "%.*s", (int)n, p);
    return true;
}

static void expect_in(const char *line, const char *want)
{
    if (!strstr(line, want)) {
        fprintf(stderr, "line '%s'\n  lacks '%s'\n", line, want);
        fail();
    }
}

static void transfers_show_both_balances(void **state)
{
    (void)state;
    long long a0 = stack_issuer_balance(&S, "WALLET1", MAD_CARD);
    long long b0 = stack_issuer_balance(&S, "WALLET2", XOF_CARD);
    long long c0 = stack_issuer_balance(&S, "WALLET3", XAF_CARD);
    assert_true(a0 > 0 && b0 > 0 && c0 >= 0);

    char scn[400], out[400], host[32], state_dir[400];
    snprintf(scn, sizeof scn, "%s/balances.scn", S.dir);
    snprintf(out, sizeof out, "%s/balances.out", S.dir);
    snprintf(state_dir, sizeof state_dir, "%s/acq-balances", S.dir);
    snprintf(host, sizeof host, "127.0.0.1:%u", S.acq_port);
    assert_int_equal(
        ts_write_file(scn, "defaults terminal=TERM0001 timeout-ms=10000\n"
                           "type=transfer pan=" MAD_CARD " to=" XOF_CARD " amount=10.00 "
                           "balances=" MAD_CARD "," XOF_CARD " expect=00\n"
                           "type=transfer pan=" XOF_CARD " to-msisdn=" XAF_MSISDN " amount=1000 "
                           "balances=" XOF_CARD "," XAF_CARD " expect=00\n"
                           "type=transfer pan=" MAD_CARD " to=" MAD_BLOCKED " amount=5.00 "
                           "balances=" MAD_CARD "," MAD_BLOCKED " expect=05\n"
                           "type=purchase pan=" MAD_CARD " currency=XOF amount=1000 "
                           "balances=" MAD_CARD " expect=00\n"),
        0);
    const char *args[] = { "--state-dir", state_dir, "--host", host, "run", scn, NULL };
    int code = ts_run("acquirer-sim", args, out);
    size_t len = 0;
    char *text = ts_read_file(out, 0, &len);
    assert_non_null(text);
    printf("%s", text);
    assert_int_equal(code, 0);
    assert_non_null(strstr(text, "4 passed, 0 failed\n")); /* the inquiries are not lines */

    long long a1 = stack_issuer_balance(&S, "WALLET1", MAD_CARD);
    char line[2048], w[256], x[40], y[40], z[40], v[40];
    /* 10.00 MAD to the XOF card: 15.10 MAD out (fee 5.10), 606 XOF in. */
    assert_true(output_line(text, "PASS line 2 ", line, sizeof line));
    snprintf(w, sizeof w, " | 489001******0012 %s -> %s MAD | 489002******0029 %s -> %s XOF",
             amt(a0, 2, x, sizeof x), amt(a0 - 1510, 2, y, sizeof y), amt(b0, 0, z, sizeof z),
             amt(b0 + 606, 0, v, sizeof v));
    expect_in(line, w);
    /* 1,000 XOF to a mobile number: 1,205 XOF out (fee 205), 1,010 XAF in. */
    assert_true(output_line(text, "PASS line 3 ", line, sizeof line));
    snprintf(w, sizeof w, " | 489002******0029 %s -> %s XOF | 489003******0036 %s -> %s XAF",
             amt(b0 + 606, 0, x, sizeof x), amt(b0 + 606 - 1205, 0, y, sizeof y),
             amt(c0, 0, z, sizeof z), amt(c0 + 1010, 0, v, sizeof v));
    expect_in(line, w);
    /* The OCT declined: the sender's balance is back where it was (its AFT reversed; when the
     * first inquiry after the answer came before the reversal, the AFT's debit of 5.00 + the
     * 2.00 fee shows in between), the blocked wallet cannot be asked. */
    assert_true(output_line(text, "PASS line 4 ", line, sizeof line));
    expect_in(line, "info OCT05 (the recipient's side failed: the sender's debit was reversed)");
    char w2[256];
    snprintf(w, sizeof w,
             " | 489001******0012 %s -> %s MAD | 489001******0053 ? -> ? MAD | back after ",
             amt(a0 - 1510, 2, x, sizeof x), amt(a0 - 1510, 2, y, sizeof y));
    snprintf(w2, sizeof w2,
             " | 489001******0012 %s -> %s -> %s MAD | 489001******0053 ? -> ? MAD | back after ",
             amt(a0 - 1510, 2, x, sizeof x), amt(a0 - 1510 - 700, 2, z, sizeof z),
             amt(a0 - 1510, 2, y, sizeof y));
    if (!strstr(line, w) && !strstr(line, w2)) {
        fprintf(stderr, "line '%s'\n  lacks '%s'\n  or '%s'\n", line, w, w2);
        fail();
    }
    /* 1,000 XOF on the MAD card: billed in MAD, and that is what left the wallet. */
    assert_true(output_line(text, "PASS line 5 ", line, sizeof line));
    assert_true(a1 < a0 - 1510);
    snprintf(w, sizeof w, "billed %s MAD", amt(a0 - 1510 - a1, 2, x, sizeof x));
    expect_in(line, w);
    snprintf(w, sizeof w, " | 489001******0012 %s -> %s MAD\n", amt(a0 - 1510, 2, x, sizeof x),
             amt(a1, 2, y, sizeof y));
    assert_non_null(strstr(text, w));
    assert_int_equal(stack_issuer_balance(&S, "WALLET2", XOF_CARD), b0 + 606 - 1205);
    assert_int_equal(stack_issuer_balance(&S, "WALLET3", XAF_CARD), c0 + 1010);
    assert_null(strstr(text, MAD_CARD));
    assert_null(strstr(text, XOF_CARD));

    /* The XOF card was asked four times and debited once: only the debit counts toward its
     * daily count; the XAF card, asked twice and credited, counts nothing. */
    assert_int_equal(stack_issuer_wallet_scalar(&S, "WALLET2", XOF_CARD, "usage_count"), 1);
    assert_int_equal(stack_issuer_wallet_scalar(&S, "WALLET3", XAF_CARD, "usage_count"), 0);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transfers_show_both_balances),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
