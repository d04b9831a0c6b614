/* Private to the issuer-sim daemon: the request (struct txn), the link (struct conn) and the
 * daemon (struct iss) its files share, the request states, and what each file offers the
 * others. The flow of a request, file by file: link.c → txn.c → hsmcmd.c (request MAC) →
 * validate.c → txn.c → load.c (the batched snapshot load) → txn.c (decide; hsmcmd.c for a PIN)
 * → apply.c → answer.c → hsmcmd.c (response MAC) → link.c. */
#ifndef ATLAS_SIM_ISSUER_INT_H
#define ATLAS_SIM_ISSUER_INT_H

#include "issuer.h"

#include "iso8583.h"
#include "isonet.h"
#include "wallet.h"

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#define MAX_MSG           4096 /* largest ISO message accepted (its M8 command fits an HSM frame) */
#define MAX_RETRIES       64   /* decide again after a concurrent change, at most this often */
#define EXPIRE_PERIOD     60   /* seconds between expired-hold sweeps */
#define DRAIN_TIMEOUT     5    /* seconds SIGTERM waits for requests in flight */
#define APPLY_BATCH       DB_WALLET_APPLY_MAX /* decisions committed by one transaction */
#define APPLY_SPILL       4       /* queued decisions that start a second transaction at once */
#define APPLY_PATIENCE_NS 2000000 /* ... or after the last one has been in flight this long */

/* Where a request is. txn_set_state() (txn.c) is the only door: it checks the move against
 * its table, aborts on an illegal one, and logs moves at debug level. */
enum txn_state {
    TXN_FREE,     /* in the pool's free list, or just taken from it and being read */
    TXN_MAC,      /* waiting for hsm-sim's M9 (request MAC verification) */
    TXN_LOAD,     /* waiting for the request/wallet lookup (PostgreSQL) */
    TXN_PIN,      /* waiting for hsm-sim's EB/ED (PIN verification) */
    TXN_APPLY,    /* waiting for wallet.sim_apply / sim_reverse (PostgreSQL) */
    TXN_RESP_MAC, /* waiting for hsm-sim's M7 (response MAC) */
    TXN_KEYX,     /* an 0800 key change: waiting for hsm-sim's A7 (key import, keyx.c) */
    TXN_state_max
};

struct iss;

#define KEY_TEXT 50 /* a key under the LMK: scheme letter + up to 48 hex + NUL */

/* The issuer's working keys (keyx.c, docs/keys.md): the current generation, and the previous one
 * while the switch may still use it — kept until the current one has been seen in use, then for
 * grace_ms more. Only under the LMK. */
struct iss_keys {
    char zpk[KEY_TEXT], zak[KEY_TEXT];           /* current */
    char prev_zpk[KEY_TEXT], prev_zak[KEY_TEXT]; /* previous, when has_prev */
    char zmk[KEY_TEXT];                          /* wraps the keys a key change brings */
    bool has_prev;
    bool cur_seen;          /* a request has verified under the current ZAK */
    uint64_t prev_until_ms; /* the previous generation's end; 0 = not started (cur not seen) */
    uint64_t grace_ms;
};

/* One link from the switch. Freed when its stream has closed and no request holds it. */
struct conn {
    struct iss *iss;
    struct at_stream *s;   /* NULL once closed */
    unsigned refs;         /* requests in flight + 1 while the stream lives */
    bool global_paused;    /* paused by the global backpressure */
    LIST_ENTRY(conn) link; /* iss.conns */
};

/* One request, from its frame to its answer: a slot of the pool allocated at start (no
 * allocation per message). */
struct txn {
    struct iss *iss;
    struct conn *c;
    struct txn *next_free;
    enum txn_state st;
    uint64_t t0;
    uint8_t msg[MAX_MSG];
    size_t len;
    struct iso_msg req;
    uint8_t arena[ISO_ARENA_FOR(MAX_MSG)];
    /* parsed request */
    char mti[5], pcode[7], pan[20], pan_masked[20], key[48], orig_key[48];
    int64_t amount;
    int currency;
    bool is_reversal, is_inquiry;
    /* Pre-authorization (validate.c, docs/issuer-sim.md): an 0220/0221 completion or an
     * incremental 0100/0101, each naming the pre-auth in DE 90 (its request key in orig_key). */
    bool is_completion, is_increment;
    /* A stand-in advice (0120/0121/0220/0221 without DE 90): the switch's approval code (DE 38)
     * and its decision's DE 39. */
    bool is_advice;
    char advice_auth[7], advice_rc[3];
    int retries;
    /* the decision or reversal to apply (its strings point into this txn) and its batch */
    struct db_wallet_op op;
    char rrnz[16];
    bool apply_alone;       /* its batch failed: apply it in a transaction of its own */
    struct txn *apply_next; /* the next request of the same batch (queue, then in flight) */
    /* wallet snapshot: the PAN's HMAC, and the next request of the same load statement (queue,
     * then in flight: load.c) */
    uint8_t pan_hmac[32];
    struct txn *load_next;
    bool have_wallet;
    struct db_wallet_row wallet;
    struct sim_wallet w;
    struct sim_request r;
    struct sim_effects eff;
    /* answer */
    char rc[3], auth[7], de54[41], outcome[24];
    bool has_bal;
    int64_t bal, avail;
    uint8_t resp[MAX_MSG + 64];
    size_t resp_len;
    struct isonet_mac resp_mac; /* where the response's MAC goes in resp */
    /* The key generation the request came under (keyx.c): its MAC verified with zak, its PIN
     * with zpk, its answer MACed with zak. The current one until the MAC says otherwise. */
    char zpk[KEY_TEXT], zak[KEY_TEXT];
    bool mac_prev;               /* the request MAC is being tried with the previous ZAK */
    struct isonet_mac req_mac;   /* where the request's MAC is (a second M8) */
    char resp48[64], resp44[26]; /* a key change's answer: the KCVs, or why it was refused */
};

/* The daemon. */
struct iss {
    struct event_base *base;
    struct evconnlistener *lst;
    const struct iso_dialect *dialect;
    struct isonet_framing wire; /* every link's framing (2b or 4a, at most MAX_MSG) */
    struct hsm_client *hsm;
    struct db_wallet *db;
    const char *pvk;
    struct iss_keys keys;         /* ZPK/ZAK generations and the ZMK (keyx.c) */
    struct db_pan_hasher *hasher; /* HMAC of PANs, keyed once at start */
    LIST_HEAD(, conn) conns;
    struct txn *pool, *free_list;
    unsigned pool_size, inflight;
    bool paused, hsm_busy, stopping;
    bool closing; /* the clients are being freed: finish requests without new work */
    uint32_t auth_seq;
    struct txn *apply_head, **apply_tail; /* decided this loop turn, not yet sent */
    unsigned apply_queued;
    struct event *ev_apply; /* sends the queued decisions, once per loop turn (or on time) */
    uint64_t n_apply_jobs;  /* transactions that applied decisions (a batch each) */
    /* Apply transactions sent and not yet answered, and how many may be (--db-connections):
     * while that many are in flight, decisions wait in the queue and leave together as the
     * next batch when one commits — commit at once when idle, bigger batches under load
     * (issue 17: a batch's cost in PostgreSQL is mostly per batch, not per decision). A
     * second transaction starts only when the queue needs it (apply.c apply_may_start). */
    unsigned apply_inflight, apply_max_inflight;
    uint64_t apply_sent_ns; /* when the last batch was sent (at_mono_ns) */
    /* Snapshot loads the same way (load.c): queued this loop turn, sent as one statement each
     * batch while fewer than load_max_inflight are in flight. */
    struct txn *load_head, **load_tail;
    unsigned load_queued, load_inflight, load_max_inflight;
    struct event *ev_load;
    struct event *ev_term, *ev_int, *ev_hup, *ev_expire, *ev_drain;
    struct event *ev_usr1; /* SIGUSR1 reopens the log, as SIGHUP does (logrotate) */
    uint64_t n_req, n_approved;
    struct at_tls *tls;     /* --tls-cert: the links are served over TLS (NULL = plain) */
    struct at_tls *hsm_tls; /* --hsm-ca: TLS to hsm-sim (NULL = plain) */
};

/* ---- main.c: start-up and shut-down */

/* Ends the loop once a drain (SIGTERM) has no request left in flight. */
void iss_maybe_finish_drain(struct iss *s);

/* ---- link.c: the switch's links (at_stream + ISO framing), network management, backpressure */

/* Opens the listener on sa. 0, or -1 with errno set. */
__attribute__((warn_unused_result)) int link_listen(struct iss *s, const struct sockaddr *sa,
                                                    socklen_t sl);
/* Closes the listener. */
void link_stop_accepting(struct iss *s);
/* Pauses every link (a drain: requests in flight still finish, nothing new is read). */
void link_pause_all(struct iss *s);
/* Closes every link (shut-down); their close callbacks run from the loop. */
void link_close_all(struct iss *s);
/* Writes msg with its frame header on c. 0, or -1 when the link refuses it. */
__attribute__((warn_unused_result)) int link_write(struct conn *c, const uint8_t *msg, size_t len);
/* A request no longer holds its link. */
void link_unref(struct conn *c);
/* Pauses every link while the pool is full or hsm-sim busy; resumes them when both have room. */
void link_backpressure_update(struct iss *s);
/* hsm-sim's busy signal (hsm_client_config.busy_cb). */
void link_on_hsm_busy(void *arg, bool busy);

/* ---- txn.c: the request pool and the flow between steps (the state machine's one door) */

void txn_set_state(struct txn *t, enum txn_state st);
/* A slot for a request read on c, or NULL when the pool is empty. */
struct txn *txn_get(struct iss *s, struct conn *c);
/* A request just unpacked (not network management, not a response): checks its MTI and MAC
 * field, then has its MAC verified. */
void txn_begin(struct txn *t);
/* Its MAC verified: validates it, then loads its wallet, or applies it (a reversal). */
void txn_mac_verified(struct txn *t);
/* Reads the wallet snapshot and the recorded answer; again after a concurrent change. */
void txn_load(struct txn *t);
/* The snapshot read (load.c calls it for each request of a load statement): answers a repeat,
 * else decides; err->code != 0 answers 96. */
void txn_loaded(struct txn *t, const struct db_error *err, const struct db_wallet_snapshot *snap);
/* Decides on the snapshot; a PIN entered is verified first (hsmcmd.c calls back here). */
void txn_decide(struct txn *t);
/* Answers rc (with outcome in the log) without DE 38 / DE 54. */
void txn_fail(struct txn *t, const char *rc, const char *outcome);
/* Logs the request and gives its slot back. The request is done. */
void txn_finish(struct txn *t);

/* ---- validate.c: what a request must carry */

/* Copies field f of m into out (NUL-terminated) if present with a length in [min, max]. */
bool field_str(const struct iso_msg *m, int f, size_t min, size_t max, char *out);
/* Checks the mandatory fields of a financial request / reversal and fills t's parsed copies
 * (and t->r for a decision). Returns NULL, or the response code to send (30, 12, 13). */
const char *txn_validate(struct txn *t);

/* ---- hsmcmd.c: the hsm-sim commands of a request (MAC with the ZAK, PIN with ZPK + PVK) */

/* M8 on the request, whose MAC is at (isonet_mac_locate); → txn_mac_verified, or an answer
 * 63 / 96. */
void hsmcmd_verify_request_mac(struct txn *t, const struct isonet_mac *at);
/* EC (PVV) or EA (IBM 3624) on DE 52; → txn_decide with t->r.pin set, or 30 / 96. */
void hsmcmd_verify_pin(struct txn *t);
/* M6 over the packed response (t->resp up to t->resp_mac.off); the MAC goes in place and the
 * response is sent, or the request ends unanswered. */
void hsmcmd_mac_response(struct txn *t);

/* ---- keyx.c: key changes (0800, DE 70 = 161) and the two key generations */

/* The current keys into t (a request just taken from the pool). */
void keyx_take_current(struct txn *t);
/* The request's MAC verified under t's keys (mac_prev: the previous generation): the current
 * one is now known in use, which starts the previous one's grace window. */
void keyx_mac_ok(struct txn *t);
/* The request's MAC did not verify under the current ZAK: true (and t's keys switched to the
 * previous generation) when that one is still accepted, to be tried. */
bool keyx_try_previous(struct txn *t);
/* An 0800 key change in t->req: imports the keys (A6) under the ZMK, checks their KCVs and
 * answers 0810 (00, or 30 / 63 / 96 with DE 44 the reason; keys unchanged). */
void keyx_change(struct txn *t);

/* ---- apply.c: the group-committed apply of decisions and reversals */

/* Queues the decision in t->eff (or the reversal) for this loop turn's batch; the request is
 * answered after its batch commits. */
void txn_apply(struct txn *t);
/* Sends the batches queued (the ev_apply event; at shut-down, with closing set, answers them
 * 96 instead). */
void apply_flush(evutil_socket_t fd, short what, void *arg);

/* ---- load.c: the batched snapshot loads */

/* Queues t (its pan_hmac and key set) for this loop turn's load statement. */
void load_queue(struct txn *t);
/* Sends the loads queued (the ev_load event; at shut-down, with closing set, answers them 96). */
void load_flush(evutil_socket_t fd, short what, void *arg);

/* ---- answer.c: the response */

/* Fills DE 54 from the balances known and responds. */
void txn_answer(struct txn *t);
/* Builds the response to t->req with t->rc (DE 38 / DE 54 when set), packs it and has it
 * MACed (mac = false for network management: sent at once). */
void txn_respond(struct txn *t, bool mac);
/* Sends the packed response on the request's link and finishes the request. */
void txn_send(struct txn *t);

#endif
