/* Request validation: which requests the switch accepts, and the mandatory
 * fields of each (docs/acquirer-interface.md). Pure: looks only at the unpacked message.
 * The answer is a response code to send (or "00" to go on) and a reason that
 * names the field, never its value. */
#ifndef ATLAS_SW_VALIDATE_H
#define ATLAS_SW_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iso8583.h"

enum sw_msg_kind {
    SW_KIND_UNSUPPORTED, /* answered 12 (or dropped when it is a response) */
    SW_KIND_AUTH,        /* 0100 authorization: places a hold */
    SW_KIND_FINANCIAL,   /* 0200 financial: moves money; 0220 a pre-auth completion */
    SW_KIND_REVERSAL,    /* 0400/0401/0420/0421 */
    SW_KIND_NETMGMT,     /* 0800: answered by the switch itself */
    SW_KIND_RESPONSE,    /* an xx10/xx30 from a terminal: protocol error */
    SW_KIND_max
};

/* Processing codes (DE 3, first two digits) the switch routes. */
enum sw_proc {
    SW_PROC_PURCHASE = 0, /* 00 */
    SW_PROC_CASH = 1,     /* 01 cash withdrawal / cash-out at an agent */
    SW_PROC_CASHBACK = 9, /* 09 purchase with cash-back */
    SW_PROC_AFT = 10,     /* 10 account funding (debits the sender) */
    SW_PROC_REFUND = 20,  /* 20 refund (credit) */
    SW_PROC_OCT = 26,     /* 26 original credit (credits the recipient) */
    SW_PROC_BALANCE = 30, /* 30 and 31 balance inquiry */
    SW_PROC_BALANCE2 = 31,
    SW_PROC_TRANSFER = 40, /* 40 transfer */
};

struct sw_validation {
    enum sw_msg_kind kind;
    int proc;           /* first two digits of DE 3, -1 when absent */
    char rc[3];         /* "00" = valid, else the response code to answer */
    int field;          /* the culprit field, 0 if none */
    const char *reason; /* static text naming the problem */
    const uint8_t *pan; /* PAN digits (from DE 2, or DE 35 before the separator) */
    size_t pan_len;
    bool has_pin; /* DE 52 present */
    /* Pre-authorization (docs/acquirer-interface.md): an 0220/0221 completion (kind FINANCIAL)
     * or an incremental 0100/0101 (kind AUTH); both name the pre-auth (an 0100) in DE 90. */
    bool completion;
    bool names_original;
    /* A transfer (0200, processing code 40): its recipient from DE 103, a PAN (digits, Luhn)
     * or a mobile number ('+' and 8..15 digits, recipient_msisdn). */
    const uint8_t *recipient;
    size_t recipient_len;
    bool recipient_msisdn;
};

/* Classifies m and checks its mandatory fields and values. Returns 0 when
 * the request may proceed (v->rc = "00"), -1 otherwise with v->rc, v->field
 * and v->reason set. v->kind is always set. */
int sw_validate(const struct iso_msg *m, struct sw_validation *v);

/* DE 7 (MMDDhhmmss) names a real month, day and time of day. */
bool sw_de7_valid(const uint8_t *p, size_t len);

/* DE 7 as wall-clock milliseconds, the year being the one (last, this or next)
 * that puts it nearest to now_ms. false when DE 7 is not valid. */
bool sw_de7_wall_ms(const uint8_t *p, size_t len, uint64_t now_ms, uint64_t *out);

#endif
