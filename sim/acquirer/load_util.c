/* The pure parts of the load harness: the transaction mix, the open-loop arrival
 * schedule, load terminal ids and their derived lab keys, the deterministic wallet
 * population, and the text/JSON reports. No network, no clock: unit-tested alone. */
#include "load.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "hex.h"

static const char *const kind_names[LOAD_K_max] = {
    "purchase", "purchase-nopin", "cash", "balance", "refund", "reversal",
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
                     "refund, reversal)",
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

static char luhn_digit(const char *d, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)(d[n - 1 - i] - '0');
        if (i % 2 == 0) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return (char)('0' + (10 - sum % 10) % 10);
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
        snprintf(c->pin, sizeof c->pin, "%04u", (unsigned)((index * 7919 + 1234) % 10000));
    }
    snprintf(c->pan, sizeof c->pan, "%s%09u", bins[b], (unsigned)index);
    c->pan[15] = luhn_digit(c->pan, 15);
    c->pan[16] = '\0';
    memcpy(c->currency, ccys[b], 4);
    return 0;
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
            "\"all_sent\":%llu,\"all_answered\":%llu,\"all_approved\":%llu,\"unmatched\":%llu}\n",
            (unsigned long long)r->reversal_fallback, r->rate_kept ? "true" : "false",
            (unsigned long long)r->late_sends, (unsigned long long)r->late_sends_gen,
            ms(r->send_lag_max_ns), r->gen_cpu_pct, (unsigned long long)r->all_sent,
            (unsigned long long)r->all_answered, (unsigned long long)r->all_approved,
            (unsigned long long)r->unmatched);
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
