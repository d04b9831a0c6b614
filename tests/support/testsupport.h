/* Integration-test helpers: real processes, real loopback sockets.
 * Programs are found in $ATLAS_BIN (set by ctest to build/bin). All waits are
 * bounded; a helper that times out returns -1 so the test fails, not hangs. */
#ifndef ATLAS_TESTSUPPORT_H
#define ATLAS_TESTSUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Path of a program in $ATLAS_BIN (static buffer, valid until the next call). */
const char *ts_bin(const char *program);

/* Starts $ATLAS_BIN/program with argv (argv[0] is set for you; the list ends
 * with NULL). stdout+stderr go to out_path if non-NULL (appended). Returns the
 * pid or -1. */
pid_t ts_spawn(const char *program, const char *const args[], const char *out_path);

/* ts_spawn with RLIMIT_NOFILE set to soft/hard in the child before exec. */
pid_t ts_spawn_nofile(const char *program, const char *const args[], const char *out_path,
                      unsigned long soft, unsigned long hard);

/* Sends sig, waits up to timeout_ms, then SIGKILLs. Returns the exit status as
 * from waitpid (use WIFEXITED etc.), or -1. */
int ts_stop(pid_t pid, int sig, int timeout_ms);

/* Whether pid is a child of this process that is still running (not ended, not reaped). */
bool ts_alive(pid_t pid);

/* Waits up to timeout_ms (-1: as long as it takes) for pid to end. Its status as from
 * waitpid, or -1 when it is still running at the deadline (it is left running) or
 * waitpid failed. */
int ts_wait(pid_t pid, int timeout_ms);

/* One number for a waitpid status: the code of a normal exit, 128 + the signal that
 * ended the process (as a shell says it), -1 for -1. */
int ts_exit_code(int status);

/* ts_spawn, then waits for the program to end: its exit code (ts_exit_code), or -1 when
 * it could not be started. */
int ts_run(const char *program, const char *const args[], const char *out_path);

/* A TCP port on 127.0.0.1 that was free a moment ago, never one this process
 * was already given. */
uint16_t ts_free_port(void);

/* Waits until 127.0.0.1:port accepts a connection. 0, or -1 on timeout. */
int ts_wait_port(uint16_t port, int timeout_ms);

/* A listening socket (SO_REUSEADDR, backlog) on 127.0.0.1:port, or on a port the kernel picks
 * when port is 0; the port it listens on in *bound when bound is not NULL. fd or -1. */
int ts_listen(uint16_t port, int backlog, uint16_t *bound);

/* Blocking connect to 127.0.0.1:port with SO_RCVTIMEO = timeout_ms. fd or -1. */
int ts_connect(uint16_t port, int timeout_ms);

/* Writes all n bytes. 0 or -1. */
int ts_send_all(int fd, const void *buf, size_t n);

/* Reads exactly n bytes (bounded by the socket's receive timeout).
 * Returns n, 0 if the peer closed first, or -1 on error/timeout. */
ssize_t ts_recv_exact(int fd, void *buf, size_t n);

/* Reads one frame with a 2-byte big-endian length prefix into buf (cap bytes).
 * Returns the body length, 0 on orderly close, -1 on error/timeout/overflow. */
ssize_t ts_recv_frame2(int fd, uint8_t *buf, size_t cap);

/* Non-zero if the file at path contains needle (binary-safe substring). */
int ts_file_contains(const char *path, const char *needle);

/* Polls the file at path (every 50 ms, up to timeout_ms) until it contains needle: whether it
 * did. For logs, which their daemons flush now and then. */
bool ts_wait_file_contains(const char *path, const char *needle, int timeout_ms);

/* How many lines of the file at path contain needle: 0 when there is no such file. */
int ts_file_lines_with(const char *path, const char *needle);

/* How many times needle (not empty) stands in text, without overlaps. */
int ts_count(const char *text, const char *needle);

/* The bytes of path from offset off to its end, NUL-terminated, in a fresh allocation the
 * caller frees; their count in *len when len is not NULL. NULL when the file cannot be
 * read or is shorter than off. */
char *ts_read_file(const char *path, long off, size_t *len);

/* Writes text to path (created or truncated). 0 or -1. */
int ts_write_file(const char *path, const char *text);

/* A fresh directory under $TMPDIR (or /tmp) for one test's files (static buffer), removed with
 * everything in it when the test program exits 0; kept when it fails, or with ATLAS_KEEP_TMP set.
 */
const char *ts_tmpdir(const char *tag);

#endif
