/* Issuer links: one persistent outbound connection per [issuer] section,
 * signed on with 0800/001 before any request, kept alive by 0800/301 echoes
 * when idle, reconnected with exponential backoff. Responses are matched to
 * requests by the STAN the switch assigned on this link (DE 11) and the MTI
 * class; an answer nobody waits for any more is a late response: logged and
 * counted, never forwarded (its reversal was queued at the timeout). */
#include "switchd.h"

#include "swtls.h"

#include "clock.h"
#include "keyx.h"
#include "fmt.h"
#include "log.h"
#include "parse.h"
#include "pending.h"
#include "advice.h"
#include "saf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const link_state_names[SW_LINK_state_max] = { "down", "connecting", "signon",
                                                                 "up" };

const char *sw_link_state_name(enum sw_link_state s)
{
    return s < SW_LINK_state_max ? link_state_names[s] : "?";
}

uint64_t sw_now_ms(void)
{
    return at_mono_ns() / 1000000u;
}

void sw_de7_now(char out[11])
{
    /* Every request forwarded in one second carries the same DE 7: format it
     * once per second. The loop thread is the only caller. */
    static time_t cached_sec = -1;
    static char cached[11];
    time_t now = time(NULL);
    if (now != cached_sec) {
        int64_t y;
        unsigned mo, d, sod = (unsigned)(now % 86400);
        at_civil_from_days(now / 86400, &y, &mo, &d);
        at_put_digits(cached, 2, mo);
        at_put_digits(cached + 2, 2, d);
        at_put_digits(cached + 4, 2, sod / 3600);
        at_put_digits(cached + 6, 2, sod / 60 % 60);
        at_put_digits(cached + 8, 2, sod % 60);
        cached[10] = '\0';
        cached_sec = now;
    }
    memcpy(out, cached, 11);
}

/* The one door for link state changes: logs every move. */
static void set_state(struct sw_link *l, enum sw_link_state to, const char *why)
{
    if (l->state == to)
        return;
    /* Retries of a down link are debug noise; the moves an operator acts on
     * (up, lost, refused) are not. */
    bool retry = (to == SW_LINK_CONNECTING && l->state == SW_LINK_DOWN) ||
                 (to == SW_LINK_DOWN && l->state == SW_LINK_CONNECTING && l->logged_down);
    enum at_log_level level = retry                                        ? AT_LOG_DEBUG
                              : to == SW_LINK_UP || l->state == SW_LINK_UP ? AT_LOG_WARN
                                                                           : AT_LOG_INFO;
    if (to == SW_LINK_DOWN)
        l->logged_down = true;
    if (to == SW_LINK_UP)
        l->logged_down = false;
    at_log(level, "link_state", AT_STR("issuer", l->conf->name),
           AT_STR("from", sw_link_state_name(l->state)), AT_STR("to", sw_link_state_name(to)),
           AT_STR("reason", why));
    if (to == SW_LINK_UP)
        l->up_since_ms = sw_now_ms();
    l->state = to;
}

/* The next free STAN of the link, within this instance's slot: with stan_slots instances on one
 * database, instance stan_slot hands out only STANs with (STAN - 1) % stan_slots == stan_slot,
 * so two instances never send one issuer the same DE 11 (with DE 7, the issuer's request key)
 * however their counters and clocks move. A static partition rather than a PostgreSQL sequence:
 * no round trip per request, and it keeps working while PostgreSQL is unreachable (spool). */
uint32_t sw_link_stan(struct sw_link *l)
{
    const uint32_t slots = (uint32_t)l->srv->conf.stan_slots,
                   slot = (uint32_t)l->srv->conf.stan_slot;
    const uint32_t top = 999999 - (999999 - 1 - slot) % slots; /* the largest STAN of the slot */
    for (;;) {
        uint32_t s = l->next_stan;
        if (s < slot + 1 || s >= top || (s - 1) % slots != slot)
            s = s < slot + 1 || s >= top ? slot + 1 : s - (s - 1) % slots + slot + slots;
        else
            s += slots;
        if (s > top)
            s = slot + 1;
        l->next_stan = s;
        if (!sw_pending_get(l->pending, s, NULL))
            return s;
    }
}

static int send_msg(struct sw_link *l, const uint8_t *msg, size_t len)
{
    static const uint8_t tpdu[ISO_TPDU_LEN] = { 0x60, 0, 0, 0, 0 };
    if (isonet_send(l->stream, &l->wire, tpdu, msg, len) != 0)
        return -1;
    l->last_traffic_ms = sw_now_ms();
    return 0;
}

/* 0800 with DE 7, DE 11 and DE 70 (001 sign-on, 301 echo, 161 key change with its keys in
 * DE 48: keyx.c), DE 48 only when de48 is not NULL. */
int sw_link_send_0800(struct sw_link *l, const char *code, const char *de48, size_t n48,
                      uint32_t *stan_out)
{
    struct iso_msg m;
    uint8_t arena[512], out[512];
    char de7[11], de11[7];
    size_t len;
    struct iso_err e;
    if (l->state < SW_LINK_SIGNON || !l->stream)
        return -1;
    uint32_t stan = sw_link_stan(l);
    sw_de7_now(de7);
    snprintf(de11, sizeof de11, "%06u", stan);
    iso_msg_init(&m, arena, sizeof arena);
    if (iso_set_mti(&m, "0800") != 0 || iso_set(&m, 7, de7, 10) != 0 ||
        iso_set(&m, 11, de11, 6) != 0 || iso_set(&m, 70, code, 3) != 0 ||
        (de48 && iso_set(&m, 48, de48, n48) != 0) ||
        iso_pack(l->dialect, &m, out, sizeof out, &len, &e) != 0)
        return -1;
    *stan_out = stan;
    return send_msg(l, out, len);
}

static int send_netmgmt(struct sw_link *l, const char *code, uint32_t *stan_out)
{
    return sw_link_send_0800(l, code, NULL, 0, stan_out);
}

static void link_connect(struct sw_link *l);

static void schedule_reconnect(struct sw_link *l)
{
    struct timeval tv = { (time_t)(l->backoff_ms / 1000),
                          (suseconds_t)(l->backoff_ms % 1000) * 1000 };
    evtimer_add(&l->reconnect, &tv);
    l->backoff_ms *= 2;
    if (l->backoff_ms > l->conf->reconnect_max_ms)
        l->backoff_ms = l->conf->reconnect_max_ms;
}

static void fail_pending(void *arg, uint32_t stan, enum sw_pending_kind kind, void *ptr)
{
    struct sw_link *l = arg;
    (void)l;
    if (kind == SW_PENDING_TXN)
        sw_txn_issuer_lost(ptr);
}

static void on_close(void *arg, struct at_stream *s, const char *reason)
{
    struct sw_link *l = arg;
    l->stream = NULL;
    l->echo_outstanding = false;
    if (at_stream_tls_failure(s)) {
        /* Every failed handshake (a link retries): the certificate is wrong. */
        char ep[SW_NAME_LEN + 8];
        snprintf(ep, sizeof ep, "issuer:%s", l->conf->name);
        sw_tls_count_close(l->srv, ep, s);
        at_log(AT_LOG_WARN, "issuer_tls_failed", AT_STR("issuer", l->conf->name),
               AT_STR("reason", reason));
    }
    set_state(l, SW_LINK_DOWN, reason);
    /* Requests already sent have an unknown outcome: answer them 91 now and
     * let store-and-forward reverse them. The txns remove themselves. */
    struct sw_pending *old = l->pending;
    l->pending = sw_pending_new(l->conf->max_inflight + 64);
    if (!l->pending) {
        l->pending = old;
        old = NULL;
    }
    if (old) {
        sw_pending_each(old, fail_pending, l);
        sw_pending_free(old);
    }
    if (!l->srv->draining)
        schedule_reconnect(l);
}

static void handle_netmgmt_request(struct sw_link *l, const struct iso_msg *m)
{
    struct iso_msg r;
    uint8_t arena[64], out[256];
    size_t len;
    struct iso_err e;
    char mti[5];
    iso_msg_init(&r, arena, sizeof arena);
    iso_msg_copy(&r, m);
    isonet_response_mti(m->mti, mti);
    if (iso_set_mti(&r, mti) == 0 && iso_set(&r, 39, "00", 2) == 0 &&
        iso_pack(l->dialect, &r, out, sizeof out, &len, &e) == 0)
        (void)send_msg(l, out, len);
}

static void on_frame(void *arg, struct at_stream *s, const uint8_t *frame, size_t frame_len,
                     const uint8_t *msg, size_t msg_len)
{
    struct sw_link *l = arg;
    struct iso_msg m;
    struct iso_err e;
    uint64_t stan;
    size_t n;
    const uint8_t *p;

    l->last_traffic_ms = sw_now_ms();
    iso_msg_init(&m, l->arena, l->arena_cap);
    if (iso_unpack(l->dialect, msg, msg_len, &m, &e) != 0) {
        at_log(AT_LOG_ERROR, "issuer_bad_message", AT_STR("issuer", l->conf->name),
               AT_INT("field", e.field), AT_UINT("offset", e.offset), AT_STR("reason", e.reason));
        at_stream_close(s, "malformed message from issuer", false);
        return;
    }
    if (memcmp(m.mti, "0800", 4) == 0) {
        handle_netmgmt_request(l, &m);
        return;
    }
    p = iso_get(&m, 11, &n);
    if (!p || !at_parse_u64n((const char *)p, n, 999999, &stan)) {
        at_log(AT_LOG_ERROR, "issuer_bad_message", AT_STR("issuer", l->conf->name),
               AT_STRN("mti", m.mti, 4), AT_STR("reason", "response without a valid DE 11"));
        return;
    }
    if (memcmp(m.mti, "0810", 4) == 0) {
        p = iso_get(&m, 39, &n);
        bool ok = p && n == 2 && memcmp(p, "00", 2) == 0;
        if (l->state == SW_LINK_SIGNON && stan == l->signon_stan) {
            if (ok) {
                l->backoff_ms = l->conf->reconnect_min_ms;
                set_state(l, SW_LINK_UP, "signed on");
            } else {
                at_stream_close(s, "sign-on refused", false);
            }
        } else if (stan == l->echo_stan) {
            l->echo_outstanding = false;
        } else {
            (void)sw_keyx_answer(l, (uint32_t)stan, &m); /* a key change's answer (keyx.c) */
        }
        return;
    }
    enum sw_pending_kind kind;
    void *ptr = sw_pending_get(l->pending, (uint32_t)stan, &kind);
    if (ptr && kind == SW_PENDING_TXN && !sw_txn_answer_class_ok(ptr, m.mti))
        ptr = NULL; /* same STAN, another message class: not its answer */
    if (ptr && kind == SW_PENDING_SAF && memcmp(m.mti, "043", 3) != 0)
        ptr = NULL;
    if (ptr && kind == SW_PENDING_ADVICE && !sw_advice_answer_class_ok(ptr, m.mti))
        ptr = NULL;
    if (!ptr) {
        l->srv->metrics.late_responses_total++;
        p = iso_get(&m, 39, &n);
        at_log(AT_LOG_WARN, "late_response", AT_STR("issuer", l->conf->name),
               AT_STRN("mti", m.mti, 4), AT_UINT("issuer_stan", stan),
               AT_STRN("rc", p ? (const char *)p : "", p ? n : 0),
               AT_STR("action", "not forwarded; reversal already queued at timeout"));
        return;
    }
    if (kind == SW_PENDING_SAF) {
        sw_pending_del(l->pending, (uint32_t)stan);
        sw_saf_answer(l->srv, ptr, &m, msg, msg_len);
        return;
    }
    if (kind == SW_PENDING_ADVICE) {
        sw_pending_del(l->pending, (uint32_t)stan);
        sw_advice_answer(l->srv, ptr, &m, msg, msg_len);
        return;
    }
    sw_pending_del(l->pending, (uint32_t)stan);
    sw_txn_issuer_answer(ptr, &m, msg, msg_len);
}

static void on_connect(void *arg, struct at_stream *s)
{
    struct sw_link *l = arg;
    set_state(l, SW_LINK_SIGNON, "connected");
    if (send_netmgmt(l, "001", &l->signon_stan) != 0)
        at_stream_close(s, "cannot send sign-on", false);
}

static void link_connect(struct sw_link *l)
{
    struct at_stream_ops ops = { .frame = isonet_frame_fn,
                                 .frame_arg = &l->wire,
                                 .on_frame = on_frame,
                                 .on_connect = on_connect,
                                 .on_close = on_close };
    struct at_stream_limits lim = { .max_frame = l->conf->max_frame + ISO_FRAME_MAX_HEADER,
                                    .frames_per_wakeup = 256,
                                    .max_output = 16u << 20,
                                    .tls = l->tls /* NULL: plain TCP */ };
    set_state(l, SW_LINK_CONNECTING, "connecting");
    l->stream =
        at_stream_connect(l->srv->base, (struct sockaddr *)&l->addr, l->addrlen, &ops, l, &lim);
    if (!l->stream) {
        set_state(l, SW_LINK_DOWN, "out of memory");
        schedule_reconnect(l);
    }
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct sw_link *l = arg;
    if (l->state == SW_LINK_DOWN && !l->srv->draining)
        link_connect(l);
}

/* Every echo interval: an unanswered echo means the link is dead; an idle
 * link gets an echo. */
static void on_echo(evutil_socket_t fd, short what, void *arg)
{
    struct sw_link *l = arg;
    if (l->state == SW_LINK_UP) {
        if (l->echo_outstanding) {
            at_stream_close(l->stream, "echo not answered", false);
        } else if (sw_now_ms() - l->last_traffic_ms >= l->conf->echo_interval_ms) {
            if (send_netmgmt(l, "301", &l->echo_stan) == 0)
                l->echo_outstanding = true;
        }
    } else if (l->state == SW_LINK_SIGNON && sw_now_ms() - l->last_traffic_ms >= 5000) {
        at_stream_close(l->stream, "sign-on not answered", false);
    }
}

/* Sends msg on l registered under stan as (kind, entry) in its pending table. 0, or -1 when the
 * link is not up, the STAN is taken or the link refuses the bytes. */
static int send_registered(struct sw_link *l, enum sw_pending_kind kind, void *entry, uint32_t stan,
                           const uint8_t *msg, size_t len)
{
    if (l->state != SW_LINK_UP)
        return -1;
    if (sw_pending_put(l->pending, stan, kind, entry) != 0)
        return -1;
    if (send_msg(l, msg, len) != 0) {
        sw_pending_del(l->pending, stan);
        return -1;
    }
    return 0;
}

int sw_link_forward(struct sw_link *l, struct sw_txn *txn, uint32_t stan, const uint8_t *msg,
                    size_t len)
{
    return send_registered(l, SW_PENDING_TXN, txn, stan, msg, len);
}

int sw_link_send_advice(struct sw_link *l, void *entry, uint32_t stan, const uint8_t *msg,
                        size_t len)
{
    return send_registered(l, SW_PENDING_ADVICE, entry, stan, msg, len);
}

int sw_link_send_saf(struct sw_link *l, void *entry, uint32_t stan, const uint8_t *msg, size_t len)
{
    return send_registered(l, SW_PENDING_SAF, entry, stan, msg, len);
}

void sw_link_forget(struct sw_link *l, uint32_t stan)
{
    sw_pending_del(l->pending, stan);
}

int sw_links_start(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->conf.n_issuers; i++) {
        struct sw_link *l = &srv->links[i];
        const struct sw_issuer_conf *c = &srv->conf.issuers[i];
        const char *why;
        struct at_tls *tls = l->tls; /* made by sw_tls_start, before the links */
        memset(l, 0, sizeof *l);
        l->tls = tls;
        l->srv = srv;
        l->conf = c;
        l->dialect = iso_dialect_find(c->dialect);
        if (!l->dialect || iso_frame_kind_parse(c->framing, &l->framing) != 0 ||
            !at_parse_hostport(c->address, &l->addr, &l->addrlen, &why)) {
            at_log(AT_LOG_ERROR, "issuer_config", AT_STR("issuer", c->name),
                   AT_STR("reason", "unknown dialect, framing or address"));
            return -1;
        }
        l->wire.kind = l->framing;
        l->wire.max = c->max_frame;
        l->pending = sw_pending_new(c->max_inflight + 64);
        l->arena_cap = ISO_ARENA_FOR(c->max_frame);
        l->arena = malloc(l->arena_cap);
        if (!l->pending || !l->arena)
            return -1;
        struct timeval tmo = { (time_t)(c->timeout_ms / 1000),
                               (suseconds_t)(c->timeout_ms % 1000) * 1000 };
        l->common_timeout = event_base_init_common_timeout(srv->base, &tmo);
        evtimer_assign(&l->reconnect, srv->base, on_reconnect, l);
        event_assign(&l->echo, srv->base, -1, EV_PERSIST, on_echo, l);
        struct timeval echo = { 1, 0 };
        if (c->echo_interval_ms >= 2000)
            echo.tv_sec = (time_t)(c->echo_interval_ms / 2000);
        evtimer_add(&l->echo, &echo);
        l->backoff_ms = c->reconnect_min_ms;
        l->next_stan = (uint32_t)(at_wall_us() % 999999); /* fresh STANs after a restart */
        srv->n_links = i + 1;
        link_connect(l);
    }
    return 0;
}

void sw_links_stop(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->n_links; i++) {
        struct sw_link *l = &srv->links[i];
        evtimer_del(&l->reconnect);
        evtimer_del(&l->echo);
        if (l->stream)
            at_stream_close(l->stream, "switch stopping", true);
    }
}

void sw_links_free(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->n_links; i++) {
        sw_pending_free(srv->links[i].pending);
        srv->links[i].pending = NULL;
        free(srv->links[i].arena);
        srv->links[i].arena = NULL;
    }
}
