/* The lines the load harness's record writer (load_record_format) must write, one case per
 * kind of request outcome: test_load checks each as text, test_reconcile reads each back with
 * atlas-reconcile's parser (rec_parse_line). One table, so both check the same cases. */
#ifndef ATLAS_TEST_RECORD_CASES_H
#define ATLAS_TEST_RECORD_CASES_H

#include <stdbool.h>
#include <string.h>

#include "load.h"

/* The request every case starts from: a purchase of 25.00 MAD on TERM0001, unanswered. */
static inline struct load_record record_base(void)
{
    struct load_record r;
    memset(&r, 0, sizeof r);
    strcpy(r.terminal, "TERM0001");
    strcpy(r.stan, "000123");
    strcpy(r.de7, "1206011530");
    strcpy(r.mti, "0200");
    strcpy(r.proc, "000000");
    r.has_amount = true;
    r.amount = 2500;
    strcpy(r.currency, "504");
    strcpy(r.pan, "4890010000000012");
    return r;
}

static inline void record_answered(struct load_record *r)
{
    r->answered = true;
    strcpy(r->rc, "00");
    strcpy(r->auth, "123456");
}

/* Answered without DE 38, and a DE 39 that is not two alphanumerics (written as '?'). */
static inline void record_answered_odd(struct load_record *r)
{
    r->answered = true;
    strcpy(r->rc, "9 ");
}

/* Unanswered, reversed, the reversal answered on its third try. */
static inline void record_reversed(struct load_record *r)
{
    r->rev = true;
    strcpy(r->rev_stan, "000125");
    strcpy(r->rev_de7, "1206011545");
    r->rev_tries = 3;
    r->rev_answered = true;
    strcpy(r->rev_rc, "00");
}

/* Abandoned before its reversal ever left. */
static inline void record_abandoned_unsent(struct load_record *r)
{
    r->rev = true;
}

/* Its reversal sent, never answered: abandoned at the deadline. */
static inline void record_abandoned_sent(struct load_record *r)
{
    r->rev = true;
    strcpy(r->rev_stan, "000126");
    strcpy(r->rev_de7, "1206011546");
    r->rev_tries = 41;
}

/* A load-mix reversal answered on a repeat. */
static inline void record_mix_reversal(struct load_record *r)
{
    strcpy(r->mti, "0401");
    r->amount = 7;
    r->has_orig = true;
    strcpy(r->orig_mti, "0200");
    strcpy(r->orig_stan, "000100");
    strcpy(r->orig_de7, "1206011501");
    r->answered = true;
    strcpy(r->rc, "12");
}

/* A balance inquiry without an answer (no DE 4), with a 19-digit PAN. */
static inline void record_balance(struct load_record *r)
{
    strcpy(r->mti, "0100");
    strcpy(r->proc, "300000");
    r->has_amount = false;
    strcpy(r->pan, "4890020000000000029");
}

#define RECORD_HEAD "req terminal=TERM0001 stan=000123 de7=1206011530 "

static const struct record_case {
    void (*make)(struct load_record *r); /* applied to record_base() */
    const char *line;                    /* as written */
    bool lossy;                          /* a value written as '?' does not read back the same */
} record_cases[] = {
    { record_answered,
      RECORD_HEAD "mti=0200 proc=000000 amount=2500 currency=504 pan=489001******0012 "
                  "answered=yes rc=00 auth=123456 rev=no\n",
      false },
    { record_answered_odd,
      RECORD_HEAD "mti=0200 proc=000000 amount=2500 currency=504 pan=489001******0012 "
                  "answered=yes rc=9? auth=- rev=no\n",
      true },
    { record_reversed,
      RECORD_HEAD "mti=0200 proc=000000 amount=2500 currency=504 pan=489001******0012 "
                  "answered=no rev=yes rev_stan=000125 rev_de7=1206011545 rev_tries=3 rev_rc=00\n",
      false },
    { record_abandoned_unsent,
      RECORD_HEAD "mti=0200 proc=000000 amount=2500 currency=504 pan=489001******0012 "
                  "answered=no rev=yes rev_stan=- rev_de7=- rev_tries=0 rev_rc=none\n",
      false },
    { record_abandoned_sent,
      RECORD_HEAD "mti=0200 proc=000000 amount=2500 currency=504 pan=489001******0012 "
                  "answered=no rev=yes rev_stan=000126 rev_de7=1206011546 rev_tries=41 "
                  "rev_rc=none\n",
      false },
    { record_mix_reversal,
      RECORD_HEAD
      "mti=0401 proc=000000 amount=7 currency=504 pan=489001******0012 "
      "orig_mti=0200 orig_stan=000100 orig_de7=1206011501 answered=yes rc=12 auth=- rev=no\n",
      false },
    { record_balance,
      RECORD_HEAD "mti=0100 proc=300000 amount=- currency=504 pan=489002*********0029 "
                  "answered=no rev=no\n",
      false },
};

#undef RECORD_HEAD

#endif
