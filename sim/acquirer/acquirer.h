/* libatlas_acquirer: the terminal side of Atlas. Terminal profiles with their
 * clear lab keys (TPK, DUKPT-TDES, DUKPT-AES) and persistent STAN/KSN counters,
 * request building (PIN block + MAC exactly as docs/acquirer-sim.md and the
 * acquirer interface state), response checking (MAC, DE 39/38/54), amounts and
 * currencies, the scenario-file parser, and the sending core (one libevent
 * loop, many connections, pipelined requests matched on DE 11 + DE 41 + MTI
 * class, no allocation per message). Used by acquirer-sim and by other
 * modules' integration tests to build valid terminal requests. */
#ifndef ATLAS_ACQUIRER_H
#define ATLAS_ACQUIRER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "currency.h"
#include "iso8583.h"

#define SIM_MUST_CHECK __attribute__((warn_unused_result))

/* Largest request or response message (without framing) the simulator handles. */
#define SIM_MSG_MAX 2048

/* Where terminals' STAN/KSN state files are: $SIM_STATE_DIR_ENV when set, else this. */
#define SIM_STATE_DIR_DEFAULT "var/acquirer-sim"
#define SIM_STATE_DIR_ENV     "ATLAS_ACQ_STATE_DIR"

/* Acquirer id used in DE 90 of reversals (README, "The demo world": 100001). */
#define SIM_ACQUIRER_ID "100001"

/* ---------------------------------------------------------------- currencies and amounts */

/* Currencies are common/currency.h's table (at_currency_find). */

/* Parses a major-unit amount ("12.50", "1000", "0.5") for currency c into minor units.
 * More decimals than the currency has, signs, empty input, garbage or a value above
 * 12 digits of minor units are errors (-1, with a sentence in err). */
SIM_MUST_CHECK int sim_amount_parse(const char *text, const struct at_currency *c, uint64_t *minor,
                                    char *err, size_t errcap);

/* "12.50 MAD" / "1000 XOF" into out. Returns out. */
char *sim_amount_format(uint64_t minor, const struct at_currency *c, char *out, size_t cap);

/* English meaning of a response code ("51" -> "insufficient funds"); "unknown code" else. */
const char *sim_rc_text(const char rc[2]);

/* ---------------------------------------------------------------- transaction types */

enum sim_type {
    SIM_T_PURCHASE, /* 0200 proc 00 */
    SIM_T_CASH,     /* 0200 proc 01: cash-out / withdrawal */
    SIM_T_CASHBACK, /* 0200 proc 09: purchase with cash-back */
    SIM_T_REFUND,   /* 0200 proc 20 */
    SIM_T_BALANCE,  /* 0100 proc 30 */
    SIM_T_AFT,      /* 0200 proc 10: account funding (debits the sender) */
    SIM_T_OCT,      /* 0200 proc 26: original credit (credits the recipient) */
    SIM_T_TRANSFER, /* 0200 proc 40: transfer, recipient in DE 103 */
    SIM_T_AUTH,     /* 0100 proc 00: authorization (hold) */
    SIM_T_REVERSAL, /* 0400 (or --mti 0420/0401/0421) with DE 90 */
    SIM_T_ECHO,     /* 0800 DE 70 = 301 */
    /* Pre-authorization (docs/acquirer-interface.md): a hold, its completion and an increment,
     * the last two naming the pre-auth in DE 90 (original-stan/original-time, or original=). */
    SIM_T_PREAUTH,     /* 0100 proc 00: a pre-authorization (a hold) */
    SIM_T_COMPLETION,  /* 0220 proc 00 with DE 90: captures the pre-auth for DE 4 */
    SIM_T_INCREMENTAL, /* 0100 proc 00 with DE 90: adds DE 4 to the pre-auth's hold */
    SIM_T_KEYS,        /* 0800 DE 70 = 162: terminal key download (docs/keys.md) */
    SIM_T_max
};

const char *sim_type_name(enum sim_type t);
/* "purchase" -> SIM_T_PURCHASE. -1 if unknown. */
SIM_MUST_CHECK int sim_type_parse(const char *name, enum sim_type *out);
/* Default MTI and processing code of a type ("0200", "000000"). */
const char *sim_type_mti(enum sim_type t);
const char *sim_type_proc(enum sim_type t);
/* Whether a PIN is entered by default for the type (debits yes, credits no). */
bool sim_type_wants_pin(enum sim_type t);

/* A transfer's recipient as DE 103 carries it (docs/acquirer-interface.md, "Wallet-to-wallet
 * transfer"): a PAN of 12..19 digits passing the Luhn check, or a mobile number in E.164 as
 * typed, '+' and 8..15 digits. */
bool sim_recipient_pan_ok(const char *s);
bool sim_recipient_msisdn_ok(const char *s);

/* The demo cards of the README's demo world (PAN, PIN, expiry, currency), for option defaults. */
struct sim_demo_card {
    const char *pan, *pin, *expiry, *currency;
};
const struct sim_demo_card *sim_demo_card_find(const char *pan);

/* ---------------------------------------------------------------- terminals */

enum sim_key_scheme {
    SIM_KS_TPK,        /* PIN under a static TPK, ISO 0 block in DE 52 */
    SIM_KS_DUKPT_TDES, /* ISO 0 under the X9.24-1 PIN variant key, DE 52 + KSN (20 hex) in DE 62 */
    SIM_KS_DUKPT_AES,  /* ISO 4 under the X9.24-3 PIN key, DE 110 (32 hex) + KSN (24 hex) DE 62 */
};

struct hsm_key;

/* A terminal: identity, wire profile, clear lab keys and counters. Keys live in
 * libhsm key objects (wiped on sim_term_free); the clear BDK of a DUKPT terminal
 * is kept in this struct (wiped too) because the device-side derivation needs it. */
struct sim_term {
    char id[9];        /* DE 41, 8 characters */
    char merchant[16]; /* DE 42, 15 characters (space padded when shorter) */
    char acquirer_id[12];
    char address[64]; /* "127.0.0.1:8583" */
    char currency[4]; /* default DE 49 (numeric) */
    const struct iso_dialect *dialect;
    enum iso_frame_kind framing;
    uint8_t tpdu[ISO_TPDU_LEN];
    enum sim_key_scheme scheme;
    struct hsm_key *tak; /* MAC key (all schemes) */
    struct hsm_key *tpk; /* SIM_KS_TPK */
    struct hsm_key *tmk; /* terminal master key: unwraps downloaded keys (NULL: none) */
    uint8_t bdk[16];     /* DUKPT */
    uint8_t ksn0[12];    /* initial KSN (counter bits zero): 10 bytes TDES, 12 AES */
    /* Counters: next value to use and how many are left in the block reserved in the
     * state file (KSN: raw counter values up to ksn_end, invalid ones skipped). */
    uint32_t stan_next, stan_left;
    uint32_t ksn_next, ksn_end;
    bool reserved;
    char state_dir[256];
};

/* A set of terminal profiles: the built-in demo ones plus any loaded from files. */
#define SIM_TERMS_MAX 64
struct sim_terms {
    struct sim_term *t[SIM_TERMS_MAX];
    size_t n;
};

/* Fills set with the four demo terminals of the README's demo world (TERM0001..TERM0004). Returns 0
 * or -1 (allocation / key setup failure, in err). Free with sim_terms_free. */
SIM_MUST_CHECK int sim_terms_builtin(struct sim_terms *set, char *err, size_t errcap);

/* Loads terminal profiles from the file at path (format: docs/acquirer-sim.md,
 * "[terminal ID]" sections). A profile whose ID already exists replaces it. On error
 * returns -1 with "path:line: reason" in err (never key material). */
SIM_MUST_CHECK int sim_terms_load(struct sim_terms *set, const char *path, char *err,
                                  size_t errcap);

/* A standalone terminal from key/value pairs (the keys of a terminal file:
 * kv = { "key_scheme", "tpk", "tpk", "<32 hex>", "tak", "<32 hex>", NULL }), for
 * programs that make many terminals (the load harness's LOAD0001...). NULL with err on
 * a bad key or value (never echoing key material). Free with sim_term_free. */
struct sim_term *sim_term_create(const char *id, const char *const kv[], char *err, size_t errcap);
/* Wipes the terminal's keys and frees it. NULL is fine. */
void sim_term_free(struct sim_term *t);

/* The terminal with this ID, or NULL. */
struct sim_term *sim_terms_find(const struct sim_terms *set, const char *id);

/* Wipes every key and frees every profile. */
void sim_terms_free(struct sim_terms *set);

/* Makes a terminal's counters come from the state file <dir>/<ID>.state and reserves
 * the next n STANs and n KSN counters there (locked, fsync'd), so that no STAN or KSN
 * is reused across runs or by concurrent processes. Values reserved but unused are
 * skipped, never handed out again. dir is created if missing. Without this call the
 * counters start at 1 and live in memory only (tests). Returns 0 or -1 with err. */
SIM_MUST_CHECK int sim_term_reserve(struct sim_term *t, const char *dir, uint32_t n, char *err,
                                    size_t errcap);

/* A key download's answer (docs/keys.md): de48 is the 0810's DE 48 (tag 2N ‖ length 2N ‖ value:
 * 01 TPK under the TMK, 02 its KCV, 03 TAK, 04 its KCV; a DUKPT terminal gets 03/04 only). The
 * keys are unwrapped with t's TMK and their KCVs checked before anything changes; then they are
 * t's keys for its next requests, and, when t has a state directory, written to <dir>/<ID>.keys
 * (as received: under the TMK) so that the next process takes them (sim_term_reserve). 0, or -1
 * with err (never key material) and t unchanged. */
SIM_MUST_CHECK int sim_term_apply_keys(struct sim_term *t, const char *de48, char *err,
                                       size_t errcap);

/* The keys a previous process downloaded for t (<dir>/<ID>.keys, sim_term_apply_keys), if any,
 * into t; sim_term_reserve calls it. 0 (none, or taken), or -1 with err. */
SIM_MUST_CHECK int sim_term_load_keys(struct sim_term *t, const char *dir, char *err,
                                      size_t errcap);

/* Sets the in-memory counters (tests, load harness with its own bookkeeping). */
void sim_term_set_counters(struct sim_term *t, uint32_t stan_next, uint32_t ksn_next);

/* ---------------------------------------------------------------- building requests */

/* One transaction to send: the options of `acquirer-sim send` / a scenario line,
 * resolved (terminal chosen, amount in minor units, currency numeric). */
struct sim_txn {
    enum sim_type type;
    char mti[5];        /* "" = the type's default */
    char proc[7];       /* "" = the type's default processing code */
    char pan[20];       /* DE 2 */
    char pin[13];       /* "" = no PIN */
    uint64_t amount;    /* minor units (DE 4); ignored for balance and echo */
    uint64_t cashback;  /* cash-back part (DE 54 amount type 40), 0 = none */
    char currency[4];   /* numeric DE 49; "" = the terminal's */
    char expiry[5];     /* DE 14 YYMM, "" = absent */
    uint32_t stan;      /* DE 11; 0 = the terminal's next */
    char rrn[13];       /* DE 37; "" = generated from the date and the STAN */
    char recipient[29]; /* DE 103 for transfers: a PAN, or '+' and a mobile number */
    char entry_mode[4]; /* DE 22; "" = 011 with PIN, 012 without */
    char orig_mti[5];   /* DE 90: original MTI ("" = 0200 for a reversal, else 0100) */
    uint32_t orig_stan; /* reversal, completion, increment: original DE 11 (0 = no DE 90) */
    char orig_time[11]; /* reversal, completion, increment: original DE 7 */
    bool bad_mac;       /* send a wrong MAC (tests the switch's 63) */
    unsigned chip_cvn;  /* a chip read (DE 22 051, DE 55 with an ARQC): CVN 10 or 18; 0 = no */
    bool bad_arqc;      /* spoil the ARQC (tests the switch's 82) */
    char cvv2[4];       /* card not present: the CVV2 in DE 126 (tag C2), DE 22 812; "" = none */
    uint64_t now_us;    /* wall clock for DE 7/12/13/37 (0 = now) */
    const uint8_t *iso4_fill; /* tests only: fixed 8-byte ISO 4 fill (NULL = random) */
    const uint8_t *de55_raw;  /* tests only: DE 55 sent as is (NULL = none, or chip_cvn's) */
    size_t de55_raw_len;
};

/* What was sent: the values needed to match the response and to reverse later. */
struct sim_sent {
    char mti[5];
    char proc[7];
    char stan[7];
    char de7[11];
    char tid[9];
    char ksn[25]; /* hex, "" when no DUKPT PIN block */
    bool pin;
    bool mac_128; /* MAC in DE 128 (secondary bitmap) rather than DE 64 */
    /* a chip request: what checking the answer's ARPC needs */
    unsigned chip_cvn; /* 0 = not a chip request */
    uint8_t arqc[8], atc[2];
    char pan[20];
};

/* Builds the complete request for x on terminal t into out[0..cap) (the message, no
 * length header or TPDU: see sim_frame_header), with its PIN block (DE 52 / DE 110 +
 * KSN in DE 62) and its MAC (ISO 9797-1 alg 3, pad 1, over the packed bytes from the
 * MTI to just before the MAC field's data). Consumes a STAN (unless x->stan) and, for
 * a DUKPT PIN block, a KSN counter from t. *outlen gets the length; sent (may be NULL)
 * what was used. Returns 0 or -1 with a sentence in err (never a PAN, PIN or key). */
SIM_MUST_CHECK int sim_term_build_request(struct sim_term *t, const struct sim_txn *x, uint8_t *out,
                                          size_t cap, size_t *outlen, struct sim_sent *sent,
                                          char *err, size_t errcap);

/* As sim_term_build_request, but writes the whole frame (t's length header, TPDU for
 * tpdu framing, then the message) into out: ready for write(2) on a socket. *outlen is
 * the frame length. The convenience for other modules' integration tests. */
SIM_MUST_CHECK int sim_term_build_frame(struct sim_term *t, const struct sim_txn *x, uint8_t *out,
                                        size_t cap, size_t *outlen, struct sim_sent *sent,
                                        char *err, size_t errcap);

/* Writes the frame header for a message of msg_len bytes on t's framing (length, plus
 * t's TPDU for tpdu framing) into hdr (>= ISO_FRAME_MAX_HEADER bytes). Returns its
 * length (0..7) or -1. */
int sim_frame_header(const struct sim_term *t, size_t msg_len, uint8_t *hdr);

/* ISO 9797-1 alg 3 MAC of data under the terminal's TAK (8 bytes). 0 or -1. */
SIM_MUST_CHECK int sim_term_mac(struct sim_term *t, const uint8_t *data, size_t len,
                                uint8_t mac[8]);

/* ---------------------------------------------------------------- checking responses */

enum sim_mac_status {
    SIM_MAC_OK,     /* present, last field, verifies with the TAK */
    SIM_MAC_BAD,    /* present but wrong (or not the last field) */
    SIM_MAC_ABSENT, /* no DE 64 / DE 128 */
};
const char *sim_mac_status_name(enum sim_mac_status s); /* "ok", "BAD", "absent" */

struct sim_resp {
    char mti[5];
    char rc[3];   /* DE 39, "" if absent */
    char auth[7]; /* DE 38, "" if absent */
    char stan[7];
    char tid[9];
    bool has_balance; /* DE 54 carried an available (02) or ledger (01) amount */
    int64_t balance;  /* minor units, negative for a debit balance */
    char balance_ccy[4];
    bool has_billing;    /* DE 6: what the card was billed, or a transfer's recipient got */
    uint64_t billing;    /* DE 6, minor units of billing_ccy */
    char billing_ccy[4]; /* DE 51, "" if absent */
    char rate[9];        /* DE 10 as received (8 digits), "" if absent or malformed */
    bool has_fee;        /* DE 28: x+n 8, 'D' (charged) or 'C' then 8 digits */
    int64_t fee;         /* minor units of the request's currency, negative for a 'C' fee */
    char info[26];       /* DE 44 (a transfer's failed leg: "AFT51", "OCT57"), "" if absent */
    char keys[161];      /* DE 48 of a key download's 0810: new keys under the TMK, KCVs */
    char settle_date[5]; /* DE 15, MMDD, "" if absent */
    bool has_arpc;       /* DE 55 tag 91 */
    uint8_t arpc[10];    /* ARPC ‖ ARC */
    enum sim_mac_status mac;
};

/* The CVV2 of a card of the demo BINs (489001..489004) from its issuer's lab CVK (the README's
 * demo world), expiry YYMM, service code 000, into cvv2[4]. 0, or -1 for another BIN. */
SIM_MUST_CHECK int sim_demo_cvv2(const char *pan, const char *expiry, char cvv2[4]);

/* A chip request's ARPC check (docs/emv.md): "ok" (tag 91 verifies with the card's key and its
 * ARC is the answer's DE 39), "bad", "absent" (no tag 91); NULL when sent was not a chip
 * request. */
const char *sim_chip_arpc_status(const struct sim_sent *sent, const struct sim_resp *r);

/* Unpacks msg[0..len) (a response in t's dialect) into m (caller's message with an arena
 * of ISO_ARENA_FOR(len)), verifies its MAC with t's TAK over the exact bytes, and fills
 * r. Returns 0, or -1 when the message does not decode (reason in err). A bad MAC is
 * not an error here: it is reported in r->mac. */
SIM_MUST_CHECK int sim_term_check_response(struct sim_term *t, const uint8_t *msg, size_t len,
                                           struct iso_msg *m, struct sim_resp *r, char *err,
                                           size_t errcap);

/* Whether a response MAC status is acceptable for the response MTI: OK always; ABSENT
 * only for network management (08xx) answers. */
bool sim_mac_acceptable(const struct sim_resp *r);

/* ---------------------------------------------------------------- options and scenarios */

/* How many cards a scenario line's balances= may name (a transfer's two sides). */
#define SIM_BALANCES_MAX 2

/* Options of one transaction as typed (CLI flags or scenario key=value), before they
 * are resolved against a terminal. Each option is a row of opts.c's settings table (its text
 * field, length and digits, or its number and range); "" and 0 mean "not given". */
struct sim_opts {
    char type_name[16]; /* as typed; type and has_type are what it names */
    bool has_type;
    enum sim_type type;
    char terminal[9];
    char pan[20];
    char pin[13];
    bool no_pin, bad_mac, has_pin;
    bool chip, bad_arqc; /* a chip card (--chip, --cvn, --bad-arqc) */
    uint64_t cvn;
    char cvv2[4];    /* card not present (--cvv2) */
    char amount[21]; /* major units, as typed */
    bool has_amount_minor;
    uint64_t amount_minor;
    char cashback[21];
    char currency[4]; /* code as typed (alpha or numeric) */
    char expiry[5];
    uint64_t stan;
    char rrn[13];
    char to[20];        /* a transfer's recipient PAN (DE 103) */
    char to_msisdn[17]; /* or its mobile number, '+' and 8..15 digits (DE 103) */
    char entry_mode[4];
    char mti[5];
    char proc[7];
    char orig_mti[5];
    uint64_t orig_stan;
    char orig_time[11];
    char host[64];
    uint64_t timeout_ms;
    /* scenario-only */
    char id[32];       /* this line's name, for original= */
    char original[32]; /* the earlier line a reversal reverses */
    char expect[3];    /* expected DE 39 */
    char mac[4];       /* "ok" or "any", as typed; mac_any is what it says */
    bool mac_any;      /* do not require a valid response MAC */
    char balances[40]; /* PAN[,PAN] as typed: demo cards whose balances the line shows */
    char balance_pan[SIM_BALANCES_MAX][20]; /* what it names, n_balances of them */
    unsigned n_balances;
};

/* Sets one option: key is the long option name without dashes ("amount-minor"), value
 * its text (NULL for a bare flag). scenario = true allows the scenario-only keys.
 * Returns 0 or -1 with a sentence naming the key in err. */
SIM_MUST_CHECK int sim_opts_set(struct sim_opts *o, const char *key, const char *value,
                                bool scenario, char *err, size_t errcap);

/* Reads the option at argv[*i] (it starts with "--"; a flag takes no value) into o, like
 * sim_opts_set without the scenario-only keys. Returns 1 with *i at the last argument read; 0
 * when it is not a transaction option (nothing read); -1 with a sentence in err. */
SIM_MUST_CHECK int sim_opts_arg(struct sim_opts *o, int argc, char **argv, int *i, char *err,
                                size_t errcap);

/* Prints the transaction options (with dashes, as `send` takes them) and then the keys only
 * scenario lines have, from the table. */
void sim_opts_usage(FILE *f);

/* Resolves o against the terminal set into x and *term: terminal (o->terminal or
 * TERM0001), demo-card defaults (PIN, expiry, currency of a known demo PAN), amount in
 * the currency's minor units. Returns 0 or -1 with err. */
SIM_MUST_CHECK int sim_opts_resolve(const struct sim_opts *o, const struct sim_terms *set,
                                    struct sim_txn *x, struct sim_term **term, char *err,
                                    size_t errcap);

struct sim_scn_line {
    unsigned lineno;
    struct sim_opts o;
    int original_index; /* index of the referenced line, -1 */
};

struct sim_scn {
    struct sim_scn_line *lines; /* owned; free with sim_scn_free */
    size_t n, cap;
};

/* Parses a scenario (text of len bytes; name is used in messages) into out: one
 * transaction per line as key=value words (bare words are flags), '#' comments,
 * "defaults key=value ..." lines that apply to the lines after them, expect=RC
 * mandatory, original=ID referring to an earlier id=ID. On error returns -1 with
 * "name:line: reason" in err and out freed. */
SIM_MUST_CHECK int sim_scn_parse(const char *text, size_t len, const char *name,
                                 struct sim_scn *out, char *err, size_t errcap);
void sim_scn_free(struct sim_scn *s);

/* ---------------------------------------------------------------- the sending core */

struct event_base;
struct sim_engine;
struct sim_conn;
struct sim_req;

enum sim_status {
    SIM_ANSWERED = 0,   /* a matching response arrived (see sim_outcome.resp) */
    SIM_E_TIMEOUT = -1, /* no response within the request's timeout */
    SIM_E_CONN = -2,    /* connection failed or closed before the response */
    SIM_E_PROTO = -3,   /* bad framing or an undecodable response: connection closed */
};

struct sim_outcome {
    enum sim_status status;
    const char *reason;        /* for errors: why (static or connection reason) */
    uint64_t latency_ns;       /* from t0 (scheduled or send time) to the response */
    const struct iso_msg *msg; /* SIM_ANSWERED: the unpacked response (valid during the call) */
    const uint8_t *raw;        /* SIM_ANSWERED: the response message bytes */
    size_t raw_len;
    struct sim_resp resp; /* SIM_ANSWERED: parsed and MAC-checked */
};

/* Called once per request; the request's slot is recycled after it returns. The callback
 * may send new requests or close connections. */
typedef void (*sim_done_fn)(void *arg, struct sim_req *r, const struct sim_outcome *o);

/* Called when a connection comes up (up = true) or ends (up = false, reason set; it
 * points into the connection: copy it before calling sim_conn_free). */
typedef void (*sim_conn_fn)(void *arg, struct sim_conn *c, bool up, const char *reason);

/* Creates an engine on base with a pool of slots request slots (the in-flight maximum).
 * All memory is allocated here; sending and matching allocate nothing. The process
 * should ignore SIGPIPE (a peer closing while we write is then a connection error). */
SIM_MUST_CHECK int sim_engine_new(struct event_base *base, size_t slots, struct sim_engine **out);
/* Closes every connection (their pending requests fail with SIM_E_CONN) and frees. */
void sim_engine_free(struct sim_engine *e);
size_t sim_engine_inflight(const struct sim_engine *e);
/* TLS 1.2/1.3 on every connection the engine opens from now on (--tls): the switch's
 * certificate is verified with ca and must carry server_name, or (NULL or "") the IP address
 * connected to; cert and key (both or neither) are the terminal's client certificate. 0, or -1
 * with a sentence naming the file in err. */
SIM_MUST_CHECK int sim_engine_tls(struct sim_engine *e, const char *ca, const char *cert,
                                  const char *key, const char *server_name, char *err,
                                  size_t errcap);
/* Responses that matched nothing (late after a timeout, or unknown). */
uint64_t sim_engine_unmatched(const struct sim_engine *e);

/* Opens a connection to addr speaking t's dialect and framing (t's TPDU is sent on
 * every frame). cb is told when it is up or ends. NULL on allocation failure. The
 * connection is freed by sim_conn_free or sim_engine_free. */
struct sim_conn *sim_conn_open(struct sim_engine *e, const struct sockaddr *addr, socklen_t alen,
                               const struct sim_term *t, sim_conn_fn cb, void *arg);
bool sim_conn_up(const struct sim_conn *c);
bool sim_conn_closed(const struct sim_conn *c);
/* Bytes queued for sending but not yet written (backpressure for a load generator). */
size_t sim_conn_output_len(const struct sim_conn *c);
/* Requests sent on c and not yet completed. */
size_t sim_conn_inflight(const struct sim_conn *c);
/* Closes (pending requests fail with SIM_E_CONN) and frees c. */
void sim_conn_free(struct sim_conn *c);

/* A free request slot, or NULL when all are in flight. buf and cap get where to build the
 * message (SIM_MSG_MAX bytes). */
struct sim_req *sim_req_get(struct sim_engine *e, uint8_t **buf, size_t *cap);
/* Returns an unsent slot. */
void sim_req_put(struct sim_engine *e, struct sim_req *r);

/* Sends the len-byte message built in r's buffer on c, to be matched by sent's
 * STAN/TID/MTI class; t's TAK checks the response MAC. t0_ns (monotonic) is where
 * latency counts from (0 = now; an open-loop generator passes the scheduled time).
 * done runs exactly once. Returns 0, or -1 (c not usable; r is returned to the pool
 * and done is not called). */
SIM_MUST_CHECK int sim_req_send(struct sim_conn *c, struct sim_req *r, size_t len,
                                const struct sim_sent *sent, struct sim_term *t,
                                unsigned timeout_ms, uint64_t t0_ns, sim_done_fn done, void *arg);

#endif
