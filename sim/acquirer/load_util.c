/* The pure parts of the load harness: the transaction mix, the open-loop arrival
 * schedule, load terminal ids and their derived lab keys, the deterministic wallet
 * population, and the text/JSON reports. No network, no clock: unit-tested alone. */
#include "load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fmt.h"
#include "hex.h"
#include "json.h"
#include "parse.h"

static const char *const kind_names[LOAD_K_max] = {
    "purchase", "purchase-nopin", "cash", "balance", "refund",
    "reversal", "transfer",       "chip", "ecom",
};

const char *load_kind_name(enum load_kind k)
{
    return (unsigned)k < LOAD_K_max ? kind_names[k] : "?";
}

int load_mix_parse(const char *spec, struct load_mix *m, char *err, size_t errcap)
{
    memset(m, 0, sizeof *m);
    bool seen[LOAD_K_max] = { false };
    const char *p = spec;
    if (!p || !*p) {
        snprintf(err, errcap, "empty mix");
        return -1;
    }
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq) {
            snprintf(err, errcap, "mix item '%.*s' is not name=weight", (int)(len > 40 ? 40 : len),
                     p);
            return -1;
        }
        size_t nl = (size_t)(eq - p);
        int k = -1;
        for (int i = 0; i < LOAD_K_max; i++)
            if (strlen(kind_names[i]) == nl && memcmp(kind_names[i], p, nl) == 0)
                k = i;
        if (k < 0) {
            snprintf(err, errcap,
                     "unknown kind '%.*s' in mix (purchase, purchase-nopin, cash, balance, "
                     "refund, reversal, transfer, chip, ecom)",
                     (int)(nl > 40 ? 40 : nl), p);
            return -1;
        }
        if (seen[k]) {
            snprintf(err, errcap, "kind '%s' appears twice in the mix", kind_names[k]);
            return -1;
        }
        seen[k] = true;
        const char *w = eq + 1;
        size_t wl = len - nl - 1;
        unsigned long v = 0;
        if (wl == 0 || wl > 7) {
            snprintf(err, errcap, "weight of '%s' must be 0..1000000", kind_names[k]);
            return -1;
        }
        for (size_t i = 0; i < wl; i++) {
            if (w[i] < '0' || w[i] > '9') {
                snprintf(err, errcap, "weight of '%s' must be 0..1000000", kind_names[k]);
                return -1;
            }
            v = v * 10 + (unsigned long)(w[i] - '0');
        }
        if (v > 1000000) {
            snprintf(err, errcap, "weight of '%s' must be 0..1000000", kind_names[k]);
            return -1;
        }
        m->weight[k] = (unsigned)v;
        m->total += (unsigned)v;
        if (!end)
            break;
        p = end + 1;
        if (!*p) {
            snprintf(err, errcap, "mix ends with a comma");
            return -1;
        }
    }
    if (m->total == 0) {
        snprintf(err, errcap, "every weight of the mix is 0");
        return -1;
    }
    return 0;
}

enum load_kind load_mix_pick(const struct load_mix *m, uint64_t r)
{
    uint64_t x = r % m->total;
    for (int i = 0; i < LOAD_K_max; i++) {
        if (x < m->weight[i])
            return (enum load_kind)i;
        x -= m->weight[i];
    }
    return LOAD_K_PURCHASE; /* unreachable with a valid mix */
}

uint64_t load_sched_time(uint64_t t0, uint64_t k, uint64_t rate)
{
    return t0 + k * 1000000000ull / rate;
}

/* time(k) <= now  <=>  floor(k*1e9/rate) <= d  <=>  k*1e9 < (d+1)*rate  <=>  k <
 * ceil((d+1)*rate/1e9). */
uint64_t load_sched_due(uint64_t t0, uint64_t now, uint64_t rate)
{
    if (now < t0)
        return 0;
    unsigned __int128 x = (unsigned __int128)(now - t0 + 1) * rate;
    return (uint64_t)((x + 999999999u) / 1000000000u);
}

int load_term_id(unsigned index, char id[9])
{
    if (index == 0 || index > 999999)
        return -1;
    if (index <= 9999)
        snprintf(id, 9, "LOAD%04u", index);
    else
        snprintf(id, 9, "LD%06u", index);
    return 0;
}

static void odd_parity(uint8_t *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = k[i] & 0xFE;
        unsigned ones = (unsigned)__builtin_popcount(b);
        k[i] = (uint8_t)(b | ((ones & 1) ? 0 : 1));
    }
}

int load_term_keys(unsigned index, uint8_t tpk[16], uint8_t tak[16])
{
    static const char label[] = "atlas-load-terminal-keys-v1";
    char id[9];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (load_term_id(index, id) != 0 ||
        !HMAC(EVP_sha256(), label, (int)strlen(label), (const uint8_t *)id, 8, md, &mdlen) ||
        mdlen != 32)
        return -1;
    memcpy(tpk, md, 16);
    memcpy(tak, md + 16, 16);
    OPENSSL_cleanse(md, sizeof md);
    odd_parity(tpk, 16);
    odd_parity(tak, 16);
    return 0;
}

struct sim_term *load_term_new(unsigned index, const char *addr, uint32_t stan)
{
    uint8_t tpk[16], tak[16];
    char id[9], tpk_hex[33], tak_hex[33], merchant[16], err[160];
    if (load_term_id(index, id) != 0 || load_term_keys(index, tpk, tak) != 0)
        return NULL;
    at_hex_encode(tpk, 16, tpk_hex);
    at_hex_encode(tak, 16, tak_hex);
    OPENSSL_cleanse(tpk, sizeof tpk);
    OPENSSL_cleanse(tak, sizeof tak);
    snprintf(merchant, sizeof merchant, "ATLASLOAD%06u", index % 1000000);
    const char *const kv[] = { "address",    addr,     "dialect",  "ascii87", "framing", "2b",
                               "key_scheme", "tpk",    "tpk",      tpk_hex,   "tak",     tak_hex,
                               "merchant",   merchant, "currency", "504",     NULL };
    struct sim_term *t = sim_term_create(id, kv, err, sizeof err);
    OPENSSL_cleanse(tpk_hex, sizeof tpk_hex);
    OPENSSL_cleanse(tak_hex, sizeof tak_hex);
    if (t)
        sim_term_set_counters(t, stan ? stan : 1, 1);
    return t;
}

void load_term_free(struct sim_term *t)
{
    sim_term_free(t);
}

int load_card_of(uint64_t index, struct load_card *c)
{
    static const char *const bins[4] = { "489001", "489002", "489003", "489004" };
    static const char *const ccys[4] = { "504", "952", "950", "929" };
    static const int demo_bin[8] = { 0, 1, 2, 3, 0, 0, 0, 0 };
    static const char *const demo_pin[8] = { "1234", "4321", "1111", "2222",
                                             "1234", "1234", "1234", "1234" };
    if (index < 1 || index > 999999999)
        return -1;
    int b = (int)((index - 1) % 4);
    if (index <= 8) {
        b = demo_bin[index - 1];
        memcpy(c->pin, demo_pin[index - 1], 5);
    } else {
        at_put_digits(c->pin, 4, (index * 7919 + 1234) % 10000); /* no snprintf per request */
        c->pin[4] = '\0';
    }
    memcpy(c->pan, bins[b], 6);
    at_put_digits(c->pan + 6, 9, index);
    c->pan[15] = at_luhn_digit(c->pan, 15);
    c->pan[16] = '\0';
    memcpy(c->currency, ccys[b], 4);
    return 0;
}

/* ------------------------------------------------------------------ reversals */

static const char *const rev_state_names[LOAD_REV_max] = {
    "free", "waiting", "in_flight", "answered", "abandoned",
};

const char *load_rev_state_name(enum load_rev_state s)
{
    return (unsigned)s < LOAD_REV_max ? rev_state_names[s] : "?";
}

/* allowed[from][to]. A try in flight always ends (answer, timeout or connection loss)
 * before its reversal can be given up: the harness closes its connections first at the
 * deadline, so an answer in flight is never lost by abandoning early. Nothing comes back
 * from a final state except to the free list. */
static const bool rev_allowed[LOAD_REV_max][LOAD_REV_max] = {
    [LOAD_REV_FREE] = { [LOAD_REV_WAITING] = true },
    [LOAD_REV_WAITING] = { [LOAD_REV_IN_FLIGHT] = true, [LOAD_REV_ABANDONED] = true },
    [LOAD_REV_IN_FLIGHT] = { [LOAD_REV_WAITING] = true, [LOAD_REV_ANSWERED] = true },
    [LOAD_REV_ANSWERED] = { [LOAD_REV_FREE] = true },
    [LOAD_REV_ABANDONED] = { [LOAD_REV_FREE] = true },
};

bool load_rev_move_allowed(enum load_rev_state from, enum load_rev_state to)
{
    return (unsigned)from < LOAD_REV_max && (unsigned)to < LOAD_REV_max && rev_allowed[from][to];
}

void load_rev_set_state(struct load_rev_core *c, enum load_rev_state to)
{
    if (!load_rev_move_allowed(c->state, to)) {
        fprintf(stderr, "acquirer-sim load: illegal reversal move %s -> %s\n",
                load_rev_state_name(c->state), load_rev_state_name(to));
        abort();
    }
    c->state = to;
}

static uint64_t next_due(const struct load_rev_core *c, enum load_try_result why, uint64_t now,
                         uint64_t interval)
{
    if (c->tries == 0 || why == LOAD_TRY_CONN)
        return now;
    uint64_t t = c->last_send_ns + interval;
    return t > now ? t : now;
}

void load_rev_begin(struct load_rev_core *c, unsigned tries_sent, uint64_t last_send_ns,
                    enum load_try_result why, uint64_t now_ns, uint64_t interval_ns)
{
    load_rev_set_state(c, LOAD_REV_WAITING);
    c->tries = tries_sent;
    c->last_send_ns = last_send_ns;
    c->not_before_ns = next_due(c, why, now_ns, interval_ns);
}

const char *load_rev_next_mti(const struct load_rev_core *c)
{
    return c->tries == 0 ? "0400" : "0401";
}

bool load_rev_due(const struct load_rev_core *c, uint64_t now_ns)
{
    return c->state == LOAD_REV_WAITING && now_ns >= c->not_before_ns;
}

void load_rev_sent(struct load_rev_core *c, uint64_t now_ns)
{
    load_rev_set_state(c, LOAD_REV_IN_FLIGHT);
    c->tries++;
    c->last_send_ns = now_ns;
}

void load_rev_try_done(struct load_rev_core *c, enum load_try_result how, uint64_t now_ns,
                       uint64_t interval_ns)
{
    if (how == LOAD_TRY_ANSWERED) {
        load_rev_set_state(c, LOAD_REV_ANSWERED);
        return;
    }
    load_rev_set_state(c, LOAD_REV_WAITING);
    c->not_before_ns = next_due(c, how, now_ns, interval_ns);
}

void load_rev_abandon(struct load_rev_core *c)
{
    load_rev_set_state(c, LOAD_REV_ABANDONED);
}

/* ------------------------------------------------------------------ the record file */

void load_pan_mask(const char *pan, char out[20])
{
    size_t n = strnlen(pan, 19);
    for (size_t i = 0; i < n; i++)
        out[i] = n >= 11 && (i < 6 || i >= n - 4) ? pan[i] : '*';
    out[n] = '\0';
}

/* Appends to a line being built; every helper leaves *p unchanged once it would overflow. */
struct line {
    char *p, *end;
    bool full;
};

static void put_raw(struct line *l, const char *s, size_t n)
{
    if (l->full || (size_t)(l->end - l->p) < n) {
        l->full = true;
        return;
    }
    memcpy(l->p, s, n);
    l->p += n;
}

/* " key=" then value with anything but letters and digits as '?', or '-' when empty. */
static void put_kv(struct line *l, const char *key, const char *value)
{
    put_raw(l, " ", 1);
    put_raw(l, key, strlen(key));
    put_raw(l, "=", 1);
    size_t n = strlen(value);
    if (n == 0) {
        put_raw(l, "-", 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char c = value[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        put_raw(l, ok ? &c : "?", 1);
    }
}

static void put_ku(struct line *l, const char *key, uint64_t v)
{
    char d[AT_I64_CHARS];
    size_t n = at_put_i64(d, (int64_t)v);
    put_raw(l, " ", 1);
    put_raw(l, key, strlen(key));
    put_raw(l, "=", 1);
    put_raw(l, d, n);
}

int load_record_format(const struct load_record *r, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    struct line l = { out, out + cap - 1, false }; /* room for the NUL */
    char pan[20];
    load_pan_mask(r->pan, pan);
    put_raw(&l, "req", 3);
    put_kv(&l, "terminal", r->terminal);
    put_kv(&l, "stan", r->stan);
    put_kv(&l, "de7", r->de7);
    put_kv(&l, "mti", r->mti);
    put_kv(&l, "proc", r->proc);
    if (r->has_amount)
        put_ku(&l, "amount", r->amount);
    else
        put_kv(&l, "amount", "");
    put_kv(&l, "currency", r->currency);
    /* The masked PAN's '*' are the one non-alphanumeric value the format allows. */
    put_raw(&l, " pan=", 5);
    put_raw(&l, pan[0] ? pan : "-", pan[0] ? strlen(pan) : 1);
    if (r->transfer) {
        load_pan_mask(r->to_pan, pan);
        put_raw(&l, " to=", 4);
        put_raw(&l, pan[0] ? pan : "-", pan[0] ? strlen(pan) : 1);
        put_kv(&l, "to_currency", r->to_currency);
    }
    if (r->has_orig) {
        put_kv(&l, "orig_mti", r->orig_mti);
        put_kv(&l, "orig_stan", r->orig_stan);
        put_kv(&l, "orig_de7", r->orig_de7);
    }
    put_raw(&l, r->answered ? " answered=yes" : " answered=no", r->answered ? 13 : 12);
    if (r->answered) {
        put_kv(&l, "rc", r->rc);
        put_kv(&l, "auth", r->auth);
        if (r->transfer) {
            put_kv(&l, "de6", r->de6);
            put_kv(&l, "de51", r->de51);
            put_kv(&l, "de28", r->de28);
        }
    }
    if (!r->rev) {
        put_raw(&l, " rev=no", 7);
    } else {
        put_raw(&l, " rev=yes", 8);
        put_kv(&l, "rev_stan", r->rev_stan);
        put_kv(&l, "rev_de7", r->rev_de7);
        put_ku(&l, "rev_tries", r->rev_tries);
        if (r->rev_answered)
            put_kv(&l, "rev_rc", r->rev_rc);
        else
            put_raw(&l, " rev_rc=none", 12);
    }
    put_raw(&l, "\n", 1);
    if (l.full)
        return -1;
    *l.p = '\0';
    return (int)(l.p - out);
}

/* ------------------------------------------------------------------ reports */

double load_achieved_tps(const struct load_result *r)
{
    return r->elapsed_s > 0 ? (double)r->answered / r->elapsed_s : 0.0;
}

double load_error_rate(const struct load_result *r)
{
    uint64_t den = r->sent + r->unsent;
    uint64_t bad = r->errors + r->timeouts + r->unsent + r->unexpected;
    return den ? (double)bad / (double)den : 0.0;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void json_hist(FILE *f, const struct at_hist *h)
{
    fprintf(f,
            "\"count\":%llu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
            "\"max_ms\":%.3f",
            (unsigned long long)h->count, ms(at_hist_quantile(h, 0.5)),
            ms(at_hist_quantile(h, 0.9)), ms(at_hist_quantile(h, 0.99)),
            ms(at_hist_quantile(h, 0.999)), ms(h->count ? h->max : 0));
}

int load_report_json(FILE *f, const struct load_result *r)
{
    fprintf(f, "{\"mode\":\"%s\",\"requested_tps\":%llu,\"achieved_tps\":%.1f,",
            r->closed ? "closed" : "open", (unsigned long long)r->requested, load_achieved_tps(r));
    if (r->closed)
        fprintf(f, "\"closed_k\":%u,", r->closed_k);
    fprintf(f,
            "\"connections\":%u,\"connections_up\":%u,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
            "\"elapsed_s\":%.3f,\"scheduled\":%llu,\"sent\":%llu,\"answered\":%llu,"
            "\"errors\":%llu,\"timeouts\":%llu,\"unsent\":%llu,\"unexpected_rc\":%llu,"
            "\"error_rate\":%.6f,",
            r->connections, r->conns_up, r->duration_s, r->warmup_s, r->elapsed_s,
            (unsigned long long)r->scheduled, (unsigned long long)r->sent,
            (unsigned long long)r->answered, (unsigned long long)r->errors,
            (unsigned long long)r->timeouts, (unsigned long long)r->unsent,
            (unsigned long long)r->unexpected, load_error_rate(r));
    fprintf(f, "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,",
            ms(at_hist_quantile(&r->total, 0.5)), ms(at_hist_quantile(&r->total, 0.9)),
            ms(at_hist_quantile(&r->total, 0.99)), ms(at_hist_quantile(&r->total, 0.999)),
            ms(r->total.count ? r->total.max : 0));
    fprintf(f, "\"rc\":{");
    bool first = true;
    for (int i = 0; i < 100; i++) {
        if (!r->rc[i])
            continue;
        fprintf(f, "%s\"%02d\":%llu", first ? "" : ",", i, (unsigned long long)r->rc[i]);
        first = false;
    }
    if (r->rc_other)
        fprintf(f, "%s\"other\":%llu", first ? "" : ",", (unsigned long long)r->rc_other);
    fprintf(f, "},\"types\":{");
    first = true;
    for (int k = 0; k < LOAD_K_max; k++) {
        if (!r->per_kind_sent[k] && !r->kind[k].count)
            continue;
        fprintf(f, "%s\"%s\":{\"sent\":%llu,", first ? "" : ",", kind_names[k],
                (unsigned long long)r->per_kind_sent[k]);
        json_hist(f, &r->kind[k]);
        fputc('}', f);
        first = false;
    }
    fprintf(f,
            "},\"reversal_fallback\":%llu,\"rate_kept\":%s,\"late_sends\":%llu,"
            "\"late_sends_harness\":%llu,\"send_lag_max_ms\":%.3f,\"harness_cpu_pct\":%.1f,"
            "\"all_sent\":%llu,\"all_answered\":%llu,\"all_approved\":%llu,\"unmatched\":%llu,",
            (unsigned long long)r->reversal_fallback, r->rate_kept ? "true" : "false",
            (unsigned long long)r->late_sends, (unsigned long long)r->late_sends_gen,
            ms(r->send_lag_max_ns), r->gen_cpu_pct, (unsigned long long)r->all_sent,
            (unsigned long long)r->all_answered, (unsigned long long)r->all_approved,
            (unsigned long long)r->unmatched);
    fprintf(f,
            "\"all_requests\":%llu,\"connection_losses\":%llu,\"reconnects\":%llu,"
            "\"reversals\":%llu,\"reversals_sent\":%llu,\"reversal_tries\":%llu,"
            "\"reversals_answered\":%llu,\"reversals_abandoned\":%llu,\"record_file\":",
            (unsigned long long)r->all_requests, (unsigned long long)r->conn_losses,
            (unsigned long long)r->reconnects, (unsigned long long)r->reversals,
            (unsigned long long)r->reversals_sent, (unsigned long long)r->reversal_tries,
            (unsigned long long)r->reversals_answered, (unsigned long long)r->reversals_abandoned);
    at_json_fput(f, r->record_file);
    fprintf(f, ",\"record_lines\":%llu}\n", (unsigned long long)r->record_lines);
    return ferror(f) ? -1 : 0;
}

static void text_hist(FILE *f, const char *name, uint64_t sent, const struct at_hist *h)
{
    fprintf(f, "  %-15s %9llu %9llu %8.2f %8.2f %8.2f %8.2f %8.2f\n", name,
            (unsigned long long)sent, (unsigned long long)h->count, ms(at_hist_quantile(h, 0.5)),
            ms(at_hist_quantile(h, 0.9)), ms(at_hist_quantile(h, 0.99)),
            ms(at_hist_quantile(h, 0.999)), ms(h->count ? h->max : 0));
}

void load_report_text(FILE *f, const struct load_result *r)
{
    if (r->closed)
        fprintf(f, "closed loop, %u connections x %u in flight, %.1f s (+%.1f s warm-up)\n",
                r->connections, r->closed_k, r->elapsed_s, r->warmup_s);
    else
        fprintf(f, "open loop, %llu/s asked, %u connections, %.1f s (+%.1f s warm-up)\n",
                (unsigned long long)r->requested, r->connections, r->elapsed_s, r->warmup_s);
    fprintf(f,
            "throughput %.1f/s   sent %llu  answered %llu  errors %llu  timeouts %llu  unsent "
            "%llu  unexpected rc %llu  (error rate %.4f%%)\n",
            load_achieved_tps(r), (unsigned long long)r->sent, (unsigned long long)r->answered,
            (unsigned long long)r->errors, (unsigned long long)r->timeouts,
            (unsigned long long)r->unsent, (unsigned long long)r->unexpected,
            100.0 * load_error_rate(r));
    fprintf(f, "latency (ms)       sent  answered      p50      p90      p99    p99.9      max\n");
    text_hist(f, "all", r->sent, &r->total);
    for (int k = 0; k < LOAD_K_max; k++)
        if (r->per_kind_sent[k])
            text_hist(f, kind_names[k], r->per_kind_sent[k], &r->kind[k]);
    fprintf(f, "response codes:");
    for (int i = 0; i < 100; i++)
        if (r->rc[i]) {
            char rc[3] = { (char)('0' + i / 10), (char)('0' + i % 10), 0 };
            fprintf(f, "  %s %llu (%s)", rc, (unsigned long long)r->rc[i], sim_rc_text(rc));
        }
    if (r->rc_other)
        fprintf(f, "  other %llu", (unsigned long long)r->rc_other);
    fprintf(f, "\n");
    if (r->reversal_fallback)
        fprintf(f, "%llu reversals had no approved original yet and were sent as purchases\n",
                (unsigned long long)r->reversal_fallback);
    if (r->conn_losses || r->reconnects)
        fprintf(f, "connections: %llu lost, %llu connected again\n",
                (unsigned long long)r->conn_losses, (unsigned long long)r->reconnects);
    if (r->reversals)
        fprintf(f,
                "reversals of unanswered requests: %llu owed, %llu sent (%llu messages, 0400 + "
                "0401), %llu answered, %llu abandoned at the deadline\n",
                (unsigned long long)r->reversals, (unsigned long long)r->reversals_sent,
                (unsigned long long)r->reversal_tries, (unsigned long long)r->reversals_answered,
                (unsigned long long)r->reversals_abandoned);
    if (r->record_file)
        fprintf(f, "record: %s, %llu lines for %llu requests sent\n", r->record_file,
                (unsigned long long)r->record_lines, (unsigned long long)r->all_requests);
    fprintf(f,
            "harness: CPU %.0f%% of a core, worst send lag %.2f ms, %llu sends > 5 ms late "
            "(%llu with a free slot: the harness's own delay)\n",
            r->gen_cpu_pct, ms(r->send_lag_max_ns), (unsigned long long)r->late_sends,
            (unsigned long long)r->late_sends_gen);
    if (!r->closed && !r->rate_kept) {
        if (r->late_sends_gen * 100 > r->sent)
            fprintf(f, "WARNING: the requested rate was NOT kept: the harness itself sent late "
                       "(CPU or scheduling); latencies still count from the scheduled times, but "
                       "the offered load was burstier than asked\n");
        else
            fprintf(f,
                    "WARNING: the requested rate was NOT kept: the server did not answer fast "
                    "enough and every in-flight slot was taken (%llu arrivals never sent); "
                    "latencies count from the scheduled times\n",
                    (unsigned long long)r->unsent);
    }
}
