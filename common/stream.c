/* Framed streams on bufferevents (see stream.h for the contract). The idle,
 * frame and write deadlines share one timer per stream, armed for the
 * earliest of them and checked when it fires: a deadline that goes away (a
 * frame completed, the output drained) does not touch the timer, so a busy
 * stream pays a clock read per partial frame, not a timer update per frame. */
#include "stream.h"

#include "clock.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct event_base *at_event_base_new(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    struct event_base *base = NULL;
    if (event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) == 0)
        base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

#define FLUSH_TIMEOUT_S      5
#define HANDSHAKE_TIMEOUT_MS 10000
#define AT_TLS_LABEL_LEN     48
#define TLS_COALESCE_MAX     16384 /* one TLS record */

struct at_stream {
    struct bufferevent *bev;
    struct event *work;     /* deferred: continue framing, or deliver on_close and free */
    struct event *send;     /* deferred: write what this loop turn queued, in one syscall */
    struct event *flush;    /* bounds a closing flush */
    struct event *deadline; /* the earliest of the idle, frame and write deadlines */
    struct at_stream_ops ops;
    void *arg;
    struct at_stream_limits lim;
    unsigned pauses;
    bool closing, close_delivered, flushing, connecting;
    bool out_paused; /* reading stopped because the peer does not read its answers */
    /* Deadlines, on the monotonic clock in milliseconds. */
    uint64_t deadline_at_ms;          /* when the deadline timer fires; 0 = not armed */
    uint64_t idle_ms;                 /* 0 = no idle timeout */
    uint64_t last_in_ms;              /* last input, or when a pause or being busy ended */
    uint64_t frame_since_ms;          /* the incomplete frame at the head of the input began */
    uint64_t out_since_ms;            /* the output began waiting for the socket */
    bool frame_open;                  /* an incomplete frame is at the head of the input */
    bool out_waiting;                 /* output the kernel did not take waits for EV_WRITE */
    bool busy;                        /* the owner owes the peer answers: not idle */
    bool tls;                         /* the bufferevent is an OpenSSL one (tls.h) */
    bool handshaking;                 /* TLS: the handshake has not ended yet */
    uint64_t hs_since_ms;             /* TLS: when the handshake began */
    char tls_label[AT_TLS_LABEL_LEN]; /* why the handshake failed, for metrics */
    unsigned depth;                   /* > 0 while inside an owner callback */
    char reason[224];
    char peer[64];
    uint64_t id;
};

static uint64_t next_id = 1;

static void run_work(evutil_socket_t fd, short what, void *ctx);
static void run_send(evutil_socket_t fd, short what, void *ctx);
static void flush_timeout(evutil_socket_t fd, short what, void *ctx);
static void on_read(struct bufferevent *bev, void *ctx);
static void on_write(struct bufferevent *bev, void *ctx);
static void on_event(struct bufferevent *bev, short what, void *ctx);
static void on_deadline(evutil_socket_t fd, short what, void *ctx);
static void arm_deadline(struct at_stream *s, uint64_t now);

static uint64_t now_ms(void)
{
    return at_mono_ns() / 1000000u;
}

static void peer_name(struct at_stream *s, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(s->peer, sizeof s->peer, "%s:%u", host, port);
}

static struct at_stream *stream_alloc(struct event_base *base, int fd,
                                      const struct at_stream_ops *ops, void *arg,
                                      const struct at_stream_limits *lim)
{
    struct at_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ops = *ops;
    s->arg = arg;
    if (lim)
        s->lim = *lim;
    if (!s->lim.max_frame)
        s->lim.max_frame = 8192;
    if (!s->lim.frames_per_wakeup)
        s->lim.frames_per_wakeup = 64;
    if (!s->lim.max_output)
        s->lim.max_output = 1 << 20;
    if (!s->lim.handshake_timeout_ms)
        s->lim.handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
    s->id = next_id++;
    if (s->lim.tls) {
        s->tls = s->handshaking = true;
        s->hs_since_ms = now_ms();
        s->bev =
            at_tls_bev_new(s->lim.tls, base, fd, s->lim.tls_server_name); /* closes fd on failure */
        fd = -1;
    } else {
        s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    s->work = event_new(base, -1, 0, run_work, s);
    s->send = event_new(base, -1, 0, run_send, s);
    s->flush = evtimer_new(base, flush_timeout, s);
    s->deadline = evtimer_new(base, on_deadline, s);
    if (!s->bev || !s->work || !s->send || !s->flush || !s->deadline) {
        if (s->bev)
            bufferevent_free(s->bev);
        else if (fd >= 0)
            close(fd);
        if (s->work)
            event_free(s->work);
        if (s->send)
            event_free(s->send);
        if (s->flush)
            event_free(s->flush);
        if (s->deadline)
            event_free(s->deadline);
        free(s);
        return NULL;
    }
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    /* A new bufferevent has EV_WRITE enabled; here it is enabled only while
     * output waits for the socket (run_send). An OpenSSL bufferevent keeps it:
     * it encrypts and writes its output itself, and only while it is enabled. */
    if (!s->tls)
        bufferevent_disable(s->bev, EV_WRITE);
    /* Never buffer more than one maximal frame beyond what is being handled:
     * the bufferevent stops reading at the high watermark. */
    bufferevent_setwatermark(s->bev, EV_READ, 0, s->lim.max_frame * 2);
    return s;
}

struct at_stream *at_stream_new(struct event_base *base, int fd, const struct at_stream_ops *ops,
                                void *arg, const struct at_stream_limits *lim)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evutil_make_socket_nonblocking(fd);
    struct at_stream *s = stream_alloc(base, fd, ops, arg, lim);
    if (!s)
        return NULL;
    peer_name(s, fd);
    bufferevent_enable(s->bev, EV_READ);
    if (s->tls)
        arm_deadline(s, s->hs_since_ms); /* the handshake must end in time */
    return s;
}

struct at_stream *at_stream_connect(struct event_base *base, const struct sockaddr *addr,
                                    socklen_t addrlen, const struct at_stream_ops *ops, void *arg,
                                    const struct at_stream_limits *lim)
{
    struct at_stream *s = stream_alloc(base, -1, ops, arg, lim);
    if (!s)
        return NULL;
    s->connecting = true;
    snprintf(s->peer, sizeof s->peer, "connecting");
    if (bufferevent_socket_connect(s->bev, (struct sockaddr *)addr, (int)addrlen) != 0) {
        /* Deliver the failure from the loop like any other close. */
        at_stream_close(s, "connect failed", false);
        return s;
    }
    bufferevent_enable(s->bev, EV_READ); /* the bufferevent watches the connect itself */
    return s;
}

static void schedule(struct at_stream *s)
{
    event_active(s->work, 0, 0);
}

/* The earliest moment one of the stream's deadlines expires, UINT64_MAX when
 * none runs. The idle and frame clocks stop while reading is paused: then the
 * owner, not the peer, is the one waiting. */
static uint64_t next_deadline(const struct at_stream *s)
{
    uint64_t at = UINT64_MAX;
    if (s->closing)
        return at;
    if (s->handshaking) /* nothing else runs before the handshake has ended; its clock
                           stops while the owner has reading paused (backpressure) */
        return s->pauses ? at : s->hs_since_ms + s->lim.handshake_timeout_ms;
    if (s->connecting)
        return at;
    if (s->out_waiting && s->lim.write_timeout_ms)
        at = s->out_since_ms + s->lim.write_timeout_ms;
    if (s->pauses == 0) {
        if (s->frame_open && s->lim.frame_timeout_ms &&
            s->frame_since_ms + s->lim.frame_timeout_ms < at)
            at = s->frame_since_ms + s->lim.frame_timeout_ms;
        if (s->idle_ms && !s->busy && s->last_in_ms + s->idle_ms < at)
            at = s->last_in_ms + s->idle_ms;
    }
    return at;
}

/* Arms the deadline timer for the earliest deadline, unless it already fires
 * by then: a timer firing early finds nothing due and re-arms itself. */
static void arm_deadline(struct at_stream *s, uint64_t now)
{
    uint64_t at = next_deadline(s);
    if (at == UINT64_MAX || (s->deadline_at_ms != 0 && s->deadline_at_ms <= at))
        return;
    uint64_t wait = at > now ? at - now : 0;
    struct timeval tv = { (time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000 };
    if (evtimer_add(s->deadline, &tv) == 0)
        s->deadline_at_ms = at;
}

/* The deadline timer: closes the stream for the first deadline that has
 * passed, or re-arms for the next one. From the loop only. */
static void on_deadline(evutil_socket_t fd, short what, void *ctx)
{
    struct at_stream *s = ctx;
    s->deadline_at_ms = 0;
    if (s->closing)
        return;
    uint64_t now = now_ms();
    if (s->handshaking && s->pauses == 0 && now >= s->hs_since_ms + s->lim.handshake_timeout_ms) {
        snprintf(s->tls_label, sizeof s->tls_label, "timeout");
        at_stream_close(s, AT_STREAM_TLS_TIMEOUT, false);
        return;
    }
    if (s->connecting || s->handshaking) {
        arm_deadline(s, now);
        return;
    }
    if (s->out_waiting && s->lim.write_timeout_ms &&
        now >= s->out_since_ms + s->lim.write_timeout_ms) {
        at_stream_close(s, AT_STREAM_WRITE_TIMEOUT, false); /* the peer does not read */
        return;
    }
    if (s->pauses == 0) {
        if (s->frame_open && s->lim.frame_timeout_ms &&
            now >= s->frame_since_ms + s->lim.frame_timeout_ms) {
            /* Answers to its earlier requests may be queued: try to deliver. */
            at_stream_close(s, AT_STREAM_FRAME_TIMEOUT, true);
            return;
        }
        if (s->idle_ms && !s->busy && now >= s->last_in_ms + s->idle_ms) {
            at_stream_close(s, AT_STREAM_IDLE_TIMEOUT, false);
            return;
        }
    }
    arm_deadline(s, now);
}

/* An incomplete frame is at the head of the input: its clock starts now
 * unless it was already running (more bytes of the same frame do not
 * restart it). */
static void frame_begun(struct at_stream *s)
{
    if (s->frame_open || !s->lim.frame_timeout_ms)
        return;
    uint64_t now = now_ms();
    s->frame_open = true;
    s->frame_since_ms = now;
    arm_deadline(s, now);
}

/* Frees the stream once on_close was delivered and no owner callback is on
 * the stack. */
static void finish_close(struct at_stream *s)
{
    if (s->depth > 0 || s->close_delivered)
        return;
    s->close_delivered = true;
    bufferevent_disable(s->bev, EV_READ | EV_WRITE);
    s->depth++;
    if (s->ops.on_close)
        s->ops.on_close(s->arg, s, s->reason);
    s->depth--;
    bufferevent_free(s->bev);
    event_free(s->work);
    event_free(s->send);
    event_free(s->flush);
    event_free(s->deadline);
    free(s);
}

void at_stream_close(struct at_stream *s, const char *reason, bool flush)
{
    if (s->closing)
        return;
    s->closing = true;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    bufferevent_disable(s->bev, EV_READ);
    if (flush && !s->connecting && evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
        s->flushing = true;
        struct timeval tv = { FLUSH_TIMEOUT_S, 0 };
        evtimer_add(s->flush, &tv);
        event_active(s->send, 0, 0);
        return; /* output_drained finishes when the output is empty */
    }
    schedule(s);
}

bool at_stream_closing(const struct at_stream *s)
{
    return s->closing;
}

/* Handles up to frames_per_wakeup frames; reschedules itself if more wait. */
static void drain_input(struct at_stream *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    unsigned handled = 0;

    while (!s->closing && s->pauses == 0) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) {
            s->frame_open = false;
            return;
        }
        if (handled == s->lim.frames_per_wakeup) {
            schedule(s); /* let other peers run first */
            return;
        }
        struct at_frame fr = { 0 };
        char why[96] = "";
        /* The header decides the frame size: look at it first, then pull up
         * exactly one frame so the bytes are contiguous. */
        size_t peek = avail < 16 ? avail : 16;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)peek);
        int r = s->ops.frame(s->ops.frame_arg, p, peek, &fr, why, sizeof why);
        if (r == 0 && fr.need > peek && fr.need <= avail) {
            p = evbuffer_pullup(in, (ev_ssize_t)fr.need);
            r = s->ops.frame(s->ops.frame_arg, p, fr.need, &fr, why, sizeof why);
        }
        if (r < 0) {
            at_stream_close(s, why[0] ? why : "framing error", false);
            return;
        }
        if (r == 0) {
            if (fr.need > s->lim.max_frame)
                at_stream_close(s, "frame longer than the maximum", false);
            else
                frame_begun(s);
            return; /* wait for more bytes */
        }
        if (fr.consume > s->lim.max_frame) {
            at_stream_close(s, "frame longer than the maximum", false);
            return;
        }
        p = evbuffer_pullup(in, (ev_ssize_t)fr.consume);
        s->depth++;
        s->ops.on_frame(s->arg, s, p, fr.consume, p + fr.msg_off, fr.msg_len);
        s->depth--;
        evbuffer_drain(in, fr.consume);
        s->frame_open = false; /* the next frame's clock starts with its own bytes */
        handled++;
    }
}

static void flush_timeout(evutil_socket_t fd, short what, void *ctx)
{
    struct at_stream *s = ctx;
    s->flushing = false; /* the peer is not reading: give up on the rest */
    finish_close(s);
}

static void run_work(evutil_socket_t fd, short what, void *ctx)
{
    struct at_stream *s = ctx;
    if (s->closing) {
        if (!s->flushing)
            finish_close(s);
        return;
    }
    drain_input(s);
    if (s->closing && s->depth == 0 && !s->flushing)
        finish_close(s);
}

static void on_read(struct bufferevent *bev, void *ctx)
{
    struct at_stream *s = ctx;
    if (s->idle_ms)
        s->last_in_ms = now_ms();
    drain_input(s);
    if (s->closing && !s->flushing)
        finish_close(s);
}

/* The output became empty: a reader paused because its peer did not read
 * its answers reads again, and a closing flush is complete. Called from the
 * loop only (run_send, on_write). */
static void output_drained(struct at_stream *s)
{
    s->out_waiting = false; /* the write deadline is over (the timer finds nothing due) */
    if (s->out_paused) {
        s->out_paused = false;
        at_stream_resume(s);
    }
    if (s->flushing) {
        s->flushing = false;
        evtimer_del(s->flush);
        finish_close(s);
    }
}

/* The socket cannot be used any more (error, or the peer closed): nothing
 * more can be sent, so the stream ends now rather than after a flush. */
static void end_now(struct at_stream *s, const char *reason)
{
    s->flushing = false;
    evtimer_del(s->flush);
    if (!s->closing) {
        s->closing = true;
        snprintf(s->reason, sizeof s->reason, "%s", reason);
    }
    finish_close(s);
}

/* Writes everything at_stream_write queued during this loop turn: one
 * writev for all of it, without arming EV_WRITE. Only what the kernel does
 * not take waits for EV_WRITE (at_bev_write_now arms it; on_write disarms it
 * once the output is empty). The bufferevent alone would arm EV_WRITE for
 * the first message of a turn, write on the next loop iteration and disarm:
 * two epoll_ctl and one more epoll_wait per connection and turn. */
static void run_send(evutil_socket_t fd, short what, void *ctx)
{
    struct at_stream *s = ctx;
    if (s->connecting || (s->closing && !s->flushing))
        return; /* sent once connected (on_event); a close without flush drops it */
    if (s->tls) {
        /* OpenSSL's bufferevent makes one TLS record, and one write(), per chunk of its
         * output: make what this turn queued one chunk (up to a record) so that it leaves
         * in one record and one syscall, as a plain stream's writev does. */
        struct evbuffer *out = bufferevent_get_output(s->bev);
        size_t n = evbuffer_get_length(out);
        if (n > 0 && n <= TLS_COALESCE_MAX)
            evbuffer_pullup(out, -1);
    } else if (at_bev_write_now(s->bev) == -1) {
        char reason[96];
        snprintf(reason, sizeof reason, "socket error: %s", evutil_socket_error_to_string(errno));
        end_now(s, reason);
        return;
    }
    size_t left = evbuffer_get_length(bufferevent_get_output(s->bev));
    if (left == 0) {
        output_drained(s);
        return;
    }
    /* The kernel is full: the peer is not reading as fast as it is answered. */
    if (s->lim.output_cap && left > s->lim.output_cap) {
        at_stream_close(s, AT_STREAM_OUTPUT_CAP, false);
        return;
    }
    if (!s->out_waiting) {
        s->out_waiting = true;
        if (s->lim.write_timeout_ms) {
            uint64_t now = now_ms();
            s->out_since_ms = now;
            arm_deadline(s, now);
        }
    }
}

/* libevent wrote the rest of the output once the socket became writable. */
static void on_write(struct bufferevent *bev, void *ctx)
{
    struct at_stream *s = ctx;
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (!s->tls)
        bufferevent_disable(bev, EV_WRITE); /* already removed from epoll: no syscall */
    output_drained(s);
}

static void on_event(struct bufferevent *bev, short what, void *ctx)
{
    struct at_stream *s = ctx;
    if (what & BEV_EVENT_CONNECTED) {
        bool accepted_tls = s->tls && !s->connecting;
        s->connecting = false;
        s->handshaking = false;
        int fd = (int)bufferevent_getfd(bev), one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!accepted_tls)
            peer_name(s, fd);
        arm_deadline(s, now_ms()); /* the idle clock, now that frames may come */
        if (s->ops.on_connect) {
            s->depth++;
            s->ops.on_connect(s->arg, s);
            s->depth--;
        }
        if (s->closing)
            finish_close(s);
        else if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
            event_active(s->send, 0, 0); /* written while connecting */
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    char reason[224];
    if (s->tls && (what & BEV_EVENT_ERROR || s->handshaking)) {
        char why[160];
        bool tls_cause = at_tls_failure(bev, (what & BEV_EVENT_ERROR) ? err : 0, why, sizeof why,
                                        s->tls_label, sizeof s->tls_label);
        /* A client whose TCP connect failed has not begun a handshake. */
        if (s->handshaking && (tls_cause || !s->connecting)) {
            snprintf(reason, sizeof reason, "%s: %s", AT_STREAM_TLS_FAILED, why);
            end_now(s, reason);
            return;
        }
        s->tls_label[0] = '\0';
        if (tls_cause) {
            snprintf(reason, sizeof reason, "tls error: %s", why);
            end_now(s, reason);
            return;
        }
    }
    if (what & BEV_EVENT_ERROR)
        snprintf(reason, sizeof reason, "%s: %s", s->connecting ? "connect failed" : "socket error",
                 evutil_socket_error_to_string(err));
    else
        snprintf(reason, sizeof reason, "peer closed");
    end_now(s, reason);
}

int at_stream_write(struct at_stream *s, const void *hdr, size_t hdr_len, const void *body,
                    size_t body_len)
{
    if (s->closing)
        return -1;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    if (s->lim.output_cap && s->out_waiting &&
        evbuffer_get_length(out) + hdr_len + body_len > s->lim.output_cap) {
        /* The kernel holds all it will take and the peer does not read:
         * refuse this write (the owner learns it was not sent) and end. */
        at_stream_close(s, AT_STREAM_OUTPUT_CAP, false);
        return -1;
    }
    if ((hdr_len && evbuffer_add(out, hdr, hdr_len) != 0) ||
        (body_len && evbuffer_add(out, body, body_len) != 0))
        return -1;
    /* Sent at the end of this loop turn with whatever else is queued by then;
     * while EV_WRITE is armed, libevent sends it when the socket is writable. */
    if (s->tls || !(bufferevent_get_enabled(s->bev) & EV_WRITE))
        event_active(s->send, 0, 0); /* no-op when already active */
    if (!s->out_paused && evbuffer_get_length(out) > s->lim.max_output) {
        /* The peer is not reading: stop reading its requests until it has
         * taken everything queued, so its answers cannot pile up unbounded. */
        s->out_paused = true;
        at_stream_pause(s);
    }
    return 0;
}

void at_stream_pause(struct at_stream *s)
{
    if (s->pauses++ == 0 && !s->closing)
        bufferevent_disable(s->bev, EV_READ);
}

void at_stream_resume(struct at_stream *s)
{
    if (s->pauses == 0)
        return;
    if (--s->pauses == 0 && !s->closing) {
        bufferevent_enable(s->bev, EV_READ);
        if (s->handshaking) { /* its clock stood still too (libevent's handshake reads) */
            s->hs_since_ms = now_ms();
            arm_deadline(s, s->hs_since_ms);
        }
        if (s->idle_ms || s->frame_open) {
            /* The idle and frame clocks stood still during the pause. */
            uint64_t now = now_ms();
            s->last_in_ms = now;
            s->frame_since_ms = now;
            arm_deadline(s, now);
        }
        schedule(s); /* frames may already be buffered */
    }
}

void at_stream_set_idle_timeout(struct at_stream *s, unsigned seconds)
{
    s->idle_ms = (uint64_t)seconds * 1000;
    if (s->idle_ms) {
        uint64_t now = now_ms();
        s->last_in_ms = now;
        arm_deadline(s, now);
    }
}

void at_stream_set_busy(struct at_stream *s, bool busy)
{
    if (s->busy == busy)
        return;
    s->busy = busy;
    if (!busy && s->idle_ms) {
        uint64_t now = now_ms();
        s->last_in_ms = now; /* idle from the last answer owed, not from the request */
        arm_deadline(s, now);
    }
}

bool at_stream_paused(const struct at_stream *s)
{
    return s->pauses > 0;
}

size_t at_stream_output_len(const struct at_stream *s)
{
    return evbuffer_get_length(bufferevent_get_output(s->bev));
}

const char *at_stream_peer(const struct at_stream *s)
{
    return s->peer;
}

uint64_t at_stream_id(const struct at_stream *s)
{
    return s->id;
}

bool at_stream_is_tls(const struct at_stream *s)
{
    return s->tls;
}

const char *at_stream_tls_failure(const struct at_stream *s)
{
    return s->tls_label[0] ? s->tls_label : NULL;
}

int at_stream_tls_subject(const struct at_stream *s, int nid, char *out, size_t cap)
{
    return s->tls ? at_tls_peer_subject(s->bev, nid, out, cap) : -1;
}

void at_stream_tls_session(const struct at_stream *s, char *out, size_t cap)
{
    at_tls_session_text(s->bev, out, cap);
}

int at_bev_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0)
        return 0;
    if (at_tls_bev_is_tls(bev)) {
        if (evbuffer_get_length(out) <= TLS_COALESCE_MAX)
            evbuffer_pullup(out, -1); /* one TLS record and one write() for the batch */
        return bufferevent_enable(bev, EV_WRITE) == 0 ? 0 : (errno = ENOMEM, -1);
    }
    int n;
    /* A socket bufferevent keeps the front of its output frozen so that only
     * its own write callback drains it; do here what that callback does. */
    evbuffer_unfreeze(out, 1);
    do
        n = evbuffer_write(out, bufferevent_getfd(bev));
    while (n == -1 && errno == EINTR);
    int err = errno;
    evbuffer_freeze(out, 1);
    if (n == -1 && err != EAGAIN && err != EWOULDBLOCK) {
        errno = err;
        return -1;
    }
    if (evbuffer_get_length(out) > 0 && bufferevent_enable(bev, EV_WRITE) != 0) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}
