/* TLS contexts and OpenSSL bufferevents (see tls.h for the contract). */
#include "tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct at_tls {
    SSL_CTX *ctx; /* for new connections; SSLs made earlier hold their own reference */
    char cert[256], key[256], ca[256], server_name[128];
    bool server;
};

/* The first error OpenSSL queued, as a sentence; the queue is emptied. */
static void ssl_err_text(char *out, size_t cap, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(out, cap, "%s", fallback);
        return;
    }
    const char *r = ERR_reason_error_string(e);
    if (r)
        snprintf(out, cap, "%s", r);
    else
        ERR_error_string_n(e, out, cap);
    ERR_clear_error();
}

/* Builds a context from t's files. NULL with the reason in err. */
static SSL_CTX *build_ctx(const struct at_tls *t, char *err, size_t errcap)
{
    char why[160];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(t->server ? TLS_server_method() : TLS_client_method());
    if (!ctx) {
        ssl_err_text(why, sizeof why, "out of memory");
        snprintf(err, errcap, "SSL_CTX_new: %s", why);
        return NULL;
    }
    /* TLS 1.2 and 1.3 only: anything older is refused at the handshake. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        snprintf(err, errcap, "cannot restrict the protocol to TLS 1.2-1.3");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (t->cert[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
            ssl_err_text(why, sizeof why, "unreadable");
            snprintf(err, errcap, "certificate %s: %s", t->cert, why);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, t->key[0] ? t->key : t->cert, SSL_FILETYPE_PEM) != 1) {
            ssl_err_text(why, sizeof why, "unreadable");
            snprintf(err, errcap, "key %s: %s", t->key[0] ? t->key : t->cert, why);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errcap, "key %s does not match certificate %s", t->key, t->cert);
            goto fail;
        }
    } else if (t->server) {
        snprintf(err, errcap, "a TLS server needs a certificate and a key");
        goto fail;
    }
    if (t->ca[0]) {
        if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
            ssl_err_text(why, sizeof why, "unreadable");
            snprintf(err, errcap, "CA file %s: %s", t->ca, why);
            goto fail;
        }
        if (t->server) {
            /* Mutual authentication: no valid client certificate, no session. */
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
    } else if (!t->server) {
        snprintf(err, errcap, "a TLS client needs a CA file to verify the server");
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

static int copy_path(char *dst, size_t cap, const char *src, const char *what, char *err,
                     size_t errcap)
{
    if (!src)
        src = "";
    if ((size_t)snprintf(dst, cap, "%s", src) >= cap) {
        snprintf(err, errcap, "%s path longer than %zu bytes", what, cap - 1);
        return -1;
    }
    return 0;
}

struct at_tls *at_tls_new(const struct at_tls_conf *conf, char *err, size_t errcap)
{
    struct at_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    t->server = conf->server;
    if (copy_path(t->cert, sizeof t->cert, conf->cert, "certificate", err, errcap) != 0 ||
        copy_path(t->key, sizeof t->key, conf->key, "key", err, errcap) != 0 ||
        copy_path(t->ca, sizeof t->ca, conf->ca, "CA", err, errcap) != 0 ||
        copy_path(t->server_name, sizeof t->server_name, conf->server_name, "server name", err,
                  errcap) != 0 ||
        !(t->ctx = build_ctx(t, err, errcap))) {
        free(t);
        return NULL;
    }
    return t;
}

void at_tls_free(struct at_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

int at_tls_reload(struct at_tls *t, char *err, size_t errcap)
{
    SSL_CTX *ctx = build_ctx(t, err, errcap);
    if (!ctx)
        return -1;
    SSL_CTX_free(t->ctx); /* established sessions hold their own reference */
    t->ctx = ctx;
    return 0;
}

/* A client checks the server's name: an IP address against the certificate's
 * IP SANs, a name against its DNS SANs (or CN). Also sent as SNI. */
static int set_peer_name(SSL *ssl, const char *name)
{
    if (!name[0])
        return 0;
    unsigned char buf[16];
    if (inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1)
        return -1;
    return 0;
}

struct bufferevent *at_tls_bev_new(struct at_tls *t, struct event_base *base, int fd,
                                   const char *server_name)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl ||
        (!t->server && set_peer_name(ssl, server_name ? server_name : t->server_name) != 0)) {
        SSL_free(ssl);
        if (fd >= 0)
            close(fd);
        ERR_clear_error();
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, t->server ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    /* Terminals and simulators often just close: that is an end, not an attack. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

bool at_tls_bev_is_tls(struct bufferevent *bev)
{
    return bev && bufferevent_openssl_get_ssl(bev) != NULL;
}

static void make_label(const char *text, char *label, size_t cap)
{
    size_t n = 0;
    bool sep = false;
    if (cap == 0)
        return;
    for (const char *p = text; *p && n + 1 < cap && n < 47; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c)) {
            if (sep && n > 0 && n + 2 < cap)
                label[n++] = '_';
            sep = false;
            label[n++] = (char)tolower(c);
        } else {
            sep = true;
        }
    }
    label[n] = '\0';
    if (n == 0)
        snprintf(label, cap, "unknown");
}

bool at_tls_failure(struct bufferevent *bev, int sock_err, char *why, size_t whycap, char *label,
                    size_t labelcap)
{
    char first[160] = "";
    unsigned long e, got = 0;
    /* The bufferevent keeps the errors of its SSL; the first is the cause. */
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (!got) {
            got = e;
            const char *r = ERR_reason_error_string(e);
            if (r)
                snprintf(first, sizeof first, "%s", r);
            else
                ERR_error_string_n(e, first, sizeof first);
        }
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    /* A refused certificate: the verification result says why (the peer's
     * certificate itself is not kept when it did not verify). */
    if (vr != X509_V_OK) {
        const char *vs = X509_verify_cert_error_string(vr);
        snprintf(why, whycap, "%s: %s", first[0] ? first : "certificate verify failed", vs);
        make_label(vs, label, labelcap);
        return true;
    }
    if (got) {
        snprintf(why, whycap, "%s", first);
        make_label(first, label, labelcap);
        return true;
    }
    if (sock_err) {
        snprintf(why, whycap, "socket error: %s", evutil_socket_error_to_string(sock_err));
        make_label("socket error", label, labelcap);
        return false;
    }
    snprintf(why, whycap, "peer closed during the handshake");
    snprintf(label, labelcap, "eof");
    return false;
}

int at_tls_peer_subject(struct bufferevent *bev, int nid, char *out, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    X509 *cert = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    X509_NAME *name = cert ? X509_get_subject_name(cert) : NULL;
    if (!name || cap == 0)
        return -1;
    int n = X509_NAME_get_text_by_NID(name, nid, out, (int)cap);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return 0;
}

void at_tls_session_text(struct bufferevent *bev, char *out, size_t cap)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!ssl) {
        snprintf(out, cap, "plain");
        return;
    }
    snprintf(out, cap, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}
