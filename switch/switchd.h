/* switchd's private types: the server, terminal sessions, issuer links,
 * transactions and the reference data, and the functions the modules of
 * switch/ call on each other. Nothing outside switch/ includes this. */
#ifndef ATLAS_SWITCHD_H
#define ATLAS_SWITCHD_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "addrcount.h"
#include "config.h"
#include "db.h"
#include "emv.h"
#include "iso8583.h"
#include "isonet.h"
#include "metrics.h"
#include "recent.h"
#include "router.h"
#include "stream.h"
#include "validate.h"

struct hsm_client;
struct db_client;
struct db_journal;
struct db_pan_hasher;
struct sw_server;
struct sw_txn;
struct stip_ctx;

#define SW_KEY_TEXT  50   /* key under LMK: scheme letter + up to 48 hex + NUL */
#define SW_TXN_FRAME 2048 /* request frames up to this size live inside the txn */

/* ---- reference data (switch schema), swapped whole on reload ---- */

enum sw_key_scheme { SW_TERM_TPK, SW_TERM_DUKPT_TDES, SW_TERM_DUKPT_AES };

struct sw_issuer {
    char id[33];
    int link; /* index into srv->links, -1 when no [issuer] link is configured */
    char zpk[SW_KEY_TEXT];
    char zak[SW_KEY_TEXT];
    bool enabled;
};

struct sw_terminal {
    char acquirer[12];
    char tid[9];
    enum sw_key_scheme scheme;
    char tpk[SW_KEY_TEXT]; /* TPK terminals */
    char tak[SW_KEY_TEXT]; /* every terminal MACs with its TAK */
    char bdk[SW_KEY_TEXT]; /* DUKPT terminals */
    bool enabled;
};

struct fx_set;

/* A BIN route's card authentication keys, under the LMK (docs/emv.md); "" = none. */
struct sw_card_keys {
    char imk_ac[SW_KEY_TEXT]; /* EMV IMK-AC (MK-AC): ARQC verification, ARPC */
    char cvk[SW_KEY_TEXT];    /* CVK pair: CVV2 */
};

struct sw_refdata {
    struct sw_card_keys *card_keys; /* a route's sw_route_match.card_keys - 1 */
    size_t n_card_keys;
    struct sw_issuer *issuers;
    size_t n_issuers;
    struct sw_terminal *terminals; /* sorted by (acquirer, tid) */
    size_t n_terminals;
    struct sw_router *router;
    struct fx_set *fx; /* switch.fx_rates not expired at the load (DB_FX_NOT_EXPIRED) */
    uint64_t loaded_wall_us;
};

const struct sw_terminal *sw_ref_terminal(const struct sw_refdata *ref, const char *acquirer,
                                          const uint8_t tid[8]);
void sw_ref_free(struct sw_refdata *ref);
/* Starts an asynchronous load of the reference data and then of the conversion rates; when
 * both are good the new snapshot replaces srv->ref whole (a bad row of either keeps the old
 * one, logged as refdata_invalid). */
int sw_ref_reload(struct sw_server *srv);
/* notify.c: LISTEN atlas_refdata on a connection of its own; each NOTIFY reloads the reference
 * data (docs/switchd.md "Instances"). Started once ready; freed at teardown. */
int sw_notify_start(struct sw_server *srv);
void sw_notify_free(struct sw_server *srv);

/* ---- currency conversion (convert.c; docs/fx.md, "Wiring") ---- */

/* The conversion of one request, or why it is refused. */
struct sw_conversion {
    struct db_billing billing; /* DE 6/10/51; none when nothing is converted */
    const char *rc;            /* on refusal: "91" no rate in force, "13" amount or currency */
    const char *reason;        /* on refusal: for the txn_refused line */
    int field;                 /* on refusal: the field at fault (49 the currency, 4 the amount) */
};

/* Builds the in-memory rate set from the rows of switch.fx_rates, each checked by
 * fx_rate_make. 0 and *out (the caller frees it with fx_set_free), or -1 with err naming the
 * row or the overlap. */
__attribute__((warn_unused_result)) int sw_fx_build(const struct db_fx_rate *rows, size_t n,
                                                    struct fx_set **out, char *err, size_t errcap);

/* THE conversion call (docs/fx.md): amount (DE 4, minor units; -1 = none) in txn_ccy (DE 49
 * numeric; -1 = unreadable) for a card its route bills in billing_ccy (sw_route_match's; 0 =
 * billed in DE 49), at the rates of srv->ref in force now. 0 with out->billing filled when
 * converted, or "none" (no billing currency, the same currency, no amount); -1 when the
 * request must be refused, with out->rc and out->reason, after logging fx_no_rate (pair, why,
 * at) or fx_refused. Never a silent 1:1. */
__attribute__((warn_unused_result)) int sw_fx_convert(const struct sw_server *srv, int billing_ccy,
                                                      int64_t amount, int txn_ccy,
                                                      struct sw_conversion *out);

/* Sets DE 6, DE 10 and DE 51 of m from b, or removes them when b is "none" (a terminal's own
 * DE 6/10/51 never reach an issuer). Call before packing: the MAC then covers them. 0 or -1. */
__attribute__((warn_unused_result)) int sw_fx_set_fields(struct iso_msg *m,
                                                         const struct db_billing *b);

/* A conversion into / out of the duplicate table's entry (what a repeat's answer and a
 * terminal reversal repeat). */
void sw_fx_to_recent(struct sw_recent_txn *r, const struct db_billing *b);
void sw_fx_from_recent(const struct sw_recent_txn *r, struct db_billing *b);

/* ---- terminal sessions ---- */

enum sw_term_state {
    SW_TERM_OPEN,   /* reading and answering */
    SW_TERM_CLOSED, /* stream gone; txns still holding it answer into the void */
    SW_TERM_state_max
};

/* A listening socket whose accept() failed for want of descriptors or
 * memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): libevent's listener would stay
 * readable and retry at once, forever. Accepting is disabled instead and
 * re-enabled after a backoff (100 ms doubling to 1 s) or as soon as a
 * terminal connection closes; an episode is logged once (accept_paused)
 * and ends (accept_resumed) once accepting has run a whole backoff without
 * an error. */
struct sw_accept_pause {
    struct sw_server *srv;
    struct evconnlistener *evl; /* NULL once the listener is stopped */
    const char *name;
    struct event *retry; /* re-enables accepting; then ends the episode if all went well */
    unsigned backoff_ms;
    bool paused;       /* accepting disabled */
    bool episode;      /* accept_paused logged, accept_resumed not yet */
    uint64_t since_ms; /* the episode began */
    uint64_t errors;   /* failed accepts in this episode */
};

/* Prepares p for evl (the caller installs its error callback, which calls
 * sw_accept_failed). 0, or -1 when the timer cannot be allocated. */
int sw_accept_pause_init(struct sw_accept_pause *p, struct sw_server *srv,
                         struct evconnlistener *evl, const char *name);
/* Before the listener is freed: no timer may touch it afterwards. */
void sw_accept_pause_stop(struct sw_accept_pause *p);
/* accept() failed with err (errno): pause, log once per episode, count. */
void sw_accept_failed(struct sw_accept_pause *p, int err);
/* A descriptor was freed (a terminal connection closed): every paused
 * listener tries again now. */
void sw_accept_resume_all(struct sw_server *srv);

struct sw_listener {
    const struct sw_listener_conf *conf;
    const struct iso_dialect *dialect;
    enum iso_frame_kind framing;
    struct isonet_framing wire; /* frame_arg of every session's stream (isonet_frame_fn) */
    struct evconnlistener *evl;
    uint64_t connections;
    struct sw_server *srv;
    struct sw_addrcount *per_addr; /* connections by peer IP; NULL without the cap */
    struct sw_accept_pause pause;
    uint64_t refused_log_ms;   /* last terminal_refused line */
    uint64_t refused_unlogged; /* refusals since it */
    struct at_tls *tls;        /* TLS listener (switch/swtls.c); NULL = plain TCP */
};

struct sw_term {
    struct sw_server *srv;
    struct sw_listener *lst;
    struct at_stream *stream;
    enum sw_term_state state;
    unsigned refs;     /* the stream + every txn of this session */
    unsigned inflight; /* requests not yet answered */
    bool capped;       /* paused for its own in-flight cap */
    bool global_paused;
    bool addr_counted; /* counted in lst->per_addr under addr */
    struct sw_peer_addr addr;
    LIST_ENTRY(sw_term) link; /* srv->terms */
};

void sw_term_release(struct sw_term *t);
/* A txn takes / gives back its hold on the session (in-flight cap). */
void sw_term_txn_begin(struct sw_term *t);
void sw_term_txn_done(struct sw_term *t);
/* Closes the session after flushing what is queued. */
void sw_term_close(struct sw_term *t, const char *reason);
void sw_terms_close_all(struct sw_server *srv, const char *reason);
/* Writes a packed message (header built per the listener's framing). */
int sw_term_send(struct sw_term *t, const uint8_t *tpdu, const uint8_t *msg, size_t len);
int sw_listeners_start(struct sw_server *srv);
void sw_listeners_stop(struct sw_server *srv);
/* Pauses or resumes reading of every terminal (global backpressure). */
void sw_terms_set_paused(struct sw_server *srv, bool paused);

/* ---- issuer links ---- */

enum sw_link_state {
    SW_LINK_DOWN,       /* no connection; a reconnect timer is armed */
    SW_LINK_CONNECTING, /* TCP connect in progress */
    SW_LINK_SIGNON,     /* connected, 0800/001 sent, waiting for 0810 */
    SW_LINK_UP,         /* signed on: requests flow */
    SW_LINK_state_max
};

struct sw_pending; /* the link's STAN → txn table */

struct sw_link {
    struct sw_server *srv;
    const struct sw_issuer_conf *conf;
    const struct iso_dialect *dialect;
    enum iso_frame_kind framing;
    struct isonet_framing wire;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    enum sw_link_state state;
    struct at_stream *stream;
    struct event reconnect, echo;
    uint64_t backoff_ms;
    uint32_t next_stan;
    struct sw_pending *pending;
    uint64_t last_traffic_ms;
    uint64_t up_since_ms;
    bool echo_outstanding;
    bool logged_down; /* the current outage was logged once */
    uint32_t signon_stan, echo_stan;
    const struct timeval *common_timeout; /* libevent common timeout of timeout_ms */
    uint8_t *arena; /* unpacking the issuer's messages (ISO_ARENA_FOR(max_frame)) */
    size_t arena_cap;
    struct at_tls *tls; /* TLS to the issuer (switch/swtls.c); NULL = plain TCP */
};

const char *sw_link_state_name(enum sw_link_state s);
int sw_links_start(struct sw_server *srv);
void sw_links_stop(struct sw_server *srv);
/* Sends msg (packed by the caller with the link dialect) registering txn under
 * stan. Returns 0, or -1 when the link is not up or full. */
int sw_link_forward(struct sw_link *l, struct sw_txn *txn, uint32_t stan, const uint8_t *msg,
                    size_t len);
/* Sends an 0800 with DE 70 = code and, when de48 is not NULL, DE 48 (n48 bytes) on a connected
 * link; its STAN into *stan_out. 0, or -1 (link not connected, message too long). */
int sw_link_send_0800(struct sw_link *l, const char *code, const char *de48, size_t n48,
                      uint32_t *stan_out);
/* A fresh STAN for the link (6 digits, never 000000, skipping in-flight ones). */
uint32_t sw_link_stan(struct sw_link *l);
/* Forgets a pending txn (timeout or teardown). */
void sw_link_forget(struct sw_link *l, uint32_t stan);
/* Sends a store-and-forward message (a reversal) registered under stan. */
int sw_link_send_saf(struct sw_link *l, void *entry, uint32_t stan, const uint8_t *msg, size_t len);
/* Sends a stand-in advice (or its reversal) registered under stan (advice.c). */
int sw_link_send_advice(struct sw_link *l, void *entry, uint32_t stan, const uint8_t *msg,
                        size_t len);
void sw_links_free(struct sw_server *srv);
/* DE 7 of now (UTC MMDDhhmmss) into out[11]. Loop thread only (it keeps
 * the string of the current second). */
void sw_de7_now(char out[11]);

/* ---- transactions ---- */

/* One state per place a transaction can wait; sw_txn_set_state() is the only
 * door and asserts every move. */
enum sw_txn_state {
    SW_TXN_FREE,          /* on srv->txn_free */
    SW_TXN_MAC_VERIFY,    /* HSM verifying the terminal's MAC (M8) */
    SW_TXN_PIN_TRANSLATE, /* HSM translating the PIN block to the issuer's ZPK */
    SW_TXN_ISSUER_MAC,    /* HSM MACing the request for the issuer (M6) */
    SW_TXN_INTENT,        /* write-ahead: its switch.inflight row being made durable */
    SW_TXN_DUP_LOOKUP,    /* the identity was taken: reading what holds it */
    SW_TXN_ISSUER_WAIT,   /* forwarded; pending on the link with a timer */
    SW_TXN_RESP_CHECK,    /* HSM verifying the issuer response's MAC (M8) */
    SW_TXN_ORIG_LOOKUP,   /* reversal: looking its original up in the journal */
    SW_TXN_PARKED,        /* reversal: waiting for its original (in flight) to be answered */
    SW_TXN_TRANSFER,      /* a transfer (or a terminal's reversal of one) waiting for its saga */
    SW_TXN_CARD_AUTH,     /* HSM verifying the card: ARQC (KQ) and/or CVV2 (CY) — emv.c */
    SW_TXN_STAND_IN,      /* decided in the issuer's place: rules, PIN, reservation, advice */
    SW_TXN_KEY_DOWNLOAD,  /* a terminal's 0800 key download: MAC, new keys, commit — keyx.c */
    SW_TXN_FINISH,        /* response MAC (M6), then the journal commit */
    SW_TXN_state_max
};

/* Mirrors enum db_outcome (checked at compile time in txn.c). */
enum sw_txn_outcome {
    SW_OUT_APPROVED,
    SW_OUT_DECLINED,
    SW_OUT_REJECTED,
    SW_OUT_TIMEOUT,
    SW_OUT_UNAVAILABLE,
    SW_OUT_ERROR,
};

struct sw_txn {
    enum sw_txn_state state;
    struct sw_server *srv;
    struct sw_term *term; /* holds a reference (sw_term_txn_begin) */
    struct sw_txn *next_free;
    uint64_t t_recv_ns, t_wall_us, t_phase_ns, t_hsm_ns;
    uint64_t t_settle_us; /* a repeat answered from its original: the original's receipt time */
    uint64_t lat_mac_ns, lat_pin_ns, lat_issuer_ns, lat_journal_ns, lat_write_ahead_ns;
    struct sw_validation v;
    struct sw_terminal terminal; /* copies: a reload may free the snapshot */
    struct sw_issuer issuer;
    struct db_billing billing; /* the conversion forwarded (DE 6/10/51), or none */
    struct sw_link *link;
    int64_t issuer_idx;
    uint32_t issuer_stan;
    char issuer_de7[11];
    char de7[11];                    /* the request's DE 7 */
    char rrn[13];                    /* generated when the request has none */
    char orig_stan[7], orig_de7[11]; /* reversals */
    char acquirer[12];
    struct sw_req_id recent_id;
    bool has_recent;
    uint8_t pan_hmac[32]; /* keyed hash of the PAN (journal, duplicate checks) */
    bool has_pan_hmac;
    uint8_t pan_sealed[DB_PAN_SEALED_MAX]; /* for the write-ahead row */
    uint8_t pan_sealed_len;
    bool journal;               /* this request gets a journal row */
    bool no_answer;             /* nothing goes back (undecodable, a response) */
    bool waiting_link;          /* registered in the link's pending table */
    bool intent_sent;           /* its INTENT went to the journal writer: it owns an inflight row */
    bool forwarded;             /* sent to the issuer: the issuer may have applied it */
    bool reversing;             /* a reversal of it is decided (at most one per request) */
    bool pending_mac;           /* the response's MAC is being computed */
    bool pending_journal;       /* its journal row is being made durable */
    bool pending_saf;           /* a reversal being made durable */
    bool journal_done;          /* its journal record was submitted (once) */
    bool advice_stored;         /* advice.c: its stand-in advice is durable */
    bool advice_withdrawn;      /* advice.c: the reversal of that advice is queued */
    bool in_finish;             /* inside finish()'s own call: answer from the loop */
    bool mac_retried;           /* the response MAC was asked for a second time */
    struct isonet_mac mac_at;   /* where the MAC goes in packed */
    struct sw_txn *parked_next; /* SW_TXN_PARKED: srv->parked */
    char rc[3];
    char auth_code[7];
    char balance[121]; /* DE 54 from the issuer */
    size_t balance_len;
    enum sw_txn_outcome outcome;
    uint8_t tpdu[ISO_TPDU_LEN];
    bool has_tpdu;
    uint8_t pin_block[8];
    bool has_pin_block;
    struct event timer;
    /* Transfers (xfer.c): the saga a sender's request (or a reversal of one) runs, or the
     * saga this txn is a leg of; what the sender's answer adds (DE 28, DE 44). */
    struct sw_xfer *xfer;
    struct sw_xfer *leg_of;
    bool leg_oct;
    bool has_xfer_fee;
    int64_t xfer_fee;
    char resp44[8];
    char resp48[160]; /* a key download's answer: the new keys under the TMK and KCVs (keyx.c) */
    struct sw_req_id xfer_orig; /* a reversal: the transfer's identity */
    /* Pre-authorization (preauth.c): a completion's or an increment's DE 90 as its issuer knows
     * the pre-auth (issuer STAN and DE 7), put in the request it is forwarded. */
    struct isonet_de90 issuer_de90;
    bool has_issuer_de90;
    struct sw_card_auth card; /* chip ARQC/ARPC and CVV2 (emv.c, docs/emv.md) */
    /* Stand-in (stip.c): decided in the issuer's place (the journal row says so); the
     * decision's state while its advice is stored. */
    bool stand_in;
    struct stip_ctx *stip;
    /* txn.c: the terminal's response MAC asked for in the same HSM write as the M8 of the
     * issuer's answer (pipelined); used only if that answer is authentic and unchanged. */
    uint8_t early_mac_state;  /* enum early_mac in txn.c */
    bool early_mac_usable;    /* the issuer's MAC verified: request_mac may take it */
    bool early_mac_wanted;    /* request_mac took it while still pending */
    bool early_mac_discarded; /* the response was rebuilt: drop the early one when it comes */
    uint8_t early_mac[8];
    uint64_t early_fp; /* the MACed bytes of the response it was computed over (length and */
    size_t early_len;  /* SipHash): used only for a response built again byte for byte */
    /* txn.c: the PIN translation asked for in the same HSM write as the request's M8, to the
     * ZPK of the issuer the PAN routes to; used only if translate_pin wants that same ZPK. */
    uint8_t early_pin_state;  /* enum early_pin in txn.c */
    bool early_pin_wanted;    /* translate_pin took it while still pending */
    bool early_pin_discarded; /* not wanted (another ZPK): drop it when it comes */
    int early_pin_status;     /* the client status of its answer (DONE) */
    uint64_t early_pin_sent_ns, early_pin_lat_ns;
    char early_zpk[SW_KEY_TEXT];
    char early_pin_resp[64]; /* its answer (PIN block under the ZPK): wiped after use */
    size_t early_pin_resp_len;
    /* Everything above is reset per request; the buffers below are not. */
    uint8_t frame_inline[SW_TXN_FRAME];
    uint8_t *frame; /* frame_inline (requests are at most SW_TXN_FRAME bytes) */
    size_t frame_len;
    struct iso_msg req;
    uint8_t req_arena[ISO_ARENA_FOR(SW_TXN_FRAME)];
    struct iso_msg out; /* to the issuer, then to the terminal */
    uint8_t out_arena[1024];
    uint8_t packed[SW_TXN_FRAME + 64];
    size_t packed_len; /* request to the issuer */
    size_t resp_len;   /* response to the terminal (0 = none) */
};

const char *sw_txn_state_name(enum sw_txn_state s);
/* Takes a frame from a terminal session (copied). */
void sw_txn_start(struct sw_term *t, const uint8_t *frame, size_t frame_len, const uint8_t *msg,
                  size_t msg_len, const uint8_t *tpdu);
/* Whether an answer of MTI mti is of the class the txn's request expects. */
bool sw_txn_answer_class_ok(const struct sw_txn *txn, const char mti[4]);
/* The link matched an issuer response: m is unpacked from raw[0..raw_len),
 * both valid only during the call. */
void sw_txn_issuer_answer(struct sw_txn *txn, const struct iso_msg *m, const uint8_t *raw,
                          size_t raw_len);
/* The reversal t decided (sw_saf_reverse_txn with wait) or asked for (a
 * terminal reversal) is durable, or could not be made so. saf.c's one call
 * into a transaction. */
void sw_txn_reversal_stored(struct sw_txn *t, bool durable);
/* The PAN's keyed hash and its sealed form (AES-256-GCM under the switch's
 * key) for the rows that must rebuild a reversal. 0 or -1. */
int sw_pan_protect(struct sw_server *srv, const char *pan, size_t len, uint8_t hmac[32],
                   uint8_t sealed[DB_PAN_SEALED_MAX], uint8_t *sealed_len);
/* Sends the packed issuer request and arms the timeout. */
void sw_txn_forward(struct sw_txn *txn);
/* Stand-in's doors into the flow (stip.c): the state move, and the answer of a request whose
 * identity is taken (the journal's answer to a repeat, or 94) — the duplicate check the
 * write-ahead row makes for a forwarded request; sw_txn_finish and sw_txn_reject (xfer.h) end
 * its other paths. */
void sw_txn_to_stand_in(struct sw_txn *t);
void sw_txn_dup_lookup(struct sw_txn *t);
/* A field of t's request as a string ("" when absent or longer than cap - 1), as a number (-1
 * when absent or above max), and the request's identity as db/ keys it. */
void sw_txn_field(const struct sw_txn *t, int f, char *out, size_t cap);
int64_t sw_txn_amount(const struct sw_txn *t, int f, int64_t max);
void sw_txn_request_id(struct sw_txn *t, struct db_request_id *id);
/* The link went down with the txn still pending. */
void sw_txn_issuer_lost(struct sw_txn *txn);
/* A terminal key download (keyx.c) is over: answered rc (0810, no MAC), with t->resp48. */
void sw_txn_key_download_done(struct sw_txn *t, const char *rc);
/* What preauth.c borrows: the PAN's keyed hash (t->pan_hmac; false when it cannot be made), the
 * wait for a journal lookup, and the way on once the pre-auth is known (PIN, then issuer). */
bool sw_txn_pan_hmac(struct sw_txn *t);
void sw_txn_to_orig_lookup(struct sw_txn *t);
void sw_txn_after_original(struct sw_txn *t);

/* ---- the server ---- */

struct sw_server {
    struct event_base *base;
    struct sw_config conf;
    const char *conf_path;
    struct sw_metrics metrics;
    struct sw_refdata *ref;
    struct sw_refdata *ref_pending; /* built, waiting for its conversion rates */
    bool ref_loading;
    struct sw_saf *saf;
    /* Transfer row writes waiting for PostgreSQL (xfer_rows.c). */
    struct sw_xfer_rows *xfer_rows;
    struct sw_advq *advice;   /* stand-in advices (advice.c) */
    struct sw_notify *notify; /* LISTEN atlas_refdata (notify.c) */
    struct hsm_client *hsm;
    struct at_tls *hsm_tls;     /* TLS to the HSM (switch/swtls.c); NULL = plain TCP */
    struct at_tls *metrics_tls; /* HTTPS for /metrics (switch/swtls.c); NULL = plain HTTP */
    struct db_client *db;
    struct db_journal *journal;
    struct sw_recent *recent;
    struct sw_listener listeners[SW_MAX_LISTENERS];
    size_t n_listeners;
    struct sw_link links[SW_MAX_ISSUERS];
    size_t n_links;
    LIST_HEAD(, sw_term) terms;
    uint64_t n_terms;
    struct sw_txn *txn_free;
    struct sw_txn *parked; /* reversals waiting for an original still in flight */
    uint64_t txns_allocated, inflight;
    bool backpressure; /* terminals paused: journal, HSM or global cap */
    bool draining;
    bool stopping; /* teardown: no new journal records, HSM commands or reversals */
    struct evhttp *http;
    struct sw_accept_pause http_pause; /* the /metrics listener's */
    /* Keep these together: teardown frees them as a run. */
    struct event *sig_term, *sig_int, *sig_hup, *sig_usr1, *flush_timer, *drain_timer;
    uint64_t drain_deadline_ms;
    struct db_pan_hasher *pan_hasher; /* keyed once; the raw key is wiped after */
    uint8_t pan_seal_key[32];
    bool ready; /* reference data loaded, listeners up */
    int exit_code;
};

/* Reference data arrived for the first time: open the listeners. */
void sw_server_ready(struct sw_server *srv);

/* Re-evaluates global backpressure (journal saturated, HSM busy, cap). */
void sw_backpressure_update(struct sw_server *srv);
int sw_http_start(struct sw_server *srv);
void sw_http_stop(struct sw_server *srv);

/* Milliseconds on the monotonic clock. */
uint64_t sw_now_ms(void);

#endif
