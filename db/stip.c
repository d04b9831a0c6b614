/* The stand-in queries (db_stip.h): rules + negative file + PVV of a card in one SELECT, the
 * day-total reservation through switch.stand_in_reserve(), and its voiding. */
#include "db_internal.h"
#include "db_stip.h"

#include "hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stip_job {
    void *cb;
    void *arg;
};

/* Runs sql with its values as one job whose reply goes to on with a stip_job carrying the
 * caller's cb and arg (freed by on). 0 or DB_E_*; nothing is called on an error return. */
static int submit(struct db_client *c, const char *sql, int n, const char *const *values,
                  db_reply_cb on, void *cb, void *arg)
{
    struct stip_job *job = malloc(sizeof *job);
    if (!job)
        return DB_E_SYS;
    *job = (struct stip_job){ cb, arg };
    int rc = db_query(c, sql, n, values, on, job);
    if (rc != 0)
        free(job);
    return rc;
}

static void mti_class(const char *mti, char out[4])
{
    memcpy(out, mti, 3);
    out[3] = '\0';
}

static void on_rules(void *arg, const struct db_reply *reply)
{
    struct stip_job *job = arg;
    db_stip_rules_cb cb = (db_stip_rules_cb)job->cb;
    static const struct db_error bad = { .code = DB_E_SQL,
                                         .message = "stand-in rules: a value does not fit" };
    struct db_stip_rules r;
    memset(&r, 0, sizeof r);
    const struct db_error *err = reply->err;
    if (err->code == 0 && reply->n == 1 && PQntuples(reply->res[0]) == 1) {
        const PGresult *res = reply->res[0];
        char codes[DB_STIP_MAX_PCODES * 3 + 1];
        bool fits = db_col_text(res, 0, 0, codes, sizeof codes);
        r.found = true;
        r.max_amount_minor = db_col_num(res, 0, 1, INT64_MAX);
        r.max_daily_minor = db_col_num(res, 0, 2, INT64_MAX);
        r.verify_pin = db_col_bool(res, 0, 3);
        fits &= db_col_text(res, 0, 4, r.pvk, sizeof r.pvk);
        fits &= db_col_text(res, 0, 5, r.negative, sizeof r.negative);
        r.taken = db_col_bool(res, 0, 8);
        r.has_offset = !PQgetisnull(res, 0, 9);
        if (r.has_offset) {
            fits &= db_col_text(res, 0, 9, r.pin_offset, sizeof r.pin_offset);
        }
        fits &= db_col_text(res, 0, 10, r.dectab, sizeof r.dectab);
        r.has_pvv = !PQgetisnull(res, 0, 6);
        if (r.has_pvv) {
            r.pvki = (unsigned)db_col_num(res, 0, 6, 9);
            fits &= db_col_text(res, 0, 7, r.pvv, sizeof r.pvv);
        }
        /* "00,01": two digits each, comma-separated. */
        for (char *p = codes; fits && *p && r.n_pcodes < DB_STIP_MAX_PCODES;) {
            if (strlen(p) < 2) {
                fits = false;
                break;
            }
            memcpy(r.pcodes[r.n_pcodes++], p, 2);
            p += 2;
            if (*p == ',')
                p++;
        }
        if (!fits)
            err = &bad;
    }
    cb(job->arg, err, err->code == 0 ? &r : NULL);
    free(job);
}

int db_stip_rules(struct db_client *c, const char *issuer, const uint8_t pan_hmac[32],
                  const struct db_request_id *id, db_stip_rules_cb cb, void *arg)
{
    char hmac[65], cls[4];
    at_hex_encode(pan_hmac, 32, hmac);
    mti_class(id->mti, cls);
    const char *values[] = { issuer,          hmac,     id->request_date,      id->acquirer_id,
                             id->terminal_id, id->stan, id->transmission_time, cls };
    return submit(c,
                  "SELECT array_to_string(r.processing_codes, ','), r.max_amount_minor,"
                  " r.max_daily_minor, r.verify_pin, coalesce(k.key_under_lmk, ''),"
                  " coalesce(n.status, ''), p.pvki, p.pvv,"
                  " EXISTS (SELECT 1 FROM switch.authorizations a"
                  "  WHERE a.request_date = $3::date AND a.acquirer_id = $4"
                  "  AND a.terminal_id = $5 AND a.stan = $6 AND a.transmission_time = $7"
                  "  AND a.mti_class = $8 AND a.issuer_stan IS NOT NULL)"
                  " OR EXISTS (SELECT 1 FROM switch.inflight f WHERE f.request_date = $3::date"
                  "  AND f.acquirer_id = $4 AND f.terminal_id = $5 AND f.stan = $6"
                  "  AND f.transmission_time = $7 AND f.mti_class = $8)"
                  ", o.pin_offset, coalesce(r.decimalization_table, '')"
                  " FROM switch.stand_in_rules r"
                  " LEFT JOIN switch.keys k ON k.key_id = r.pvk_key_id AND k.status = 'active'"
                  "  AND k.key_type = 'PVK'"
                  " LEFT JOIN switch.negative_file n ON n.issuer_id = r.issuer_id"
                  "  AND n.pan_hmac = decode($2, 'hex')"
                  " LEFT JOIN switch.stand_in_pin_offset o ON o.issuer_id = r.issuer_id"
                  "  AND o.pan_hmac = decode($2, 'hex')"
                  " LEFT JOIN switch.stand_in_pvv p ON p.issuer_id = r.issuer_id"
                  "  AND p.pan_hmac = decode($2, 'hex')"
                  " WHERE r.issuer_id = $1",
                  8, values, on_rules, (void *)cb, arg);
}

static void on_reserve(void *arg, const struct db_reply *reply)
{
    struct stip_job *job = arg;
    db_stip_reserve_cb cb = (db_stip_reserve_cb)job->cb;
    static const struct db_error bad = { .code = DB_E_SQL, .message = "no result row" };
    const struct db_error *err = reply->err;
    bool ok = false, dup = false;
    int64_t total = 0;
    if (err->code == 0) {
        if (reply->n == 1 && PQntuples(reply->res[0]) == 1) {
            ok = db_col_bool(reply->res[0], 0, 0);
            total = db_col_num(reply->res[0], 0, 1, INT64_MAX);
            dup = db_col_bool(reply->res[0], 0, 2);
        } else {
            err = &bad;
        }
    }
    cb(job->arg, err, ok, dup, total);
    free(job);
}

int db_stip_reserve(struct db_client *c, const struct db_stip_reservation *r, db_stip_reserve_cb cb,
                    void *arg)
{
    char hmac[65], amount[24], ccy[8], max[24], cls[4];
    at_hex_encode(r->pan_hmac, 32, hmac);
    snprintf(amount, sizeof amount, "%lld", (long long)r->amount_minor);
    snprintf(ccy, sizeof ccy, "%d", (int)r->currency);
    snprintf(max, sizeof max, "%lld", (long long)r->max_daily_minor);
    mti_class(r->id.mti, cls);
    const char *values[] = { r->id.request_date,
                             r->id.acquirer_id,
                             r->id.terminal_id,
                             r->id.stan,
                             r->id.transmission_time,
                             cls,
                             r->issuer_id,
                             hmac,
                             r->business_day,
                             amount,
                             ccy,
                             max };
    return submit(
        c,
        "SELECT ok, day_total, duplicate FROM switch.stand_in_reserve($1::date, $2, $3, $4, $5,"
        " $6, $7, decode($8, 'hex'), $9::date, $10::bigint, $11::smallint,"
        " $12::bigint)",
        12, values, on_reserve, (void *)cb, arg);
}

static void on_void(void *arg, const struct db_reply *reply)
{
    (void)arg;
    (void)reply; /* not committed: the day total counts it, which errs on the safe side */
}

void db_stip_void(struct db_client *c, const struct db_request_id *id)
{
    char cls[4];
    mti_class(id->mti, cls);
    const char *values[] = { id->request_date, id->acquirer_id,       id->terminal_id,
                             id->stan,         id->transmission_time, cls };
    if (db_query(c,
                 "UPDATE switch.stand_in_decisions SET state = 'void' WHERE request_date = $1::date"
                 " AND acquirer_id = $2 AND terminal_id = $3 AND stan = $4"
                 " AND transmission_time = $5 AND mti_class = $6",
                 6, values, on_void, NULL) != 0)
        return;
}
