/* The load-test harness of acquirer-sim (`acquirer-sim load`, `load-seed`): the
 * transaction mix, the open-loop arrival schedule, the generated load terminals
 * (LOAD0001...) with keys derived from their index, the wallet population of
 * issuer-sim's deterministic seed, and the report. The pure parts are here so that
 * unit tests can check them without a network. */
#ifndef ATLAS_SIM_LOAD_H
#define ATLAS_SIM_LOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "acquirer.h"
#include "hist.h"

/* The kinds of transaction the harness sends. */
enum load_kind {
    LOAD_K_PURCHASE,       /* 0200 proc 00 with PIN */
    LOAD_K_PURCHASE_NOPIN, /* 0200 proc 00 without PIN */
    LOAD_K_CASH,           /* 0200 proc 01 with PIN (cash-out) */
    LOAD_K_BALANCE,        /* 0100 proc 30 with PIN */
    LOAD_K_REFUND,         /* 0200 proc 20, no PIN */
    LOAD_K_REVERSAL,       /* 0400 of an earlier approved 0200 of the same run */
    LOAD_K_max
};

const char *load_kind_name(enum load_kind k); /* "purchase", "purchase-nopin", ... */

/* Relative weights of the kinds (0 = never). total is their sum (> 0 when valid). */
struct load_mix {
    unsigned weight[LOAD_K_max];
    unsigned total;
};

/* The default mix: purchase 50, purchase-nopin 15, cash 10, balance 10, refund 5, reversal 10. */
#define LOAD_MIX_DEFAULT "purchase=50,purchase-nopin=15,cash=10,balance=10,refund=5,reversal=10"

/* Parses "name=weight,name=weight,..." (kinds not named get 0; weights 0..1000000; a
 * name at most once; at least one weight > 0) into m. Returns 0, or -1 with a sentence
 * in err. */
SIM_MUST_CHECK int load_mix_parse(const char *spec, struct load_mix *m, char *err, size_t errcap);

/* The kind for a uniformly distributed random number r: kind i is chosen with
 * probability weight[i] / total (r % total walks the cumulative weights). */
enum load_kind load_mix_pick(const struct load_mix *m, uint64_t r);

/* Open-loop schedule: arrival k (0-based) of a run at rate per second starting at t0 is
 * due at t0 + floor(k * 1e9 / rate) ns. load_sched_due returns how many arrivals are due
 * at now (those with time <= now): 0 before t0. Exact integer arithmetic, rate >= 1,
 * valid while k * 1e9 fits in 64 bits (k < 1.8e10). */
uint64_t load_sched_time(uint64_t t0, uint64_t k, uint64_t rate);
uint64_t load_sched_due(uint64_t t0, uint64_t now, uint64_t rate);

/* The id of load terminal index (1-based): LOAD0001..LOAD9999, then LD010000..LD999999
 * (DE 41 has 8 characters). Returns 0 or -1 when index is 0 or above 999999. */
SIM_MUST_CHECK int load_term_id(unsigned index, char id[9]);

/* The clear lab keys of load terminal index: HMAC-SHA-256(key "atlas-load-terminal-keys-v1",
 * message = its 8-character id) gives 32 bytes; the first 16 are the TPK, the last 16 the
 * TAK, each byte then forced to odd parity (low bit). Lab keys for benchmarks only. */
SIM_MUST_CHECK int load_term_keys(unsigned index, uint8_t tpk[16], uint8_t tak[16]);

/* A load terminal profile (TPK scheme, ascii87, 2b framing, address addr) with in-memory
 * counters starting at stan. NULL on failure. Free with load_term_free. */
struct sim_term *load_term_new(unsigned index, const char *addr, uint32_t stan);
void load_term_free(struct sim_term *t);

/* The card of wallet index (1-based) as issuer-sim's deterministic seed creates it
 * (docs/issuer-sim.md; sim_seed_spec): PAN = BIN (489001..489004 by (index-1) % 4) +
 * index in 9 digits + Luhn digit; PIN = (index * 7919 + 1234) % 10000 in 4 digits for
 * index > 8 (the 8 demo cards have DEMO.md's); currency 504/952/950/929 by BIN; expiry
 * 2812. The harness uses indices 9.. (active, no daily limit). 0 or -1 (index 0). */
struct load_card {
    char pan[17];
    char pin[5];
    char currency[4];
};
SIM_MUST_CHECK int load_card_of(uint64_t index, struct load_card *c);

/* ------------------------------------------------------------------ results */

/* Everything a run measured (the measurement window only, after the warm-up, except the
 * all_* counters which cover the whole run for the journal check). */
struct load_result {
    bool closed;          /* closed-loop mode */
    unsigned closed_k;    /* in flight per connection (closed) */
    uint64_t requested;   /* requests per second asked (0 in closed mode) */
    unsigned connections; /* connections asked */
    unsigned conns_up;    /* connections that came up */
    double duration_s, warmup_s;
    double elapsed_s;                /* measurement window as run */
    uint64_t scheduled;              /* arrivals due in the window (open loop) */
    uint64_t sent, answered, errors; /* errors: connection, protocol, bad response MAC */
    uint64_t timeouts, unsent;       /* unsent: due in the window but never sent */
    uint64_t unexpected;             /* answered with a DE 39 other than 00 */
    uint64_t rc[100];                /* DE 39 counts ("00".."99") */
    uint64_t rc_other;               /* non-numeric DE 39 */
    uint64_t per_kind_sent[LOAD_K_max];
    uint64_t reversal_fallback; /* reversals sent as purchases (no approved original) */
    uint64_t late_sends;        /* sent more than LOAD_LATE_NS after their arrival time */
    uint64_t late_sends_gen;    /* ... while a slot and the connection were free (our fault) */
    uint64_t send_lag_max_ns;   /* worst arrival -> write delay */
    double gen_cpu_pct;         /* the harness's own CPU over the window, % of one core */
    bool rate_kept;             /* the harness sent what was asked, on time */
    uint64_t all_sent, all_approved, all_answered; /* whole run, warm-up included */
    uint64_t unmatched;                            /* responses matching nothing */
    struct at_hist total;                          /* latency ns, every answered request */
    struct at_hist kind[LOAD_K_max];
};

#define LOAD_LATE_NS (5ull * 1000 * 1000)

/* Achieved rate: answered in the window per second of it. */
double load_achieved_tps(const struct load_result *r);
/* (errors + timeouts + unsent + unexpected) / max(sent + unsent, 1). */
double load_error_rate(const struct load_result *r);

/* Writes the JSON report (one object; fields in docs/BENCHMARKS.md) to f. 0 or -1. */
SIM_MUST_CHECK int load_report_json(FILE *f, const struct load_result *r);
/* Writes the human report to f. */
void load_report_text(FILE *f, const struct load_result *r);

/* The `load` and `load-seed` commands (argv[1] is the command). Exit status. */
int load_main(int argc, char **argv);
int load_seed_main(int argc, char **argv);

#endif
