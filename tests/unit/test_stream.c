/* at_stream over a real socketpair: reassembly, several frames per read, the
 * frame-size bound, pause/resume, flush-on-close, and on_close delivered once
 * from the loop (never inside the caller's at_stream_close); the answers of
 * one loop turn leave in one writev without epoll_ctl, a write error ends the
 * stream, writes made while connecting leave once connected. The limits
 * against peers that hold a connection: idle (never while busy), a frame
 * not completed in time (per frame, not while paused), output that does
 * not drain in time, and output beyond its cap. Timed tests assert lower
 * bounds exactly and upper bounds only generously. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "clock.h"
#include "stream.h"

/* This executable's writev and epoll_ctl take the place of libc's for
 * libevent too (symbol interposition), so a test can count the syscalls a
 * stream makes. */
static int writev_calls, epoll_ctl_calls;

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    writev_calls++;
    return syscall(SYS_writev, fd, iov, iovcnt);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    epoll_ctl_calls++;
    return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

static int frame2(void *arg, const uint8_t *buf, size_t avail, struct at_frame *fr, char *why,
                  size_t whycap)
{
    if (avail < 2) {
        fr->need = 2;
        return 0;
    }
    size_t len = (size_t)buf[0] << 8 | buf[1];
    if (len == 0) {
        snprintf(why, whycap, "zero-length frame");
        return -1;
    }
    if (avail < 2 + len) {
        fr->need = 2 + len;
        return 0;
    }
    fr->msg_off = 2;
    fr->msg_len = len;
    fr->consume = 2 + len;
    return 1;
}

struct rec {
    char frames[16][64];
    int n_frames;
    int closes;
    int connects;
    char reason[96];
    bool in_close_call;
    bool close_inside_caller;
    struct at_stream *s;
    bool echo;
};

static void on_frame(void *arg, struct at_stream *s, const uint8_t *frame, size_t frame_len,
                     const uint8_t *msg, size_t msg_len)
{
    struct rec *r = arg;
    assert_int_equal(frame_len, msg_len + 2);
    if (r->n_frames < 16) {
        memcpy(r->frames[r->n_frames], msg, msg_len < 63 ? msg_len : 63);
        r->frames[r->n_frames][msg_len < 63 ? msg_len : 63] = '\0';
    }
    r->n_frames++;
    if (r->echo)
        assert_int_equal(at_stream_write(s, frame, 2, msg, msg_len), 0);
}

static void on_close(void *arg, struct at_stream *s, const char *reason)
{
    struct rec *r = arg;
    r->closes++;
    r->close_inside_caller = r->in_close_call;
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    r->s = NULL;
}

static void on_connect(void *arg, struct at_stream *s)
{
    struct rec *r = arg;
    r->connects++;
}

static const struct at_stream_ops ops = {
    .frame = frame2, .on_frame = on_frame, .on_connect = on_connect, .on_close = on_close
};

static void pump(struct event_base *base, int rounds)
{
    for (int i = 0; i < rounds; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

static void setup_lim(struct event_base **base, int *peer, struct rec *r,
                      const struct at_stream_limits *lim)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    *base = event_base_new();
    memset(r, 0, sizeof *r);
    r->s = at_stream_new(*base, sv[0], &ops, r, lim);
    assert_non_null(r->s);
    *peer = sv[1];
}

static void setup_pair(struct event_base **base, int *peer, struct rec *r, size_t max_frame)
{
    struct at_stream_limits lim = { .max_frame = max_frame };
    setup_lim(base, peer, r, &lim);
}

/* Runs the loop for ms of real time (timers included). */
static void run_ms(struct event_base *base, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static uint64_t ms_now(void)
{
    return at_mono_ns() / 1000000u;
}

/* Runs the loop until the stream has closed or limit_ms passed; returns the
 * milliseconds it took. */
static uint64_t run_until_closed(struct event_base *base, struct rec *r, int limit_ms)
{
    uint64_t t0 = ms_now();
    while (r->closes == 0 && ms_now() - t0 < (uint64_t)limit_ms)
        run_ms(base, 20);
    return ms_now() - t0;
}

/* The stream closed once, for reason. */
static void closed_once_for(const struct rec *r, const char *reason)
{
    assert_int_equal(r->closes, 1);
    assert_string_equal(r->reason, reason);
}

/* The end of a pair: the peer's socket closed, the loop freed. */
static void free_pair(struct event_base *base, int peer)
{
    close(peer);
    event_base_free(base);
}

static void test_reassembly_and_batches(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    /* One frame in three pieces, then two frames in one write. */
    assert_int_equal(write(peer, "\x00\x05he", 4), 4);
    pump(base, 3);
    assert_int_equal(r.n_frames, 0);
    assert_int_equal(write(peer, "ll", 2), 2);
    pump(base, 3);
    assert_int_equal(write(peer, "o\x00\x01X\x00\x02YZ", 9), 9);
    pump(base, 5);
    assert_int_equal(r.n_frames, 3);
    assert_string_equal(r.frames[0], "hello");
    assert_string_equal(r.frames[1], "X");
    assert_string_equal(r.frames[2], "YZ");
    at_stream_close(r.s, "test done", false);
    pump(base, 3);
    assert_int_equal(r.closes, 1);
    free_pair(base, peer);
}

static void test_oversize_frame_closes(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 64);
    assert_int_equal(write(peer, "\x01\x00", 2), 2); /* announces 256 bytes */
    pump(base, 5);
    closed_once_for(&r, "frame longer than the maximum");
    char c;
    assert_int_equal(read(peer, &c, 1), 0); /* our end was closed */
    free_pair(base, peer);
}

static void test_framing_error_reason(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 64);
    assert_int_equal(write(peer, "\x00\x00", 2), 2);
    pump(base, 5);
    closed_once_for(&r, "zero-length frame");
    free_pair(base, peer);
}

static void test_pause_resume(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    at_stream_pause(r.s);
    at_stream_pause(r.s); /* two independent reasons */
    assert_int_equal(write(peer,
                           "\x00\x01"
                           "A\x00\x01"
                           "B",
                           6),
                     6);
    pump(base, 5);
    assert_int_equal(r.n_frames, 0);
    at_stream_resume(r.s);
    pump(base, 5);
    assert_int_equal(r.n_frames, 0);
    at_stream_resume(r.s);
    pump(base, 5);
    assert_int_equal(r.n_frames, 2);
    at_stream_close(r.s, "done", false);
    pump(base, 2);
    free_pair(base, peer);
}

static void test_close_flushes_and_is_deferred(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    r.echo = true;
    assert_int_equal(write(peer,
                           "\x00\x03"
                           "abc",
                           5),
                     5);
    pump(base, 2);
    assert_int_equal(at_stream_write(r.s, "\x00\x03", 2, "xyz", 3), 0);
    r.in_close_call = true;
    at_stream_close(r.s, "bye", true);
    at_stream_close(r.s, "second reason ignored", true);
    r.in_close_call = false;
    assert_int_equal(r.closes, 0); /* not inside the caller */
    pump(base, 5);
    assert_int_equal(r.closes, 1);
    assert_false(r.close_inside_caller);
    assert_string_equal(r.reason, "bye");
    char buf[16];
    assert_int_equal(read(peer, buf, sizeof buf), 10); /* echo + the flushed write */
    assert_memory_equal(buf,
                        "\x00\x03"
                        "abc\x00\x03"
                        "xyz",
                        10);
    free_pair(base, peer);
}

static void test_peer_close_reported(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    close(peer);
    pump(base, 5);
    closed_once_for(&r, "peer closed");
    event_base_free(base);
}

static void test_peer_not_reading_pauses_reading(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer, sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    base = event_base_new();
    memset(&r, 0, sizeof r);
    struct at_stream_limits lim = { .max_frame = 256, .max_output = 4096 };
    r.s = at_stream_new(base, sv[0], &ops, &r, &lim);
    peer = sv[1];
    static char blob[1 << 20];
    assert_int_equal(at_stream_write(r.s, NULL, 0, blob, sizeof blob), 0);
    assert_true(at_stream_paused(r.s)); /* more than max_output queued */
    assert_int_equal(write(peer, "\x00\x01Q", 3), 3);
    pump(base, 5);
    assert_int_equal(r.n_frames, 0); /* not read while the peer does not read */
    /* The peer reads everything: reading resumes and the frame is handled. */
    char buf[65536];
    size_t got = 0;
    for (int i = 0; i < 2000 && got < sizeof blob; i++) {
        pump(base, 1);
        ssize_t n = recv(peer, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
    }
    assert_int_equal(got, sizeof blob);
    pump(base, 5);
    assert_false(at_stream_paused(r.s));
    assert_int_equal(r.n_frames, 1);
    at_stream_close(r.s, "done", false);
    pump(base, 2);
    free_pair(base, peer);
}

/* Three requests read at once, three answers written from on_frame: they
 * leave in one writev at the end of the loop turn, and EV_WRITE is never
 * armed (the bufferevent alone arms it, writes one loop iteration later and
 * disarms it: two epoll_ctl). */
static void test_answers_of_a_turn_leave_in_one_write(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    r.echo = true;
    pump(base, 3);
    writev_calls = epoll_ctl_calls = 0;
    assert_int_equal(write(peer,
                           "\x00\x01"
                           "a\x00\x02"
                           "bb\x00\x03"
                           "ccc",
                           12),
                     12);
    pump(base, 5);
    assert_int_equal(r.n_frames, 3);
    assert_int_equal(writev_calls, 1);
    assert_int_equal(epoll_ctl_calls, 0);
    char buf[32];
    assert_int_equal(recv(peer, buf, sizeof buf, MSG_DONTWAIT), 12);
    assert_memory_equal(buf,
                        "\x00\x01"
                        "a\x00\x02"
                        "bb\x00\x03"
                        "ccc",
                        12);
    /* Written outside the loop: also one writev, on the next turn. */
    writev_calls = 0;
    assert_int_equal(at_stream_write(r.s, "\x00\x01", 2, "x", 1), 0);
    assert_int_equal(at_stream_write(r.s, "\x00\x01", 2, "y", 1), 0);
    assert_int_equal(writev_calls, 0);
    pump(base, 1);
    assert_int_equal(writev_calls, 1);
    assert_int_equal(epoll_ctl_calls, 0);
    assert_int_equal(recv(peer, buf, sizeof buf, MSG_DONTWAIT), 6);
    at_stream_close(r.s, "done", false);
    pump(base, 2);
    free_pair(base, peer);
}

/* A write the kernel refuses (the peer no longer reads: EPIPE) ends the
 * stream with the socket error as its reason. */
static void test_write_error_closes(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    signal(SIGPIPE, SIG_IGN);
    setup_pair(&base, &peer, &r, 256);
    assert_int_equal(shutdown(peer, SHUT_RD), 0);
    assert_int_equal(at_stream_write(r.s, "\x00\x01", 2, "x", 1), 0);
    pump(base, 3);
    closed_once_for(&r, "socket error: Broken pipe");
    free_pair(base, peer);
}

/* A close with flush of more than the socket takes at once: EV_WRITE carries
 * the rest, and on_close comes only after the peer has everything. */
static void test_close_flushes_a_large_output(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    static char blob[512 * 1024];
    memset(blob, 'z', sizeof blob);
    assert_int_equal(at_stream_write(r.s, NULL, 0, blob, sizeof blob), 0);
    at_stream_close(r.s, "bye", true);
    pump(base, 2);
    assert_int_equal(r.closes, 0);
    assert_true(at_stream_output_len(r.s) > 0); /* the socket buffer is full */
    char buf[65536];
    size_t got = 0;
    for (int i = 0; i < 2000 && r.closes == 0; i++) {
        ssize_t n = recv(peer, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        pump(base, 1);
    }
    closed_once_for(&r, "bye");
    for (ssize_t n; (n = recv(peer, buf, sizeof buf, MSG_DONTWAIT)) > 0;)
        got += (size_t)n;
    assert_int_equal(got, sizeof blob);
    free_pair(base, peer);
}

/* Frames written before the connect completes leave once it has. */
static void test_writes_while_connecting_leave_once_connected(void **state)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    struct event_base *base = event_base_new();
    struct rec r;
    memset(&r, 0, sizeof r);
    r.s = at_stream_connect(base, (struct sockaddr *)&a, alen, &ops, &r, NULL);
    assert_non_null(r.s);
    assert_int_equal(at_stream_write(r.s, "\x00\x02", 2, "hi", 2), 0);
    for (int i = 0; i < 200 && r.connects == 0; i++) {
        pump(base, 1);
        usleep(1000);
    }
    assert_int_equal(r.connects, 1);
    pump(base, 2);
    int peer = accept(lfd, NULL, NULL);
    assert_true(peer >= 0);
    char buf[8];
    assert_int_equal(recv(peer, buf, sizeof buf, 0), 4);
    assert_memory_equal(buf, "\x00\x02hi", 4);
    at_stream_close(r.s, "done", false);
    pump(base, 2);
    assert_int_equal(r.closes, 1);
    close(peer);
    close(lfd);
    event_base_free(base);
}

static void test_idle_timeout(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    at_stream_set_idle_timeout(r.s, 1);
    event_base_dispatch(base); /* returns when the stream is gone */
    closed_once_for(&r, "idle timeout");
    free_pair(base, peer);
}

/* The idle clock does not run while the owner is busy (answers owed), and
 * starts over when it stops being busy. */
static void test_idle_not_while_busy(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    at_stream_set_idle_timeout(r.s, 1);
    at_stream_set_busy(r.s, true);
    run_ms(base, 1500);
    assert_int_equal(r.closes, 0);
    at_stream_set_busy(r.s, false);
    uint64_t took = run_until_closed(base, &r, 10000);
    closed_once_for(&r, AT_STREAM_IDLE_TIMEOUT);
    assert_true(took >= 990);
    free_pair(base, peer);
}

/* Input keeps a stream from being idle. */
static void test_idle_reset_by_input(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    at_stream_set_idle_timeout(r.s, 2);
    for (int i = 0; i < 10; i++) { /* 3 s in all, never 2 s without input */
        run_ms(base, 300);
        assert_int_equal(write(peer, "\x00\x01Z", 3), 3);
    }
    run_ms(base, 50);
    assert_int_equal(r.closes, 0);
    assert_int_equal(r.n_frames, 10);
    uint64_t took = run_until_closed(base, &r, 10000);
    closed_once_for(&r, AT_STREAM_IDLE_TIMEOUT);
    assert_true(took >= 1900);
    free_pair(base, peer);
}

/* One byte of a frame every 60 ms with a 300 ms deadline: closed once the
 * deadline has passed since the frame's first byte, with the frame never
 * delivered. */
static void test_frame_dribbled_past_deadline_closes(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    struct at_stream_limits lim = { .max_frame = 256, .frame_timeout_ms = 300 };
    setup_lim(&base, &peer, &r, &lim);
    static const char frame[] = "\x00\x20"
                                "0123456789abcdef0123456789abcdef";
    uint64_t t0 = ms_now();
    for (size_t i = 0; i < sizeof frame - 1 && r.closes == 0; i++) {
        assert_int_equal(write(peer, frame + i, 1), 1);
        run_ms(base, 60);
    }
    run_until_closed(base, &r, 5000);
    closed_once_for(&r, AT_STREAM_FRAME_TIMEOUT);
    assert_true(ms_now() - t0 >= 300);
    assert_int_equal(r.n_frames, 0);
    char c;
    assert_int_equal(read(peer, &c, 1), 0); /* our end was closed */
    free_pair(base, peer);
}

/* The deadline is per frame: frames each completed within it are served
 * even when together they take longer, and an empty input (between frames)
 * has no deadline. */
static void test_frames_within_deadline_are_served(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    struct at_stream_limits lim = { .max_frame = 256, .frame_timeout_ms = 1000 };
    setup_lim(&base, &peer, &r, &lim);
    for (int f = 0; f < 8; f++) { /* each frame over 120 ms, 1.6 s in all */
        assert_int_equal(write(peer, "\x00", 1), 1);
        run_ms(base, 60);
        assert_int_equal(write(peer,
                               "\x03"
                               "a",
                               2),
                         2);
        run_ms(base, 60);
        assert_int_equal(write(peer, "bc", 2), 2);
        run_ms(base, 20);
    }
    assert_int_equal(r.n_frames, 8);
    assert_string_equal(r.frames[7], "abc");
    /* Half of the next frame arrives with the rest of this one: its clock
     * starts then. */
    assert_int_equal(write(peer, "\x00\x02xy\x00", 5), 5);
    run_ms(base, 100);
    assert_int_equal(r.n_frames, 9);
    assert_int_equal(write(peer, "\x01q", 2), 2);
    run_ms(base, 1500); /* nothing pending: no deadline */
    assert_int_equal(r.closes, 0);
    assert_int_equal(r.n_frames, 10);
    at_stream_close(r.s, "done", false);
    run_ms(base, 20);
    free_pair(base, peer);
}

/* While the owner has reading paused, an incomplete frame's clock stands
 * still; it restarts when reading resumes. */
static void test_frame_clock_stops_while_paused(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    struct at_stream_limits lim = { .max_frame = 256, .frame_timeout_ms = 1000 };
    setup_lim(&base, &peer, &r, &lim);
    assert_int_equal(write(peer, "\x00\x05he", 4), 4);
    run_ms(base, 50);
    at_stream_pause(r.s);
    run_ms(base, 1500);
    assert_int_equal(r.closes, 0);
    uint64_t t0 = ms_now();
    at_stream_resume(r.s);
    run_until_closed(base, &r, 5000);
    closed_once_for(&r, AT_STREAM_FRAME_TIMEOUT);
    assert_true(ms_now() - t0 >= 990);
    free_pair(base, peer);
}

/* Output the peer does not read: closed write_timeout_ms after it began to
 * wait for the socket, without flushing. */
static void test_write_timeout_closes(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    struct at_stream_limits lim = { .max_frame = 256, .write_timeout_ms = 300 };
    setup_lim(&base, &peer, &r, &lim);
    static char blob[1 << 20];
    uint64_t t0 = ms_now();
    assert_int_equal(at_stream_write(r.s, NULL, 0, blob, sizeof blob), 0);
    run_ms(base, 50);
    assert_true(at_stream_output_len(r.s) > 0); /* the socket buffer is full */
    run_until_closed(base, &r, 5000);
    closed_once_for(&r, AT_STREAM_WRITE_TIMEOUT);
    assert_true(ms_now() - t0 >= 300);
    free_pair(base, peer);
}

/* A peer that reads its output within the write timeout keeps its stream. */
static void test_write_timeout_spares_a_reading_peer(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    struct at_stream_limits lim = { .max_frame = 256, .write_timeout_ms = 2000 };
    setup_lim(&base, &peer, &r, &lim);
    static char blob[1 << 20];
    char buf[65536];
    for (int round = 0; round < 3; round++) {
        assert_int_equal(at_stream_write(r.s, NULL, 0, blob, sizeof blob), 0);
        size_t got = 0;
        for (int i = 0; i < 5000 && got < sizeof blob; i++) {
            event_base_loop(base, EVLOOP_NONBLOCK);
            ssize_t n = recv(peer, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0)
                got += (size_t)n;
        }
        assert_int_equal(got, sizeof blob);
        run_ms(base, 800); /* beyond the first wait's deadline had it not drained */
    }
    assert_int_equal(r.closes, 0);
    at_stream_close(r.s, "done", false);
    run_ms(base, 20);
    free_pair(base, peer);
}

/* Output beyond the cap that the kernel would not take closes the stream:
 * at once when a send leaves more than the cap waiting, and a write that
 * would take the waiting output beyond it is refused (-1). */
static void test_output_cap_closes(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    static char blob[1 << 20];
    struct at_stream_limits lim = { .max_frame = 256, .output_cap = 4096 };
    setup_lim(&base, &peer, &r, &lim);
    assert_int_equal(at_stream_write(r.s, NULL, 0, blob, sizeof blob), 0);
    run_ms(base, 50);
    closed_once_for(&r, AT_STREAM_OUTPUT_CAP);
    free_pair(base, peer);

    lim.output_cap = sizeof blob;
    setup_lim(&base, &peer, &r, &lim);
    assert_int_equal(at_stream_write(r.s, NULL, 0, blob, sizeof blob / 2), 0);
    run_ms(base, 50);
    size_t waiting = at_stream_output_len(r.s);
    assert_true(waiting > 0 && waiting <= sizeof blob / 2);
    assert_int_equal(r.closes, 0);
    assert_int_equal(at_stream_write(r.s, NULL, 0, blob, sizeof blob - waiting + 1), -1);
    run_ms(base, 50);
    closed_once_for(&r, AT_STREAM_OUTPUT_CAP);
    free_pair(base, peer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reassembly_and_batches),
        cmocka_unit_test(test_oversize_frame_closes),
        cmocka_unit_test(test_framing_error_reason),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_close_flushes_and_is_deferred),
        cmocka_unit_test(test_peer_close_reported),
        cmocka_unit_test(test_peer_not_reading_pauses_reading),
        cmocka_unit_test(test_answers_of_a_turn_leave_in_one_write),
        cmocka_unit_test(test_write_error_closes),
        cmocka_unit_test(test_close_flushes_a_large_output),
        cmocka_unit_test(test_writes_while_connecting_leave_once_connected),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_idle_not_while_busy),
        cmocka_unit_test(test_idle_reset_by_input),
        cmocka_unit_test(test_frame_dribbled_past_deadline_closes),
        cmocka_unit_test(test_frames_within_deadline_are_served),
        cmocka_unit_test(test_frame_clock_stops_while_paused),
        cmocka_unit_test(test_write_timeout_closes),
        cmocka_unit_test(test_write_timeout_spares_a_reading_peer),
        cmocka_unit_test(test_output_cap_closes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
