/* hsm-sim protocol layer: the payShield host-command protocol without sockets.
 * Deframes 2-byte-length frames, echoes the message header, dispatches the
 * command code through one table and builds the response. Pure and
 * single-threaded: the daemon, the unit tests and the fuzz target drive it. */
#ifndef ATLAS_HSM_PROTO_H
#define ATLAS_HSM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define HSM_PROTO_MAX_HEADER  64   /* longest message header accepted (--header-len) */
#define HSM_PROTO_DEFAULT_HDR 4    /* payShield's usual header length */
#define HSM_PROTO_MAX_FRAME   8192 /* default largest frame body (--max-frame) */
#define HSM_PROTO_FRAME_LIMIT 65535
#define HSM_PROTO_RESP_SLACK                                                                       \
    512 /* response = at most request size + this (A0 mode 1 answering an S key and an R block:    \
           ~300 more than its ~40-byte request) */

struct hsm_proto;

struct hsm_proto_config {
    unsigned header_len;  /* 0..HSM_PROTO_MAX_HEADER */
    const char *lmk_path; /* NULL: the Thales test LMK set */
    /* AES key-block LMK file (libhsm hsm_lmk_keyblock_load): keys under the LMK may then also
     * be 'S' + TR-31 version D blocks; NULL: none (scheme S answers 26) */
    const char *lmk_keyblock_path;
};

/* Outcome of one command, for logs and metrics: codes only, never data. */
struct hsm_proto_result {
    char cmd[3];  /* command code as received ("??" if the frame was too short) */
    char resp[3]; /* response code sent */
    char err[3];  /* error code sent */
};

/* Creates a protocol context (loads the LMK). On failure returns -1 and puts
 * a sentence into err; *out is untouched. The caller owns *out. */
__attribute__((warn_unused_result)) int
hsm_proto_new(const struct hsm_proto_config *cfg, struct hsm_proto **out, char *err, size_t errcap);
void hsm_proto_free(struct hsm_proto *p);

/* Looks at the first avail bytes of a stream. Returns 1 and sets *body_len
 * when a whole frame (2-byte big-endian length + body) is present, 0 when more
 * bytes are needed, -1 when the length prefix exceeds max_body (the stream
 * cannot be resynchronised: close it). */
int hsm_proto_deframe(const uint8_t *buf, size_t avail, size_t max_body, size_t *body_len);

/* Executes one request body (header + command code + fields, no length
 * prefix) and writes the response body (echoed header + response code + error
 * code + fields) into out. cap must be >= len + HSM_PROTO_RESP_SLACK. Never
 * fails: a bad request gets an error response. Returns the response length. */
size_t hsm_proto_execute(struct hsm_proto *p, const uint8_t *body, size_t len, uint8_t *out,
                         size_t cap, struct hsm_proto_result *res);

/* The 16-hex LMK check value reported by NC (for logs at start-up). */
const char *hsm_proto_lmk_kcv(const struct hsm_proto *p);

#endif
