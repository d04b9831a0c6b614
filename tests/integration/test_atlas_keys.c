/* Integration test of `atlas-keys import`: a TR-31 key block in a file, wrapped under a ZMK
 * of switch.keys (or one given under the LMK on the command line), goes through the real
 * hsm-sim (A6 with an R block) into switch.keys of a real PostgreSQL under the LMK, with the
 * KCV of the key that was wrapped. Refusals: a block whose usage does not fit --type (04), a
 * tampered block (01), an unknown KBPK, a KBPK that is not a ZMK, an existing key id without
 * --replace. Version B (TDES ZMK) and D (AES ZMK). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "db_testlib.h"
#include "hsm.h"
#include "testsupport.h"

struct ctx {
    char ci[512], hsm[64], dir[512];
    pid_t pid;
    PGconn *c;
    struct hsm *h; /* libhsm with the same Thales test LMK as the daemon */
    char zmk[64], kcv_zmk[7];
};
static struct ctx g;

static void kcv6(struct hsm_key *k, char out[7])
{
    uint8_t kcv[8];
    hsm_key_kcv(k, kcv);
    snprintf(out, 7, "%02X%02X%02X", kcv[0], kcv[1], kcv[2]);
}

static int setup(void **state)
{
    (void)state;
    if (!dbt_env_names_cluster("test_atlas_keys"))
        return -1;
    const char *ci = dbt_create("keys");
    if (!ci)
        return -1;
    snprintf(g.ci, sizeof g.ci, "%s", ci);
    g.c = dbt_connect(g.ci);
    snprintf(g.dir, sizeof g.dir, "%s", ts_tmpdir("atlas_keys"));
    uint16_t port = ts_free_port();
    snprintf(g.hsm, sizeof g.hsm, "127.0.0.1:%u", port);
    const char *args[] = { "--listen", g.hsm, NULL };
    g.pid = ts_spawn("hsm-sim", args, NULL);
    if (!g.c || g.pid <= 0 || ts_wait_port(port, 10000) != 0 || hsm_new(&g.h, 64) != HSM_OK)
        return -1;
    /* the ZMK of switch.keys */
    uint8_t kcv[8];
    if (hsm_key_generate(g.h, HSM_KT_ZMK, HSM_SCHEME_U, g.zmk, sizeof g.zmk, kcv) != HSM_OK)
        return -1;
    snprintf(g.kcv_zmk, sizeof g.kcv_zmk, "%02X%02X%02X", kcv[0], kcv[1], kcv[2]);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv) VALUES "
             "('zmk.bank1', 'ZMK', 'TDES-2KEY', '%s', '%s'), "
             "('zpk.other', 'ZPK', 'TDES-2KEY', '%s', '%s')",
             g.zmk, g.kcv_zmk, g.zmk, g.kcv_zmk);
    return dbt_exec(g.c, sql);
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(g.c);
    hsm_free(g.h);
    int st = ts_stop(g.pid, SIGTERM, 10000);
    dbt_drop(g.ci);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* A file holding a TR-31 block of a fresh key of type t under the ZMK text zmk (mode 0 = the
 * type's, exportability 0 = E); its path in path, the key's KCV in kcv. */
static void block_file(const char *zmk, enum hsm_keytype t, const char *name, char *path,
                       size_t cap, char kcv[7], char *blk_out)
{
    uint8_t clear[16];
    assert_int_equal(hsm_random(clear, sizeof clear), HSM_OK);
    hsm_parity_fix(clear, sizeof clear);
    struct hsm_key *z = NULL, *k = NULL;
    assert_int_equal(hsm_key_load(g.h, HSM_KT_ZMK, zmk, strlen(zmk), &z), HSM_OK);
    assert_int_equal(hsm_key_from_clear(t, clear, sizeof clear, &k), HSM_OK);
    char blk[400];
    assert_int_equal(hsm_tr31_export(z, k, 0, NULL, 0, blk, sizeof blk), HSM_OK);
    kcv6(k, kcv);
    hsm_key_release(k);
    hsm_key_release(z);
    snprintf(path, cap, "%s/%s.tr31", g.dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# a key block from the issuer (test)\n\n  %s  \n", blk);
    fclose(f);
    if (blk_out)
        strcpy(blk_out, blk);
}

/* Runs atlas-keys with the test's database and HSM: its exit code; output in g.dir/out. */
static int run_keys(const char *const extra[])
{
    const char *args[24] = { "--db", g.ci, "--hsm", g.hsm };
    size_t n = 4;
    for (size_t i = 0; extra[i] && n < 23; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    char out[600];
    snprintf(out, sizeof out, "%s/out", g.dir);
    unlink(out);
    return ts_run("atlas-keys", args, out);
}

static bool out_has(const char *needle)
{
    char out[600];
    snprintf(out, sizeof out, "%s/out", g.dir);
    return ts_file_contains(out, needle) != 0;
}

static void test_import_zpk(void **state)
{
    (void)state;
    char path[600], kcv[7], sql[300];
    block_file(g.zmk, HSM_KT_ZPK, "zpk", path, sizeof path, kcv, NULL);
    const char *a[] = { "import", path,     "--id",      "zpk.bank1", "--type",
                        "ZPK",    "--kbpk", "zmk.bank1", NULL };
    assert_int_equal(run_keys(a), 0);
    assert_true(out_has(kcv));
    assert_true(out_has("usage=P0"));
    /* the row: type, scheme, KCV, and the key under the LMK has that KCV */
    PGresult *r = PQexec(g.c, "SELECT key_type, scheme, kcv, key_under_lmk, status FROM "
                              "switch.keys WHERE key_id = 'zpk.bank1'");
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), "ZPK");
    assert_string_equal(PQgetvalue(r, 0, 1), "TDES-2KEY");
    assert_string_equal(PQgetvalue(r, 0, 2), kcv);
    assert_string_equal(PQgetvalue(r, 0, 4), "active");
    const char *text = PQgetvalue(r, 0, 3);
    assert_int_equal(text[0], 'U');
    struct hsm_key *k = NULL;
    assert_int_equal(hsm_key_load(g.h, HSM_KT_ZPK, text, strlen(text), &k), HSM_OK);
    char got[7];
    kcv6(k, got);
    assert_string_equal(got, kcv);
    hsm_key_release(k);
    PQclear(r);
    /* the same id again: refused without --replace, replaced with it */
    assert_int_equal(run_keys(a), 1);
    assert_true(out_has("--replace"));
    block_file(g.zmk, HSM_KT_ZPK, "zpk2", path, sizeof path, kcv, NULL);
    const char *b[] = { "import", path,     "--id",      "zpk.bank1", "--type",
                        "ZPK",    "--kbpk", "zmk.bank1", "--replace", NULL };
    assert_int_equal(run_keys(b), 0);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.keys WHERE key_id = 'zpk.bank1' AND "
             "kcv = '%s'",
             kcv);
    assert_int_equal(dbt_scalar(g.c, sql), 1);
}

static void test_import_refused(void **state)
{
    (void)state;
    char path[600], kcv[7], blk[400];
    block_file(g.zmk, HSM_KT_ZPK, "pin", path, sizeof path, kcv, blk);
    /* a P0 block cannot become a MAC key */
    const char *a[] = { "import", path,     "--id",      "zak.bank1", "--type",
                        "ZAK",    "--kbpk", "zmk.bank1", NULL };
    assert_int_equal(run_keys(a), 1);
    assert_true(out_has("error 04"));
    assert_int_equal(dbt_scalar(g.c, "SELECT count(*) FROM switch.keys WHERE key_id = "
                                     "'zak.bank1'"),
                     0);
    /* a tampered block */
    blk[25] = blk[25] == '0' ? '1' : '0';
    snprintf(path, sizeof path, "%s/bad.tr31", g.dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", blk);
    fclose(f);
    const char *b[] = { "import", path,     "--id",      "zpk.bad", "--type",
                        "ZPK",    "--kbpk", "zmk.bank1", NULL };
    assert_int_equal(run_keys(b), 1);
    assert_true(out_has("error 01"));
    /* KBPK unknown, KBPK not a ZMK, no file, not a block, usage errors */
    block_file(g.zmk, HSM_KT_ZPK, "ok", path, sizeof path, kcv, NULL);
    const char *c[] = { "import", path, "--id", "zpk.x", "--type", "ZPK", "--kbpk", "nope", NULL };
    assert_int_equal(run_keys(c), 1);
    assert_true(out_has("no active key nope"));
    const char *d[] = { "import", path,     "--id",      "zpk.x", "--type",
                        "ZPK",    "--kbpk", "zpk.other", NULL };
    assert_int_equal(run_keys(d), 1);
    assert_true(out_has("not a ZMK"));
    const char *e[] = { "import", "/nonexistent.tr31", "--id", "zpk.x", "--type", "ZPK",
                        "--kbpk", "zmk.bank1",         NULL };
    assert_int_equal(run_keys(e), 1);
    snprintf(path, sizeof path, "%s/junk.tr31", g.dir);
    f = fopen(path, "w");
    fprintf(f, "hello world\n");
    fclose(f);
    const char *h[] = { "import", path,     "--id",      "zpk.x", "--type",
                        "ZPK",    "--kbpk", "zmk.bank1", NULL };
    assert_int_equal(run_keys(h), 1);
    assert_true(out_has("valid TR-31"));
    const char *u1[] = { "import", path, "--type", "ZPK", "--kbpk", "zmk.bank1", NULL };
    assert_int_equal(run_keys(u1), 2);
    const char *u2[] = { "import", path, "--id", "x", "--type", "QQQ", "--kbpk", "z", NULL };
    assert_int_equal(run_keys(u2), 2);
    const char *u3[] = { "frobnicate", NULL };
    assert_int_equal(run_keys(u3), 2);
    assert_int_equal(dbt_scalar(g.c, "SELECT count(*) FROM switch.keys WHERE key_id = 'zpk.x'"), 0);
}

/* Version D: an AES ZMK given under the LMK on the command line. */
static void test_import_version_d(void **state)
{
    (void)state;
    char azmk[64], path[600], kcv[7];
    uint8_t k8[8];
    assert_int_equal(hsm_key_generate(g.h, HSM_KT_ZMK, HSM_SCHEME_A, azmk, sizeof azmk, k8),
                     HSM_OK);
    block_file(azmk, HSM_KT_TAK, "tak", path, sizeof path, kcv, NULL);
    const char *a[] = {
        "import", path, "--id", "tak.t1", "--type", "TAK", "--kbpk-lmk", azmk, NULL
    };
    assert_int_equal(run_keys(a), 0);
    assert_true(out_has("usage=M3"));
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM switch.keys WHERE key_id = 'tak.t1' AND "
             "key_type = 'TAK' AND kcv = '%s'",
             kcv);
    assert_int_equal(dbt_scalar(g.c, sql), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_zpk),
        cmocka_unit_test(test_import_refused),
        cmocka_unit_test(test_import_version_d),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
