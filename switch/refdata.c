/* Reference data: issuers, BIN routes and terminals with their keys (under
 * the LMK) loaded from schema switch by one asynchronous job, built into a
 * fresh snapshot and swapped in whole. Transactions copy the few rows they
 * use, so the old snapshot can be freed at once. */
#include "switchd.h"

#include "db.h"
#include "fmt.h"
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
    sw_router_free(ref->router);
    free(ref);
}

static void copy_field(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    const char *v = PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
    snprintf(dst, cap, "%s", v);
}

static int find_issuer(const struct sw_refdata *ref, const char *id)
{
    for (size_t i = 0; i < ref->n_issuers; i++)
        if (strcmp(ref->issuers[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* Builds a snapshot from the three result sets. -1 with err on bad data. */
static int build(struct sw_server *srv, PGresult *iss, PGresult *routes, PGresult *terms,
                 struct sw_refdata **out, char *err, size_t errcap)
{
    struct sw_refdata *ref = calloc(1, sizeof *ref);
    struct sw_route *rt = NULL;
    int nr = PQntuples(routes), ni = PQntuples(iss), nt = PQntuples(terms);
    if (!ref)
        goto oom;
    ref->issuers = calloc((size_t)ni + 1, sizeof *ref->issuers);
    ref->terminals = calloc((size_t)nt + 1, sizeof *ref->terminals);
    rt = calloc((size_t)nr + 1, sizeof *rt);
    if (!ref->issuers || !ref->terminals || !rt)
        goto oom;

    for (int i = 0; i < ni; i++) {
        struct sw_issuer *is = &ref->issuers[ref->n_issuers++];
        char link[SW_NAME_LEN];
        copy_field(is->id, sizeof is->id, iss, i, 0);
        copy_field(link, sizeof link, iss, i, 1);
        copy_field(is->zpk, sizeof is->zpk, iss, i, 2);
        copy_field(is->zak, sizeof is->zak, iss, i, 3);
        is->enabled = strcmp(PQgetvalue(iss, i, 4), "t") == 0;
        is->link = -1;
        for (size_t l = 0; l < srv->n_links; l++)
            if (strcmp(srv->links[l].conf->name, link) == 0)
                is->link = (int)l;
    }
    for (int i = 0; i < nr; i++) {
        char issuer[33];
        copy_field(rt[i].prefix, sizeof rt[i].prefix, routes, i, 0);
        copy_field(issuer, sizeof issuer, routes, i, 1);
        int idx = find_issuer(ref, issuer);
        if (idx < 0) {
            snprintf(err, errcap, "BIN route %s names unknown issuer", rt[i].prefix);
            goto fail;
        }
        rt[i].issuer = (uint32_t)idx;
    }
    if (sw_router_build(rt, (size_t)nr, &ref->router, err, errcap) != 0)
        goto fail;
    for (int i = 0; i < nt; i++) {
        struct sw_terminal *t = &ref->terminals[ref->n_terminals++];
        char scheme[16], tid[16];
        copy_field(t->acquirer, sizeof t->acquirer, terms, i, 0);
        copy_field(tid, sizeof tid, terms, i, 1);
        if (strlen(tid) != 8) {
            snprintf(err, errcap, "terminal id of row %d is not 8 characters", i);
            goto fail;
        }
        memcpy(t->tid, tid, 9);
        copy_field(scheme, sizeof scheme, terms, i, 2);
        t->scheme = strcmp(scheme, "DUKPT-TDES") == 0  ? SW_TERM_DUKPT_TDES
                    : strcmp(scheme, "DUKPT-AES") == 0 ? SW_TERM_DUKPT_AES
                                                       : SW_TERM_TPK;
        copy_field(t->tpk, sizeof t->tpk, terms, i, 3);
        copy_field(t->tak, sizeof t->tak, terms, i, 4);
        copy_field(t->bdk, sizeof t->bdk, terms, i, 5);
        t->enabled = strcmp(PQgetvalue(terms, i, 6), "t") == 0;
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

static void on_loaded(void *arg, const struct db_reply *reply)
{
    struct sw_server *srv = arg;
    char err[256];
    struct sw_refdata *ref;

    srv->ref_loading = false;
    if (reply->err->code != 0 || reply->n != 3) {
        at_log(AT_LOG_ERROR, "refdata_load_failed", AT_STR("error", reply->err->message),
               AT_STR("sqlstate", reply->err->sqlstate));
        if (!srv->ref) /* nothing to serve with: retry until the database answers */
            sw_ref_reload(srv);
        return;
    }
    if (build(srv, reply->res[0], reply->res[1], reply->res[2], &ref, err, sizeof err) != 0) {
        at_log(AT_LOG_ERROR, "refdata_invalid", AT_STR("error", err));
        return;
    }
    sw_ref_free(srv->ref);
    srv->ref = ref;
    at_log(AT_LOG_INFO, "refdata_loaded", AT_UINT("issuers", ref->n_issuers),
           AT_UINT("bin_routes", sw_router_count(ref->router)),
           AT_UINT("terminals", ref->n_terminals));
    for (size_t i = 0; i < ref->n_issuers; i++)
        if (ref->issuers[i].link < 0)
            at_log(AT_LOG_WARN, "issuer_without_link", AT_STR("issuer", ref->issuers[i].id));
    if (!srv->ready)
        sw_server_ready(srv);
}

int sw_ref_reload(struct sw_server *srv)
{
    static const struct db_stmt stmts[] = {
        { .sql = "SELECT i.issuer_id, i.link, coalesce(kz.key_under_lmk, ''),"
                 " coalesce(ka.key_under_lmk, ''), i.enabled"
                 " FROM switch.issuers i"
                 " LEFT JOIN switch.keys kz ON kz.key_id = i.zpk_key_id AND kz.status = 'active'"
                 " LEFT JOIN switch.keys ka ON ka.key_id = i.zak_key_id AND ka.status = 'active'"
                 " ORDER BY i.issuer_id" },
        { .sql = "SELECT r.prefix, r.issuer_id FROM switch.bin_routes r WHERE r.enabled" },
        { .sql = "SELECT t.acquirer_id, t.terminal_id, t.key_scheme,"
                 " coalesce(kt.key_under_lmk, ''), coalesce(ka.key_under_lmk, ''),"
                 " coalesce(kb.key_under_lmk, ''), t.enabled AND a.enabled"
                 " FROM switch.terminals t JOIN switch.acquirers a USING (acquirer_id)"
                 " LEFT JOIN switch.keys kt ON kt.key_id = t.tpk_key_id AND kt.status = 'active'"
                 " LEFT JOIN switch.keys ka ON ka.key_id = t.tak_key_id AND ka.status = 'active'"
                 " LEFT JOIN switch.keys kb ON kb.key_id = t.bdk_key_id AND kb.status = 'active'" },
    };
    if (srv->ref_loading)
        return 0;
    int rc = db_exec(srv->db, stmts, 3, on_loaded, srv);
    if (rc == 0)
        srv->ref_loading = true;
    return rc;
}
