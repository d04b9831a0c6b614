/* bench-codec: packs and unpacks a typical 0200 (25 fields incl. a ~200-byte DE 55) and a 0110
 * in each built-in dialect and prints one line per case:
 *   case=<name> op=<pack|unpack> ns_per_op=<n> ops_per_s=<n>
 * Usage: bench-codec [seconds-per-case, default 0.2] [dialect]. Time is this thread's CPU time, so
 * a shared machine descheduling us does not inflate the figures. A benchmark, not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iso8583.h"

static volatile size_t sink;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* EMV data of a contact chip purchase, ~200 bytes. */
static size_t build_de55(uint8_t *out, size_t cap)
{
    static const uint8_t zeros[40] = { 0 };
    static const uint8_t aid[7] = { 0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10 };
    struct iso_tlv t[] = {
        { .tag = 0x9F26, .value = zeros, .len = 8 },
        { .tag = 0x9F27, .value = zeros, .len = 1 },
        { .tag = 0x9F10, .value = zeros, .len = 32 },
        { .tag = 0x9F37, .value = zeros, .len = 4 },
        { .tag = 0x9F36, .value = zeros, .len = 2 },
        { .tag = 0x95, .value = zeros, .len = 5 },
        { .tag = 0x9A, .value = zeros, .len = 3 },
        { .tag = 0x9C, .value = zeros, .len = 1 },
        { .tag = 0x9F02, .value = zeros, .len = 6 },
        { .tag = 0x5F2A, .value = zeros, .len = 2 },
        { .tag = 0x82, .value = zeros, .len = 2 },
        { .tag = 0x9F1A, .value = zeros, .len = 2 },
        { .tag = 0x9F03, .value = zeros, .len = 6 },
        { .tag = 0x9F33, .value = zeros, .len = 3 },
        { .tag = 0x9F34, .value = zeros, .len = 3 },
        { .tag = 0x9F35, .value = zeros, .len = 1 },
        { .tag = 0x84, .value = aid, .len = 7 },
        { .tag = 0x9F09, .value = zeros, .len = 2 },
        { .tag = 0x9F1E, .value = zeros, .len = 8 },
        { .tag = 0x9F41, .value = zeros, .len = 4 },
        { .tag = 0x5F34, .value = zeros, .len = 1 },
        { .tag = 0x9F6E, .value = zeros, .len = 20 },
        { .tag = 0xDF8116, .value = zeros, .len = 12 },
    };
    size_t n = 0;
    if (iso_tlv_build(t, sizeof(t) / sizeof(t[0]), out, cap, &n, NULL) != 0)
        abort();
    return n;
}

static void set(struct iso_msg *m, int f, const char *s)
{
    if (iso_set(m, f, s, strlen(s)) != 0)
        abort();
}

/* The MTI and the fields the 0110 echoes from its 0200 (PAN to local date). */
static void set_head(struct iso_msg *m, const char *mti)
{
    if (iso_set_mti(m, mti) != 0)
        abort();
    set(m, 2, "4761739001010010");
    set(m, 3, "000000");
    set(m, 4, "000000001000");
    set(m, 7, "1126151230");
    set(m, 11, "000123");
    set(m, 12, "151230");
    set(m, 13, "1126");
}

static void build_0200(struct iso_msg *m, const uint8_t *de55, size_t n55)
{
    static const uint8_t pinblock[8] = { 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0 };
    static const uint8_t mac[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    set_head(m, "0200");
    set(m, 14, "2512");
    set(m, 18, "5411");
    set(m, 19, "404");
    set(m, 22, "051");
    set(m, 23, "001");
    set(m, 25, "00");
    set(m, 26, "12");
    set(m, 32, "123456");
    set(m, 35, "4761739001010010=2512201123456789");
    set(m, 37, "123456789012");
    set(m, 41, "TERM0001");
    set(m, 42, "MERCHANT0000001");
    set(m, 43, "ATLAS TEST SHOP       NAIROBI         KE");
    set(m, 48, "PRIVATE DATA 0123456789");
    set(m, 49, "404");
    if (iso_set(m, 52, pinblock, 8) || iso_set(m, 55, de55, n55) || iso_set(m, 64, mac, 8))
        abort();
}

static void build_0110(struct iso_msg *m)
{
    static const uint8_t de55[] = { 0x91, 0x0A, 1, 2, 3, 4, 5, 6, 7, 8, 0x30, 0x30 };
    set_head(m, "0110");
    set(m, 37, "123456789012");
    set(m, 38, "A1B2C3");
    set(m, 39, "00");
    set(m, 41, "TERM0001");
    set(m, 42, "MERCHANT0000001");
    set(m, 49, "404");
    if (iso_set(m, 55, de55, sizeof(de55)) != 0)
        abort();
}

static void report(const char *name, const char *op, double secs_per_op)
{
    double ns = secs_per_op * 1e9;
    printf("case=%s op=%s ns_per_op=%.0f ops_per_s=%.0f\n", name, op, ns, 1e9 / ns);
}

static void bench(const char *name, const struct iso_dialect *d, const struct iso_msg *src,
                  double budget)
{
    static uint8_t frame[4096], arena[8192];
    static struct iso_msg m;
    size_t n = 0;
    struct iso_err err;
    if (iso_pack(d, src, frame, sizeof(frame), &n, &err) != 0) {
        fprintf(stderr, "bench-codec: %s: pack failed: %s\n", name, err.reason);
        exit(1);
    }
    /* Best of 5 windows: the machine is shared, the minimum is the codec's own cost. */
    double best_pack = 1e30, best_unpack = 1e30;
    iso_msg_init(&m, arena, sizeof(arena));
    for (int round = 0; round < 5; round++) {
        unsigned long iters = 0;
        double t0 = now_s(), t;
        do {
            for (int i = 0; i < 2000; i++) {
                size_t on;
                if (iso_pack(d, src, frame, sizeof(frame), &on, &err) != 0)
                    abort();
                sink += on;
            }
            iters += 2000;
            t = now_s() - t0;
        } while (t < budget / 5);
        if (t / (double)iters < best_pack)
            best_pack = t / (double)iters;
        iters = 0;
        t0 = now_s();
        do {
            for (int i = 0; i < 2000; i++) {
                if (iso_unpack(d, frame, n, &m, &err) != 0)
                    abort();
                sink += m.f[2].len;
            }
            iters += 2000;
            t = now_s() - t0;
        } while (t < budget / 5);
        if (t / (double)iters < best_unpack)
            best_unpack = t / (double)iters;
    }
    report(name, "pack", best_pack);
    report(name, "unpack", best_unpack);
}

int main(int argc, char **argv)
{
    double budget = argc > 1 ? atof(argv[1]) : 0.2;
    if (budget <= 0 || budget > 10)
        budget = 0.2;
    uint8_t de55[512];
    size_t n55 = build_de55(de55, sizeof(de55));
    static struct iso_msg m200, m110;
    iso_msg_init(&m200, NULL, 0);
    iso_msg_init(&m110, NULL, 0);
    build_0200(&m200, de55, n55);
    build_0110(&m110);
    fprintf(stderr, "bench-codec: 0200 has 25 fields, DE 55 of %zu bytes\n", n55);
    const char *only = argc > 2 ? argv[2] : NULL;
    for (const char *const *dn = iso_dialect_names; *dn; dn++) {
        if (only && strcmp(only, *dn) != 0)
            continue;
        const struct iso_dialect *d = iso_dialect_find(*dn);
        char name[64];
        snprintf(name, sizeof(name), "%s_0200", *dn);
        bench(name, d, &m200, budget);
        snprintf(name, sizeof(name), "%s_0110", *dn);
        bench(name, d, &m110, budget);
    }
    return 0;
}
