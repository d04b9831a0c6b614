/* bench-hsm-tcp: hsm-sim throughput and latency over TCP, driven by the async
 * client library (atlas_hsmclient) the switch uses. C connections × pipeline
 * depth D requests kept in flight (closed loop) for a few seconds per case;
 * prints one line per case: case=<name> ops_per_s=<n> p99_us=<n>.
 *
 *   bench-hsm-tcp [--connect ADDR:PORT] [--seconds S] [--conns C] [--depth D]
 *
 * Without --connect it starts build/bin/hsm-sim (next to this program) on a
 * free loopback port, pinned to CPU 0 (the daemon gets one core), and pins
 * itself to CPU 1. */
#include "clock.h"
#include "hsmclient.h"
#include "log.h"
#include "parse.h"
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct bench;

struct slot {
    struct bench *b;
    uint64_t t0;
};

struct bench {
    struct event_base *base;
    struct hsm_client *c;
    const char *cmd;
    size_t cmd_len;
    const char *expect; /* answer prefix that means success */
    uint64_t start_ns, measure_ns, end_ns;
    uint64_t ops, errors;
    uint32_t *lat; /* µs, measured requests only */
    size_t n_lat, cap_lat;
    bool stopping;
    unsigned outstanding;
};

static void submit_one(struct slot *s);

static void on_answer(void *arg, int status, const char *resp, size_t len)
{
    struct slot *s = arg;
    struct bench *b = s->b;
    uint64_t now = at_mono_ns();
    b->outstanding--;
    if (status != HSM_CLIENT_OK || len < strlen(b->expect) ||
        memcmp(resp, b->expect, strlen(b->expect)) != 0)
        b->errors++;
    if (now >= b->measure_ns && now < b->end_ns) {
        b->ops++;
        if (b->n_lat < b->cap_lat)
            b->lat[b->n_lat++] = (uint32_t)((now - s->t0) / 1000);
    }
    if (now >= b->end_ns) {
        if (b->outstanding == 0)
            event_base_loopbreak(b->base);
        return;
    }
    submit_one(s);
}

static void submit_one(struct slot *s)
{
    struct bench *b = s->b;
    s->t0 = at_mono_ns();
    if (hsm_client_submit(b->c, b->cmd, b->cmd_len, on_answer, s) != 0) {
        b->errors++;
        return;
    }
    b->outstanding++;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The 99th percentile of the n latencies in lat (sorted in place), 0 when there are none. */
static uint32_t p99_of(uint32_t *lat, size_t n)
{
    if (n == 0)
        return 0;
    qsort(lat, n, sizeof *lat, cmp_u32);
    return lat[(size_t)((double)(n - 1) * 0.99)];
}

static int run_case(const char *name, const char *addr, unsigned conns, unsigned depth,
                    double seconds, const char *cmd, const char *expect)
{
    struct bench b = { .cmd = cmd, .cmd_len = strlen(cmd), .expect = expect };
    char err[256];
    b.base = event_base_new();
    struct hsm_client_config cfg = { .address = addr,
                                     .connections = conns,
                                     .pipeline = depth,
                                     .queue_limit = conns * depth * 2,
                                     .timeout_ms = 5000 };
    b.c = hsm_client_new(b.base, &cfg, err, sizeof err);
    if (!b.c) {
        fprintf(stderr, "bench-hsm-tcp: %s\n", err);
        return -1;
    }
    /* let the pool connect */
    struct timeval tv = { 0, 200000 };
    event_base_loopexit(b.base, &tv);
    event_base_dispatch(b.base);

    b.cap_lat = (size_t)(seconds * 2e6) + 1024;
    b.lat = malloc(b.cap_lat * sizeof *b.lat);
    struct slot *slots = calloc((size_t)conns * depth, sizeof *slots);
    if (!b.lat || !slots)
        return -1;
    b.start_ns = at_mono_ns();
    b.measure_ns = b.start_ns + 300000000ull; /* 0.3 s warm-up */
    b.end_ns = b.measure_ns + (uint64_t)(seconds * 1e9);
    for (unsigned i = 0; i < conns * depth; i++) {
        slots[i].b = &b;
        submit_one(&slots[i]);
    }
    event_base_dispatch(b.base);
    double secs = (double)(b.end_ns - b.measure_ns) / 1e9;
    uint32_t p99 = p99_of(b.lat, b.n_lat);
    printf("case=%s ops_per_s=%.0f p99_us=%u conns=%u depth=%u errors=%llu\n", name,
           (double)b.ops / secs, p99, conns, depth, (unsigned long long)b.errors);
    fflush(stdout);
    hsm_client_free(b.c);
    event_base_free(b.base);
    free(b.lat);
    free(slots);
    return b.errors ? -1 : 0;
}

/* The protocol layer alone (hsm_proto_execute, no sockets), one core: the
 * daemon's CPU cost per command, whatever the machine's other load does to
 * the TCP figures. */
static int run_inprocess(const char *name, double seconds, const char *cmd, const char *expect)
{
    struct hsm_proto *p;
    char err[256], req[512];
    static uint8_t out[HSM_PROTO_MAX_FRAME + HSM_PROTO_RESP_SLACK];
    struct hsm_proto_config cfg = { .header_len = 4, .lmk_path = NULL };
    if (hsm_proto_new(&cfg, &p, err, sizeof err) != 0) {
        fprintf(stderr, "bench-hsm-tcp: %s\n", err);
        return -1;
    }
    int n = snprintf(req, sizeof req, "0000%s", cmd);
    size_t cap = (size_t)(seconds * 3e6) + 1024, nlat = 0;
    uint32_t *lat = malloc(cap * sizeof *lat);
    uint64_t ops = 0, errors = 0, start = at_mono_ns(), end = start + (uint64_t)(seconds * 1e9);
    uint64_t now = start;
    while (now < end && lat) {
        struct hsm_proto_result res;
        size_t len = hsm_proto_execute(p, (const uint8_t *)req, (size_t)n, out, sizeof out, &res);
        uint64_t t = at_mono_ns();
        if (len < 4 + strlen(expect) || memcmp(out + 4, expect, strlen(expect)) != 0)
            errors++;
        if (nlat < cap)
            lat[nlat++] = (uint32_t)((t - now + 500) / 1000);
        now = t;
        ops++;
    }
    uint32_t p99 = p99_of(lat, nlat);
    printf("case=%s ops_per_s=%.0f p99_us=%u errors=%llu\n", name,
           (double)ops / ((double)(now - start) / 1e9), p99, (unsigned long long)errors);
    fflush(stdout);
    free(lat);
    hsm_proto_free(p);
    return errors ? -1 : 0;
}

static uint16_t free_port(void)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd == -1 || bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
        if (fd != -1)
            close(fd);
        return 0;
    }
    close(fd);
    return ntohs(sin.sin_port);
}

static void pin_cpu(int cpu)
{
    cpu_set_t set;
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static pid_t spawn_sim(const char *addr)
{
    char exe[PATH_MAX], path[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(path, sizeof path, "%s/hsm-sim", exe);
    pid_t pid = fork();
    if (pid == 0) {
        pin_cpu(0);
        execl(path, "hsm-sim", "--listen", addr, "--log-level", "warn", (char *)NULL);
        fprintf(stderr, "bench-hsm-tcp: exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return pid;
}

static int wait_port(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (!at_parse_hostport(addr, &ss, &len, NULL))
        return -1;
    for (int i = 0; i < 500; i++) {
        int fd = socket(ss.ss_family, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, len) == 0) {
            close(fd);
            return 0;
        }
        if (fd >= 0)
            close(fd);
        usleep(10000);
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *connect_to = NULL;
    double seconds = 3;
    unsigned conns = 4, depth = 32;
    static const struct option opts[] = {
        { "connect", required_argument, NULL, 'c' }, { "seconds", required_argument, NULL, 's' },
        { "conns", required_argument, NULL, 'n' },   { "depth", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 }
    };
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            connect_to = optarg;
            break;
        case 's':
            if (!at_parse_u64(optarg, 60, &v) || v == 0)
                return 2;
            seconds = (double)v;
            break;
        case 'n':
            if (!at_parse_u64(optarg, 64, &v) || v == 0)
                return 2;
            conns = (unsigned)v;
            break;
        case 'd':
            if (!at_parse_u64(optarg, 4096, &v) || v == 0 || (v & (v - 1)))
                return 2;
            depth = (unsigned)v;
            break;
        default:
            fprintf(stderr, "usage: bench-hsm-tcp [--connect ADDR:PORT] [--seconds S (1..60)] "
                            "[--conns C] [--depth D (power of 2)]\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    at_log_set_level(AT_LOG_WARN); /* the client's connection events would clutter the output */
    char addr[64];
    pid_t pid = -1;
    if (connect_to) {
        snprintf(addr, sizeof addr, "%s", connect_to);
    } else {
        snprintf(addr, sizeof addr, "127.0.0.1:%u", free_port());
        pid = spawn_sim(addr);
        if (pid <= 0 || wait_port(addr) != 0) {
            fprintf(stderr, "bench-hsm-tcp: hsm-sim did not start\n");
            return 1;
        }
        pin_cpu(1);
    }
    /* PIN translation TPK→ZPK and MAC verification, keys of payshield.md §11.1 */
    static const char ca[] = "CA0406FBB23A5214DFBAB32D775A38E4AB12DC80B186C30902B00303550000025321";
    static const char m8[] = "M801032003U19D25F349FD03CC3556BB05F65283CA1004072C29C2371CC9BDB65B"
                             "779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F25F1448EE";
    char name[64];
    int rc = 0;
    snprintf(name, sizeof name, "tcp_pin_translate_ca_c%u_d%u", conns, depth);
    rc |= run_case(name, addr, conns, depth, seconds, ca, "CB00");
    snprintf(name, sizeof name, "tcp_mac_verify_m8_c%u_d%u", conns, depth);
    rc |= run_case(name, addr, conns, depth, seconds, m8, "M900");
    rc |= run_case("tcp_pin_translate_ca_c1_d1", addr, 1, 1, seconds > 1 ? 1 : seconds, ca, "CB00");
    rc |= run_inprocess("proto_execute_ca_inprocess", seconds > 1 ? 1 : seconds, ca, "CB00");
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return rc ? 1 : 0;
}
