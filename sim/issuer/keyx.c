/* issuer-sim's side of the key change (docs/keys.md): the 0800 with DE 70 = 161 brings a new ZPK
 * and ZAK under the issuer's ZMK with their KCVs in DE 48; both are imported through hsm-sim (A6)
 * and their KCVs checked before anything changes, then they become the current generation.
 *
 * The previous generation is not dropped at once: the switch goes on using it until it has the
 * issuer's 0810 and has committed the new keys, and requests it sent before are still in flight.
 * So it stays accepted until a request has verified under the new ZAK (the switch has switched
 * over), and for the grace window after that. A change the switch never completes (it did not
 * get the 0810, or died before its commit) thus leaves the issuer accepting the keys the switch
 * still has; a second change then replaces the unused current generation and keeps the previous
 * one. Each request is answered under the generation it came with. */
#include "issuer_int.h"

#include "clock.h"
#include "hsmclient.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static uint64_t now_ms(void)
{
    return at_mono_ns() / 1000000u;
}

void keyx_take_current(struct txn *t)
{
    const struct iss_keys *k = &t->iss->keys;
    memcpy(t->zpk, k->zpk, sizeof t->zpk);
    memcpy(t->zak, k->zak, sizeof t->zak);
    t->mac_prev = false;
}

/* Drops the previous generation once its grace window is over. */
static void expire_previous(struct iss_keys *k)
{
    if (k->has_prev && k->prev_until_ms != 0 && now_ms() >= k->prev_until_ms) {
        k->has_prev = false;
        memset(k->prev_zpk, 0, sizeof k->prev_zpk);
        memset(k->prev_zak, 0, sizeof k->prev_zak);
        at_log0(AT_LOG_INFO, "key_previous_expired");
    }
}

bool keyx_try_previous(struct txn *t)
{
    struct iss_keys *k = &t->iss->keys;
    expire_previous(k);
    if (t->mac_prev || !k->has_prev)
        return false;
    memcpy(t->zpk, k->prev_zpk, sizeof t->zpk);
    memcpy(t->zak, k->prev_zak, sizeof t->zak);
    t->mac_prev = true;
    return true;
}

void keyx_mac_ok(struct txn *t)
{
    struct iss_keys *k = &t->iss->keys;
    if (t->mac_prev || strcmp(t->zak, k->zak) != 0 || k->cur_seen)
        return;
    k->cur_seen = true;
    if (k->has_prev && k->prev_until_ms == 0) {
        k->prev_until_ms = now_ms() + k->grace_ms;
        at_log(AT_LOG_INFO, "key_grace_started", AT_UINT("grace_ms", k->grace_ms),
               AT_STR("why", "a request came under the new ZAK: the switch has switched over"));
    }
}

/* ---------------------------------------------------------------- the 0800 key change */

/* What DE 48 brings: each key under the ZMK and its KCV. */
struct change {
    char zpk[KEY_TEXT], zpk_kcv[7], zak[KEY_TEXT], zak_kcv[7];
};

/* The change under way (one at a time: the switch sends one per link and waits for its 0810;
 * a second one meanwhile is refused). The imported ZPK waits here for the ZAK. */
static struct {
    bool busy;
    struct change c;
    char new_zpk[KEY_TEXT], new_zak[KEY_TEXT]; /* under the LMK */
} cur;

/* DE 48: tag 2N ‖ length 2N ‖ value, tags 01 ZPK, 02 its KCV, 03 ZAK, 04 its KCV, each once. */
static int parse_de48(const struct iso_msg *m, struct change *c)
{
    size_t n;
    const uint8_t *p = iso_get(m, 48, &n);
    unsigned seen = 0;
    memset(c, 0, sizeof *c);
    if (!p)
        return -1;
    for (size_t off = 0; off < n;) {
        if (n - off < 4)
            return -1;
        unsigned tag = 0, len = 0;
        for (int i = 0; i < 2; i++) {
            uint8_t a = p[off + (size_t)i], b = p[off + 2 + (size_t)i];
            if (a < '0' || a > '9' || b < '0' || b > '9')
                return -1;
            tag = tag * 10 + (unsigned)(a - '0');
            len = len * 10 + (unsigned)(b - '0');
        }
        off += 4;
        if (len > n - off || tag < 1 || tag > 4 || (seen & (1u << tag)))
            return -1;
        seen |= 1u << tag;
        char *dst = tag == 1 ? c->zpk : tag == 2 ? c->zpk_kcv : tag == 3 ? c->zak : c->zak_kcv;
        size_t cap = tag % 2 ? KEY_TEXT : 7;
        if (len >= cap || (tag % 2 == 0 && len != 6))
            return -1;
        for (size_t i = 0; i < len; i++) {
            uint8_t ch = p[off + i];
            bool hex = (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F');
            if (!hex && !(tag % 2 && i == 0 && ch >= 'A' && ch <= 'Z'))
                return -1;
        }
        memcpy(dst, p + off, len);
        dst[len] = '\0';
        off += len;
    }
    return seen == 0x1e ? 0 : -1;
}

/* Answers the key change: rc with DE 44 why (refused) or DE 48 the KCVs (applied). */
static void answer(struct txn *t, const char *rc, const char *why)
{
    memcpy(t->rc, rc, 3);
    if (why) {
        snprintf(t->resp44, sizeof t->resp44, "%s", why);
        at_log(AT_LOG_WARN, "key_change_refused", AT_STR("rc", rc), AT_STR("reason", why),
               AT_STR("zpk_kcv", cur.c.zpk_kcv), AT_STR("zak_kcv", cur.c.zak_kcv),
               AT_STR("action", "keys unchanged"));
    } else {
        snprintf(t->resp48, sizeof t->resp48, "02%02zu%s04%02zu%s", strlen(cur.c.zpk_kcv),
                 cur.c.zpk_kcv, strlen(cur.c.zak_kcv), cur.c.zak_kcv);
    }
    memset(&cur, 0, sizeof cur);
    txn_respond(t, false);
}

/* Both keys imported and checked: the new generation. */
static void install(struct txn *t)
{
    struct iss_keys *k = &t->iss->keys;
    if (strcmp(cur.new_zpk, k->zpk) == 0 && strcmp(cur.new_zak, k->zak) == 0) {
        at_log(AT_LOG_INFO, "key_change_repeated", AT_STR("zpk_kcv", cur.c.zpk_kcv),
               AT_STR("zak_kcv", cur.c.zak_kcv), AT_STR("action", "already the current keys"));
        answer(t, "00", NULL);
        return;
    }
    expire_previous(k);
    /* The current generation becomes the previous one only if the switch has used it; if it never
     * did (a change the switch did not complete), the previous one is still what it has. */
    if (k->cur_seen || !k->has_prev) {
        memcpy(k->prev_zpk, k->zpk, sizeof k->prev_zpk);
        memcpy(k->prev_zak, k->zak, sizeof k->prev_zak);
        k->has_prev = true;
    }
    k->prev_until_ms = 0; /* kept until the new keys are seen in use, then grace_ms */
    memcpy(k->zpk, cur.new_zpk, sizeof k->zpk);
    memcpy(k->zak, cur.new_zak, sizeof k->zak);
    k->cur_seen = false;
    at_log(AT_LOG_INFO, "key_change_applied", AT_STR("zpk_kcv", cur.c.zpk_kcv),
           AT_STR("zak_kcv", cur.c.zak_kcv), AT_UINT("grace_ms", k->grace_ms));
    answer(t, "00", NULL);
}

static void on_imported(void *arg, int status, const char *resp, size_t len);

/* A6: key type 3H ‖ ZMK ‖ key under the ZMK ‖ key scheme (LMK) 'U'. */
static int import(struct txn *t, const char *type, const char *key)
{
    char cmd[160];
    int n = snprintf(cmd, sizeof cmd, "A6%s%s%sU", type, t->iss->keys.zmk, key);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    return hsm_client_submit(t->iss->hsm, cmd, (size_t)n, on_imported, t);
}

/* A7: "A700" ‖ key under the LMK ‖ KCV 6H. */
static void on_imported(void *arg, int status, const char *resp, size_t len)
{
    struct txn *t = arg;
    bool zpk = cur.new_zpk[0] == '\0';
    int e = status == HSM_CLIENT_OK ? hsm_client_resp_error("A6", resp, len) : -1;
    if (e != 0 || len < 4 + 16 + 6 || len - 4 - 6 >= KEY_TEXT) {
        at_log(AT_LOG_ERROR, "key_import_error", AT_STR("key", zpk ? "ZPK" : "ZAK"),
               AT_INT("status", status), AT_INT("hsm_error", e));
        /* 10/11/12-ish errors: what was sent does not decrypt to a key under our ZMK */
        answer(t, e > 0 ? "63" : "96", e > 0 ? "key not importable" : "hsm unavailable");
        return;
    }
    const char *kcv = resp + len - 6;
    if (memcmp(kcv, zpk ? cur.c.zpk_kcv : cur.c.zak_kcv, 6) != 0) {
        answer(t, "63", zpk ? "ZPK KCV mismatch" : "ZAK KCV mismatch");
        return;
    }
    char *dst = zpk ? cur.new_zpk : cur.new_zak;
    memcpy(dst, resp + 4, len - 4 - 6);
    dst[len - 4 - 6] = '\0';
    if (!zpk) {
        install(t);
        return;
    }
    txn_set_state(t, TXN_KEYX);
    if (import(t, "008", cur.c.zak) != 0)
        answer(t, "96", "hsm queue full");
}

void keyx_change(struct txn *t)
{
    if (cur.busy) {
        memcpy(t->rc, "12", 3);
        snprintf(t->resp44, sizeof t->resp44, "change in progress");
        txn_respond(t, false);
        return;
    }
    cur.busy = true;
    if (parse_de48(&t->req, &cur.c) != 0) {
        answer(t, "30", "DE 48 malformed");
        return;
    }
    at_log(AT_LOG_INFO, "key_change_received", AT_STR("zpk_kcv", cur.c.zpk_kcv),
           AT_STR("zak_kcv", cur.c.zak_kcv));
    txn_set_state(t, TXN_KEYX);
    if (import(t, "001", cur.c.zpk) != 0)
        answer(t, "96", "hsm queue full");
}
