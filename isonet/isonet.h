/* isonet.h — one layer for the MAC-protected ISO 8583 traffic of Atlas's links: which field
 * carries a message's MAC and where its bytes sit once packed, DE 90 (original data elements)
 * as a struct, the response MTI of a request, and the adapter that carries ISO frames on an
 * at_stream. switchd, issuer-sim, acquirer-sim and the benchmarks' null issuer all call it, so
 * the two ends of every link apply the same rules. Pure except isonet_send(); no allocation. */
#ifndef ATLAS_ISONET_H
#define ATLAS_ISONET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iso8583.h"

#define ISONET_MUST_CHECK __attribute__((warn_unused_result))

/* ---------------------------------------------------------------------------------------------
 * MAC. The MAC is the last field of a message: DE 64 when the message has no secondary bitmap,
 * DE 128 when it has one (ISO 8583:1987 and :1993; README, "Acquirer interface"). It is 8 bytes
 * — fixed b 8 in the dialect, 16 hex characters in ascii87, 8 raw bytes in the binary dialects —
 * computed over the packed message from the first byte of the MTI up to the byte before the
 * MAC field's data (bitmaps included, with the MAC field's bit set).
 */
#define ISONET_MAC_LEN 8

/* The MAC field m carries, or is to carry: 128 when m has a secondary bitmap (a field of
 * 65..128 is present, or ISO_MSG_SECONDARY is set — as unpacking sets it for every message that
 * arrived with one), else 64. ISO_E_UNDEFINED for a message with a tertiary bitmap: a MAC in
 * DE 128 would not be its last field, and Atlas's links carry none. */
ISONET_MUST_CHECK int isonet_mac_field(const struct iso_msg *m);

/* Makes m carry a MAC: drops DE 64 and DE 128 (a copied request's MAC), then sets the field
 * isonet_mac_field() names to 8 zero bytes (a view of static memory), the placeholder patched
 * once m is packed. Returns that field (64 or 128) or a negative ISO error. */
ISONET_MUST_CHECK int isonet_mac_reserve(struct iso_msg *m);

/* Where the MAC of a packed message sits. */
struct isonet_mac {
    int field;            /* 64 or 128 */
    size_t off;           /* first byte of the field in the packed message: the MAC input is
                             packed[0..off) */
    size_t wire;          /* bytes of the field on the wire: 16 (hex) or 8 (binary) */
    const uint8_t *value; /* the 8 bytes m holds in the field (a received message's MAC);
                             valid as long as m's views are */
};

/* Finds the MAC of m, which was packed (or received) as len bytes in dialect d. The field
 * isonet_mac_field() names must be present, 8 bytes and the last field, and d must define it as
 * fixed b 8 sent as hex or binary. Returns 0 with *at filled, or a negative ISO error with
 * at->field still naming the field the rule expects (0 when none): ISO_E_UNDEFINED (no MAC
 * there, or not the last field, or a tertiary bitmap), ISO_E_SPEC (the dialect's field is not
 * b 8 hex or binary), ISO_E_TRUNCATED (len shorter than the field). */
ISONET_MUST_CHECK int isonet_mac_locate(const struct iso_dialect *d, const struct iso_msg *m,
                                        size_t len, struct isonet_mac *at);

/* isonet_mac_reserve(m), iso_pack(d, m, out, cap, outlen, err), then isonet_mac_locate(): the
 * whole of building a message whose MAC the caller computes over out[0..at->off) and writes with
 * isonet_mac_patch(). Returns 0, or a negative ISO error with err filled (never a field value). */
ISONET_MUST_CHECK int isonet_pack_mac(const struct iso_dialect *d, struct iso_msg *m, uint8_t *out,
                                      size_t cap, size_t *outlen, struct isonet_mac *at,
                                      struct iso_err *err);

/* Writes the 8-byte mac over the MAC field of packed in its wire form (hex or raw). */
void isonet_mac_patch(uint8_t *packed, const struct isonet_mac *at,
                      const uint8_t mac[ISONET_MAC_LEN]);

/* ---------------------------------------------------------------------------------------------
 * DE 90, original data elements (n 42): how a reversal or an advice names its original.
 * Positions: original MTI 4 ‖ original DE 11 6 ‖ original DE 7 10 ‖ original acquiring
 * institution (DE 32) 11 ‖ original forwarding institution (DE 33) 11, the two ids zero-filled
 * on the left. Atlas sends 11 zeros as the forwarding institution.
 */
#define ISONET_DE90_LEN 42

struct isonet_de90 {
    char mti[5];        /* 4 digits */
    char stan[7];       /* 6 digits */
    char de7[11];       /* 10 digits, MMDDhhmmss */
    char acquirer[12];  /* 11 digits */
    char forwarder[12]; /* 11 digits */
};

/* o as the 42 digits of DE 90 (+ NUL) in out. 0, or -1 when a part is not all digits of its
 * exact length (out then holds an empty string). */
ISONET_MUST_CHECK int isonet_de90_pack(const struct isonet_de90 *o, char out[ISONET_DE90_LEN + 1]);

/* Parses DE 90's value (len bytes at p) into *o. 0, or -1 when it is not exactly 42 digits.
 * Whether its DE 7 names a real date is the caller's rule to apply. */
ISONET_MUST_CHECK int isonet_de90_parse(const uint8_t *p, size_t len, struct isonet_de90 *o);

/* Fills o->acquirer from an acquiring institution id as DE 32 holds it: 1..11 digits, zero-
 * filled on the left; any other id (empty, too long, not digits) gives 11 zeros. */
void isonet_de90_set_acquirer(struct isonet_de90 *o, const char *id);

/* Fills o with what Atlas sends: the original's MTI, STAN and DE 7 (copied; isonet_de90_pack
 * refuses parts that are not digits of their length), the acquiring institution as
 * isonet_de90_set_acquirer() fills it, and 11 zeros as the forwarding institution. */
void isonet_de90_make(struct isonet_de90 *o, const char *mti, const char *stan, const char *de7,
                      const char *acquirer_id);

/* DE 90 of m: 1 with *o filled, 0 when m has no DE 90, -1 when it has a malformed one. */
ISONET_MUST_CHECK int isonet_de90_get(const struct iso_msg *m, struct isonet_de90 *o);

/* Sets DE 90 of m to o, copied into m's arena. 0, -1 when o does not pack, or a negative ISO
 * error from iso_set_copy (ISO_E_ARENA). */
ISONET_MUST_CHECK int isonet_de90_set(struct iso_msg *m, const struct isonet_de90 *o);

/* ---------------------------------------------------------------------------------------------
 * MTI.
 */

/* The response MTI of request MTI req into out (4 digits + NUL): the function digit (third) + 1
 * and the origin digit 0, so that a repeat is answered as its original — 0100 and 0101 → 0110,
 * 0420 and 0421 → 0430, 0800 → 0810. req must be a request (even function digit). */
void isonet_response_mti(const char req[4], char out[5]);

/* ---------------------------------------------------------------------------------------------
 * Framing on an at_stream (common/stream.h): the one adapter between iso8583's framing and the
 * daemons' streams, both ways.
 */
struct at_stream;
struct at_frame;

/* How one link cuts its byte stream into ISO 8583 frames: the frame_arg of isonet_frame_fn,
 * and what isonet_send() writes headers with. */
struct isonet_framing {
    enum iso_frame_kind kind;
    size_t max;       /* largest value of the length field, either way (for ISO_FRAME_TPDU it
                         counts the TPDU); 0 = ISO_FRAME_DEFAULT_MAX */
    uint64_t refused; /* frame headers refused so far (each closed its stream) */
};

/* The at_frame_fn of every ISO link; arg is a struct isonet_framing. A header iso_frame_parse()
 * refuses (too long, malformed, zero length) ends the stream with "framing: <reason>" and counts
 * in refused. */
int isonet_frame_fn(void *arg, const uint8_t *buf, size_t avail, struct at_frame *fr, char *why,
                    size_t whycap);

/* Queues msg[0..len) on s behind the frame header f calls for (tpdu: the 5 bytes for
 * ISO_FRAME_TPDU, else ignored). 0, or -1 when no header can be made (len zero or above f->max,
 * no TPDU) or the stream refuses the write (closing, output cap). */
ISONET_MUST_CHECK int isonet_send(struct at_stream *s, const struct isonet_framing *f,
                                  const uint8_t *tpdu, const uint8_t *msg, size_t len);

#endif
