/* Issuer key change (docs/keys.md): switchd generates a new ZPK and ZAK in the HSM, sends them
 * to the issuer wrapped under its ZMK in an 0800 (DE 70 = 161, DE 48 the keys and their KCVs),
 * and on the issuer's 0810 00 commits the new generation to switch.keys and switches its new
 * requests over. Requests come from switch.key_change_requests (`atlas-keys rotate`, or the
 * link's own schedule: key_change_interval_s), polled once a second. */
#ifndef ATLAS_SW_KEYX_H
#define ATLAS_SW_KEYX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sw_server;
struct sw_link;
struct iso_msg;

/* DE 70 of a key change, and the tags of DE 48 in it (tag 2N ‖ length 2N ‖ value). */
#define SW_KEYX_CODE        "161"
#define SW_KEYX_TAG_PIN_KEY "01" /* the new ZPK (TPK) under the ZMK (TMK) */
#define SW_KEYX_TAG_PIN_KCV "02" /* its KCV, 6 hex */
#define SW_KEYX_TAG_MAC_KEY "03" /* the new ZAK (TAK) under the ZMK (TMK) */
#define SW_KEYX_TAG_MAC_KCV "04" /* its KCV, 6 hex */

/* Starts the poll timer (after the links). 0 or -1. */
int sw_keyx_start(struct sw_server *srv);
/* Stops it (teardown); a rotation in progress is abandoned: the issuer keeps accepting the
 * keys this switch still has (docs/keys.md, "Interrupted"). */
void sw_keyx_stop(struct sw_server *srv);
/* An 0810 arrived on l with DE 11 = stan: true when it answers this link's key change. */
bool sw_keyx_answer(struct sw_link *l, uint32_t stan, const struct iso_msg *m);

/* ---- terminal key download (0800 from a terminal, DE 70 = 162) ---- */

#define SW_KEYX_DOWNLOAD_CODE "162"

struct sw_txn;
/* Whether the terminal's 0800 m asks for new working keys. */
bool sw_keyx_is_download(const struct iso_msg *m);
/* Serves it (t in SW_TXN_KEY_DOWNLOAD): the 0800's MAC under the terminal's TAK, new keys from
 * the HSM under its TMK, committed to switch.keys, switched over; then
 * sw_txn_key_download_done(t, rc) with t->resp48 the keys under the TMK and their KCVs. */
void sw_keyx_download(struct sw_txn *t);

#endif
