/* The rules of atlas-reconcile (recon.h): which issuer key each switch-side request is known
 * under, what the issuer must have booked for it, and the totals. The checks and the part of
 * the money invariant (docs/ARCHITECTURE.md) each one proves are in docs/reconcile.md. */
#include "recon.h"

#include "db.h"
#include "grow.h"
#include "issuer.h"
#include "map.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const check_names[RC_CHK_max] = {
    "journal-vs-issuer", "issuer-without-switch", "inflight-left", "journal-integrity",
    "transfers",         "record-vs-switch",      "totals",        "wallet-ledger",
};

const char *rc_check_name(enum rc_check c)
{
    return c < RC_CHK_max ? check_names[c] : "?";
}

const char *rc_rev_name(enum rc_rev r)
{
    static const char *const n[] = { "none", "pending", "acked", "failed" };
    return r <= RC_REV_FAILED ? n[r] : "?";
}

const char *rc_ccy_alpha(int numeric, int *minor_units)
{
    static const struct {
        int num;
        const char *alpha;
        int minor;
    } t[] = {
        { 12, "DZD", 2 },  { 36, "AUD", 2 },  { 124, "CAD", 2 }, { 156, "CNY", 2 },
        { 356, "INR", 2 }, { 392, "JPY", 0 }, { 404, "KES", 2 }, { 504, "MAD", 2 },
        { 566, "NGN", 2 }, { 646, "RWF", 0 }, { 710, "ZAR", 2 }, { 756, "CHF", 2 },
        { 788, "TND", 3 }, { 800, "UGX", 0 }, { 818, "EGP", 2 }, { 826, "GBP", 2 },
        { 834, "TZS", 2 }, { 840, "USD", 2 }, { 929, "MRU", 2 }, { 936, "GHS", 2 },
        { 950, "XAF", 0 }, { 952, "XOF", 0 }, { 978, "EUR", 2 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].num == numeric) {
            if (minor_units)
                *minor_units = t[i].minor;
            return t[i].alpha;
        }
    if (minor_units)
        *minor_units = -1;
    return "???";
}

int64_t rc_iss_net(const struct rc_iss *i)
{
    return i->ledger + i->rev_ledger - (strcmp(i->hold_status, "active") == 0 ? i->hold_amount : 0);
}

/* The processing code's first two digits, -1 when not digits. */
static int pcode(const char *proc)
{
    if (strlen(proc) < 2 || proc[0] < '0' || proc[0] > '9' || proc[1] < '0' || proc[1] > '9')
        return -1;
    return (proc[0] - '0') * 10 + (proc[1] - '0');
}

int64_t rc_full_effect(const char *cls, const char *proc, int64_t amount)
{
    int pc = pcode(proc);
    if (amount <= 0 || pc < 0)
        return 0;
    /* The issuer's own classification (sim/issuer/decide.c), so that the two cannot drift. */
    /* 022: a pre-auth completion (an acquirer's 0220 with DE 90) debits what it captures. */
    if (strcmp(cls, "020") == 0 || strcmp(cls, "022") == 0) {
        if (sim_pcode_is_debit(pc))
            return -amount;
        if (sim_pcode_is_credit(pc))
            return amount;
    } else if (strcmp(cls, "010") == 0 && sim_pcode_is_debit(pc)) {
        return -amount; /* a hold */
    }
    return 0;
}

/* 040 (0400/0401) and 042 (0420/0421): a terminal's reversal of an earlier request. */
static bool reversal_cls(const char *cls)
{
    return cls[0] == '0' && cls[1] == '4';
}

void rc_ident(char out[64], const char *date, const char *acq, const char *tid, const char *stan,
              const char *de7, const char *cls)
{
    snprintf(out, 64, "%s|%s|%s|%s|%s|%s", date, acq, tid, stan, de7, cls);
}

/* ------------------------------------------------------------------ building */

int rc_ctx_init(struct rc_ctx *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->acquirer, sizeof c->acquirer, "100001");
    c->sw_by_key = rc_map_new();
    c->sw_by_ident = rc_map_new();
    c->iss_by_key = rc_map_new();
    c->wallet_by_id = rc_map_new();
    c->xfer_by_ident = rc_map_new();
    if (!c->sw_by_key || !c->sw_by_ident || !c->iss_by_key || !c->wallet_by_id ||
        !c->xfer_by_ident) {
        rc_ctx_free(c);
        return -1;
    }
    return 0;
}

void rc_ctx_free(struct rc_ctx *c)
{
    rc_map_free(c->sw_by_key);
    rc_map_free(c->sw_by_ident);
    rc_map_free(c->iss_by_key);
    rc_map_free(c->wallet_by_id);
    rc_map_free(c->xfer_by_ident);
    free(c->sw);
    free(c->xfers);
    free(c->iss);
    free(c->wallets);
    free(c->mm);
    free(c->ccy);
    free(c->wt);
    memset(c, 0, sizeof *c);
}

/* Grows *arr (of *cap elements of size sz) to hold one more. */
static int grow(void **arr, size_t *cap, size_t n, size_t sz)
{
    return at_grow(arr, cap, n, sz, 256);
}

long rc_add_sw(struct rc_ctx *c, const struct rc_sw *s)
{
    char id[64];
    if (grow((void **)&c->sw, &c->capsw, c->nsw, sizeof *c->sw) != 0) {
        c->oom = true;
        return -1;
    }
    size_t k = c->nsw++;
    struct rc_sw *d = &c->sw[k];
    *d = *s;
    d->iss = -1;
    d->wallet = -1;
    d->has_key = false;
    d->key[0] = '\0';
    /* What the issuer saw: DE 32 = the acquirer, DE 41, and the switch's issuer-side STAN and
     * DE 7. The issuer keys it with its own function. */
    if (d->issuer_stan[0] && d->issuer_de7[0] &&
        sim_request_key(d->acquirer, strlen(d->acquirer), d->terminal, strlen(d->terminal),
                        d->issuer_stan, strlen(d->issuer_stan), d->issuer_de7,
                        strlen(d->issuer_de7), d->key, sizeof d->key) == 0)
        d->has_key = true;
    rc_ident(id, d->request_date, d->acquirer, d->terminal, d->stan, d->de7, d->cls);
    if (rc_map_put(c->sw_by_ident, id, k, NULL) < 0 ||
        (d->has_key && rc_map_put(c->sw_by_key, d->key, k, NULL) < 0)) {
        c->oom = true;
        return -1;
    }
    return (long)k;
}

bool rc_is_transfer_sender(const struct rc_sw *s)
{
    return strcmp(s->cls, "020") == 0 && pcode(s->proc) == 40;
}

long rc_add_xfer(struct rc_ctx *c, const struct rc_xfer *x)
{
    char id[64];
    size_t v;
    rc_ident(id, x->request_date, x->acquirer, x->terminal, x->stan, x->de7, "020");
    if (rc_map_get(c->xfer_by_ident, id, &v)) {
        c->xfers[v].in_window |= x->in_window;
        return (long)v;
    }
    if (grow((void **)&c->xfers, &c->capxfers, c->nxfers, sizeof *c->xfers) != 0 ||
        rc_map_put(c->xfer_by_ident, id, c->nxfers, NULL) < 0) {
        c->oom = true;
        return -1;
    }
    c->xfers[c->nxfers] = *x;
    return (long)c->nxfers++;
}

/* The transfer whose sender's request has this identity, or NULL. */
static const struct rc_xfer *find_xfer(const struct rc_ctx *c, const char *date, const char *acq,
                                       const char *tid, const char *stan, const char *de7)
{
    char id[64];
    size_t v;
    rc_ident(id, date, acq, tid, stan, de7, "020");
    return rc_map_get(c->xfer_by_ident, id, &v) ? &c->xfers[v] : NULL;
}

struct rc_iss *rc_iss_get(struct rc_ctx *c, const char *k)
{
    size_t v;
    if (rc_map_get(c->iss_by_key, k, &v))
        return &c->iss[v];
    if (grow((void **)&c->iss, &c->capiss, c->niss, sizeof *c->iss) != 0 ||
        rc_map_put(c->iss_by_key, k, c->niss, NULL) != 0) {
        c->oom = true;
        return NULL;
    }
    struct rc_iss *i = &c->iss[c->niss++];
    memset(i, 0, sizeof *i);
    snprintf(i->key, sizeof i->key, "%s", k);
    i->wallet_id = -1;
    i->amount = -1;
    i->hold_currency = -1;
    i->sw = -1;
    i->wallet = -1;
    return i;
}

struct rc_wallet *rc_wallet_get(struct rc_ctx *c, long long id)
{
    char k[32];
    size_t v;
    snprintf(k, sizeof k, "%lld", id);
    if (rc_map_get(c->wallet_by_id, k, &v))
        return &c->wallets[v];
    if (grow((void **)&c->wallets, &c->capwallets, c->nwallets, sizeof *c->wallets) != 0 ||
        rc_map_put(c->wallet_by_id, k, c->nwallets, NULL) != 0) {
        c->oom = true;
        return NULL;
    }
    struct rc_wallet *w = &c->wallets[c->nwallets++];
    memset(w, 0, sizeof *w);
    w->id = id;
    w->currency = -1;
    return w;
}

static long find_ident(const struct rc_ctx *c, const char *date, const char *acq, const char *tid,
                       const char *stan, const char *de7, const char *cls)
{
    char id[64];
    size_t v;
    rc_ident(id, date, acq, tid, stan, de7, cls);
    return rc_map_get(c->sw_by_ident, id, &v) ? (long)v : -1;
}

/* The journal's date for a record DE 7, as the switch derived it (db_request_date). */
static void rec_date(const struct rc_ctx *c, const char *de7, char out[11])
{
    db_request_date(de7, c->record_now_us, out);
}

/* The original of a journaled terminal reversal: the switch looks for an 0200 (or an 0220
 * completion), then an 0100. */
static long orig_of_reversal(const struct rc_ctx *c, const struct rc_sw *s, char date[11])
{
    db_request_date(s->orig_de7, s->created_us, date);
    long o = find_ident(c, date, s->acquirer, s->terminal, s->orig_stan, s->orig_de7, "020");
    if (o < 0)
        o = find_ident(c, date, s->acquirer, s->terminal, s->orig_stan, s->orig_de7, "022");
    return o >= 0 ? o
                  : find_ident(c, date, s->acquirer, s->terminal, s->orig_stan, s->orig_de7, "010");
}

/* The pre-auth (an 0100) a completion or an increment names in DE 90 (journaled as its
 * original_stan / original_transmission_time), -1 when not loaded. */
static long preauth_of(const struct rc_ctx *c, const struct rc_sw *s)
{
    char date[11];
    if (!s->orig_stan[0] || !s->orig_de7[0])
        return -1;
    db_request_date(s->orig_de7, s->created_us, date);
    return find_ident(c, date, s->acquirer, s->terminal, s->orig_stan, s->orig_de7, "010");
}

struct wanted {
    struct rc_map *seen;
    size_t n;
    bool oom;
};

static bool wanted_new(struct wanted *w, const char *k)
{
    int r = rc_map_put(w->seen, k, 0, NULL);
    if (r < 0)
        w->oom = true;
    return r == 0;
}

size_t rc_wanted_idents(struct rc_ctx *c,
                        void (*cb)(void *arg, const char *date, const char *acq, const char *tid,
                                   const char *stan, const char *de7, const char *cls),
                        void *arg)
{
    struct wanted w = { rc_map_new(), 0, false };
    char date[11], id[64];
    if (!w.seen) {
        c->oom = true;
        return 0;
    }
#define WANT(dt, tid, stan, de7, cls)                                                              \
    do {                                                                                           \
        if (find_ident(c, dt, c_acq, tid, stan, de7, cls) < 0) {                                   \
            rc_ident(id, dt, c_acq, tid, stan, de7, cls);                                          \
            if (wanted_new(&w, id)) {                                                              \
                cb(arg, dt, c_acq, tid, stan, de7, cls);                                           \
                w.n++;                                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    const char *c_acq = c->acquirer;
    for (size_t i = 0; c->record && i < c->record->n; i++) {
        const struct rec_line *l = &c->record->lines[i];
        rec_date(c, l->de7, date);
        WANT(date, l->terminal, l->stan, l->de7, rec_mti_class(l));
        if (l->has_orig) {
            rec_date(c, l->orig_de7, date);
            WANT(date, l->terminal, l->orig_stan, l->orig_de7,
                 l->orig_mti[1] == '1' ? "010" : "020");
        }
        if (l->rev && l->rev_stan[0]) {
            rec_date(c, l->rev_de7, date);
            WANT(date, l->terminal, l->rev_stan, l->rev_de7, "040");
        }
    }
    size_t n = c->nsw;
    for (size_t k = 0; k < n; k++) {
        const struct rc_sw *s = &c->sw[k];
        if (!s->in_window || s->src != RC_SRC_JOURNAL || !reversal_cls(s->cls) ||
            !s->orig_stan[0] || !s->orig_de7[0] || orig_of_reversal(c, s, date) >= 0)
            continue;
        c_acq = s->acquirer;
        WANT(date, s->terminal, s->orig_stan, s->orig_de7, "020");
        WANT(date, s->terminal, s->orig_stan, s->orig_de7, "010");
    }
#undef WANT
    if (w.oom)
        c->oom = true;
    rc_map_free(w.seen);
    return w.n;
}

size_t rc_wanted_xfer_idents(struct rc_ctx *c,
                             void (*cb)(void *arg, const char *date, const char *acq,
                                        const char *tid, const char *stan, const char *de7,
                                        const char *cls),
                             void *arg)
{
    struct wanted w = { rc_map_new(), 0, false };
    char date[11], id[64];
    if (!w.seen) {
        c->oom = true;
        return 0;
    }
    for (size_t k = 0; k < c->nsw; k++) {
        const struct rc_sw *s = &c->sw[k];
        if (!s->in_window || s->src != RC_SRC_JOURNAL || !rc_is_transfer_sender(s) ||
            find_xfer(c, s->request_date, s->acquirer, s->terminal, s->stan, s->de7))
            continue;
        rc_ident(id, s->request_date, s->acquirer, s->terminal, s->stan, s->de7, "020");
        if (wanted_new(&w, id)) {
            cb(arg, s->request_date, s->acquirer, s->terminal, s->stan, s->de7, "020");
            w.n++;
        }
    }
    for (size_t i = 0; c->record && i < c->record->n; i++) {
        const struct rec_line *l = &c->record->lines[i];
        if (!l->transfer)
            continue;
        rec_date(c, l->de7, date);
        if (find_xfer(c, date, c->acquirer, l->terminal, l->stan, l->de7))
            continue;
        rc_ident(id, date, c->acquirer, l->terminal, l->stan, l->de7, "020");
        if (wanted_new(&w, id)) {
            cb(arg, date, c->acquirer, l->terminal, l->stan, l->de7, "020");
            w.n++;
        }
    }
    if (w.oom)
        c->oom = true;
    rc_map_free(w.seen);
    return w.n;
}

/* The switch item a record line names (its own request, journal first), or -1. */
static long rec_item(const struct rc_ctx *c, const struct rec_line *l)
{
    char date[11];
    rec_date(c, l->de7, date);
    return find_ident(c, date, c->acquirer, l->terminal, l->stan, l->de7, rec_mti_class(l));
}

static long rec_orig_item(const struct rc_ctx *c, const struct rec_line *l)
{
    char date[11];
    rec_date(c, l->orig_de7, date);
    return find_ident(c, date, c->acquirer, l->terminal, l->orig_stan, l->orig_de7,
                      l->orig_mti[1] == '1' ? "010" : "020");
}

static void want_key(struct rc_ctx *c, struct wanted *w, long k,
                     void (*cb)(void *arg, const char *key), void *arg)
{
    if (k < 0 || !c->sw[k].has_key || !wanted_new(w, c->sw[k].key))
        return;
    cb(arg, c->sw[k].key);
    w->n++;
}

size_t rc_wanted_keys(struct rc_ctx *c, void (*cb)(void *arg, const char *key), void *arg)
{
    struct wanted w = { rc_map_new(), 0, false };
    char date[11];
    if (!w.seen) {
        c->oom = true;
        return 0;
    }
    for (size_t k = 0; k < c->nsw; k++) {
        const struct rc_sw *s = &c->sw[k];
        if (!s->in_window)
            continue;
        want_key(c, &w, (long)k, cb, arg);
        if (s->src == RC_SRC_JOURNAL && reversal_cls(s->cls) && s->orig_stan[0])
            want_key(c, &w, orig_of_reversal(c, s, date), cb, arg);
    }
    for (size_t i = 0; c->record && i < c->record->n; i++) {
        const struct rec_line *l = &c->record->lines[i];
        want_key(c, &w, rec_item(c, l), cb, arg);
        if (l->has_orig)
            want_key(c, &w, rec_orig_item(c, l), cb, arg);
    }
    if (w.oom)
        c->oom = true;
    rc_map_free(w.seen);
    return w.n;
}

size_t rc_attribute(struct rc_ctx *c, void (*cb)(void *arg, const char *key), void *arg)
{
    size_t n = 0, v;
    for (size_t k = 0; k < c->nsw; k++) {
        struct rc_sw *s = &c->sw[k];
        if (s->has_key && rc_map_get(c->iss_by_key, s->key, &v)) {
            s->iss = (long)v;
            /* The first item naming a key (the journal row) is the one its money counts for. */
            if (c->iss[v].sw < 0)
                c->iss[v].sw = (long)k;
        }
    }
    for (size_t i = 0; i < c->niss; i++)
        if (c->iss[i].sw < 0 && !c->iss[i].named && c->iss[i].in_slack) {
            if (cb)
                cb(arg, c->iss[i].key);
            n++;
        }
    return n;
}

void rc_mark_named(struct rc_ctx *c, const char *key)
{
    size_t v;
    if (rc_map_get(c->iss_by_key, key, &v))
        c->iss[v].named = true;
}

size_t rc_wanted_hmacs(struct rc_ctx *c, void (*cb)(void *arg, const char *hmac_hex), void *arg)
{
    struct wanted w = { rc_map_new(), 0, false };
    if (!w.seen) {
        c->oom = true;
        return 0;
    }
    for (size_t k = 0; k < c->nsw; k++) {
        const struct rc_sw *s = &c->sw[k];
        if (!s->pan_hmac[0] || (s->iss >= 0 && c->iss[s->iss].wallet_id >= 0))
            continue;
        if (wanted_new(&w, s->pan_hmac)) {
            cb(arg, s->pan_hmac);
            w.n++;
        }
    }
    if (w.oom)
        c->oom = true;
    rc_map_free(w.seen);
    return w.n;
}

/* ------------------------------------------------------------------ results */

static struct rc_mismatch *mm_new(struct rc_ctx *c, enum rc_check k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static struct rc_mismatch *mm_new(struct rc_ctx *c, enum rc_check k, const char *fmt, ...)
{
    static struct rc_mismatch scratch;
    if (grow((void **)&c->mm, &c->capmm, c->nmm, sizeof *c->mm) != 0) {
        c->oom = true;
        return &scratch; /* written and forgotten: rc_run reports the failure */
    }
    struct rc_mismatch *m = &c->mm[c->nmm++];
    memset(m, 0, sizeof *m);
    m->check = k;
    m->amount = -1;
    m->currency = -1;
    m->wallet_id = -1;
    m->transfer_id = -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->problem, sizeof m->problem, fmt, ap);
    va_end(ap);
    c->st.mismatches[k]++;
    return m;
}

static void mm_sw(struct rc_mismatch *m, const struct rc_ctx *c, const struct rc_sw *s)
{
    snprintf(m->acquirer, sizeof m->acquirer, "%s", s->acquirer);
    snprintf(m->terminal, sizeof m->terminal, "%s", s->terminal);
    snprintf(m->stan, sizeof m->stan, "%s", s->stan);
    snprintf(m->de7, sizeof m->de7, "%s", s->de7);
    snprintf(m->mti, sizeof m->mti, "%s", s->mti);
    snprintf(m->issuer_stan, sizeof m->issuer_stan, "%s", s->issuer_stan);
    snprintf(m->issuer_de7, sizeof m->issuer_de7, "%s", s->issuer_de7);
    snprintf(m->pan, sizeof m->pan, "%s", s->pan_masked);
    m->amount = s->amount;
    m->currency = s->currency;
    snprintf(m->outcome, sizeof m->outcome, "%s",
             s->src == RC_SRC_JOURNAL    ? s->outcome
             : s->src == RC_SRC_INFLIGHT ? "in-flight"
                                         : "no-journal-row");
    snprintf(m->rc, sizeof m->rc, "%s", s->rc);
    m->rev = s->rev;
    if (s->iss >= 0) {
        m->has_net = true;
        m->issuer_net = rc_iss_net(&c->iss[s->iss]);
        m->wallet_id = c->iss[s->iss].wallet_id;
    } else if (s->has_key) {
        m->has_net = true; /* the issuer has nothing under its key */
    }
}

static void mm_rec(struct rc_mismatch *m, const struct rc_ctx *c, const struct rec_line *l)
{
    snprintf(m->acquirer, sizeof m->acquirer, "%s", c->acquirer);
    snprintf(m->terminal, sizeof m->terminal, "%s", l->terminal);
    snprintf(m->stan, sizeof m->stan, "%s", l->stan);
    snprintf(m->de7, sizeof m->de7, "%s", l->de7);
    snprintf(m->mti, sizeof m->mti, "%s", l->mti);
    snprintf(m->pan, sizeof m->pan, "%s", l->pan);
    m->amount = l->has_amount ? (int64_t)l->amount : -1;
    m->currency = atoi(l->currency);
    m->record_line = l->lineno;
}

/* The currency the issuer booked an entry in: its wallet's, else its hold's, else fallback. */
static int iss_currency(const struct rc_ctx *c, const struct rc_iss *i, int fallback)
{
    if (i->wallet >= 0 && c->wallets[i->wallet].currency >= 0)
        return c->wallets[i->wallet].currency;
    return i->hold_currency >= 0 ? i->hold_currency : fallback;
}

/* The money of the currency total (made on first use). */
static struct rc_money *ccy_of(struct rc_ctx *c, int currency)
{
    for (size_t i = 0; i < c->nccy; i++)
        if (c->ccy[i].currency == currency)
            return &c->ccy[i].m;
    struct rc_ccy *g = realloc(c->ccy, (c->nccy + 1) * sizeof *g);
    if (!g) {
        c->oom = true;
        static struct rc_money scratch;
        return &scratch;
    }
    c->ccy = g;
    struct rc_ccy *n = &c->ccy[c->nccy++];
    memset(n, 0, sizeof *n);
    n->currency = currency;
    return &n->m;
}

/* The per-wallet line of a switch item without a wallet the issuer names: one per masked PAN
 * and currency, id 0. */
static long unknown_wallet(struct rc_ctx *c, const char *pan, int currency)
{
    char k[48];
    size_t v;
    snprintf(k, sizeof k, "u:%s:%d", pan, currency);
    if (rc_map_get(c->wallet_by_id, k, &v))
        return (long)v;
    if (grow((void **)&c->wallets, &c->capwallets, c->nwallets, sizeof *c->wallets) != 0 ||
        rc_map_put(c->wallet_by_id, k, c->nwallets, NULL) != 0) {
        c->oom = true;
        return -1;
    }
    struct rc_wallet *w = &c->wallets[c->nwallets];
    memset(w, 0, sizeof *w);
    w->currency = currency;
    snprintf(w->pan_masked, sizeof w->pan_masked, "%s", pan[0] ? pan : "-");
    return (long)c->nwallets++;
}

/* The money of a wallet's total; the totals are indexed like c->wallets (grown on demand:
 * unknown_wallet adds wallets). */
static struct rc_money *wt_of(struct rc_ctx *c, long w)
{
    static struct rc_money scratch;
    if (w < 0)
        return &scratch;
    if ((size_t)w >= c->nwt) {
        size_t n = c->nwallets > (size_t)w ? c->nwallets : (size_t)w + 1;
        struct rc_wallet_total *g = realloc(c->wt, n * sizeof *g);
        if (!g) {
            c->oom = true;
            return &scratch;
        }
        memset(g + c->nwt, 0, (n - c->nwt) * sizeof *g);
        for (size_t i = c->nwt; i < n; i++)
            g[i].wallet = i;
        c->wt = g;
        c->nwt = n;
    }
    return &c->wt[w].m;
}

/* Check 1 for one in-window request the issuer may have seen (a journal row that reached it,
 * or a reversal without its journal row): the issuer's net under its key against what the
 * switch says stands. Returns what the switch says stands; *pending gets what a reversal not
 * yet acknowledged leaves open at the issuer. */
static int64_t check_issuer_effect(struct rc_ctx *c, const struct rc_sw *s, bool approved,
                                   int64_t *pending)
{
    int64_t net = s->iss >= 0 ? rc_iss_net(&c->iss[s->iss]) : 0;
    int64_t full = s->hold_ended ? 0 : rc_full_effect(s->cls, s->proc, s->amount);
    int64_t stands = 0;
    struct rc_mismatch *m;
    c->st.checked[RC_CHK_JOURNAL_ISSUER]++;
    *pending = 0;
    if (approved && rc_is_stand_in(s) && s->rev == RC_REV_NONE) {
        /* A stand-in approval stands at the issuer through its advice (docs/switchd.md
         * "Advices"): none queued, refused for good, or not delivered yet. */
        if (s->advice == RC_REV_NONE) {
            m = mm_new(c, RC_CHK_JOURNAL_ISSUER, "stand-in approval without an advice");
            mm_sw(m, c, s);
        } else if (s->advice == RC_REV_FAILED) {
            m = mm_new(c, RC_CHK_JOURNAL_ISSUER,
                       "advice of a stand-in approval refused by the issuer (last rc %s)",
                       s->advice_rc[0] ? s->advice_rc : "-");
            mm_sw(m, c, s);
            m->has_net = true;
            m->issuer_net = net;
            m->has_expected = true;
            m->expected = full;
            return full;
        } else if (s->advice == RC_REV_PENDING) {
            /* Either nothing or the stand-in's effect is booked: what is missing is open. */
            *pending = net - full;
            if (!c->allow_pending) {
                m = mm_new(c, RC_CHK_JOURNAL_ISSUER, "advice not yet acknowledged");
                mm_sw(m, c, s);
                m->has_expected = true;
                m->expected = full;
            } else if (net != 0 && net != full) {
                m = mm_new(c, RC_CHK_JOURNAL_ISSUER,
                           "issuer's effect is neither the stand-in's nor zero (advice pending)");
                mm_sw(m, c, s);
                m->has_expected = true;
                m->expected = full;
            }
            return full;
        }
    }
    if (s->rev == RC_REV_PENDING) {
        /* The reversal may or may not have reached the issuer yet: either the request's effect
         * or nothing is booked there, and the switch says nothing will stand. */
        *pending = net;
        if (!c->allow_pending) {
            m = mm_new(c, RC_CHK_JOURNAL_ISSUER, "reversal not yet acknowledged");
            mm_sw(m, c, s);
            m->has_expected = true;
        } else if (net != 0 && net != full) {
            m = mm_new(c, RC_CHK_JOURNAL_ISSUER,
                       "issuer's effect is neither the request's nor zero (reversal pending)");
            mm_sw(m, c, s);
            m->has_expected = true;
            m->expected = full;
        }
        return 0;
    }
    if (s->rev == RC_REV_FAILED) {
        m = mm_new(c, RC_CHK_JOURNAL_ISSUER, "reversal failed at the issuer (last rc %s)",
                   s->rev_rc[0] ? s->rev_rc : "-");
        mm_sw(m, c, s);
    }
    /* A failed reversal changed nothing at the issuer: an approval still stands. */
    stands = approved && s->rev != RC_REV_ACKED ? full : 0;
    if (net == stands)
        return stands;
    const char *why;
    if (stands != 0)
        why = net == 0 ? "issuer does not have the approval's effect"
                       : "issuer's effect differs from the approval";
    else if (approved && s->rev == RC_REV_ACKED)
        why = "issuer still has the effect of an approval the switch reversed";
    else if (s->rev == RC_REV_ACKED)
        why = "issuer kept money the switch reversed";
    else
        why = "issuer moved money on a request the switch did not approve";
    m = mm_new(c, RC_CHK_JOURNAL_ISSUER, "%s", why);
    mm_sw(m, c, s);
    m->has_net = true;
    m->issuer_net = net;
    m->has_expected = true;
    m->expected = stands;
    return stands;
}

/* Adds an in-window item's money to the totals: stands (the switch's view), the issuer's net
 * under its key (only for the item its key counts for), and what is still open. */
static void add_totals(struct rc_ctx *c, long k, int64_t stands, int64_t pending)
{
    const struct rc_sw *s = &c->sw[k];
    int ccy = s->currency;
    struct rc_money *t = ccy_of(c, ccy);
    long w = s->wallet;
    if (w < 0 && (stands != 0 || pending != 0))
        w = unknown_wallet(c, s->pan_masked, ccy);
    t->sw += stands;
    wt_of(c, w)->sw += stands;
    if (s->iss < 0) {
        /* Nothing booked under its key: only a pending advice leaves something open then. */
        t->pending += pending;
        wt_of(c, w)->pending += pending;
    }
    if (s->iss >= 0 && c->iss[s->iss].sw == k) {
        const struct rc_iss *i = &c->iss[s->iss];
        int64_t net = rc_iss_net(i);
        struct rc_money *ti = ccy_of(c, iss_currency(c, i, ccy));
        ti->iss += net;
        ti->pending += pending;
        wt_of(c, w)->iss += net;
        wt_of(c, w)->pending += pending;
    }
}

bool rc_is_stand_in(const struct rc_sw *s)
{
    if (s->auth[0] != 'S' || strlen(s->auth) != 6)
        return false;
    for (int i = 1; i < 6; i++)
        if (s->auth[i] < '0' || s->auth[i] > '9')
            return false;
    return true;
}

static bool is_approved(const struct rc_sw *s)
{
    return s->src == RC_SRC_JOURNAL && strcmp(s->outcome, "approved") == 0;
}

/* Pre-authorization: the holds that ended without a reversal of their own (rc_sw.hold_ended).
 * A completion standing (approved; its reversal none or failed) captured its pre-auth and the
 * pre-auth's increments; a pre-auth reversed released its increments with it; a hold the issuer
 * expired (wallet.sim_expire_holds) ended by the issuer's rule. */
static void mark_holds_ended(struct rc_ctx *c)
{
    for (size_t k = 0; k < c->nsw; k++) {
        struct rc_sw *s = &c->sw[k];
        if (strcmp(s->cls, "022") != 0 || !is_approved(s) ||
            (s->rev != RC_REV_NONE && s->rev != RC_REV_FAILED))
            continue;
        long o = preauth_of(c, s);
        if (o >= 0)
            c->sw[o].hold_ended = true;
    }
    for (size_t k = 0; k < c->nsw; k++) {
        struct rc_sw *s = &c->sw[k];
        if (strcmp(s->cls, "010") != 0)
            continue;
        long o = preauth_of(c, s);
        if (o >= 0 && (c->sw[o].hold_ended || c->sw[o].rev == RC_REV_ACKED))
            s->hold_ended = true;
        if (s->iss >= 0 && strcmp(c->iss[s->iss].hold_status, "expired") == 0)
            s->hold_ended = true;
    }
}

static void run_switch_items(struct rc_ctx *c)
{
    char date[11];
    for (size_t k = 0; k < c->nsw; k++) {
        struct rc_sw *s = &c->sw[k];
        int64_t stands = 0, pending = 0;
        struct rc_mismatch *m;
        if (!s->in_window) {
            c->st.journal_context += s->src == RC_SRC_JOURNAL;
            continue;
        }
        if (s->rev != RC_REV_NONE) {
            c->st.reversal_rows++;
            c->st.rev_pending += s->rev == RC_REV_PENDING;
            c->st.rev_acked += s->rev == RC_REV_ACKED;
            c->st.rev_failed += s->rev == RC_REV_FAILED;
        }
        if (s->src == RC_SRC_INFLIGHT) {
            c->st.inflight++;
            c->st.checked[RC_CHK_INFLIGHT]++;
            m = mm_new(c, RC_CHK_INFLIGHT,
                       "request forwarded to the issuer and never settled (switch.inflight)");
            mm_sw(m, c, s);
            if (s->iss >= 0)
                pending = rc_iss_net(&c->iss[s->iss]);
            add_totals(c, (long)k, 0, pending);
            continue;
        }
        if (s->advice != RC_REV_NONE) {
            c->st.advice_pending += s->advice == RC_REV_PENDING;
            c->st.advice_acked += s->advice == RC_REV_ACKED;
            c->st.advice_failed += s->advice == RC_REV_FAILED;
        }
        if (s->src == RC_SRC_ADVICE) {
            /* An advice whose stand-in approval the journal does not hold: the terminal was
             * never approved, so nothing may stand at the issuer. switchd reverses it at its
             * next start (reason 'recovery'); until then it is the journal's problem. */
            c->st.orphan_advices++;
            c->st.checked[RC_CHK_JOURNAL]++;
            if (s->rev == RC_REV_NONE) {
                m = mm_new(c, RC_CHK_JOURNAL,
                           "advice of a stand-in approval the journal does not have, not "
                           "reversed");
                mm_sw(m, c, s);
            }
            stands = check_issuer_effect(c, s, false, &pending);
            add_totals(c, (long)k, stands, pending);
            continue;
        }
        if (s->src == RC_SRC_REVERSAL && s->replaced) {
            /* The forwarded request a stand-in approval replaced: nothing of it may stand. */
            c->st.replaced_reversals++;
            stands = check_issuer_effect(c, s, false, &pending);
            add_totals(c, (long)k, stands, pending);
            continue;
        }
        if (s->src == RC_SRC_REVERSAL) {
            c->st.orphan_reversals++;
            c->st.checked[RC_CHK_JOURNAL]++;
            m = mm_new(c, RC_CHK_JOURNAL,
                       "reversal queued for a request the journal does not have");
            mm_sw(m, c, s);
            stands = check_issuer_effect(c, s, false, &pending);
            add_totals(c, (long)k, stands, pending);
            continue;
        }
        c->st.journal_rows++;
        bool approved = is_approved(s);
        if (reversal_cls(s->cls)) {
            /* A terminal's reversal: the money is its original's. Acknowledged (00) means the
             * original is reversed, or was never approved. A transfer's reversal is its legs'
             * (the transfers check: the sender's row itself never has one). */
            c->st.terminal_reversals++;
            if (approved && s->orig_stan[0]) {
                long o = orig_of_reversal(c, s, date);
                c->st.checked[RC_CHK_JOURNAL]++;
                if (o >= 0 && is_approved(&c->sw[o]) && c->sw[o].rev == RC_REV_NONE &&
                    !rc_is_transfer_sender(&c->sw[o])) {
                    m = mm_new(c, RC_CHK_JOURNAL,
                               "terminal reversal acknowledged but its approved original has no "
                               "reversal");
                    mm_sw(m, c, &c->sw[o]);
                }
            }
            continue;
        }
        if (approved && rc_is_stand_in(s))
            c->st.stand_ins++;
        if (approved) {
            c->st.approvals++;
            c->st.checked[RC_CHK_JOURNAL]++;
            if (!s->auth[0]) {
                m = mm_new(c, RC_CHK_JOURNAL, "approval without an auth code");
                mm_sw(m, c, s);
            }
        }
        if (rc_is_transfer_sender(s) && !s->has_key) {
            /* A transfer's sender never reaches an issuer and is never reversed itself: its
             * legs do both. Whether an approval or a 'lost' row is backed by them is the
             * transfers check's; here only that a transfer row exists for it. */
            c->st.transfer_senders++;
            c->st.lost += strcmp(s->outcome, "lost") == 0;
            if ((approved || strcmp(s->outcome, "lost") == 0) &&
                !find_xfer(c, s->request_date, s->acquirer, s->terminal, s->stan, s->de7)) {
                c->st.checked[RC_CHK_TRANSFERS]++;
                m = mm_new(c, RC_CHK_TRANSFERS,
                           "transfer's sender journaled %s but the switch has no transfer row",
                           s->outcome);
                mm_sw(m, c, s);
            }
            continue;
        }
        if (strcmp(s->outcome, "lost") == 0) {
            c->st.lost++;
            c->st.checked[RC_CHK_JOURNAL]++;
            if (s->rev == RC_REV_NONE) {
                m = mm_new(c, RC_CHK_JOURNAL, "lost request without a reversal");
                mm_sw(m, c, s);
            }
        }
        if (!s->has_key) {
            /* Answered by the switch itself: nothing reached an issuer. */
            c->st.refused_by_switch++;
            if (approved) {
                c->st.checked[RC_CHK_JOURNAL]++;
                m = mm_new(c, RC_CHK_JOURNAL, "approval that never reached an issuer");
                mm_sw(m, c, s);
            }
            continue;
        }
        c->st.reached_issuer++;
        stands = check_issuer_effect(c, s, approved, &pending);
        add_totals(c, (long)k, stands, pending);
    }
}

/* A transfer's mismatch: the sender's identity, masked PAN, amount and journal outcome, the
 * transfer id and (leg != NULL) the leg with its issuer-side identity and reversal. */
static void mm_xfer(struct rc_mismatch *m, const struct rc_xfer *x, const struct rc_leg *leg)
{
    snprintf(m->acquirer, sizeof m->acquirer, "%s", x->acquirer);
    snprintf(m->terminal, sizeof m->terminal, "%s", x->terminal);
    snprintf(m->stan, sizeof m->stan, "%s", x->stan);
    snprintf(m->de7, sizeof m->de7, "%s", x->de7);
    snprintf(m->mti, sizeof m->mti, "0200");
    snprintf(m->pan, sizeof m->pan, "%s", x->pan_masked);
    m->amount = x->amount;
    m->currency = x->currency;
    snprintf(m->outcome, sizeof m->outcome, "%s",
             x->sender_row ? x->sender_outcome : "no-journal-row");
    snprintf(m->rc, sizeof m->rc, "%s", x->sender_rc);
    m->transfer_id = x->id;
    if (leg) {
        snprintf(m->leg, sizeof m->leg, "%s", leg == &x->aft ? "aft" : "oct");
        snprintf(m->issuer_stan, sizeof m->issuer_stan, "%s", leg->issuer_stan);
        snprintf(m->issuer_de7, sizeof m->issuer_de7, "%s", leg->issuer_de7);
        m->rev = leg->rev;
    }
}

static bool unfinished_state(const char *state)
{
    return strcmp(state, "started") == 0 || strcmp(state, "aft") == 0;
}

/* Check 5 for one transfer that stood (its sender journaled an approval, not reversed): both
 * legs are journaled approvals that no reversal undoes, and the saga says completed. */
static void xfer_stood(struct rc_ctx *c, const struct rc_xfer *x)
{
    struct rc_mismatch *m;
    if (strcmp(x->state, "completed") != 0) {
        m = mm_new(c, RC_CHK_TRANSFERS, "sender approved but the transfer is %s", x->state);
        mm_xfer(m, x, NULL);
    }
    if (x->term_rev_acked) {
        m = mm_new(c, RC_CHK_TRANSFERS,
                   "terminal reversal acknowledged but the transfer was not reversed");
        mm_xfer(m, x, NULL);
    }
    const struct rc_leg *legs[] = { &x->aft, &x->oct };
    for (size_t i = 0; i < 2; i++) {
        const struct rc_leg *g = legs[i];
        const char *name = i == 0 ? "AFT" : "OCT";
        if (!g->row) {
            m = mm_new(c, RC_CHK_TRANSFERS, "sender approved but the %s leg is not journaled",
                       name);
            mm_xfer(m, x, g);
        } else if (strcmp(g->outcome, "approved") != 0) {
            m = mm_new(c, RC_CHK_TRANSFERS,
                       "sender approved but the %s leg was journaled %s (rc %s)", name, g->outcome,
                       g->rc[0] ? g->rc : "-");
            mm_xfer(m, x, g);
        }
        if (g->rev == RC_REV_PENDING || g->rev == RC_REV_ACKED) {
            m = mm_new(c, RC_CHK_TRANSFERS, "sender approved but the %s leg %s", name,
                       g->rev == RC_REV_ACKED ? "was reversed" : "is being reversed");
            mm_xfer(m, x, g);
        }
    }
}

/* Check 5 for one transfer that did not stand (its sender not approved, lost or not journaled,
 * or the transfer reversed): every leg journaled approved (or lost) is reversed. */
static void xfer_undone(struct rc_ctx *c, const struct rc_xfer *x)
{
    struct rc_mismatch *m;
    if (strcmp(x->state, "completed") == 0) {
        m = mm_new(c, RC_CHK_TRANSFERS,
                   "transfer completed but the sender's request is not journaled an approval");
        mm_xfer(m, x, NULL);
    }
    const struct rc_leg *legs[] = { &x->aft, &x->oct };
    for (size_t i = 0; i < 2; i++) {
        const struct rc_leg *g = legs[i];
        const char *name = i == 0 ? "AFT" : "OCT";
        if (!g->row || (strcmp(g->outcome, "approved") != 0 && strcmp(g->outcome, "lost") != 0))
            continue;
        switch (g->rev) {
        case RC_REV_NONE:
            m = mm_new(c, RC_CHK_TRANSFERS,
                       "%s leg %s but never reversed: money moved for a transfer that did not "
                       "stand",
                       name, g->outcome);
            mm_xfer(m, x, g);
            break;
        case RC_REV_FAILED:
            m = mm_new(c, RC_CHK_TRANSFERS,
                       "%s leg reversal failed: money still moved (last rc %s)", name,
                       g->rev_rc[0] ? g->rev_rc : "-");
            mm_xfer(m, x, g);
            break;
        case RC_REV_PENDING:
            c->st.xfer_leg_rev_pending++;
            if (!c->allow_pending) {
                m = mm_new(c, RC_CHK_TRANSFERS, "%s leg reversal not yet acknowledged", name);
                mm_xfer(m, x, g);
            }
            break;
        case RC_REV_ACKED:
            break;
        }
    }
}

/* Check 5: every transfer of the window against its sender's journal row, its legs' rows and
 * their reversals (docs/reconcile.md, "transfers"). The legs' money against the issuers is
 * check 1's, like any request's. */
static void run_transfers(struct rc_ctx *c)
{
    struct rc_mismatch *m;
    for (size_t i = 0; i < c->nxfers; i++) {
        const struct rc_xfer *x = &c->xfers[i];
        if (!x->in_window)
            continue;
        c->st.xfers++;
        c->st.checked[RC_CHK_TRANSFERS]++;
        c->st.xfer_completed += strcmp(x->state, "completed") == 0;
        c->st.xfer_failed += strcmp(x->state, "failed") == 0;
        c->st.xfer_reversed += strcmp(x->state, "reversed") == 0;
        if (x->aft.row && x->aft.amount != x->amount + x->fee) {
            m = mm_new(c, RC_CHK_TRANSFERS,
                       "AFT amount %lld is not the transfer's amount + fee (%lld + %lld)",
                       (long long)x->aft.amount, (long long)x->amount, (long long)x->fee);
            mm_xfer(m, x, &x->aft);
        }
        if (x->oct.row && x->oct.amount != x->amount) {
            m = mm_new(c, RC_CHK_TRANSFERS, "OCT amount %lld is not the transfer's amount %lld",
                       (long long)x->oct.amount, (long long)x->amount);
            mm_xfer(m, x, &x->oct);
        }
        if (unfinished_state(x->state)) {
            /* Still running (a live switch), or left by a switchd that has not restarted:
             * what its legs did is decided when it ends. */
            c->st.xfer_unfinished++;
            if (!c->allow_pending) {
                m = mm_new(c, RC_CHK_TRANSFERS, "transfer unfinished (state %s)", x->state);
                mm_xfer(m, x, NULL);
            }
            continue;
        }
        bool approved = x->sender_row && strcmp(x->sender_outcome, "approved") == 0;
        if (approved && strcmp(x->state, "reversed") != 0)
            xfer_stood(c, x);
        else
            xfer_undone(c, x);
    }
}

/* The key's parts ("acq11:terminal:stan:de7") for a mismatch line. */
static void mm_key(struct rc_mismatch *m, const char *key)
{
    char acq[12] = "", tid[9] = "", stan[7] = "", de7[11] = "";
    const char *p = key;
    if (strlen(key) == 11 + 1 + 8 + 1 + 6 + 1 + 10) {
        memcpy(acq, p, 11);
        memcpy(tid, p + 12, 8);
        memcpy(stan, p + 21, 6);
        memcpy(de7, p + 28, 10);
        const char *a = acq;
        while (*a == '0' && a[1])
            a++;
        snprintf(m->acquirer, sizeof m->acquirer, "%s", a);
        snprintf(m->terminal, sizeof m->terminal, "%s", tid);
        snprintf(m->issuer_stan, sizeof m->issuer_stan, "%s", stan);
        snprintf(m->issuer_de7, sizeof m->issuer_de7, "%s", de7);
    }
}

static void run_issuer_keys(struct rc_ctx *c)
{
    for (size_t i = 0; i < c->niss; i++) {
        struct rc_iss *e = &c->iss[i];
        if (e->sw >= 0) {
            c->st.issuer_keys += c->sw[e->sw].in_window;
            continue;
        }
        if (e->named) {
            c->st.issuer_named_elsewhere++;
            continue;
        }
        if (!e->in_slack)
            continue;
        c->st.issuer_keys++;
        c->st.checked[RC_CHK_ISSUER_UNKNOWN]++;
        int64_t net = rc_iss_net(e);
        int ccy = iss_currency(c, e, -1);
        if (net == 0) {
            c->st.issuer_unknown_nomoney++;
            continue;
        }
        c->st.issuer_unknown_money++;
        struct rc_mismatch *m = mm_new(c, RC_CHK_ISSUER_UNKNOWN,
                                       "issuer applied a request the switch has no record of");
        mm_key(m, e->key);
        snprintf(m->mti, sizeof m->mti, "%s", e->mti);
        m->amount = e->amount;
        m->currency = ccy;
        snprintf(m->outcome, sizeof m->outcome, "issuer");
        snprintf(m->rc, sizeof m->rc, "%s", e->rc);
        m->has_net = true;
        m->issuer_net = net;
        m->has_expected = true;
        m->wallet_id = e->wallet_id;
        if (e->wallet >= 0)
            snprintf(m->pan, sizeof m->pan, "%s", c->wallets[e->wallet].pan_masked);
        struct rc_money *t = ccy_of(c, ccy);
        t->iss += net;
        wt_of(c, e->wallet)->iss += net;
    }
}

/* A record's transfer line against the switch's transfer row (found by the sender's
 * identity): the terminal's answer and the saga's end must agree. The money is the legs',
 * which check 1 and the transfers check prove; here only the terminal's view of the sender's
 * request. */
static void record_transfer(struct rc_ctx *c, const struct rec_line *l, bool held)
{
    char date[11];
    struct rc_mismatch *m;
    rec_date(c, l->de7, date);
    const struct rc_xfer *x = find_xfer(c, date, c->acquirer, l->terminal, l->stan, l->de7);
    bool approved = l->answered && strcmp(l->rc, "00") == 0;
    if (!x) {
        if (approved) {
            m = mm_new(c, RC_CHK_RECORD, "terminal holds a transfer the switch has no row of");
            mm_rec(m, c, l);
        }
        return;
    }
    if (approved && held) {
        const char *why = NULL;
        if (strcmp(x->state, "reversed") == 0)
            why = "terminal holds a transfer the switch reversed";
        else if (strcmp(x->state, "failed") == 0)
            why = "terminal holds a transfer that failed";
        if (why) {
            m = mm_new(c, RC_CHK_RECORD, "%s", why);
            mm_xfer(m, x, NULL);
            m->record_line = l->lineno;
        }
        if (l->has_fee && l->fee != x->fee) {
            m = mm_new(c, RC_CHK_RECORD, "fee differs: terminal %lld, transfer %lld",
                       (long long)l->fee, (long long)x->fee);
            mm_xfer(m, x, NULL);
            m->record_line = l->lineno;
        }
        if (l->has_de6 && x->recipient_amount >= 0 &&
            (int64_t)l->de6_amount != x->recipient_amount) {
            m = mm_new(c, RC_CHK_RECORD, "recipient amount differs: terminal %llu, transfer %lld",
                       (unsigned long long)l->de6_amount, (long long)x->recipient_amount);
            mm_xfer(m, x, NULL);
            m->record_line = l->lineno;
        }
    } else if (l->answered && !approved && strcmp(x->state, "completed") == 0) {
        m = mm_new(c, RC_CHK_RECORD, "a transfer the terminal saw declined (rc %s) completed",
                   l->rc[0] ? l->rc : "-");
        mm_xfer(m, x, NULL);
        m->record_line = l->lineno;
    }
    if (l->to[0] && x->to_masked[0] && strcmp(l->to, x->to_masked) != 0) {
        m = mm_new(c, RC_CHK_RECORD, "recipient differs: terminal %s, transfer %s", l->to,
                   x->to_masked);
        mm_xfer(m, x, NULL);
        m->record_line = l->lineno;
    }
}

/* The record's terminals against the journal and the issuer (check 6). */
static void run_record(struct rc_ctx *c)
{
    const struct rec_file *r = c->record;
    struct rc_map *undone = rc_map_new(); /* originals reversed by a load-mix reversal, 00 */
    char k[40];
    struct rc_mismatch *m;
    if (!undone) {
        c->oom = true;
        return;
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct rec_line *l = &r->lines[i];
        if (l->has_orig && l->answered && strcmp(l->rc, "00") == 0) {
            snprintf(k, sizeof k, "%s|%s|%s", l->terminal, l->orig_stan, l->orig_de7);
            if (rc_map_put(undone, k, i, NULL) < 0)
                c->oom = true;
        }
    }
    for (size_t i = 0; i < r->n; i++) {
        const struct rec_line *l = &r->lines[i];
        long it = rec_item(c, l);
        const struct rc_sw *s = it >= 0 ? &c->sw[it] : NULL;
        bool journaled = s && s->src == RC_SRC_JOURNAL;
        int64_t net = s && s->iss >= 0 ? rc_iss_net(&c->iss[s->iss]) : 0;
        int ccy = atoi(l->currency);
        c->st.rec_lines++;
        c->st.checked[RC_CHK_RECORD]++;
        if (l->has_orig) {
            /* A load-mix reversal: 00 means its original must be undone at the issuer. */
            if (!l->answered) {
                c->st.rec_reversal_abandoned++;
                m = mm_new(c, RC_CHK_RECORD, "terminal gave up on a reversal");
                mm_rec(m, c, l);
                continue;
            }
            if (strcmp(l->rc, "00") != 0) {
                c->st.rec_reversal_refused++;
                continue;
            }
            c->st.rec_reversal_acked++;
            if (!journaled || strcmp(s->rc, "00") != 0) {
                m = mm_new(c, RC_CHK_RECORD,
                           "terminal holds a reversal acknowledgement the journal does not have");
                mm_rec(m, c, l);
            }
            long o = rec_orig_item(c, l);
            const struct rc_sw *so = o >= 0 ? &c->sw[o] : NULL;
            int64_t onet = so && so->iss >= 0 ? rc_iss_net(&c->iss[so->iss]) : 0;
            if (onet != 0) {
                m = mm_new(c, RC_CHK_RECORD,
                           "terminal's reversal was acknowledged but the issuer kept the "
                           "original's money");
                mm_sw(m, c, so);
                m->record_line = l->lineno;
                m->has_expected = true;
            }
            continue;
        }
        const char *cls = rec_mti_class(l);
        /* The terminal saw DE 4 in DE 49; a converted request moved DE 6 in DE 51 at the
         * issuer, which the journal keeps: that is what the issuer's books are held to. */
        int64_t amount = l->has_amount ? (int64_t)l->amount : 0;
        if (journaled && s->converted) {
            amount = s->amount;
            ccy = s->currency;
        }
        int64_t full = rc_full_effect(cls, l->proc, amount);
        int64_t held = 0;
        if (!journaled)
            c->st.rec_not_journaled++;
        if (l->answered && strcmp(l->rc, "00") == 0) {
            snprintf(k, sizeof k, "%s|%s|%s", l->terminal, l->stan, l->de7);
            size_t v;
            bool reversed = rc_map_get(undone, k, &v);
            if (!journaled) {
                m = mm_new(c, RC_CHK_RECORD,
                           "terminal holds an approval the journal does not have");
                mm_rec(m, c, l);
            } else if (strcmp(s->outcome, "approved") != 0) {
                m = mm_new(c, RC_CHK_RECORD,
                           "terminal holds an approval the journal records as %s (rc %s)",
                           s->outcome, s->rc[0] ? s->rc : "-");
                mm_sw(m, c, s);
                m->record_line = l->lineno;
            } else {
                char ja[7];
                snprintf(ja, sizeof ja, "%s", s->auth);
                for (char *p = ja; *p; p++)
                    if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') ||
                          (*p >= 'a' && *p <= 'z')))
                        *p = '?'; /* as the record writes it */
                if (strcmp(ja, l->auth) != 0) {
                    m = mm_new(c, RC_CHK_RECORD, "auth code differs: terminal %s, journal %s",
                               l->auth[0] ? l->auth : "-", ja[0] ? ja : "-");
                    mm_sw(m, c, s);
                    m->record_line = l->lineno;
                }
            }
            if (l->transfer)
                record_transfer(c, l, !reversed);
            if (reversed) {
                c->st.rec_approved_reversed++; /* its reversal line checks the issuer */
            } else {
                c->st.rec_approved_held++;
                held = full;
                if (s && (s->rev == RC_REV_ACKED || s->rev == RC_REV_PENDING)) {
                    m = mm_new(c, RC_CHK_RECORD,
                               s->rev == RC_REV_ACKED
                                   ? "terminal holds an approval the issuer reversed"
                                   : "terminal holds an approval the switch is reversing");
                    mm_sw(m, c, s);
                    m->record_line = l->lineno;
                    m->has_expected = true;
                    m->expected = full;
                } else if (net != full) {
                    m = mm_new(c, RC_CHK_RECORD,
                               net == 0 ? "issuer does not have the terminal's approval"
                                        : "issuer's effect differs from the terminal's approval");
                    if (s)
                        mm_sw(m, c, s);
                    else
                        mm_rec(m, c, l);
                    m->record_line = l->lineno;
                    m->has_net = true;
                    m->issuer_net = net;
                    m->has_expected = true;
                    m->expected = full;
                }
            }
        } else if (l->answered) {
            c->st.rec_declined++;
            if (l->transfer)
                record_transfer(c, l, false);
            if (net != 0) {
                m = mm_new(c, RC_CHK_RECORD, "a request the terminal saw declined moved money");
                mm_sw(m, c, s);
                m->record_line = l->lineno;
                m->has_expected = true;
            }
        } else {
            if (full != 0 || l->rev) {
                if (!l->rev || !l->rev_answered) {
                    c->st.rec_unanswered_gave_up++;
                    m = mm_new(c, RC_CHK_RECORD, "terminal gave up on a reversal");
                    mm_rec(m, c, l);
                } else {
                    c->st.rec_unanswered_reversed++;
                    char date[11];
                    rec_date(c, l->rev_de7, date);
                    long rv = find_ident(c, date, c->acquirer, l->terminal, l->rev_stan, l->rev_de7,
                                         "040");
                    if (strcmp(l->rev_rc, "00") == 0 &&
                        (rv < 0 || c->sw[rv].src != RC_SRC_JOURNAL)) {
                        m = mm_new(c, RC_CHK_RECORD,
                                   "terminal's reversal was acknowledged but is not journaled");
                        mm_rec(m, c, l);
                    }
                }
            } else {
                c->st.rec_unanswered_nothing++;
            }
            if (net != 0) {
                m = mm_new(c, RC_CHK_RECORD, "an unanswered request moved money");
                mm_sw(m, c, s);
                m->record_line = l->lineno;
                m->has_expected = true;
            }
        }
        /* The terminals' view against the issuer, for the same requests. */
        struct rc_money *t = ccy_of(c, ccy);
        t->in_record = true;
        t->term += held;
        long w = s ? s->wallet : -1;
        if (s && s->iss >= 0 && c->iss[s->iss].sw == it) {
            struct rc_money *ti = ccy_of(c, iss_currency(c, &c->iss[s->iss], ccy));
            ti->in_record = true;
            ti->term_iss += net;
            wt_of(c, w)->term_iss += net;
        }
        if (w < 0 && held != 0)
            w = unknown_wallet(c, l->pan, ccy);
        if (w >= 0) {
            wt_of(c, w)->in_record = true;
            wt_of(c, w)->term += held;
        }
    }
    rc_map_free(undone);
}

static void run_totals(struct rc_ctx *c)
{
    struct rc_mismatch *m;
    for (size_t i = 0; i < c->nccy; i++) {
        const struct rc_money *t = &c->ccy[i].m;
        c->st.checked[RC_CHK_TOTALS]++;
        if (rc_money_difference(t) != 0) {
            m = mm_new(c, RC_CHK_TOTALS,
                       "currency total: issuer %lld, switch %lld, pending %lld: difference %lld",
                       (long long)t->iss, (long long)t->sw, (long long)t->pending,
                       (long long)rc_money_difference(t));
            m->currency = c->ccy[i].currency;
        }
        if (rc_money_record_differs(t)) {
            m = mm_new(c, RC_CHK_RECORD,
                       "currency total: terminals hold %lld, issuer %lld for the same requests",
                       (long long)t->term, (long long)t->term_iss);
            m->currency = c->ccy[i].currency;
        }
    }
    for (size_t i = 0; i < c->nwt; i++) {
        const struct rc_money *t = &c->wt[i].m;
        const struct rc_wallet *w = &c->wallets[c->wt[i].wallet];
        bool diff = rc_money_difference(t) != 0;
        bool rdiff = rc_money_record_differs(t);
        if (!diff && !rdiff)
            continue;
        m = mm_new(c, diff ? RC_CHK_TOTALS : RC_CHK_RECORD,
                   "wallet: issuer %lld, switch %lld, pending %lld%s", (long long)t->iss,
                   (long long)t->sw, (long long)t->pending,
                   rdiff ? ", terminals differ from the issuer" : "");
        m->wallet_id = w->id ? w->id : -1;
        m->currency = w->currency;
        snprintf(m->pan, sizeof m->pan, "%s", w->pan_masked);
        m->has_net = true;
        m->issuer_net = t->iss;
        m->has_expected = true;
        m->expected = t->sw + t->pending;
    }
}

static int mm_cmp(const void *a, const void *b)
{
    const struct rc_mismatch *x = a, *y = b;
    int d;
    if (x->check != y->check)
        return x->check < y->check ? -1 : 1;
    if ((d = strcmp(x->terminal, y->terminal)) != 0 || (d = strcmp(x->de7, y->de7)) != 0 ||
        (d = strcmp(x->stan, y->stan)) != 0 || (d = strcmp(x->issuer_stan, y->issuer_stan)) != 0)
        return d;
    if (x->wallet_id != y->wallet_id)
        return x->wallet_id < y->wallet_id ? -1 : 1;
    if (x->currency != y->currency)
        return x->currency < y->currency ? -1 : 1;
    return strcmp(x->problem, y->problem);
}

static int ccy_cmp(const void *a, const void *b)
{
    const struct rc_ccy *x = a, *y = b;
    return (x->currency > y->currency) - (x->currency < y->currency);
}

int rc_run(struct rc_ctx *c)
{
    struct rc_map *by_hmac = rc_map_new();
    size_t v;
    if (!by_hmac)
        return -1;
    for (size_t i = 0; i < c->nwallets; i++)
        if (c->wallets[i].pan_hmac[0] && rc_map_put(by_hmac, c->wallets[i].pan_hmac, i, NULL) < 0)
            c->oom = true;
    for (size_t i = 0; i < c->niss; i++) {
        char k[32];
        snprintf(k, sizeof k, "%lld", c->iss[i].wallet_id);
        if (c->iss[i].wallet_id >= 0 && rc_map_get(c->wallet_by_id, k, &v))
            c->iss[i].wallet = (long)v;
    }
    /* A request's wallet: the one the issuer booked it on, else the one holding its card. */
    for (size_t k = 0; k < c->nsw; k++) {
        struct rc_sw *s = &c->sw[k];
        if (s->iss >= 0 && c->iss[s->iss].wallet >= 0)
            s->wallet = c->iss[s->iss].wallet;
        else if (s->pan_hmac[0] && rc_map_get(by_hmac, s->pan_hmac, &v))
            s->wallet = (long)v;
    }
    rc_map_free(by_hmac);
    mark_holds_ended(c);
    run_switch_items(c);
    run_issuer_keys(c);
    run_transfers(c);
    if (c->record)
        run_record(c);
    for (size_t i = 0; i < c->nwallets; i++) {
        if (c->wallets[i].id <= 0)
            continue;
        c->st.checked[RC_CHK_WALLET_LEDGER]++;
        if (c->wallets[i].broken) {
            struct rc_mismatch *m = mm_new(
                c, RC_CHK_WALLET_LEDGER,
                "wallet balance %lld but its ledger sums to %lld (wallet.invariant_violations)",
                (long long)c->wallets[i].balance, (long long)c->wallets[i].ledger_sum);
            m->wallet_id = c->wallets[i].id;
            m->currency = c->wallets[i].currency;
            snprintf(m->pan, sizeof m->pan, "%s", c->wallets[i].pan_masked);
        }
    }
    run_totals(c);
    if (c->nccy) /* qsort's array may not be NULL, even for no element */
        qsort(c->ccy, c->nccy, sizeof *c->ccy, ccy_cmp);
    if (c->nmm)
        qsort(c->mm, c->nmm, sizeof *c->mm, mm_cmp);
    return c->oom ? -1 : 0;
}
