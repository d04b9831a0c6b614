/* Reading PGresult columns into typed values, for every typed API of libatlas_db (reference
 * data, originals, the reversal queue, the wallet). Results arrive in text format. */
#include "db_internal.h"

#include "fmt.h"
#include "hex.h"
#include "parse.h"

#include <string.h>

bool db_col_text(const PGresult *r, int row, int col, char *out, size_t cap)
{
    return at_strlcpy(out, PQgetvalue(r, row, col), cap) < cap;
}

bool db_col_i64(const PGresult *r, int row, int col, int64_t *out)
{
    if (PQgetisnull(r, row, col))
        return false;
    const char *v = PQgetvalue(r, row, col);
    bool neg = v[0] == '-';
    uint64_t u;
    if (!at_parse_u64(v + neg, INT64_MAX, &u))
        return false;
    *out = neg ? -(int64_t)u : (int64_t)u;
    return true;
}

bool db_col_int(const PGresult *r, int row, int col, int *out)
{
    int64_t v;
    if (!db_col_i64(r, row, col, &v) || v < INT32_MIN || v > INT32_MAX)
        return false;
    *out = (int)v;
    return true;
}

int64_t db_col_num(const PGresult *r, int row, int col, uint64_t max)
{
    uint64_t v;
    return !PQgetisnull(r, row, col) && at_parse_u64(PQgetvalue(r, row, col), max, &v) ? (int64_t)v
                                                                                       : -1;
}

bool db_col_bool(const PGresult *r, int row, int col)
{
    return strcmp(PQgetvalue(r, row, col), "t") == 0;
}

int db_col_bytea(const PGresult *r, int row, int col, uint8_t *out, size_t cap)
{
    const char *v = PQgetvalue(r, row, col);
    size_t n = strlen(v);
    if (PQgetisnull(r, row, col) || n < 2 || v[0] != '\\' || v[1] != 'x' || (n - 2) / 2 > cap)
        return -1;
    return at_hex_decode(v + 2, n - 2, out, cap);
}

void db_col_billing(const PGresult *r, int row, int col, struct db_billing *b)
{
    db_billing_none(b);
    int64_t amount = db_col_num(r, row, col, INT64_MAX);
    int64_t ccy = db_col_num(r, row, col + 2, 999);
    if (amount < 0 || ccy < 1 || !db_col_text(r, row, col + 1, b->rate, sizeof b->rate) ||
        strlen(b->rate) != 8) {
        b->rate[0] = '\0';
        return;
    }
    b->amount_minor = amount;
    b->currency = (int32_t)ccy;
}
