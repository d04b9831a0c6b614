/* db's stand-in queries (db/migrations/0013_stand_in.sql; docs/switchd.md "Stand-in"): the rules
 * of one issuer with what the negative file and the published PVVs say of one card, read per
 * decision; and the reservation of a stand-in approval against the card's day total. Typed
 * results; the SQL lives in db/stip.c. */
#ifndef ATLAS_DB_STIP_H
#define ATLAS_DB_STIP_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"

#define DB_STIP_MAX_PCODES 16

/* One issuer's stand-in rules and one card's entries. */
struct db_stip_rules {
    bool found;                         /* the issuer has a stand_in_rules row */
    char pcodes[DB_STIP_MAX_PCODES][3]; /* processing codes allowed (DE 3's first two digits) */
    unsigned n_pcodes;
    int64_t max_amount_minor; /* per transaction, billing currency */
    int64_t max_daily_minor;  /* per card per business day */
    bool verify_pin;          /* verify the PIN (requires pvk) */
    char pvk[50];             /* the issuer's PVK under the LMK ("" = not held) */
    char negative[12];        /* the card's negative-file status, "" = none */
    bool taken;   /* the identity reached an issuer already (a journal row with an issuer STAN, or
                   * in flight): a repeat or a duplicate, never decided again */
    bool has_pvv; /* the card's PVV is published */
    unsigned pvki;
    char pvv[5];
    bool has_offset;     /* or its IBM 3624 offset (with the rules' decimalization table) */
    char pin_offset[13]; /* 4..12 digits: its length is the PIN check length */
    char dectab[17];     /* the issuer's decimalization table, "" = none */
};

/* err->code 0 and r (valid during the call), or an error and r NULL. */
typedef void (*db_stip_rules_cb)(void *arg, const struct db_error *err,
                                 const struct db_stip_rules *r);

/* Reads issuer's rules, the card (pan_hmac, 32 bytes) and whether the request id is taken, in
 * one query. 0 or DB_E_*; cb is not called on an error return. */
__attribute__((warn_unused_result)) int db_stip_rules(struct db_client *c, const char *issuer,
                                                      const uint8_t pan_hmac[32],
                                                      const struct db_request_id *id,
                                                      db_stip_rules_cb cb, void *arg);

/* What a reservation is for. */
struct db_stip_reservation {
    struct db_request_id id; /* the request (its MTI gives the class) */
    char issuer_id[33];
    uint8_t pan_hmac[32];
    char business_day[11]; /* YYYY-MM-DD */
    int64_t amount_minor;  /* billing currency */
    int32_t currency;
    int64_t max_daily_minor;
};

/* ok: reserved (committed); duplicate: the identity holds a reservation already; else the day
 * total before it (day_total) plus amount would pass the maximum. */
typedef void (*db_stip_reserve_cb)(void *arg, const struct db_error *err, bool ok, bool duplicate,
                                   int64_t day_total);

/* switch.stand_in_reserve(): one transaction, under a per-card lock. 0 or DB_E_*. */
__attribute__((warn_unused_result)) int db_stip_reserve(struct db_client *c,
                                                        const struct db_stip_reservation *r,
                                                        db_stip_reserve_cb cb, void *arg);

/* Marks the reservation of id void (its advice could not be stored: nothing was approved).
 * Fire and forget: if it does not commit, the day total counts it (the safe side). */
void db_stip_void(struct db_client *c, const struct db_request_id *id);

#endif
