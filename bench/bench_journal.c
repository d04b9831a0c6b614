/* bench-journal: N records through the journal writer against the database named by PG*, either
 * as fast as the writer accepts them (--rate 0, closed loop with the writer's backpressure) or at
 * a fixed arrival rate (open loop: latency counted from each record's scheduled time). Last line:
 *   rows_per_s=<n> p50_ms=<n> p99_ms=<n> mean_batch=<n>
 */
#include <event2/event.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "db.h"
#include "log.h"
#include "parse.h"

#ifndef ATLAS_SOURCE_DIR
#define ATLAS_SOURCE_DIR "."
#endif

struct bench {
    struct event_base *base;
    struct db_journal *j;
    struct event *tick;
    uint64_t rows, rate, sent, done, failed, spooled;
    uint64_t t0;
    uint32_t *lat_us; /* per record: callback time - scheduled (or submit) time */
    uint64_t *start_ns;
    unsigned run;
    bool blocked;
};

static struct bench B;

static void on_done(void *arg, int status)
{
    uint64_t i = (uint64_t)(uintptr_t)arg;
    uint64_t now = at_mono_ns();
    B.lat_us[i] = (uint32_t)((now - B.start_ns[i]) / 1000);
    B.done++;
    if (status == DB_SPOOLED)
        B.spooled++;
    else if (status != DB_OK)
        B.failed++;
    if (B.done == B.rows)
        event_base_loopbreak(B.base);
}

static void make_record(struct db_auth_record *r, uint64_t i, uint64_t now_us)
{
    db_auth_record_init(r);
    /* Today's month and day (UTC): the rows land in today's partition, as a switch's do (a fixed
     * day would land in the DEFAULT partition, which `atlas-db partitions` makes refuse rows). */
    time_t t = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(r->transmission_time, sizeof r->transmission_time, "%02u%02u%06u",
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, B.run % 1000000);
    db_request_date(r->transmission_time, now_us, r->request_date);
    snprintf(r->acquirer_id, sizeof r->acquirer_id, "B%u", B.run);
    snprintf(r->terminal_id, sizeof r->terminal_id, "T%07llu",
             (unsigned long long)(i / 1000000 % 10000000));
    snprintf(r->stan, sizeof r->stan, "%06llu", (unsigned long long)(i % 1000000));
    memcpy(r->mti, "0200", 5);
    snprintf(r->rrn, sizeof r->rrn, "%012llu", (unsigned long long)(i % 1000000000000ull));
    memcpy(r->issuer_id, "WALLET1", 8);
    memcpy(r->processing_code, "000000", 7);
    r->amount_minor = (int64_t)(i % 100000);
    r->currency = 504;
    memcpy(r->response_code, "00", 3);
    memcpy(r->auth_code, "123456", 7);
    memcpy(r->pan_masked, "476173******0119", 17);
    r->has_pan_hmac = true;
    for (int k = 0; k < 32; k++)
        r->pan_hmac[k] = (uint8_t)(i >> (k % 8));
    r->outcome = DB_OUTCOME_APPROVED;
    r->created_us = now_us;
    r->lat_total_us = 1200;
    r->lat_mac_us = 40;
    r->lat_pin_us = 60;
    r->lat_issuer_us = 800;
}

/* Submits what is due: everything the writer accepts (closed loop) or the records whose
 * scheduled time has come (open loop). */
static void pump(void)
{
    struct db_auth_record r;
    uint64_t now = at_mono_ns();
    uint64_t wall = at_wall_us();
    uint64_t due = B.rows;
    if (B.rate) {
        due = (now - B.t0) / 1000 * B.rate / 1000000 + 1;
        if (due > B.rows)
            due = B.rows;
    }
    while (B.sent < due) {
        make_record(&r, B.sent, wall);
        /* Open loop: latency counts from the scheduled time, so a stalled writer shows up. */
        B.start_ns[B.sent] = B.rate ? B.t0 + B.sent * 1000000000ull / B.rate : now;
        int rc = db_journal_submit(B.j, &r, on_done, (void *)(uintptr_t)B.sent);
        if (rc == DB_E_FULL) {
            B.blocked = true;
            return;
        }
        if (rc != 0) {
            fprintf(stderr, "bench-journal: submit failed: %s\n", db_strerror(rc));
            exit(1);
        }
        B.sent++;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    pump();
}

/* Closed loop: the writer's drain signal is what makes room, so submit again right then. */
static void on_drain(void *arg)
{
    B.blocked = false;
    if (!B.rate)
        pump();
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint64_t conns = 4, batch = 256, delay = 0;
    const char *conninfo = "";
    B.rows = 200000;
    static const struct option opts[] = {
        { "rows", required_argument, NULL, 'n' },
        { "rate", required_argument, NULL, 'r' },
        { "conns", required_argument, NULL, 'c' },
        { "batch", required_argument, NULL, 'b' },
        { "delay-us", required_argument, NULL, 'd' },
        { "db", required_argument, NULL, 'D' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'n':
            ok = at_parse_u64(optarg, 100000000, &B.rows) && B.rows > 0;
            break;
        case 'r':
            ok = at_parse_u64(optarg, 10000000, &B.rate);
            break;
        case 'c':
            ok = at_parse_u64(optarg, 64, &conns) && conns > 0;
            break;
        case 'b':
            ok = at_parse_u64(optarg, 2000, &batch) && batch > 0;
            break;
        case 'd':
            ok = at_parse_u64(optarg, 1000000, &delay);
            break;
        case 'D':
            conninfo = optarg;
            break;
        default:
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "usage: bench-journal [--rows N] [--rate R/s, 0 = max] [--conns C]"
                            " [--batch N] [--delay-us T] [--db CONNINFO]\n");
            return 2;
        }
    }
    if (at_log_open("-", "bench-journal") != 0)
        return 1;
    at_log_set_level(AT_LOG_WARN);
    struct db_error err = { 0 };
    const char *dir =
        getenv("ATLAS_MIGRATIONS") ? getenv("ATLAS_MIGRATIONS") : ATLAS_SOURCE_DIR "/db/migrations";
    if (db_migrate_at(conninfo, dir, NULL, NULL, &err) != 0) {
        fprintf(stderr, "bench-journal: database: %s\n", err.message);
        return 1;
    }

    B.run = (unsigned)(at_wall_us() / 1000000 % 100000000);
    B.lat_us = calloc(B.rows, sizeof *B.lat_us);
    B.start_ns = calloc(B.rows, sizeof *B.start_ns);
    B.base = event_base_new();
    char spool[256];
    snprintf(spool, sizeof spool, "/tmp/bench-journal-%d.spool", (int)getpid());
    struct db_journal_opts o = {
        .conninfo = conninfo,
        .spool_path = spool,
        .connections = (unsigned)conns,
        .batch_max = (unsigned)batch,
        .batch_delay_us = (uint32_t)delay,
        .queue_max = (unsigned)(conns * batch * 4),
        .on_drain = on_drain,
    };
    if (!B.lat_us || !B.start_ns || !B.base || db_journal_new(B.base, &o, &B.j) != 0) {
        fprintf(stderr, "bench-journal: cannot start the writer\n");
        return 1;
    }
    /* Wait for the connections before the clock starts. */
    struct db_journal_stats st;
    uint64_t wait_until = at_mono_ns() + 10000000000ull;
    do {
        struct timeval tv = { 0, 10000 };
        event_base_loopexit(B.base, &tv);
        event_base_dispatch(B.base);
        db_journal_get_stats(B.j, &st);
    } while (st.connected < conns && at_mono_ns() < wait_until);

    /* Open loop: a 200 µs tick submits what is due. Closed loop: no tick, on_drain refills. */
    B.tick = event_new(B.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = { 0, 200 };
    if (B.rate)
        event_add(B.tick, &tv);
    B.t0 = at_mono_ns();
    pump();
    event_base_dispatch(B.base);
    uint64_t elapsed = at_mono_ns() - B.t0;
    db_journal_get_stats(B.j, &st);
    event_free(B.tick);
    db_journal_free(B.j);
    event_base_free(B.base);

    qsort(B.lat_us, B.rows, sizeof *B.lat_us, cmp_u32);
    double p50 = B.lat_us[B.rows / 2] / 1000.0;
    double p99 = B.lat_us[B.rows * 99 / 100] / 1000.0;
    double rps = (double)B.rows / ((double)elapsed / 1e9);
    double mean_batch = st.batches ? (double)st.committed / (double)st.batches : 0;
    printf("rows=%llu conns=%llu batch_max=%llu delay_us=%llu rate=%llu committed=%llu"
           " spooled=%llu failed=%llu elapsed_s=%.3f\n",
           (unsigned long long)B.rows, (unsigned long long)conns, (unsigned long long)batch,
           (unsigned long long)delay, (unsigned long long)B.rate, (unsigned long long)st.committed,
           (unsigned long long)B.spooled, (unsigned long long)B.failed, (double)elapsed / 1e9);
    printf("rows_per_s=%.0f p50_ms=%.2f p99_ms=%.2f mean_batch=%.1f\n", rps, p50, p99, mean_batch);
    free(B.lat_us);
    free(B.start_ns);
    return B.failed ? 1 : 0;
}
