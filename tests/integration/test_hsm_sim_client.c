/* Integration test of the async client (atlas_hsmclient) against the real
 * hsm-sim: pool + pipelining with answers matched by header, callbacks never
 * inside submit, backpressure, timeout while the server is stopped
 * (SIGSTOP), reconnection after a restart, queueing before the server is up,
 * shutdown with requests pending, and one write per connection (without
 * epoll_ctl) for the requests of one loop turn. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "clock.h"
#include "hsmclient.h"
#include "testsupport.h"

/* This executable's writev and epoll_ctl take the place of libc's for
 * libevent too (symbol interposition): counted while g_count is set. */
static bool g_count;
static int g_writev_calls, g_epoll_ctl_calls;

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (g_count)
        g_writev_calls++;
    return syscall(SYS_writev, fd, iov, iovcnt);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (g_count)
        g_epoll_ctl_calls++;
    return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

struct fixture {
    struct event_base *base;
    uint16_t port;
    char addr[32];
    pid_t pid;
};

static pid_t start_sim(struct fixture *f)
{
    const char *args[] = { "--listen", f->addr, "--log-level", "warn", NULL };
    pid_t pid = ts_spawn("hsm-sim", args, "/dev/null");
    if (pid <= 0 || ts_wait_port(f->port, 10000) != 0)
        return -1;
    return pid;
}

static int setup(void **state)
{
    static struct fixture f;
    f.base = event_base_new();
    f.port = ts_free_port();
    snprintf(f.addr, sizeof f.addr, "127.0.0.1:%u", f.port);
    f.pid = start_sim(&f);
    if (!f.base || f.pid <= 0)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->pid > 0)
        ts_stop(f->pid, SIGTERM, 10000);
    event_base_free(f->base);
    return 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *done >= want or timeout_ms passes (a hang guard). */
/* A client of cfg on the fixture's loop; the test fails with hsm_client_new's reason when
 * there is none. */
static struct hsm_client *new_client(struct fixture *f, const struct hsm_client_config *cfg)
{
    char err[256];
    struct hsm_client *c = hsm_client_new(f->base, cfg, err, sizeof err);
    if (!c)
        fail_msg("hsm_client_new: %s", err);
    return c;
}

static void run_until(struct fixture *f, const int *done, int want, int timeout_ms)
{
    struct event *tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = { 0, 10000 };
    event_add(tick, &tv);
    uint64_t deadline = at_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (*done < want && at_mono_ns() < deadline)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(tick);
}

static void sleep_loop(struct fixture *f, int ms)
{
    int never = 0;
    run_until(f, &never, 1, ms);
}

/* ---- pool and pipelining ---- */

static bool g_in_submit;

struct echo_req {
    int idx;
    int status;
    bool matched;
    int *done;
};

static void on_echo(void *arg, int status, const char *resp, size_t len)
{
    struct echo_req *r = arg;
    char want[32];
    assert_false(g_in_submit); /* never inside the caller's submit frame */
    r->status = status;
    int n = snprintf(want, sizeof want, "B300%06d", r->idx);
    r->matched = status == HSM_CLIENT_OK && len == (size_t)n && memcmp(resp, want, len) == 0;
    (*r->done)++;
}

static int submit_echo(struct hsm_client *c, struct echo_req *r)
{
    char cmd[32];
    int n = snprintf(cmd, sizeof cmd, "B20006%06d", r->idx);
    g_in_submit = true;
    int rc = hsm_client_submit(c, cmd, (size_t)n, on_echo, r);
    g_in_submit = false;
    return rc;
}

/* Echo requests (indices from idx up) sent one at a time, a pause between them, until one is
 * answered and matched again or 20 s passed: whether one was. For a client whose server has
 * come back. */
static bool echo_served_again(struct fixture *f, struct hsm_client *c, int *done, int idx)
{
    uint64_t deadline = at_mono_ns() + 20000000000ull;
    for (int i = idx; at_mono_ns() < deadline; i++) {
        struct echo_req r = { .idx = i, .status = 99, .done = done };
        int before = *done;
        assert_int_equal(submit_echo(c, &r), 0);
        run_until(f, done, before + 1, 5000);
        if (r.matched)
            return true;
        sleep_loop(f, 100);
    }
    return false;
}

static void test_pool_pipelining(void **state)
{
    struct fixture *f = *state;
    struct hsm_client_config cfg = { .address = f->addr,
                                     .connections = 3,
                                     .pipeline = 16,
                                     .queue_limit = 2048,
                                     .timeout_ms = 10000 };
    struct hsm_client *c = new_client(f, &cfg);
    enum { N = 1500 };
    static struct echo_req reqs[N];
    int done = 0;
    for (int i = 0; i < N; i++) {
        reqs[i] = (struct echo_req){ .idx = i, .status = 99, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
    }
    assert_int_equal(done, 0); /* nothing ran inside submit */
    run_until(f, &done, N, 30000);
    assert_int_equal(done, N);
    for (int i = 0; i < N; i++)
        assert_true(reqs[i].matched);
    struct hsm_client_stats st;
    hsm_client_get_stats(c, &st);
    for (int i = 0; i < 100 && st.connected < 3; i++) {
        sleep_loop(f, 50); /* a slow machine may not have seen every connect yet */
        hsm_client_get_stats(c, &st);
    }
    assert_int_equal(st.connected, 3);
    assert_int_equal(st.answered, N);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.timeouts, 0);
    hsm_client_free(c);
}

/* Requests submitted in one turn go to one connection in one writev,
 * without arming EV_WRITE (a bufferevent left to itself arms and disarms it:
 * two epoll_ctl per connection); more than its pipeline holds spill to the
 * next connection, in one more writev. */
static void test_one_write_per_connection_and_turn(void **state)
{
    struct fixture *f = *state;
    struct hsm_client_config cfg = { .address = f->addr, .connections = 2, .pipeline = 16 };
    struct hsm_client *c = new_client(f, &cfg);
    struct hsm_client_stats st = { 0 };
    for (int i = 0; i < 200 && st.connected < 2; i++) {
        sleep_loop(f, 10);
        hsm_client_get_stats(c, &st);
    }
    assert_int_equal(st.connected, 2);
    enum { N = 30 };
    static struct echo_req reqs[N];
    int done = 0;
    g_writev_calls = g_epoll_ctl_calls = 0;
    g_count = true;
    for (int i = 0; i < 10; i++) { /* fits one pipeline */
        reqs[i] = (struct echo_req){ .idx = 700 + i, .status = 99, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
    }
    event_base_loop(f->base, EVLOOP_NONBLOCK); /* the pump */
    assert_int_equal(g_writev_calls, 1);
    run_until(f, &done, 10, 10000);
    assert_int_equal(done, 10);
    g_writev_calls = 0;
    for (int i = 10; i < N; i++) { /* 20: 16 on one connection, 4 on the other */
        reqs[i] = (struct echo_req){ .idx = 700 + i, .status = 99, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
    }
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(g_writev_calls, 2);
    run_until(f, &done, N, 10000);
    g_count = false;
    assert_int_equal(done, N);
    for (int i = 0; i < N; i++)
        assert_true(reqs[i].matched);
    assert_int_equal(g_writev_calls, 2);
    assert_int_equal(g_epoll_ctl_calls, 0);
    hsm_client_free(c);
}

/* ---- a real command through a builder ---- */

struct ca_req {
    int done;
    char resp[64];
    int status;
};

static void on_ca(void *arg, int status, const char *resp, size_t len)
{
    struct ca_req *r = arg;
    r->status = status;
    if (status == HSM_CLIENT_OK && len < sizeof r->resp) {
        memcpy(r->resp, resp, len);
        r->resp[len] = '\0';
    }
    r->done++;
}

static void test_ca_through_builder(void **state)
{
    struct fixture *f = *state;
    char cmd[256];
    struct hsm_client_config cfg = { .address = f->addr, .header_len = 4 };
    struct hsm_client *c = new_client(f, &cfg);
    int n = hsm_client_build_ca(cmd, sizeof cmd, "0406FBB23A5214DF", "BAB32D775A38E4AB",
                                "DC80B186C30902B0", "03", "03", "550000025321");
    assert_true(n > 0);
    struct ca_req r = { 0 };
    assert_int_equal(hsm_client_submit(c, cmd, (size_t)n, on_ca, &r), 0);
    run_until(f, &r.done, 1, 10000);
    assert_int_equal(r.status, HSM_CLIENT_OK);
    assert_string_equal(r.resp, "CB0004F7808F2CBEC6316803");
    char blk[17], fmt[3];
    assert_int_equal(hsm_client_parse_pin("CA", r.resp, strlen(r.resp), blk, fmt), 4);
    assert_string_equal(blk, "F7808F2CBEC63168");
    /* DC (Visa PVV under a TPK), the published pair, through its builder */
    n = hsm_client_build_pvv_verify(cmd, sizeof cmd, false, "0406FBB23A5214DF",
                                    "X367930344805B1FAD6146EF4ED7502B3", "AE7A708F877571A9", "01",
                                    "550000025321", 1, "4402");
    assert_true(n > 0);
    struct ca_req d = { 0 };
    assert_int_equal(hsm_client_submit(c, cmd, (size_t)n, on_ca, &d), 0);
    run_until(f, &d.done, 1, 10000);
    assert_int_equal(d.status, HSM_CLIENT_OK);
    assert_string_equal(d.resp, "DD00");
    hsm_client_free(c);
}

/* ---- backpressure ---- */

static int g_busy_events[8], g_n_busy;

static void on_busy(void *arg, bool busy)
{
    (void)arg;
    assert_false(g_in_submit);
    if (g_n_busy < 8)
        g_busy_events[g_n_busy++] = busy;
}

static void test_backpressure(void **state)
{
    struct fixture *f = *state;
    struct hsm_client_config cfg = { .address = f->addr,
                                     .connections = 1,
                                     .pipeline = 4,
                                     .queue_limit = 8,
                                     .high_watermark = 6,
                                     .low_watermark = 2,
                                     .busy_cb = on_busy };
    struct hsm_client *c = new_client(f, &cfg);
    sleep_loop(f, 200); /* connected */
    static struct echo_req reqs[9];
    int done = 0;
    g_n_busy = 0;
    for (int i = 0; i < 8; i++) {
        reqs[i] = (struct echo_req){ .idx = i, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
        assert_int_equal(hsm_client_busy(c), i + 1 >= 6);
    }
    reqs[8] = (struct echo_req){ .idx = 8, .done = &done };
    assert_int_equal(submit_echo(c, &reqs[8]), HSM_CLIENT_EFULL);
    assert_int_equal(g_n_busy, 0); /* reported from the loop, not from submit */
    run_until(f, &done, 8, 10000);
    sleep_loop(f, 50);
    assert_int_equal(done, 8);
    assert_false(hsm_client_busy(c));
    assert_true(g_n_busy >= 2);
    assert_int_equal(g_busy_events[0], 1);
    assert_int_equal(g_busy_events[g_n_busy - 1], 0);
    /* too long or empty commands are refused at once */
    static char huge[9000];
    memset(huge, 'B', sizeof huge);
    assert_int_equal(hsm_client_submit(c, huge, sizeof huge, on_ca, NULL), HSM_CLIENT_EINVAL);
    hsm_client_free(c);
}

/* ---- timeout while stopped, reconnect after restart ---- */

static void test_timeout_when_stopped(void **state)
{
    struct fixture *f = *state;
    struct hsm_client_config cfg = { .address = f->addr,
                                     .connections = 2,
                                     .timeout_ms = 300,
                                     .reconnect_min_ms = 50,
                                     .reconnect_max_ms = 400 };
    struct hsm_client *c = new_client(f, &cfg);
    sleep_loop(f, 200);
    assert_int_equal(kill(f->pid, SIGSTOP), 0);
    static struct echo_req reqs[10];
    int done = 0;
    for (int i = 0; i < 10; i++) {
        reqs[i] = (struct echo_req){ .idx = i, .status = 99, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
    }
    run_until(f, &done, 10, 20000);
    assert_int_equal(kill(f->pid, SIGCONT), 0);
    assert_int_equal(done, 10);
    /* The first request to expire reports TIMEOUT; as nothing at all came
     * back on its connection, the client drops that connection (stalled), and
     * requests still in flight on it report DISCONNECTED. */
    int timeouts = 0;
    for (int i = 0; i < 10; i++) {
        assert_true(reqs[i].status == HSM_CLIENT_TIMEOUT ||
                    reqs[i].status == HSM_CLIENT_DISCONNECTED);
        timeouts += reqs[i].status == HSM_CLIENT_TIMEOUT;
    }
    assert_true(timeouts >= 1);
    /* the server is back: new requests succeed (on a fresh or the old connection) */
    assert_true(echo_served_again(f, c, &done, 100));
    struct hsm_client_stats st;
    hsm_client_get_stats(c, &st);
    assert_true(st.timeouts >= 1);
    hsm_client_free(c);
}

static void test_reconnect_after_restart(void **state)
{
    struct fixture *f = *state;
    struct hsm_client_config cfg = { .address = f->addr,
                                     .connections = 2,
                                     .timeout_ms = 500,
                                     .reconnect_min_ms = 50,
                                     .reconnect_max_ms = 300 };
    struct hsm_client *c = new_client(f, &cfg);
    sleep_loop(f, 200);
    int st = ts_stop(f->pid, SIGTERM, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    f->pid = -1;
    int done = 0;
    struct echo_req r = { .idx = 1, .status = 99, .done = &done };
    assert_int_equal(submit_echo(c, &r), 0);
    run_until(f, &done, 1, 10000);
    assert_true(r.status == HSM_CLIENT_TIMEOUT || r.status == HSM_CLIENT_DISCONNECTED);

    f->pid = start_sim(f);
    assert_true(f->pid > 0);
    assert_true(echo_served_again(f, c, &done, 2));
    struct hsm_client_stats s;
    hsm_client_get_stats(c, &s);
    assert_true(s.reconnects >= 1);
    hsm_client_free(c);
}

static void test_queued_until_server_starts(void **state)
{
    struct fixture *f = *state;
    struct fixture late = *f;
    late.port = ts_free_port();
    snprintf(late.addr, sizeof late.addr, "127.0.0.1:%u", late.port);
    struct hsm_client_config cfg = {
        .address = late.addr, .timeout_ms = 15000, .reconnect_min_ms = 50, .reconnect_max_ms = 200
    };
    struct hsm_client *c = new_client(f, &cfg);
    int done = 0;
    struct echo_req r = { .idx = 7, .status = 99, .done = &done };
    assert_int_equal(submit_echo(c, &r), 0);
    sleep_loop(f, 300);
    assert_int_equal(done, 0);
    pid_t pid = start_sim(&late);
    assert_true(pid > 0);
    run_until(f, &done, 1, 15000);
    assert_true(r.matched);
    hsm_client_free(c);
    ts_stop(pid, SIGTERM, 10000);
}

static void test_free_with_pending(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct hsm_client_config cfg = { .address = f->addr };
    struct hsm_client *c = new_client(f, &cfg);
    int done = 0;
    static struct echo_req reqs[5];
    for (int i = 0; i < 5; i++) {
        reqs[i] = (struct echo_req){ .idx = i, .status = 99, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
    }
    hsm_client_free(c);
    assert_int_equal(done, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(reqs[i].status, HSM_CLIENT_SHUTDOWN);
    /* bad configurations are refused with a reason */
    struct hsm_client_config bad = { .address = f->addr, .pipeline = 3 };
    assert_null(hsm_client_new(f->base, &bad, err, sizeof err));
    struct hsm_client_config bad2 = { .address = "example.com:1500" };
    assert_null(hsm_client_new(f->base, &bad2, err, sizeof err));
}

/* A longer header (8): the tag travels in its last 4 characters. */
static void test_header_len_8(void **state)
{
    struct fixture *f = *state;
    struct fixture other = *f;
    other.port = ts_free_port();
    snprintf(other.addr, sizeof other.addr, "127.0.0.1:%u", other.port);
    const char *args[] = {
        "--listen", other.addr, "--header-len", "8", "--log-level", "warn", NULL
    };
    pid_t pid = ts_spawn("hsm-sim", args, "/dev/null");
    assert_true(pid > 0);
    assert_int_equal(ts_wait_port(other.port, 10000), 0);
    struct hsm_client_config cfg = { .address = other.addr, .header_len = 8, .pipeline = 8 };
    struct hsm_client *c = new_client(f, &cfg);
    static struct echo_req reqs[40];
    int done = 0;
    for (int i = 0; i < 40; i++) {
        reqs[i] = (struct echo_req){ .idx = 1000 + i, .status = 99, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
    }
    run_until(f, &done, 40, 10000);
    for (int i = 0; i < 40; i++)
        assert_true(reqs[i].matched);
    hsm_client_free(c);
    ts_stop(pid, SIGTERM, 10000);
}

/* A fake HSM (a thread with a blocking socket) that answers a batch of four
 * requests in reverse order, preceded by an answer whose tag matches nothing:
 * the client must match each answer to its request by the header. */
struct fake {
    int lfd;
    int ok;
};

static void *fake_hsm(void *arg)
{
    struct fake *fk = arg;
    int fd = accept(fk->lfd, NULL, NULL);
    uint8_t frames[4][64];
    ssize_t lens[4];
    fk->ok = 0;
    if (fd < 0)
        return NULL;
    struct timeval tv = { 10, 0 }; /* hang guard */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 4; i++) {
        lens[i] = ts_recv_frame2(fd, frames[i], sizeof frames[i]);
        if (lens[i] < 10)
            goto out;
    }
    /* a stray answer with a tag nobody waits for */
    const uint8_t stray[] = { 0, 8, '0', '0', '0', 'F', 'B', '3', '0', '0' };
    if (ts_send_all(fd, stray, sizeof stray) != 0)
        goto out;
    for (int i = 3; i >= 0; i--) {
        /* request: header(4) B2 LLLL data → answer: header B300 data */
        uint8_t ans[64];
        size_t dlen = (size_t)lens[i] - 10;
        size_t n = 4 + 4 + dlen;
        ans[0] = 0;
        ans[1] = (uint8_t)n;
        memcpy(ans + 2, frames[i], 4);
        memcpy(ans + 6, "B300", 4);
        memcpy(ans + 10, frames[i] + 10, dlen);
        if (ts_send_all(fd, ans, n + 2) != 0)
            goto out;
    }
    fk->ok = 1;
    uint8_t sink[64];
    ts_recv_frame2(fd, sink, sizeof sink); /* until the client closes */
out:
    close(fd);
    return NULL;
}

static void test_out_of_order_answers(void **state)
{
    struct fixture *f = *state;
    char addr[32];
    uint16_t port;
    struct fake fk = { .lfd = ts_listen(0, 1, &port) };
    assert_true(fk.lfd >= 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_hsm, &fk), 0);

    struct hsm_client_config cfg = { .address = addr, .connections = 1, .pipeline = 4 };
    struct hsm_client *c = new_client(f, &cfg);
    static struct echo_req reqs[4];
    int done = 0;
    for (int i = 0; i < 4; i++) {
        reqs[i] = (struct echo_req){ .idx = 500 + i, .status = 99, .done = &done };
        assert_int_equal(submit_echo(c, &reqs[i]), 0);
    }
    run_until(f, &done, 4, 10000);
    for (int i = 0; i < 4; i++)
        assert_true(reqs[i].matched);
    hsm_client_free(c);
    sleep_loop(f, 100); /* libevent closes freed bufferevents' sockets from the loop */
    pthread_join(th, NULL);
    close(fk.lfd);
    assert_int_equal(fk.ok, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_pipelining),
        cmocka_unit_test(test_one_write_per_connection_and_turn),
        cmocka_unit_test(test_ca_through_builder),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_timeout_when_stopped),
        cmocka_unit_test(test_reconnect_after_restart),
        cmocka_unit_test(test_queued_until_server_starts),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_header_len_8),
        cmocka_unit_test(test_out_of_order_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
