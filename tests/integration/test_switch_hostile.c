/* switchd against terminals that hold what they do not use, with real
 * processes and real TCP: a session that sends nothing is closed after its
 * idle timeout (never while a request of it is in flight) while an active
 * one keeps working; a frame dribbled a byte at a time is closed at its
 * deadline while another terminal is served; the per-address cap refuses the
 * connection above it and serves the rest; a terminal that sends and never
 * reads is closed at the output cap or the write timeout while another is
 * served; accept() failing with EMFILE pauses the listener (logged once, no
 * busy loop) and it serves again once connections close; and switchd raises
 * RLIMIT_NOFILE to what its configuration needs, or refuses to start.
 * Waits are bounded generously; only lower bounds of time are exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdbool.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;
static uint16_t p_idle, p_dribble, p_peraddr, p_capped, p_slow;
static char extra_conf[2048];
static uint8_t echo_frame[512];
static size_t echo_len;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int setup(void **state)
{
    p_idle = ts_free_port();
    p_dribble = ts_free_port();
    p_peraddr = ts_free_port();
    p_capped = ts_free_port();
    p_slow = ts_free_port();
    /* One listener per limit under test, each with small numbers; the
     * others keep their defaults. */
    snprintf(extra_conf, sizeof extra_conf,
             "[listener idle]\naddress = 127.0.0.1:%u\nmax_connections = 50\n"
             "idle_timeout_s = 2\n"
             "[listener dribble]\naddress = 127.0.0.1:%u\nmax_connections = 50\n"
             "frame_timeout_ms = 1000\n"
             "[listener peraddr]\naddress = 127.0.0.1:%u\nmax_connections = 50\n"
             "max_connections_per_address = 3\n"
             "[listener capped]\naddress = 127.0.0.1:%u\nmax_connections = 50\n"
             "max_output_bytes = 4096\nwrite_timeout_ms = 0\n"
             "[listener slowread]\naddress = 127.0.0.1:%u\nmax_connections = 50\n"
             "max_output_bytes = 67108864\nwrite_timeout_ms = 1000\n",
             p_idle, p_dribble, p_peraddr, p_capped, p_slow);
    struct stack_opts o = { .issuer = false, .extra_conf = extra_conf };
    if (stack_setup(state, &S, &o) != 0)
        return -1;
    /* The echo every test sends: TERM0001's 0800/301, framed (2-byte length). */
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x;
    uint8_t msg[SIM_MSG_MAX];
    size_t len;
    char err[128];
    stack_txn(&x, SIM_T_ECHO, "", NULL, 0);
    if (sim_term_build_request(t, &x, msg, sizeof msg, &len, NULL, err, sizeof err) != 0)
        return -1;
    int h = sim_frame_header(t, len, echo_frame);
    if (h < 0 || (size_t)h + len > sizeof echo_frame)
        return -1;
    memcpy(echo_frame + h, msg, len);
    echo_len = (size_t)h + len;
    return 0;
}

static int conn(uint16_t port)
{
    int fd = ts_connect(port, 5000);
    assert_true(fd >= 0);
    return fd;
}

/* Sends the echo on fd and checks its 0810/00 answer. */
static bool echo_ok(int fd)
{
    uint8_t buf[1024], arena[ISO_ARENA_FOR(1024)];
    struct sim_resp r;
    struct iso_msg m;
    char err[128];
    if (ts_send_all(fd, echo_frame, echo_len) != 0)
        return false;
    ssize_t n = ts_recv_frame2(fd, buf, sizeof buf);
    if (n <= 0)
        return false;
    iso_msg_init(&m, arena, sizeof arena);
    if (sim_term_check_response(stack_term(&S, "TERM0001"), buf, (size_t)n, &m, &r, err,
                                sizeof err) != 0)
        return false;
    return strcmp(r.mti, "0810") == 0 && strcmp(r.rc, "00") == 0;
}

/* The switch closed fd: reading ends in end-of-file or a reset (answers
 * queued before the close are read past), not in the 5 s receive timeout. */
static bool closed_by_switch(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET || errno == EPIPE;
    }
}

/* Nothing to read on fd right now, and not closed. */
static bool open_and_quiet(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
    return n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void test_idle_session_closed_active_one_served(void **state)
{
    int idle = conn(p_idle), active = conn(p_idle);
    uint64_t t0 = now_ms();
    /* The active terminal sends an echo every 250 ms for 4 s (its idle
     * timeout is 2 s); the other sends nothing. */
    for (int i = 0; i < 16; i++) {
        assert_true(echo_ok(active));
        if (now_ms() - t0 < 1800)
            assert_true(open_and_quiet(idle)); /* not before its time */
        usleep(250000);
    }
    assert_true(closed_by_switch(idle));
    assert_true(echo_ok(active));
    close(idle);
    close(active);
    assert_true(ts_wait_file_contains(S.switch_log, "\"listener\":\"idle\"", 2000));
    assert_true(ts_wait_file_contains(S.switch_log, "\"reason\":\"idle timeout\"", 2000));
    assert_true(stack_metric(&S, "atlas_connections_closed_total{reason=\"idle_timeout\"}") >= 1);
}

/* A session whose request waits longer than the idle timeout (the HSM is
 * stopped) is not idle: it gets its answer, and is closed only once it has
 * been idle after that answer. */
static void test_request_in_flight_is_not_idle(void **state)
{
    struct sim_term *t = stack_term(&S, "TERM0001");
    struct sim_txn x;
    uint8_t msg[SIM_MSG_MAX], hdr[8], buf[1024];
    size_t len;
    char err[128];
    stack_txn(&x, SIM_T_PURCHASE, "4890010000000012", "1234", 1250);
    assert_int_equal(sim_term_build_request(t, &x, msg, sizeof msg, &len, NULL, err, sizeof err),
                     0);
    int h = sim_frame_header(t, len, hdr);
    int fd = conn(p_idle);
    assert_int_equal(stack_kill(S.hsm, SIGSTOP), 0);
    assert_int_equal(ts_send_all(fd, hdr, (size_t)h), 0);
    assert_int_equal(ts_send_all(fd, msg, len), 0);
    usleep(3500000); /* 1.75 idle timeouts with the request in flight */
    bool quiet = open_and_quiet(fd);
    assert_int_equal(stack_kill(S.hsm, SIGCONT), 0);
    assert_true(quiet);
    ssize_t n = ts_recv_frame2(fd, buf, sizeof buf); /* its answer, whatever it says */
    assert_true(n > 0);
    uint64_t answered = now_ms();
    assert_true(closed_by_switch(fd)); /* then idle: closed */
    assert_true(now_ms() - answered >= 1900);
    close(fd);
}

static void test_dribbled_frame_closed_while_other_served(void **state)
{
    int d = conn(p_dribble), other = conn(p_dribble);
    /* A request in three pieces within the deadline (1 s) is served. */
    assert_int_equal(ts_send_all(d, echo_frame, 5), 0);
    usleep(100000);
    assert_int_equal(ts_send_all(d, echo_frame + 5, 10), 0);
    usleep(100000);
    uint8_t buf[1024];
    assert_int_equal(ts_send_all(d, echo_frame + 15, echo_len - 15), 0);
    assert_true(ts_recv_frame2(d, buf, sizeof buf) > 0);
    /* One byte every 100 ms: closed once 1 s has passed since the frame's
     * first byte, while the other terminal is answered. */
    uint64_t t0 = now_ms();
    size_t sent = 0;
    while (sent < echo_len && now_ms() - t0 < 10000) {
        if (send(d, echo_frame + sent, 1, MSG_NOSIGNAL) != 1)
            break; /* reset by the switch */
        sent++;
        assert_true(echo_ok(other));
        usleep(100000);
    }
    assert_true(sent < echo_len); /* never completed: closed first */
    assert_true(closed_by_switch(d));
    assert_true(now_ms() - t0 >= 1000);
    assert_true(echo_ok(other));
    close(d);
    close(other);
    assert_true(
        ts_wait_file_contains(S.switch_log, "\"reason\":\"frame not completed in time\"", 2000));
    assert_int_equal(stack_metric(&S, "atlas_connections_closed_total{reason=\"frame_timeout\"}"),
                     1);
}

static void test_per_address_cap_refuses_the_next_and_serves_the_rest(void **state)
{
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = conn(p_peraddr);
        assert_true(echo_ok(c[i]));
    }
    /* The 4th from 127.0.0.1: connected by the kernel, closed at accept. */
    int over = conn(p_peraddr);
    ts_send_all(over, echo_frame, echo_len); /* may already fail: refused */
    assert_true(closed_by_switch(over));
    close(over);
    for (int i = 0; i < 3; i++)
        assert_true(echo_ok(c[i]));
    assert_int_equal(stack_metric(&S, "atlas_connections_refused_per_address_total"), 1);
    assert_true(ts_wait_file_contains(S.switch_log,
                                      "\"reason\":\"max_connections_per_address reached\"", 2000));
    /* One leaves: once the switch has seen it go, a new one is served. */
    close(c[0]);
    long long open = -1;
    for (int i = 0; i < 100 && open != 2; i++, usleep(50000))
        open = stack_metric(&S, "atlas_terminal_connections{listener=\"peraddr\"}");
    assert_int_equal(open, 2);
    c[0] = conn(p_peraddr);
    assert_true(echo_ok(c[0]));
    assert_int_equal(stack_metric(&S, "atlas_connections_refused_per_address_total"), 1);
    for (int i = 0; i < 3; i++)
        close(c[i]);
}

/* A terminal that sends up to max_frames echoes and never reads, with a
 * small receive buffer and segment size so that the kernel holds few of the
 * switch's answers (a few hundred): the rest wait in the switch's output.
 * Returns once the switch has logged the close with want_reason and the
 * connection has ended; another terminal on the same listener is answered
 * while the flooder holds its unread answers, and after. */
static void flood_until_closed(uint16_t port, const char *want_reason, size_t max_frames)
{
    int other = conn(port);
    assert_true(echo_ok(other));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 4096, mss = 536;
    struct timeval tv = { 5, 0 };
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    assert_int_equal(setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    static uint8_t burst[64 * 512];
    size_t burst_len = 0;
    while (burst_len + echo_len <= sizeof burst) {
        memcpy(burst + burst_len, echo_frame, echo_len);
        burst_len += echo_len;
    }
    size_t off = 0, sent = 0;
    uint64_t t0 = now_ms();
    bool reset = false;
    while (!reset && sent / echo_len < max_frames && now_ms() - t0 < 30000) {
        ssize_t n = send(fd, burst + off, burst_len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            off = (off + (size_t)n) % burst_len;
        } else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            poll(&p, 1, 20);
        } else {
            reset = true; /* the switch closed it */
        }
    }
    assert_true(echo_ok(other));
    assert_true(ts_wait_file_contains(S.switch_log, want_reason, 10000));
    assert_true(closed_by_switch(fd));
    assert_true(echo_ok(other));
    close(fd);
    close(other);
}

static void test_unread_answers_closed_at_the_cap(void **state)
{
    flood_until_closed(p_capped, "\"reason\":\"output above the cap: peer not reading\"", 20000);
    assert_int_equal(stack_metric(&S, "atlas_connections_closed_total{reason=\"output_cap\"}"), 1);
}

static void test_unread_answers_closed_at_the_write_timeout(void **state)
{
    /* The cap (64 MiB) is far; the answers of 10,000 echoes wait for more
     * than the write timeout (1 s). */
    flood_until_closed(p_slow, "\"reason\":\"write timeout: output not drained in time\"", 10000);
    assert_int_equal(stack_metric(&S, "atlas_connections_closed_total{reason=\"write_timeout\"}"),
                     1);
    assert_int_equal(stack_metric(&S, "atlas_connections_closed_total{reason=\"output_cap\"}"), 1);
}

/* The RLIMIT_NOFILE under which pid can open exactly `room` more
 * descriptors: new descriptors take the lowest free numbers, so count the
 * free numbers from 0 (descriptors above the limit stay open, unusable for
 * new ones). */
static rlim_t limit_leaving(pid_t pid, int room)
{
    static bool open_fd[65536];
    char path[64];
    memset(open_fd, 0, sizeof open_fd);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        int n = atoi(e->d_name);
        if (e->d_name[0] != '.' && n >= 0 && n < 65536)
            open_fd[n] = true;
    }
    closedir(d);
    int limit = 0, free_below = 0;
    while (free_below < room && limit < 65536)
        free_below += !open_fd[limit++];
    return (rlim_t)limit;
}

/* CPU time (user + system) of pid in clock ticks. */
static long long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after the command name */
    assert_non_null(p);
    unsigned long long ut = 0, st = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    assert_int_equal(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
    return (long long)(ut + st);
}

/* switchd's soft RLIMIT_NOFILE lowered (prlimit) to a couple of descriptors
 * above what it has open: terminals are accepted until accept() fails with
 * EMFILE. The listener pauses: one accept_paused line, no busy loop (CPU
 * time stays near zero while the connection waits in the backlog), and the
 * waiting terminal is served once others have closed. */
static void test_emfile_pauses_accepting_without_spinning(void **state)
{
    struct rlimit old, low;
    assert_int_equal(prlimit(S.sw, RLIMIT_NOFILE, NULL, &old), 0);
    low = old;
    low.rlim_cur = limit_leaving(S.sw, 3);
    assert_int_equal(prlimit(S.sw, RLIMIT_NOFILE, &low, NULL), 0);

    int served[32], n_served = 0, waiting = -1;
    while (waiting < 0 && n_served < 32) {
        int fd = conn(S.acq_port); /* the kernel completes it, accepted or not */
        assert_int_equal(ts_send_all(fd, echo_frame, echo_len), 0);
        bool answered = false, paused = false;
        for (uint64_t t0 = now_ms(); !answered && !paused && now_ms() - t0 < 10000;) {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            answered = poll(&p, 1, 50) == 1;
            paused = !answered && ts_file_contains(S.switch_log, "\"event\":\"accept_paused\"");
        }
        if (answered) {
            uint8_t buf[1024];
            assert_true(ts_recv_frame2(fd, buf, sizeof buf) > 0);
            served[n_served++] = fd;
        } else {
            assert_true(paused);
            waiting = fd;
        }
    }
    assert_true(waiting >= 0);
    assert_true(ts_wait_file_contains(S.switch_log, "\"reason\":\"Too many open files\"", 2000));
    /* Two seconds with a connection waiting that cannot be accepted: a busy
     * loop would burn most of them. */
    long hz = sysconf(_SC_CLK_TCK);
    long long cpu0 = cpu_ticks(S.sw);
    usleep(2000000);
    long long used = cpu_ticks(S.sw) - cpu0;
    assert_true(used < hz / 2);
    assert_int_equal(ts_file_lines_with(S.switch_log, "\"event\":\"accept_paused\""), 1);
    /* Connections close: the waiting one is accepted and answered. */
    for (int i = 0; i < n_served; i++)
        close(served[i]);
    uint8_t buf[1024];
    assert_true(ts_recv_frame2(waiting, buf, sizeof buf) > 0);
    assert_true(ts_wait_file_contains(S.switch_log, "\"event\":\"accept_resumed\"", 5000));
    assert_true(echo_ok(waiting));
    close(waiting);
    assert_int_equal(prlimit(S.sw, RLIMIT_NOFILE, &old, NULL), 0);
    assert_int_equal(ts_file_lines_with(S.switch_log, "\"event\":\"accept_paused\""), 1);
    assert_int_equal(stack_metric(&S, "atlas_accept_pauses_total"), 1);
    assert_true(stack_metric(&S, "atlas_accept_errors_total") >= 1);
    assert_int_equal(stack_metric(&S, "atlas_accept_paused{listener=\"acq\"}"), 0);
}

/* Waits for pid to exit (up to ms); its wait status, or -1. */
static int wait_exit(pid_t pid, int ms)
{
    int st;
    for (int waited = 0; waited <= ms; waited += 20) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return st;
        usleep(20000);
    }
    return -1;
}

static void test_refuses_to_start_when_nofile_is_too_low(void **state)
{
    char out[400];
    snprintf(out, sizeof out, "%s/nofile-defaults.out", S.dir);
    /* The defaults: two listeners of 8192 connections. */
    pid_t pid = ts_spawn_nofile("switchd", NULL, out, 64, 64);
    int st = wait_exit(pid, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_true(ts_file_contains(out, "(max_connections of the listeners 16384,"));
    assert_true(ts_file_contains(out, "but the hard RLIMIT_NOFILE is 64: lower max_connections"));
    assert_true(ts_file_contains(out, "\"event\":\"start_failed\""));
    /* The stack's configuration: its own numbers. */
    snprintf(out, sizeof out, "%s/nofile-stack.out", S.dir);
    const char *args[] = { "--config", S.switch_conf, NULL };
    pid = ts_spawn_nofile("switchd", args, out, 64, 64);
    st = wait_exit(pid, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_true(ts_file_contains(out, "(max_connections of the listeners 2250, issuer links 1, "
                                      "HSM 2, PostgreSQL 5, reserve 64) but the hard "
                                      "RLIMIT_NOFILE is 64"));
    assert_false(ts_file_contains(out, "\"event\":\"ready\""));
}

/* A soft limit below the need and a hard limit above it: switchd raises the
 * soft limit to what it needs and starts. */
static void test_raises_the_soft_limit_and_starts(void **state)
{
    char out[400], path[64], line[256];
    assert_int_equal(ts_stop(S.sw, SIGTERM, 10000), 0);
    S.sw = 0;
    snprintf(out, sizeof out, "%s/nofile-raise.out", S.dir);
    const char *args[] = { "--config", S.switch_conf, NULL };
    pid_t pid = ts_spawn_nofile("switchd", args, out, 64, 4096);
    assert_true(pid > 0);
    assert_int_equal(ts_wait_port(S.acq_port, 15000), 0);
    assert_true(ts_wait_file_contains(S.switch_log, "\"was\":64,\"hard\":4096", 5000));
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    unsigned long long soft = 0, hard = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Max open files", 14) == 0)
            sscanf(line + 14, "%llu %llu", &soft, &hard);
    fclose(f);
    assert_int_equal(soft, 2250 + 1 + 2 + 5 + 64); /* the need, as the refusal counts it */
    assert_int_equal(hard, 4096);
    int fd = conn(S.acq_port);
    assert_true(echo_ok(fd));
    close(fd);
    int st = ts_stop(pid, SIGTERM, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(stack_start_switch(&S), 0); /* the stack's own, for the teardown */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_session_closed_active_one_served),
        cmocka_unit_test(test_request_in_flight_is_not_idle),
        cmocka_unit_test(test_dribbled_frame_closed_while_other_served),
        cmocka_unit_test(test_per_address_cap_refuses_the_next_and_serves_the_rest),
        cmocka_unit_test(test_unread_answers_closed_at_the_cap),
        cmocka_unit_test(test_unread_answers_closed_at_the_write_timeout),
        cmocka_unit_test(test_emfile_pauses_accepting_without_spinning),
        cmocka_unit_test(test_refuses_to_start_when_nofile_is_too_low),
        cmocka_unit_test(test_raises_the_soft_limit_and_starts),
    };
    return cmocka_run_group_tests(tests, setup, stack_teardown);
}
