/* switch.key_change_requests and the commit of a new issuer key generation (docs/keys.md).
 * Every statement here names its columns; callers get typed rows (db/db_keyx.h). */
#include "db_keyx.h"

#include "db_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct claim_job {
    db_keyx_claim_cb cb;
    void *arg;
};

static void on_claim(void *arg, const struct db_reply *reply)
{
    struct claim_job *job = arg;
    struct db_keyx_claim *rows = NULL;
    size_t n = 0;
    const struct db_error *err = reply->err;
    static const struct db_error oom = { .code = DB_E_SYS, .message = "out of memory" };
    if (err->code == 0 && reply->n == 2 && reply->res[1]) {
        const PGresult *r = reply->res[1];
        int nt = PQntuples(r);
        rows = calloc((size_t)nt + 1, sizeof *rows);
        if (!rows) {
            err = &oom;
        } else {
            for (int i = 0; i < nt; i++) {
                struct db_keyx_claim *c = &rows[n];
                c->request_id = db_col_num(r, i, 0, INT64_MAX);
                if (db_col_text(r, i, 1, c->issuer_id, sizeof c->issuer_id) &&
                    db_col_text(r, i, 2, c->zmk, sizeof c->zmk))
                    n++;
            }
        }
    }
    job->cb(job->arg, err, rows, n);
    free(rows);
    free(job);
}

int db_keyx_claim(struct db_client *c, const char *const *ids, size_t n, db_keyx_claim_cb cb,
                  void *arg)
{
    /* The issuers as one text[] literal: ids are checked names (switchd's [issuer] sections,
     * [A-Za-z0-9_-]), quoted anyway. */
    char list[2048];
    size_t off = 0;
    list[off++] = '{';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(list + off, sizeof list - off, "%s\"%s\"", i ? "," : "", ids[i]);
        if (w < 0 || (size_t)w >= sizeof list - off - 2)
            return DB_E_INVALID;
        off += (size_t)w;
    }
    list[off++] = '}';
    list[off] = '\0';
    const char *values[] = { list };
    /* A claim older than any answer can take (a link's timeout is at most 600 s) belongs to a
     * switchd that stopped mid-way: the change never happened on its side (docs/keys.md). */
    static const char stale[] =
        "UPDATE switch.key_change_requests SET status = 'failed', finished_at = now(),"
        " result = 'abandoned: the switchd that claimed it stopped before the end'"
        " WHERE status = 'claimed' AND claimed_at < now() - interval '15 minutes'";
    static const char sql[] =
        "WITH c AS (UPDATE switch.key_change_requests r SET status = 'claimed', claimed_at = now()"
        " WHERE r.request_id IN (SELECT request_id FROM switch.key_change_requests"
        " WHERE status = 'requested' AND issuer_id = ANY ($1::text[])"
        " ORDER BY request_id FOR UPDATE SKIP LOCKED)"
        " RETURNING r.request_id, r.issuer_id)"
        " SELECT c.request_id, c.issuer_id, coalesce(k.key_under_lmk, '')"
        " FROM c JOIN switch.issuers i USING (issuer_id)"
        " LEFT JOIN switch.keys k ON k.key_id = i.zmk_key_id AND k.key_type = 'ZMK'"
        " ORDER BY c.request_id";
    struct claim_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct claim_job){ cb, arg };
    const struct db_stmt stmts[] = { { .sql = stale },
                                     { .sql = sql, .nparams = 1, .values = values } };
    int rc = db_exec(c, stmts, 2, on_claim, job);
    if (rc != 0)
        free(job);
    return rc;
}

struct done_job {
    db_keyx_done_cb cb;
    void *arg;
};

static void on_done(void *arg, const struct db_reply *reply)
{
    struct done_job *job = arg;
    job->cb(job->arg, reply->err);
    free(job);
}

static int run(struct db_client *c, const struct db_stmt *stmts, unsigned n, db_keyx_done_cb cb,
               void *arg)
{
    struct done_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct done_job){ cb, arg };
    int rc = db_exec(c, stmts, n, on_done, job);
    if (rc != 0)
        free(job);
    return rc;
}

int db_keyx_request(struct db_client *c, const char *issuer, const char *requested_by,
                    db_keyx_done_cb cb, void *arg)
{
    const char *values[] = { issuer, requested_by };
    const struct db_stmt st = {
        .sql = "INSERT INTO switch.key_change_requests (issuer_id, requested_by) VALUES ($1, $2)",
        .nparams = 2,
        .values = values
    };
    return run(c, &st, 1, cb, arg);
}

int db_keyx_commit(struct db_client *c, const struct db_keyx_new *k, db_keyx_done_cb cb, void *arg)
{
    char rid[24], grace[16], result[96];
    snprintf(rid, sizeof rid, "%" PRId64, k->request_id);
    snprintf(grace, sizeof grace, "%u", k->grace_s);
    snprintf(result, sizeof result, "ZPK KCV %s, ZAK KCV %s", k->zpk_kcv, k->zak_kcv);
    const char *retire_v[] = { k->issuer_id, grace };
    const char *keys_v[] = { k->issuer_id, rid, k->zpk, k->zpk_kcv, k->zak, k->zak_kcv };
    const char *iss_v[] = { k->issuer_id, rid };
    const char *req_v[] = { rid, result };
    /* One transaction (one db_exec job): the old generation's validity ends, the new one's
     * begins, and the issuer row names it — a reload or a restart sees one or the other. */
    const struct db_stmt stmts[] = {
        { .sql = "UPDATE switch.keys k SET status = 'retired',"
                 " valid_to = now() + make_interval(secs => $2::int)"
                 " FROM switch.issuers i WHERE i.issuer_id = $1"
                 " AND k.key_id IN (i.zpk_key_id, i.zak_key_id)",
          .nparams = 2,
          .values = retire_v },
        { .sql = "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv, owner)"
                 " VALUES ($1 || '.ZPK.r' || $2, 'ZPK', 'TDES-2KEY', $3, $4, $1),"
                 " ($1 || '.ZAK.r' || $2, 'ZAK', 'TDES-2KEY', $5, $6, $1)",
          .nparams = 6,
          .values = keys_v },
        { .sql = "UPDATE switch.issuers SET zpk_key_id = $1 || '.ZPK.r' || $2,"
                 " zak_key_id = $1 || '.ZAK.r' || $2 WHERE issuer_id = $1",
          .nparams = 2,
          .values = iss_v },
        { .sql = "UPDATE switch.key_change_requests SET status = 'done', finished_at = now(),"
                 " result = $2 WHERE request_id = $1::bigint",
          .nparams = 2,
          .values = req_v },
    };
    return run(c, stmts, 4, cb, arg);
}

int db_keyx_fail(struct db_client *c, int64_t request_id, const char *reason, db_keyx_done_cb cb,
                 void *arg)
{
    char rid[24];
    snprintf(rid, sizeof rid, "%" PRId64, request_id);
    const char *values[] = { rid, reason };
    const struct db_stmt st = { .sql = "UPDATE switch.key_change_requests SET status = 'failed',"
                                       " finished_at = now(), result = $2"
                                       " WHERE request_id = $1::bigint",
                                .nparams = 2,
                                .values = values };
    return run(c, &st, 1, cb, arg);
}

/* ---------------------------------------------------------------- terminal key download */

struct tmk_job {
    db_keyx_tmk_cb cb;
    void *arg;
};

static void on_tmk(void *arg, const struct db_reply *reply)
{
    struct tmk_job *job = arg;
    char tmk[DB_KEYX_KEY_TEXT] = "";
    const struct db_error *err = reply->err;
    if (err->code == 0 && reply->n == 1 && reply->res[0] && PQntuples(reply->res[0]) == 1 &&
        !db_col_text(reply->res[0], 0, 0, tmk, sizeof tmk))
        tmk[0] = '\0';
    job->cb(job->arg, err, tmk);
    free(job);
}

int db_keyx_terminal_tmk(struct db_client *c, const char *acquirer, const char *terminal,
                         db_keyx_tmk_cb cb, void *arg)
{
    const char *values[] = { acquirer, terminal };
    struct tmk_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct tmk_job){ cb, arg };
    int rc = db_query(c,
                      "SELECT coalesce(k.key_under_lmk, '') FROM switch.terminals t"
                      " LEFT JOIN switch.keys k ON k.key_id = t.tmk_key_id AND k.key_type = 'TMK'"
                      " AND k.status = 'active'"
                      " WHERE t.acquirer_id = $1 AND t.terminal_id = $2",
                      2, values, on_tmk, job);
    if (rc != 0)
        free(job);
    return rc;
}

int db_keyx_terminal_commit(struct db_client *c, const struct db_keyx_term_new *k,
                            db_keyx_done_cb cb, void *arg)
{
    char grace[16];
    snprintf(grace, sizeof grace, "%u", k->grace_s);
    const bool tpk = k->tpk != NULL;
    const char *retire_v[] = { k->acquirer, k->terminal, grace, tpk ? "t" : "f" };
    const char *tak_v[] = { k->terminal, k->suffix, k->tak, k->tak_kcv, k->acquirer };
    const char *tpk_v[] = { k->terminal, k->suffix, tpk ? k->tpk : "", tpk ? k->tpk_kcv : "",
                            k->acquirer };
    const char *row_v[] = { k->acquirer, k->terminal, k->suffix, tpk ? "t" : "f" };
    /* One transaction: the terminal row, its old keys' validity and the new rows together. */
    const struct db_stmt stmts[] = {
        { .sql = "UPDATE switch.keys k SET status = 'retired',"
                 " valid_to = now() + make_interval(secs => $3::int)"
                 " FROM switch.terminals t WHERE t.acquirer_id = $1 AND t.terminal_id = $2"
                 " AND (k.key_id = t.tak_key_id OR ($4::boolean AND k.key_id = t.tpk_key_id))",
          .nparams = 4,
          .values = retire_v },
        { .sql = "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv, owner)"
                 " VALUES ($1 || '.TAK.d' || $2, 'TAK', 'TDES-2KEY', $3, $4, $5 || '/' || $1)",
          .nparams = 5,
          .values = tak_v },
        { .sql = tpk ? "INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv,"
                       " owner) VALUES ($1 || '.TPK.d' || $2, 'TPK', 'TDES-2KEY', $3, $4,"
                       " $5 || '/' || $1)"
                     : "SELECT $1::text, $2::text, $3::text, $4::text, $5::text",
          .nparams = 5,
          .values = tpk_v },
        { .sql = "UPDATE switch.terminals SET tak_key_id = $2 || '.TAK.d' || $3,"
                 " tpk_key_id = CASE WHEN $4::boolean THEN $2 || '.TPK.d' || $3"
                 " ELSE tpk_key_id END WHERE acquirer_id = $1 AND terminal_id = $2",
          .nparams = 4,
          .values = row_v },
    };
    return run(c, stmts, 4, cb, arg);
}
