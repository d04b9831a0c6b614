/* Terminal side: listeners accept acquirer connections; each session is an
 * at_stream cut into ISO 8583 frames by the listener's framing. A session is
 * freed when its stream has closed and the last transaction holding it has
 * ended (refs), so a late answer never touches freed memory.
 *
 * A terminal cannot hold what it does not use: each listener caps its
 * connections in all and per peer address (refused at accept), and its
 * streams close a session that sends nothing while nothing is in flight
 * (idle_timeout_s), that leaves a request unfinished (frame_timeout_ms), or
 * that does not read its answers (write_timeout_ms, max_output_bytes). An
 * accept() failing for want of descriptors pauses the listener instead of
 * spinning (sw_accept_pause). */
#include "switchd.h"

#include "swtls.h"

#include "log.h"
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define ACCEPT_BACKOFF_MIN_MS 100
#define ACCEPT_BACKOFF_MAX_MS 1000

void sw_term_release(struct sw_term *t)
{
    if (--t->refs > 0)
        return;
    struct sw_server *srv = t->srv;
    LIST_REMOVE(t, link);
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

/* The per-address table goes with the listener's last connection: sessions
 * still open after the listener stopped (draining) count themselves out. */
static void maybe_free_per_addr(struct sw_listener *l)
{
    if (!l->evl && l->connections == 0 && l->per_addr) {
        sw_addrcount_free(l->per_addr);
        l->per_addr = NULL;
    }
}

/* The at_stream reasons of the limits a terminal can run into, counted by
 * cause in /metrics. */
static void count_close(struct sw_metrics *m, const char *reason)
{
    static const char *const reasons[SW_CLOSE_max] = {
        [SW_CLOSE_IDLE] = AT_STREAM_IDLE_TIMEOUT,
        [SW_CLOSE_FRAME_TIMEOUT] = AT_STREAM_FRAME_TIMEOUT,
        [SW_CLOSE_WRITE_TIMEOUT] = AT_STREAM_WRITE_TIMEOUT,
        [SW_CLOSE_OUTPUT_CAP] = AT_STREAM_OUTPUT_CAP,
    };
    for (int i = 0; i < SW_CLOSE_max; i++)
        if (strcmp(reason, reasons[i]) == 0)
            m->closed[i]++;
}

static void on_close(void *arg, struct at_stream *s, const char *reason)
{
    struct sw_term *t = arg;
    struct sw_listener *l = t->lst;
    /* An ordinary hang-up is debug detail; any other reason is worth a look. */
    at_log(strcmp(reason, "peer closed") == 0 ? AT_LOG_DEBUG : AT_LOG_INFO, "terminal_disconnected",
           AT_STR("listener", l->conf->name), AT_STR("peer", at_stream_peer(s)),
           AT_UINT("conn", at_stream_id(s)), AT_STR("reason", reason),
           AT_UINT("in_flight", t->inflight));
    count_close(&t->srv->metrics, reason);
    sw_tls_count_close(t->srv, l->conf->name, s); /* a TLS handshake that failed */
    if (t->addr_counted) {
        sw_addrcount_drop(l->per_addr, &t->addr);
        t->addr_counted = false;
    }
    t->state = SW_TERM_CLOSED;
    t->stream = NULL;
    l->connections--;
    maybe_free_per_addr(l);
    /* The socket is closed as soon as this returns, before the loop polls
     * again: a listener paused for want of descriptors may accept now. */
    sw_accept_resume_all(t->srv);
    sw_term_release(t);
}

void sw_term_txn_done(struct sw_term *t)
{
    t->inflight--;
    if (t->state == SW_TERM_OPEN) {
        if (t->capped && t->inflight < t->lst->conf->max_inflight) {
            t->capped = false;
            at_stream_resume(t->stream);
        }
        if (t->inflight == 0)
            at_stream_set_busy(t->stream, false); /* idle from now on, if nothing comes */
    }
    sw_term_release(t);
}

void sw_term_txn_begin(struct sw_term *t)
{
    t->refs++;
    t->inflight++;
    if (t->state != SW_TERM_OPEN)
        return;
    if (t->inflight == 1)
        at_stream_set_busy(t->stream, true); /* a session waiting for its answer is not idle */
    if (!t->capped && t->inflight >= t->lst->conf->max_inflight) {
        t->capped = true;
        at_stream_pause(t->stream);
    }
}

int sw_term_send(struct sw_term *t, const uint8_t *tpdu, const uint8_t *msg, size_t len)
{
    if (t->state != SW_TERM_OPEN || isonet_send(t->stream, &t->lst->wire, tpdu, msg, len) != 0)
        return -1;
    t->srv->metrics.frames_out_total++;
    return 0;
}

void sw_term_close(struct sw_term *t, const char *reason)
{
    if (t->state == SW_TERM_OPEN && t->stream)
        at_stream_close(t->stream, reason, true);
}

/* A TLS terminal's handshake ended (at_stream calls on_connect for it): the
 * subject binding, when the listener has one (swtls.c). */
static void on_tls_ready(void *arg, struct at_stream *s)
{
    struct sw_term *t = arg;
    if (!sw_tls_session_ok(t, s))
        at_stream_close(s, "tls: certificate names another acquirer", false);
}

/* ---- pausing a listener whose accept() fails (see switchd.h) ---- */

static void accept_retry(evutil_socket_t fd, short what, void *arg);

int sw_accept_pause_init(struct sw_accept_pause *p, struct sw_server *srv,
                         struct evconnlistener *evl, const char *name)
{
    memset(p, 0, sizeof *p);
    p->srv = srv;
    p->evl = evl;
    p->name = name;
    p->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    p->retry = evtimer_new(srv->base, accept_retry, p);
    return p->retry ? 0 : -1;
}

void sw_accept_pause_stop(struct sw_accept_pause *p)
{
    if (p->retry)
        event_free(p->retry);
    p->retry = NULL;
    p->evl = NULL;
    p->paused = p->episode = false;
}

static void arm_retry(struct sw_accept_pause *p)
{
    struct timeval tv = { p->backoff_ms / 1000, (p->backoff_ms % 1000) * 1000 };
    evtimer_add(p->retry, &tv);
}

/* The episode is over: accepting ran a whole backoff without failing. Not
 * at the first accept that works: at the limit, the accept() right after
 * it fails again (Linux takes the descriptor before it looks for a
 * connection), and that is still the same shortage. */
static void accept_ok(struct sw_accept_pause *p)
{
    if (!p->episode)
        return;
    at_log(AT_LOG_INFO, "accept_resumed", AT_STR("listener", p->name),
           AT_UINT("paused_ms", sw_now_ms() - p->since_ms), AT_UINT("failed_accepts", p->errors));
    p->episode = false;
    p->errors = 0;
    p->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
    evtimer_del(p->retry);
}

/* Accepting again; the timer now watches for a whole backoff without an
 * error, which ends the episode. */
static void accept_enable(struct sw_accept_pause *p)
{
    p->paused = false;
    if (evconnlistener_enable(p->evl) != 0) {
        p->paused = true; /* try again later */
        evconnlistener_disable(p->evl);
    }
    arm_retry(p);
}

static void accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct sw_accept_pause *p = arg;
    if (!p->evl)
        return;
    if (p->paused)
        accept_enable(p);
    else
        accept_ok(p);
}

void sw_accept_failed(struct sw_accept_pause *p, int err)
{
    struct sw_server *srv = p->srv;
    if (!p->evl)
        return;
    evconnlistener_disable(p->evl);
    p->paused = true;
    p->errors++;
    srv->metrics.accept_errors_total++;
    if (!p->episode) {
        p->episode = true;
        p->since_ms = sw_now_ms();
        p->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
        srv->metrics.accept_pauses_total++;
        at_log(AT_LOG_WARN, "accept_paused", AT_STR("listener", p->name),
               AT_STR("reason", evutil_socket_error_to_string(err)), AT_INT("errno", err),
               AT_UINT("retry_ms", p->backoff_ms));
    } else if (p->backoff_ms < ACCEPT_BACKOFF_MAX_MS) {
        p->backoff_ms *= 2;
        if (p->backoff_ms > ACCEPT_BACKOFF_MAX_MS)
            p->backoff_ms = ACCEPT_BACKOFF_MAX_MS;
    }
    arm_retry(p);
}

static void resume_now(struct sw_accept_pause *p)
{
    if (p->evl && p->paused) {
        evtimer_del(p->retry);
        accept_enable(p);
    }
}

void sw_accept_resume_all(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++)
        resume_now(&srv->listeners[i].pause);
    resume_now(&srv->http_pause);
}

/* libevent's listener calls this when accept() failed with an error it does
 * not retry itself (errno is still accept's). */
static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    struct sw_listener *l = arg;
    sw_accept_failed(&l->pause, EVUTIL_SOCKET_ERROR());
}

/* ---- accepting terminals ---- */

/* "192.0.2.7" of an accepted peer (no port: the per-address cap is by IP). */
static void peer_ip(const struct sockaddr *sa, char *out, size_t cap)
{
    snprintf(out, cap, "?");
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
}

/* Closes a connection just accepted. Logged at most once a second per
 * listener, with the number refused since the previous line: a flood of
 * connections must not become a flood of log lines. */
static void refuse(struct sw_listener *l, evutil_socket_t fd, const struct sockaddr *sa,
                   const char *reason)
{
    struct sw_server *srv = l->srv;
    uint64_t now = sw_now_ms();
    srv->metrics.conns_refused_total++;
    l->refused_unlogged++;
    if (l->refused_log_ms == 0 || now - l->refused_log_ms >= 1000) {
        char ip[INET6_ADDRSTRLEN];
        peer_ip(sa, ip, sizeof ip);
        at_log(AT_LOG_WARN, "terminal_refused", AT_STR("listener", l->conf->name),
               AT_STR("peer", ip), AT_STR("reason", reason),
               AT_UINT("refused", l->refused_unlogged));
        l->refused_log_ms = now;
        l->refused_unlogged = 0;
    }
    evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct sw_listener *l = arg;
    struct sw_server *srv = l->srv;
    const struct sw_listener_conf *c = l->conf;
    static const struct at_stream_ops ops = { .frame = isonet_frame_fn,
                                              .on_frame = on_frame,
                                              .on_close = on_close };

    if (srv->draining || l->connections >= c->max_connections) {
        refuse(l, fd, sa, srv->draining ? "draining" : "max_connections reached");
        return;
    }
    struct sw_peer_addr addr = { { 0 } };
    bool counted = false;
    if (l->per_addr && sw_peer_addr_of(sa, (socklen_t)salen, &addr)) {
        if (sw_addrcount_take(l->per_addr, &addr, (uint32_t)c->max_connections_per_address) != 0) {
            srv->metrics.conns_refused_per_address_total++;
            refuse(l, fd, sa, "max_connections_per_address reached");
            return;
        }
        counted = true;
    }
    struct sw_term *t = calloc(1, sizeof *t);
    if (!t) {
        if (counted)
            sw_addrcount_drop(l->per_addr, &addr);
        evutil_closesocket(fd);
        return;
    }
    struct at_stream_ops o = ops;
    o.frame_arg = &l->wire;
    if (l->tls)
        o.on_connect = on_tls_ready;
    /* With an output cap, a terminal that does not read is closed at the
     * cap rather than paused (it would hold its buffers for ever); without
     * one it is paused at at_stream's default 1 MiB. */
    struct at_stream_limits lim = {
        .max_frame = c->max_frame + iso_frame_header_len(l->framing),
        .frames_per_wakeup = 32,
        .max_output = (size_t)c->max_output_bytes,
        .output_cap = (size_t)c->max_output_bytes,
        .write_timeout_ms = (unsigned)c->write_timeout_ms,
        .frame_timeout_ms = (unsigned)c->frame_timeout_ms,
        .tls = l->tls, /* NULL: plain TCP */
        .handshake_timeout_ms = (unsigned)c->tls_handshake_timeout_ms,
    };
    t->srv = srv;
    t->lst = l;
    t->refs = 1; /* the stream's */
    t->stream = at_stream_new(srv->base, fd, &o, t, &lim);
    if (!t->stream) {
        if (counted)
            sw_addrcount_drop(l->per_addr, &addr);
        free(t);
        return;
    }
    t->addr = addr;
    t->addr_counted = counted;
    if (l->conf->idle_timeout_s)
        at_stream_set_idle_timeout(t->stream, (unsigned)l->conf->idle_timeout_s);
    LIST_INSERT_HEAD(&srv->terms, t, link);
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
    struct sw_term *t;
    LIST_FOREACH(t, &srv->terms, link)
    {
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
        /* reuseport: several switchd instances on one host share the port (docs/switchd.md
         * "Instances"); a draining instance closes its socket and the kernel stops giving it
         * connections. */
        unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
                         (c->reuseport ? LEV_OPT_REUSEABLE_PORT : 0);
        l->evl = evconnlistener_new_bind(srv->base, on_accept, l, flags, 1024,
                                         (struct sockaddr *)&ss, (int)len);
        if (!l->evl) {
            at_log(AT_LOG_ERROR, "listen_failed", AT_STR("listener", c->name),
                   AT_STR("address", c->address),
                   AT_STR("reason", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR())));
            return -1;
        }
        l->wire.kind = l->framing;
        l->wire.max = c->max_frame;
        srv->n_listeners = i + 1;
        if (sw_accept_pause_init(&l->pause, srv, l->evl, c->name) != 0)
            return -1;
        evconnlistener_set_error_cb(l->evl, on_accept_error);
        if (c->max_connections_per_address && !l->per_addr) {
            uint8_t key[16];
            if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key ||
                !(l->per_addr = sw_addrcount_new(c->max_connections, key))) {
                at_log(AT_LOG_ERROR, "listener_config", AT_STR("listener", c->name),
                       AT_STR("reason", "cannot set up the per-address table"));
                return -1;
            }
        }
        at_log(AT_LOG_INFO, "listening", AT_STR("listener", c->name), AT_STR("address", c->address),
               AT_STR("dialect", c->dialect), AT_STR("framing", c->framing));
    }
    return 0;
}

void sw_listeners_stop(struct sw_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct sw_listener *l = &srv->listeners[i];
        sw_accept_pause_stop(&l->pause);
        if (l->evl) {
            evconnlistener_free(l->evl);
            l->evl = NULL;
        }
        maybe_free_per_addr(l);
    }
}

void sw_terms_close_all(struct sw_server *srv, const char *reason)
{
    struct sw_term *t;
    LIST_FOREACH(t, &srv->terms, link)
    sw_term_close(t, reason);
}
