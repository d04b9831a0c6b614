/* at_stream over a real socketpair: reassembly, several frames per read, the
 * frame-size bound, pause/resume, flush-on-close, and on_close delivered once
 * from the loop (never inside the caller's at_stream_close). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stream.h"

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

static const struct at_stream_ops ops = { .frame = frame2,
                                          .on_frame = on_frame,
                                          .on_close = on_close };

static void pump(struct event_base *base, int rounds)
{
    for (int i = 0; i < rounds; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

static void setup_pair(struct event_base **base, int *peer, struct rec *r, size_t max_frame)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    *base = event_base_new();
    memset(r, 0, sizeof *r);
    struct at_stream_limits lim = { .max_frame = max_frame };
    r->s = at_stream_new(*base, sv[0], &ops, r, &lim);
    assert_non_null(r->s);
    *peer = sv[1];
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
    close(peer);
    event_base_free(base);
}

static void test_oversize_frame_closes(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 64);
    assert_int_equal(write(peer, "\x01\x00", 2), 2); /* announces 256 bytes */
    pump(base, 5);
    assert_int_equal(r.closes, 1);
    assert_string_equal(r.reason, "frame longer than the maximum");
    char c;
    assert_int_equal(read(peer, &c, 1), 0); /* our end was closed */
    close(peer);
    event_base_free(base);
}

static void test_framing_error_reason(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 64);
    assert_int_equal(write(peer, "\x00\x00", 2), 2);
    pump(base, 5);
    assert_int_equal(r.closes, 1);
    assert_string_equal(r.reason, "zero-length frame");
    close(peer);
    event_base_free(base);
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
    close(peer);
    event_base_free(base);
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
    close(peer);
    event_base_free(base);
}

static void test_peer_close_reported(void **state)
{
    struct event_base *base;
    struct rec r;
    int peer;
    setup_pair(&base, &peer, &r, 256);
    close(peer);
    pump(base, 5);
    assert_int_equal(r.closes, 1);
    assert_string_equal(r.reason, "peer closed");
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
    close(peer);
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
    assert_int_equal(r.closes, 1);
    assert_string_equal(r.reason, "idle timeout");
    close(peer);
    event_base_free(base);
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
        cmocka_unit_test(test_idle_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
