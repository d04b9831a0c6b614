/* switchd's reads of what it journaled: the original of a repeat or of a reversal (its journal
 * row, whether a reversal of it is queued, whether it is still in flight), and the recovery of
 * what a stopped instance left in switch.inflight. Typed results; the SQL lives here. */
#include "db_internal.h"

#include <stdlib.h>
#include <string.h>

/* The journal row of an identity ($1 acquirer, $2 terminal, $3 STAN, $4 DE 7, $5 date), with
 * whether a reversal of it is queued. */
#define ORIGINAL_SELECT                                                                            \
    "SELECT a.mti, a.issuer_id, a.issuer_stan, a.issuer_transmission_time, a.rrn,"                 \
    " a.processing_code, a.amount_minor, a.currency, a.auth_code, a.response_code,"                \
    " a.pan_hmac, a.billing_amount_minor, a.conversion_rate, a.billing_currency,"                  \
    " EXISTS (SELECT 1 FROM switch.reversal_queue r"                                               \
    " WHERE r.request_date = $5::date AND r.acquirer_id = $1 AND r.terminal_id = $2"               \
    " AND r.stan = $3 AND r.transmission_time = $4"                                                \
    " AND r.mti_class = a.mti_class COLLATE \"default\"),"                                         \
    " (extract(epoch FROM a.created_at) * 1000000)::int8"                                          \
    " FROM switch.authorizations a WHERE a.acquirer_id = $1 AND a.terminal_id = $2"                \
    " AND a.stan = $3 AND a.transmission_time = $4 AND a.request_date = $5::date"

struct orig_job {
    db_original_cb cb;
    void *arg;
    struct db_request_id id;
};

static void on_original(void *arg, const struct db_reply *reply)
{
    struct orig_job *job = arg;
    struct db_original o;
    bool found = false, in_flight = false;
    if (reply->err->code == 0 && reply->n >= 1) {
        const PGresult *r = reply->res[0];
        found = PQntuples(r) == 1;
        if (found) {
            memset(&o, 0, sizeof o);
            o.id = job->id;
            db_col_text(r, 0, 0, o.id.mti, sizeof o.id.mti);
            db_col_text(r, 0, 1, o.issuer_id, sizeof o.issuer_id);
            db_col_text(r, 0, 2, o.issuer_stan, sizeof o.issuer_stan);
            db_col_text(r, 0, 3, o.issuer_transmission_time, sizeof o.issuer_transmission_time);
            db_col_text(r, 0, 4, o.rrn, sizeof o.rrn);
            db_col_text(r, 0, 5, o.processing_code, sizeof o.processing_code);
            o.amount_minor = db_col_num(r, 0, 6, INT64_MAX);
            o.currency = (int32_t)db_col_num(r, 0, 7, 999);
            db_col_text(r, 0, 8, o.auth_code, sizeof o.auth_code);
            db_col_text(r, 0, 9, o.response_code, sizeof o.response_code);
            o.has_pan_hmac = db_col_bytea(r, 0, 10, o.pan_hmac, sizeof o.pan_hmac) == 32;
            db_col_billing(r, 0, 11, &o.billing);
            o.reversed = db_col_bool(r, 0, 14);
            o.created_us = db_col_num(r, 0, 15, INT64_MAX);
        }
        if (reply->n == 2)
            in_flight = strcmp(PQgetvalue(reply->res[1], 0, 0), "0") != 0;
    }
    job->cb(job->arg, reply->err, found ? &o : NULL, in_flight);
    free(job);
}

int db_original_lookup(struct db_client *c, const struct db_request_id *id, const char *mti_class,
                       db_original_cb cb, void *arg)
{
    struct orig_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct orig_job){ .cb = cb, .arg = arg, .id = *id };
    const char *values[] = { id->acquirer_id,       id->terminal_id,  id->stan,
                             id->transmission_time, id->request_date, mti_class };
    const struct db_stmt exact = { .sql = ORIGINAL_SELECT " AND a.mti_class = $6",
                                   .nparams = 6,
                                   .values = values };
    const struct db_stmt reversal[2] = {
        { .sql = ORIGINAL_SELECT " AND a.mti_class IN ('010', '020', '022')"
                                 " ORDER BY a.created_at DESC LIMIT 1",
          .nparams = 5,
          .values = values },
        { .sql = "SELECT count(*) FROM switch.inflight WHERE acquirer_id = $1"
                 " AND terminal_id = $2 AND stan = $3 AND transmission_time = $4"
                 " AND request_date = $5::date",
          .nparams = 5,
          .values = values },
    };
    int rc = mti_class ? db_exec(c, &exact, 1, on_original, job)
                       : db_exec(c, reversal, 2, on_original, job);
    if (rc != 0)
        free(job);
    return rc;
}

struct recover_job {
    db_recover_cb cb;
    void *arg;
};

static void on_recovered(void *arg, const struct db_reply *reply)
{
    struct recover_job *job = arg;
    int64_t reversed = -1, settled = -1;
    static const struct db_error bad = { .code = DB_E_SQL, .message = "no result row" };
    const struct db_error *err = reply->err;
    if (err->code == 0 && (reply->n != 1 || PQntuples(reply->res[0]) != 1))
        err = &bad;
    if (err->code == 0) {
        reversed = db_col_num(reply->res[0], 0, 0, INT64_MAX);
        settled = db_col_num(reply->res[0], 0, 1, INT64_MAX);
    }
    job->cb(job->arg, err, reversed, settled);
    free(job);
}

/* One recovery function of the switch schema (sql names it, $1 the owner) answering two counts. */
static int recover_call(struct db_client *c, const char *sql, const char *owner, db_recover_cb cb,
                        void *arg)
{
    struct recover_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct recover_job){ cb, arg };
    const char *values[] = { owner };
    const struct db_stmt st = { .sql = sql, .nparams = 1, .values = values };
    int rc = db_exec(c, &st, 1, on_recovered, job);
    if (rc != 0)
        free(job);
    return rc;
}

int db_recover_inflight(struct db_client *c, const char *owner, db_recover_cb cb, void *arg)
{
    return recover_call(c, "SELECT * FROM switch.recover_inflight($1)", owner, cb, arg);
}

int db_recover_transfers(struct db_client *c, const char *owner, db_recover_cb cb, void *arg)
{
    return recover_call(c, "SELECT * FROM switch.recover_transfers($1)", owner, cb, arg);
}

int db_recover_advices(struct db_client *c, const char *owner, db_recover_cb cb, void *arg)
{
    return recover_call(c, "SELECT switch.recover_advices($1), 0::bigint", owner, cb, arg);
}
