/* Issuer key change (docs/keys.md). One rotation at a time per issuer link, as a small state
 * machine kept here beside the link (link.c only hands over the 0810 it cannot place):
 *
 *   IDLE → GEN_ZPK → GEN_ZAK (hsm-sim A0 mode 1: a new key under the LMK and under the issuer's
 *   ZMK, with its KCV) → SENT (0800, DE 70 = 161, waiting for the 0810) → COMMIT (the new
 *   generation written to switch.keys in one transaction) → IDLE, the new keys in force.
 *
 * Until the commit the switch keeps MACing and PIN-translating with the keys it has; the issuer,
 * which keeps its previous keys until it sees the new ones used (docs/issuer-sim.md), accepts
 * them — so a rotation abandoned anywhere (no answer, a refusal, the database down, switchd
 * killed) leaves both sides on a pair they share. Requests in flight at the switch-over hold
 * their own copy of the keys (struct sw_txn.issuer), and the issuer answers each under the
 * generation its request came with. Keys appear only under the LMK or the ZMK; logs carry
 * KCVs. */
#include "keyx.h"

#include "db_keyx.h"
#include "hsmclient.h"
#include "clock.h"
#include "fmt.h"
#include "log.h"
#include "switchd.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kx_state {
    KX_IDLE,    /* no rotation */
    KX_GEN_ZPK, /* hsm-sim generating the ZPK (A0) */
    KX_GEN_ZAK, /* hsm-sim generating the ZAK (A0) */
    KX_SENT,    /* 0800/161 sent, waiting for the issuer's 0810 */
    KX_COMMIT,  /* the new generation being committed to switch.keys */
    KX_state_max
};

static const char *const kx_state_names[KX_state_max] = { "idle", "gen_zpk", "gen_zak", "sent",
                                                          "commit" };

#define KX_KEY 40 /* 'U' + 32 hex + NUL, with room */

/* A generated key: under the LMK (kept by the switch), under the ZMK (sent), its KCV. */
struct kx_key {
    char lmk[KX_KEY], zmk[KX_KEY], kcv[7];
};

struct kx {
    struct sw_server *srv;
    size_t link; /* index in srv->links */
    enum kx_state state;
    int64_t request_id;
    char zmk[DB_KEYX_KEY_TEXT];
    struct kx_key zpk, zak;
    uint32_t stan;
    uint64_t deadline_ms; /* SENT: the answer's deadline */
    uint64_t last_ms;     /* the last rotation asked for by the schedule, or the start */
    bool scheduling;      /* a scheduled request being inserted */
};

static struct kx kxs[SW_MAX_ISSUERS];
static struct event *kx_timer;
static bool kx_polling;

static void set_state(struct kx *k, enum kx_state to)
{
    at_log(AT_LOG_DEBUG, "key_change_state", AT_STR("issuer", k->srv->links[k->link].conf->name),
           AT_STR("from", kx_state_names[k->state]), AT_STR("to", kx_state_names[to]));
    k->state = to;
}

static void on_failed_recorded(void *arg, const struct db_error *e)
{
    (void)arg;
    if (e->code != 0)
        at_log(AT_LOG_ERROR, "key_change_record_failed", AT_STR("error", e->message));
}

/* Ends a rotation without a change: logged, recorded as failed, the keys in force kept. */
static void fail(struct kx *k, const char *reason)
{
    struct sw_server *srv = k->srv;
    at_log(AT_LOG_WARN, "key_change_failed", AT_STR("issuer", srv->links[k->link].conf->name),
           AT_INT("request", k->request_id), AT_STR("reason", reason),
           AT_STR("action", "the current ZPK/ZAK stay in force on both sides"));
    srv->metrics.key_changes_failed_total++;
    if (!srv->stopping && db_keyx_fail(srv->db, k->request_id, reason, on_failed_recorded, NULL))
        at_log(AT_LOG_ERROR, "key_change_record_failed", AT_STR("error", "database queue full"));
    memset(&k->zpk, 0, sizeof k->zpk);
    memset(&k->zak, 0, sizeof k->zak);
    set_state(k, KX_IDLE);
}

/* The A1 answer "A100" ‖ key under the LMK ‖ key under the ZMK ‖ KCV 6H, both keys double-length
 * variant keys (scheme U, 33 characters). 0 or -1. */
static int parse_a1(const char *resp, size_t len, struct kx_key *out)
{
    if (hsm_client_resp_error("A0", resp, len) != 0 || len != 4 + 33 + 33 + 6 || resp[4] != 'U' ||
        resp[37] != 'U')
        return -1;
    memcpy(out->lmk, resp + 4, 33);
    out->lmk[33] = '\0';
    memcpy(out->zmk, resp + 37, 33);
    out->zmk[33] = '\0';
    memcpy(out->kcv, resp + 70, 6);
    out->kcv[6] = '\0';
    return 0;
}

static void on_generated(void *arg, int status, const char *resp, size_t len);

/* A0 mode 1: a double-length key of type (001 ZPK, 008 ZAK) under the LMK and the ZMK. */
static int generate(struct kx *k, const char *type)
{
    char cmd[96];
    int n = snprintf(cmd, sizeof cmd, "A01%sU;0%sU", type, k->zmk);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    return hsm_client_submit(k->srv->hsm, cmd, (size_t)n, on_generated, k);
}

/* DE 48 of the key change: tag 2N ‖ length 2N ‖ value, for the ZPK, its KCV, the ZAK, its KCV. */
static size_t build_de48(const struct kx *k, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%02zu%s%s%02zu%s%s%02zu%s%s%02zu%s", SW_KEYX_TAG_PIN_KEY,
                     strlen(k->zpk.zmk), k->zpk.zmk, SW_KEYX_TAG_PIN_KCV, strlen(k->zpk.kcv),
                     k->zpk.kcv, SW_KEYX_TAG_MAC_KEY, strlen(k->zak.zmk), k->zak.zmk,
                     SW_KEYX_TAG_MAC_KCV, strlen(k->zak.kcv), k->zak.kcv);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void send_change(struct kx *k)
{
    struct sw_link *l = &k->srv->links[k->link];
    char de48[160];
    size_t n = build_de48(k, de48, sizeof de48);
    if (l->state != SW_LINK_UP) {
        fail(k, "issuer link not up");
        return;
    }
    if (n == 0 || sw_link_send_0800(l, SW_KEYX_CODE, de48, n, &k->stan) != 0) {
        fail(k, "cannot send the 0800 key change");
        return;
    }
    k->deadline_ms = sw_now_ms() + l->conf->timeout_ms;
    set_state(k, KX_SENT);
    at_log(AT_LOG_INFO, "key_change_sent", AT_STR("issuer", l->conf->name),
           AT_INT("request", k->request_id), AT_UINT("issuer_stan", k->stan),
           AT_STR("zpk_kcv", k->zpk.kcv), AT_STR("zak_kcv", k->zak.kcv));
}

static void on_generated(void *arg, int status, const char *resp, size_t len)
{
    struct kx *k = arg;
    if (k->srv->stopping)
        return;
    struct kx_key *dst = k->state == KX_GEN_ZPK ? &k->zpk : &k->zak;
    if (status != HSM_CLIENT_OK || parse_a1(resp, len, dst) != 0) {
        at_log(AT_LOG_ERROR, "key_change_hsm_error", AT_INT("status", status),
               AT_INT("hsm_error",
                      status == HSM_CLIENT_OK ? hsm_client_resp_error("A0", resp, len) : -1));
        fail(k, "the HSM could not generate the keys");
        return;
    }
    if (k->state == KX_GEN_ZPK) {
        set_state(k, KX_GEN_ZAK);
        if (generate(k, "008") != 0)
            fail(k, "HSM queue full");
        return;
    }
    send_change(k);
}

/* A claimed request: starts its rotation, or fails it at once. */
static void start(struct kx *k, const struct db_keyx_claim *c)
{
    struct sw_link *l = &k->srv->links[k->link];
    k->request_id = c->request_id;
    at_log(AT_LOG_INFO, "key_change_started", AT_STR("issuer", l->conf->name),
           AT_INT("request", k->request_id));
    if (!c->zmk[0] || strlen(c->zmk) >= sizeof k->zmk) {
        fail(k, "the issuer has no ZMK (switch.issuers.zmk_key_id)");
        return;
    }
    if (l->state != SW_LINK_UP) {
        fail(k, "issuer link not up");
        return;
    }
    memcpy(k->zmk, c->zmk, strlen(c->zmk) + 1);
    set_state(k, KX_GEN_ZPK);
    if (generate(k, "001") != 0)
        fail(k, "HSM queue full");
}

static struct kx *kx_of(struct sw_server *srv, const char *issuer)
{
    for (size_t i = 0; i < srv->n_links; i++)
        if (strcmp(srv->links[i].conf->name, issuer) == 0)
            return &kxs[i];
    return NULL;
}

static void on_claimed(void *arg, const struct db_error *e, const struct db_keyx_claim *rows,
                       size_t n)
{
    struct sw_server *srv = arg;
    kx_polling = false;
    if (srv->stopping || e->code != 0)
        return; /* the next tick asks again */
    for (size_t i = 0; i < n; i++) {
        struct kx *k = kx_of(srv, rows[i].issuer_id);
        if (!k)
            continue;
        if (k->state != KX_IDLE) { /* one at a time: this one is refused, not queued */
            struct kx other = *k;
            other.request_id = rows[i].request_id;
            other.state = KX_IDLE;
            fail(&other, "another key change of this issuer is in progress");
            continue;
        }
        start(k, &rows[i]);
    }
}

static void on_scheduled(void *arg, const struct db_error *e)
{
    struct kx *k = arg;
    k->scheduling = false;
    if (e->code != 0)
        at_log(AT_LOG_ERROR, "key_change_schedule_failed",
               AT_STR("issuer", k->srv->links[k->link].conf->name), AT_STR("error", e->message));
}

/* Once a second: answers not come in time, the schedule, and the requests to claim. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sw_server *srv = arg;
    const char *ids[SW_MAX_ISSUERS];
    size_t n = 0;
    uint64_t now = sw_now_ms();
    (void)fd;
    (void)what;
    if (srv->stopping || srv->draining)
        return;
    for (size_t i = 0; i < srv->n_links; i++) {
        struct kx *k = &kxs[i];
        const struct sw_issuer_conf *c = srv->links[i].conf;
        if (k->state == KX_SENT && now >= k->deadline_ms)
            fail(k, "the issuer did not answer the key change");
        if (c->key_change_interval_s > 0 && !k->scheduling && k->state == KX_IDLE &&
            srv->links[i].state == SW_LINK_UP &&
            now - k->last_ms >= c->key_change_interval_s * 1000) {
            k->last_ms = now;
            k->scheduling = true;
            if (db_keyx_request(srv->db, c->name, "switchd schedule", on_scheduled, k) != 0)
                k->scheduling = false;
        }
        if (srv->links[i].state == SW_LINK_UP)
            ids[n++] = c->name;
    }
    if (n > 0 && !kx_polling && srv->ref) {
        kx_polling = true;
        if (db_keyx_claim(srv->db, ids, n, on_claimed, srv) != 0)
            kx_polling = false;
    }
}

/* The new generation is committed: new requests take it from now on. */
static void on_committed(void *arg, const struct db_error *e)
{
    struct kx *k = arg;
    struct sw_server *srv = k->srv;
    const char *name = srv->links[k->link].conf->name;
    if (srv->stopping)
        return;
    if (e->code != 0) {
        /* The issuer holds the new keys but has not seen them used: it goes on accepting ours. */
        at_log(AT_LOG_ERROR, "key_change_commit_failed", AT_STR("issuer", name),
               AT_STR("error", e->message));
        fail(k, "the new keys could not be stored");
        return;
    }
    for (size_t i = 0; srv->ref && i < srv->ref->n_issuers; i++) {
        struct sw_issuer *is = &srv->ref->issuers[i];
        if (strcmp(is->id, name) == 0) {
            memcpy(is->zpk, k->zpk.lmk, strlen(k->zpk.lmk) + 1);
            memcpy(is->zak, k->zak.lmk, strlen(k->zak.lmk) + 1);
        }
    }
    srv->metrics.key_changes_total++;
    at_log(AT_LOG_INFO, "key_change_done", AT_STR("issuer", name), AT_INT("request", k->request_id),
           AT_STR("zpk_kcv", k->zpk.kcv), AT_STR("zak_kcv", k->zak.kcv),
           AT_UINT("grace_s", srv->links[k->link].conf->key_grace_s));
    memset(&k->zpk, 0, sizeof k->zpk);
    memset(&k->zak, 0, sizeof k->zak);
    set_state(k, KX_IDLE);
}

bool sw_keyx_answer(struct sw_link *l, uint32_t stan, const struct iso_msg *m)
{
    struct sw_server *srv = l->srv;
    size_t idx = (size_t)(l - srv->links), n;
    if (idx >= srv->n_links)
        return false;
    struct kx *k = &kxs[idx];
    if (k->state != KX_SENT || stan != k->stan)
        return false;
    const uint8_t *rc = iso_get(m, 39, &n);
    char code[3] = "--";
    if (rc && n == 2)
        memcpy(code, rc, 2);
    if (strcmp(code, "00") != 0) {
        char why[96];
        const uint8_t *r44 = iso_get(m, 44, &n); /* the issuer's reason, when it gives one */
        snprintf(why, sizeof why, "the issuer refused the key change: %s%s%.*s", code,
                 r44 ? " " : "", r44 ? (int)(n > 40 ? 40 : n) : 0, r44 ? (const char *)r44 : "");
        fail(k, why);
        return true;
    }
    set_state(k, KX_COMMIT);
    struct db_keyx_new nk = { .request_id = k->request_id,
                              .issuer_id = l->conf->name,
                              .zpk = k->zpk.lmk,
                              .zpk_kcv = k->zpk.kcv,
                              .zak = k->zak.lmk,
                              .zak_kcv = k->zak.kcv,
                              .grace_s = (unsigned)l->conf->key_grace_s };
    if (db_keyx_commit(srv->db, &nk, on_committed, k) != 0)
        fail(k, "database queue full");
    return true;
}

int sw_keyx_start(struct sw_server *srv)
{
    uint64_t now = sw_now_ms();
    for (size_t i = 0; i < srv->n_links; i++)
        kxs[i] = (struct kx){ .srv = srv, .link = i, .last_ms = now };
    kx_timer = event_new(srv->base, -1, EV_PERSIST, on_tick, srv);
    struct timeval tv = { 1, 0 };
    return kx_timer && event_add(kx_timer, &tv) == 0 ? 0 : -1;
}

void sw_keyx_stop(struct sw_server *srv)
{
    (void)srv;
    if (kx_timer) {
        event_free(kx_timer);
        kx_timer = NULL;
    }
    for (size_t i = 0; i < SW_MAX_ISSUERS; i++) {
        memset(&kxs[i].zpk, 0, sizeof kxs[i].zpk);
        memset(&kxs[i].zak, 0, sizeof kxs[i].zak);
    }
}

/* ---------------------------------------------------------------- terminal key download */

/* A terminal asks for new working keys (docs/keys.md, "Terminal key download"): an 0800 with
 * DE 70 = 162 and a MAC under its current TAK. In order: the terminal's TMK (database), the
 * 0800's MAC (M8), a new TPK (TPK terminals) and TAK under the LMK and the TMK (A0 mode 1,
 * ';1'), the commit (the terminal row and switch.keys), the switch-over in memory, the 0810 with
 * the keys under the TMK and their KCVs in DE 48. Requests the terminal sent before its 0800
 * were started with the old keys (each txn holds its copy) and finish with them. One download per
 * terminal at a time: a second is answered 94 while the first runs. */

#define DL_MAX                   16
#define SW_KEYX_TERMINAL_GRACE_S 60 /* the old keys' valid_to in switch.keys */

struct dl {
    struct sw_txn *t; /* NULL: the slot is free */
    char acquirer[12], tid[9];
    char tmk[DB_KEYX_KEY_TEXT];
    bool tpk_wanted;
    struct kx_key tpk, tak;
};

static struct dl dls[DL_MAX];

bool sw_keyx_is_download(const struct iso_msg *m)
{
    size_t n;
    const uint8_t *p = iso_get(m, 70, &n);
    return p && n == 3 && memcmp(p, SW_KEYX_DOWNLOAD_CODE, 3) == 0;
}

/* Ends the download with rc (the reason logged when it is not 00) and frees its slot. */
static void dl_end(struct dl *d, const char *rc, const char *reason)
{
    struct sw_txn *t = d->t;
    if (reason)
        at_log(AT_LOG_WARN, "key_download_refused", AT_STR("acquirer", d->acquirer),
               AT_STR("terminal", d->tid), AT_STR("rc", rc), AT_STR("reason", reason),
               AT_STR("action", "the terminal keeps its keys"));
    memset(d, 0, sizeof *d);
    sw_txn_key_download_done(t, rc);
}

static void dl_generate_next(struct dl *d);

static void on_dl_generated(void *arg, int status, const char *resp, size_t len)
{
    struct dl *d = arg;
    if (d->t->srv->stopping) {
        dl_end(d, "96", "switch stopping");
        return;
    }
    struct kx_key *dst = d->tpk_wanted && !d->tpk.lmk[0] ? &d->tpk : &d->tak;
    if (status != HSM_CLIENT_OK || parse_a1(resp, len, dst) != 0) {
        at_log(AT_LOG_ERROR, "key_download_hsm_error", AT_INT("status", status),
               AT_INT("hsm_error",
                      status == HSM_CLIENT_OK ? hsm_client_resp_error("A0", resp, len) : -1));
        dl_end(d, "96", "the HSM could not generate the keys");
        return;
    }
    dl_generate_next(d);
}

static void on_dl_committed(void *arg, const struct db_error *e)
{
    struct dl *d = arg;
    struct sw_server *srv = d->t->srv;
    if (e->code != 0) {
        at_log(AT_LOG_ERROR, "key_download_commit_failed", AT_STR("terminal", d->tid),
               AT_STR("error", e->message));
        dl_end(d, "96", "the new keys could not be stored");
        return;
    }
    /* The new keys in force for the terminal's next requests (the snapshot is switchd's own:
     * a reload would read the same rows). */
    struct sw_terminal *row =
        srv->ref
            ? (struct sw_terminal *)sw_ref_terminal(srv->ref, d->acquirer, (const uint8_t *)d->tid)
            : NULL;
    if (row) {
        if (d->tpk_wanted)
            memcpy(row->tpk, d->tpk.lmk, strlen(d->tpk.lmk) + 1);
        memcpy(row->tak, d->tak.lmk, strlen(d->tak.lmk) + 1);
    }
    struct sw_txn *t = d->t;
    if (d->tpk_wanted)
        snprintf(t->resp48, sizeof t->resp48, "%s%02zu%s%s06%s%s%02zu%s%s06%s", SW_KEYX_TAG_PIN_KEY,
                 strlen(d->tpk.zmk), d->tpk.zmk, SW_KEYX_TAG_PIN_KCV, d->tpk.kcv,
                 SW_KEYX_TAG_MAC_KEY, strlen(d->tak.zmk), d->tak.zmk, SW_KEYX_TAG_MAC_KCV,
                 d->tak.kcv);
    else
        snprintf(t->resp48, sizeof t->resp48, "%s%02zu%s%s06%s", SW_KEYX_TAG_MAC_KEY,
                 strlen(d->tak.zmk), d->tak.zmk, SW_KEYX_TAG_MAC_KCV, d->tak.kcv);
    srv->metrics.key_downloads_total++;
    at_log(AT_LOG_INFO, "key_download_done", AT_STR("acquirer", d->acquirer),
           AT_STR("terminal", d->tid), AT_STR("tpk_kcv", d->tpk_wanted ? d->tpk.kcv : "-"),
           AT_STR("tak_kcv", d->tak.kcv));
    dl_end(d, "00", NULL);
}

/* The next key to generate, or the commit once both are there. */
static void dl_generate_next(struct dl *d)
{
    struct sw_server *srv = d->t->srv;
    const char *type = d->tpk_wanted && !d->tpk.lmk[0] ? "002" : !d->tak.lmk[0] ? "003" : NULL;
    if (type) {
        char cmd[96];
        int n = snprintf(cmd, sizeof cmd, "A01%sU;1%sU", type, d->tmk);
        if (n < 0 || (size_t)n >= sizeof cmd ||
            hsm_client_submit(srv->hsm, cmd, (size_t)n, on_dl_generated, d) != 0)
            dl_end(d, "96", "HSM queue full");
        return;
    }
    char suffix[24];
    snprintf(suffix, sizeof suffix, "%llu", (unsigned long long)(at_wall_us() / 1000u));
    struct db_keyx_term_new k = { .acquirer = d->acquirer,
                                  .terminal = d->tid,
                                  .suffix = suffix,
                                  .tpk = d->tpk_wanted ? d->tpk.lmk : NULL,
                                  .tpk_kcv = d->tpk.kcv,
                                  .tak = d->tak.lmk,
                                  .tak_kcv = d->tak.kcv,
                                  .grace_s = SW_KEYX_TERMINAL_GRACE_S };
    if (db_keyx_terminal_commit(srv->db, &k, on_dl_committed, d) != 0)
        dl_end(d, "96", "database queue full");
}

static void on_dl_mac(void *arg, int status, const char *resp, size_t len)
{
    struct dl *d = arg;
    int e = status == HSM_CLIENT_OK ? hsm_client_resp_error("M8", resp, len) : -1;
    if (e == 1) {
        dl_end(d, "63", "the 0800's MAC does not verify under the terminal's TAK");
        return;
    }
    if (e != 0) {
        dl_end(d, "96", "HSM unavailable");
        return;
    }
    dl_generate_next(d);
}

static void on_dl_tmk(void *arg, const struct db_error *e, const char *tmk)
{
    struct dl *d = arg;
    struct sw_txn *t = d->t;
    if (e->code != 0) {
        dl_end(d, "96", "database unavailable");
        return;
    }
    if (!tmk[0] || strlen(tmk) >= sizeof d->tmk) {
        dl_end(d, "12", "the terminal has no TMK (switch.terminals.tmk_key_id)");
        return;
    }
    memcpy(d->tmk, tmk, strlen(tmk) + 1);
    /* The 0800 must be MACed under the terminal's current TAK: anyone else asking for its keys
     * would otherwise change them under it. */
    struct isonet_mac at;
    char cmd[SW_TXN_FRAME + 128];
    if (isonet_mac_locate(t->term->lst->dialect, &t->req, t->frame_len, &at) != 0) {
        dl_end(d, "30", "the 0800 carries no MAC (DE 64/128, the last field)");
        return;
    }
    int n =
        hsm_client_build_mac(cmd, sizeof cmd, "003", t->terminal.tak, t->frame, at.off, at.value);
    if (n < 0 || hsm_client_submit(t->srv->hsm, cmd, (size_t)n, on_dl_mac, d) != 0)
        dl_end(d, "96", "HSM queue full");
}

void sw_keyx_download(struct sw_txn *t)
{
    struct sw_server *srv = t->srv;
    size_t n;
    const uint8_t *tid = iso_get(&t->req, 41, &n);
    const struct sw_terminal *row =
        srv->ref && tid && n == 8 ? sw_ref_terminal(srv->ref, t->acquirer, tid) : NULL;
    struct dl *d = NULL;
    for (size_t i = 0; i < DL_MAX; i++) {
        if (dls[i].t && row && strcmp(dls[i].acquirer, t->acquirer) == 0 &&
            memcmp(dls[i].tid, tid, 8) == 0) {
            d = NULL; /* this terminal already has one running */
            break;
        }
        if (!dls[i].t && !d)
            d = &dls[i];
    }
    if (!row || !row->enabled || !row->tak[0]) {
        memset(t->terminal.tak, 0, sizeof t->terminal.tak);
        at_log(AT_LOG_WARN, "key_download_refused", AT_STR("acquirer", t->acquirer),
               AT_STR("rc", "58"), AT_STR("reason", "unknown or disabled terminal"));
        sw_txn_key_download_done(t, "58");
        return;
    }
    if (!d) {
        at_log(AT_LOG_WARN, "key_download_refused", AT_STR("acquirer", t->acquirer),
               AT_STR("terminal", row->tid), AT_STR("rc", "94"),
               AT_STR("reason", "a download of this terminal (or too many) in progress"));
        sw_txn_key_download_done(t, "94");
        return;
    }
    t->terminal = *row;
    *d = (struct dl){ .t = t, .tpk_wanted = row->scheme == SW_TERM_TPK };
    at_strlcpy(d->acquirer, t->acquirer, sizeof d->acquirer);
    memcpy(d->tid, row->tid, 9);
    at_log(AT_LOG_INFO, "key_download_started", AT_STR("acquirer", d->acquirer),
           AT_STR("terminal", d->tid), AT_STR("keys", d->tpk_wanted ? "TPK+TAK" : "TAK"));
    if (db_keyx_terminal_tmk(srv->db, d->acquirer, d->tid, on_dl_tmk, d) != 0)
        dl_end(d, "96", "database queue full");
}
