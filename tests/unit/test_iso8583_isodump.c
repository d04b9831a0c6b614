/* Round-trip test of build/bin/isodump: every golden message decodes (unmasked) to JSON that
 * encodes back to the identical bytes, with and without stream framing; malformed input exits 2
 * with one line on stderr; masked output hides the PAN. Runs the real binary ($ATLAS_BIN). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iso8583.h"
#include "iso8583_golden.h"
#include "test_hex.h"

static char dir[256];
static char bin[512];

static void write_file(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    fclose(fp);
}

static size_t read_file(const char *name, char *out, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t n = fread(out, 1, cap - 1, fp);
    fclose(fp);
    out[n] = '\0';
    return n;
}

/* Runs "isodump ARGS < in > out 2> err" in the temp dir; returns the exit status. */
static int run(const char *args, const char *in, const char *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cd '%s' && '%s' %s < %s > %s 2> err.txt", dir, bin, args, in, out);
    int st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int setup(void **state)
{
    const char *b = getenv("ATLAS_BIN");
    snprintf(bin, sizeof(bin), "%s/isodump", b ? b : "build/bin");
    if (access(bin, X_OK) != 0) {
        /* ctest runs from the source dir; fall back to a relative build path */
        char cwd[256];
        if (!getcwd(cwd, sizeof(cwd)))
            return -1;
        snprintf(bin, sizeof(bin), "%s/build/bin/isodump", cwd);
    }
    snprintf(dir, sizeof(dir), "/tmp/atlas-isodump-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_golden_round_trip(void **state)
{
    static const char *frames[] = { "none", "2b", "4a", "tpdu" };
    static char hex[16384], back[16384], json[65536];
    for (size_t i = 0; i < N_GOLDENS; i++) {
        const struct golden *g = &goldens[i];
        uint8_t wire[4096], framed[4200];
        long n = golden_bytes(g->wire, wire, sizeof(wire));
        assert_true(n > 0);
        char dialect_arg[600];
        if (g->dialect) {
            snprintf(dialect_arg, sizeof(dialect_arg), "--dialect %s", g->dialect);
        } else {
            write_file("golden.spec", g->spec, strlen(g->spec));
            snprintf(dialect_arg, sizeof(dialect_arg), "--spec golden.spec");
        }
        for (size_t k = 0; k < 4; k++) {
            enum iso_frame_kind kind;
            assert_int_equal(iso_frame_kind_parse(frames[k], &kind), 0);
            static const uint8_t tpdu[5] = { 0x60, 0x00, 0x12, 0x00, 0x34 };
            size_t hl = iso_frame_header_len(kind);
            assert_int_equal(iso_frame_header(kind, 0, (size_t)n, tpdu, framed, hl, NULL), 0);
            memcpy(framed + hl, wire, (size_t)n);
            tohex(framed, hl + (size_t)n, hex);
            strcat(hex, "\n");
            write_file("in.hex", hex, strlen(hex));
            char args[800];
            snprintf(args, sizeof(args), "decode %s --frame %s --hex --unmasked", dialect_arg,
                     frames[k]);
            if (run(args, "in.hex", "out.json") != 0) {
                read_file("err.txt", json, sizeof(json));
                fail_msg("%s (%s): decode failed: %s", g->name, frames[k], json);
            }
            read_file("out.json", json, sizeof(json));
            assert_int_equal(json[0], '{');
            snprintf(args, sizeof(args), "encode %s --frame %s --hex", dialect_arg, frames[k]);
            if (run(args, "out.json", "back.hex") != 0) {
                read_file("err.txt", back, sizeof(back));
                fail_msg("%s (%s): encode failed: %s", g->name, frames[k], back);
            }
            read_file("back.hex", back, sizeof(back));
            if (strcmp(back, hex) != 0)
                fail_msg("%s (%s): round trip differs", g->name, frames[k]);
        }
        /* raw (not hex) input and output, unframed */
        write_file("in.bin", wire, (size_t)n);
        char args[800];
        snprintf(args, sizeof(args), "decode %s --unmasked", dialect_arg);
        assert_int_equal(run(args, "in.bin", "out.json"), 0);
        snprintf(args, sizeof(args), "encode %s", dialect_arg);
        assert_int_equal(run(args, "out.json", "back.bin"), 0);
        size_t bn = read_file("back.bin", back, sizeof(back));
        assert_int_equal(bn, (size_t)n);
        assert_memory_equal(back, wire, bn);
    }
}

static void test_several_frames_and_masking(void **state)
{
    static char out[65536];
    uint8_t wire[4096];
    long n = golden_bytes(goldens[0].wire, wire, sizeof(wire));
    /* two 2-byte-length frames back to back, raw */
    uint8_t buf[8400];
    size_t len = 0;
    for (int r = 0; r < 2; r++) {
        buf[len++] = (uint8_t)(n >> 8);
        buf[len++] = (uint8_t)n;
        memcpy(buf + len, wire, (size_t)n);
        len += (size_t)n;
    }
    write_file("two.bin", buf, len);
    assert_int_equal(run("decode --dialect ascii87 --frame 2b", "two.bin", "out.json"), 0);
    read_file("out.json", out, sizeof(out));
    char *second = strchr(out, '\n');
    assert_non_null(second);
    assert_non_null(strstr(second + 1, "\"mti\":\"0200\""));
    /* masked by default: no full PAN, no PIN block, no cryptogram */
    assert_non_null(strstr(out, "476173******0010"));
    assert_null(strstr(out, "4761739001010010"));
    assert_null(strstr(out, "1122334455667788"));
    assert_null(strstr(out, "0102030405060708"));
    assert_non_null(strstr(out, "\"tlv\":{\"55\":["));
    /* human text */
    assert_int_equal(run("decode --dialect ascii87 --frame 2b --text", "two.bin", "out.txt"), 0);
    read_file("out.txt", out, sizeof(out));
    assert_non_null(strstr(out, "MTI 0200"));
    assert_null(strstr(out, "4761739001010010"));
}

/* What isodump refuses with exit 2, each with a part of the one line it says why (NULL: any). */
static const struct {
    const char *input, *args, *says;
} malformed[] = {
    { "30323030\n", "decode --dialect ascii87 --hex", "truncated" },
    { "2001\n", "decode --dialect ascii87 --frame 2b --hex", "frame too long" },
    { "0010 3032\n", "decode --dialect ascii87 --frame 2b --hex", NULL }, /* incomplete frame */
    { "{\"mti\":\"0200\",\"fields\":{\"3\":\"12\"}}", "encode --dialect ascii87 --hex", "field 3" },
    { "{\"mti\":", "encode --dialect ascii87 --hex", NULL }, /* not JSON */
};

static void test_malformed_exit_2(void **state)
{
    static char err[4096];
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        write_file("bad.in", malformed[i].input, strlen(malformed[i].input));
        if (run(malformed[i].args, "bad.in", "out.txt") != 2)
            fail_msg("%s of '%s': not exit 2", malformed[i].args, malformed[i].input);
        read_file("err.txt", err, sizeof(err));
        if (malformed[i].says && !strstr(err, malformed[i].says))
            fail_msg("'%s' lacks '%s'", err, malformed[i].says);
        assert_non_null(strchr(err, '\n'));
        assert_null(strchr(strchr(err, '\n') + 1, '\n')); /* exactly one line */
    }
    /* usage */
    assert_int_equal(run("decode", "bad.in", "out.json"), 1);
    assert_int_equal(run("--help", "bad.in", "out.txt"), 0);
    read_file("out.txt", err, sizeof(err));
    assert_non_null(strstr(err, "isodump decode"));
    assert_non_null(strstr(err, "isodump encode"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_round_trip),
        cmocka_unit_test(test_several_frames_and_masking),
        cmocka_unit_test(test_malformed_exit_2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
