/* Terminal side: listeners accept acquirer connections; each session is an
 * at_stream cut into ISO 8583 frames by the listener's framing. A session is
 * freed when its stream has closed and the last transaction holding it has
 * ended (refs), so a late answer never touches freed memory. */
#include "switchd.h"

#include "log.h"
#include "parse.h"

#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The at_stream framing function of every ISO 8583 link of the switch
 * (terminal sessions and issuer links): frame_arg is a struct sw_framing. */
int sw_frame_fn(void *arg, const uint8_t *buf, size_t avail, struct at_frame *fr, char *why,
                size_t whycap)
{
    const struct sw_framing *f = arg;
    struct iso_frame got;
    struct iso_err e;
    int r = iso_frame_parse(f->kind, f->max, buf, avail, &got, &e);
    if (r < 0) {
        snprintf(why, whycap, "%s", e.reason);
        return -1;
    }
    if (r == ISO_FRAME_NEED_MORE) {
        fr->need = got.need;
        return 0;
    }
    fr->msg_off = got.msg_off;
    fr->msg_len = got.msg_len;
    fr->consume = got.consume;
    return 1;
}

void sw_term_release(struct sw_term *t)
{
    if (--t->refs > 0)
        return;
    struct sw_server *srv = t->srv;
    if (t->prev)
        t->prev->next = t->next;
    else
        srv->terms = t->next;
    if (t->next)
        t->next->prev = t->prev;
    srv->n_terms--;
    free(t);
}

static void on_frame(void *arg, struct at_stream *s, const uint8_t *frame, size_t frame_len,
                     const uint8_t *msg, size_t msg_len)
{
    struct sw_term *t = arg;
    const uint8_t *tpdu = t->lst->framing == ISO_FRAME_TPDU ? frame + 2 : NULL;
    t->srv->metrics.frames_in_total++;
    sw_txn_start(t, frame, frame_len, msg, msg_len, tpdu);
}

static void on_close(void *arg, struct at_stream *s, const char *reason)
{
    struct sw_term *t = arg;
    /* An ordinary hang-up is debug detail; any other reason is worth a look. */
    at_log(strcmp(reason, "peer closed") == 0 ? AT_LOG_DEBUG : AT_LOG_INFO, "terminal_disconnected",
           AT_STR("listener", t->lst->conf->name), AT_STR("peer", at_stream_peer(s)),
           AT_UINT("conn", at_stream_id(s)), AT_STR("reason", reason),
           AT_UINT("in_flight", t->inflight));
    t->state = SW_TERM_CLOSED;
    t->stream = NULL;
    t->lst->connections--;
    sw_term_release(t);
}

void sw_term_txn_done(struct sw_term *t)
{
    t->inflight--;
    if (t->capped && t->state == SW_TERM_OPEN && t->inflight < t->lst->conf->max_inflight) {
        t->capped = false;
        at_stream_resume(t->stream);
    }
    sw_term_release(t);
}

void sw_term_txn_begin(struct sw_term *t)
{
    t->refs++;
    t->inflight++;
    if (!t->capped && t->state == SW_TERM_OPEN && t->inflight >= t->lst->conf->max_inflight) {
        t->capped = true;
        at_stream_pause(t->stream);
    }
}

int sw_term_send(struct sw_term *t, const uint8_t *tpdu, const uint8_t *msg, size_t len)
{
    uint8_t hdr[ISO_FRAME_MAX_HEADER];
    struct iso_err e;
    if (t->state != SW_TERM_OPEN)
        return -1;
    if (iso_frame_header(t->lst->framing, t->lst->conf->max_frame, len, tpdu, hdr, sizeof hdr,
                         &e) != 0)
        return -1;
    if (at_stream_write(t->stream, hdr, iso_frame_header_len(t->lst->framing), msg, len) != 0)
        return -1;
    t->srv->metrics.frames_out_total++;
    return 0;
}

void sw_term_close(struct sw_term *t, const char *reason)
{
    if (t->state == SW_TERM_OPEN && t->stream)
        at_stream_close(t->stream, reason, true);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct sw_listener *l = arg;
    struct sw_server *srv = l->srv;
    static const struct at_stream_ops ops = { .frame = sw_frame_fn,
                                              .on_frame = on_frame,
                                              .on_close = on_close };

    if (srv->draining || l->connections >= l->conf->max_connections) {
        srv->metrics.conns_refused_total++;
        at_log(AT_LOG_WARN, "terminal_refused", AT_STR("listener", l->conf->name),
               AT_STR("reason", srv->draining ? "draining" : "max_connections reached"));
        evutil_closesocket(fd);
        return;
    }
    struct sw_term *t = calloc(1, sizeof *t);
    if (!t) {
        evutil_closesocket(fd);
        return;
    }
    struct at_stream_ops o = ops;
    o.frame_arg = &l->wire;
    struct at_stream_limits lim = {
        .max_frame = l->conf->max_frame + iso_frame_header_len(l->framing),
        .frames_per_wakeup = 32,
    };
    t->srv = srv;
    t->lst = l;
    t->refs = 1; /* the stream's */
    t->stream = at_stream_new(srv->base, fd, &o, t, &lim);
    if (!t->stream) {
        free(t);
        return;
    }
    if (l->conf->idle_timeout_s)
        at_stream_set_idle_timeout(t->stream, (unsigned)l->conf->idle_timeout_s);
    t->next = srv->terms;
    if (srv->terms)
        srv->terms->prev = t;
    srv->terms = t;
    srv->n_terms++;
    l->connections++;
    srv->metrics.conns_accepted_total++;
    if (srv->backpressure) {
        t->global_paused = true;
        at_stream_pause(t->stream);
    }
    at_log(AT_LOG_DEBUG, "terminal_connected", AT_STR("listener", l->conf->name),
           AT_STR("peer", at_stream_peer(t->stream)), AT_UINT("conn", at_stream_id(t->stream)));
}

void sw_terms_set_paused(struct sw_server *srv, bool paused)
{
    for (struct sw_term *t = srv->terms; t; t = t->next) {
        if (t->state != SW_TERM_OPEN || t->global_paused == paused)
            continue;
        t->global_paused = paused;
        if (paused)
            at_stream_pause(t->stream);
        else
            at_stream_resume(t->stream);
    }
}

int sw_listeners_start(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->conf.n_listeners; i++) {
        struct sw_listener *l = &srv->listeners[i];
        const struct sw_listener_conf *c = &srv->conf.listeners[i];
        struct sockaddr_storage ss;
        socklen_t len;
        const char *why;
        l->conf = c;
        l->srv = srv;
        l->dialect = iso_dialect_find(c->dialect);
        if (!l->dialect || iso_frame_kind_parse(c->framing, &l->framing) != 0 ||
            !at_parse_hostport(c->address, &ss, &len, &why)) {
            at_log(AT_LOG_ERROR, "listener_config", AT_STR("listener", c->name),
                   AT_STR("reason", "unknown dialect, framing or address"));
            return -1;
        }
        l->evl = evconnlistener_new_bind(srv->base, on_accept, l,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                             LEV_OPT_CLOSE_ON_EXEC,
                                         1024, (struct sockaddr *)&ss, (int)len);
        if (!l->evl) {
            at_log(AT_LOG_ERROR, "listen_failed", AT_STR("listener", c->name),
                   AT_STR("address", c->address),
                   AT_STR("reason", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())));
            return -1;
        }
        l->wire.kind = l->framing;
        l->wire.max = c->max_frame;
        srv->n_listeners = i + 1;
        at_log(AT_LOG_INFO, "listening", AT_STR("listener", c->name), AT_STR("address", c->address),
               AT_STR("dialect", c->dialect), AT_STR("framing", c->framing));
    }
    return 0;
}

void sw_listeners_stop(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        if (srv->listeners[i].evl) {
            evconnlistener_free(srv->listeners[i].evl);
            srv->listeners[i].evl = NULL;
        }
    }
}

void sw_terms_close_all(struct sw_server *srv, const char *reason)
{
    for (struct sw_term *t = srv->terms; t; t = t->next)
        sw_term_close(t, reason);
}
