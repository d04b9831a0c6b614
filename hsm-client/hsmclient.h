/* Async client for hsm-sim (or a real payShield): a small pool of TCP
 * connections to one HSM, commands pipelined on each, answers matched to
 * requests by the message header, a timeout per request, reconnection with
 * backoff, and a bounded queue that tells the caller when to stop reading.
 *
 *   struct hsm_client *c = hsm_client_new(base, &cfg, err, sizeof err);
 *   if (hsm_client_submit(c, "CA...", n, on_answer, txn) != 0) ... // queue full
 *   void on_answer(void *txn, int status, const char *resp, size_t len)
 *       // status HSM_CLIENT_OK: resp = "CB00..." (response code first)
 *
 * Callbacks run from the event loop, never inside hsm_client_submit(). One
 * thread: the client belongs to the event_base it was created with. */
#ifndef ATLAS_HSMCLIENT_H
#define ATLAS_HSMCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct hsm_client;
struct at_tls;

/* Status passed to a request's callback, and errors of hsm_client_submit(). */
enum hsm_client_status {
    HSM_CLIENT_OK = 0,            /* resp/len hold the answer */
    HSM_CLIENT_TIMEOUT = -1,      /* no answer within timeout_ms */
    HSM_CLIENT_DISCONNECTED = -2, /* the connection carrying it dropped */
    HSM_CLIENT_SHUTDOWN = -3,     /* hsm_client_free() ran with it pending */
    HSM_CLIENT_EFULL = -4,        /* submit: queue_limit requests outstanding */
    HSM_CLIENT_EINVAL = -5,       /* submit: empty or longer than the frame maximum */
};

/* A callback gets the answer starting at the response code ("CB00...");
 * resp is valid only during the call. It may submit new requests, but must
 * not call hsm_client_free(). */
typedef void (*hsm_client_cb)(void *arg, int status, const char *resp, size_t len);

/* Called (from the loop, never inside submit) when the outstanding count
 * crosses high_watermark (busy = true) and later falls to low_watermark. */
typedef void (*hsm_client_busy_cb)(void *arg, bool busy);

struct hsm_client_config {
    const char *address;        /* "127.0.0.1:1500" (numeric host or localhost) */
    unsigned connections;       /* pool size; default 2 */
    unsigned header_len;        /* payShield header length, >= 4; default 4 */
    unsigned pipeline;          /* max requests in flight per connection (power of 2, <= 4096);
                                   default 64 */
    unsigned queue_limit;       /* max outstanding (queued + in flight); default 4096 */
    unsigned high_watermark;    /* default 3/4 of queue_limit */
    unsigned low_watermark;     /* default 1/4 of queue_limit */
    unsigned timeout_ms;        /* per request; default 2000 */
    unsigned reconnect_min_ms;  /* first retry delay; default 100 */
    unsigned reconnect_max_ms;  /* backoff cap; default 5000 */
    unsigned max_frame;         /* largest frame body; default 8192 */
    struct at_tls *tls;         /* TLS to the HSM (common/tls.h, a client context); NULL =
                                   plain TCP. Read at each (re)connect: at_tls_reload()
                                   applies to the connections made after it */
    hsm_client_busy_cb busy_cb; /* optional */
    void *busy_arg;
};

/* Counters for metrics (cumulative except the gauges). */
struct hsm_client_stats {
    uint64_t submitted, answered, timeouts, disconnects, reconnects;
    unsigned queued;    /* gauge: waiting for a connection */
    unsigned in_flight; /* gauge: sent, not yet answered */
    unsigned connected; /* gauge: connections up */
};

/* Creates the client and starts connecting every connection of the pool
 * (a failed connect is retried with backoff; requests wait in the queue).
 * Returns NULL with a sentence in err on a bad configuration. The caller owns
 * the client and frees it with hsm_client_free() before the event_base. */
struct hsm_client *hsm_client_new(struct event_base *base, const struct hsm_client_config *cfg,
                                  char *err, size_t errcap);

/* Closes the connections and calls every pending callback with
 * HSM_CLIENT_SHUTDOWN (synchronously, from within this call). libevent
 * finalizes the freed bufferevents, and so closes their sockets, on the event
 * loop's next turn (or in event_base_free()). */
void hsm_client_free(struct hsm_client *c);

/* Queues one command (command code + fields, without length prefix or
 * header; the bytes are copied). cb(arg, ...) is called exactly once, later,
 * from the event loop. Returns 0, HSM_CLIENT_EFULL (queue_limit reached: the
 * caller should stop reading its own clients until the busy callback says
 * otherwise) or HSM_CLIENT_EINVAL. */
__attribute__((warn_unused_result)) int hsm_client_submit(struct hsm_client *c, const char *cmd,
                                                          size_t len, hsm_client_cb cb, void *arg);

/* True while the outstanding count is above the high watermark (until it
 * falls to the low watermark). */
bool hsm_client_busy(const struct hsm_client *c);

void hsm_client_get_stats(const struct hsm_client *c, struct hsm_client_stats *st);

#define HSM_CLIENT_MUST_USE __attribute__((warn_unused_result))

/* ---- Command builders for the switch and the issuer simulator ----
 * Each writes one command (code + fields, ready for hsm_client_submit) into
 * buf and returns its length, or -1 if a field has the wrong shape or buf
 * (cap bytes) is too small. Keys are as held by the caller: encrypted under
 * the LMK, with their scheme letter ("U…", "T…") or 16 hex for single
 * length. Accounts are the 12 right-most PAN digits excluding the check
 * digit (hsm_client_account12() computes it). Format codes are payShield's
 * ("01" ISO 9564 format 0, "03" IBM 3624, "47"/"48" ISO formats 3/4, ...). */

/* 12 right-most digits of pan excluding the check digit into out[13].
 * Returns 0, or -1 if pan has fewer than 13 digits or a non-digit. */
__attribute__((warn_unused_result)) int hsm_client_account12(const char *pan, char out[13]);

/* CA: PIN block from TPK to ZPK. */
HSM_CLIENT_MUST_USE int hsm_client_build_ca(char *buf, size_t cap, const char *tpk, const char *zpk,
                                            const char *pin_block, const char *src_fmt,
                                            const char *dst_fmt, const char *account12);
/* CC: PIN block from ZPK to ZPK. */
HSM_CLIENT_MUST_USE int hsm_client_build_cc(char *buf, size_t cap, const char *src_zpk,
                                            const char *dst_zpk, const char *pin_block,
                                            const char *src_fmt, const char *dst_fmt,
                                            const char *account12);
/* CI (single-DES/TDES DUKPT per ThalesCore) or G0 (TDES DUKPT, source format
 * too): PIN block from a DUKPT BDK to a ZPK. ksn is 20 hex (KSN descriptor
 * "605" is used). g0 selects the command. */
HSM_CLIENT_MUST_USE int hsm_client_build_dukpt(char *buf, size_t cap, bool g0, const char *bdk,
                                               const char *zpk, const char *ksn,
                                               const char *pin_block, const char *dst_fmt,
                                               const char *account12);
/* X0 (hsm-sim extension): PIN block from an AES DUKPT BDK (X9.24-3) to a ZPK;
 * ksn is 24 hex, pin_block 32 hex (ISO format 4), pan the full PAN. */
HSM_CLIENT_MUST_USE int hsm_client_build_x0(char *buf, size_t cap, const char *bdk, const char *zpk,
                                            const char *ksn, const char *pin_block,
                                            const char *dst_fmt, const char *pan);
/* EC/DC: verify a PIN by Visa PVV under ZPK (zone = true) or TPK. */
HSM_CLIENT_MUST_USE int hsm_client_build_pvv_verify(char *buf, size_t cap, bool zone,
                                                    const char *pin_key, const char *pvk,
                                                    const char *pin_block, const char *fmt,
                                                    const char *account12, unsigned pvki,
                                                    const char *pvv);
/* EA/DA: verify a PIN by IBM 3624 offset under ZPK (zone = true) or TPK. */
HSM_CLIENT_MUST_USE int hsm_client_build_ibm_verify(char *buf, size_t cap, bool zone,
                                                    const char *pin_key, const char *pvk,
                                                    const char *pin_block, const char *fmt,
                                                    unsigned check_len, const char *account12,
                                                    const char *dectab, const char *vdata,
                                                    const char *offset);
/* M6 / M8: generate / verify the full 8-byte ISO 9797-1 alg 3 (X9.19) MAC,
 * padding 1 (16H), over data (sent as binary, input format 0) with a TAK
 * ("003") or ZAK ("008"). mac (M8) is 16 hex. */
HSM_CLIENT_MUST_USE int hsm_client_build_m6(char *buf, size_t cap, const char *key_type,
                                            const char *key, const uint8_t *data, size_t len);
HSM_CLIENT_MUST_USE int hsm_client_build_m8(char *buf, size_t cap, const char *key_type,
                                            const char *key, const uint8_t *data, size_t len,
                                            const char *mac);
/* The MAC command of a message's MAC as the daemons hold it (8 raw bytes): M6 generating the
 * MAC of data when verify is NULL, else M8 verifying that the 8 bytes at verify are the MAC of
 * data. Same layout and key types as hsm_client_build_m6/m8. */
HSM_CLIENT_MUST_USE int hsm_client_build_mac(char *buf, size_t cap, const char *key_type,
                                             const char *key, const uint8_t *data, size_t len,
                                             const uint8_t *verify);
/* CY: verify a Visa CVV / CVV2 (service code "000" for CVV2) with a CVK pair; cvv 3 digits, pan
 * 12-19 digits, expiry YYMM. */
HSM_CLIENT_MUST_USE int hsm_client_build_cy(char *buf, size_t cap, const char *cvk, const char *cvv,
                                            const char *pan, const char *expiry, const char *svc);
/* KQ: mode '0' verify the ARQC, '1' verify and generate the ARPC (method 1), '2' ARPC only;
 * scheme '0' AC key = ICC MK (Visa CVN 10), '2' EMV common session key from the ATC (CVN 18);
 * pad '2' EMV 80 00.. padding, '1' zeros (sent as hsm-sim's '#' option field); imk the MK-AC
 * under the LMK; pan 12-19 digits and psn 2 digits (option A's PAN ‖ PSN); atc, un, data (at
 * most 255 bytes) and arqc raw bytes; arc the 2 characters of the response code (modes 1-2). */
HSM_CLIENT_MUST_USE int hsm_client_build_kq(char *buf, size_t cap, char mode, char scheme, char pad,
                                            const char *imk, const char *pan, const char *psn,
                                            const uint8_t atc[2], const uint8_t un[4],
                                            const uint8_t *data, size_t len, const uint8_t arqc[8],
                                            const char *arc);

/* ---- Answer parsers (resp/len as passed to the callback) ---- */

/* The answer's error code (0..99) if resp is "<expected response code><2
 * digits>..." for the command code cmd (e.g. "CA" expects "CB"); -1 if the
 * answer is for another command (including payShield's "ZZ") or malformed. */
HSM_CLIENT_MUST_USE int hsm_client_resp_error(const char *cmd, const char *resp, size_t len);

/* For a successful PIN translation answer (CB, CD, CJ, G1, X1: PIN length 2N
 * ‖ PIN block 16H ‖ format 2N): copies the PIN block (16 hex + NUL) and the
 * format code (2 + NUL). Returns the PIN length (4..12) or -1. */
HSM_CLIENT_MUST_USE int hsm_client_parse_pin(const char *cmd, const char *resp, size_t len,
                                             char block[17], char fmt[3]);

/* For a successful M7 answer: copies the MAC (8 or 16 hex + NUL). Returns its
 * length in characters or -1. */
HSM_CLIENT_MUST_USE int hsm_client_parse_mac(const char *resp, size_t len, char mac[17]);

/* For a successful M7 answer carrying the full 16H MAC (what hsm_client_build_m6 asks for): its
 * 8 bytes into mac. 0, or -1 for an error code, another answer, an 8H MAC or a malformed one. */
HSM_CLIENT_MUST_USE int hsm_client_parse_mac8(const char *resp, size_t len, uint8_t mac[8]);

#endif
