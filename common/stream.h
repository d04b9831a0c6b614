/* A framed byte stream on a libevent bufferevent: the one way Atlas daemons
 * talk to peers over TCP (terminals, issuer links, the simulators). It owns
 * the socket, cuts the input into frames with a caller-supplied framing
 * function, bounds what it buffers, lets the owner stop and restart reading
 * (backpressure), caps the frames handled per wakeup so one busy peer cannot
 * starve the others, and ends every connection through one function with a
 * reason. Knows nothing of ISO 8583: the framing function does.
 *
 * A peer cannot hold a stream forever: optional deadlines close it when it
 * sends nothing (idle), when a frame it began is not complete in time (one
 * byte every few seconds), and when what is written to it does not drain
 * (it does not read its answers); an output cap closes it at once when its
 * unread output grows beyond a bound. All are off unless the owner sets them.
 *
 * Lifetime: at_stream_close() marks the stream closing; on_close runs once,
 * from the event loop, never inside the caller's stack; the memory is freed
 * after on_close returns. The owner must not use the stream after on_close. */
#ifndef ATLAS_STREAM_H
#define ATLAS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct bufferevent;
struct at_stream;

/* The event loop every Atlas program runs on: libevent's, with precise timers.
 * By default libevent reads CLOCK_MONOTONIC_COARSE, which ticks once per
 * kernel jiffy (4 ms at HZ=250): a 1 ms timer then fires up to 4 ms late (the
 * load harness sent a quarter of its arrivals ~4 ms after their time and
 * counted that as the switch's latency). NULL when libevent cannot make one. */
struct event_base *at_event_base_new(void);

/* What a framing function found at the head of the input. */
struct at_frame {
    size_t msg_off; /* message start, from the head */
    size_t msg_len;
    size_t consume; /* bytes to drop after the message was handled */
    size_t need;    /* need-more: total bytes wanted before calling again */
};

/* Returns 1 with fr filled when a whole frame is at buf[0..avail), 0 when more
 * bytes are needed (fr->need set), or -1 on a protocol error with a reason
 * written into why (no payload bytes in it). */
typedef int (*at_frame_fn)(void *frame_arg, const uint8_t *buf, size_t avail, struct at_frame *fr,
                           char *why, size_t whycap);

struct at_stream_ops {
    at_frame_fn frame;
    void *frame_arg;
    /* One complete frame. frame points at the whole frame (header included,
     * frame_len bytes); msg/msg_len is the message inside it. Both are valid
     * only during the call. The owner may write, pause or close from here. */
    void (*on_frame)(void *arg, struct at_stream *s, const uint8_t *frame, size_t frame_len,
                     const uint8_t *msg, size_t msg_len);
    /* An outbound connection completed (at_stream_connect only). */
    void (*on_connect)(void *arg, struct at_stream *s);
    /* The stream ended: reason says why ("peer closed", "frame too long", ...). */
    void (*on_close)(void *arg, struct at_stream *s, const char *reason);
};

/* The reasons at_stream gives on_close when one of its own limits ends a
 * stream (owners compare them to count closes by cause). */
#define AT_STREAM_IDLE_TIMEOUT  "idle timeout"
#define AT_STREAM_FRAME_TIMEOUT "frame not completed in time"
#define AT_STREAM_WRITE_TIMEOUT "write timeout: output not drained in time"
#define AT_STREAM_OUTPUT_CAP    "output above the cap: peer not reading"
/* A TLS stream's handshake failed ("tls handshake failed: <OpenSSL's reason>";
 * at_stream_tls_failure() gives a metric label) or did not end in time. */
#define AT_STREAM_TLS_FAILED  "tls handshake failed"
#define AT_STREAM_TLS_TIMEOUT "tls handshake timeout"

struct at_tls;

struct at_stream_limits {
    size_t max_frame;           /* largest frame accepted (header included); default 8192 */
    unsigned frames_per_wakeup; /* frames handled before yielding to other peers; default 64 */
    size_t max_output;          /* output bytes queued before reading pauses until the peer
                                   has taken all of it; default 1 MiB */
    size_t output_cap;          /* output the kernel would not take, beyond which the stream
                                   is closed (AT_STREAM_OUTPUT_CAP) without flushing; 0 = no
                                   cap. Set it at or below max_output to close a peer that
                                   does not read instead of pausing it */
    unsigned write_timeout_ms;  /* output that had to wait for the socket must be all
                                   written within this, or the stream is closed
                                   (AT_STREAM_WRITE_TIMEOUT) without flushing; 0 = none */
    unsigned frame_timeout_ms;  /* a frame whose first byte was read must be complete within
                                   this, or the stream is closed (AT_STREAM_FRAME_TIMEOUT;
                                   what is queued for the peer is still flushed); the clock
                                   stops while the owner has reading paused; 0 = none */
    /* TLS (common/tls.h): NULL = plain TCP. An accepted stream does its
     * handshake first (no frame before it), then calls on_connect; an
     * outbound one calls on_connect once connected and handshaken. */
    struct at_tls *tls;
    const char *tls_server_name;   /* outbound TLS: the name or IP address the server's
                                      certificate must carry (NULL = the context's) */
    unsigned handshake_timeout_ms; /* accepted TLS: the handshake must end within it, or
                                      the stream is closed (AT_STREAM_TLS_TIMEOUT); its clock
                                      stops while reading is paused; default 10000 */
};

/* Wraps an accepted, connected socket (the stream takes ownership of fd).
 * NULL on allocation failure (fd is then closed). */
struct at_stream *at_stream_new(struct event_base *base, int fd, const struct at_stream_ops *ops,
                                void *arg, const struct at_stream_limits *lim);

/* Starts a non-blocking connect to addr (under lim->tls when set: then the
 * handshake too). on_connect or on_close follows. */
struct at_stream *at_stream_connect(struct event_base *base, const struct sockaddr *addr,
                                    socklen_t addrlen, const struct at_stream_ops *ops, void *arg,
                                    const struct at_stream_limits *lim);

/* Queues hdr+body for sending (copied). Returns 0, or -1 when the stream is
 * closing. Everything queued on a stream during one loop turn leaves in one
 * write at the end of that turn (a deferred event), without arming EV_WRITE;
 * only what the kernel does not take waits for the socket to be writable. */
__attribute__((warn_unused_result)) int at_stream_write(struct at_stream *s, const void *hdr,
                                                        size_t hdr_len, const void *body,
                                                        size_t body_len);

/* Stops / restarts reading (frames already buffered wait too). Counted: each
 * pause needs a resume, so independent reasons (in-flight cap, global
 * backpressure) can pause the same stream. */
void at_stream_pause(struct at_stream *s);
void at_stream_resume(struct at_stream *s);
bool at_stream_paused(const struct at_stream *s);

/* Closes the stream (AT_STREAM_IDLE_TIMEOUT, without flushing) when nothing
 * arrives for seconds while it is reading and not busy; 0 turns it off. The
 * clock restarts when the setting changes, when reading resumes after a pause
 * and when the stream stops being busy. */
void at_stream_set_idle_timeout(struct at_stream *s, unsigned seconds);
/* Busy = the owner still owes the peer something (requests in flight): a
 * busy stream is never idle, however long the owner takes to answer. */
void at_stream_set_busy(struct at_stream *s, bool busy);

/* Ends the stream. flush = true sends what is queued first (bounded by a few
 * seconds), false drops it. Idempotent; the first reason wins. */
void at_stream_close(struct at_stream *s, const char *reason, bool flush);
bool at_stream_closing(const struct at_stream *s);

size_t at_stream_output_len(const struct at_stream *s);
/* "127.0.0.1:53211" of the peer (empty for a connect not yet done). */
const char *at_stream_peer(const struct at_stream *s);
uint64_t at_stream_id(const struct at_stream *s);

/* TLS streams. Whether s is one; the metric label of why its handshake
 * failed (valid in on_close; NULL when it did not fail that way); the peer
 * certificate's subject attribute nid (NID_commonName...) into out (0, or -1
 * without one); "TLSv1.3 TLS_AES_256_GCM_SHA384" of the session. */
bool at_stream_is_tls(const struct at_stream *s);
const char *at_stream_tls_failure(const struct at_stream *s);
int at_stream_tls_subject(const struct at_stream *s, int nid, char *out, size_t cap);
void at_stream_tls_session(const struct at_stream *s, char *out, size_t cap);

/* Writes what a socket bufferevent holds in its output to its socket now, in
 * one writev, rather than when the loop reports the socket writable (which
 * costs an epoll_ctl to arm EV_WRITE, one more epoll_wait, and an epoll_ctl
 * to disarm it, for every burst of output). For owners that keep EV_WRITE
 * disabled while their output is empty: what the kernel does not take stays
 * queued and EV_WRITE is enabled for it; the owner's write callback disables
 * EV_WRITE again once the output is empty. Returns 0 (also when the kernel
 * took nothing: EAGAIN), or -1 with errno set on a socket error — the owner
 * then ends the connection. Call it from the loop, not inside a callback
 * that may still add to the same output, or the writes are not coalesced.
 * A TLS bufferevent (tls.h) encrypts and writes by itself: for one, this
 * makes the output one chunk (up to a TLS record: one record, one write)
 * and makes sure EV_WRITE is enabled. */
__attribute__((warn_unused_result)) int at_bev_write_now(struct bufferevent *bev);

#endif
