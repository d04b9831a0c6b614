/* /metrics (Prometheus text) and /health on libevent's evhttp. The gauges
 * are read from the live objects at request time. */
#include "switchd.h"

#include "swtls.h"

#include "db.h"
#include "hsmclient.h"
#include "json.h"
#include "log.h"
#include "parse.h"
#include "advice.h"
#include "saf.h"
#include "stip.h"
#include "tls.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <string.h>

/* evhttp owns its listener's callback argument, so the listener's error
 * callback finds the server here (one metrics listener per process). */
static struct sw_server *http_srv;

/* accept() on the metrics address failed (EMFILE...): pause it like a
 * terminal listener rather than let libevent retry in a busy loop. */
static void on_http_accept_error(struct evconnlistener *evl, void *arg)
{
    if (http_srv)
        sw_accept_failed(&http_srv->http_pause, EVUTIL_SOCKET_ERROR());
}

static void metric_header(struct evbuffer *b, const char *name, const char *help, const char *type)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge_header(struct evbuffer *b, const char *name, const char *help)
{
    metric_header(b, name, help, "gauge");
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct sw_server *srv = arg;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    sw_metrics_render(&srv->metrics, b);
    gauge_header(b, "atlas_terminal_connections", "Open terminal connections by listener.");
    for (size_t i = 0; i < srv->n_listeners; i++)
        evbuffer_add_printf(b, "atlas_terminal_connections{listener=\"%s\"} %llu\n",
                            srv->listeners[i].conf->name,
                            (unsigned long long)srv->listeners[i].connections);
    metric_header(b, "atlas_frames_refused_total",
                  "Frame headers refused by a listener's framing (length out of bounds, bad TPDU);"
                  " each closed its connection.",
                  "counter");
    for (size_t i = 0; i < srv->n_listeners; i++)
        evbuffer_add_printf(b, "atlas_frames_refused_total{listener=\"%s\"} %llu\n",
                            srv->listeners[i].conf->name,
                            (unsigned long long)srv->listeners[i].wire.refused);
    sw_tls_metrics(srv, b);
    gauge_header(b, "atlas_accept_paused",
                 "1 while a listener does not accept (accept() failed for want of descriptors).");
    for (size_t i = 0; i < srv->n_listeners; i++)
        evbuffer_add_printf(b, "atlas_accept_paused{listener=\"%s\"} %d\n",
                            srv->listeners[i].conf->name, srv->listeners[i].pause.paused);
    gauge_header(b, "atlas_issuer_link_up", "1 when the issuer link is signed on.");
    for (size_t i = 0; i < srv->n_links; i++)
        evbuffer_add_printf(b, "atlas_issuer_link_up{issuer=\"%s\",state=\"%s\"} %d\n",
                            srv->links[i].conf->name, sw_link_state_name(srv->links[i].state),
                            srv->links[i].state == SW_LINK_UP);
    gauge_header(b, "atlas_requests_in_flight", "Requests inside the switch.");
    evbuffer_add_printf(b, "atlas_requests_in_flight %llu\n", (unsigned long long)srv->inflight);
    gauge_header(b, "atlas_backpressure", "1 while terminals are not read (a queue is full).");
    evbuffer_add_printf(b, "atlas_backpressure %d\n", srv->backpressure);
    if (srv->journal) {
        struct db_journal_stats js;
        db_journal_get_stats(srv->journal, &js);
        gauge_header(b, "atlas_journal_queue", "Journal records not yet durable.");
        evbuffer_add_printf(b, "atlas_journal_queue %u\n", js.queued);
        gauge_header(b, "atlas_journal_database_up",
                     "1 when the journal writer reaches PostgreSQL.");
        evbuffer_add_printf(b, "atlas_journal_database_up %d\n", js.db_up);
        evbuffer_add_printf(b,
                            "# TYPE atlas_journal_committed_total counter\n"
                            "atlas_journal_committed_total %llu\n",
                            (unsigned long long)js.committed);
    }
    if (srv->hsm) {
        struct hsm_client_stats hs;
        hsm_client_get_stats(srv->hsm, &hs);
        gauge_header(b, "atlas_hsm_queue", "HSM commands queued or in flight.");
        evbuffer_add_printf(b, "atlas_hsm_queue %u\n", hs.queued + hs.in_flight);
        gauge_header(b, "atlas_hsm_connections", "HSM connections up.");
        evbuffer_add_printf(b, "atlas_hsm_connections %u\n", hs.connected);
    }
    gauge_header(b, "atlas_reversal_queue_pending", "Reversals not yet acknowledged by issuers.");
    evbuffer_add_printf(b, "atlas_reversal_queue_pending %llu\n",
                        (unsigned long long)sw_saf_pending(srv));
    gauge_header(b, "atlas_advice_queue_pending",
                 "Stand-in advices and advice reversals not yet acknowledged by issuers.");
    evbuffer_add_printf(b, "atlas_advice_queue_pending %llu\n",
                        (unsigned long long)sw_advice_pending(srv));
    sw_stip_metrics_render(srv, b); /* atlas_stand_in_total{issuer,result} */
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

static void on_health(struct evhttp_request *req, void *arg)
{
    struct sw_server *srv = arg;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    bool ok = srv->ready && !srv->draining;
    evbuffer_add_printf(b, "{\"status\":\"%s\",\"ready\":%s,\"draining\":%s,\"links\":{",
                        ok ? "ok" : "unavailable", srv->ready ? "true" : "false",
                        srv->draining ? "true" : "false");
    for (size_t i = 0; i < srv->n_links; i++) {
        const char *name = srv->links[i].conf->name;
        char quoted[2 + 6 * SW_NAME_LEN];
        size_t n = at_json_quote(quoted, sizeof quoted, name, strnlen(name, SW_NAME_LEN));
        evbuffer_add_printf(b, "%s%.*s:\"%s\"", i ? "," : "", (int)n, quoted,
                            sw_link_state_name(srv->links[i].state));
    }
    evbuffer_add_printf(b, "}}\n");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", b);
    evbuffer_free(b);
}

/* metrics_tls_cert: every scrape connection is an OpenSSL bufferevent (evhttp
 * gives it the accepted socket afterwards). */
static struct bufferevent *https_bev(struct event_base *base, void *arg)
{
    struct sw_server *srv = arg;
    return at_tls_bev_new(srv->metrics_tls, base, -1, NULL);
}

int sw_http_start(struct sw_server *srv)
{
    char host[64];
    const char *colon = strrchr(srv->conf.metrics_address, ':');
    uint64_t port;
    if (!colon || (size_t)(colon - srv->conf.metrics_address) >= sizeof host ||
        !at_parse_u64(colon + 1, 65535, &port))
        return -1;
    memcpy(host, srv->conf.metrics_address, (size_t)(colon - srv->conf.metrics_address));
    host[colon - srv->conf.metrics_address] = '\0';
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    srv->http = evhttp_new(srv->base);
    if (!srv->http)
        return -1;
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(srv->http, 10);
    evhttp_set_cb(srv->http, "/metrics", on_metrics, srv);
    evhttp_set_cb(srv->http, "/health", on_health, srv);
    if (srv->metrics_tls)
        evhttp_set_bevcb(srv->http, https_bev, srv);
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(srv->http, host, (uint16_t)port);
    if (!bound) {
        at_log(AT_LOG_ERROR, "listen_failed", AT_STR("listener", "metrics"),
               AT_STR("address", srv->conf.metrics_address));
        return -1;
    }
    struct evconnlistener *evl = evhttp_bound_socket_get_listener(bound);
    if (sw_accept_pause_init(&srv->http_pause, srv, evl, "metrics") != 0)
        return -1;
    http_srv = srv;
    evconnlistener_set_error_cb(evl, on_http_accept_error);
    at_log(AT_LOG_INFO, "listening", AT_STR("listener", "metrics"),
           AT_STR("address", srv->conf.metrics_address));
    return 0;
}

void sw_http_stop(struct sw_server *srv)
{
    sw_accept_pause_stop(&srv->http_pause);
    if (srv->http) {
        evhttp_free(srv->http);
        srv->http = NULL;
    }
}
