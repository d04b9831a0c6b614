/* Recent requests, by their identity (acquirer, terminal DE 41, STAN DE 11,
 * transmission time DE 7): the switch's memory of what it has seen, used for
 * duplicate detection (94), repeats, and finding the original of a reversal.
 * A cache: bounded in count and in age, the oldest entry forgotten first;
 * PostgreSQL holds the truth (switch.inflight's insert is the durable
 * duplicate check). The table knows since when it holds every identity it
 * was given (its horizon), which is what lets the switch vouch for a request
 * while the database is away. */
#ifndef ATLAS_SW_RECENT_H
#define ATLAS_SW_RECENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sw_req_id {
    char acquirer[12]; /* NUL-padded */
    char terminal[8];  /* DE 41, exactly 8 */
    char stan[6];      /* DE 11 */
    char tx_time[10];  /* DE 7, MMDDhhmmss */
    char mclass;       /* MTI class digit: '1' auth, '2' financial, '4' reversal */
};

/* What a reversal needs to know of its original. Fixed size, no pointers. */
struct sw_recent_txn {
    struct sw_req_id id;
    uint64_t expires_at_ms;
    char issuer_id[33];      /* by name: a reload renumbers the reference data */
    char mti[4];             /* original request MTI */
    char proc_code[6];       /* DE 3 */
    char rc[2];              /* DE 39 answered, "  " while in flight */
    char auth_code[6];       /* DE 38 */
    char rrn[12];            /* DE 37 */
    char issuer_stan[6];     /* STAN the switch used towards the issuer */
    char issuer_tx_time[10]; /* DE 7 the switch sent to the issuer */
    int64_t amount_minor;    /* DE 4 */
    int64_t received_us;     /* its receipt time, the journal's created_at (a repeat's DE 15) */
    uint16_t currency;       /* DE 49 numeric */
    int64_t billing_minor;   /* DE 6 forwarded; -1 = not converted */
    char billing_rate[8];    /* DE 10 */
    uint16_t billing_ccy;    /* DE 51 numeric */
    uint8_t pan_tag[8];      /* first bytes of the PAN's keyed hash: a reversal names this card */
    uint8_t state;           /* enum sw_recent_state */
    bool approved;           /* answered 00 */
    bool forwarded;          /* it reached an issuer (money may have moved) */
};

enum sw_recent_state {
    SW_RECENT_IN_FLIGHT, /* being handled, no answer yet */
    SW_RECENT_ANSWERED,  /* answered to the terminal */
    SW_RECENT_REVERSED,  /* a reversal of it is queued (by the switch or the terminal) */
    SW_RECENT_state_max
};

struct sw_recent;

/* A store of at most capacity entries, each kept window_ms. hash_key seeds
 * the keyed hash (random per process); now_ms starts the horizon. NULL on
 * allocation failure. */
struct sw_recent *sw_recent_new(size_t capacity, uint64_t window_ms, const uint8_t hash_key[16],
                                uint64_t now_ms);
void sw_recent_free(struct sw_recent *r);

/* Inserts txn (its id is the key) unless that id is already present.
 * Returns the stored entry, or NULL with *dup set to the existing entry when
 * it is a duplicate. Entries past their age are forgotten first; when the
 * store is full the oldest entry is dropped. The returned pointer is valid
 * until the next insert. */
struct sw_recent_txn *sw_recent_insert(struct sw_recent *r, const struct sw_recent_txn *txn,
                                       uint64_t now_ms, struct sw_recent_txn **dup);

/* The entry with this id, or NULL. Valid until the next insert. */
struct sw_recent_txn *sw_recent_find(struct sw_recent *r, const struct sw_req_id *id,
                                     uint64_t now_ms);

size_t sw_recent_count(const struct sw_recent *r);

/* The monotonic time (ms) since which the table holds every identity
 * inserted: its creation, or the insertion of the newest entry it had to
 * forget (by count or age). An identity first seen after it would be found. */
uint64_t sw_recent_horizon_ms(const struct sw_recent *r);

#endif
