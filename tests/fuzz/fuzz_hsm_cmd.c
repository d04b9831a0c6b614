/* libFuzzer target over the hsm-sim command parser: every input is one
 * request body (header + command code + fields) run through
 * hsm_proto_execute(). Checks that the answer echoes the header, stays
 * inside the buffer and carries a two-character error code. */
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The key-block LMK of the fuzz target (AES-256; the S keys of tests/fuzz/corpus/hsm_cmd are
 * under it: hsmtool key --scheme S --lmk-keyblock with this line). */
#define FUZZ_KB_LMK "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct hsm_proto *p;
    static uint8_t out[HSM_PROTO_FRAME_LIMIT + HSM_PROTO_RESP_SLACK];
    if (!p) {
        char err[200];
        /* a key-block LMK too, so that 'S' keys (the seeds' are under this one) reach the
         * key-block paths: usage and mode checks, R import/export */
        char kb[] = "/tmp/fuzz_hsm_cmd_kblmk.XXXXXX";
        int fd = mkstemp(kb);
        static const char line[] = FUZZ_KB_LMK "\n";
        if (fd < 0 || write(fd, line, sizeof line - 1) != (ssize_t)(sizeof line - 1))
            abort();
        close(fd);
        struct hsm_proto_config cfg = { .header_len = 4,
                                        .lmk_path = NULL,
                                        .lmk_keyblock_path = kb };
        int rc = hsm_proto_new(&cfg, &p, err, sizeof err);
        unlink(kb);
        if (rc != 0)
            abort();
    }
    if (size > HSM_PROTO_FRAME_LIMIT)
        return 0;
    struct hsm_proto_result res;
    size_t n = hsm_proto_execute(p, data, size, out, size + HSM_PROTO_RESP_SLACK, &res);
    if (n < 8 || n > size + HSM_PROTO_RESP_SLACK)
        abort();
    if (size >= 4 && memcmp(out, data, 4) != 0)
        abort();
    if (strlen(res.err) != 2)
        abort();
    return 0;
}
