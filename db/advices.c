/* The advice queue as switchd uses it beyond the inserts (those are the journal writer's ADVICE
 * records): the pending rows loaded at start in queue order, and the change of one row (an
 * attempt counted, acknowledged, failed), named by its request identity and kind. Stand-in
 * advices are rare next to authorizations, so one UPDATE per change is enough (the reversal
 * queue batches its own, db/reversals.c). */
#include "db_internal.h"

#include "fmt.h"

#include <stdlib.h>
#include <string.h>

struct pending_job {
    db_advices_cb cb;
    void *arg;
};

static void on_pending(void *arg, const struct db_reply *reply)
{
    struct pending_job *job = arg;
    struct db_advice *rows = NULL;
    size_t n = 0;
    static const struct db_error oom = { .code = DB_E_SYS, .message = "out of memory" };
    const struct db_error *err = reply->err;
    if (err->code == 0 && reply->n == 1) {
        const PGresult *r = reply->res[0];
        int nr = PQntuples(r);
        rows = calloc((size_t)nr + 1, sizeof *rows);
        if (!rows)
            err = &oom;
        for (int i = 0; rows && i < nr; i++) {
            struct db_advice *v = &rows[n];
            char kind[10];
            v->advice_id = db_col_num(r, i, 0, INT64_MAX);
            db_col_text(r, i, 1, kind, sizeof kind);
            v->is_reversal = strcmp(kind, "reversal") == 0;
            db_col_text(r, i, 2, v->id.request_date, sizeof v->id.request_date);
            db_col_text(r, i, 3, v->id.acquirer_id, sizeof v->id.acquirer_id);
            db_col_text(r, i, 4, v->id.terminal_id, sizeof v->id.terminal_id);
            db_col_text(r, i, 5, v->id.stan, sizeof v->id.stan);
            db_col_text(r, i, 6, v->id.transmission_time, sizeof v->id.transmission_time);
            db_col_text(r, i, 7, v->id.mti, sizeof v->id.mti);
            db_col_text(r, i, 8, v->issuer_id, sizeof v->issuer_id);
            db_col_text(r, i, 9, v->issuer_stan, sizeof v->issuer_stan);
            db_col_text(r, i, 10, v->issuer_transmission_time, sizeof v->issuer_transmission_time);
            db_col_text(r, i, 11, v->rrn, sizeof v->rrn);
            db_col_text(r, i, 12, v->processing_code, sizeof v->processing_code);
            v->amount_minor = db_col_num(r, i, 13, INT64_MAX);
            v->currency = (int32_t)db_col_num(r, i, 14, 999);
            db_col_text(r, i, 15, v->auth_code, sizeof v->auth_code);
            db_col_text(r, i, 16, v->stand_in_rc, sizeof v->stand_in_rc);
            int sn = db_col_bytea(r, i, 17, v->pan_sealed, sizeof v->pan_sealed);
            v->pan_sealed_len = sn > 0 ? (uint8_t)sn : 0;
            db_col_text(r, i, 18, v->reason, sizeof v->reason);
            v->attempts = (unsigned)db_col_num(r, i, 19, 1000000);
            v->queued_us = (uint64_t)db_col_num(r, i, 20, INT64_MAX);
            db_col_billing(r, i, 21, &v->billing);
            n++;
        }
    }
    job->cb(job->arg, err, rows, n);
    free(rows);
    free(job);
}

int db_advices_pending(struct db_client *c, db_advices_cb cb, void *arg)
{
    static const struct db_stmt st = {
        .sql = "SELECT advice_id, kind, request_date, acquirer_id, terminal_id, stan,"
               " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,"
               " coalesce(rrn, ''), processing_code, amount_minor, currency, auth_code,"
               " coalesce(stand_in_rc, ''), pan_sealed, reason, attempts,"
               " (extract(epoch FROM queued_at) * 1000000)::bigint, billing_amount_minor,"
               " conversion_rate, billing_currency"
               " FROM switch.advice_queue WHERE state = 'pending'"
               " ORDER BY queued_at, kind, advice_id",
    };
    struct pending_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct pending_job){ cb, arg };
    int rc = db_exec(c, &st, 1, on_pending, job);
    if (rc != 0)
        free(job);
    return rc;
}

struct update_job {
    db_done_cb cb;
    void *arg;
};

static void on_updated(void *arg, const struct db_reply *reply)
{
    struct update_job *job = arg;
    job->cb(job->arg, reply->err);
    free(job);
}

int db_advices_update(struct db_client *c, const struct db_request_id *id, bool is_reversal,
                      unsigned attempts, enum db_reversal_state state, const char *response_code,
                      db_done_cb cb, void *arg)
{
    static const char *const states[] = { "pending", "acked", "failed" };
    char att[AT_I64_CHARS];
    at_put_i64(att, attempts);
    const char *values[10] = {
        id->request_date,
        id->acquirer_id,
        id->terminal_id,
        id->stan,
        id->transmission_time,
        id->mti,
        is_reversal ? "reversal" : "advice",
        att,
        states[state],
        response_code && response_code[0] ? response_code : NULL,
    };
    const struct db_stmt st = {
        .sql =
            "UPDATE switch.advice_queue AS q SET attempts = $8::int,"
            " last_attempt_at = CASE WHEN $8::int <> q.attempts THEN now()"
            " ELSE q.last_attempt_at END, state = $9,"
            " acked_at = CASE WHEN $9 = 'acked' THEN now() ELSE q.acked_at END,"
            " last_response_code = coalesce($10, q.last_response_code)"
            " WHERE q.request_date = $1::date AND q.acquirer_id = $2"
            " AND q.terminal_id = $3 AND q.stan = $4::bpchar AND q.transmission_time = $5::bpchar"
            " AND q.mti_class = substr($6, 1, 3)::bpchar AND q.kind = $7"
            " AND q.state = 'pending'",
        .nparams = 10,
        .values = values,
    };
    struct update_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct update_job){ cb, arg };
    int rc = db_exec(c, &st, 1, on_updated, job);
    if (rc != 0)
        free(job);
    return rc;
}
