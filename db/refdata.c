/* switchd's reference data read from schema switch: issuers with their keys, enabled BIN
 * routes, terminals (and their acquirer's switch) with their keys — keys only as stored, under
 * the LMK. One job of three SELECTs, turned into typed rows for the caller. */
#include "db_internal.h"

#include <stdlib.h>
#include <string.h>

struct ref_job {
    db_refdata_cb cb;
    void *arg;
};

static void on_ref(void *arg, const struct db_reply *reply)
{
    struct ref_job *job = arg;
    struct db_refdata ref = { 0 };
    struct db_ref_issuer *iss = NULL;
    struct db_ref_route *routes = NULL;
    struct db_ref_terminal *terms = NULL;
    static const struct db_error oom = { .code = DB_E_SYS, .message = "out of memory" };
    static const struct db_error too_long = { .code = DB_E_SQL,
                                              .message = "a reference data value is too long" };
    bool fits = true;
    const struct db_error *err = reply->err;
    if (err->code == 0 && reply->n == 3) {
        const PGresult *ri = reply->res[0], *rr = reply->res[1], *rt = reply->res[2];
        int ni = PQntuples(ri), nr = PQntuples(rr), nt = PQntuples(rt);
        iss = calloc((size_t)ni + 1, sizeof *iss);
        routes = calloc((size_t)nr + 1, sizeof *routes);
        terms = calloc((size_t)nt + 1, sizeof *terms);
        if (!iss || !routes || !terms) {
            err = &oom;
        } else {
            for (int i = 0; i < ni; i++) {
                fits &= db_col_text(ri, i, 0, iss[i].issuer_id, sizeof iss[i].issuer_id);
                fits &= db_col_text(ri, i, 1, iss[i].link, sizeof iss[i].link);
                fits &= db_col_text(ri, i, 2, iss[i].zpk, sizeof iss[i].zpk);
                fits &= db_col_text(ri, i, 3, iss[i].zak, sizeof iss[i].zak);
                iss[i].enabled = db_col_bool(ri, i, 4);
            }
            for (int i = 0; i < nr; i++) {
                fits &= db_col_text(rr, i, 0, routes[i].prefix, sizeof routes[i].prefix);
                fits &= db_col_text(rr, i, 1, routes[i].issuer_id, sizeof routes[i].issuer_id);
                int64_t ccy = db_col_num(rr, i, 2, 999);
                routes[i].billing_currency = ccy > 0 ? (int)ccy : 0;
                fits &= db_col_text(rr, i, 3, routes[i].imk_ac, sizeof routes[i].imk_ac);
                fits &= db_col_text(rr, i, 4, routes[i].cvk, sizeof routes[i].cvk);
            }
            for (int i = 0; i < nt; i++) {
                fits &= db_col_text(rt, i, 0, terms[i].acquirer_id, sizeof terms[i].acquirer_id);
                fits &= db_col_text(rt, i, 1, terms[i].terminal_id, sizeof terms[i].terminal_id);
                fits &= db_col_text(rt, i, 2, terms[i].key_scheme, sizeof terms[i].key_scheme);
                fits &= db_col_text(rt, i, 3, terms[i].tpk, sizeof terms[i].tpk);
                fits &= db_col_text(rt, i, 4, terms[i].tak, sizeof terms[i].tak);
                fits &= db_col_text(rt, i, 5, terms[i].bdk, sizeof terms[i].bdk);
                terms[i].enabled = db_col_bool(rt, i, 6);
            }
            ref = (struct db_refdata){ iss, (size_t)ni, routes, (size_t)nr, terms, (size_t)nt };
            if (!fits)
                err = &too_long;
        }
    }
    job->cb(job->arg, err, err->code == 0 ? &ref : NULL);
    free(iss);
    free(routes);
    free(terms);
    free(job);
}

int db_refdata_load(struct db_client *c, db_refdata_cb cb, void *arg)
{
    static const struct db_stmt stmts[] = {
        { .sql = "SELECT i.issuer_id, i.link, coalesce(kz.key_under_lmk, ''),"
                 " coalesce(ka.key_under_lmk, ''), i.enabled"
                 " FROM switch.issuers i"
                 " LEFT JOIN switch.keys kz ON kz.key_id = i.zpk_key_id AND kz.status = 'active'"
                 " LEFT JOIN switch.keys ka ON ka.key_id = i.zak_key_id AND ka.status = 'active'"
                 " ORDER BY i.issuer_id" },
        { .sql = "SELECT r.prefix, r.issuer_id, r.billing_currency,"
                 " coalesce(km.key_under_lmk, ''), coalesce(kc.key_under_lmk, '')"
                 " FROM switch.bin_routes r"
                 " LEFT JOIN switch.keys km ON km.key_id = r.imk_ac_key AND km.status = 'active'"
                 " AND km.key_type = 'MK-AC'"
                 " LEFT JOIN switch.keys kc ON kc.key_id = r.cvk_key AND kc.status = 'active'"
                 " AND kc.key_type = 'CVK'"
                 " WHERE r.enabled" },
        { .sql = "SELECT t.acquirer_id, t.terminal_id, t.key_scheme,"
                 " coalesce(kt.key_under_lmk, ''), coalesce(ka.key_under_lmk, ''),"
                 " coalesce(kb.key_under_lmk, ''), t.enabled AND a.enabled"
                 " FROM switch.terminals t JOIN switch.acquirers a USING (acquirer_id)"
                 " LEFT JOIN switch.keys kt ON kt.key_id = t.tpk_key_id AND kt.status = 'active'"
                 " LEFT JOIN switch.keys ka ON ka.key_id = t.tak_key_id AND ka.status = 'active'"
                 " LEFT JOIN switch.keys kb ON kb.key_id = t.bdk_key_id AND kb.status = 'active'" },
    };
    struct ref_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct ref_job){ cb, arg };
    int rc = db_exec(c, stmts, 3, on_ref, job);
    if (rc != 0)
        free(job);
    return rc;
}
