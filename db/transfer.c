/* Wallet-to-wallet transfers (migration 0010, docs/transfers.md): the saga row's begin
 * and changes, and the alias directory (mobile number -> sealed PAN). The rules live in SQL
 * (switch.transfer_begin, switch.recover_transfers); this file turns typed structs into their
 * parameters and their rows back into structs. */
#include "db_internal.h"

#include "fmt.h"
#include "hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* bytea as decode(…, 'hex') takes it. */
static void hex_of(const uint8_t *p, size_t n, char *out)
{
    at_hex_encode(p, n, out);
}

/* The caller's callback (of one of the four kinds below) and its argument, for the reply. */
struct job {
    union {
        db_transfer_begin_cb begin;
        db_done_cb done;
        db_transfer_find_cb find;
        db_alias_cb alias;
    } cb;
    void *arg;
};

/* One statement as one job; on_reply gets the job and frees it. 0 or a DB_E_* (then no call). */
static int submit(struct db_client *c, const struct db_stmt *st, db_reply_cb on_reply, struct job j)
{
    struct job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = j;
    int rc = db_exec(c, st, 1, on_reply, job);
    if (rc != 0)
        free(job);
    return rc;
}

/* ---------------------------------------------------------------- begin */

static void on_begun(void *arg, const struct db_reply *reply)
{
    struct job *job = arg;
    static const struct db_error bad = { .code = DB_E_SQL, .message = "no result row" };
    const struct db_error *err = reply->err;
    struct db_transfer_begun b;
    memset(&b, 0, sizeof b);
    if (err->code == 0 && (reply->n != 1 || PQntuples(reply->res[0]) != 1))
        err = &bad;
    if (err->code == 0) {
        const PGresult *r = reply->res[0];
        b.transfer_id = PQgetisnull(r, 0, 0) ? -1 : db_col_num(r, 0, 0, INT64_MAX);
        db_col_text(r, 0, 1, b.response_code, sizeof b.response_code);
        b.fee_minor = PQgetisnull(r, 0, 2) ? 0 : db_col_num(r, 0, 2, INT64_MAX);
        db_col_text(r, 0, 3, b.state, sizeof b.state);
        db_col_text(r, 0, 4, b.answer_code, sizeof b.answer_code);
        db_col_text(r, 0, 5, b.auth_code, sizeof b.auth_code);
        b.recipient_amount_minor = PQgetisnull(r, 0, 6) ? -1 : db_col_num(r, 0, 6, INT64_MAX);
        db_col_text(r, 0, 7, b.conversion_rate, sizeof b.conversion_rate);
        b.recipient_currency = PQgetisnull(r, 0, 8) ? -1 : (int)db_col_num(r, 0, 8, 999);
        db_col_text(r, 0, 9, b.reason, sizeof b.reason);
        b.received_us = PQgetisnull(r, 0, 10) ? 0 : db_col_num(r, 0, 10, INT64_MAX);
    }
    job->cb.begin(job->arg, err, err->code == 0 ? &b : NULL);
    free(job);
}

int db_transfer_begin(struct db_client *c, const struct db_transfer_begin *in,
                      db_transfer_begin_cb cb, void *arg)
{
    char s_hmac[65], r_hmac[65], s_sealed[2 * DB_PAN_SEALED_MAX + 1],
        r_sealed[2 * DB_PAN_SEALED_MAX + 1], amount[24], cur[8], rcur[8];
    hex_of(in->sender_hmac, 32, s_hmac);
    hex_of(in->recipient_hmac, 32, r_hmac);
    hex_of(in->sender_sealed, in->sender_sealed_len, s_sealed);
    hex_of(in->recipient_sealed, in->recipient_sealed_len, r_sealed);
    snprintf(amount, sizeof amount, "%lld", (long long)in->amount_minor);
    snprintf(cur, sizeof cur, "%d", in->currency);
    snprintf(rcur, sizeof rcur, "%d", in->recipient_currency);
    const char *values[] = { in->id.request_date,
                             in->id.acquirer_id,
                             in->id.terminal_id,
                             in->id.stan,
                             in->id.transmission_time,
                             in->owner,
                             in->sender_issuer,
                             in->sender_masked,
                             s_hmac,
                             s_sealed,
                             in->recipient_issuer,
                             in->recipient_masked,
                             r_hmac,
                             r_sealed,
                             in->msisdn[0] ? in->msisdn : NULL,
                             amount,
                             cur,
                             rcur,
                             in->leg_request_date,
                             in->leg_transmission_time };
    const struct db_stmt st = {
        .sql = "SELECT * FROM switch.transfer_begin($1::date, $2, $3, $4, $5, $6, $7, $8,"
               " decode($9, 'hex'), decode($10, 'hex'), $11, $12, decode($13, 'hex'),"
               " decode($14, 'hex'), $15, $16::bigint, $17::smallint, $18::smallint,"
               " $19::date, $20)",
        .nparams = 20,
        .values = values,
    };
    return submit(c, &st, on_begun, (struct job){ .cb.begin = cb, .arg = arg });
}

/* ---------------------------------------------------------------- changes */

static void on_done(void *arg, const struct db_reply *reply)
{
    struct job *job = arg;
    if (job->cb.done)
        job->cb.done(job->arg, reply->err);
    free(job);
}

int db_transfer_update(struct db_client *c, const struct db_transfer_change *ch, db_done_cb cb,
                       void *arg)
{
    char id[24], ramount[24];
    snprintf(id, sizeof id, "%lld", (long long)ch->transfer_id);
    snprintf(ramount, sizeof ramount, "%lld", (long long)ch->recipient_amount_minor);
    const char *values[] = { id,
                             ch->state,
                             ch->aft_rc[0] ? ch->aft_rc : NULL,
                             ch->oct_rc[0] ? ch->oct_rc : NULL,
                             ch->auth_code[0] ? ch->auth_code : NULL,
                             ch->response_code[0] ? ch->response_code : NULL,
                             ch->failed_leg,
                             ch->recipient_amount_minor >= 0 ? ramount : NULL,
                             ch->conversion_rate[0] ? ch->conversion_rate : NULL };
    /* A final state is never left (a late change of an unwound transfer changes nothing), and
     * a column once known keeps its value. */
    const struct db_stmt st = {
        .sql = "UPDATE switch.transfers SET state = $2, aft_rc = coalesce($3, aft_rc),"
               " oct_rc = coalesce($4, oct_rc), auth_code = coalesce($5, auth_code),"
               " response_code = coalesce($6, response_code),"
               " failed_leg = coalesce($7, failed_leg),"
               " recipient_amount_minor = coalesce($8::bigint, recipient_amount_minor),"
               " conversion_rate = coalesce($9, conversion_rate), updated_at = now()"
               " WHERE transfer_id = $1::bigint"
               " AND (state IN ('started', 'aft') OR (state = 'completed' AND $2 = 'reversed'))",
        .nparams = 9,
        .values = values,
    };
    return submit(c, &st, on_done, (struct job){ .cb.done = cb, .arg = arg });
}

int db_transfer_abandon(struct db_client *c, const struct db_request_id *sender, const char *owner,
                        db_done_cb cb, void *arg)
{
    const char *values[] = { sender->request_date, sender->acquirer_id,       sender->terminal_id,
                             sender->stan,         sender->transmission_time, owner };
    /* Its legs' identities are the row's (switch.transfer_leg_terminal/_stan): none may exist. */
    const struct db_stmt st = {
        .sql = "UPDATE switch.transfers t SET state = 'failed', response_code = '96',"
               " failed_leg = 'xfr', updated_at = now()"
               " WHERE t.request_date = $1::date AND t.acquirer_id = $2 AND t.terminal_id = $3"
               " AND t.stan = $4 AND t.transmission_time = $5 AND t.owner = $6"
               " AND t.state = 'started'"
               " AND NOT EXISTS (SELECT 1 FROM switch.inflight i"
               "  WHERE i.request_date = t.leg_request_date AND i.acquirer_id = t.acquirer_id"
               "  AND i.terminal_id IN (switch.transfer_leg_terminal(t.transfer_id, 'aft'),"
               "   switch.transfer_leg_terminal(t.transfer_id, 'oct'))"
               "  AND i.stan = switch.transfer_leg_stan(t.transfer_id))"
               " AND NOT EXISTS (SELECT 1 FROM switch.authorizations j"
               "  WHERE j.request_date = t.leg_request_date AND j.acquirer_id = t.acquirer_id"
               "  AND j.terminal_id IN (switch.transfer_leg_terminal(t.transfer_id, 'aft'),"
               "   switch.transfer_leg_terminal(t.transfer_id, 'oct'))"
               "  AND j.stan = switch.transfer_leg_stan(t.transfer_id))",
        .nparams = 6,
        .values = values,
    };
    return submit(c, &st, on_done, (struct job){ .cb.done = cb, .arg = arg });
}

/* ---------------------------------------------------------------- a transfer by its sender */

static void on_found(void *arg, const struct db_reply *reply)
{
    struct job *job = arg;
    struct db_transfer_row t;
    bool found = false;
    bool fits = true;
    memset(&t, 0, sizeof t);
    if (reply->err->code == 0 && reply->n == 1 && PQntuples(reply->res[0]) == 1) {
        const PGresult *r = reply->res[0];
        found = true;
        t.transfer_id = db_col_num(r, 0, 0, INT64_MAX);
        fits &= db_col_text(r, 0, 1, t.state, sizeof t.state);
        int n = db_col_bytea(r, 0, 2, t.recipient_sealed, sizeof t.recipient_sealed);
        t.recipient_sealed_len = n > 0 ? (uint8_t)n : 0;
        fits &= db_col_text(r, 0, 3, t.leg_request_date, sizeof t.leg_request_date);
        fits &= db_col_text(r, 0, 4, t.leg_transmission_time, sizeof t.leg_transmission_time);
        t.fee_minor = db_col_num(r, 0, 5, INT64_MAX);
        t.recipient_amount_minor = PQgetisnull(r, 0, 6) ? -1 : db_col_num(r, 0, 6, INT64_MAX);
        t.recipient_currency = (int)db_col_num(r, 0, 7, 999);
        fits &= db_col_text(r, 0, 8, t.conversion_rate, sizeof t.conversion_rate);
        fits &= db_col_text(r, 0, 9, t.response_code, sizeof t.response_code);
        fits &= db_col_text(r, 0, 10, t.auth_code, sizeof t.auth_code);
        fits &= db_col_text(r, 0, 11, t.failed_leg, sizeof t.failed_leg);
        if (!fits || n <= 0)
            found = false;
    }
    job->cb.find(job->arg, reply->err, found ? &t : NULL);
    free(job);
}

int db_transfer_find(struct db_client *c, const struct db_request_id *sender,
                     db_transfer_find_cb cb, void *arg)
{
    const char *values[] = { sender->request_date, sender->acquirer_id, sender->terminal_id,
                             sender->stan, sender->transmission_time };
    const struct db_stmt st = {
        .sql = "SELECT transfer_id, state, recipient_pan_sealed, leg_request_date,"
               " leg_transmission_time, fee_minor, recipient_amount_minor, recipient_currency,"
               " coalesce(conversion_rate, ''), coalesce(response_code, ''),"
               " coalesce(auth_code, ''), coalesce(failed_leg, '')"
               " FROM switch.transfers WHERE request_date = $1::date AND acquirer_id = $2"
               " AND terminal_id = $3 AND stan = $4 AND transmission_time = $5",
        .nparams = 5,
        .values = values,
    };
    return submit(c, &st, on_found, (struct job){ .cb.find = cb, .arg = arg });
}

void db_transfer_leg_id(int64_t transfer_id, bool oct, const char *acquirer,
                        const char *leg_request_date, const char *leg_transmission_time,
                        struct db_request_id *id)
{
    memset(id, 0, sizeof *id);
    at_strlcpy(id->request_date, leg_request_date, sizeof id->request_date);
    at_strlcpy(id->acquirer_id, acquirer, sizeof id->acquirer_id);
    memcpy(id->terminal_id, oct ? "XO" : "XA", 2);
    at_put_digits(id->terminal_id + 2, 6, (uint64_t)((transfer_id / 1000000) % 1000000));
    at_put_digits(id->stan, 6, (uint64_t)(transfer_id % 1000000));
    at_strlcpy(id->transmission_time, leg_transmission_time, sizeof id->transmission_time);
    memcpy(id->mti, "0200", 5);
}

/* ---------------------------------------------------------------- aliases */

static void on_alias(void *arg, const struct db_reply *reply)
{
    struct job *job = arg;
    uint8_t sealed[DB_PAN_SEALED_MAX];
    int n = -1;
    if (reply->err->code == 0 && reply->n == 1 && PQntuples(reply->res[0]) == 1)
        n = db_col_bytea(reply->res[0], 0, 0, sealed, sizeof sealed);
    job->cb.alias(job->arg, reply->err, n > 0 ? sealed : NULL, n > 0 ? (size_t)n : 0);
    free(job);
}

int db_alias_lookup(struct db_client *c, const char *msisdn, db_alias_cb cb, void *arg)
{
    const char *values[] = { msisdn };
    const struct db_stmt st = { .sql = "SELECT pan_sealed FROM switch.aliases WHERE msisdn = $1",
                                .nparams = 1,
                                .values = values };
    return submit(c, &st, on_alias, (struct job){ .cb.alias = cb, .arg = arg });
}

int db_alias_put(const char *conninfo, const char *msisdn, const char *pan_masked,
                 const uint8_t pan_hmac[32], const uint8_t *sealed, size_t sealed_len,
                 struct db_error *err)
{
    char hmac[65], seal[2 * DB_PAN_SEALED_MAX + 1];
    if (sealed_len > DB_PAN_SEALED_MAX) {
        err->code = DB_E_INVALID;
        snprintf(err->message, sizeof err->message, "sealed PAN too long");
        return DB_E_INVALID;
    }
    hex_of(pan_hmac, 32, hmac);
    hex_of(sealed, sealed_len, seal);
    PGconn *pg = db_connect_at(conninfo, err);
    if (!pg)
        return err->code;
    int rc = db_schema_check(pg, 10, err);
    if (rc == 0) {
        const char *values[] = { msisdn, pan_masked, hmac, seal };
        PGresult *res = PQexecParams(
            pg,
            "INSERT INTO switch.aliases (msisdn, pan_masked, pan_hmac, pan_sealed)"
            " VALUES ($1, $2, decode($3, 'hex'), decode($4, 'hex'))"
            " ON CONFLICT (msisdn) DO UPDATE SET pan_masked = EXCLUDED.pan_masked,"
            " pan_hmac = EXCLUDED.pan_hmac, pan_sealed = EXCLUDED.pan_sealed, created_at = now()",
            4, NULL, values, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = db_pg_error(err, pg, res, "alias insert");
        PQclear(res);
    }
    PQfinish(pg);
    return rc;
}
