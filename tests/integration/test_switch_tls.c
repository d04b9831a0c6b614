/* TLS on every connection (docs/switchd.md "TLS"), with real processes and real OpenSSL:
 * the whole stack runs over TLS — switchd's mutual-auth terminal listener "tls" (subject OU
 * bound to acquirer 100001), switchd → issuer-sim (mutual), switchd and issuer-sim → hsm-sim —
 * with certificates scripts/lab-certs.sh makes with the openssl command in the test's own
 * directory. A purchase and a load run over TLS; refused: no client certificate, one of another
 * CA, an expired one, TLS 1.1, another acquirer's; garbage on the TLS port; SIGHUP reloads the
 * certificate for new sessions while an established one keeps working, and a bad file keeps the
 * previous one. Failures are logged with OpenSSL's reason and counted in /metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_testlib.h"
#include "iso8583.h"
#include "sw_stack.h"
#include "testsupport.h"

static struct stack S;
static char D[256];       /* the certificates (scripts/lab-certs.sh DIR --test) */
static uint16_t tls_port; /* switchd's [listener tls] */
static char conf[4096];
static const char *iss_args[9]; /* issuer-sim's TLS arguments (test_issuer_name_checked) */
static char f_ca[320], f_hsm_crt[320], f_hsm_key[320], f_iss_crt[320], f_iss_key[320];
static char f_sw_crt[320], f_sw_key[320], f_live_crt[320], f_live_key[320];

static void path(char *out, const char *name)
{
    snprintf(out, 320, "%s/%s", D, name);
}

static int copy_file(const char *from, const char *to)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    char cmd[1024];
    const char *dir = ts_tmpdir("tls"); /* removed when the tests pass */
    if (!dir)
        return -1;
    snprintf(D, sizeof D, "%s", dir);
    snprintf(cmd, sizeof cmd, "'%s/scripts/lab-certs.sh' '%s' --test", dbt_src(), D);
    if (system(cmd) != 0) {
        fprintf(stderr, "lab-certs.sh failed\n");
        return -1;
    }
    path(f_ca, "ca.crt");
    path(f_hsm_crt, "hsm.crt");
    path(f_hsm_key, "hsm.key");
    path(f_iss_crt, "issuer.crt");
    path(f_iss_key, "issuer.key");
    path(f_sw_crt, "switchd.crt");
    path(f_sw_key, "switchd.key");
    path(f_live_crt, "live.crt"); /* the listener's files, replaced by the reload test */
    path(f_live_key, "live.key");
    if (copy_file(f_sw_crt, f_live_crt) != 0 || copy_file(f_sw_key, f_live_key) != 0)
        return -1;
    tls_port = ts_free_port();
    /* Keys before any section go to the last one of the stack's file: [issuer WALLET1]. */
    snprintf(conf, sizeof conf,
             "tls_ca = %s\ntls_cert = %s\ntls_key = %s\n"
             "[hsm]\ntls_ca = %s\n"
             "[listener tls]\naddress = 127.0.0.1:%u\ndialect = ascii87\nframing = 2b\n"
             "max_connections = 100\nmax_inflight = 16\n"
             "tls_cert = %s\ntls_key = %s\ntls_ca = %s\ntls_acquirer_from = ou\n"
             "tls_handshake_timeout_ms = 1500\n",
             f_ca, f_sw_crt, f_sw_key, f_ca, tls_port, f_live_crt, f_live_key, f_ca);
    static const char *hsm_args[5];
    const char *h[] = { "--tls-cert", f_hsm_crt, "--tls-key", f_hsm_key, NULL };
    const char *i[] = { "--tls-cert", f_iss_crt,  "--tls-key", f_iss_key, "--tls-ca",
                        f_ca,         "--hsm-ca", f_ca,        NULL };
    memcpy(hsm_args, h, sizeof h);
    memcpy(iss_args, i, sizeof i);
    struct stack_opts o = {
        .issuer = true, .extra_conf = conf, .hsm_args = hsm_args, .issuer_args = iss_args
    };
    return stack_setup(state, &S, &o);
}

/* ---- a blocking OpenSSL client, as a terminal host would be ---- */

struct tcli {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char why[256]; /* why it failed */
};

static void tcli_close(struct tcli *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
}

static void set_rcvtimeo(int fd, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void err_text(struct tcli *c, const char *what)
{
    unsigned long e = ERR_get_error();
    snprintf(c->why, sizeof c->why, "%s: %s", what,
             e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "?" : "no error");
    ERR_clear_error();
}

/* Connects to port with the client certificate name (lab-certs.sh's name.crt/.key; NULL =
 * none), at most TLS version maxver (0 = the default range). 0 when the session is up and
 * the server has not closed it within half a second (TLS 1.3 refuses a client certificate
 * after the client's handshake is done); -1 with c->why otherwise. */
static int tcli_open(struct tcli *c, uint16_t port, const char *name, int maxver)
{
    char crt[320], key[320];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx || SSL_CTX_load_verify_locations(c->ctx, f_ca, NULL) != 1)
        return err_text(c, "ctx"), -1;
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (name) {
        snprintf(crt, sizeof crt, "%s/%s.crt", D, name);
        snprintf(key, sizeof key, "%s/%s.key", D, name);
        if (SSL_CTX_use_certificate_chain_file(c->ctx, crt) != 1 ||
            SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1)
            return err_text(c, "client certificate"), -1;
    }
    if (maxver) {
        /* An old client: TLS 1.0..maxver, at security level 0 so OpenSSL 3 offers it. */
        SSL_CTX_set_security_level(c->ctx, 0);
        SSL_CTX_set_cipher_list(c->ctx, "DEFAULT@SECLEVEL=0");
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(c->ctx, maxver);
    }
    c->fd = ts_connect(port, 5000);
    if (c->fd < 0)
        return snprintf(c->why, sizeof c->why, "connect failed"), -1;
    c->ssl = SSL_new(c->ctx);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1");
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1)
        return err_text(c, "handshake"), -1;
    set_rcvtimeo(c->fd, 500);
    char b;
    int n = SSL_read(c->ssl, &b, 1);
    int e = SSL_get_error(c->ssl, n);
    set_rcvtimeo(c->fd, 10000);
    if (n <= 0 && e == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        return 0; /* nothing came: the server keeps the session */
    }
    if (n > 0)
        return snprintf(c->why, sizeof c->why, "unexpected byte"), -1;
    err_text(c, e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? "closed" : "refused");
    return -1;
}

/* The common name of the certificate the server presented. */
static void peer_cn(struct tcli *c, char *out, size_t cap)
{
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    out[0] = '\0';
    if (x)
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)cap);
}

static int ssl_read_all(SSL *ssl, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        int r = SSL_read(ssl, buf + got, (int)(n - got));
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* x on terminal t over the session: its answer in r. 0, or -1. */
static int tcli_txn(struct tcli *c, struct sim_term *t, const struct sim_txn *x, struct sim_resp *r)
{
    uint8_t frame[SIM_MSG_MAX + 16], hdr[2], body[SIM_MSG_MAX];
    static uint8_t arena[ISO_ARENA_FOR(SIM_MSG_MAX)];
    size_t len;
    char err[256];
    struct iso_msg m;
    if (sim_term_build_frame(t, x, frame, sizeof frame, &len, NULL, err, sizeof err) != 0 ||
        SSL_write(c->ssl, frame, (int)len) != (int)len || ssl_read_all(c->ssl, hdr, 2) != 0)
        return -1;
    size_t blen = ((size_t)hdr[0] << 8) | hdr[1];
    if (blen > sizeof body || ssl_read_all(c->ssl, body, blen) != 0)
        return -1;
    iso_msg_init(&m, arena, sizeof arena);
    return sim_term_check_response(t, body, blen, &m, r, err, sizeof err);
}

static void purchase(struct tcli *c, uint64_t amount, const char *want_rc)
{
    struct sim_txn x;
    struct sim_resp r;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", amount);
    assert_int_equal(tcli_txn(c, stack_term(&S, "TERM0001"), &x, &r), 0);
    assert_string_equal(r.rc, want_rc);
    assert_int_equal(r.mac, SIM_MAC_OK);
}

static bool log_has(const char *needle)
{
    return ts_wait_file_contains(S.switch_log, needle, 5000);
}

/* ---- the tests ---- */

/* A terminal host with the lab CA's certificate for acquirer 100001 buys over TLS 1.3; the
 * purchase itself crosses switchd → hsm-sim and switchd → issuer-sim → hsm-sim over TLS. */
static void test_purchase_over_tls(void **state)
{
    struct tcli c;
    char cn[64];
    assert_int_equal(tcli_open(&c, tls_port, "terminal", 0), 0);
    assert_int_equal(SSL_version(c.ssl), TLS1_3_VERSION);
    peer_cn(&c, cn, sizeof cn);
    assert_string_equal(cn, "switchd");
    long long before = stack_balance(&S, "4890010000000012");
    purchase(&c, 1250, "00");
    assert_true(stack_wait_balance(&S, "4890010000000012", before - 1250, 5000));
    tcli_close(&c);
    char m[65536];
    assert_true(stack_http_get(S.metrics_port, "/metrics", m, sizeof m) > 0);
    assert_non_null(strstr(m, "atlas_tls_handshakes_total{listener=\"tls\"} "));
}

/* The links behind: each end speaks TLS only, as configured. */
static void test_issuer_and_hsm_links_are_tls(void **state)
{
    struct tcli c;
    assert_true(log_has("\"event\":\"tls_config\",\"endpoint\":\"issuer\""));
    assert_true(log_has("\"event\":\"tls_config\",\"endpoint\":\"hsm\""));
    assert_true(ts_file_contains(S.issuer_log, "\"tls\":\"mutual\""));
    /* hsm-sim serves TLS to anyone its CA's certificate convinces (no client certificate). */
    assert_int_equal(tcli_open(&c, S.hsm_port, NULL, 0), 0);
    tcli_close(&c);
    /* issuer-sim asks for a client certificate: without one, refused and logged. */
    assert_int_not_equal(tcli_open(&c, S.issuer_port, NULL, 0), 0);
    tcli_close(&c);
    assert_true(ts_wait_file_contains(S.issuer_log, "peer did not return a certificate", 5000));
    /* A plain payShield echo (NC) to hsm-sim gets no answer: it is not TLS. */
    int fd = ts_connect(S.hsm_port, 2000);
    assert_true(fd >= 0);
    static const uint8_t nc[] = { 0, 6, '0', '0', '0', '1', 'N', 'C' };
    assert_int_equal(ts_send_all(fd, nc, sizeof nc), 0);
    uint8_t b[64];
    assert_true(recv(fd, b, sizeof b, 0) <= 0 || b[0] == 0x15); /* closed, or a TLS alert */
    close(fd);
    assert_true(ts_wait_file_contains(S.hsm_log, "wrong version number", 5000));
}

static void refused(const char *cert, int maxver, const char *log_reason)
{
    struct tcli c;
    assert_int_not_equal(tcli_open(&c, tls_port, cert, maxver), 0);
    tcli_close(&c);
    assert_true(log_has(log_reason));
}

static void test_no_client_certificate_refused(void **state)
{
    refused(NULL, 0, "tls handshake failed: peer did not return a certificate");
}

static void test_other_ca_refused(void **state)
{
    refused("other-terminal", 0,
            "tls handshake failed: certificate verify failed: unable to get local issuer "
            "certificate");
}

static void test_expired_certificate_refused(void **state)
{
    refused("expired", 0,
            "tls handshake failed: certificate verify failed: certificate has "
            "expired");
}

static void test_tls11_refused(void **state)
{
    refused("terminal", TLS1_1_VERSION, "tls handshake failed: unsupported protocol");
}

/* The listener's acquirer is 100001 and it binds it to the certificate's OU: a host of
 * acquirer 200002 completes the handshake (its certificate is good) and is closed. */
static void test_subject_binding(void **state)
{
    refused("acq2", 0, "\"event\":\"tls_acquirer_mismatch\"");
    assert_true(log_has("\"names\":\"200002\",\"acquirer\":\"100001\""));
}

/* Bytes that are not TLS close that connection (logged); the others go on. */
static void test_garbage_on_tls_port(void **state)
{
    struct tcli ok;
    assert_int_equal(tcli_open(&ok, tls_port, "terminal", 0), 0);
    int fd = ts_connect(tls_port, 3000);
    assert_true(fd >= 0);
    static const char junk[] = "\x00\x20GARBAGE-NOT-TLS-0123456789abcdef\r\n";
    assert_int_equal(ts_send_all(fd, junk, sizeof junk - 1), 0);
    uint8_t b[64];
    ssize_t n;
    while ((n = recv(fd, b, sizeof b, 0)) > 0) /* an alert, perhaps, then the close */
        ;
    assert_true(n == 0 || (n == -1 && errno == ECONNRESET));
    close(fd);
    assert_true(log_has("tls handshake failed: wrong version number"));
    purchase(&ok, 10, "00");
    tcli_close(&ok);
}

/* A connection that never begins its handshake holds no slot: closed after
 * tls_handshake_timeout_ms (1.5 s here), logged and counted; the loop served others meanwhile. */
static void test_handshake_timeout(void **state)
{
    int fd = ts_connect(tls_port, 5000);
    assert_true(fd >= 0);
    struct tcli ok;
    assert_int_equal(tcli_open(&ok, tls_port, "terminal", 0), 0); /* not blocked by the first */
    purchase(&ok, 9, "00");
    tcli_close(&ok);
    uint8_t b[8];
    assert_int_equal(recv(fd, b, sizeof b, 0), 0); /* closed by switchd (SO_RCVTIMEO 5 s) */
    close(fd);
    assert_true(log_has("\"reason\":\"tls handshake timeout\""));
}

/* SIGHUP: new sessions get the renewed certificate, the established one keeps working; a bad
 * file afterwards keeps the renewed one (tls_reload_failed). */
static void test_sighup_reload(void **state)
{
    struct tcli a, b, c;
    char cn[64], f[320];
    assert_int_equal(tcli_open(&a, tls_port, "terminal", 0), 0);
    peer_cn(&a, cn, sizeof cn);
    assert_string_equal(cn, "switchd");
    path(f, "switchd2.crt");
    assert_int_equal(copy_file(f, f_live_crt), 0);
    path(f, "switchd2.key");
    assert_int_equal(copy_file(f, f_live_key), 0);
    assert_int_equal(kill(S.sw, SIGHUP), 0);
    assert_true(log_has("\"event\":\"tls_reloaded\",\"endpoint\":\"listener\",\"name\":\"tls\""));
    assert_int_equal(tcli_open(&b, tls_port, "terminal", 0), 0);
    peer_cn(&b, cn, sizeof cn);
    assert_string_equal(cn, "switchd-renewed");
    purchase(&a, 11, "00"); /* the session made before the reload */
    purchase(&b, 12, "00");

    FILE *bad = fopen(f_live_crt, "w");
    assert_non_null(bad);
    fputs("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n", bad);
    fclose(bad);
    assert_int_equal(kill(S.sw, SIGHUP), 0);
    assert_true(log_has("\"event\":\"tls_reload_failed\",\"endpoint\":\"listener\""));
    assert_int_equal(tcli_open(&c, tls_port, "terminal", 0), 0);
    peer_cn(&c, cn, sizeof cn);
    assert_string_equal(cn, "switchd-renewed");
    purchase(&c, 13, "00");
    purchase(&a, 14, "00");
    tcli_close(&a);
    tcli_close(&b);
    tcli_close(&c);
}

/* hsm-sim and issuer-sim read their TLS files again on SIGHUP, keeping their connections:
 * switchd's HSM pool and issuer link carry the next purchase without reconnecting. */
static void test_simulators_reload(void **state)
{
    assert_int_equal(kill(S.hsm, SIGHUP), 0);
    assert_int_equal(kill(S.issuer, SIGHUP), 0);
    assert_true(ts_wait_file_contains(S.hsm_log, "\"event\":\"tls_reloaded\"", 5000));
    assert_true(ts_wait_file_contains(S.issuer_log,
                                      "\"event\":\"tls_reloaded\",\"endpoint\":\"links\"", 5000));
    int ups = ts_file_lines_with(S.switch_log, "\"event\":\"hsm_conn_up\"");
    struct sim_txn x;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 18);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, NULL, NULL), "00");
    assert_int_equal(ts_file_lines_with(S.switch_log, "\"event\":\"hsm_conn_up\""), ups);
}

/* acquirer-sim send over TLS (DUKPT terminal TERM0002 on the same listener). */
static void test_acquirer_sim_send_over_tls(void **state)
{
    char host[32], out[400], sd[320], crt[320], key[320];
    snprintf(host, sizeof host, "127.0.0.1:%u", tls_port);
    snprintf(out, sizeof out, "%s/send.out", S.dir);
    snprintf(sd, sizeof sd, "%s/send-state", D);
    path(crt, "terminal.crt");
    path(key, "terminal.key");
    const char *args[] = { "--tls",    "--ca",       f_ca,          "--cert", crt,
                           "--key",    key,          "--state-dir", sd,       "--json",
                           "send",     "--terminal", "TERM0002",    "--pan",  "4890010000000012",
                           "--amount", "0.15",       "--host",      host,     NULL };
    assert_int_equal(ts_run("acquirer-sim", args, out), 0);
    assert_true(ts_file_contains(out, "\"rc\":\"00\""));
    /* Without its client certificate the same terminal is refused: a transport error (2). */
    const char *no_cert[] = {
        "--tls",    "--ca",       f_ca,       "--state-dir", sd,
        "send",     "--terminal", "TERM0002", "--pan",       "4890010000000012",
        "--amount", "0.15",       "--host",   host,          NULL
    };
    assert_int_equal(ts_run("acquirer-sim", no_cert, out), 2);
}

/* A short load over TLS on load terminals of its own (not TERM0001's STAN counter): every
 * request answered, none lost. */
static void test_load_over_tls(void **state)
{
    assert_int_equal(stack_seed_load_terminals(&S, 4), 0);
    char crt[320], key[320];
    path(crt, "terminal.crt");
    path(key, "terminal.key");
    const char *extra[] = { "--tls", "--ca", f_ca, "--cert", crt, "--key", key, NULL };
    struct stack_load_opts lo = {
        .tag = "tls-load",
        .rate = 100,
        .seconds = 3,
        .connections = 4,
        .port = tls_port,
        .load_terminals = true,
        .extra_args = extra,
    };
    struct stack_load l;
    assert_int_equal(stack_load_run(&S, &lo, &l), 0);
    assert_int_equal(stack_settle(&S, 10000), 0);
}

/* metrics_tls_cert: a second switchd on the same database (its own instance id, no issuer)
 * serves /health over HTTPS only. */
static void test_metrics_over_https(void **state)
{
    char cf[320], lg[320], sp[320], text[2048];
    uint16_t mport = ts_free_port(), aport = ts_free_port();
    snprintf(cf, sizeof cf, "%s/https.conf", D);
    snprintf(lg, sizeof lg, "%s/https.log", D);
    snprintf(sp, sizeof sp, "%s/https-spool", D);
    FILE *f = fopen(cf, "w");
    assert_non_null(f);
    fprintf(f,
            "log_file = %s\nmetrics_address = 127.0.0.1:%u\nmetrics_tls_cert = %s\n"
            "metrics_tls_key = %s\nspool_dir = %s\ndb = \"%s\"\ninstance_id = switchd-https\n"
            "[hsm]\naddress = 127.0.0.1:%u\ntls_ca = %s\n"
            "[listener acq]\naddress = 127.0.0.1:%u\nmax_connections = 100\n",
            lg, mport, f_sw_crt, f_sw_key, sp, S.switch_conninfo, S.hsm_port, f_ca, aport);
    fclose(f);
    const char *args[] = { "--config", cf, NULL };
    pid_t pid = ts_spawn("switchd", args, lg);
    assert_true(pid > 0);
    assert_true(ts_wait_file_contains(lg, "\"event\":\"ready\"", 15000));
    struct tcli c;
    assert_int_equal(tcli_open(&c, mport, NULL, 0), 0);
    static const char get[] = "GET /health HTTP/1.0\r\n\r\n";
    assert_int_equal(SSL_write(c.ssl, get, (int)sizeof get - 1), (int)sizeof get - 1);
    int n = 0, r;
    while (n < (int)sizeof text - 1 &&
           (r = SSL_read(c.ssl, text + n, (int)sizeof text - 1 - n)) > 0)
        n += r;
    text[n] = '\0';
    tcli_close(&c);
    assert_non_null(strstr(text, "HTTP/1.0 200") ? strstr(text, "HTTP/1.0 200")
                                                 : strstr(text, "HTTP/1.1 200"));
    /* Plain HTTP on the same port gets no answer. */
    char plain[512];
    int got = stack_http_get(mport, "/health", plain, sizeof plain);
    assert_true(got <= 0 || !strstr(plain, " 200 "));
    int st = ts_stop(pid, SIGTERM, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* switchd checks the issuer's certificate against the address it dials: an issuer-sim whose
 * certificate (of the right CA) names another host is refused, logged and counted, and the link
 * stays down (91) until the right certificate is back. */
static void test_issuer_name_checked(void **state)
{
    char crt[320], key[320];
    pid_t *pid = stack_issuer_pid(&S, "WALLET1");
    assert_non_null(pid);
    assert_true(WIFEXITED(ts_stop(*pid, SIGTERM, 10000)));
    *pid = 0;
    path(crt, "wrongname.crt");
    path(key, "wrongname.key");
    iss_args[1] = crt;
    iss_args[3] = key;
    assert_int_equal(stack_start_issuer_id(&S, "WALLET1"), 0);
    assert_true(
        log_has("\"event\":\"issuer_tls_failed\",\"issuer\":\"WALLET1\",\"reason\":"
                "\"tls handshake failed: certificate verify failed: IP address mismatch\""));
    struct sim_txn x;
    struct sim_resp r;
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 16);
    assert_string_equal(stack_rc(&S, "TERM0001", &x, &r, NULL), "91");
    char m[65536];
    assert_true(stack_http_get(S.metrics_port, "/metrics", m, sizeof m) > 0);
    assert_non_null(strstr(m, "atlas_tls_handshake_failures_total{listener=\"issuer:WALLET1\","
                              "reason=\"ip_address_mismatch\"} "));
    /* The right certificate again: the link comes back by itself. */
    assert_true(WIFEXITED(ts_stop(*pid, SIGTERM, 10000)));
    *pid = 0;
    iss_args[1] = f_iss_crt;
    iss_args[3] = f_iss_key;
    assert_int_equal(stack_start_issuer_id(&S, "WALLET1"), 0);
    stack_card_txn(&x, SIM_T_PURCHASE, "4890010000000012", 17);
    assert_string_equal(stack_rc_linked(&S, "TERM0001", &x, &r, 10000), "00");
}

/* Every refusal above is counted by its reason. */
static void test_failures_in_metrics(void **state)
{
    char m[65536];
    assert_true(stack_http_get(S.metrics_port, "/metrics", m, sizeof m) > 0);
    static const char *const reasons[] = {
        "peer_did_not_return_a_certificate",
        "unable_to_get_local_issuer_certificate",
        "certificate_has_expired",
        "unsupported_protocol",
        "acquirer_mismatch",
        "wrong_version_number",
        "timeout",
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        char want[160];
        snprintf(want, sizeof want,
                 "atlas_tls_handshake_failures_total{listener=\"tls\",reason=\"%s\"} ", reasons[i]);
        if (!strstr(m, want))
            fprintf(stderr, "missing: %s\n", want);
        assert_non_null(strstr(m, want));
    }
    /* No PAN in any log, TLS or not: masked only. */
    assert_false(ts_file_contains(S.switch_log, "4890010000000012"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purchase_over_tls),
        cmocka_unit_test(test_issuer_and_hsm_links_are_tls),
        cmocka_unit_test(test_no_client_certificate_refused),
        cmocka_unit_test(test_other_ca_refused),
        cmocka_unit_test(test_expired_certificate_refused),
        cmocka_unit_test(test_tls11_refused),
        cmocka_unit_test(test_subject_binding),
        cmocka_unit_test(test_garbage_on_tls_port),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_sighup_reload),
        cmocka_unit_test(test_simulators_reload),
        cmocka_unit_test(test_acquirer_sim_send_over_tls),
        cmocka_unit_test(test_load_over_tls),
        cmocka_unit_test(test_metrics_over_https),
        cmocka_unit_test(test_issuer_name_checked),
        cmocka_unit_test(test_failures_in_metrics),
    };
    return cmocka_run_group_tests_name("switch_tls", tests, setup, stack_teardown);
}
