/* The PostgreSQL array-literal builder of the multi-row statements that are not on the hot path
 * (the reversal queue's UPDATE, atlas-reconcile's lookups): one text array per column, turned
 * back into rows by unnest(). Elements are double-quoted with " and \ escaped, or NULL. The
 * journal writer sends binary arrays instead (db/barray.c: the server parses no text). */
#include "db_internal.h"

#include "fmt.h"
#include "grow.h"

#include <stdlib.h>
#include <string.h>

static int reserve(struct db_array *a, size_t more)
{
    if (at_grow_bytes(&a->p, &a->cap, a->n + more + 1, 4096) != 0) { /* + its NUL */
        a->failed = true;
        return -1;
    }
    return 0;
}

int db_array_reset(struct db_array *a)
{
    a->failed = false;
    a->n = 0;
    if (reserve(a, 1) != 0)
        return -1;
    a->p[0] = '{';
    a->p[1] = '\0';
    a->n = 1;
    return 0;
}

int db_array_elem(struct db_array *a, const char *s, bool null)
{
    if (a->failed || (a->n == 0 && db_array_reset(a) != 0))
        return -1;
    size_t len = null ? 4 : strlen(s);
    if (reserve(a, 2 * len + 4) != 0)
        return -1;
    if (a->n > 1)
        a->p[a->n++] = ',';
    if (null) {
        memcpy(a->p + a->n, "NULL", 4);
        a->n += 4;
    } else {
        a->p[a->n++] = '"';
        for (size_t i = 0; i < len; i++) {
            if (s[i] == '"' || s[i] == '\\')
                a->p[a->n++] = '\\';
            a->p[a->n++] = s[i];
        }
        a->p[a->n++] = '"';
    }
    a->p[a->n] = '\0';
    return 0;
}

int db_array_opt(struct db_array *a, const char *s)
{
    return db_array_elem(a, s, s[0] == '\0');
}

int db_array_num(struct db_array *a, int64_t v)
{
    char tmp[AT_I64_CHARS];
    at_put_i64(tmp, v);
    return db_array_elem(a, tmp, v < 0);
}

int db_array_close(struct db_array *a)
{
    if (a->failed || (a->n == 0 && db_array_reset(a) != 0) || reserve(a, 1) != 0)
        return -1;
    a->p[a->n++] = '}';
    a->p[a->n] = '\0';
    return 0;
}

void db_array_free(struct db_array *a)
{
    free(a->p);
    memset(a, 0, sizeof *a);
}
