/* hsm-sim: the network HSM daemon. One libevent loop serves many clients;
 * each connection's frames are executed in arrival order by the protocol
 * layer (proto.c) and the answers to everything one read brought are written
 * together, in one writev, as soon as the last of them is computed
 * (at_bev_write_now: EV_WRITE is armed only for what the kernel does not
 * take). Logs codes and latencies only: never a key, a PIN or a PIN block. */
#include "proto.h"

#include "cli.h"
#include "clock.h"
#include "log.h"
#include "parse.h"
#include "stream.h"
#include "tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#define OUT_HIGH_WATER (1u << 20) /* stop reading a client that does not read its answers */
#define OUT_LOW_WATER  (64u << 10)
#define STATS_PERIOD_S 10

struct conn;

struct server {
    struct event_base *base;
    struct evconnlistener *listener;
    struct hsm_proto *proto;
    size_t max_frame;
    uint8_t *in;  /* one request body (max_frame) */
    uint8_t *out; /* one framed response */
    size_t out_cap;
    LIST_HEAD(, conn) conns; /* every open connection (for shutdown) */
    unsigned n_conns;
    bool draining;
    uint64_t next_id;
    /* --fail PREFIX[=EC]: a test aid. Commands whose code and fields start
     * with PREFIX are answered with error EC and no fields, unexecuted. */
    const char *fail_prefix;
    size_t fail_len;
    char fail_ec[3];
    unsigned header_len;
    struct at_tls *tls; /* --tls-cert: clients are served over TLS (common/tls.h) */
    /* counters since the last stats line */
    uint64_t n_cmds, n_errors, max_ns, sum_ns;
};

struct conn {
    struct server *srv;
    struct bufferevent *bev;
    LIST_ENTRY(conn) link; /* server.conns */
    uint64_t id;
    bool closing; /* no more reads; freed once the output is flushed */
};

static void conn_free(struct conn *c)
{
    struct server *s = c->srv;
    LIST_REMOVE(c, link);
    s->n_conns--;
    bufferevent_free(c->bev);
    free(c);
    if (s->draining && s->n_conns == 0)
        event_base_loopexit(s->base, NULL);
}

/* The one door out for a connection: logs the reason, stops reading, and
 * frees it now (flush false, or nothing queued) or once the answers already
 * queued have been written. c must not be touched after the call. */
static void conn_close(struct conn *c, const char *reason, enum at_log_level level, bool flush)
{
    at_log(level, "conn_close", AT_UINT("conn", c->id), AT_STR("reason", reason));
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    if (!flush || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_free(c);
    } else {
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        bufferevent_enable(c->bev, EV_WRITE); /* on_write frees it once the output is written */
    }
}

/* --fail: answers a matching command with the configured error (header
 * echo, response code, error code) without executing it. Returns the answer
 * length, 0 when the command does not match. */
static size_t injected_failure(const struct server *s, const uint8_t *body, size_t len,
                               uint8_t *out, struct hsm_proto_result *res)
{
    size_t hl = s->header_len;
    if (!s->fail_prefix || len < hl + s->fail_len ||
        memcmp(body + hl, s->fail_prefix, s->fail_len) != 0)
        return 0;
    memcpy(out, body, hl);
    out[hl] = body[hl];
    out[hl + 1] = body[hl + 1] == '9' ? 'A' : (uint8_t)(body[hl + 1] + 1);
    memcpy(out + hl + 2, s->fail_ec, 2);
    res->cmd[0] = (char)body[hl];
    res->cmd[1] = (char)body[hl + 1];
    res->cmd[2] = '\0';
    memcpy(res->resp, out + hl, 2);
    res->resp[2] = '\0';
    memcpy(res->err, s->fail_ec, 3);
    if (memcmp(s->fail_ec, "00", 2) != 0)
        return hl + 4;
    /* "Success" whose fields cannot be decoded: the client must not believe it. */
    memcpy(out + hl + 4, "0016ZZZZZZZZZZZZZZZZ", 20);
    return hl + 24;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct server *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);

    /* One clock read per command: a command's latency runs from the end of the previous one
     * (or the start of the batch), the deframing of its bytes included. */
    uint64_t t0 = at_mono_ns();
    for (;;) {
        uint8_t pfx[2];
        size_t avail = evbuffer_get_length(in), body_len;
        if (evbuffer_copyout(in, pfx, avail < 2 ? avail : 2) < 0)
            break;
        int r = hsm_proto_deframe(pfx, avail, s->max_frame, &body_len);
        if (r == 0)
            break;
        if (r < 0) {
            at_log(AT_LOG_WARN, "frame_too_long", AT_UINT("conn", c->id),
                   AT_UINT("length", (unsigned)pfx[0] << 8 | pfx[1]), AT_UINT("max", s->max_frame));
            conn_close(c, "frame over the maximum", AT_LOG_WARN, true);
            return;
        }
        evbuffer_drain(in, 2);
        if (evbuffer_remove(in, s->in, body_len) != (int)body_len) {
            conn_close(c, "input buffer error", AT_LOG_ERROR, false);
            return;
        }
        struct hsm_proto_result res;
        size_t n = injected_failure(s, s->in, body_len, s->out + 2, &res);
        if (n == 0)
            n = hsm_proto_execute(s->proto, s->in, body_len, s->out + 2, s->out_cap - 2, &res);
        uint64_t t1 = at_mono_ns(), dt = t1 - t0;
        t0 = t1;
        s->out[0] = (uint8_t)(n >> 8);
        s->out[1] = (uint8_t)n;
        evbuffer_add(out, s->out, n + 2);

        s->n_cmds++;
        s->sum_ns += dt;
        if (dt > s->max_ns)
            s->max_ns = dt;
        /* 00 and 01 (verification failed) are normal answers; ZZ (unknown) is not */
        bool ok = res.err[0] == '0' && (res.err[1] == '0' || res.err[1] == '1') &&
                  strcmp(res.resp, "ZZ") != 0;
        if (!ok)
            s->n_errors++;
        at_log(ok ? AT_LOG_DEBUG : AT_LOG_INFO, "cmd", AT_UINT("conn", c->id),
               AT_STR("cmd", res.cmd), AT_STR("resp", res.resp), AT_STR("err", res.err),
               AT_UINT("latency_us", dt / 1000));
    }
    /* Every command this read brought is answered: the answers leave now, in one writev
     * (a client that pipelines N commands in one write gets N answers in one write). What the
     * kernel does not take waits for EV_WRITE, which at_bev_write_now arms. */
    if (at_bev_write_now(bev) == -1) {
        conn_close(c, strerror(errno), AT_LOG_INFO, false);
        return;
    }
    if (evbuffer_get_length(out) > OUT_HIGH_WATER) {
        /* Backpressure: resume reading when the client has taken its answers. */
        bufferevent_disable(bev, EV_READ);
        bufferevent_setwatermark(bev, EV_WRITE, OUT_LOW_WATER, 0);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_free(c);
        return;
    }
    /* The output is written (or below the low watermark while reading is paused): a plain
     * socket's EV_WRITE goes off again until at_bev_write_now leaves output the kernel did
     * not take; a TLS bufferevent writes by itself and keeps it. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !at_tls_bev_is_tls(bev))
        bufferevent_disable(bev, EV_WRITE);
    if (!(bufferevent_get_enabled(bev) & EV_READ)) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(bev, EV_READ);
        on_read(bev, c); /* frames that arrived while we were not reading */
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    /* A peer that half-closed still gets the answers already computed. */
    char why[160], label[48];
    if (what & BEV_EVENT_CONNECTED)
        return; /* a TLS handshake ended */
    if (c->closing && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)))
        conn_free(c); /* already logged; the flush cannot finish */
    else if (c->srv->tls && (what & BEV_EVENT_ERROR) &&
             at_tls_failure(bev, EVUTIL_SOCKET_ERROR(), why, sizeof why, label, sizeof label))
        conn_close(c, why, AT_LOG_WARN, false); /* a refused certificate, a bad handshake */
    else if (what & BEV_EVENT_ERROR)
        conn_close(c, strerror(EVUTIL_SOCKET_ERROR()), AT_LOG_INFO, false);
    else if (what & BEV_EVENT_EOF)
        conn_close(c, "peer closed", AT_LOG_INFO, true);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct server *s = arg;
    (void)l;
    (void)sa;
    (void)salen;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = NULL;
    if (c && s->tls)
        bev = at_tls_bev_new(s->tls, s->base, fd, NULL); /* closes fd when it fails */
    else if (c)
        bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        at_log(AT_LOG_ERROR, "accept_failed", AT_STR("reason", "out of memory"));
        free(c);
        if (!s->tls)
            evutil_closesocket(fd);
        return;
    }
    c->srv = s;
    c->bev = bev;
    c->id = ++s->next_id;
    LIST_INSERT_HEAD(&s->conns, c, link);
    s->n_conns++;
    bufferevent_setcb(bev, on_read, on_write, on_event, c);
    /* EV_WRITE only while output waits for the socket (on_read writes it directly); a TLS
     * bufferevent handshakes, encrypts and writes by itself and keeps it. */
    bufferevent_enable(bev, s->tls ? EV_READ | EV_WRITE : EV_READ);
    at_log(AT_LOG_INFO, "conn_open", AT_UINT("conn", c->id), AT_UINT("open", s->n_conns));
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: keep serving the connections we have. */
    at_log(AT_LOG_WARN, "accept_error", AT_STR("error", strerror(EVUTIL_SOCKET_ERROR())));
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    (void)what;
    if (s->draining)
        return;
    at_log(AT_LOG_INFO, "shutdown", AT_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
           AT_UINT("open", s->n_conns));
    s->draining = true;
    evconnlistener_disable(s->listener);
    /* Answers are computed synchronously, so everything read has been
     * answered: flush what is queued, then leave (at most 2 s). */
    struct timeval grace = { 2, 0 };
    event_base_loopexit(s->base, &grace);
    for (struct conn *c = LIST_FIRST(&s->conns), *next; c; c = next) {
        next = LIST_NEXT(c, link);
        conn_close(c, "shutdown", AT_LOG_DEBUG, true);
    }
    if (s->n_conns == 0)
        event_base_loopexit(s->base, NULL);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    char why[384];
    (void)what;
    if (at_log_reopen() != 0)
        fprintf(stderr, "hsm-sim: cannot reopen log: %s\n", strerror(errno));
    if (sig != SIGHUP || !s->tls)
        return;
    /* New connections get the files as they are now; open ones keep theirs. */
    if (at_tls_reload(s->tls, why, sizeof why) == 0)
        at_log(AT_LOG_INFO, "tls_reloaded");
    else
        at_log(AT_LOG_ERROR, "tls_reload_failed", AT_STR("reason", why),
               AT_STR("action", "new connections keep the previous certificate"));
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    if (s->n_cmds > 0)
        at_log(AT_LOG_INFO, "stats", AT_UINT("commands", s->n_cmds), AT_UINT("errors", s->n_errors),
               AT_UINT("open", s->n_conns), AT_UINT("avg_latency_us", s->sum_ns / s->n_cmds / 1000),
               AT_UINT("max_latency_us", s->max_ns / 1000));
    s->n_cmds = s->n_errors = s->max_ns = s->sum_ns = 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    at_log_flush();
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: hsm-sim [options]\n"
        "A payShield-compatible software HSM (variant LMK, host commands over TCP).\n"
        "  --listen ADDR:PORT   address to listen on (default 127.0.0.1:1500)\n"
        "  --header-len N       message header length echoed in answers (default 4, 0..%d)\n"
        "  --lmk FILE           LMK file (default: the Thales test LMK set)\n"
        "  --lmk-keyblock FILE  AES key-block LMK (one line of 32/48/64 hex): keys under the\n"
        "                       LMK may also be 'S' + TR-31 version D blocks (default: none)\n"
        "  --log FILE           JSON-lines log file (default stderr; reopened on SIGHUP/USR1)\n"
        "  --log-level LEVEL    debug|info|warn|error (default info; debug logs every command)\n"
        "  --max-frame N        largest request body in bytes (default %d, max %d);\n"
        "                       a longer frame closes that connection\n"
        "  --fail PREFIX[=EC]   test aid: commands whose code and fields start with PREFIX\n"
        "                       (e.g. M600131003: MACs with a TAK) get error EC (default\n"
        "                       15), unexecuted; EC 00 answers success with undecodable fields\n"
        "  --tls-cert F --tls-key F  serve TLS 1.2/1.3 only (files re-read on SIGHUP for\n"
        "                       new connections)\n"
        "  --tls-ca F           with --tls-cert: require a client certificate F verifies\n"
        "  --help               this text\n"
        "SIGTERM/SIGINT: stop accepting, flush answers, exit 0. SIGHUP, SIGUSR1: reopen the\n"
        "log.\n",
        HSM_PROTO_MAX_HEADER, HSM_PROTO_MAX_FRAME, HSM_PROTO_FRAME_LIMIT);
}

int main(int argc, char **argv)
{
    const char *listen_addr = "127.0.0.1:1500", *lmk = NULL, *log_path = NULL, *lmk_kb = NULL;
    uint64_t header_len = HSM_PROTO_DEFAULT_HDR, max_frame = HSM_PROTO_MAX_FRAME;
    int log_level = AT_LOG_INFO;
    const char *fail = NULL;
    struct at_tls_conf tls_conf = { .server = true };
    static const struct option opts[] = { { "listen", required_argument, NULL, 'l' },
                                          { "header-len", required_argument, NULL, 'H' },
                                          { "lmk", required_argument, NULL, 'k' },
                                          { "lmk-keyblock", required_argument, NULL, 'K' },
                                          { "log", required_argument, NULL, 'o' },
                                          { "log-level", required_argument, NULL, 'v' },
                                          { "max-frame", required_argument, NULL, 'm' },
                                          { "fail", required_argument, NULL, 'f' },
                                          { "tls-cert", required_argument, NULL, 1001 },
                                          { "tls-key", required_argument, NULL, 1002 },
                                          { "tls-ca", required_argument, NULL, 1003 },
                                          { "help", no_argument, NULL, 'h' },
                                          { NULL, 0, NULL, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen_addr = optarg;
            break;
        case 'H':
            if (!at_parse_u64(optarg, HSM_PROTO_MAX_HEADER, &header_len)) {
                fprintf(stderr, "hsm-sim: --header-len must be 0..%d\n", HSM_PROTO_MAX_HEADER);
                return 2;
            }
            break;
        case 'k':
            lmk = optarg;
            break;
        case 'K':
            lmk_kb = optarg;
            break;
        case 'o':
            log_path = optarg;
            break;
        case 'v':
            log_level = at_log_level_parse(optarg);
            if (log_level < 0) {
                fprintf(stderr, "hsm-sim: --log-level must be debug|info|warn|error\n");
                return 2;
            }
            break;
        case 'm':
            if (!at_parse_u64(optarg, HSM_PROTO_FRAME_LIMIT, &max_frame) || max_frame < 16) {
                fprintf(stderr, "hsm-sim: --max-frame must be 16..%d\n", HSM_PROTO_FRAME_LIMIT);
                return 2;
            }
            break;
        case 'f':
            fail = optarg;
            break;
        case 1001:
            tls_conf.cert = optarg;
            break;
        case 1002:
            tls_conf.key = optarg;
            break;
        case 1003:
            tls_conf.ca = optarg;
            break;
        case 'h':
        default:
            return at_usage(usage, ch == 'h');
        }
    }
    if (optind != argc)
        return at_usage(usage, false);

    struct sockaddr_storage ss;
    socklen_t sslen;
    const char *why = NULL;
    if (!at_parse_hostport(listen_addr, &ss, &sslen, &why)) {
        fprintf(stderr, "hsm-sim: --listen %s: %s\n", listen_addr, why ? why : "invalid");
        return 2;
    }
    if (at_log_open(log_path, "hsm-sim") != 0) {
        fprintf(stderr, "hsm-sim: cannot open log %s: %s\n", log_path, strerror(errno));
        return 1;
    }
    at_log_set_level((enum at_log_level)log_level);
    at_log_set_buffered(true);
    signal(SIGPIPE, SIG_IGN);

    struct server s = { .max_frame = (size_t)max_frame, .header_len = (unsigned)header_len };
    if (fail) {
        const char *eq = strchr(fail, '=');
        s.fail_prefix = fail;
        s.fail_len = eq ? (size_t)(eq - fail) : strlen(fail);
        memcpy(s.fail_ec, eq ? eq + 1 : "15", 2);
        s.fail_ec[2] = '\0';
        if (s.fail_len < 2 || (eq && (strlen(eq + 1) != 2 || eq[1] < '0' || eq[1] > '9' ||
                                      eq[2] < '0' || eq[2] > '9'))) {
            fprintf(stderr, "hsm-sim: --fail wants a command prefix of 2+ characters and an"
                            " optional =EC of two digits\n");
            return 2;
        }
        at_log(AT_LOG_WARN, "fault_injection", AT_STRN("prefix", fail, s.fail_len),
               AT_STR("error", s.fail_ec));
    }
    char err[256];
    struct hsm_proto_config pc = { .header_len = (unsigned)header_len,
                                   .lmk_path = lmk,
                                   .lmk_keyblock_path = lmk_kb };
    if (hsm_proto_new(&pc, &s.proto, err, sizeof err) != 0) {
        fprintf(stderr, "hsm-sim: %s\n", err);
        at_log(AT_LOG_ERROR, "start_failed", AT_STR("reason", err));
        at_log_close();
        return 1;
    }
    if ((tls_conf.key || tls_conf.ca) && !tls_conf.cert) {
        fprintf(stderr, "hsm-sim: --tls-key and --tls-ca need --tls-cert\n");
        return 2;
    }
    if (tls_conf.cert && !(s.tls = at_tls_new(&tls_conf, err, sizeof err))) {
        fprintf(stderr, "hsm-sim: TLS: %s\n", err);
        at_log(AT_LOG_ERROR, "start_failed", AT_STR("reason", err));
        at_log_close();
        return 1;
    }
    s.out_cap = 2 + s.max_frame + HSM_PROTO_RESP_SLACK;
    s.in = malloc(s.max_frame ? s.max_frame : 1);
    s.out = malloc(s.out_cap);
    s.base = at_event_base_new();
    if (!s.in || !s.out || !s.base) {
        fprintf(stderr, "hsm-sim: out of memory\n");
        return 1;
    }
    s.listener = evconnlistener_new_bind(
        s.base, on_accept, &s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, (struct sockaddr *)&ss, (int)sslen);
    if (!s.listener) {
        fprintf(stderr, "hsm-sim: cannot listen on %s: %s\n", listen_addr, strerror(errno));
        at_log(AT_LOG_ERROR, "start_failed", AT_STR("listen", listen_addr),
               AT_STR("reason", strerror(errno)));
        at_log_close();
        return 1;
    }
    evconnlistener_set_error_cb(s.listener, on_accept_error);

    struct event *ev_term = evsignal_new(s.base, SIGTERM, on_stop_signal, &s);
    struct event *ev_int = evsignal_new(s.base, SIGINT, on_stop_signal, &s);
    struct event *ev_hup = evsignal_new(s.base, SIGHUP, on_hup, &s);
    /* SIGUSR1 reopens the log too: logrotate's postrotate signal for every Atlas daemon. */
    struct event *ev_usr1 = evsignal_new(s.base, SIGUSR1, on_hup, &s);
    struct event *ev_stats = event_new(s.base, -1, EV_PERSIST, on_stats, &s);
    struct event *ev_flush = event_new(s.base, -1, EV_PERSIST, on_flush, NULL);
    struct timeval stats_tv = { STATS_PERIOD_S, 0 }, flush_tv = { 0, 100000 };
    if (!ev_term || !ev_int || !ev_hup || !ev_usr1 || !ev_stats || !ev_flush ||
        event_add(ev_term, NULL) || event_add(ev_int, NULL) || event_add(ev_hup, NULL) ||
        event_add(ev_usr1, NULL) || event_add(ev_stats, &stats_tv) ||
        event_add(ev_flush, &flush_tv)) {
        fprintf(stderr, "hsm-sim: cannot set up events\n");
        return 1;
    }

    at_log(AT_LOG_INFO, "listening", AT_STR("address", listen_addr),
           AT_UINT("header_len", header_len), AT_UINT("max_frame", max_frame),
           AT_STR("lmk", lmk ? lmk : "thales-test"), AT_STR("lmk_kcv", hsm_proto_lmk_kcv(s.proto)),
           AT_STR("lmk_keyblock", lmk_kb ? lmk_kb : "none"));
    at_log_flush();

    event_base_dispatch(s.base);

    while (!LIST_EMPTY(&s.conns)) {
        s.draining = false; /* no loopexit from conn_free any more */
        conn_free(LIST_FIRST(&s.conns));
    }
    at_log0(AT_LOG_INFO, "stopped");
    at_log_close();
    event_free(ev_term);
    event_free(ev_int);
    event_free(ev_hup);
    event_free(ev_usr1);
    event_free(ev_stats);
    event_free(ev_flush);
    evconnlistener_free(s.listener);
    event_base_free(s.base);
    hsm_proto_free(s.proto);
    at_tls_free(s.tls);
    free(s.in);
    free(s.out);
    return 0;
}
