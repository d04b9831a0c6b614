/* atlas_console: what the ops console knows about switchd's JSON-lines log.
 * A line parser (libjansson) into a fixed-size event, the display tables
 * (response codes, processing codes, currencies), filters, the rolling
 * 10-second statistics behind the status line and the whole-log summary. */
#ifndef ATLAS_CON_H
#define ATLAS_CON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"

/* A line longer than this is reported as malformed (switchd's own lines are
 * at most 8 KiB; see common/log.c). */
#define CON_LINE_MAX 16384

enum con_level { CON_LVL_DEBUG, CON_LVL_INFO, CON_LVL_WARN, CON_LVL_ERROR, CON_LVL_level_max };

enum con_kind {
    CON_EV_OTHER,       /* any event without a dedicated view */
    CON_EV_TXN,         /* "txn": one answered request */
    CON_EV_TXN_REFUSED, /* "txn_refused": refused before routing (rc, reason, field) */
    CON_EV_LINK_STATE,  /* "link_state": issuer link moved (issuer, from, to, reason) */
    CON_EV_kind_max
};

enum con_outcome {
    CON_OUT_NONE, /* field absent or unknown */
    CON_OUT_APPROVED,
    CON_OUT_DECLINED,
    CON_OUT_REJECTED,
    CON_OUT_TIMEOUT,
    CON_OUT_UNAVAILABLE,
    CON_OUT_ERROR,
    CON_OUT_outcome_max
};

/* One parsed log line. Every string is NUL-terminated, truncated to its
 * buffer, and holds printable ASCII only (other bytes become '?'), so a
 * hostile log line can never drive the terminal. No pointer into the input is
 * kept. An absent field is an empty string (numbers: has_* false). */
struct con_event {
    int64_t ts_us; /* microseconds since the epoch, UTC */
    char ts[32];   /* as logged */
    enum con_level level;
    enum con_kind kind;
    char prog[24];
    char event[48];
    /* txn (and the shared ones: rc, reason, issuer) */
    char listener[24], acquirer[16], terminal[16], mti[8], proc[8];
    char amount[16], currency[8], pan[24], stan[8], rrn[16];
    char issuer[24], rc[4], auth_code[8];
    enum con_outcome outcome;
    bool stand_in; /* "stand_in": true — switchd decided in the issuer's place (STIP) */
    bool has_lat;
    uint64_t lat_us, lat_mac_us, lat_pin_us, lat_issuer_us, lat_journal_us, lat_write_ahead_us;
    /* link_state / txn_refused */
    char from[16], to[16], reason[64];
    /* Every field not named above, as "key=value key=value" (for display). */
    char extra[512];
};

/* Parses one line (without its '\n'; a trailing '\r' is tolerated) into ev.
 * Accepts only a flat JSON object with a string "ts" (RFC 3339 UTC, as
 * common/log.c writes it) and a string "event". Returns 0, or -1 with a short
 * reason in err (never echoing the line: it could hold anything). */
__attribute__((warn_unused_result)) int
con_parse_line(const char *line, size_t len, struct con_event *ev, char *err, size_t errcap);

/* Parses a UTC time: "2026-11-26T15:44:41.956772Z" (fraction optional, 1-9
 * digits; 'Z' optional; ' ' accepted for 'T'), "2026-11-26T15:44" or
 * "2026-11-26". Returns 0 and the epoch microseconds, or -1. */
__attribute__((warn_unused_result)) int con_parse_time(const char *s, int64_t *us);

/* ---------------------------------------------------------------- lines */

#define CON_HEAD_KEEP 48 /* bytes of the last complete line remembered */

/* Splits a byte stream into lines in a fixed buffer (no allocation). */
struct con_lines {
    char buf[CON_LINE_MAX + 1];
    size_t len;
    bool overflow; /* inside a line already reported as too long */
    int64_t start; /* file offset of the line being collected */
    /* The first bytes of the last complete line and its offset: a follower
     * checks they are still there to notice a truncated-and-refilled file. */
    char head[CON_HEAD_KEEP];
    size_t head_len;
    int64_t head_off;
};

/* Called per line (without its '\n'), with the line's file offset. err is
 * NULL for a complete line, else why the line is bad ("line too long": then
 * len counts only the bytes seen so far and the rest is skipped). */
typedef void (*con_line_fn)(void *arg, const char *line, size_t len, int64_t off, const char *err);

void con_lines_reset(struct con_lines *l);
/* Feeds n bytes that sit at file offset off; fn runs for each line they end. */
void con_lines_feed(struct con_lines *l, const char *p, size_t n, int64_t off, con_line_fn fn,
                    void *arg);
/* The input ended inside a line: fn gets it with err = why. */
void con_lines_finish(struct con_lines *l, const char *why, con_line_fn fn, void *arg);

/* ---------------------------------------------------------------- tables */

/* Meaning of a DE 39 response code ("?" if unknown). */
const char *con_rc_text(const char *rc);
/* Transaction type from the processing code's first two digits ("?" if
 * unknown, "-" if empty). */
const char *con_proc_type(const char *proc);
/* Alphabetic code and minor-unit exponent of an ISO 4217 numeric currency (common/currency.h).
 * Unknown currencies: the numeric code itself and 2 decimals. */
const char *con_currency_alpha(const char *numeric, int *exponent);
/* "1234.50 MAD" from a minor-units digit string and a numeric currency.
 * Empty amount: "-". Writes at most cap bytes; returns out. */
char *con_format_amount(const char *amount, const char *currency, char *out, size_t cap);
/* "850us", "4.1ms", "12ms", "1.20s". Returns out. */
char *con_format_latency(uint64_t us, char *out, size_t cap);
/* Parses "250" (ms), "250ms", "900us", "1.5s". Returns 0 or -1. */
__attribute__((warn_unused_result)) int con_parse_latency(const char *s, uint64_t *us);
/* True for the requests an approval rate is about: 0100/0200 and repeats. */
bool con_mti_is_request(const char *mti);

/* ---------------------------------------------------------------- filters */

/* A line is shown when it passes every filter that is set; a filter on a
 * field the event does not carry rejects it (--issuer thus keeps the txn and
 * link_state lines of one issuer). Empty strings / 0 mean unset. */
struct con_filter {
    char rc[4], terminal[16], issuer[24], mti[8], pan_last4[8];
    uint64_t min_lat_us;
    int64_t since_us;
    bool txn_only; /* hide everything but txn and txn_refused */
};

bool con_filter_match(const struct con_filter *f, const struct con_event *ev);

/* ---------------------------------------------------------------- rolling */

#define CON_ROLL_SECONDS 10

struct con_roll_slot {
    int64_t sec; /* epoch second this slot holds, or INT64_MIN */
    uint64_t txn, requests, approved, errors;
    struct at_hist lat; /* lat_us of every txn */
};

/* The last CON_ROLL_SECONDS seconds by wall-clock second of the event's
 * timestamp, one slot per second (a ring: adding to a second reuses the slot
 * of ten seconds ago). Fixed size (~650 KB): allocate it once. */
struct con_roll {
    struct con_roll_slot slot[CON_ROLL_SECONDS];
    struct at_hist scratch; /* merged window, rebuilt by con_roll_snapshot */
};

struct con_roll_snap {
    double tps;           /* txn lines per second over the window */
    double approval_pct;  /* approved requests / requests, -1 when none */
    uint64_t txn, errors; /* in the window */
    uint64_t p50_us, p99_us;
};

void con_roll_init(struct con_roll *r);
/* Counts one event: a txn, or a warn/error line (but link_state) as an
 * error; con_roll_add_error counts a malformed line. An event older than what
 * its slot already holds (ten seconds before a newer one) is dropped. */
void con_roll_add(struct con_roll *r, const struct con_event *ev);
void con_roll_add_error(struct con_roll *r, int64_t ts_us);
/* Statistics over (now - 10 s, now]. */
void con_roll_snapshot(struct con_roll *r, int64_t now_us, struct con_roll_snap *out);

/* Issuer link states as last seen (bounded: CON_MAX_ISSUERS issuers). */
#define CON_MAX_ISSUERS 32
struct con_links {
    size_t n;
    struct {
        char issuer[24], state[16];
    } l[CON_MAX_ISSUERS];
};
void con_links_update(struct con_links *k, const struct con_event *ev);

/* What the console takes from switchd's /metrics (Prometheus text). */
struct con_metrics {
    struct con_links links; /* atlas_issuer_link_up{issuer,state} */
    int db_up;              /* atlas_journal_database_up, -1 if absent */
    int backpressure;       /* atlas_backpressure, -1 if absent */
};

/* Parses a /metrics body (len bytes, need not be NUL-terminated). Unknown
 * lines are ignored; a malformed sample of a known metric is skipped.
 * Returns 0, or -1 when no atlas_ metric at all was found (not a switch). */
__attribute__((warn_unused_result)) int con_metrics_parse(const char *body, size_t len,
                                                          struct con_metrics *m);

/* The status line: "12.3 tps | appr 97.5% | p50 4.1ms p99 12ms | err 0 |
 * WALLET1:up". m (may be NULL) adds "DB DOWN" / "BACKPRESSURE" when the
 * switch reports them. Never longer than width-1 columns (width >= 20;
 * issuers that do not fit are counted as "+N"). Returns out. */
char *con_status_line(const struct con_roll_snap *s, const struct con_links *k,
                      const struct con_metrics *m, unsigned width, char *out, size_t cap);

/* One aligned display line for ev (no colour, no newline). Returns out. */
char *con_format_event(const struct con_event *ev, char *out, size_t cap);

/* ---------------------------------------------------------------- summary */

struct con_summary; /* opaque, bounded (terminals and issuers capped) */

struct con_summary *con_summary_new(void);
void con_summary_free(struct con_summary *s);
void con_summary_add(struct con_summary *s, const struct con_event *ev);
void con_summary_add_malformed(struct con_summary *s);
/* Writes the report. */
void con_summary_print(const struct con_summary *s, FILE *out);

#endif
