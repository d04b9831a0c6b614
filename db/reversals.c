/* The reversal queue as switchd uses it beyond the inserts (those are the journal writer's
 * REVERSAL records): the pending rows loaded at start, and the batched changes of rows —
 * attempt counts, acknowledgements, failures — written by one UPDATE … FROM unnest(…) naming
 * rows by their identity. */
#include "db_internal.h"

#include "fmt.h"

#include <stdlib.h>
#include <string.h>

struct pending_job {
    db_reversals_cb cb;
    void *arg;
};

static void on_pending(void *arg, const struct db_reply *reply)
{
    struct pending_job *job = arg;
    struct db_reversal *rows = NULL;
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
            struct db_reversal *v = &rows[n];
            v->reversal_id = db_col_num(r, i, 0, INT64_MAX);
            db_col_text(r, i, 1, v->id.request_date, sizeof v->id.request_date);
            db_col_text(r, i, 2, v->id.acquirer_id, sizeof v->id.acquirer_id);
            db_col_text(r, i, 3, v->id.terminal_id, sizeof v->id.terminal_id);
            db_col_text(r, i, 4, v->id.stan, sizeof v->id.stan);
            db_col_text(r, i, 5, v->id.transmission_time, sizeof v->id.transmission_time);
            db_col_text(r, i, 6, v->id.mti, sizeof v->id.mti);
            db_col_text(r, i, 7, v->issuer_id, sizeof v->issuer_id);
            db_col_text(r, i, 8, v->issuer_stan, sizeof v->issuer_stan);
            db_col_text(r, i, 9, v->issuer_transmission_time, sizeof v->issuer_transmission_time);
            db_col_text(r, i, 10, v->rrn, sizeof v->rrn);
            db_col_text(r, i, 11, v->processing_code, sizeof v->processing_code);
            v->amount_minor = db_col_num(r, i, 12, INT64_MAX);
            v->currency = (int32_t)db_col_num(r, i, 13, 999);
            db_col_text(r, i, 14, v->auth_code, sizeof v->auth_code);
            int sn = db_col_bytea(r, i, 15, v->pan_sealed, sizeof v->pan_sealed);
            v->pan_sealed_len = sn > 0 ? (uint8_t)sn : 0;
            db_col_text(r, i, 16, v->reason, sizeof v->reason);
            v->attempts = (unsigned)db_col_num(r, i, 17, 1000000);
            db_col_billing(r, i, 18, &v->billing);
            n++;
        }
    }
    job->cb(job->arg, err, rows, n);
    free(rows);
    free(job);
}

int db_reversals_pending(struct db_client *c, db_reversals_cb cb, void *arg)
{
    static const struct db_stmt st = {
        .sql = "SELECT reversal_id, request_date, acquirer_id, terminal_id, stan,"
               " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,"
               " coalesce(rrn, ''), processing_code, amount_minor, currency,"
               " coalesce(auth_code, ''), pan_sealed, reason, attempts, billing_amount_minor,"
               " conversion_rate, billing_currency"
               " FROM switch.reversal_queue WHERE state = 'pending' ORDER BY reversal_id",
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

/* Claims (migration 0016, docs/switchd.md "Instances"): the same columns as the pending load,
 * from switch.claim_reversals: this instance's lease renewed, the rows no live instance holds
 * taken (FOR UPDATE SKIP LOCKED), and with all also the rows it claimed before. */
int db_reversals_claim(struct db_client *c, const char *owner, uint64_t lease_ms,
                       uint64_t takeover_ms, bool all, db_reversals_cb cb, void *arg)
{
    char lease[AT_I64_CHARS], takeover[AT_I64_CHARS];
    at_put_i64(lease, (int64_t)lease_ms);
    at_put_i64(takeover, (int64_t)takeover_ms);
    const char *values[5] = { owner, lease, takeover, all ? "t" : "f", "1000" };
    const struct db_stmt st = {
        .sql = "SELECT reversal_id, request_date, acquirer_id, terminal_id, stan,"
               " transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,"
               " coalesce(rrn, ''), processing_code, amount_minor, currency,"
               " coalesce(auth_code, ''), pan_sealed, reason, attempts, billing_amount_minor,"
               " conversion_rate, billing_currency"
               " FROM switch.claim_reversals($1, $2::bigint, $3::bigint, $4::boolean, $5::int)",
        .nparams = 5,
        .values = values,
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

#define UPDATE_COLS 9

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

int db_reversals_update(struct db_client *c, const struct db_reversal_change *ch, size_t n,
                        db_done_cb cb, void *arg)
{
    static const char *const states[] = { "pending", "acked", "failed" };
    struct db_array cols[UPDATE_COLS];
    const char *values[UPDATE_COLS];
    int bad = 0;
    memset(cols, 0, sizeof cols);
    for (int k = 0; k < UPDATE_COLS; k++)
        bad |= db_array_reset(&cols[k]);
    for (size_t i = 0; i < n && !bad; i++) {
        const struct db_reversal_change *x = &ch[i];
        bad |= db_array_elem(&cols[0], x->id.request_date, false);
        bad |= db_array_elem(&cols[1], x->id.acquirer_id, false);
        bad |= db_array_elem(&cols[2], x->id.terminal_id, false);
        bad |= db_array_elem(&cols[3], x->id.stan, false);
        bad |= db_array_elem(&cols[4], x->id.transmission_time, false);
        bad |= db_array_elem(&cols[5], x->id.mti, false);
        bad |= db_array_num(&cols[6], x->attempts);
        bad |= db_array_elem(&cols[7], states[x->state], false);
        bad |= db_array_elem(&cols[8], x->response_code,
                             x->state == DB_REVERSAL_PENDING || !x->response_code[0]);
    }
    for (int k = 0; k < UPDATE_COLS && !bad; k++) {
        bad |= db_array_close(&cols[k]);
        values[k] = cols[k].p;
    }
    struct update_job *job = bad ? NULL : malloc(sizeof *job);
    int rc = DB_E_SYS;
    if (job) {
        *job = (struct update_job){ cb, arg };
        const struct db_stmt st = {
            .sql = "UPDATE switch.reversal_queue AS q SET attempts = u.attempts,"
                   " last_attempt_at = CASE WHEN u.attempts <> q.attempts THEN now()"
                   " ELSE q.last_attempt_at END, state = u.state,"
                   " acked_at = CASE WHEN u.state = 'acked' THEN now() ELSE q.acked_at END,"
                   " last_response_code = coalesce(u.rc, q.last_response_code)"
                   " FROM unnest($1::date[], $2::text[], $3::text[], $4::bpchar[], $5::bpchar[],"
                   " $6::text[], $7::int[], $8::text[], $9::text[])"
                   " AS u(d, acq, tid, stan, de7, mti, attempts, state, rc)"
                   " WHERE q.request_date = u.d AND q.acquirer_id = u.acq"
                   " AND q.terminal_id = u.tid AND q.stan = u.stan AND q.transmission_time = u.de7"
                   " AND q.mti_class = substr(u.mti, 1, 3)::bpchar AND q.state = 'pending'",
            .nparams = UPDATE_COLS,
            .values = values,
        };
        rc = db_exec(c, &st, 1, on_updated, job);
        if (rc != 0)
            free(job);
    }
    for (int k = 0; k < UPDATE_COLS; k++)
        db_array_free(&cols[k]);
    return rc;
}

/* switch.release_instance (migration 0016): a drained instance gives its claims up at once. */
int db_release_instance(struct db_client *c, const char *owner, db_done_cb cb, void *arg)
{
    const char *values[1] = { owner };
    const struct db_stmt st = {
        .sql = "SELECT switch.release_instance($1)",
        .nparams = 1,
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
