/* TLS contexts for Atlas's connections (OpenSSL 3): one at_tls per listener
 * or outbound link, built from certificate, key and CA files, TLS 1.2 and 1.3
 * only. at_stream (stream.h, limits.tls) and hsm-client put a connection
 * under TLS with at_tls_bev_new(): libevent's OpenSSL bufferevent, so a
 * handshake never blocks the loop.
 *
 * Reload: at_tls_reload() builds a new SSL_CTX from the same files; only new
 * connections use it (an SSL holds a reference to the context it was made
 * from, so established sessions keep theirs). When a file is missing or bad
 * the old context stays and the reason is returned.
 *
 * Failures: at_tls_failure() turns what OpenSSL says about a connection that
 * failed into a sentence for the log ("certificate verify failed:
 * certificate has expired") and a short label for metrics
 * ("certificate_has_expired"). No key material is ever logged. */
#ifndef ATLAS_TLS_H
#define ATLAS_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event_base;
struct at_tls;

struct at_tls_conf {
    const char *cert;        /* PEM certificate (chain); required for a server, optional
                                for a client (then it presents none) */
    const char *key;         /* PEM private key of cert */
    const char *ca;          /* PEM CA file: a server then requires and verifies a client
                                certificate; a client verifies the server's (required for
                                a client) */
    const char *server_name; /* client: name or IP address the server's certificate must
                                carry (SAN; CN without SAN); NULL/"" = not checked */
    bool server;
};

/* A context for conf (its strings are copied). NULL with the reason in err. */
struct at_tls *at_tls_new(const struct at_tls_conf *conf, char *err, size_t errcap);
void at_tls_free(struct at_tls *t);

/* Rebuilds the context from the same files, for new connections. 0, or -1 with
 * the reason in err: the previous context stays in use. */
__attribute__((warn_unused_result)) int at_tls_reload(struct at_tls *t, char *err, size_t errcap);

/* A bufferevent for one connection under t: fd is an accepted socket (server)
 * or -1 for a client that then calls bufferevent_socket_connect(); a client
 * checks the server's certificate against server_name, or the context's when
 * it is NULL. The
 * bufferevent owns the socket and the SSL (BEV_OPT_CLOSE_ON_FREE). A peer
 * closing without close_notify reads as an ordinary end of stream. NULL on
 * allocation failure (fd is then closed). */
struct bufferevent *at_tls_bev_new(struct at_tls *t, struct event_base *base, int fd,
                                   const char *server_name);

/* Whether bev is a TLS bufferevent (made by at_tls_bev_new). */
bool at_tls_bev_is_tls(struct bufferevent *bev);

/* What ended a TLS connection that failed: a sentence into why and a metric
 * label ([a-z0-9_], at most 47 characters) into label. Reads the OpenSSL
 * errors the bufferevent recorded and, when the peer's certificate did not
 * verify, the verification result. sock_err is the socket error (0 if none).
 * true when TLS itself failed (an OpenSSL error or a certificate refused),
 * false when only the socket did (then why names the socket error or EOF). */
bool at_tls_failure(struct bufferevent *bev, int sock_err, char *why, size_t whycap, char *label,
                    size_t labelcap);

/* The peer certificate's subject attribute (nid: NID_commonName,
 * NID_organizationalUnitName...) into out. 0, or -1 when there is no
 * certificate or no such attribute. */
int at_tls_peer_subject(struct bufferevent *bev, int nid, char *out, size_t cap);

/* "TLSv1.3" and the cipher of an established connection into out. */
void at_tls_session_text(struct bufferevent *bev, char *out, size_t cap);

#endif
