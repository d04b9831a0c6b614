/* switchd config: defaults, sections, unknown keys and bad values refused;
 * the listener limits against hostile connections; the descriptor budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[] = "/tmp/atlas-swconf-XXXXXX";

static int setup(void **state)
{
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return 0;
}

static int load_text(const char *text, struct sw_config *c, char *err, size_t errcap)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    sw_config_defaults(c);
    if (sw_config_load(path, c, err, errcap) != 0)
        return -1;
    return sw_config_validate(c, err, errcap);
}

static void test_defaults_are_valid_loopback(void **state)
{
    static struct sw_config c;
    char err[256];
    sw_config_defaults(&c);
    assert_int_equal(sw_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(c.n_listeners, 2);
    assert_string_equal(c.listeners[0].address, "127.0.0.1:8583");
    assert_string_equal(c.listeners[0].dialect, "ascii87");
    assert_string_equal(c.listeners[0].framing, "2b");
    assert_string_equal(c.listeners[1].address, "127.0.0.1:8584");
    assert_string_equal(c.listeners[1].dialect, "bcd87");
    assert_string_equal(c.listeners[1].framing, "tpdu");
    assert_string_equal(c.metrics_address, "127.0.0.1:9583");
    assert_string_equal(c.hsm_address, "127.0.0.1:1500");
    assert_int_equal(c.n_issuers, 0);
    assert_string_equal(c.cutover, "00:00"); /* the business day is the UTC calendar day */
    assert_int_equal(c.cutover_min, 0);
}

static void test_sections(void **state)
{
    static struct sw_config c;
    char err[256];
    assert_int_equal(load_text("log_level = debug\n"
                               "[hsm]\nconnections = 8\n"
                               "[listener host]\naddress = 127.0.0.1:9999\nmax_inflight = 7\n"
                               "[issuer WALLET1]\naddress = 127.0.0.1:9100\ntimeout_ms = 1500\n"
                               "[issuer WALLET2]\naddress = 127.0.0.1:9101\n",
                               &c, err, sizeof err),
                     0);
    assert_string_equal(c.log_level, "debug");
    assert_int_equal(c.cutover_min, 0);
    assert_int_equal(c.hsm_connections, 8);
    assert_int_equal(c.n_listeners, 1); /* a declared listener replaces the defaults */
    assert_string_equal(c.listeners[0].name, "host");
    assert_int_equal(c.listeners[0].max_inflight, 7);
    assert_string_equal(c.listeners[0].dialect, "ascii87");
    assert_int_equal(c.n_issuers, 2);
    assert_string_equal(c.issuers[0].name, "WALLET1");
    assert_int_equal(c.issuers[0].timeout_ms, 1500);
    assert_int_equal(c.issuers[1].timeout_ms, 5000);
    /* Stand-in and the per-MTI timeouts: off and 0 (= timeout_ms) unless set. */
    assert_false(c.issuers[0].stand_in);
    assert_int_equal(c.issuers[0].timeout_ms_0100, 0);
    assert_int_equal(c.issuers[0].timeout_ms_cash, 0);
    assert_int_equal(load_text("[issuer WALLET1]\ntimeout_ms = 10000\ntimeout_ms.0100 = 8000\n"
                               "timeout_ms.0200 = 10000\ntimeout_ms.cash = 25000\nstand_in = on\n",
                               &c, err, sizeof err),
                     0);
    assert_true(c.issuers[0].stand_in);
    assert_int_equal(c.issuers[0].timeout_ms_0100, 8000);
    assert_int_equal(c.issuers[0].timeout_ms_0200, 10000);
    assert_int_equal(c.issuers[0].timeout_ms_cash, 25000);
    assert_int_not_equal(load_text("[issuer W]\ntimeout_ms.0300 = 1\n", &c, err, sizeof err), 0);
    assert_non_null(strstr(err, "timeout_ms.0300"));
}

static void test_errors_name_the_culprit(void **state)
{
    static struct sw_config c;
    char err[256];
    static const struct {
        const char *text, *says;
    } refused[] = {
        { "max_inflite = 3\n", ":1: unknown key 'max_inflite'" },
        { "[listener a]\nframing = 3b\n", "framing '3b'" },
        { "[issuer x]\naddress = nowhere\n", "issuer x address 'nowhere'" },
        { "[listener a]\naddress=127.0.0.1:1\n[listener b]\nmax_frame=1\n"
          "[listener a]\naddress=127.0.0.1:2\n",
          "declared twice" },
        { "[frobnicator]\nx = 1\n", "unknown section [frobnicator]" },
        { "[issuer]\nx = 1\n", "needs a name" },
        { "log_level = loud\n", "log_level 'loud'" },
        { "cutover = 24:00\n", ":1: cutover '24:00': expected HH:MM, 00:00..23:59 (UTC)" },
        { "cutover = 22:60\n", "cutover '22:60'" },
        { "cutover = 9:30\n", "cutover" },
        { "cutover = 22:00:00\n", "cutover" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(load_text(refused[i].text, &c, err, sizeof err), -1);
        if (!strstr(err, refused[i].says)) {
            fprintf(stderr, "'%s' lacks '%s'\n", err, refused[i].says);
            fail();
        }
    }
    /* The cutover in minutes after 00:00 UTC; [switch] may come after other sections. */
    assert_int_equal(load_text("cutover = 22:00\n", &c, err, sizeof err), 0);
    assert_string_equal(c.cutover, "22:00");
    assert_int_equal(c.cutover_min, 22 * 60);
    assert_int_equal(
        load_text("[hsm]\nconnections = 2\n[switch]\ncutover = 23:59\n", &c, err, sizeof err), 0);
    assert_int_equal(c.cutover_min, 23 * 60 + 59);

    /* An empty repeated header is the same section. */
    assert_int_equal(
        load_text("[listener a]\n[listener a]\naddress=127.0.0.1:1\n", &c, err, sizeof err), 0);
}

static void test_listener_limits(void **state)
{
    static struct sw_config c;
    char err[256];
    sw_config_defaults(&c);
    for (size_t i = 0; i < c.n_listeners; i++) {
        const struct sw_listener_conf *l = &c.listeners[i];
        assert_int_equal(l->idle_timeout_s, 300);
        assert_int_equal(l->frame_timeout_ms, 10000);
        assert_int_equal(l->max_connections_per_address, 256);
        assert_int_equal(l->max_output_bytes, 256 * 1024);
        assert_int_equal(l->write_timeout_ms, 30000);
    }
    assert_int_equal(load_text("[listener a]\naddress = 127.0.0.1:1\nidle_timeout_s = 0\n"
                               "frame_timeout_ms = 500\nmax_connections_per_address = 0\n"
                               "max_output_bytes = 0\nwrite_timeout_ms = 0\n",
                               &c, err, sizeof err),
                     0);
    assert_int_equal(c.listeners[0].idle_timeout_s, 0);
    assert_int_equal(c.listeners[0].frame_timeout_ms, 500);
    assert_int_equal(c.listeners[0].max_connections_per_address, 0);
    assert_int_equal(c.listeners[0].max_output_bytes, 0);
    assert_int_equal(c.listeners[0].write_timeout_ms, 0);
    assert_int_equal(load_text("[listener a]\nmax_output_bytes = 100\n", &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "listener a: max_output_bytes 100 is below 4096"));
    assert_int_equal(load_text("[listener a]\nframe_timeout_ms = 600001\n", &c, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "frame_timeout_ms"));
}

static void test_fd_budget(void **state)
{
    static struct sw_config c;
    char err[256];
    struct sw_fd_budget b;
    sw_config_defaults(&c);
    sw_config_fd_budget(&c, &b);
    assert_int_equal(b.terminals, 16384); /* two listeners of 8192 */
    assert_int_equal(b.issuers, 0);
    assert_int_equal(b.hsm, 4);
    assert_int_equal(b.database, 2 + SW_DB_CLIENT_CONNECTIONS + 1);
    assert_int_equal(b.reserve, SW_FD_RESERVE);
    assert_int_equal(b.total, 16384 + 4 + 5 + SW_FD_RESERVE);
    assert_int_equal(
        load_text("journal_connections = 3\n[hsm]\nconnections = 6\n"
                  "[listener a]\naddress = 127.0.0.1:1\nmax_connections = 100\n"
                  "[listener b]\naddress = 127.0.0.1:2\nmax_connections = 50\n"
                  "[issuer X]\naddress = 127.0.0.1:3\n[issuer Y]\naddress = 127.0.0.1:4\n",
                  &c, err, sizeof err),
        0);
    sw_config_fd_budget(&c, &b);
    assert_int_equal(b.terminals, 150);
    assert_int_equal(b.issuers, 2);
    assert_int_equal(b.hsm, 6);
    assert_int_equal(b.database, 3 + SW_DB_CLIENT_CONNECTIONS + 1);
    assert_int_equal(b.total, 150 + 2 + 6 + 6 + SW_FD_RESERVE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_valid_loopback),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_errors_name_the_culprit),
        cmocka_unit_test(test_listener_limits),
        cmocka_unit_test(test_fd_budget),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
