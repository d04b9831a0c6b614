/* switchd's reference data read from schema switch: issuers with their keys, enabled BIN
 * routes, terminals (and their acquirer's switch) with their keys — keys only as stored, under
 * the LMK. One job of three SELECTs, turned into typed rows for the caller. */
#include "internal.h"

#include "fmt.h"

#include <stdlib.h>
#include <string.h>

struct ref_job {
    db_refdata_cb cb;
    void *arg;
};

static void col(char *dst, size_t cap, const PGresult *r, int row, int c)
{
    at_strlcpy(dst, PQgetisnull(r, row, c) ? "" : PQgetvalue(r, row, c), cap);
}

static bool yes(const PGresult *r, int row, int c)
{
    return strcmp(PQgetvalue(r, row, c), "t") == 0;
}

static void on_ref(void *arg, const struct db_reply *reply)
{
    struct ref_job *job = arg;
    struct db_refdata ref = { 0 };
    struct db_ref_issuer *iss = NULL;
    struct db_ref_route *routes = NULL;
    struct db_ref_terminal *terms = NULL;
    struct db_error oom = { .code = DB_E_SYS, .message = "out of memory" };
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
                col(iss[i].issuer_id, sizeof iss[i].issuer_id, ri, i, 0);
                col(iss[i].link, sizeof iss[i].link, ri, i, 1);
                col(iss[i].zpk, sizeof iss[i].zpk, ri, i, 2);
                col(iss[i].zak, sizeof iss[i].zak, ri, i, 3);
                iss[i].enabled = yes(ri, i, 4);
            }
            for (int i = 0; i < nr; i++) {
                col(routes[i].prefix, sizeof routes[i].prefix, rr, i, 0);
                col(routes[i].issuer_id, sizeof routes[i].issuer_id, rr, i, 1);
            }
            for (int i = 0; i < nt; i++) {
                col(terms[i].acquirer_id, sizeof terms[i].acquirer_id, rt, i, 0);
                col(terms[i].terminal_id, sizeof terms[i].terminal_id, rt, i, 1);
                col(terms[i].key_scheme, sizeof terms[i].key_scheme, rt, i, 2);
                col(terms[i].tpk, sizeof terms[i].tpk, rt, i, 3);
                col(terms[i].tak, sizeof terms[i].tak, rt, i, 4);
                col(terms[i].bdk, sizeof terms[i].bdk, rt, i, 5);
                terms[i].enabled = yes(rt, i, 6);
            }
            ref = (struct db_refdata){ iss, (size_t)ni, routes, (size_t)nr, terms, (size_t)nt };
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
        { .sql = "SELECT r.prefix, r.issuer_id FROM switch.bin_routes r WHERE r.enabled" },
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
