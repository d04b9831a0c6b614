/* issuer-sim's links: the listener, one at_stream per switch link cut into ISO frames, a
 * request slot per frame handed to txn.c, network management (0800 → 0810) answered here, and
 * the global backpressure that pauses every link while the pool or hsm-sim is full. */
#include "issuer_int.h"

#include "log.h"
#include "stream.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- backpressure */

/* Pauses every connection while the request pool is full or hsm-sim is saturated, resumes them
 * when both have room again (a quarter of the pool free), so no queue grows without bound. */
void link_backpressure_update(struct iss *s)
{
    bool want = s->inflight >= s->pool_size || s->hsm_busy ||
                (s->paused && s->inflight > s->pool_size * 3 / 4);
    if (want == s->paused)
        return;
    s->paused = want;
    at_log(AT_LOG_INFO, want ? "backpressure_on" : "backpressure_off",
           AT_UINT("inflight", s->inflight), AT_BOOL("hsm_busy", s->hsm_busy));
    struct conn *c;
    LIST_FOREACH(c, &s->conns, link)
    {
        if (!c->s || c->global_paused == want)
            continue;
        c->global_paused = want;
        if (want)
            at_stream_pause(c->s);
        else
            at_stream_resume(c->s);
    }
}

void link_on_hsm_busy(void *arg, bool busy)
{
    struct iss *s = arg;
    s->hsm_busy = busy;
    link_backpressure_update(s);
}

/* ---------------------------------------------------------------- connections */

void link_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    LIST_REMOVE(c, link);
    free(c);
}

int link_write(struct conn *c, const uint8_t *msg, size_t len)
{
    return isonet_send(c->s, &c->iss->wire, NULL, msg, len);
}

/* ---------------------------------------------------------------- network management */

/* 0800 sign-on (001), sign-off (002), echo (301) → 0810 00; another DE 70 → 12, none → 30.
 * No MAC either way. */
static void netmgmt(struct txn *t)
{
    char code[4] = "";
    if (!field_str(&t->req, 70, 3, 3, code)) {
        memcpy(t->rc, "30", 3);
    } else if (!strcmp(code, "161")) { /* key change: answered once its keys are imported */
        snprintf(t->outcome, sizeof t->outcome, "key_change");
        snprintf(t->pcode, sizeof t->pcode, "%s", code);
        keyx_change(t);
        return;
    } else if (!strcmp(code, "001") || !strcmp(code, "002") || !strcmp(code, "301")) {
        memcpy(t->rc, "00", 3);
    } else {
        memcpy(t->rc, "12", 3);
    }
    snprintf(t->outcome, sizeof t->outcome, "netmgmt");
    snprintf(t->pcode, sizeof t->pcode, "%s", code);
    txn_respond(t, false);
}

/* ---------------------------------------------------------------- frames */

/* Ends a request read from st that closes its link (nothing is answered on it). */
static void drop(struct txn *t, struct at_stream *st, const char *why, const char *outcome)
{
    at_stream_close(st, why, false);
    strcpy(t->outcome, outcome);
    memcpy(t->rc, "--", 3);
    txn_finish(t);
}

/* A frame: a request slot, the message unpacked into it, then by MTI — network management
 * answered here, a response MTI closing the link, anything else to txn_begin(). */
static void on_frame(void *arg, struct at_stream *st, const uint8_t *frame, size_t frame_len,
                     const uint8_t *msg, size_t msg_len)
{
    struct conn *c = arg;
    struct iss *s = c->iss;
    struct iso_err ie;
    (void)frame;
    (void)frame_len;
    if (msg_len > MAX_MSG) {
        at_stream_close(st, "message too long", false);
        return;
    }
    struct txn *t = txn_get(s, c);
    if (!t) { /* cannot happen while backpressure pauses the links at a full pool */
        at_stream_close(st, "request pool exhausted", false);
        return;
    }
    memcpy(t->msg, msg, msg_len);
    t->len = msg_len;
    iso_msg_init(&t->req, t->arena, sizeof t->arena);
    if (iso_unpack(s->dialect, t->msg, t->len, &t->req, &ie) != 0) {
        at_log(AT_LOG_WARN, "unpack_failed", AT_STR("peer", at_stream_peer(st)),
               AT_INT("field", ie.field), AT_UINT("offset", ie.offset),
               AT_STR("reason", ie.reason));
        t->len = 0;
        drop(t, st, "malformed message", "malformed");
        return;
    }
    memcpy(t->mti, t->req.mti, 4);
    t->mti[4] = '\0';
    if (strcmp(t->mti, "0800") == 0) {
        netmgmt(t);
        return;
    }
    if ((t->mti[2] - '0') % 2 != 0) {
        drop(t, st, "response message on the issuer link", "unexpected");
        return;
    }
    txn_begin(t);
}

static void on_close(void *arg, struct at_stream *st, const char *reason)
{
    struct conn *c = arg;
    at_log(AT_LOG_INFO, "link_closed", AT_STR("peer", at_stream_peer(st)),
           AT_STR("reason", reason));
    c->s = NULL;
    link_unref(c);
}

/* ---------------------------------------------------------------- the listener */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct iss *s = arg;
    (void)l;
    (void)sa;
    (void)salen;
    const struct at_stream_limits lim = { .max_frame = MAX_MSG + ISO_FRAME_MAX_HEADER,
                                          .tls = s->tls /* NULL: plain TCP */ };
    static struct at_stream_ops ops = { .on_frame = on_frame, .on_close = on_close };
    ops.frame = isonet_frame_fn;
    ops.frame_arg = &s->wire;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->iss = s;
    c->refs = 1;
    c->s = at_stream_new(s->base, fd, &ops, c, &lim);
    if (!c->s) {
        free(c);
        return;
    }
    LIST_INSERT_HEAD(&s->conns, c, link);
    if (s->paused) {
        c->global_paused = true;
        at_stream_pause(c->s);
    }
    at_log(AT_LOG_INFO, "link_accepted", AT_STR("peer", at_stream_peer(c->s)));
}

int link_listen(struct iss *s, const struct sockaddr *sa, socklen_t sl)
{
    s->lst = evconnlistener_new_bind(s->base, on_accept, s,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128, sa, (int)sl);
    return s->lst ? 0 : -1;
}

void link_stop_accepting(struct iss *s)
{
    if (s->lst) {
        evconnlistener_free(s->lst);
        s->lst = NULL;
    }
}

void link_pause_all(struct iss *s)
{
    struct conn *c;
    LIST_FOREACH(c, &s->conns, link)
    if (c->s)
        at_stream_pause(c->s);
}

void link_close_all(struct iss *s)
{
    struct conn *c;
    LIST_FOREACH(c, &s->conns, link)
    if (c->s)
        at_stream_close(c->s, "shutdown", false);
}
