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
    LOAD_K_TRANSFER,       /* 0200 proc 40 with PIN: wallet to wallet, recipient in DE 103 */
    LOAD_K_CHIP,           /* 0200 proc 00 with PIN, chip read: DE 55 with an ARQC (CVN 18 or 10) */
    LOAD_K_ECOM,           /* 0200 proc 00, card not present: the card's CVV2 in DE 126 */
    LOAD_K_max
};

const char *load_kind_name(enum load_kind k); /* "purchase", "purchase-nopin", ... */

/* Relative weights of the kinds (0 = never). total is their sum (> 0 when valid). */
struct load_mix {
    unsigned weight[LOAD_K_max];
    unsigned total;
};

/* The default mix: purchase 50, purchase-nopin 15, cash 10, balance 10, refund 5, reversal 10
 * (no transfers: `transfer=W` adds them). */
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
 * index > 8 (the 8 demo cards have the README's); currency 504/952/950/929 by BIN; expiry
 * 2812. The harness uses indices 9.. (active, no daily limit). 0 or -1 (index 0). */
struct load_card {
    char pan[17];
    char pin[5];
    char currency[4];
};
SIM_MUST_CHECK int load_card_of(uint64_t index, struct load_card *c);

/* ------------------------------------------------------------------ reversals */

/* The life of a reversal the harness owes the switch: one for every money-moving request
 * (purchase, purchase-nopin, cash, refund) that got no acceptable answer (timeout,
 * connection lost, response MAC wrong or missing), and one for every load-mix reversal
 * that got none (its repeats). It is sent as 0400, then repeated as 0401 with the same STAN
 * and DE 7 until an 0410 with a valid MAC arrives (any DE 39), or abandoned at the stop's
 * deadline. load_rev_set_state is the only door; an illegal move aborts. */
enum load_rev_state {
    LOAD_REV_FREE,      /* not in use (the harness's free list) */
    LOAD_REV_WAITING,   /* owed, no try in flight: on its connection's waiting list */
    LOAD_REV_IN_FLIGHT, /* a try (0400 or 0401) sent, waiting for its 0410 */
    LOAD_REV_ANSWERED,  /* an 0410 with a valid MAC arrived: done (record line written) */
    LOAD_REV_ABANDONED, /* still owed at --reversal-deadline: given up (record line written) */
    LOAD_REV_max
};

const char *load_rev_state_name(enum load_rev_state s);
/* Whether the transition table allows from -> to. */
bool load_rev_move_allowed(enum load_rev_state from, enum load_rev_state to);

/* How a try (or the request that made the reversal necessary) ended. */
enum load_try_result {
    LOAD_TRY_ANSWERED, /* a response with an acceptable MAC */
    LOAD_TRY_TIMEOUT,  /* nothing within the timeout */
    LOAD_TRY_CONN,     /* the connection ended first (or the response did not decode) */
    LOAD_TRY_BAD_MAC,  /* a response whose MAC is wrong or missing: not trusted */
    LOAD_TRY_NOT_NOW,  /* an authentic 0410 with 91 or 96: the switch could not take the
                          reversal now (its database away, say): repeat it */
};

/* The clock part of a reversal, apart from what it reverses (unit-tested alone). Times are
 * monotonic nanoseconds. */
struct load_rev_core {
    enum load_rev_state state;
    unsigned tries;         /* messages sent so far (0400 + 0401s) */
    uint64_t last_send_ns;  /* when the last try was written */
    uint64_t not_before_ns; /* the next try may not leave before this */
};

/* Moves c to state to (aborts with a message when the table forbids it). */
void load_rev_set_state(struct load_rev_core *c, enum load_rev_state to);

/* A reversal becomes owed (FREE -> WAITING). tries_sent is what was sent already (0 for a
 * request's reversal; 1 for a load-mix reversal that went unanswered, whose first try was
 * the request itself), last_send_ns when, why how that ended. */
void load_rev_begin(struct load_rev_core *c, unsigned tries_sent, uint64_t last_send_ns,
                    enum load_try_result why, uint64_t now_ns, uint64_t interval_ns);

/* The MTI of the next try: "0400" when nothing was sent yet, else "0401". */
const char *load_rev_next_mti(const struct load_rev_core *c);

/* Whether a WAITING reversal may be sent at now_ns (its connection permitting). */
bool load_rev_due(const struct load_rev_core *c, uint64_t now_ns);

/* A try was written (WAITING -> IN_FLIGHT). */
void load_rev_sent(struct load_rev_core *c, uint64_t now_ns);

/* A try ended: ANSWERED ends the reversal; anything else makes it WAITING again. The next
 * try is due at once after a lost connection (it leaves when a connection is up again),
 * else interval_ns after the previous try was sent (a timeout: at once, the timeout being
 * that interval; a response with a bad MAC: the rest of the interval). */
void load_rev_try_done(struct load_rev_core *c, enum load_try_result how, uint64_t now_ns,
                       uint64_t interval_ns);

/* Deadline: WAITING -> ABANDONED (a try in flight must end first). */
void load_rev_abandon(struct load_rev_core *c);

/* ------------------------------------------------------------------ the record file */

/* The first line of a record file: version 1, or version 2 when the run's mix has transfers
 * (their lines carry fields version 1 does not have; a file without them is version 1 exactly,
 * so that readers of version 1 keep reading runs of the default mix). */
#define LOAD_RECORD_HEADER    "# atlas-load-record 1\n"
#define LOAD_RECORD_HEADER_V2 "# atlas-load-record 2\n"
/* Longest record line (newline included). */
#define LOAD_RECORD_LINE_MAX 400

/* One finished request, as `--record FILE` writes it (docs/acquirer-sim.md, "The record
 * file"). Strings are NUL-terminated; "" means absent. */
struct load_record {
    char terminal[9]; /* DE 41 */
    char stan[7];     /* DE 11 of the request */
    char de7[11];     /* DE 7 of the request */
    char mti[5];      /* the request's MTI (a load-mix reversal: the MTI of its last try) */
    char proc[7];     /* DE 3 */
    bool has_amount;  /* DE 4 sent (not on balance inquiries) */
    uint64_t amount;  /* DE 4, minor units */
    char currency[4]; /* DE 49 */
    char pan[20];     /* the full PAN: the line carries it masked (first 6, last 4) */
    bool has_orig;    /* a load-mix reversal: DE 90's original */
    char orig_mti[5], orig_stan[7], orig_de7[11];
    bool transfer;       /* a transfer (version 2): to, to_currency and, answered, de6/51/28 */
    char to_pan[20];     /* the recipient's full PAN: the line carries it masked */
    char to_currency[4]; /* the recipient wallet's currency */
    bool answered;       /* a response with an acceptable MAC */
    char rc[3];          /* DE 39 of that response */
    char auth[7];        /* DE 38, "" = absent */
    char de6[13], de51[4], de28[10]; /* a transfer's answer: DE 6, 51, 28; "" = absent */
    bool rev;                        /* unanswered and reversed by the harness */
    char rev_stan[7], rev_de7[11];   /* the reversal's DE 11 / DE 7, "" if it never left */
    unsigned rev_tries;              /* 0400 + 0401s sent */
    bool rev_answered;               /* its 0410 arrived (else it was abandoned) */
    char rev_rc[3];                  /* DE 39 of that 0410 */
};

/* Writes r as one line ("req terminal=... rev=...\n") into out[0..cap). Values that could
 * hold anything but letters and digits are written with every other byte as '?' (so that a
 * line never has a stray space or '='); absent values are '-'. Returns the length (NUL not
 * counted), or -1 when cap is too small (cap >= LOAD_RECORD_LINE_MAX always suffices). */
SIM_MUST_CHECK int load_record_format(const struct load_record *r, char *out, size_t cap);

/* The masked form of a PAN: first 6 digits, '*' for each digit between, last 4
 * ("489001******0012"). PANs shorter than 11 characters are all '*'. out has >= 20 bytes. */
void load_pan_mask(const char *pan, char out[20]);

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
    uint64_t all_requests; /* requests sent (arrivals, warm-up included; not reversal tries) */
    /* Faults (whole run): connections lost and connected again; reversals owed (for
     * unanswered requests, and repeats of unanswered load-mix reversals), sent at least
     * once, answered by an 0410, abandoned at the deadline; tries = their messages. */
    uint64_t conn_losses, reconnects;
    uint64_t reversals, reversals_sent, reversal_tries, reversals_answered, reversals_abandoned;
    const char *record_file; /* --record, or NULL */
    uint64_t record_lines;   /* req lines written */
    struct at_hist total;    /* latency ns, every answered request */
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

/* ------------------------------------------------------------------ options */

#define LOAD_PATH_MAX 4096

/* The options of `acquirer-sim load`, each a row of load_opts.c's settings table (name, type,
 * default, range, help: `acquirer-sim load --help` prints them). */
struct load_opts {
    uint64_t rate;
    double duration, warmup;
    uint64_t connections;
    uint64_t closed_k; /* 0: open loop */
    char mix_spec[256];
    struct load_mix mix;        /* mix_spec, parsed */
    char report[LOAD_PATH_MAX]; /* "" = none */
    uint64_t cards, card_first;
    double max_error_rate;
    char host[64];
    bool tls; /* --tls --ca F [--cert F --key F] [--server-name N] */
    char ca[256], cert[256], key[256], server_name[128];
    bool load_terms;
    uint64_t term_first;
    uint64_t timeout_ms;
    uint64_t amount_max;
    uint64_t seed;
    uint64_t slots;
    char state_dir[256];
    bool quiet, strict_rate;
    char record[LOAD_PATH_MAX]; /* --record FILE, "" = none */
    uint64_t rev_interval_ms;   /* a reversal try's wait for its 0410 */
    double rev_deadline; /* seconds after the last arrival before owed reversals are abandoned */
};

/* Reads `acquirer-sim load`'s options (argv[2..]) into o: the table's defaults
 * ($ATLAS_ACQ_STATE_DIR for --state-dir), then each option; unknown options, missing values and
 * values out of their row's range are errors. Then the mix is parsed, rules between options
 * checked, and the defaults that depend on others filled (--reversal-interval-ms, --slots). Returns
 * 0; 1 when -h or --help was asked (nothing else read after it); -1 with a sentence in err. */
SIM_MUST_CHECK int load_opts_parse(int argc, char **argv, struct load_opts *o, char *err,
                                   size_t errcap);

/* Reads `acquirer-sim load-seed`'s options (--terminals C, --first I). Same returns. */
SIM_MUST_CHECK int load_seed_opts_parse(int argc, char **argv, uint64_t *terminals, uint64_t *first,
                                        char *err, size_t errcap);

/* The usage text of load and load-seed, their options from the tables. */
void load_usage(FILE *f);

/* The `load` and `load-seed` commands (argv[1] is the command). Exit status. */
int load_main(int argc, char **argv);
int load_seed_main(int argc, char **argv);

#endif
