/* libatlas_db: Atlas's PostgreSQL layer. An asynchronous libpq client driven by a libevent loop
 * (non-blocking connect, pipeline mode, one SQLSTATE -> action table), the group-commit journal
 * writer with its fsync'd outage spool, migrations and schema checks, and the PAN helpers
 * (keyed HMAC for lookups, sealing for the reversal queue). See docs/db.md. */
#ifndef ATLAS_DB_H
#define ATLAS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* The schema version (highest migration number) this build of the library writes against.
 * Daemons pass it (or their own minimum) to db_schema_check_at(). (19: 0019 is issuer-sim's
 * wallet.sim_reverse_batch; the switch does not need it, but test_db_journal wants the highest.) */
#define DB_SCHEMA_VERSION 27

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */

/* Return codes of the fallible functions and the status given to callbacks. */
enum {
    DB_OK = 0,
    DB_SPOOLED = 1,    /* journal callback: durable in the local spool, replayed later */
    DB_CONFLICT = 2,   /* journal callback: nothing written, the identity is taken (see kinds) */
    DB_E_INVALID = -1, /* bad argument or record (nothing queued) */
    DB_E_CONN = -2,    /* connection lost or database unreachable */
    DB_E_SQL = -3,     /* the server refused a statement (see sqlstate) */
    DB_E_FULL = -4,    /* queue full: backpressure (nothing queued) */
    DB_E_CLOSED = -5,  /* the client or writer is shutting down */
    DB_E_SPOOL = -6,   /* the spool could not be written or synced (not durable) */
    DB_E_SCHEMA = -7,  /* database schema missing or older than required */
    DB_E_SYS = -8,     /* allocation or system call failure */
};

/* What to do about a failed statement, decided by its SQLSTATE in one table (db_action_for). */
enum db_action {
    DB_ACTION_RETRY,     /* transient (serialization failure, deadlock): run the work again */
    DB_ACTION_RECONNECT, /* the connection or server is going away: reconnect, then retry */
    DB_ACTION_FAIL,      /* the statement or data is wrong: report it, retrying will not help */
};

struct db_error {
    int code; /* DB_E_* (0 when no error) */
    enum db_action action;
    char sqlstate[6];  /* "" when not from the server */
    char message[256]; /* server's primary message or ours; never contains parameter values */
};

/* Maps a SQLSTATE (5 characters; NULL or "" meaning "no server answer") to an action. */
enum db_action db_action_for(const char *sqlstate);

/* A short name of a DB_* code, for logs. */
const char *db_strerror(int code);

/* ------------------------------------------------------------------------------------------ */
/* Generic asynchronous client: a small pool of pipelined connections on the caller's loop.     */

struct db_client;

struct db_client_opts {
    const char *conninfo;       /* libpq conninfo; NULL or "" = the PG* environment */
    unsigned connections;       /* default 1 */
    unsigned max_queued;        /* jobs waiting for a connection; default 10000 */
    uint32_t reconnect_min_ms;  /* backoff after a failed connect: doubles up to max; 100 */
    uint32_t reconnect_max_ms;  /* default 5000 */
    const char *app_name;       /* application_name unless the conninfo sets one; "atlas-client" */
    const char *server_options; /* libpq "options" (e.g. "-c enable_seqscan=off") unless the
                                   conninfo sets its own; kept by pointer: a static string */
};

/* Creates the client and starts connecting (non-blocking) on base. Copies opts->conninfo.
 * Returns 0 and *out, or DB_E_INVALID / DB_E_SYS. Nothing is sent until a connection is up. */
__attribute__((warn_unused_result)) int
db_client_new(struct event_base *base, const struct db_client_opts *opts, struct db_client **out);

/* True when at least one connection is established and usable. */
bool db_client_ready(const struct db_client *c);

/* True when a job's error says it never reached PostgreSQL (the client had no connection and
 * failed it at once): nothing of it can have been committed. Any other error of a job that was
 * sent (a connection lost under it) leaves its outcome unknown. */
bool db_error_never_sent(const struct db_error *err);

/* Closes every connection. Callbacks of work not yet finished fire with DB_E_CLOSED before this
 * returns. Never call it from inside one of the client's callbacks. */
void db_client_free(struct db_client *c);

/* ------------------------------------------------------------------------------------------ */
/* The authorization journal writer                                                            */

enum db_outcome {
    DB_OUTCOME_APPROVED,    /* issuer (or stand-in) approved */
    DB_OUTCOME_DECLINED,    /* issuer declined */
    DB_OUTCOME_REJECTED,    /* the switch refused it before the issuer (format, MAC, dup, route) */
    DB_OUTCOME_TIMEOUT,     /* issuer did not answer in time (91) */
    DB_OUTCOME_UNAVAILABLE, /* issuer link down (91) */
    DB_OUTCOME_ERROR,       /* internal error (96) */
    DB_OUTCOME_max
};

/* What a record written by the journal writer is. Each kind goes to its own table, and all the
 * records of one batch, whatever their kinds, are committed by one transaction. */
enum db_rec_kind {
    /* A journal row (switch.authorizations): what the terminal is answered. DB_CONFLICT when the
     * identity already holds the row of a request that reached an issuer (never overwritten); a
     * row of a request the switch refused itself is replaced by a newer one. */
    DB_REC_ANSWER,
    /* Write-ahead (switch.inflight): a request about to be forwarded to an issuer, with what its
     * reversal needs. DB_CONFLICT when the identity is taken — by a request in flight, or by a
     * journal row of a request that reached an issuer: the durable duplicate check. */
    DB_REC_INTENT,
    /* A reversal the switch owes an issuer (switch.reversal_queue, state pending). A reversal of
     * the same identity already queued counts as written (DB_OK). */
    DB_REC_REVERSAL,
    /* A stand-in advice the switch owes an issuer, or the reversal of one (switch.advice_queue,
     * migration 0014; switch/advice.c): reason "stand_in" is the advice itself (response_code
     * is the stand-in decision's DE 39), "terminal" / "withdrawn" / "recovery" its reversal.
     * auth_code (DE 38) is required. One of the same identity and kind already queued counts as
     * written (DB_OK). */
    DB_REC_ADVICE,
    DB_REC_max
};

#define DB_PAN_SEALED_MAX 48 /* db_pan_seal of a PAN of up to 20 digits */

/* A currency conversion as the issuer saw it (docs/fx.md): DE 6, DE 10, DE 51, kept with the
 * request in switch.inflight, switch.authorizations and switch.reversal_queue (migration 0009)
 * so that a reversal repeats it instead of converting again. All three are set, or none
 * (amount_minor -1: DE 49 was the card's billing currency, nothing converted). */
struct db_billing {
    int64_t amount_minor; /* DE 6, minor units of currency; -1 = no conversion */
    char rate[9];         /* DE 10, 8 digits; "" = none */
    int32_t currency;     /* DE 51, ISO 4217 numeric; -1 = none */
};

/* Sets b to "no conversion". */
void db_billing_none(struct db_billing *b);
/* True when b carries a conversion. */
bool db_billing_converted(const struct db_billing *b);

/* One record. Fixed-size, copied on submit: the caller may reuse it at once. Strings are
 * NUL-terminated; an empty optional string is stored as NULL. Numbers that are -1 are stored as
 * NULL. No PIN block, track data, CVV, key or clear PAN ever goes here (the PAN is masked,
 * hashed, and for INTENT/REVERSAL sealed). Fields not used by a kind are ignored. */
struct db_auth_record {
    enum db_rec_kind kind;
    char request_date[11];             /* "YYYY-MM-DD": partition key, see db_request_date() */
    char acquirer_id[12];              /* required */
    char terminal_id[9];               /* DE 41, exactly 8 printable characters, required */
    char stan[7];                      /* DE 11, 6 digits, required */
    char transmission_time[11];        /* DE 7, MMDDhhmmss, required */
    char mti[5];                       /* request MTI, 4 digits, required */
    char rrn[13];                      /* DE 37 */
    char issuer_id[33];                /* required for INTENT and REVERSAL */
    char issuer_stan[7];               /* STAN the switch used towards the issuer (idem) */
    char issuer_transmission_time[11]; /* DE 7 the switch sent to the issuer (DE 90 of reversals) */
    char processing_code[7];           /* DE 3 */
    int64_t amount_minor;              /* DE 4 in minor units, -1 = none */
    int32_t currency;                  /* ISO 4217 numeric (DE 49), -1 = none */
    struct db_billing billing;         /* DE 6/10/51 sent to the issuer (none: not converted) */
    char response_code[3];             /* ANSWER: DE 39 sent to the terminal */
    char auth_code[7];                 /* DE 38 */
    char pan_masked[20];               /* first 6, '*', last 4 (at_mask_pan) */
    uint8_t pan_hmac[32];              /* db_pan_hmac() of the PAN */
    bool has_pan_hmac;
    uint8_t pan_sealed[DB_PAN_SEALED_MAX]; /* INTENT, REVERSAL: db_pan_seal() of the PAN */
    uint8_t pan_sealed_len;
    /* ANSWER and REVERSAL: the same transaction deletes the request's switch.inflight row. Set
     * it on the record that settles a request this writer's INTENT announced: an ANSWER that
     * needs no reversal, or the REVERSAL of that request. Leave it clear on an ANSWER whose
     * request is being reversed: if the REVERSAL is lost, recovery still finds the row. */
    bool settle_inflight;
    char reason[16]; /* REVERSAL: why (switch.reversal_queue.reason); ANSWER: "stand_in" when
                      * switchd decided in the issuer's place (column stand_in), else "" */
    enum db_outcome outcome;
    char original_stan[7]; /* reversals: from DE 90 */
    char original_transmission_time[11];
    uint64_t created_us;  /* wall clock µs when the switch received the request, required */
    int32_t lat_total_us; /* per-hop latencies in µs, -1 = none */
    int32_t lat_mac_us;
    int32_t lat_pin_us;
    int32_t lat_issuer_us;
};

/* Clears rec: empty strings, -1 numbers. */
void db_auth_record_init(struct db_auth_record *rec);

/* Checks a record against the table's constraints, so that one bad record can never make a
 * whole batch fail. Returns 0 or DB_E_INVALID with the culprit field named in err. */
__attribute__((warn_unused_result)) int db_auth_record_check(const struct db_auth_record *rec,
                                                             struct db_error *err);

struct db_journal;

/* status: DB_OK (committed in PostgreSQL), DB_SPOOLED (fsync'd to the spool; it will be replayed
 * into PostgreSQL, exactly once thanks to the unique keys — for an INTENT this means durable but
 * not checked against the journal), DB_CONFLICT (see enum db_rec_kind: nothing written), or a
 * negative DB_E_* (not durable: DB_E_SQL for a record the database refused, DB_E_SPOOL,
 * DB_E_CLOSED). */
typedef void (*db_journal_cb)(void *arg, int status);

struct db_journal_opts {
    const char *conninfo;        /* NULL or "" = PG* environment */
    const char *spool_path;      /* required, e.g. var/switchd.journal.spool */
    unsigned connections;        /* connections with batches in flight; default 4 */
    unsigned batch_max;          /* at most N records per batch (transaction); default 256 */
    uint32_t batch_delay_us;     /* adaptive group commit: records go out as soon as a connection
                                    is free (a lone record at once: no timer on its path); those
                                    that arrive while every connection is busy form the next
                                    batch. T > 0 only: while a batch is in flight, a partial batch
                                    waits up to T µs for company. Default 0 (never waits) */
    unsigned queue_max;          /* records queued (not yet durable); default 65536 */
    unsigned queue_low;          /* drain callback below this after backpressure; queue_max/2 */
    uint32_t spool_sync_us;      /* first spooled record waits this long for company; 2000 */
    uint32_t reconnect_min_ms;   /* default 100 */
    uint32_t reconnect_max_ms;   /* default 5000 */
    uint32_t batch_timeout_ms;   /* a batch not committed by then: drop the connection, spool the
                                    batch (a hung server); default 5000 */
    const char *owner;           /* INTENT rows are written as this instance's (inflight.owner);
                                    required when INTENT records are submitted */
    void (*on_drain)(void *arg); /* backpressure released (queue fell below queue_low) */
    void *drain_arg;
};

/* Creates the writer, opens the spool (replaying any spool left by an earlier process once the
 * database is reachable) and starts connecting. Returns 0, DB_E_INVALID, DB_E_SPOOL or DB_E_SYS. */
__attribute__((warn_unused_result)) int db_journal_new(struct event_base *base,
                                                       const struct db_journal_opts *opts,
                                                       struct db_journal **out);

/* Queues a copy of rec. cb(arg, status) fires exactly once, from the loop, after the batch
 * holding the record has committed (DB_OK) or after it is fsync'd to the spool (DB_SPOOLED), or
 * with an error. Returns 0 if queued; DB_E_FULL when the queue is at queue_max (backpressure:
 * stop reading new requests; on_drain tells when to resume); DB_E_INVALID for a bad record
 * (err-free: use db_auth_record_check to learn why); DB_E_CLOSED while draining. cb is not
 * called when submit returns non-zero. Never blocks; no allocation per record (the record is
 * copied into a preallocated slot). */
__attribute__((warn_unused_result)) int db_journal_submit(struct db_journal *j,
                                                          const struct db_auth_record *rec,
                                                          db_journal_cb cb, void *arg);

/* True when the queue is full enough that callers should stop reading new requests (at or
 * above queue_max - batch_max); on_drain fires when it falls below queue_low again. */
bool db_journal_saturated(const struct db_journal *j);

struct db_journal_stats {
    uint64_t submitted, committed, spooled, replayed, failed, batches;
    uint64_t conflicts; /* INTENT or ANSWER records answered DB_CONFLICT */
    unsigned queued;    /* records not yet durable (waiting + in flight + awaiting spool fsync) */
    unsigned connected; /* connections up */
    bool db_up;
    bool spool_pending; /* the spool holds records not yet replayed */
};
void db_journal_get_stats(const struct db_journal *j, struct db_journal_stats *st);

/* Calls done(arg) from the loop, once, as soon as no record of a spool (one left by an earlier
 * process, or one of this outage) waits to be replayed: from then on PostgreSQL holds everything
 * this writer ever acknowledged. switchd waits for it before it settles its in-flight rows. */
void db_journal_when_replayed(struct db_journal *j, void (*done)(void *arg), void *arg);

/* True while a spool holds records PostgreSQL does not have yet: a lookup that finds nothing
 * then proves nothing. (One stat() call.) */
bool db_journal_replay_pending(const struct db_journal *j);

/* Stops accepting records and flushes everything queued (to PostgreSQL, or to the spool if it is
 * down), then calls done(arg) from the loop. Used for SIGTERM. */
void db_journal_drain(struct db_journal *j, void (*done)(void *arg), void *arg);

/* Frees the writer. Records not yet durable get their callback with DB_E_CLOSED first (drain
 * before to avoid that). Never call it from inside one of the writer's callbacks. */
void db_journal_free(struct db_journal *j);

/* ------------------------------------------------------------------------------------------ */
/* What switchd reads and changes in schema `switch` besides the journal: typed rows, so that   */
/* no SQL and no column number lives outside db/. Asynchronous on the client's loop; each call  */
/* is one job (one transaction); callbacks run once, from the loop; the rows they receive are   */
/* valid during the call only. Functions return 0, or DB_E_FULL / DB_E_SYS (no callback then). */

/* Reference data (issuers, BIN routes, terminals with their keys under the LMK). */
struct db_ref_issuer {
    char issuer_id[33];
    char link[33];         /* the issuer link's name in switchd's configuration */
    char zpk[50], zak[50]; /* under the LMK; "" when none or retired */
    bool enabled;
};
struct db_ref_route {
    char prefix[12];
    char issuer_id[33];
    int billing_currency;     /* ISO 4217 numeric the route's cards are billed in; 0 = DE 49's */
    char imk_ac[50], cvk[50]; /* card authentication keys under the LMK (0011); "" = none */
};
struct db_ref_terminal {
    char acquirer_id[12];
    char terminal_id[9];
    char key_scheme[12]; /* TPK, DUKPT-TDES, DUKPT-AES */
    char tpk[50], tak[50], bdk[50];
    bool enabled; /* the terminal and its acquirer */
};
struct db_refdata {
    const struct db_ref_issuer *issuers;
    size_t n_issuers;
    const struct db_ref_route *routes; /* enabled routes only */
    size_t n_routes;
    const struct db_ref_terminal *terminals;
    size_t n_terminals;
};
typedef void (*db_refdata_cb)(void *arg, const struct db_error *err, const struct db_refdata *ref);
__attribute__((warn_unused_result)) int db_refdata_load(struct db_client *c, db_refdata_cb cb,
                                                        void *arg);

/* A request's identity as the journal keys it (with mti: its class is the first three digits). */
struct db_request_id {
    char request_date[11]; /* db_request_date() of its DE 7 */
    char acquirer_id[12];
    char terminal_id[9];
    char stan[7];
    char transmission_time[11];
    char mti[5];
};

/* The journal row of a request, as a repeat or a reversal of it needs it. */
struct db_original {
    struct db_request_id id;
    char issuer_id[33];
    char issuer_stan[7]; /* "" when it never reached an issuer */
    char issuer_transmission_time[11];
    char rrn[13];
    char processing_code[7];
    int64_t amount_minor;
    int32_t currency;
    struct db_billing billing; /* the conversion it was forwarded with */
    char response_code[3];
    char auth_code[7];
    uint8_t pan_hmac[32];
    bool has_pan_hmac;
    bool reversed;      /* switch.reversal_queue holds a reversal of it */
    int64_t created_us; /* the row's created_at: when the switch received the request */
};
/* o is NULL when the journal has no row; in_flight says whether switch.inflight holds the
 * identity (a request forwarded and not answered yet, here or elsewhere). */
typedef void (*db_original_cb)(void *arg, const struct db_error *err, const struct db_original *o,
                               bool in_flight);
/* Looks id up: with mti_class ("020"…) that class exactly (a duplicate's original, a
 * completion's pre-auth); with NULL the newest of classes 010, 020 and 022 (a reversal's
 * original, a pre-auth completion included; id->mti is ignored). */
__attribute__((warn_unused_result)) int db_original_lookup(struct db_client *c,
                                                           const struct db_request_id *id,
                                                           const char *mti_class, db_original_cb cb,
                                                           void *arg);

/* switch.recover_inflight(owner): what a stopped instance left in flight is settled (see
 * docs/db.md). cb gets how many reversals were queued and how many rows needed none. */
typedef void (*db_recover_cb)(void *arg, const struct db_error *err, int64_t reversed,
                              int64_t settled);
__attribute__((warn_unused_result)) int db_recover_inflight(struct db_client *c, const char *owner,
                                                            db_recover_cb cb, void *arg);
/* switch.recover_transfers(owner), run after db_recover_inflight: the callback's reversed is the
 * number of transfers completed (their sender was journaled an approval), settled the number
 * failed (every leg that was approved queued for reversal). docs/transfers.md. */
__attribute__((warn_unused_result)) int db_recover_transfers(struct db_client *c, const char *owner,
                                                             db_recover_cb cb, void *arg);

/* The reversal queue: its pending rows (at start), and batched row changes. */
struct db_reversal {
    int64_t reversal_id;
    struct db_request_id id; /* the original's */
    char issuer_id[33];
    char issuer_stan[7];
    char issuer_transmission_time[11];
    char rrn[13];
    char processing_code[7];
    char auth_code[7];
    char reason[16];
    int64_t amount_minor;
    int32_t currency;
    struct db_billing billing; /* the original's conversion: the reversal repeats it */
    unsigned attempts;
    uint8_t pan_sealed[DB_PAN_SEALED_MAX]; /* db_pan_open() it */
    uint8_t pan_sealed_len;
};
typedef void (*db_reversals_cb)(void *arg, const struct db_error *err,
                                const struct db_reversal *rows, size_t n);
__attribute__((warn_unused_result)) int db_reversals_pending(struct db_client *c,
                                                             db_reversals_cb cb, void *arg);

/* Several instances (migration 0016): renews owner's lease (lease_ms) and returns the pending
 * reversals it takes over — unclaimed, or claimed by an instance whose lease expired — and with
 * all (its first claim after a start) also those it holds already. */
__attribute__((warn_unused_result)) int db_reversals_claim(struct db_client *c, const char *owner,
                                                           uint64_t lease_ms, uint64_t takeover_ms,
                                                           bool all, db_reversals_cb cb, void *arg);

enum db_reversal_state { DB_REVERSAL_PENDING, DB_REVERSAL_ACKED, DB_REVERSAL_FAILED };
struct db_reversal_change {
    struct db_request_id id;
    unsigned attempts;
    enum db_reversal_state state;
    char response_code[3]; /* of the answer that settled it ("" = none) */
};
typedef void (*db_done_cb)(void *arg, const struct db_error *err);
/* One UPDATE (one transaction) for n changes (1..): rows still pending take the attempt count
 * and state; a row already settled stays as it is (a retried batch changes nothing twice). */
__attribute__((warn_unused_result)) int db_reversals_update(struct db_client *c,
                                                            const struct db_reversal_change *ch,
                                                            size_t n, db_done_cb cb, void *arg);

/* switch.release_instance(owner) (migration 0016): the lease of an instance that stopped cleanly
 * ends now, so that the others take its queue rows at their next claim. */
__attribute__((warn_unused_result)) int db_release_instance(struct db_client *c, const char *owner,
                                                            db_done_cb cb, void *arg);

/* switch.recover_advices(owner) (migration 0014), run after the journal spool is replayed and
 * before db_advices_pending: every stand-in advice of this instance whose approval the journal
 * does not hold gets its reversal queued. The callback's reversed is how many; settled is 0. */
__attribute__((warn_unused_result)) int db_recover_advices(struct db_client *c, const char *owner,
                                                           db_recover_cb cb, void *arg);

/* The advice queue (switch.advice_queue, switch/advice.c): stand-in advices and the reversals of
 * advices, pending rows loaded at start in queue order (queued_at), and row changes. */
struct db_advice {
    int64_t advice_id;
    bool is_reversal;        /* kind 'reversal': the reversal of the advice of this identity */
    struct db_request_id id; /* the stand-in request's */
    char issuer_id[33];
    char issuer_stan[7];               /* the advice's DE 11 (a reversal's DE 90) */
    char issuer_transmission_time[11]; /* the advice's DE 7 (a reversal's DE 90) */
    char rrn[13];
    char processing_code[7];
    char auth_code[7];   /* DE 38: the stand-in approval code */
    char stand_in_rc[3]; /* DE 39 of the stand-in decision (advices) */
    char reason[16];
    int64_t amount_minor;
    int32_t currency;
    struct db_billing billing;
    unsigned attempts;
    uint64_t queued_us; /* switchd's wall clock when it was decided: the queue's order */
    uint8_t pan_sealed[DB_PAN_SEALED_MAX];
    uint8_t pan_sealed_len;
};
typedef void (*db_advices_cb)(void *arg, const struct db_error *err, const struct db_advice *rows,
                              size_t n);
/* Several instances (migration 0016): renews owner's lease and gives cb the issuers whose
 * advices this instance sends (among its own issuer links, issuers: those it held, and those
 * no live instance held, taken now). */
#define DB_MAX_ISSUER_IDS 64
typedef void (*db_issuers_cb)(void *arg, const struct db_error *err, const char (*ids)[33],
                              size_t n);
__attribute__((warn_unused_result)) int
db_advice_issuers_claim(struct db_client *c, const char *owner, uint64_t lease_ms,
                        const char *const *issuers, size_t n_issuers, db_issuers_cb cb, void *arg);

/* The pending rows, oldest first (queued_at, an advice before its reversal, advice_id). */
__attribute__((warn_unused_result)) int db_advices_pending(struct db_client *c, db_advices_cb cb,
                                                           void *arg);
/* One row change: the row of (id, kind) still pending takes attempts and state (with the
 * answer's response code); a row already settled stays as it is. */
__attribute__((warn_unused_result)) int
db_advices_update(struct db_client *c, const struct db_request_id *id, bool is_reversal,
                  unsigned attempts, enum db_reversal_state state, const char *response_code,
                  db_done_cb cb, void *arg);

/* ------------------------------------------------------------------------------------------ */
/* Wallet-to-wallet transfers (switch.transfers, migration 0010; docs/transfers.md).            */

/* What switch.transfer_begin needs: the sender's request, both wallets (PANs only hashed,
 * masked and sealed), the amount and both currencies, and the legs' request date and DE 7. */
struct db_transfer_begin {
    struct db_request_id id; /* the sender's request (id.mti unused) */
    const char *owner;       /* the switchd instance */
    char sender_issuer[33], recipient_issuer[33];
    char sender_masked[20], recipient_masked[20];
    uint8_t sender_hmac[32], recipient_hmac[32];
    uint8_t sender_sealed[DB_PAN_SEALED_MAX], recipient_sealed[DB_PAN_SEALED_MAX];
    uint8_t sender_sealed_len, recipient_sealed_len;
    char msisdn[17]; /* "" when DE 103 named a PAN */
    int64_t amount_minor;
    int currency, recipient_currency;
    char leg_request_date[11], leg_transmission_time[11];
};
/* Its answer: response_code "00" with a new transfer_id and its fee; "57", "61" or "12" with no
 * row (reason says why); "94" when the sender's identity has a row already (transfer_id, state
 * and, once known, the answer it gave: answer_code, auth_code, recipient amount, DE 10). */
struct db_transfer_begun {
    int64_t transfer_id; /* -1 = none */
    char response_code[3];
    int64_t fee_minor;
    char state[12];
    char answer_code[3];
    char auth_code[7];
    int64_t recipient_amount_minor; /* -1 = not known */
    char conversion_rate[9];
    int recipient_currency; /* -1 = not known */
    char reason[48];
    int64_t received_us; /* "94": when the switch received the sender's request (0 = not known) */
};
typedef void (*db_transfer_begin_cb)(void *arg, const struct db_error *err,
                                     const struct db_transfer_begun *b);
__attribute__((warn_unused_result)) int db_transfer_begin(struct db_client *c,
                                                          const struct db_transfer_begin *in,
                                                          db_transfer_begin_cb cb, void *arg);

/* A change of a transfer's row: state and what became known ("" / -1 / NULL = unchanged). A
 * row in a final state (completed, failed, reversed) does not change, except completed ->
 * reversed. */
struct db_transfer_change {
    int64_t transfer_id;
    const char *state; /* "aft", "completed", "failed", "reversed" */
    char aft_rc[3], oct_rc[3], auth_code[7], response_code[3];
    const char *failed_leg; /* NULL, "aft", "oct" or "xfr" */
    int64_t recipient_amount_minor;
    char conversion_rate[9];
};
__attribute__((warn_unused_result)) int db_transfer_update(struct db_client *c,
                                                           const struct db_transfer_change *ch,
                                                           db_done_cb cb, void *arg);
/* A transfer whose switch.transfer_begin failed without an answer (the connection was lost: the
 * row may have been committed all the same, and its sender was told 96) is made `failed` (96,
 * failed_leg 'xfr') by its sender's identity: only while it is `started`, owned by owner, and
 * no leg of it is in switch.inflight or the journal (none can be: its id was never known). */
__attribute__((warn_unused_result)) int db_transfer_abandon(struct db_client *c,
                                                            const struct db_request_id *sender,
                                                            const char *owner, db_done_cb cb,
                                                            void *arg);

/* A transfer's row, as a reversal or a repeat of the sender's request needs it. */
struct db_transfer_row {
    int64_t transfer_id;
    char state[12];
    uint8_t recipient_sealed[DB_PAN_SEALED_MAX];
    uint8_t recipient_sealed_len;
    char leg_request_date[11], leg_transmission_time[11];
    int64_t fee_minor;
    int64_t recipient_amount_minor; /* -1 = not known */
    int recipient_currency;
    char conversion_rate[9], response_code[3], auth_code[7], failed_leg[4];
};
/* t is NULL when the sender's identity has no transfer. */
typedef void (*db_transfer_find_cb)(void *arg, const struct db_error *err,
                                    const struct db_transfer_row *t);
__attribute__((warn_unused_result)) int db_transfer_find(struct db_client *c,
                                                         const struct db_request_id *sender,
                                                         db_transfer_find_cb cb, void *arg);

/* The identity of a transfer's leg (the AFT, or with oct the OCT): the sender's acquirer,
 * DE 41 'XA'/'XO' + six digits of transfer_id / 10^6, STAN transfer_id mod 10^6, and the legs'
 * request date and DE 7 (as switch.transfer_leg_terminal/_stan compute them). */
void db_transfer_leg_id(int64_t transfer_id, bool oct, const char *acquirer,
                        const char *leg_request_date, const char *leg_transmission_time,
                        struct db_request_id *id);

/* The sealed PAN a mobile number stands for (NULL when the directory has none). */
typedef void (*db_alias_cb)(void *arg, const struct db_error *err, const uint8_t *sealed,
                            size_t sealed_len);
__attribute__((warn_unused_result)) int db_alias_lookup(struct db_client *c, const char *msisdn,
                                                        db_alias_cb cb, void *arg);
/* Registers (or replaces) a mobile number's wallet card, blocking (atlas-db alias). */
__attribute__((warn_unused_result)) int db_alias_put(const char *conninfo, const char *msisdn,
                                                     const char *pan_masked,
                                                     const uint8_t pan_hmac[32],
                                                     const uint8_t *sealed, size_t sealed_len,
                                                     struct db_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Currency conversion rates (switch.fx_rates, migration 0007; docs/fx.md). The arithmetic is   */
/* libatlas_fx's; here they are rows: exact decimals as text, times as seconds.                */

/* One period of one ordered pair. */
struct db_fx_rate {
    int from_currency, to_currency; /* ISO 4217 numeric (DE 49 → DE 51) */
    char rate[32];                  /* billing units per transaction unit, exact ("10.892345") */
    char spread_pct[32];            /* percent ("1.0") */
    int64_t valid_from;             /* seconds since the epoch (UTC), inclusive */
    int64_t valid_to;               /* exclusive; -1 = open (until a later rate replaces it) */
    int64_t loaded_at;              /* reads only: when it was loaded */
    char source[128];               /* reads only: the file it came from */
};

/* Which rows a read returns, relative to a time `at`. */
enum db_fx_scope {
    DB_FX_ALL,         /* every period ever loaded (the history) */
    DB_FX_IN_FORCE,    /* the periods in force at `at` (at most one per pair) */
    DB_FX_NOT_EXPIRED, /* in force at `at` or later: what switchd keeps in memory, so that a
                          period loaded ahead takes over at its valid_from without a reload */
};

/* Reads rates (blocking, one connection of its own), ordered by pair and valid_from, into a
 * fresh array the caller frees (*rows may be NULL when *n is 0). 0, DB_E_CONN, DB_E_SCHEMA
 * (older than 7), DB_E_SQL or DB_E_SYS with err filled. */
__attribute__((warn_unused_result)) int db_fx_rates_read(const char *conninfo,
                                                         enum db_fx_scope scope, int64_t at,
                                                         struct db_fx_rate **rows, size_t *n,
                                                         struct db_error *err);

/* The same read as one job of the asynchronous client, for switchd at start and on SIGHUP:
 * cb gets the rows (valid during the call) or an error. 0, or DB_E_FULL / DB_E_SYS (no
 * callback then). */
typedef void (*db_fx_rates_cb)(void *arg, const struct db_error *err, const struct db_fx_rate *rows,
                               size_t n);
__attribute__((warn_unused_result)) int db_fx_rates_load(struct db_client *c,
                                                         enum db_fx_scope scope, int64_t at,
                                                         db_fx_rates_cb cb, void *arg);

/* What a write did, row by row. */
struct db_fx_write_report {
    size_t inserted;  /* new periods */
    size_t unchanged; /* rows identical to a period already loaded (a file loaded twice) */
    size_t closed;    /* open periods that a new row ended at its valid_from */
    size_t failed;    /* on error: the index of the row refused, or SIZE_MAX (not a row's fault) */
};

/* Writes n rates in ONE transaction — all of them or none — with source (the file name, for the
 * audit). Under a lock that makes concurrent writes wait for each other, each row is either
 * identical to a period already there (unchanged), or new; a new open row ends the pair's open
 * period at its valid_from when that period began earlier and valid_from is not in the past
 * (a rate that was in force is never rewritten); any other overlap with a period already there
 * is refused (the exclusion constraint is the last word). Rows within one call must not
 * overlap each other (libatlas_fx checks a file first). 0, or DB_E_CONN, DB_E_SCHEMA, DB_E_SQL,
 * DB_E_INVALID (a refused row: rep->failed says which, err why), DB_E_SYS. */
__attribute__((warn_unused_result)) int
db_fx_rates_write(const char *conninfo, const struct db_fx_rate *rows, size_t n, const char *source,
                  struct db_fx_write_report *rep, struct db_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Settlement (atlas-settle, docs/settle.md): the journal and the reversal queue of one business */
/* day, aggregated in PostgreSQL per acquirer, issuer and currency.                             */

/* What one (acquirer, issuer, currency) did in a window [start, end) of receipt times. Amounts
 * are minor units of `currency`, never negative. "Approved" rows are the approved 0200/0220
 * requests received in the window, by processing code: debits (00, 01, 09, 10) and credits (20
 * refund, 26 OCT); holds are the approved 0100s (a count: a hold is not settled money). A
 * reversal is one per original approved 0200/0220 (its reversal_queue row), dated by the first
 * terminal reversal (0400/0420 acknowledged) naming it or else by the queue row: "reversed" when
 * the issuer acknowledged it or a terminal reversal was acknowledged, "pending" when neither,
 * "failed" when the issuer refused it (the approval stands). */
/* Which side of its requests a pair's figures are. A request the switch converted (DE 6/10/51,
 * docs/fx.md) settles in two currencies: the acquirer is owed DE 4 in DE 49, the issuer pays
 * DE 6 in DE 51; its figures come as two pairs, one per side. */
enum db_settle_side {
    DB_SETTLE_BOTH,     /* not converted: the same amount and currency for both */
    DB_SETTLE_ACQUIRER, /* converted, the acquirer's side: DE 4 in DE 49 */
    DB_SETTLE_ISSUER,   /* converted, the issuer's side: DE 6 in DE 51 */
};

struct db_settle_pair {
    char acquirer_id[12]; /* DE 32 */
    char issuer_id[33];   /* "" when the journal has none (answered by the switch itself) */
    int currency;         /* ISO 4217 numeric: DE 49, or DE 51 on the issuer's side */
    enum db_settle_side side;
    int64_t holds;
    int64_t debits, debit_amount, credits, credit_amount;
    int64_t rev_debits, rev_debit_amount, rev_credits, rev_credit_amount;
    int64_t pending, pending_amount, failed, failed_amount;
};

/* Reads the pairs of [start_us, end_us) (µs since the epoch) in one statement on a connection
 * of its own, ordered by acquirer, issuer, currency (byte order) and side, into a fresh array the
 * caller frees (*rows may be NULL when *n is 0). 0, DB_E_CONN, DB_E_SCHEMA (older than 9),
 * DB_E_SQL or DB_E_SYS with err filled. */
__attribute__((warn_unused_result)) int db_settle_read(const char *conninfo, int64_t start_us,
                                                       int64_t end_us, struct db_settle_pair **rows,
                                                       size_t *n, struct db_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Schema and migrations (blocking: for tools and daemon start-up, before the loop runs)       */

/* db_schema_check on a connection of its own to conninfo ("" = PG* environment), closed after:
 * for daemons at start-up. 0, DB_E_SCHEMA or DB_E_CONN with err filled. */
__attribute__((warn_unused_result)) int db_schema_check_at(const char *conninfo, int required,
                                                           struct db_error *err);

/* db_migrate (db_internal.h: numbered migrations of dir not yet applied, in order, each in its own
 * transaction, under an advisory lock) on a connection of its own to conninfo. 0, DB_E_INVALID,
 * DB_E_SQL or DB_E_CONN with err filled. */
__attribute__((warn_unused_result)) int db_migrate_at(const char *conninfo, const char *dir,
                                                      int *applied, void (*log)(const char *line),
                                                      struct db_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Array literals                                                                             */

/* A PostgreSQL array literal ('{"a","b",NULL}') built element by element, one per column of a
 * multi-row statement (INSERT/UPDATE … FROM unnest(…), or = ANY($1)). Its buffer is kept across
 * uses; after db_array_close, a->p is the parameter. Functions return 0, or -1 when out of
 * memory; a failure sticks until the next reset, so a caller may check db_array_close alone. */
struct db_array {
    char *p;
    size_t n, cap;
    bool failed;
};
int db_array_reset(struct db_array *a);
int db_array_elem(struct db_array *a, const char *s, bool null);
int db_array_opt(struct db_array *a, const char *s); /* NULL when s is "" */
int db_array_num(struct db_array *a, int64_t v);     /* NULL when v < 0 */
int db_array_close(struct db_array *a);
void db_array_free(struct db_array *a);

/* ------------------------------------------------------------------------------------------ */
/* PAN helpers (OpenSSL)                                                                      */

/* out = HMAC-SHA256(key, PAN digits). key_len >= 16 (the key comes from config or environment
 * and is never logged). Returns 0 or DB_E_INVALID (PAN not 12..19 digits, short key). */
__attribute__((warn_unused_result)) int
db_pan_hmac(const uint8_t *key, size_t key_len, const char *pan, size_t pan_len, uint8_t out[32]);

/* The same HMAC with the key's inner and outer pads hashed once: a daemon
 * hashes every PAN under one key, and the one-shot HMAC() costs a provider
 * fetch and a context per call (measured ~2.8 µs against ~0.2 µs). The key
 * is wiped once the pads are hashed. One hasher per thread. */
struct db_pan_hasher;
__attribute__((warn_unused_result)) int db_pan_hasher_new(const uint8_t *key, size_t key_len,
                                                          struct db_pan_hasher **out);
/* out = HMAC-SHA256(key, PAN digits), equal to db_pan_hmac(). 0, DB_E_INVALID or DB_E_SYS. */
__attribute__((warn_unused_result)) int db_pan_hasher_mac(struct db_pan_hasher *h, const char *pan,
                                                          size_t pan_len, uint8_t out[32]);
void db_pan_hasher_free(struct db_pan_hasher *h);

/* Seals a PAN for switch.reversal_queue.pan_sealed: AES-256-GCM under key (32 bytes), random
 * 12-byte nonce; out = nonce || ciphertext || 16-byte tag (pan_len + 28 bytes, cap >= that).
 * Returns the length written or DB_E_INVALID / DB_E_SYS. */
__attribute__((warn_unused_result)) int db_pan_seal(const uint8_t key[32], const char *pan,
                                                    size_t pan_len, uint8_t *out, size_t cap);

/* Opens a sealed PAN into pan (cap >= 20, NUL-terminated). Returns its length, or DB_E_INVALID
 * when the tag does not verify (wrong key, tampered) or the input is malformed. */
__attribute__((warn_unused_result)) int db_pan_open(const uint8_t key[32], const uint8_t *in,
                                                    size_t in_len, char *pan, size_t cap);

/* The journal's partition date for a request: the UTC date of its DE 7 (MMDDhhmmss), with the
 * year chosen so that the date is nearest to now_us (wall clock µs); a DE 7 that is not a valid
 * date falls back to the UTC date of now_us. Writes "YYYY-MM-DD" into out (>= 11 bytes). */
void db_request_date(const char *de7, uint64_t now_us, char out[11]);

#endif
