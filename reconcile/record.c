/* Reads the load harness's record file (record.h). Every field is checked in the order the
 * contract gives, with the values it allows, so that a reconciliation never rests on a line it
 * half understood; the first bad line stops the read with its number and the field at fault. */
#include "record.h"

#include "grow.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cursor over one line's space-separated tokens. */
struct cur {
    const char *p, *end;
};

static int fail(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errcap)
        vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
    return -1;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

/* What the writer leaves of a value: letters, digits, and '?' for anything else. */
static bool sanitized(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '?'))
            return false;
    }
    return n > 0;
}

static unsigned num2(const char *s)
{
    return (unsigned)(s[0] - '0') * 10u + (unsigned)(s[1] - '0');
}

/* MMDDhhmmss with a possible month, day, hour, minute and second. */
static bool de7_ok(const char *s, size_t n)
{
    if (n != 10 || !all_digits(s, 10))
        return false;
    unsigned mo = num2(s), d = num2(s + 2), h = num2(s + 4), mi = num2(s + 6), se = num2(s + 8);
    return mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && se < 60;
}

/* The next token must be "key=value"; the value goes to *v and *vn. Tokens are separated by exactly
 * one space, as the writer puts them. */
static int take(struct cur *c, const char *key, const char **v, size_t *vn, char *err,
                size_t errcap)
{
    size_t kl = strlen(key);
    if (c->p >= c->end)
        return fail(err, errcap, "field %s missing (the line ends before it)", key);
    if (*c->p != ' ' || c->p + 1 >= c->end || c->p[1] == ' ')
        return fail(err, errcap, "fields must be separated by exactly one space (before %s)", key);
    const char *t = c->p + 1, *e = memchr(t, ' ', (size_t)(c->end - t));
    if (!e)
        e = c->end;
    if ((size_t)(e - t) <= kl || memcmp(t, key, kl) != 0 || t[kl] != '=')
        return fail(err, errcap, "expected field %s= here", key);
    *v = t + kl + 1;
    *vn = (size_t)(e - *v);
    if (*vn == 0)
        return fail(err, errcap, "%s: empty value", key);
    if (memchr(*v, '=', *vn))
        return fail(err, errcap, "%s: value contains '='", key);
    c->p = e;
    return 0;
}

static void put(char *dst, size_t cap, const char *v, size_t n)
{
    if (n == 1 && v[0] == '-')
        n = 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static bool is_dash(const char *v, size_t n)
{
    return n == 1 && v[0] == '-';
}

/* Fixed-width digits (stan 6, proc 6, currency 3, mti 4). */
static int take_digits(struct cur *c, const char *key, size_t width, char *dst, size_t cap,
                       char *err, size_t errcap)
{
    const char *v;
    size_t n;
    if (take(c, key, &v, &n, err, errcap) != 0)
        return -1;
    if (n != width || !all_digits(v, n))
        return fail(err, errcap, "%s: expected %zu digits", key, width);
    put(dst, cap, v, n);
    return 0;
}

static int take_de7(struct cur *c, const char *key, bool dash_ok, char *dst, char *err,
                    size_t errcap)
{
    const char *v;
    size_t n;
    if (take(c, key, &v, &n, err, errcap) != 0)
        return -1;
    if (dash_ok && is_dash(v, n)) {
        dst[0] = '\0';
        return 0;
    }
    if (!de7_ok(v, n))
        return fail(err, errcap, "%s: expected a transmission time MMDDhhmmss", key);
    put(dst, 11, v, n);
    return 0;
}

static int take_yesno(struct cur *c, const char *key, bool *out, char *err, size_t errcap)
{
    const char *v = NULL; /* gcc 12 -O3 cannot see that take() sets both when it returns 0 */
    size_t n = 0;
    if (take(c, key, &v, &n, err, errcap) != 0)
        return -1;
    if (n == 3 && memcmp(v, "yes", 3) == 0)
        *out = true;
    else if (n == 2 && memcmp(v, "no", 2) == 0)
        *out = false;
    else
        return fail(err, errcap, "%s: expected yes or no", key);
    return 0;
}

/* A masked PAN as load_pan_mask writes it: 11 characters or more are 6 digits, one '*' per
 * hidden digit, 4 digits; shorter ones are all '*'. Anything else is refused — and a full PAN
 * must never be accepted, or quoted in the error. */
static bool masked_pan_ok(const char *v, size_t n)
{
    if (n < 1 || n > 19)
        return false;
    if (n < 11)
        return strspn(v, "*") >= n;
    for (size_t i = 0; i < n; i++) {
        bool digit = v[i] >= '0' && v[i] <= '9';
        if ((i < 6 || i >= n - 4) ? !digit : v[i] != '*')
            return false;
    }
    return true;
}

int rec_check_header(const char *line, size_t len, unsigned *version, char *err, size_t errcap)
{
    static const char prefix[] = "# atlas-load-record ";
    size_t pl = sizeof prefix - 1;
    if (len == strlen(REC_HEADER) && memcmp(line, REC_HEADER, len) == 0) {
        *version = 1;
        return 0;
    }
    if (len == strlen(REC_HEADER_V2) && memcmp(line, REC_HEADER_V2, len) == 0) {
        *version = 2;
        return 0;
    }
    if (len > pl && memcmp(line, prefix, pl) == 0 && all_digits(line + pl, len - pl))
        return fail(err, errcap,
                    "record format version %.*s is not supported (this reader knows 1 and 2)",
                    (int)(len - pl > 9 ? 9 : len - pl), line + pl);
    return fail(err, errcap, "not a record file: the first line must be '%s'", REC_HEADER);
}

/* A value from the switch (de6, de51, de28): as the writer leaves it, or '-'. */
static int take_switch_value(struct cur *c, const char *key, size_t maxlen, char *dst, size_t cap,
                             char *err, size_t errcap)
{
    const char *v;
    size_t n;
    if (take(c, key, &v, &n, err, errcap) != 0)
        return -1;
    if (!is_dash(v, n) && (n > maxlen || !sanitized(v, n)))
        return fail(err, errcap, "%s: expected up to %zu characters or '-'", key, maxlen);
    put(dst, cap, v, n);
    return 0;
}

/* An answered transfer's DE 6 and DE 28 as numbers, when they are well formed. */
static void transfer_numbers(struct rec_line *l)
{
    size_t n = strlen(l->de6);
    if (n > 0 && all_digits(l->de6, n)) {
        l->has_de6 = true;
        l->de6_amount = strtoull(l->de6, NULL, 10);
    }
    if (strlen(l->de28) == 9 && (l->de28[0] == 'D' || l->de28[0] == 'C') &&
        all_digits(l->de28 + 1, 8)) {
        l->has_fee = true;
        l->fee = strtoll(l->de28 + 1, NULL, 10) * (l->de28[0] == 'D' ? 1 : -1);
    }
}

int rec_parse_line(const char *line, size_t len, unsigned version, struct rec_line *out, char *err,
                   size_t errcap)
{
    struct cur c = { line, line + len };
    const char *v;
    size_t n;
    unsigned lineno = out->lineno;
    memset(out, 0, sizeof *out);
    out->lineno = lineno;

    if (len > REC_LINE_MAX)
        return fail(err, errcap, "line longer than %d characters", REC_LINE_MAX);
    if (memchr(line, '\r', len) || memchr(line, '\t', len) || memchr(line, '\0', len))
        return fail(err, errcap, "control character in the line");
    if (len < 3 || memcmp(line, "req", 3) != 0 || (len > 3 && line[3] != ' '))
        return fail(err, errcap, "a line must start with 'req'");
    c.p = line + 3;

    if (take(&c, "terminal", &v, &n, err, errcap) != 0)
        return -1;
    if (n != 8 || !sanitized(v, n))
        return fail(err, errcap, "terminal: expected 8 characters (letters, digits, '?')");
    put(out->terminal, sizeof out->terminal, v, n);
    if (take_digits(&c, "stan", 6, out->stan, sizeof out->stan, err, errcap) != 0 ||
        take_de7(&c, "de7", false, out->de7, err, errcap) != 0 ||
        take_digits(&c, "mti", 4, out->mti, sizeof out->mti, err, errcap) != 0)
        return -1;
    bool reversal = strcmp(out->mti, "0400") == 0 || strcmp(out->mti, "0401") == 0;
    if (!reversal && strcmp(out->mti, "0200") != 0 && strcmp(out->mti, "0100") != 0)
        return fail(err, errcap, "mti: %s is not a request the harness records", out->mti);
    if (take_digits(&c, "proc", 6, out->proc, sizeof out->proc, err, errcap) != 0)
        return -1;

    if (take(&c, "amount", &v, &n, err, errcap) != 0)
        return -1;
    if (!is_dash(v, n)) {
        if (!all_digits(v, n) || n > 12 || (n > 1 && v[0] == '0'))
            return fail(err, errcap,
                        "amount: expected minor units (up to 12 digits, no leading zero) or '-'");
        out->has_amount = true;
        for (size_t i = 0; i < n; i++)
            out->amount = out->amount * 10 + (uint64_t)(v[i] - '0');
    }
    if (take_digits(&c, "currency", 3, out->currency, sizeof out->currency, err, errcap) != 0)
        return -1;
    if (take(&c, "pan", &v, &n, err, errcap) != 0)
        return -1;
    if (!is_dash(v, n) && !masked_pan_ok(v, n))
        return fail(err, errcap, "pan: not a masked PAN (6 digits, '*'s, 4 digits)");
    put(out->pan, sizeof out->pan, v, n);

    /* Version 2: a transfer's recipient, right after the sender's PAN. */
    out->transfer = version >= 2 && !reversal && out->proc[0] == '4' && out->proc[1] == '0';
    if (out->transfer) {
        if (take(&c, "to", &v, &n, err, errcap) != 0)
            return -1;
        if (!is_dash(v, n) && !masked_pan_ok(v, n))
            return fail(err, errcap, "to: not a masked PAN (6 digits, '*'s, 4 digits)");
        put(out->to, sizeof out->to, v, n);
        if (take_digits(&c, "to_currency", 3, out->to_currency, sizeof out->to_currency, err,
                        errcap) != 0)
            return -1;
    }

    if (reversal) {
        out->has_orig = true;
        if (take_digits(&c, "orig_mti", 4, out->orig_mti, sizeof out->orig_mti, err, errcap) != 0)
            return -1;
        if (strcmp(out->orig_mti, "0200") != 0 && strcmp(out->orig_mti, "0100") != 0)
            return fail(err, errcap, "orig_mti: %s cannot be reversed", out->orig_mti);
        if (take_digits(&c, "orig_stan", 6, out->orig_stan, sizeof out->orig_stan, err, errcap) !=
                0 ||
            take_de7(&c, "orig_de7", false, out->orig_de7, err, errcap) != 0)
            return -1;
    }

    if (take_yesno(&c, "answered", &out->answered, err, errcap) != 0)
        return -1;
    if (out->answered) {
        if (take(&c, "rc", &v, &n, err, errcap) != 0)
            return -1;
        if (!is_dash(v, n) && (n != 2 || !sanitized(v, n)))
            return fail(err, errcap, "rc: expected 2 characters or '-'");
        put(out->rc, sizeof out->rc, v, n);
        if (take(&c, "auth", &v, &n, err, errcap) != 0)
            return -1;
        if (!is_dash(v, n) && (n > 6 || !sanitized(v, n)))
            return fail(err, errcap, "auth: expected up to 6 characters or '-'");
        put(out->auth, sizeof out->auth, v, n);
        if (out->transfer) {
            if (take_switch_value(&c, "de6", 12, out->de6, sizeof out->de6, err, errcap) != 0 ||
                take_switch_value(&c, "de51", 3, out->de51, sizeof out->de51, err, errcap) != 0 ||
                take_switch_value(&c, "de28", 9, out->de28, sizeof out->de28, err, errcap) != 0)
                return -1;
            transfer_numbers(out);
        }
    }

    if (take_yesno(&c, "rev", &out->rev, err, errcap) != 0)
        return -1;
    if (out->rev) {
        if (out->answered)
            return fail(err, errcap, "rev: an answered request is never reversed (rev=yes)");
        if (reversal)
            return fail(err, errcap, "rev: a load-mix reversal is repeated, not reversed");
        if (take(&c, "rev_stan", &v, &n, err, errcap) != 0)
            return -1;
        bool never_left = is_dash(v, n);
        if (!never_left && (n != 6 || !all_digits(v, n)))
            return fail(err, errcap, "rev_stan: expected 6 digits or '-'");
        put(out->rev_stan, sizeof out->rev_stan, v, n);
        if (take_de7(&c, "rev_de7", true, out->rev_de7, err, errcap) != 0)
            return -1;
        if (never_left != (out->rev_de7[0] == '\0'))
            return fail(err, errcap, "rev_de7: '-' exactly when rev_stan is '-'");
        if (take(&c, "rev_tries", &v, &n, err, errcap) != 0)
            return -1;
        uint64_t tries = 0;
        for (size_t i = 0; i < n && i < 11; i++)
            tries = tries * 10 + (uint64_t)(v[i] - '0');
        if (!all_digits(v, n) || n > 10 || (n > 1 && v[0] == '0') || tries > UINT32_MAX)
            return fail(err, errcap, "rev_tries: expected a count");
        out->rev_tries = (unsigned)tries;
        if (never_left != (out->rev_tries == 0))
            return fail(err, errcap, "rev_tries: 0 exactly when the reversal never left");
        if (take(&c, "rev_rc", &v, &n, err, errcap) != 0)
            return -1;
        if (n == 4 && memcmp(v, "none", 4) == 0) {
            out->rev_answered = false;
        } else if (n == 2 && sanitized(v, n)) {
            if (never_left)
                return fail(err, errcap, "rev_rc: a reversal that never left has no answer");
            out->rev_answered = true;
            put(out->rev_rc, sizeof out->rev_rc, v, n);
        } else {
            return fail(err, errcap, "rev_rc: expected 2 characters or 'none'");
        }
    }
    if (c.p != c.end)
        return fail(err, errcap, "unexpected text after the last field");
    return 0;
}

const char *rec_mti_class(const struct rec_line *l)
{
    return l->mti[1] == '1' ? "010" : l->mti[1] == '4' ? "040" : "020";
}

int rec_parse_text(const char *text, size_t len, struct rec_file *out, char *err, size_t errcap)
{
    char why[160];
    size_t cap = 0;
    memset(out, 0, sizeof *out);
    const char *p = text, *end = text + len;
    unsigned lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        if (lineno == 1) {
            if (rec_check_header(p, n, &out->version, why, sizeof why) != 0)
                goto bad;
        } else if (!nl) {
            out->torn_tail = true; /* the contract: a harness that died mid-line */
        } else {
            if (at_grow((void **)&out->lines, &cap, out->n, sizeof *out->lines, 1024) != 0) {
                snprintf(why, sizeof why, "out of memory");
                goto bad;
            }
            struct rec_line *l = &out->lines[out->n];
            l->lineno = lineno;
            if (rec_parse_line(p, n, out->version, l, why, sizeof why) != 0)
                goto bad;
            out->n++;
        }
        p = nl ? nl + 1 : end;
    }
    if (lineno == 0) {
        lineno = 1;
        snprintf(why, sizeof why, "empty file: the first line must be '%s'", REC_HEADER);
        goto bad;
    }
    return 0;
bad:
    fail(err, errcap, "line %u: %s", lineno, why);
    rec_file_free(out);
    return -1;
}

int rec_read_file(const char *path, struct rec_file *out, char *err, size_t errcap)
{
    char why[256];
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, errcap, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            char *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    bool rerr = ferror(f) != 0;
    fclose(f);
    if (!buf || rerr) {
        const char *why_not = buf ? "read error" : "out of memory";
        free(buf);
        return fail(err, errcap, "%s: %s", path, why_not);
    }
    int rc = rec_parse_text(buf, len, out, why, sizeof why);
    free(buf);
    if (rc != 0)
        return fail(err, errcap, "%s: %s", path, why);
    return 0;
}

void rec_file_free(struct rec_file *f)
{
    free(f->lines);
    f->lines = NULL;
    f->n = 0;
}
