/* The Debian package (packaging/, docs/deploy.md): builds the .deb with cpack from this build
 * tree (no rebuild), checks its control fields (Depends from the libraries really linked,
 * conffiles, the maintainer scripts) and its contents, unpacks it with dpkg-deb -x into a
 * scratch root, and runs the installed programs from there: the installed atlas-db migrates a
 * throwaway database from the installed migrations (found next to itself, no --dir), the
 * installed hsm-sim and issuer-sim start with the flags their units use, and the installed
 * switchd starts from the installed sample switchd.conf (ports and paths moved into the test's
 * directory) under the unit's LimitNOFILE, answers /health with its issuer link up, reopens its
 * log on SIGUSR1 (logrotate), reloads on SIGHUP and drains on SIGTERM (exit 0). hsm-sim and
 * issuer-sim reopen their logs on SIGUSR1 too. Runs as root or as a normal user: nothing is
 * installed on the machine. Needs the PG* cluster (./test.sh starts one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "db_testlib.h"
#include "sw_stack.h"
#include "testsupport.h"

#include <dirent.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef ATLAS_CPACK
#define ATLAS_CPACK "cpack"
#endif
#ifndef ATLAS_BUILD_DIR
#define ATLAS_BUILD_DIR "build"
#endif

static struct {
    char dir[512];      /* the test's scratch directory */
    char deb[1024];     /* the package cpack built */
    char root[600];     /* where dpkg-deb -x unpacked it */
    char ctl[600];      /* its control files (dpkg-deb -e) */
    pid_t hsm, iss, sw; /* the installed daemons running, for the teardown */
    char conninfo[256]; /* the throwaway database, "" when there is none */
} P;

static bool built;

/* Runs a shell command line, its output (stdout and stderr) appended to out_path. Its exit code
 * as a shell says it. */
static int sh(const char *out_path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(const char *out_path, const char *fmt, ...)
{
    char cmd[4096], line[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "(%s) >>'%s' 2>&1", cmd, out_path);
    int st = system(line);
    return st == -1 ? -1 : ts_exit_code(st);
}

/* path under the unpacked root (a static buffer of 4, round robin: several in one call). */
static const char *in_root(const char *rel)
{
    static char bufs[4][1024];
    static unsigned next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", P.root, rel);
    return b;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int group_setup(void **state)
{
    const char *dir = ts_tmpdir("package");
    if (!dir)
        return -1;
    snprintf(P.dir, sizeof P.dir, "%s", dir);
    snprintf(P.root, sizeof P.root, "%s/root", dir);
    snprintf(P.ctl, sizeof P.ctl, "%s/control", dir);
    char log[700];
    snprintf(log, sizeof log, "%s/cpack.out", dir);
    /* The package of this build tree, staged and written in the scratch directory. */
    if (sh(log, "cd '%s' && '%s' -G DEB --config CPackConfig.cmake -B '%s/out'", ATLAS_BUILD_DIR,
           ATLAS_CPACK, dir) != 0) {
        fprintf(stderr, "cpack failed, see %s\n", log);
        return -1;
    }
    char outdir[700];
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    DIR *d = opendir(outdir);
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "atlas_", 6) == 0 && n > 4 && strcmp(e->d_name + n - 4, ".deb") == 0)
            snprintf(P.deb, sizeof P.deb, "%s/%s", outdir, e->d_name);
    }
    closedir(d);
    if (!P.deb[0]) {
        fprintf(stderr, "no atlas_*.deb in %s\n", outdir);
        return -1;
    }
    if (sh(log, "dpkg-deb -x '%s' '%s' && dpkg-deb -e '%s' '%s'", P.deb, P.root, P.deb, P.ctl) !=
        0) {
        fprintf(stderr, "dpkg-deb failed, see %s\n", log);
        return -1;
    }
    built = true;
    return 0;
}

/* One control field of the package (dpkg-deb -f), into out. */
static void field(const char *name, char *out, size_t cap)
{
    char path[700];
    snprintf(path, sizeof path, "%s/field.out", P.dir);
    unlink(path);
    assert_int_equal(sh(path, "dpkg-deb -f '%s' %s", P.deb, name), 0);
    char *text = ts_read_file(path, 0, NULL);
    assert_non_null(text);
    snprintf(out, cap, "%s", text);
    free(text);
}

static void test_control_fields(void **state)
{
    assert_true(built);
    char v[2048];
    field("Package", v, sizeof v);
    assert_string_equal(v, "atlas\n");
    field("Version", v, sizeof v);
    assert_string_equal(v, ATLAS_VERSION "\n");
    field("Maintainer", v, sizeof v);
    assert_non_null(strchr(v, '@'));
    /* dpkg-shlibdeps: every runtime library the programs link, with its package. */
    field("Depends", v, sizeof v);
    printf("Depends: %s", v);
    const char *libs[] = {
        "libc6",  "libevent-core-2.1-7", "libevent-extra-2.1-7", "libssl3", "libpq5", "libjansson4",
        "adduser"
    };
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++)
        if (!strstr(v, libs[i]))
            fail_msg("Depends lacks %s: %s", libs[i], v);

    char path[700];
    snprintf(path, sizeof path, "%s/conffiles", P.ctl);
    char *conffiles = ts_read_file(path, 0, NULL);
    assert_non_null(conffiles);
    const char *conf[] = { "/etc/atlas/switchd.conf\n", "/etc/atlas/hsm-sim.env\n",
                           "/etc/atlas/issuer-sim-WALLET1.env\n", "/etc/logrotate.d/atlas\n" };
    for (size_t i = 0; i < sizeof conf / sizeof conf[0]; i++) {
        assert_non_null(strstr(conffiles, conf[i]));
        /* every conffile is in the package */
        char rel[128];
        snprintf(rel, sizeof rel, "%.*s", (int)strlen(conf[i]) - 2, conf[i] + 1);
        assert_true(exists(in_root(rel)));
    }
    free(conffiles);
    snprintf(path, sizeof path, "%s/postinst", P.ctl);
    assert_true(ts_file_contains(path, "adduser --system"));
    assert_false(ts_file_contains(path, "systemctl enable"));
    snprintf(path, sizeof path, "%s/prerm", P.ctl);
    assert_true(exists(path));
}

static void test_contents(void **state)
{
    assert_true(built);
    const char *want[] = {
        "usr/sbin/switchd",
        "usr/sbin/hsm-sim",
        "usr/sbin/issuer-sim",
        "usr/bin/atlas-db",
        "usr/bin/atlas-keys",
        "usr/bin/atlas-fx",
        "usr/bin/atlas-settle",
        "usr/bin/atlas-reconcile",
        "usr/bin/atlas-keys",
        "usr/bin/atlas-console",
        "usr/bin/acquirer-sim",
        "usr/bin/isodump",
        "usr/bin/hsmtool",
        "usr/share/atlas/migrations/0001_switch.sql",
        "usr/share/atlas/demo/demo_switch.sql",
        "usr/share/atlas/demo/demo-rates.csv",
        "usr/share/doc/atlas/copyright",
        "usr/share/doc/atlas/LICENSE",
        "usr/share/doc/atlas/deploy.md",
        "usr/share/doc/atlas/switchd.md",
        "usr/share/doc/atlas/examples/demo.conf",
        "lib/systemd/system/atlas-switchd.service",
        "lib/systemd/system/atlas-hsm-sim.service",
        "lib/systemd/system/atlas-issuer-sim@.service",
        "lib/systemd/system/atlas-partitions.service",
        "lib/systemd/system/atlas-partitions.timer",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!exists(in_root(want[i])))
            fail_msg("the package lacks /%s", want[i]);
    /* Tests, benchmarks and fuzzers are not installed. */
    const char * not [] = { "usr/bin/test_package", "usr/bin/bench-codec", "usr/bin/chaos",
                            "usr/bin/switchd", "usr/sbin/atlas-db" };
    for (size_t i = 0; i < sizeof not / sizeof not [0]; i++)
        if (exists(in_root(not [i])))
            fail_msg("the package holds /%s", not [i]);

    /* The units run the installed programs with the installed configuration. */
    const char *unit = in_root("lib/systemd/system/atlas-switchd.service");
    assert_true(
        ts_file_contains(unit, "ExecStart=/usr/sbin/switchd --config /etc/atlas/switchd.conf\n"));
    assert_true(ts_file_contains(unit, "ExecReload=/bin/kill -HUP $MAINPID\n"));
    assert_true(ts_file_contains(unit, "User=atlas\n"));
    assert_true(ts_file_contains(in_root("lib/systemd/system/atlas-issuer-sim@.service"),
                                 "EnvironmentFile=/etc/atlas/issuer-sim-%i.env\n"));
    assert_true(ts_file_contains(in_root("etc/atlas/switchd.conf"),
                                 "pan_hmac_key_file = /etc/atlas/pan_hmac.key\n"));
    assert_true(ts_file_contains(in_root("etc/logrotate.d/atlas"), "SIGUSR1"));

    /* The installed units are valid for systemd, where its analyzer is there. It checks that
     * each program a unit runs exists: copies whose /usr/sbin and /etc/atlas are those of the
     * unpacked root are verified (the instance WALLET1 of the template). */
    char out[700], units[700];
    snprintf(out, sizeof out, "%s/verify.out", P.dir);
    snprintf(units, sizeof units, "%s/units", P.dir);
    if (sh(out, "command -v systemd-analyze") == 0) {
        assert_int_equal(mkdir(units, 0755), 0);
        const char *from[] = { "atlas-switchd.service", "atlas-hsm-sim.service",
                               "atlas-issuer-sim@.service", "atlas-partitions.service",
                               "atlas-partitions.timer" };
        const char *to[] = { "atlas-switchd.service", "atlas-hsm-sim.service",
                             "atlas-issuer-sim@WALLET1.service", "atlas-partitions.service",
                             "atlas-partitions.timer" };
        for (size_t i = 0; i < 5; i++) {
            char rel[128], dst[900];
            snprintf(rel, sizeof rel, "lib/systemd/system/%s", from[i]);
            snprintf(dst, sizeof dst, "%s/%s", units, to[i]);
            assert_int_equal(sh(out,
                                "sed -e 's#/usr/sbin/#%s/usr/sbin/#g' -e "
                                "'s#/usr/bin/#%s/usr/bin/#g' -e "
                                "'s#/etc/atlas/#%s/etc/atlas/#g' '%s' >'%s'",
                                P.root, P.root, P.root, in_root(rel), dst),
                             0);
        }
        int rc = sh(out, "cd '%s' && systemd-analyze verify %s %s %s %s %s", units, to[0], to[1],
                    to[2], to[3], to[4]);
        char *text = ts_read_file(out, 0, NULL);
        printf("systemd-analyze verify: %s", text ? text : "");
        free(text);
        assert_int_equal(rc, 0);
    }
}

/* The value of "Key=" in a unit file, as a number; 0 when absent. */
static unsigned long unit_number(const char *unit, const char *key)
{
    char *text = ts_read_file(unit, 0, NULL);
    assert_non_null(text);
    unsigned long v = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s=", key);
    const char *p = strstr(text, pat);
    if (p)
        v = strtoul(p + strlen(pat), NULL, 10);
    free(text);
    return v;
}

/* A key of switchd's configuration to replace: in section ("" = before any section). */
struct conf_set {
    const char *section, *key, *value;
};

/* The installed sample configuration with the keys of set (n of them) replaced: written to path.
 * Each must be there. */
static void adapt_config(const char *src, const char *path, const struct conf_set *set, size_t n)
{
    char *text = ts_read_file(src, 0, NULL);
    assert_non_null(text);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    char section[128] = "";
    size_t replaced = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '[')
            snprintf(section, sizeof section, "%s", line);
        const struct conf_set *hit = NULL;
        for (size_t i = 0; i < n && !hit; i++) {
            size_t kl = strlen(set[i].key);
            if (strcmp(section, set[i].section) == 0 && strncmp(line, set[i].key, kl) == 0 &&
                strncmp(line + kl, " = ", 3) == 0)
                hit = &set[i];
        }
        if (hit) {
            fprintf(f, "%s = %s\n", hit->key, hit->value);
            replaced++;
        } else {
            fprintf(f, "%s\n", line);
        }
    }
    fclose(f);
    free(text);
    assert_int_equal(replaced, n);
}

/* The options a unit gives its daemon: var="..." of the installed environment file, split at
 * spaces as systemd splits $VAR, into argv (NULL-terminated, pointing into buf), with the value
 * after each option of subst (option, value pairs, NULL-terminated) replaced. Each option of
 * subst must be there. */
static void unit_options(const char *env_file, const char *var, const char *const *subst, char *buf,
                         size_t cap, const char **argv, size_t max)
{
    char *text = ts_read_file(env_file, 0, NULL);
    assert_non_null(text);
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s=\"", var);
    const char *p = strstr(text, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t len = strcspn(p, "\"");
    assert_true(len < cap);
    memcpy(buf, p, len);
    buf[len] = '\0';
    free(text);
    size_t n = 0;
    for (char *tok = strtok(buf, " "); tok && n + 1 < max; tok = strtok(NULL, " "))
        argv[n++] = tok;
    argv[n] = NULL;
    for (const char *const *s = subst; *s; s += 2) {
        bool found = false;
        for (size_t i = 0; i + 1 < n; i++)
            if (strcmp(argv[i], s[0]) == 0) {
                argv[i + 1] = s[1];
                found = true;
            }
        if (!found)
            fail_msg("%s of %s has no %s", var, env_file, s[0]);
    }
}

/* Renames log to log.1 (what logrotate does), sends sig to pid and waits for the daemon to write
 * into a new log: needle when it is not NULL, else anything (after poke, a connection to port). */
static void rotate_and_check(const char *log, pid_t pid, int sig, const char *needle, uint16_t poke)
{
    char old[1100];
    snprintf(old, sizeof old, "%s.1", log);
    assert_int_equal(rename(log, old), 0);
    assert_int_equal(kill(pid, sig), 0);
    if (poke) {
        usleep(200 * 1000); /* the signal is handled before the connection */
        int fd = ts_connect(poke, 2000);
        assert_true(fd >= 0);
        usleep(100 * 1000);
        close(fd);
    }
    assert_true(ts_wait_file_contains(log, needle ? needle : "\"event\"", 5000));
    assert_true(ts_alive(pid));
}

static void test_installed_switch_runs(void **state)
{
    assert_true(built);
    if (!dbt_env_names_cluster("test_package"))
        fail_msg("no PostgreSQL cluster");
    char sbin[700], bin[700], out[700];
    snprintf(sbin, sizeof sbin, "%s/usr/sbin", P.root);
    snprintf(bin, sizeof bin, "%s/usr/bin", P.root);
    snprintf(out, sizeof out, "%s/programs.out", P.dir);

    /* The sample configuration as shipped is valid. */
    setenv("ATLAS_BIN", sbin, 1);
    const char *check[] = { "--check-config", "--config", in_root("etc/atlas/switchd.conf"), NULL };
    assert_int_equal(ts_run("switchd", check, out), 0);

    /* A throwaway database, migrated by the installed atlas-db from the installed migrations
     * (found next to the program: no --dir, no ATLAS_MIGRATIONS). */
    char dbname[128];
    const char *conninfo = P.conninfo;
    snprintf(dbname, sizeof dbname, "atlas_t_package_%d", (int)getpid());
    PGconn *admin = dbt_connect("");
    assert_non_null(admin);
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
    assert_int_equal(dbt_exec(admin, sql), 0);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    assert_int_equal(dbt_exec(admin, sql), 0);
    PQfinish(admin);
    snprintf(P.conninfo, sizeof P.conninfo, "dbname=%s", dbname);
    unsetenv("ATLAS_MIGRATIONS");
    setenv("ATLAS_BIN", bin, 1);
    char migrate_out[700];
    snprintf(migrate_out, sizeof migrate_out, "%s/migrate.out", P.dir);
    const char *migrate[] = { "--db", conninfo, "migrate", NULL };
    assert_int_equal(ts_run("atlas-db", migrate, migrate_out), 0);
    char want[800];
    snprintf(want, sizeof want, "from %s/usr/share/atlas/migrations)", P.root);
    assert_true(ts_file_contains(migrate_out, want));
    /* The demo reference data, from the installed copy. */
    PGconn *c = dbt_connect(conninfo);
    assert_non_null(c);
    char *seed = ts_read_file(in_root("usr/share/atlas/demo/demo_switch.sql"), 0, NULL);
    assert_non_null(seed);
    assert_int_equal(dbt_exec(c, seed), 0);
    free(seed);

    /* hsm-sim and issuer-sim with the options their units give them (HSM_SIM_OPTS and
     * ISSUER_SIM_OPTS of the installed environment files), addresses and logs moved here. */
    uint16_t hsm_port = ts_free_port(), iss_port = ts_free_port(), acq_port = ts_free_port(),
             pos_port = ts_free_port(), metrics_port = ts_free_port();
    char hsm_addr[32], iss_addr[32], acq_addr[32], pos_addr[32], metrics_addr[32];
    snprintf(hsm_addr, sizeof hsm_addr, "127.0.0.1:%u", hsm_port);
    snprintf(iss_addr, sizeof iss_addr, "127.0.0.1:%u", iss_port);
    snprintf(acq_addr, sizeof acq_addr, "127.0.0.1:%u", acq_port);
    snprintf(pos_addr, sizeof pos_addr, "127.0.0.1:%u", pos_port);
    snprintf(metrics_addr, sizeof metrics_addr, "127.0.0.1:%u", metrics_port);
    char hsm_log[700], iss_log[700], sw_log[700], spool[700], conf[700], hkey[700], skey[700];
    snprintf(hsm_log, sizeof hsm_log, "%s/hsm-sim.log", P.dir);
    snprintf(iss_log, sizeof iss_log, "%s/issuer-WALLET1.log", P.dir);
    snprintf(sw_log, sizeof sw_log, "%s/switchd.log", P.dir);
    snprintf(spool, sizeof spool, "%s/spool", P.dir);
    snprintf(conf, sizeof conf, "%s/switchd.conf", P.dir);
    snprintf(hkey, sizeof hkey, "%s/pan_hmac.key", P.dir);
    snprintf(skey, sizeof skey, "%s/pan_seal.key", P.dir);
    assert_int_equal(mkdir(spool, 0750), 0);
    assert_int_equal(
        ts_write_file(hkey, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n"),
        0);
    assert_int_equal(
        ts_write_file(skey, "A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF\n"),
        0);

    setenv("ATLAS_BIN", sbin, 1);
    char hsm_buf[512], iss_buf[512];
    const char *hsm_args[16], *iss_args[16];
    const char *hsm_subst[] = { "--listen", hsm_addr, "--log", hsm_log, NULL };
    unit_options(in_root("etc/atlas/hsm-sim.env"), "HSM_SIM_OPTS", hsm_subst, hsm_buf,
                 sizeof hsm_buf, hsm_args, 16);
    pid_t hsm = P.hsm = ts_spawn("hsm-sim", hsm_args, out);
    assert_true(hsm > 0);
    assert_int_equal(ts_wait_port(hsm_port, 5000), 0);
    const char *iss_subst[] = { "--listen", iss_addr, "--hsm", hsm_addr, "--db",
                                conninfo,   "--log",  iss_log, NULL };
    unit_options(in_root("etc/atlas/issuer-sim-WALLET1.env"), "ISSUER_SIM_OPTS", iss_subst, iss_buf,
                 sizeof iss_buf, iss_args, 16);
    pid_t iss = P.iss = ts_spawn("issuer-sim", iss_args, out);
    assert_true(iss > 0);
    assert_int_equal(ts_wait_port(iss_port, 10000), 0);

    /* switchd from the installed sample configuration, its addresses and paths moved here, under
     * the descriptor limit of its unit. A user whose hard limit is below the unit's cannot raise it
     * (systemd, as root, can): then the listeners take fewer connections, so that switchd fits the
     * limit there is. */
    unsigned long nofile =
        unit_number(in_root("lib/systemd/system/atlas-switchd.service"), "LimitNOFILE");
    assert_true(nofile >= 1024);
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    bool full = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= nofile;
    struct conf_set set[] = {
        { "", "log_file", sw_log },
        { "", "spool_dir", spool },
        { "", "metrics_address", metrics_addr },
        { "", "db", conninfo },
        { "", "pan_hmac_key_file", hkey },
        { "", "pan_seal_key_file", skey },
        { "[hsm]", "address", hsm_addr },
        { "[listener acq]", "address", acq_addr },
        { "[listener pos]", "address", pos_addr },
        { "[issuer WALLET1]", "address", iss_addr },
        { "[listener acq]", "max_connections", "100" },
        { "[listener pos]", "max_connections", "100" },
    };
    size_t n_set = sizeof set / sizeof set[0] - 2; /* the listeners' own max_connections */
    if (!full) {
        printf("hard RLIMIT_NOFILE %lu is below the unit's %lu: listeners of 100 connections\n",
               (unsigned long)rl.rlim_max, nofile);
        nofile = (unsigned long)rl.rlim_max;
        n_set += 2;
    }
    adapt_config(in_root("etc/atlas/switchd.conf"), conf, set, n_set);

    const char *sw_args[] = { "--config", conf, NULL };
    pid_t sw = P.sw = ts_spawn_nofile("switchd", sw_args, out, nofile, nofile);
    assert_true(sw > 0);
    assert_int_equal(ts_wait_port(metrics_port, 15000), 0);

    /* What the sample configuration needs fits the unit's LimitNOFILE (switchd refuses to
     * start otherwise: it has). */
    assert_true(ts_wait_file_contains(sw_log, "\"event\":\"descriptors\"", 5000));
    char *text = ts_read_file(sw_log, 0, NULL);
    assert_non_null(text);
    const char *needed = strstr(text, "\"needed\":");
    assert_non_null(needed);
    unsigned long n = strtoul(needed + 9, NULL, 10);
    printf("switchd needs %lu descriptors, it runs with %lu\n", n, nofile);
    assert_true(n <= nofile);
    if (full)
        assert_true(n > 12000); /* the sample's own listeners */
    free(text);

    /* Ready, its issuer link (the installed issuer-sim) up. */
    static char body[8192];
    bool up = false;
    for (int i = 0; i < 100 && !up; i++) {
        assert_true(stack_http_get(metrics_port, "/health", body, sizeof body) > 0);
        up = strstr(body, "\"WALLET1\":\"up\"") != NULL;
        if (!up)
            usleep(100 * 1000);
    }
    printf("/health: %s\n", strstr(body, "\r\n\r\n") ? strstr(body, "\r\n\r\n") + 4 : body);
    assert_non_null(strstr(body, "200 OK"));
    assert_non_null(strstr(body, "\"status\":\"ok\""));
    assert_true(up);

    /* logrotate's postrotate (SIGUSR1) for each daemon, then systemctl reload (SIGHUP). */
    rotate_and_check(sw_log, sw, SIGUSR1, "\"event\":\"log_reopened\"", 0);
    rotate_and_check(hsm_log, hsm, SIGUSR1, "\"event\":\"conn_open\"", hsm_port);
    rotate_and_check(iss_log, iss, SIGUSR1, "\"event\":\"link_accepted\"", iss_port);
    assert_int_equal(kill(sw, SIGHUP), 0);
    assert_true(ts_wait_file_contains(sw_log, "\"event\":\"reload\"", 5000));
    assert_true(stack_http_get(metrics_port, "/health", body, sizeof body) > 0);
    assert_non_null(strstr(body, "200 OK"));

    /* systemctl stop (SIGTERM): each drains and exits 0, well within its TimeoutStopSec. */
    P.sw = 0;
    assert_int_equal(ts_exit_code(ts_stop(sw, SIGTERM, 15000)), 0);
    assert_true(ts_file_contains(sw_log, "\"event\":\"stopped\""));
    P.iss = 0;
    assert_int_equal(ts_exit_code(ts_stop(iss, SIGTERM, 10000)), 0);
    P.hsm = 0;
    assert_int_equal(ts_exit_code(ts_stop(hsm, SIGTERM, 10000)), 0);
    PQfinish(c);
}

/* Whatever a failed test left running is stopped, the database dropped. */
static int group_teardown(void **state)
{
    pid_t *pids[] = { &P.sw, &P.iss, &P.hsm };
    for (size_t i = 0; i < 3; i++)
        if (*pids[i] > 0) {
            ts_stop(*pids[i], SIGKILL, 5000);
            *pids[i] = 0;
        }
    if (P.conninfo[0])
        dbt_drop(P.conninfo);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_fields),
        cmocka_unit_test(test_contents),
        cmocka_unit_test(test_installed_switch_runs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
