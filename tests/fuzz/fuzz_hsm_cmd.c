/* libFuzzer target over the hsm-sim command parser: every input is one
 * request body (header + command code + fields) run through
 * hsm_proto_execute(). Checks that the answer echoes the header, stays
 * inside the buffer and carries a two-character error code. */
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct hsm_proto *p;
    static uint8_t out[HSM_PROTO_FRAME_LIMIT + HSM_PROTO_RESP_SLACK];
    if (!p) {
        char err[200];
        struct hsm_proto_config cfg = { .header_len = 4, .lmk_path = NULL };
        if (hsm_proto_new(&cfg, &p, err, sizeof err) != 0)
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
