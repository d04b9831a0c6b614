/* Process and socket helpers for integration tests. */
#include "testsupport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *ts_bin(const char *program)
{
    static char path[1024];
    const char *dir = getenv("ATLAS_BIN");
    if (program[0] == '/') /* a system program (tests/ha: /usr/sbin/haproxy) */
        snprintf(path, sizeof path, "%s", program);
    else
        snprintf(path, sizeof path, "%s/%s", dir ? dir : "build/bin", program);
    return path;
}

static pid_t spawn(const char *program, const char *const args[], const char *out_path,
                   const struct rlimit *nofile)
{
    const char *argv[64];
    size_t n = 0;
    char path[1024];

    snprintf(path, sizeof path, "%s", ts_bin(program));
    argv[n++] = program;
    for (size_t i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        if (out_path) {
            int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        if (nofile && setrlimit(RLIMIT_NOFILE, nofile) == -1) {
            fprintf(stderr, "setrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
            _exit(126);
        }
        execv(path, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return pid;
}

pid_t ts_spawn(const char *program, const char *const args[], const char *out_path)
{
    return spawn(program, args, out_path, NULL);
}

pid_t ts_spawn_nofile(const char *program, const char *const args[], const char *out_path,
                      unsigned long soft, unsigned long hard)
{
    struct rlimit rl = { .rlim_cur = soft, .rlim_max = hard };
    return spawn(program, args, out_path, &rl);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

bool ts_alive(pid_t pid)
{
    return pid > 0 && kill(pid, 0) == 0 && waitpid(pid, NULL, WNOHANG) == 0;
}

int ts_wait(pid_t pid, int timeout_ms)
{
    int status;
    if (pid <= 0)
        return -1;
    if (timeout_ms < 0)
        return waitpid(pid, &status, 0) == pid ? status : -1;
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r == -1 || now_ms() >= deadline)
            return -1;
        usleep(10000);
    }
}

int ts_exit_code(int status)
{
    if (status == -1)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int ts_run(const char *program, const char *const args[], const char *out_path)
{
    pid_t pid = ts_spawn(program, args, out_path);
    return pid > 0 ? ts_exit_code(ts_wait(pid, -1)) : -1;
}

int ts_stop(pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    int status = ts_wait(pid, timeout_ms);
    if (status != -1)
        return status;
    kill(pid, SIGKILL);
    return ts_wait(pid, -1);
}

/* One bind to port 0; 0 on failure. */
static uint16_t kernel_port(void)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd == -1)
        return 0;
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
        close(fd);
        return 0;
    }
    close(fd);
    return ntohs(sin.sin_port);
}

uint16_t ts_free_port(void)
{
    /* The kernel may hand the same free port out twice in a row: a test that
     * asks for several ports must never get one twice (two daemons would race
     * for it), so remember what this process was given. */
    static uint16_t given[256];
    static size_t n_given;
    for (int attempt = 0; attempt < 100; attempt++) {
        uint16_t p = kernel_port();
        bool seen = p == 0;
        for (size_t i = 0; i < n_given && !seen; i++)
            seen = given[i] == p;
        if (seen)
            continue;
        given[n_given++ % 256] = p;
        return p;
    }
    return 0;
}

int ts_listen(uint16_t port, int backlog, uint16_t *bound)
{
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 || listen(fd, backlog) == -1 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
        close(fd);
        return -1;
    }
    if (bound)
        *bound = ntohs(sin.sin_port);
    return fd;
}

int ts_connect(uint16_t port, int timeout_ms)
{
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == -1) {
        close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int ts_wait_port(uint16_t port, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        int fd = ts_connect(port, 1000);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(20000);
    }
    return -1;
}

int ts_send_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

ssize_t ts_recv_exact(int fd, void *buf, size_t n)
{
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r == 0)
            return 0;
        if (r == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    return (ssize_t)n;
}

ssize_t ts_recv_frame2(int fd, uint8_t *buf, size_t cap)
{
    uint8_t hdr[2];
    ssize_t r = ts_recv_exact(fd, hdr, 2);
    if (r <= 0)
        return r;
    size_t len = (size_t)hdr[0] << 8 | hdr[1];
    if (len > cap)
        return -1;
    r = ts_recv_exact(fd, buf, len);
    if (r == 0 && len > 0)
        return -1;
    return r < 0 ? -1 : (ssize_t)len;
}

char *ts_read_file(const char *path, long off, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long end = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (end >= off && fseek(f, off, SEEK_SET) == 0 && (buf = malloc((size_t)(end - off) + 1))) {
        size_t n = fread(buf, 1, (size_t)(end - off), f);
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    fclose(f);
    return buf;
}

int ts_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int ts_file_contains(const char *path, const char *needle)
{
    size_t n;
    char *buf = ts_read_file(path, 0, &n);
    int found = buf && memmem(buf, n, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

bool ts_wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
    for (int t = 0; t <= timeout_ms; t += 50) {
        if (ts_file_contains(path, needle))
            return true;
        usleep(50000);
    }
    return false;
}

int ts_file_lines_with(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) != -1)
        n += strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return n;
}

int ts_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* The directories ts_tmpdir made in this process: removed when it exits 0 (every test passed),
 * kept for a look when it fails or ATLAS_KEEP_TMP is set. Thousands were once left in /tmp. */
static struct {
    char paths[256][512];
    unsigned n;
    pid_t owner; /* a forked child that exits must not remove its parent's directories */
} tmpdirs;

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0; /* what cannot be removed stays; the rest still goes */
}

static void tmpdirs_remove(int status, void *arg)
{
    (void)arg;
    if (status != 0 || getpid() != tmpdirs.owner || getenv("ATLAS_KEEP_TMP"))
        return;
    for (unsigned i = 0; i < tmpdirs.n; i++)
        nftw(tmpdirs.paths[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *ts_tmpdir(const char *tag)
{
    static char path[512];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/atlas-%s-XXXXXX", base ? base : "/tmp", tag);
    if (!mkdtemp(path))
        return NULL;
    chmod(path, 0755);
    if (tmpdirs.n == 0 && tmpdirs.owner == 0) {
        tmpdirs.owner = getpid();
        on_exit(tmpdirs_remove, NULL);
    }
    if (getpid() == tmpdirs.owner && tmpdirs.n < sizeof tmpdirs.paths / sizeof tmpdirs.paths[0])
        memcpy(tmpdirs.paths[tmpdirs.n++], path, sizeof path);
    return path;
}
