/* libFuzzer target for the untrusted inputs of acquirer-sim: the first byte picks the
 * path. Even: the bytes are a scenario file (sim_scn_parse must accept or refuse with a
 * line-numbered reason, never crash; every accepted line must resolve or be refused).
 * Odd: the bytes are a response from a switch, checked by each demo terminal
 * (sim_term_check_response: unpack, MAC verification, DE 39/38/54 extraction). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acquirer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sim_terms terms;
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[300];
    if (!ready) {
        if (sim_terms_builtin(&terms, err, sizeof err) != 0)
            abort();
        ready = 1;
    }
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if ((data[0] & 1) == 0) {
        struct sim_scn s;
        if (sim_scn_parse((const char *)p, n, "fuzz.scn", &s, err, sizeof err) != 0) {
            if (strncmp(err, "fuzz.scn", 8) != 0)
                abort(); /* every refusal names the file (and the line) */
            return 0;
        }
        for (size_t i = 0; i < s.n; i++) {
            struct sim_txn x;
            struct sim_term *t;
            if (sim_opts_resolve(&s.lines[i].o, &terms, &x, &t, err, sizeof err) == 0 &&
                (!t || s.lines[i].o.expect[0] == '\0'))
                abort();
        }
        sim_scn_free(&s);
        return 0;
    }
    if (n > SIM_MSG_MAX)
        return 0;
    static uint8_t arena[ISO_ARENA_FOR(SIM_MSG_MAX)];
    for (size_t i = 0; i < terms.n; i++) {
        struct iso_msg m;
        struct sim_resp r;
        iso_msg_init(&m, arena, sizeof arena);
        if (sim_term_check_response(terms.t[i], p, n, &m, &r, err, sizeof err) == 0 &&
            (strlen(r.rc) > 2 || strlen(r.auth) > 6))
            abort();
    }
    return 0;
}
