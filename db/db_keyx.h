/* The key-change rows of schema switch (docs/keys.md): rotations asked for by an operator or by
 * switchd's schedule (switch.key_change_requests), claimed by a running switchd, and the new
 * key generation committed with its validity (switch.keys, switch.issuers) in one transaction.
 * Keys only as stored: under the LMK, with their KCV. */
#ifndef ATLAS_DB_DB_KEYX_H
#define ATLAS_DB_DB_KEYX_H

#include "db.h"

#include <stddef.h>
#include <stdint.h>

#define DB_KEYX_KEY_TEXT 64 /* key under the LMK: scheme letter + up to 48 hex + NUL */

/* A rotation claimed by this switchd: the request, its issuer and the issuer's ZMK (under the
 * LMK; "" when the issuer has none). */
struct db_keyx_claim {
    int64_t request_id;
    char issuer_id[33];
    char zmk[DB_KEYX_KEY_TEXT];
};

/* Claims every open request (status 'requested' → 'claimed') for the issuers in ids (n names;
 * the issuers whose link this switchd has), oldest first. cb gets the claimed rows (n may be 0);
 * they live during the call only. 0 or a DB_E_* code (cb is not called then). */
typedef void (*db_keyx_claim_cb)(void *arg, const struct db_error *err,
                                 const struct db_keyx_claim *rows, size_t n);
__attribute__((warn_unused_result)) int db_keyx_claim(struct db_client *c, const char *const *ids,
                                                      size_t n, db_keyx_claim_cb cb, void *arg);

/* Asks for a rotation of issuer's keys (what `atlas-keys rotate` and switchd's schedule do),
 * by requested_by. cb gets the error (code 0 on success). */
typedef void (*db_keyx_done_cb)(void *arg, const struct db_error *err);
__attribute__((warn_unused_result)) int db_keyx_request(struct db_client *c, const char *issuer,
                                                        const char *requested_by,
                                                        db_keyx_done_cb cb, void *arg);

/* The new generation the issuer confirmed (0810 00), in one transaction: the ZPK and ZAK rows
 * (key ids ISSUER.ZPK.rN / ISSUER.ZAK.rN, N the request id, valid from now), the previous
 * generation retired with valid_to = now + grace_s, the issuer row naming the new keys, and
 * the request done with the KCVs as its result. */
struct db_keyx_new {
    int64_t request_id;
    const char *issuer_id;
    const char *zpk, *zpk_kcv; /* under the LMK, KCV 6 hex */
    const char *zak, *zak_kcv;
    unsigned grace_s;
};
__attribute__((warn_unused_result)) int
db_keyx_commit(struct db_client *c, const struct db_keyx_new *k, db_keyx_done_cb cb, void *arg);

/* The request failed (reason: a sentence without any key): status 'failed'. */
__attribute__((warn_unused_result)) int db_keyx_fail(struct db_client *c, int64_t request_id,
                                                     const char *reason, db_keyx_done_cb cb,
                                                     void *arg);

/* ---- terminal key download (0800, DE 70 = 162) ---- */

/* The terminal's TMK under the LMK ("" when it has none) into cb. */
typedef void (*db_keyx_tmk_cb)(void *arg, const struct db_error *err, const char *tmk);
__attribute__((warn_unused_result)) int db_keyx_terminal_tmk(struct db_client *c,
                                                             const char *acquirer,
                                                             const char *terminal,
                                                             db_keyx_tmk_cb cb, void *arg);

/* The keys a terminal downloaded, in one transaction: new rows TERMINAL.TPK.dSUFFIX and
 * TERMINAL.TAK.dSUFFIX (no TPK row when tpk is NULL: a DUKPT terminal), the previous ones retired
 * with valid_to = now + grace_s, the terminal row naming the new ones. */
struct db_keyx_term_new {
    const char *acquirer, *terminal, *suffix;
    const char *tpk, *tpk_kcv; /* NULL for a DUKPT terminal */
    const char *tak, *tak_kcv;
    unsigned grace_s;
};
__attribute__((warn_unused_result)) int db_keyx_terminal_commit(struct db_client *c,
                                                                const struct db_keyx_term_new *k,
                                                                db_keyx_done_cb cb, void *arg);

#endif
