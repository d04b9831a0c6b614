/* Reference data: issuers, BIN routes and terminals with their keys (under
 * the LMK) loaded from schema switch by one asynchronous job, then the
 * conversion rates (switch.fx_rates) by a second one, built into a fresh
 * snapshot and swapped in whole. Transactions copy the few rows they use, so
 * the old snapshot can be freed at once. */
#include "switchd.h"

#include "clock.h"
#include "db.h"
#include "fmt.h"
#include "fx.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_terminal(const void *a, const void *b)
{
    const struct sw_terminal *x = a, *y = b;
    int c = strcmp(x->acquirer, y->acquirer);
    return c ? c : memcmp(x->tid, y->tid, 8);
}

const struct sw_terminal *sw_ref_terminal(const struct sw_refdata *ref, const char *acquirer,
                                          const uint8_t tid[8])
{
    struct sw_terminal key;
    memset(&key, 0, sizeof key);
    at_strlcpy(key.acquirer, acquirer, sizeof key.acquirer);
    memcpy(key.tid, tid, 8);
    return bsearch(&key, ref->terminals, ref->n_terminals, sizeof key, cmp_terminal);
}

void sw_ref_free(struct sw_refdata *ref)
{
    if (!ref)
        return;
    free(ref->issuers);
    free(ref->terminals);
    free(ref->card_keys);
    sw_router_free(ref->router);
    fx_set_free(ref->fx);
    free(ref);
}

static int find_issuer(const struct sw_refdata *ref, const char *id)
{
    for (size_t i = 0; i < ref->n_issuers; i++)
        if (strcmp(ref->issuers[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* Builds a snapshot from the rows db/ read. -1 with err on bad data. */
static int build(struct sw_server *srv, const struct db_refdata *d, struct sw_refdata **out,
                 char *err, size_t errcap)
{
    struct sw_refdata *ref = calloc(1, sizeof *ref);
    struct sw_route *rt = NULL;
    if (!ref)
        goto oom;
    ref->issuers = calloc(d->n_issuers + 1, sizeof *ref->issuers);
    ref->terminals = calloc(d->n_terminals + 1, sizeof *ref->terminals);
    rt = calloc(d->n_routes + 1, sizeof *rt);
    ref->card_keys = calloc(d->n_routes + 1, sizeof *ref->card_keys);
    if (!ref->issuers || !ref->terminals || !rt || !ref->card_keys)
        goto oom;

    for (size_t i = 0; i < d->n_issuers; i++) {
        const struct db_ref_issuer *row = &d->issuers[i];
        struct sw_issuer *is = &ref->issuers[ref->n_issuers++];
        at_strlcpy(is->id, row->issuer_id, sizeof is->id);
        at_strlcpy(is->zpk, row->zpk, sizeof is->zpk);
        at_strlcpy(is->zak, row->zak, sizeof is->zak);
        is->enabled = row->enabled;
        is->link = -1;
        for (size_t l = 0; l < srv->n_links; l++)
            if (strcmp(srv->links[l].conf->name, row->link) == 0)
                is->link = (int)l;
    }
    for (size_t i = 0; i < d->n_routes; i++) {
        at_strlcpy(rt[i].prefix, d->routes[i].prefix, sizeof rt[i].prefix);
        int idx = find_issuer(ref, d->routes[i].issuer_id);
        if (idx < 0) {
            snprintf(err, errcap, "BIN route %s names unknown issuer", rt[i].prefix);
            goto fail;
        }
        rt[i].issuer = (uint32_t)idx;
        rt[i].billing_currency = d->routes[i].billing_currency;
        /* card authentication keys (docs/emv.md): the route's, when it names any */
        if (d->routes[i].imk_ac[0] || d->routes[i].cvk[0]) {
            struct sw_card_keys *ck = &ref->card_keys[ref->n_card_keys++];
            at_strlcpy(ck->imk_ac, d->routes[i].imk_ac, sizeof ck->imk_ac);
            at_strlcpy(ck->cvk, d->routes[i].cvk, sizeof ck->cvk);
            rt[i].card_keys = (uint32_t)ref->n_card_keys;
        }
    }
    if (sw_router_build(rt, d->n_routes, &ref->router, err, errcap) != 0)
        goto fail;
    for (size_t i = 0; i < d->n_terminals; i++) {
        const struct db_ref_terminal *row = &d->terminals[i];
        struct sw_terminal *t = &ref->terminals[ref->n_terminals++];
        at_strlcpy(t->acquirer, row->acquirer_id, sizeof t->acquirer);
        if (strlen(row->terminal_id) != 8) {
            snprintf(err, errcap, "terminal id of row %zu is not 8 characters", i);
            goto fail;
        }
        memcpy(t->tid, row->terminal_id, 9);
        t->scheme = strcmp(row->key_scheme, "DUKPT-TDES") == 0  ? SW_TERM_DUKPT_TDES
                    : strcmp(row->key_scheme, "DUKPT-AES") == 0 ? SW_TERM_DUKPT_AES
                                                                : SW_TERM_TPK;
        at_strlcpy(t->tpk, row->tpk, sizeof t->tpk);
        at_strlcpy(t->tak, row->tak, sizeof t->tak);
        at_strlcpy(t->bdk, row->bdk, sizeof t->bdk);
        t->enabled = row->enabled;
    }
    qsort(ref->terminals, ref->n_terminals, sizeof *ref->terminals, cmp_terminal);
    free(rt);
    ref->loaded_wall_us = 0;
    *out = ref;
    return 0;
oom:
    snprintf(err, errcap, "out of memory");
fail:
    free(rt);
    sw_ref_free(ref);
    return -1;
}

static void load_failed(struct sw_server *srv, const struct db_error *e)
{
    srv->ref_loading = false;
    at_log(AT_LOG_ERROR, "refdata_load_failed", AT_STR("error", e->message),
           AT_STR("sqlstate", e->sqlstate));
    if (!srv->ref && !srv->stopping) /* nothing to serve with: retry until the database answers */
        (void)sw_ref_reload(srv);
}

/* The rates arrived for the snapshot srv->ref_pending: both are good, or the reload is
 * refused whole (the old snapshot, rates included, stays). */
static void on_rates(void *arg, const struct db_error *e, const struct db_fx_rate *rows, size_t n)
{
    struct sw_server *srv = arg;
    struct sw_refdata *ref = srv->ref_pending;
    char err[256];

    srv->ref_pending = NULL;
    if (e->code != 0) {
        sw_ref_free(ref);
        load_failed(srv, e);
        return;
    }
    srv->ref_loading = false;
    if (sw_fx_build(rows, n, &ref->fx, err, sizeof err) != 0) {
        at_log(AT_LOG_ERROR, "refdata_invalid", AT_STR("error", err),
               AT_STR("action", srv->ref ? "kept the previous reference data and rates"
                                         : "not serving until a reload succeeds"));
        sw_ref_free(ref);
        return;
    }
    sw_ref_free(srv->ref);
    srv->ref = ref;
    at_log(AT_LOG_INFO, "refdata_loaded", AT_UINT("issuers", ref->n_issuers),
           AT_UINT("bin_routes", sw_router_count(ref->router)),
           AT_UINT("terminals", ref->n_terminals), AT_UINT("fx_rates", n),
           AT_UINT("routes_with_card_keys", ref->n_card_keys));
    for (size_t i = 0; i < ref->n_issuers; i++)
        if (ref->issuers[i].link < 0)
            at_log(AT_LOG_WARN, "issuer_without_link", AT_STR("issuer", ref->issuers[i].id));
    if (!srv->ready)
        sw_server_ready(srv);
}

static void on_loaded(void *arg, const struct db_error *e, const struct db_refdata *d)
{
    struct sw_server *srv = arg;
    char err[256];
    struct sw_refdata *ref;

    if (e->code != 0) {
        load_failed(srv, e);
        return;
    }
    if (build(srv, d, &ref, err, sizeof err) != 0) {
        srv->ref_loading = false;
        at_log(AT_LOG_ERROR, "refdata_invalid", AT_STR("error", err));
        return;
    }
    /* The rates not expired now: a period loaded ahead takes over at its valid_from without
     * another reload (docs/fx.md). */
    srv->ref_pending = ref;
    int64_t now_s = (int64_t)(at_wall_us() / 1000000u);
    if (db_fx_rates_load(srv->db, DB_FX_NOT_EXPIRED, now_s, on_rates, srv) != 0) {
        static const struct db_error full = { .code = DB_E_FULL, .message = "database queue full" };
        srv->ref_pending = NULL;
        sw_ref_free(ref);
        load_failed(srv, &full);
    }
}

int sw_ref_reload(struct sw_server *srv)
{
    if (srv->ref_loading)
        return 0;
    int rc = db_refdata_load(srv->db, on_loaded, srv);
    if (rc == 0)
        srv->ref_loading = true;
    return rc;
}
