/* PostgreSQL arrays in binary form (array_send/array_recv): the journal writer's unnest()
 * parameters. Layout, big-endian: ndim, has-null flag, element type OID, then per dimension its
 * size and lower bound, then each element as a 32-bit length (-1: NULL) and its bytes. The
 * header is reserved at reset and written at close, once the count is known. */
#include "db_internal.h"

#include "grow.h"

#include <stdlib.h>
#include <string.h>

#define HEADER        20    /* ndim, flags, elemtype, dim, lbound */
#define PG_EPOCH_DAYS 10957 /* 1970-01-01 .. 2000-01-01 */
#define PG_EPOCH_US   (946684800ull * 1000000ull)

static int reserve(struct db_barray *a, size_t more)
{
    if (a->failed || at_grow_bytes(&a->p, &a->cap, a->n + more, 4096) != 0) {
        a->failed = true;
        return -1;
    }
    return 0;
}

static void put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static void put64(char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Room for the header of a fresh array (one never reset); keeps a failure. */
static int start(struct db_barray *a)
{
    if (a->n >= HEADER)
        return a->failed ? -1 : 0;
    if (reserve(a, HEADER) != 0)
        return -1;
    a->n = HEADER;
    a->count = 0;
    a->hasnull = false;
    return 0;
}

int db_barray_reset(struct db_barray *a)
{
    a->failed = false;
    a->n = 0;
    return start(a);
}

/* Room for one element of len bytes after its length word; the element's bytes start at the
 * returned offset (or -1). */
static long elem(struct db_barray *a, int32_t len)
{
    if (start(a) != 0 || reserve(a, 4 + (len > 0 ? (size_t)len : 0)) != 0)
        return -1;
    put32(a->p + a->n, (uint32_t)len);
    a->n += 4;
    long at = (long)a->n;
    if (len > 0)
        a->n += (size_t)len;
    a->count++;
    return at;
}

int db_barray_null(struct db_barray *a)
{
    a->hasnull = true;
    return elem(a, -1) < 0 ? -1 : 0;
}

int db_barray_bytes(struct db_barray *a, const void *p, size_t len)
{
    long at = len > 0x7fffffff ? -1 : elem(a, (int32_t)len);
    if (at < 0)
        return -1;
    if (len)
        memcpy(a->p + at, p, len);
    return 0;
}

int db_barray_text(struct db_barray *a, const char *s)
{
    return db_barray_bytes(a, s, strlen(s));
}

int db_barray_opt(struct db_barray *a, const char *s)
{
    return s[0] ? db_barray_text(a, s) : db_barray_null(a);
}

static int fixed(struct db_barray *a, int64_t v, int32_t len)
{
    if (v < 0)
        return db_barray_null(a);
    long at = elem(a, len);
    if (at < 0)
        return -1;
    if (len == 8)
        put64(a->p + at, (uint64_t)v);
    else if (len == 4)
        put32(a->p + at, (uint32_t)v);
    else {
        a->p[at] = (char)(v >> 8);
        a->p[at + 1] = (char)v;
    }
    return 0;
}

int db_barray_i16(struct db_barray *a, int64_t v)
{
    return v > 32767 ? (a->failed = true, -1) : fixed(a, v, 2);
}

int db_barray_i32(struct db_barray *a, int64_t v)
{
    return v > 2147483647 ? (a->failed = true, -1) : fixed(a, v, 4);
}

int db_barray_i64(struct db_barray *a, int64_t v)
{
    return fixed(a, v, 8);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int db_barray_date(struct db_barray *a, const char *ymd)
{
    int y = atoi(ymd), m = atoi(ymd + 5), d = atoi(ymd + 8);
    int64_t days = days_from_civil(y, (unsigned)m, (unsigned)d) - PG_EPOCH_DAYS;
    long at = elem(a, 4);
    if (at < 0)
        return -1;
    put32(a->p + at, (uint32_t)(int32_t)days);
    return 0;
}

int db_barray_ts(struct db_barray *a, uint64_t unix_us)
{
    long at = elem(a, 8);
    if (at < 0)
        return -1;
    put64(a->p + at, unix_us - PG_EPOCH_US); /* two's complement: before 2000 is negative */
    return 0;
}

int db_barray_close(struct db_barray *a, uint32_t elem_oid)
{
    if (start(a) != 0)
        return -1;
    put32(a->p, 1);
    put32(a->p + 4, a->hasnull ? 1 : 0);
    put32(a->p + 8, elem_oid);
    put32(a->p + 12, a->count);
    put32(a->p + 16, 1);
    return 0;
}

void db_barray_free(struct db_barray *a)
{
    free(a->p);
    memset(a, 0, sizeof *a);
}
