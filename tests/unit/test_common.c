/* Unit tests of common/: strict parsers, hex, JSON strings, currencies, PAN masking, JSON log
 * lines, config tokenizing and the settings table, the printf-free writers (against snprintf) and
 * the calendar arithmetic (against gmtime_r and timegm). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "clock.h"
#include "conf.h"
#include "currency.h"
#include "fmt.h"
#include "grow.h"
#include "hist.h"
#include "siphash.h"
#include "hex.h"
#include "json.h"
#include "log.h"
#include "parse.h"

static void test_parse_u64(void **state)
{
    uint64_t v = 7;
    assert_true(at_parse_u64("0", 10, &v));
    assert_int_equal(v, 0);
    assert_true(at_parse_u64("18446744073709551615", UINT64_MAX, &v));
    assert_true(v == UINT64_MAX);
    v = 7;
    assert_false(at_parse_u64("18446744073709551616", UINT64_MAX, &v));
    assert_false(at_parse_u64("", 10, &v));
    assert_false(at_parse_u64("-1", 10, &v));
    assert_false(at_parse_u64("+1", 10, &v));
    assert_false(at_parse_u64("12x", 100, &v));
    assert_false(at_parse_u64("11", 10, &v));
    assert_int_equal(v, 7); /* untouched on failure */
    assert_true(at_parse_u64n("1234", 2, 99, &v));
    assert_int_equal(v, 12);
}

static void test_parse_bool(void **state)
{
    bool b = false;
    assert_true(at_parse_bool("Yes", &b));
    assert_true(b);
    assert_true(at_parse_bool("off", &b));
    assert_false(b);
    assert_false(at_parse_bool("maybe", &b));
}

static void test_luhn(void **state)
{
    (void)state;
    assert_int_equal(at_luhn_digit("489001000000001", 15), '2');
    assert_int_equal(at_luhn_digit("401234567890", 12), '9');
    assert_true(at_luhn_ok("4890010000000012", 16));
    assert_true(at_luhn_ok("4012345678909", 13));
    assert_false(at_luhn_ok("4890010000000013", 16));
    assert_false(at_luhn_ok("48900100000000x2", 16));
    assert_false(at_luhn_ok("0", 1)); /* a check digit alone is no number */
}

static void test_parse_hostport(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *err = NULL;
    assert_true(at_parse_hostport("127.0.0.1:8583", &ss, &len, &err));
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8583);
    assert_true(at_parse_hostport("localhost:1", &ss, &len, &err));
    assert_true(at_parse_hostport("[::1]:9583", &ss, &len, &err));
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_false(at_parse_hostport("127.0.0.1", &ss, &len, &err));
    assert_non_null(err);
    assert_false(at_parse_hostport("127.0.0.1:70000", &ss, &len, &err));
    assert_false(at_parse_hostport("example.com:80", &ss, &len, &err));
}

static void test_hex(void **state)
{
    uint8_t buf[4];
    char out[9];
    assert_int_equal(at_hex_decode("0aFf", 4, buf, sizeof buf), 2);
    assert_int_equal(buf[0], 0x0A);
    assert_int_equal(buf[1], 0xFF);
    at_hex_encode(buf, 2, out);
    assert_string_equal(out, "0AFF");
    assert_int_equal(at_hex_decode("0G", 2, buf, sizeof buf), -1);
    assert_int_equal(at_hex_decode("012", 3, buf, sizeof buf), -1);
    assert_int_equal(at_hex_decode("0011223344", 10, buf, sizeof buf), -1);
}

/* The one JSON escaper: quotes included, '"' and '\' backslashed, control bytes and bytes from
 * 0x7F as \u00XX; a short buffer holds whole pieces of the beginning and the full length is
 * returned; the stdio form writes the same and NULL as null. */
static void test_json_quote(void **state)
{
    char out[64];
    const char in[] = "a\"b\\c\n\x01\x7f\xff~";
    const char want[] = "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\\u00ff~\"";
    size_t n = at_json_quote(out, sizeof out, in, sizeof in - 1);
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(at_json_quote(out, sizeof out, "", 0), 2);
    assert_memory_equal(out, "\"\"", 2);

    memset(out, '#', sizeof out);
    assert_int_equal(at_json_quote(out, 4, "ab\n", 3), 10); /* "ab\u000a" */
    assert_memory_equal(out, "\"ab#", 4); /* the escape did not fit whole: not begun */

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    at_json_fput(f, in);
    fputc(' ', f);
    at_json_fput(f, NULL);
    fclose(f);
    char both[128];
    snprintf(both, sizeof both, "%s null", want);
    assert_string_equal(buf, both);
    free(buf);
}

/* One currency table for the console and the acquirer: alphabetic (any case) or numeric code. */
static void test_currency(void **state)
{
    const struct at_currency *mad = at_currency_find("504"), *xof = at_currency_find("xof"),
                             *tnd = at_currency_find("TND"), *gnf = at_currency_find("324");
    assert_non_null(mad);
    assert_string_equal(mad->alpha, "MAD");
    assert_int_equal(mad->exponent, 2);
    assert_non_null(xof);
    assert_string_equal(xof->numeric, "952");
    assert_int_equal(xof->exponent, 0);
    assert_non_null(tnd);
    assert_int_equal(tnd->exponent, 3);
    assert_non_null(gnf);
    assert_int_equal(gnf->exponent, 0);
    assert_null(at_currency_find("999"));
    assert_null(at_currency_find("ZZZ"));
    assert_null(at_currency_find(""));
    /* The decimal point by exponent: whole part, leading zeros kept after the point. */
    static const struct {
        uint64_t minor;
        unsigned exp;
        const char *want;
    } amounts[] = {
        { 1250, 2, "12.50" },
        { 5, 2, "0.05" },
        { 0, 2, "0.00" },
        { 500, 0, "500" },
        { 5, 3, "0.005" },
        { 1000, 3, "1.000" },
        { UINT64_MAX, 0, "18446744073709551615" },
        { 999999999999ull, 2, "9999999999.99" },
    };
    char out[40];
    for (size_t i = 0; i < sizeof amounts / sizeof amounts[0]; i++) {
        at_format_minor(amounts[i].minor, amounts[i].exp, out, sizeof out);
        assert_string_equal(out, amounts[i].want);
    }
}

static void test_mask_pan(void **state)
{
    char out[20];
    assert_string_equal(at_mask_pan("4761739001010119", 16, out), "476173******0119");
    assert_string_equal(at_mask_pan("5413330089010434567", 19, out), "541333*********4567");
    /* Too short to show a BIN safely: only the last 4 stay. */
    assert_string_equal(at_mask_pan("123456789012", 12, out), "********9012");
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_log_json_line(void **state)
{
    char path[] = "/tmp/atlas-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(at_log_open(path, "test"), 0);
    at_log(AT_LOG_INFO, "unit", AT_STR("q", "a\"b\\c\n\x01\xff"), AT_INT("n", -5), AT_UINT("u", 7),
           AT_BOOL("ok", true), AT_STRN("part", "abcdef", 3));
    at_log(AT_LOG_DEBUG, "hidden", AT_INT("n", 1)); /* below the default level */
    /* Integers are written without snprintf: the extremes and zero as "%lld" / "%llu". */
    at_log(AT_LOG_INFO, "ints", AT_INT("min", INT64_MIN), AT_INT("max", INT64_MAX),
           AT_INT("zero", 0), AT_UINT("umax", UINT64_MAX), AT_UINT("uzero", 0),
           AT_UINT("u10", 1000000000));
    at_log_close();
    const char *s = read_file(path);
    assert_non_null(strstr(s, "\"min\":-9223372036854775808,\"max\":9223372036854775807,"
                              "\"zero\":0,\"umax\":18446744073709551615,\"uzero\":0,"
                              "\"u10\":1000000000}\n"));
    assert_non_null(strstr(s, "\"prog\":\"test\",\"event\":\"unit\""));
    assert_non_null(strstr(s, "\"q\":\"a\\\"b\\\\c\\u000a\\u0001\\u00ff\""));
    assert_non_null(strstr(s, "\"n\":-5,\"u\":7,\"ok\":true,\"part\":\"abc\"}\n"));
    assert_null(strstr(s, "hidden"));
    unlink(path);
}

static void test_log_truncates_whole_fields(void **state)
{
    char path[] = "/tmp/atlas-log-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    static char big[10000];
    memset(big, 'x', sizeof big - 1);
    assert_int_equal(at_log_open(path, "test"), 0);
    at_log(AT_LOG_WARN, "big", AT_INT("before", 1), AT_STR("huge", big), AT_INT("after", 2));
    at_log_close();
    const char *s = read_file(path);
    assert_non_null(strstr(s, "\"before\":1,\"truncated\":true}\n"));
    assert_null(strstr(s, "huge"));
    unlink(path);
}

static void test_log_buffered_reopen_loses_nothing(void **state)
{
    char path[] = "/tmp/atlas-log-XXXXXX", rotated[64];
    int fd = mkstemp(path);
    close(fd);
    snprintf(rotated, sizeof rotated, "%s.1", path);
    assert_int_equal(at_log_open(path, "test"), 0);
    at_log_set_buffered(true);
    at_log(AT_LOG_INFO, "one", AT_INT("i", 1));
    assert_int_equal(rename(path, rotated), 0); /* logrotate's move */
    assert_int_equal(at_log_reopen(), 0);
    at_log(AT_LOG_INFO, "two", AT_INT("i", 2));
    at_log_set_buffered(false);
    at_log_close();
    assert_non_null(strstr(read_file(rotated), "\"event\":\"one\""));
    assert_non_null(strstr(read_file(path), "\"event\":\"two\""));
    unlink(path);
    unlink(rotated);
}

struct demo_conf {
    char addr[32];
    uint64_t max_conns;
    bool verbose;
    int seen_listener;
};

static const struct at_setting demo_table[] = {
    { "address", AT_SET_STR, offsetof(struct demo_conf, addr), 32, "127.0.0.1:1", 0, 0, "listen" },
    { "max_conns", AT_SET_U64, offsetof(struct demo_conf, max_conns), 0, "10", 1000, 0, "cap" },
    { "verbose", AT_SET_BOOL, offsetof(struct demo_conf, verbose), 0, "no", 0, 0, "chatty" },
};

static int demo_cb(void *ctx, const char *section, const char *name, const char *key,
                   const char *value, char *err, size_t errcap)
{
    struct demo_conf *c = ctx;
    if (strcmp(section, "listener") == 0 && strcmp(name, "acq") == 0)
        c->seen_listener++;
    return at_settings_set(demo_table, 3, c, key, value, err, errcap);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_conf(void **state)
{
    char path[] = "/tmp/atlas-conf-XXXXXX", err[256];
    struct demo_conf c = { 0 };
    close(mkstemp(path));
    assert_int_equal(at_settings_defaults(demo_table, 3, &c, err, sizeof err), 0);
    assert_int_equal(c.max_conns, 10);

    write_text(path, "# top\nverbose = yes  # trailing\n[listener acq]\n"
                     "address = \"127.0.0.1:8583\"\nmax_conns=500\n");
    assert_int_equal(at_conf_load(path, demo_cb, &c, err, sizeof err), 0);
    assert_string_equal(c.addr, "127.0.0.1:8583");
    assert_int_equal(c.max_conns, 500);
    assert_true(c.verbose);
    assert_int_equal(c.seen_listener, 2);

    write_text(path, "verbose = yes\nmax_cons = 5\n");
    assert_int_equal(at_conf_load(path, demo_cb, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2: unknown key 'max_cons'"));

    write_text(path, "max_conns = 5000\n");
    assert_int_equal(at_conf_load(path, demo_cb, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, ":1: 'max_conns' must be an integer in 0..1000"));

    write_text(path, "[listener\n");
    assert_int_equal(at_conf_load(path, demo_cb, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "malformed section header"));
    unlink(path);
}

/* switchd's --help-config is made by at_settings_print_help: its text stays what it was. */
static void test_settings_help_unchanged(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    at_settings_print_help(demo_table, 3, "listener NAME", f);
    fclose(f);
    assert_string_equal(text,
                        "[listener NAME]\n"
                        "  address                string   default 127.0.0.1:1\n      listen\n"
                        "  max_conns              integer  default 10, max 1000\n      cap\n"
                        "  verbose                bool     default no\n      chatty\n");
    free(text);
}

static void test_parse_double(void **state)
{
    static const struct {
        const char *text;
        double value;
    } good[] = { { "10", 10.0 },    { "0.5", 0.5 },     { ".25", 0.25 }, { "3.", 3.0 },
                 { "1e3", 1000.0 }, { "2.5E-1", 0.25 }, { "0", 0.0 } };
    double v;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        v = 7;
        if (!at_parse_double(good[i].text, &v) || v != good[i].value) {
            fprintf(stderr, "'%s' read as %g\n", good[i].text, v);
            fail();
        }
    }
    v = 7;
    static const char *const bad[] = { "",   " 5",   "5 ",  "+5",  "-1",    "1e",  "1e+",   ".",
                                       "e3", "0x10", "inf", "nan", "1.2.3", "1,5", "1e999", "12x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (at_parse_double(bad[i], &v)) {
            fprintf(stderr, "'%s' was accepted\n", bad[i]);
            fail();
        }
    }
    assert_true(v == 7.0); /* untouched on failure */
}

/* A command-line table: the shape of acquirer-sim's options. */
struct cli_conf {
    uint64_t rate, closed;
    double duration, warmup;
    char pan[20];
    char term[9];
    char host[16];
    bool quiet;
};

#define CO(f) offsetof(struct cli_conf, f), sizeof(((struct cli_conf *)0)->f)
static const struct at_setting cli_table[] = {
    { "rate", AT_SET_U64, CO(rate), "100", 1000, AT_SET_NONZERO, "arrivals per second" },
    { "closed", AT_SET_U64, CO(closed), NULL, 100, AT_SET_NONZERO, "K in flight (default: open)" },
    { "duration", AT_SET_DOUBLE, CO(duration), "10", 86400, AT_SET_NONZERO, "seconds" },
    { "warmup", AT_SET_DOUBLE, CO(warmup), "1", 3600, 0, "seconds before" },
    { "pan", AT_SET_STR, CO(pan), NULL, 0, AT_SET_MINLEN(12) | AT_SET_DIGITS, "card" },
    { "terminal", AT_SET_STR, CO(term), NULL, 0, AT_SET_MINLEN(8), "DE 41" },
    { "host", AT_SET_STR, CO(host), "127.0.0.1:1", 0, 0, "where" },
    { "quiet", AT_SET_BOOL, CO(quiet), "no", 0, 0, "no progress" },
};
#undef CO
#define CLI_N (sizeof cli_table / sizeof cli_table[0])

static void expect_refused(struct cli_conf *c, const char *key, const char *value, const char *why)
{
    char err[200] = "";
    struct cli_conf before = *c;
    assert_int_equal(at_settings_set(cli_table, CLI_N, c, key, value, err, sizeof err), -1);
    if (!strstr(err, why)) {
        fprintf(stderr, "%s=%s: '%s' lacks '%s'\n", key, value ? value : "(bare)", err, why);
        fail();
    }
    assert_memory_equal(c, &before, sizeof before); /* a refused value stores nothing */
}

static void test_settings_value_rules(void **state)
{
    char err[200];
    struct cli_conf c;
    memset(&c, 0, sizeof c);
    c.closed = 77;
    assert_int_equal(at_settings_defaults(cli_table, CLI_N, &c, err, sizeof err), 0);
    assert_int_equal(c.rate, 100);
    assert_int_equal(c.closed, 77); /* no default: the field keeps what it holds */
    assert_true(c.duration == 10.0 && c.warmup == 1.0);
    assert_string_equal(c.pan, "");
    assert_false(c.quiet);

    /* Given values are held to them. */
    static const struct {
        const char *key, *value, *why;
    } refused[] = {
        { "rate", "0", "'rate' must be an integer in 1..1000" },
        { "rate", "1001", "'rate' must be an integer in 1..1000" },
        { "closed", "0", "'closed' must be an integer in 1..100" },
        { "duration", "0", "'duration' must be a number above 0, up to 86400" },
        { "duration", "86400.5", "above 0, up to 86400" },
        { "duration", " 5", "'duration' must be" },
        { "warmup", "-1", "'warmup' must be a number in 0..3600" },
        { "pan", "48900100000000x", "'pan' must be 12 to 19 digits" },
        { "pan", "48900100000", "'pan' must be 12 to 19 digits" },
        { "pan", "48900100000000000000", "value of 'pan' longer than 19 characters" },
        { "terminal", "TERM001", "'terminal' must be 8 characters" },
        { "quiet", "maybe", "'quiet' must be yes/no/true/false/on/off/1/0" },
        { "rate", NULL, "'rate' needs a value" },
        { "colour", "red", "unknown key 'colour'" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        expect_refused(&c, refused[i].key, refused[i].value, refused[i].why);

    assert_int_equal(at_settings_set(cli_table, CLI_N, &c, "rate", "1000", err, sizeof err), 0);
    assert_int_equal(c.rate, 1000);
    assert_int_equal(at_settings_set(cli_table, CLI_N, &c, "warmup", "0", err, sizeof err), 0);
    assert_true(c.warmup == 0.0);
    assert_int_equal(at_settings_set(cli_table, CLI_N, &c, "duration", "0.001", err, sizeof err),
                     0);
    assert_true(c.duration == 0.001);
    assert_int_equal(
        at_settings_set(cli_table, CLI_N, &c, "pan", "489001000000001", err, sizeof err), 0);
    assert_string_equal(c.pan, "489001000000001");
    assert_int_equal(at_settings_set(cli_table, CLI_N, &c, "quiet", NULL, err, sizeof err), 0);
    assert_true(c.quiet); /* a bare bool is a flag */
    assert_int_equal(at_settings_set(cli_table, CLI_N, &c, "quiet", "off", err, sizeof err), 0);
    assert_false(c.quiet);

    char what[96];
    assert_string_equal(at_setting_describe(&cli_table[4], what, sizeof what), "12 to 19 digits");
    assert_string_equal(at_setting_describe(&cli_table[5], what, sizeof what), "8 characters");
    assert_string_equal(at_setting_describe(&cli_table[6], what, sizeof what),
                        "at most 15 characters");
    assert_string_equal(at_setting_describe(&cli_table[3], what, sizeof what),
                        "a number in 0..3600");
    /* The old rows describe themselves as their error messages always said. */
    assert_string_equal(at_setting_describe(&demo_table[1], what, sizeof what),
                        "an integer in 0..1000");
}

static void test_settings_command_line(void **state)
{
    char *argv[] = { "prog", "--rate", "200", "--quiet", "--colour", "--closed", NULL };
    int argc = 6, i = 1;
    const struct at_setting *row = NULL;
    const char *value = "x";
    char err[200] = "";
    assert_int_equal(
        at_settings_arg(cli_table, CLI_N, argc, argv, &i, &row, &value, err, sizeof err), 1);
    assert_string_equal(row->name, "rate");
    assert_string_equal(value, "200");
    assert_int_equal(i, 2); /* at the value: the caller's loop steps past it */
    i = 3;
    assert_int_equal(
        at_settings_arg(cli_table, CLI_N, argc, argv, &i, &row, &value, err, sizeof err), 1);
    assert_string_equal(row->name, "quiet");
    assert_null(value); /* a flag takes no value */
    assert_int_equal(i, 3);
    i = 4;
    assert_int_equal(
        at_settings_arg(cli_table, CLI_N, argc, argv, &i, &row, &value, err, sizeof err), 0);
    assert_int_equal(i, 4);
    i = 5;
    assert_int_equal(
        at_settings_arg(cli_table, CLI_N, argc, argv, &i, &row, &value, err, sizeof err), -1);
    assert_string_equal(err, "--closed needs a value");

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    at_settings_print_options(cli_table, CLI_N, "--", f);
    fclose(f);
    assert_non_null(strstr(text,
                           "  --rate N                     an integer in 1..1000; default 100\n"
                           "      arrivals per second\n"));
    /* A default that means "not given" is not shown; the help says what happens. */
    assert_non_null(strstr(text, "  --closed N                   an integer in 1..100\n"));
    assert_non_null(strstr(text, "  --duration X                 a number above 0, up to 86400; "
                                 "default 10\n"));
    assert_non_null(strstr(text, "  --pan TEXT                   12 to 19 digits\n"));
    assert_non_null(strstr(text, "  --host TEXT                  at most 15 characters; default "
                                 "127.0.0.1:1\n"));
    assert_non_null(strstr(text, "  --quiet                      a flag\n      no progress\n"));
    free(text);
    /* The same rows as key=value words. */
    text = NULL;
    f = open_memstream(&text, &len);
    at_settings_print_options(cli_table, 2, "", f);
    fclose(f);
    assert_string_equal(text, "  rate=N                       an integer in 1..1000; default 100\n"
                              "      arrivals per second\n"
                              "  closed=N                     an integer in 1..100\n"
                              "      K in flight (default: open)\n");
    free(text);
}

static void test_hist_exact_small_values(void **state)
{
    static struct at_hist h;
    at_hist_reset(&h);
    for (uint64_t v = 1; v <= 100; v++)
        at_hist_record(&h, v);
    assert_int_equal(h.count, 100);
    assert_int_equal(at_hist_quantile(&h, 0.5), 50);
    assert_int_equal(at_hist_quantile(&h, 0.99), 99);
    assert_int_equal(at_hist_quantile(&h, 1.0), 100);
    assert_int_equal(at_hist_count_le(&h, 10), 10);
    assert_int_equal(h.min, 1);
    assert_int_equal(h.max, 100);
}

static void test_hist_relative_error_below_one_percent(void **state)
{
    static struct at_hist h;
    /* Every value from 1 µs to ~10 s (in ns), sampled: the reported quantile
     * of a single recorded value must be within 1 % above it, never below. */
    for (uint64_t v = 1000; v < 10000000000ull; v = v * 7 / 5 + 13) {
        at_hist_reset(&h);
        at_hist_record(&h, v);
        at_hist_record(&h, v);
        uint64_t q = at_hist_quantile(&h, 0.5);
        assert_true(q >= v);
        assert_true((double)(q - v) <= 0.01 * (double)v);
    }
    at_hist_reset(&h);
    at_hist_record(&h, UINT64_MAX);
    assert_true(at_hist_quantile(&h, 0.5) == UINT64_MAX);
}

static void test_hist_merge_and_quantiles(void **state)
{
    static struct at_hist a, b;
    at_hist_reset(&a);
    at_hist_reset(&b);
    for (int i = 0; i < 990; i++)
        at_hist_record(&a, 1000);
    for (int i = 0; i < 10; i++)
        at_hist_record(&b, 50000);
    at_hist_merge(&a, &b);
    assert_int_equal(a.count, 1000);
    assert_true(at_hist_quantile(&a, 0.5) >= 1000 && at_hist_quantile(&a, 0.5) < 1010);
    assert_true(at_hist_quantile(&a, 0.999) >= 50000);
    assert_int_equal(at_hist_count_le(&a, 20000), 990);
    assert_int_equal(a.max, 50000);
}

/* The reference vectors of the SipHash paper (Appendix A): key 00..0f,
 * messages 00..(n-1); the 64-bit outputs are printed there little-endian. */
static void test_siphash_reference_vectors(void **state)
{
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    assert_true(at_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
    assert_true(at_siphash(key, msg, 1) == 0x74f839c593dc67fdULL);
    assert_true(at_siphash(key, msg, 8) == 0x93f5f5799a932462ULL);
    assert_true(at_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
}

/* A fixed-seed 64-bit generator: the same values on every run. */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void test_fmt_matches_snprintf(void **state)
{
    char got[32], want[32];
    uint64_t x = 0x9E3779B97F4A7C15u;
    static const uint64_t edges[] = {
        0, 1, 9, 10, 99, 100, 999999, 1000000, 4294967295u, UINT64_MAX
    };
    for (int i = 0; i < 100000; i++) {
        uint64_t v = i < 10 ? edges[i] : next_rand(&x) >> (next_rand(&x) % 64);
        for (unsigned w = 1; w <= 20; w++) {
            uint64_t mod = 1;
            for (unsigned k = 0; k < w && k < 19; k++)
                mod *= 10;
            snprintf(want, sizeof want, "%0*llu", (int)w,
                     (unsigned long long)(w < 20 ? v % mod : v));
            memset(got, 0, sizeof got);
            at_put_digits(got, w, v);
            assert_string_equal(got, want);
        }
        int64_t sv = (int64_t)v;
        snprintf(want, sizeof want, "%lld", (long long)sv);
        assert_int_equal(at_put_i64(got, sv), strlen(want));
        assert_string_equal(got, want);
    }
    snprintf(want, sizeof want, "%lld", (long long)INT64_MIN);
    assert_int_equal(at_put_i64(got, INT64_MIN), 20);
    assert_string_equal(got, want);
    for (size_t cap = 1; cap <= 8; cap++) {
        char a[8], b[8];
        memset(a, 'x', sizeof a);
        memset(b, 'x', sizeof b);
        assert_int_equal(at_strlcpy(a, "abcde", cap), 5);
        snprintf(b, cap, "%s", "abcde");
        assert_memory_equal(a, b, sizeof a); /* bytes past the NUL untouched too */
    }
}

static void test_calendar_matches_libc(void **state)
{
    /* Every day from 1600 to 2400, and both ways. */
    for (int64_t days = -135140; days <= 157054; days++) {
        time_t t = (time_t)(days * 86400);
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        int64_t y;
        unsigned m, d;
        at_civil_from_days(days, &y, &m, &d);
        assert_int_equal(y, tm.tm_year + 1900);
        assert_int_equal(m, tm.tm_mon + 1);
        assert_int_equal(d, tm.tm_mday);
        assert_int_equal(at_days_from_civil(y, m, d), days);
        assert_int_equal(timegm(&tm) / 86400, days);
    }
}

static void test_format_utc_matches_snprintf(void **state)
{
    uint64_t x = 0x2545F4914F6CDD1Du;
    static const uint64_t edges[] = {
        0,
        951782400000000u,    /* 2000-02-29T00:00:00 */
        946684799999999u,    /* 1999-12-31T23:59:59.999999 */
        4107542400000000u,   /* 2100-03-01 */
        1795683975123456u,   /* 2026-11-26T... */
        253402300799999999u, /* 9999-12-31T23:59:59.999999: the last fast one */
        253402300800000000u, /* 10000-01-01: snprintf */
    };
    size_t n_edges = sizeof edges / sizeof edges[0];
    for (size_t i = 0; i < 200000; i++) {
        uint64_t us = i < n_edges ? edges[i] : next_rand(&x) % 253402300800000000u;
        time_t secs = (time_t)(us / 1000000u);
        struct tm tm;
        assert_non_null(gmtime_r(&secs, &tm));
        char want[64], got[64];
        int wn = snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
                          tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                          tm.tm_sec, (unsigned)(us % 1000000u));
        assert_int_equal(at_format_utc(us, got, sizeof got), wn);
        assert_string_equal(got, want);
        if (i == 1) {
            char small[16]; /* a short cap truncates like snprintf */
            assert_int_equal(at_format_utc(us, small, sizeof small), wn);
            assert_int_equal(strncmp(small, want, sizeof small - 1), 0);
            assert_int_equal(small[sizeof small - 1], '\0');
        }
    }
}

/* at_grow_bytes: nothing while the need fits; else the first of first, 2 x first, ... that
 * holds it, the bytes kept. */
static void test_grow_bytes(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t cap = 0;
    assert_int_equal(at_grow_bytes(&buf, &cap, 10, 16), 0);
    assert_int_equal(cap, 16);
    memcpy(buf, "0123456789", 10);
    char *was = buf;
    assert_int_equal(at_grow_bytes(&buf, &cap, 16, 16), 0);
    assert_ptr_equal(buf, was);
    assert_int_equal(cap, 16);
    assert_int_equal(at_grow_bytes(&buf, &cap, 17, 16), 0);
    assert_int_equal(cap, 32);
    assert_int_equal(at_grow_bytes(&buf, &cap, 100, 16), 0);
    assert_int_equal(cap, 128);
    assert_memory_equal(buf, "0123456789", 10);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_bytes),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_luhn),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_json_quote),
        cmocka_unit_test(test_currency),
        cmocka_unit_test(test_mask_pan),
        cmocka_unit_test(test_log_json_line),
        cmocka_unit_test(test_log_truncates_whole_fields),
        cmocka_unit_test(test_log_buffered_reopen_loses_nothing),
        cmocka_unit_test(test_conf),
        cmocka_unit_test(test_settings_help_unchanged),
        cmocka_unit_test(test_parse_double),
        cmocka_unit_test(test_settings_value_rules),
        cmocka_unit_test(test_settings_command_line),
        cmocka_unit_test(test_hist_exact_small_values),
        cmocka_unit_test(test_hist_relative_error_below_one_percent),
        cmocka_unit_test(test_hist_merge_and_quantiles),
        cmocka_unit_test(test_siphash_reference_vectors),
        cmocka_unit_test(test_fmt_matches_snprintf),
        cmocka_unit_test(test_calendar_matches_libc),
        cmocka_unit_test(test_format_utc_matches_snprintf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
