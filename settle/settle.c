/* Settlement totals (settle.h): the roll-up of (acquirer, issuer, currency) aggregates to
 * participants, net positions and their zero-sum check, the CSV and the report. */
#include "settle.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "currency.h"
#include "fmt.h"
#include "fx.h"

int64_t st_net(const struct st_total *t)
{
    /* Reversed amounts are stored negative: adding them takes the original back. */
    int64_t flows =
        (t->debit_amount + t->rev_debit_amount) - (t->credit_amount + t->rev_credit_amount);
    return (t->role == ST_ACQUIRER ? flows : -flows) - t->fees;
}

static int cmp_total(const void *a, const void *b)
{
    const struct st_total *x = a, *y = b;
    if (x->role != y->role)
        return x->role < y->role ? -1 : 1;
    int c = strcmp(x->participant, y->participant);
    if (c != 0)
        return c;
    return (x->currency > y->currency) - (x->currency < y->currency);
}

/* The row of (role, participant, currency) in t[0..*n), appended when absent (t has room). */
static struct st_total *row_of(struct st_total *t, size_t *n, enum st_role role, const char *who,
                               int ccy)
{
    for (size_t i = 0; i < *n; i++)
        if (t[i].role == role && t[i].currency == ccy && strcmp(t[i].participant, who) == 0)
            return &t[i];
    struct st_total *r = &t[(*n)++];
    memset(r, 0, sizeof *r);
    r->role = role;
    at_strlcpy(r->participant, who, sizeof r->participant);
    r->currency = ccy;
    return r;
}

static void add_pair(struct st_total *r, const struct db_settle_pair *p)
{
    r->holds += p->holds;
    r->debits += p->debits;
    r->debit_amount += p->debit_amount;
    r->credits += p->credits;
    r->credit_amount += p->credit_amount;
    r->rev_debits += p->rev_debits;
    r->rev_debit_amount -= p->rev_debit_amount;
    r->rev_credits += p->rev_credits;
    r->rev_credit_amount -= p->rev_credit_amount;
    r->pending += p->pending;
    r->pending_amount += p->pending_amount;
    r->failed += p->failed;
    r->failed_amount += p->failed_amount;
}

int st_rollup(const struct db_settle_pair *pairs, size_t n, struct st_total **out, size_t *nout)
{
    /* At most two rows per pair; the pairs are few (participants × currencies), so a linear
     * search per pair is cheaper than anything cleverer. */
    struct st_total *t = calloc(n ? 2 * n : 1, sizeof *t);
    if (!t)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct db_settle_pair *p = &pairs[i];
        /* A converted request's sides meet the conversion instead of each other: the switch
         * paid the acquirer in DE 49 as its issuer, and is paid by the issuer in DE 51 as
         * its acquirer (docs/settle.md). */
        const char *acq = p->side == DB_SETTLE_ISSUER ? ST_CONVERSION : p->acquirer_id;
        const char *iss = p->side == DB_SETTLE_ACQUIRER ? ST_CONVERSION : p->issuer_id;
        add_pair(row_of(t, &k, ST_ACQUIRER, acq, p->currency), p);
        add_pair(row_of(t, &k, ST_ISSUER, iss, p->currency), p);
    }
    for (size_t i = 0; i < k; i++)
        t[i].net = st_net(&t[i]);
    qsort(t, k, sizeof *t, cmp_total);
    *out = t;
    *nout = k;
    return 0;
}

int64_t st_currency_balance(const struct st_total *t, size_t n, int ccy)
{
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].currency == ccy)
            sum += t[i].net;
    return sum;
}

static const struct at_currency *currency_of(int ccy)
{
    char num[4];
    if (ccy < 0 || ccy > 999)
        return NULL;
    at_put_digits(num, 3, (uint64_t)ccy);
    num[3] = '\0';
    return at_currency_find(num);
}

static const char *role_name(enum st_role r)
{
    return r == ST_ACQUIRER ? "acquirer" : "issuer";
}

/* The name a participant is printed under: an issuer the journal does not name (a request the
 * switch answered itself) is "(none)". Ids are letters, digits, '_' and '-' (migration 0001's
 * CHECKs): nothing in them needs CSV quoting. */
static const char *who(const struct st_total *t)
{
    return t->participant[0] ? t->participant : "(none)";
}

int st_write_csv(FILE *f, const struct st_day *day, const struct st_total *t, size_t n)
{
    fputs("business_date,cutover_utc,role,participant,currency,currency_code,holds_count,"
          "debits_count,debits_amount,credits_count,credits_amount,reversed_debits_count,"
          "reversed_debits_amount,reversed_credits_count,reversed_credits_amount,fees_amount,"
          "net_amount,pending_reversals_count,pending_reversals_amount,failed_reversals_count,"
          "failed_reversals_amount\n",
          f);
    for (size_t i = 0; i < n; i++) {
        const struct at_currency *c = currency_of(t[i].currency);
        fprintf(f,
                "%s,%s,%s,%s,%03d,%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
                ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
                ",%" PRId64 ",%" PRId64 ",%" PRId64 "\n",
                day->date, day->cutover, role_name(t[i].role), who(&t[i]), t[i].currency,
                c ? c->alpha : "", t[i].holds, t[i].debits, t[i].debit_amount, t[i].credits,
                t[i].credit_amount, t[i].rev_debits, t[i].rev_debit_amount, t[i].rev_credits,
                t[i].rev_credit_amount, t[i].fees, t[i].net, t[i].pending, t[i].pending_amount,
                t[i].failed, t[i].failed_amount);
    }
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}

void st_format_amount(int64_t minor, int ccy, char out[ST_AMOUNT_CHARS])
{
    const struct at_currency *c = currency_of(ccy);
    /* The magnitude as an unsigned: -INT64_MIN does not fit an int64_t. */
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    out[0] = '-';
    fx_decimal_format((struct fx_decimal){ mag, c ? (unsigned)c->exponent : 0 }, out + (minor < 0),
                      ST_AMOUNT_CHARS - 1);
}

/* The distinct currencies of t in ascending order into ccys (room for n). Their number. */
static size_t currencies(const struct st_total *t, size_t n, int *ccys)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && ccys[j] < t[i].currency)
            j++;
        if (j < k && ccys[j] == t[i].currency)
            continue;
        memmove(&ccys[j + 1], &ccys[j], (k - j) * sizeof *ccys);
        ccys[j] = t[i].currency;
        k++;
    }
    return k;
}

static void report_line(FILE *f, const struct st_total *t)
{
    char da[ST_AMOUNT_CHARS], ca[ST_AMOUNT_CHARS], rd[ST_AMOUNT_CHARS], rc[ST_AMOUNT_CHARS],
        fe[ST_AMOUNT_CHARS], ne[ST_AMOUNT_CHARS];
    st_format_amount(t->debit_amount, t->currency, da);
    st_format_amount(t->credit_amount, t->currency, ca);
    st_format_amount(t->rev_debit_amount, t->currency, rd);
    st_format_amount(t->rev_credit_amount, t->currency, rc);
    st_format_amount(t->fees, t->currency, fe);
    st_format_amount(t->net, t->currency, ne);
    fprintf(f,
            "  %-8s %-12s %6" PRId64 " %6" PRId64 " %14s %6" PRId64 " %14s %6" PRId64
            " %14s %6" PRId64 " %14s %8s %15s\n",
            role_name(t->role), who(t), t->holds, t->debits, da, t->credits, ca, t->rev_debits, rd,
            t->rev_credits, rc, fe, ne);
    if (t->pending || t->failed) {
        char pa[ST_AMOUNT_CHARS], fa[ST_AMOUNT_CHARS];
        st_format_amount(t->pending_amount, t->currency, pa);
        st_format_amount(t->failed_amount, t->currency, fa);
        fprintf(f,
                "           not in the net: %" PRId64 " reversal(s) pending (%s), %" PRId64
                " refused by the issuer (%s)\n",
                t->pending, pa, t->failed, fa);
    }
}

int st_write_report(FILE *f, const struct st_day *day, const struct st_total *t, size_t n)
{
    char s[28], e[28];
    at_format_utc((uint64_t)day->start_us, s, sizeof s);
    at_format_utc((uint64_t)day->end_us, e, sizeof e);
    fprintf(f, "Settlement of business day %s (cutover %s UTC): requests received in [%s, %s)\n",
            day->date, day->cutover, s, e);
    fputs("Fees: none (no fee schedule yet). Holds (0100) are counted, never settled.\n", f);
    int *ccys = calloc(n ? n : 1, sizeof *ccys);
    if (!ccys)
        return -1;
    size_t k = currencies(t, n, ccys);
    if (k == 0)
        fputs("\nNo approved request and no reversal in this business day.\n", f);
    int unbalanced = 0;
    for (size_t c = 0; c < k; c++) {
        const struct at_currency *cu = currency_of(ccys[c]);
        fprintf(f, "\n%s (%03d)\n", cu ? cu->alpha : "???", ccys[c]);
        fprintf(f, "  %-8s %-12s %6s %6s %14s %6s %14s %6s %14s %6s %14s %8s %15s\n", "role",
                "participant", "holds", "debits", "amount", "credits", "amount", "rev.d", "amount",
                "rev.c", "amount", "fees", "net");
        for (size_t i = 0; i < n; i++)
            if (t[i].currency == ccys[c])
                report_line(f, &t[i]);
        int64_t bal = st_currency_balance(t, n, ccys[c]);
        char b[ST_AMOUNT_CHARS];
        st_format_amount(bal, ccys[c], b);
        fprintf(f, "  check: the nets sum to %s: %s\n", b, bal == 0 ? "OK" : "NOT BALANCED");
        unbalanced += bal != 0;
    }
    free(ccys);
    return unbalanced;
}
